//! `<root>/var/lib/snp-build/installed.json`: what an install did, for
//! `uninstall` and for people. Written by `snp-build install` only
//! (`install.sh` runs the release's own snp-build), so there is one layout.
//!
//! It is written before the first change, with every step `planned`, and
//! again after each step changes state, so that whatever stops an install
//! (a failed step, a kill, a power cut between steps) leaves a record of
//! exactly what was done. Paths in it are as seen on the target system.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::InstallMode;
use super::kvm::KvmAction;
use super::package::HostPackage;
use crate::fsutil::write_atomic;

/// Version of [`Record`]'s layout. 2 added the steps, completeness, the
/// dependencies installed and whether the package was there before.
pub const RECORD_SCHEMA: u32 = 2;

/// One change an install makes, in the order they are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StepName {
    /// The distribution packages QEMU's missing libraries come from.
    Dependencies,
    /// The release's userland in `/opt/snp-build/releases/<name>`, and the
    /// `current` link ([`super::stack`]).
    Stack,
    /// The host kernel image package.
    KernelPackage,
    /// `/etc/modprobe.d/kvm.conf`.
    KvmConf,
}

impl StepName {
    pub fn word(self) -> &'static str {
        match self {
            StepName::Dependencies => "dependencies",
            StepName::Stack => "stack",
            StepName::KernelPackage => "kernel-package",
            StepName::KvmConf => "kvm-conf",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    /// Not started.
    Planned,
    /// Started; a record left in this state means the install was killed
    /// during the step, which may or may not have changed something.
    Running,
    Done,
    /// Ran and failed; what it may have changed is described in `note`.
    Failed,
    /// Nothing to do (no library missing, kvm.conf already ours).
    Skipped,
    /// Done, then undone by an `uninstall` that could not finish (the
    /// running kernel kept, a removal that failed).
    Undone,
    /// Its command was stopped by Ctrl-C or SIGTERM: it may or may not
    /// have changed something, as a failed step.
    Interrupted,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepRecord {
    pub step: StepName,
    pub state: StepState,
    /// The command the step runs, as a shell line (for people).
    #[serde(default)]
    pub command: Option<String>,
    /// What a failed step left behind.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Record {
    pub schema_version: u32,
    /// `snp-release-<date>`.
    pub release: String,
    /// The release directory or tarball installed from.
    pub release_path: PathBuf,
    /// When the install started: UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub installed_at: String,
    /// `live` or `staging`.
    pub mode: InstallMode,
    pub package: HostPackage,
    /// How to remove the package (`uninstall` runs it on a live system
    /// unless the package was there before).
    pub remove_command: Vec<String>,
    /// This package version was installed before any snp-build install:
    /// `uninstall` leaves it.
    #[serde(default)]
    pub package_preinstalled: bool,
    pub kvm_conf: KvmRecord,
    /// The dependency install command, when this install ran it.
    pub dependencies_command: Option<Vec<String>>,
    /// Packages the dependency step added that were not installed before
    /// (Debian names); `uninstall` removes them with `dpkg --purge`,
    /// which refuses when something else has come to need them.
    #[serde(default)]
    pub dependencies_installed: Vec<String>,
    /// Kernel packages earlier snp-build installs put on this system (and
    /// that were not there before them): `uninstall` removes them too.
    /// Package names (deb) or `name-version.arch` (rpm).
    #[serde(default)]
    pub earlier_packages: Vec<String>,
    /// Where this release's userland was placed, as the target sees it
    /// (`/opt/snp-build/releases/<name>`); none in records of installs
    /// that placed nothing.
    #[serde(default)]
    pub stack: Option<PathBuf>,
    /// The releases earlier installs placed beside it (their directory
    /// names): `uninstall` removes them too.
    #[serde(default)]
    pub earlier_stacks: Vec<String>,
    /// Every step, in order, with its state. Empty in records of schema 1,
    /// which were written only after a complete install.
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// Every step finished.
    #[serde(default = "complete_by_default")]
    pub complete: bool,
    /// Ctrl-C or SIGTERM stopped the install: the step under way was
    /// finished (or its command stopped, then that step says
    /// `interrupted`), and the steps after it were not started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

fn complete_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KvmRecord {
    /// `/etc/modprobe.d/kvm.conf`.
    pub path: PathBuf,
    /// SHA-256 of the kvm.conf installed.
    pub sha256: String,
    /// The earlier, different file kept aside, if any.
    pub backup: Option<PathBuf>,
    /// No kvm.conf existed before: `uninstall` removes ours.
    pub created: bool,
}

impl Record {
    /// The state of `step`; a schema-1 record (no steps) did all of them.
    pub fn state(&self, step: StepName) -> StepState {
        if self.steps.is_empty() {
            return StepState::Done;
        }
        self.steps
            .iter()
            .find(|s| s.step == step)
            .map_or(StepState::Skipped, |s| s.state)
    }

    pub fn set(&mut self, step: StepName, state: StepState, note: Option<String>) {
        if let Some(s) = self.steps.iter_mut().find(|s| s.step == step) {
            s.state = state;
            if note.is_some() {
                s.note = note;
            }
        }
    }

    /// Whether `step` was done (a schema-1 record did every step).
    pub fn done(&self, step: StepName) -> bool {
        self.state(step) == StepState::Done
    }

    /// The steps that changed the system (done, failed or interrupted).
    pub fn touched(&self) -> Vec<StepName> {
        self.steps
            .iter()
            .filter(|s| {
                matches!(
                    s.state,
                    StepState::Done
                        | StepState::Failed
                        | StepState::Running
                        | StepState::Interrupted
                )
            })
            .map(|s| s.step)
            .collect()
    }

    /// Writes the record atomically (a reader never sees half of it).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        write_atomic(path, &bytes)
            .with_context(|| format!("writing the install record {}", path.display()))
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds).
pub fn iso_time(now: std::time::SystemTime) -> String {
    crate::fsutil::utc_rfc3339(now)
}

pub fn read_record(path: &Path) -> anyhow::Result<Option<Record>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not an snp-build install record", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The kvm.conf part of the record. A file an earlier install wrote
/// (unchanged, or updated) keeps what that install recorded about the
/// admin's original: `earlier` is the previous record when its kvm.conf
/// step was done.
pub(super) fn kvm_record(
    action: &KvmAction,
    sha256: String,
    earlier: Option<&Record>,
    on_target: impl Fn(&Path) -> PathBuf,
) -> KvmRecord {
    let path = on_target(Path::new(super::KVM_CONF_REL));
    let (backup, created) = match action {
        KvmAction::Create => (None, true),
        KvmAction::Replace { backup } => (Some(on_target(backup)), false),
        KvmAction::Update | KvmAction::Unchanged => earlier
            .filter(|p| p.kvm_conf.path == path)
            .map_or((None, false), |p| {
                (p.kvm_conf.backup.clone(), p.kvm_conf.created)
            }),
    };
    KvmRecord {
        path,
        sha256,
        backup,
        created,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn times_are_utc_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_369_295);
        assert_eq!(iso_time(t), "2026-11-22T17:41:35Z");
    }

    #[test]
    fn a_schema_1_record_did_every_step() {
        let v1 = r#"{"schema_version":1,"release":"snp-release-2026-11-22","release_path":"/r","installed_at":"2026-11-22T17:41:35Z","mode":"live","package":{"file":"linux/host/a.deb","format":"deb","name":"a","version":"1","kernel_release":"6.1","sha256":"x"},"remove_command":["apt-get","remove","a"],"kvm_conf":{"path":"/etc/modprobe.d/kvm.conf","sha256":"y","backup":null,"created":true},"dependencies_command":null}"#;
        let r: Record = serde_json::from_str(v1).unwrap();
        assert!(r.complete);
        assert_eq!(r.state(StepName::KernelPackage), StepState::Done);
    }
}
