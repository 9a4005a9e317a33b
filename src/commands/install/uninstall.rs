//! `snp-build uninstall`: undoes what the install record says was done,
//! newest first, and asks first on a live system as `install` does.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use super::package::{HostPackage, package_state, remove_command};
use super::record::{KvmRecord, Record, StepName, StepState, read_record};
use super::target::{Target, check_privileges};
use super::{InstallMode, KvmConfOutcome, PackageFormat, RECORD_REL, UninstallRequest};
use crate::exec::Cmd;
use crate::hash::sha256_hex;

/// `snp-build uninstall`.
pub fn uninstall(req: &UninstallRequest) -> anyhow::Result<Uninstalled> {
    // Ctrl-C and SIGTERM are caught: the undo under way finishes, the
    // record is kept true, and the command that goes on is printed.
    let _signals = crate::exec::Registry::global();
    let target = Target::new(req.root)?;
    check_privileges(&target, req.dry_run, "uninstall")?;
    let record_path = target.path(RECORD_REL);
    let Some(mut record) = read_record(&record_path)? else {
        bail!(
            "nothing to uninstall: {} does not exist (snp-build install and install.sh write it)",
            record_path.display()
        );
    };
    let touched = record.touched();
    let did = |step| record.steps.is_empty() || touched.contains(&step);
    let live = target.is_live() && record.mode == InstallMode::Live;
    let remove_package = live && did(StepName::KernelPackage) && !record.package_preinstalled;
    let remove_deps = live
        && record.package.format == PackageFormat::Deb
        && !record.dependencies_installed.is_empty();
    // The releases placed in /opt/snp-build: this one, and those earlier
    // installs placed (staging roots too: they are files like any other).
    let mut stacks: Vec<String> = record.earlier_stacks.clone();
    let placed_stack = did(StepName::Stack);
    if placed_stack && let Some(name) = record.stack.as_ref().and_then(|d| d.file_name()) {
        stacks.push(name.to_string_lossy().into_owned());
    }
    let earlier = if live {
        record.earlier_packages.clone()
    } else {
        Vec::new()
    };
    if target.is_live() && !req.dry_run && !req.yes {
        let mut what = vec![];
        if did(StepName::KvmConf) {
            what.push("restore kvm.conf".to_string());
        }
        if remove_package {
            what.push(format!("remove {}", record.package.name));
        }
        for name in &stacks {
            what.push(format!(
                "remove {}",
                Path::new("/")
                    .join(crate::host::RELEASES_REL)
                    .join(name)
                    .display()
            ));
        }
        for id in &earlier {
            what.push(format!("remove {id} (an earlier install's)"));
        }
        if remove_deps {
            what.push(format!(
                "remove {}",
                record.dependencies_installed.join(", ")
            ));
        }
        what.push("remove the install record".into());
        if !(req.ask)(&format!(
            "Uninstall {}: {}?",
            record.release,
            what.join(", ")
        ))? {
            bail!("not confirmed: nothing was changed");
        }
    }
    // Newest first. After each undo the record is rewritten when it has to
    // stay, so it never claims what is no longer so.
    let kvm_action = if did(StepName::KvmConf) {
        let action = undo_kvm_conf(&target, &record.kvm_conf, req.dry_run)?;
        record.set(StepName::KvmConf, StepState::Undone, None);
        action
    } else {
        "left"
    };
    let keep_record = |record: &Record| -> anyhow::Result<()> {
        if !req.dry_run {
            record.write(&record_path)?;
        }
        Ok(())
    };
    // Between undos: a Ctrl-C stops here, with the record saying what is
    // left to undo.
    let stop_if_interrupted = |record: &Record, after: &str| -> anyhow::Result<()> {
        if !crate::exec::interrupted() {
            return Ok(());
        }
        keep_record(record)?;
        let again = match req.root {
            Some(root) => format!(
                "snp-build uninstall --root {} --yes",
                std::path::absolute(root)
                    .unwrap_or_else(|_| root.to_path_buf())
                    .display()
            ),
            None => "snp-build uninstall --yes".to_string(),
        };
        Err(anyhow::anyhow!(super::InstallInterrupted {
            where_: format!("uninstall stopped after {after}"),
            advice: super::Advice {
                done: vec![after.to_string()],
                record: record_path.clone(),
                finish: format!("run: {again}"),
                undo: "the same command (uninstall goes on where it stopped)".to_string(),
            },
        }))
    };
    stop_if_interrupted(&record, &format!("kvm.conf ({kvm_action})"))?;
    let package_action = if remove_package {
        match remove_kernel_package(&record, req.dry_run) {
            Ok(action) => action,
            Err(e) => {
                keep_record(&record)?;
                return Err(e);
            }
        }
    } else {
        explain_package(&target, &record);
        "left"
    };
    if package_action == "kept" {
        // The running kernel stays, and with it what the release's QEMU
        // needs: the record keeps both for a later uninstall.
        keep_record(&record)?;
        tracing::warn!(
            "kept {} so that `snp-build uninstall` can finish after a reboot into another kernel",
            record_path.display()
        );
    } else {
        if remove_package || package_action == "absent" {
            record.set(StepName::KernelPackage, StepState::Undone, None);
        }
        for id in &earlier {
            remove_earlier_package(record.package.format, id, req.dry_run);
        }
    }
    stop_if_interrupted(&record, &format!("the kernel package ({package_action})"))?;
    let stacks_removed = super::stack::remove(&target, &stacks, req.dry_run)?;
    if placed_stack {
        record.set(StepName::Stack, StepState::Undone, None);
    }
    record.earlier_stacks.clear();
    let mut dependencies_removed = Vec::new();
    if remove_deps && package_action != "kept" {
        dependencies_removed = remove_dependencies(&record.dependencies_installed, req.dry_run);
    }
    if req.dry_run {
        tracing::info!("[dry-run] would remove {}", record_path.display());
        tracing::info!("dry run: nothing was changed");
    } else if package_action != "kept" {
        std::fs::remove_file(&record_path)
            .with_context(|| format!("removing {}", record_path.display()))?;
        tracing::info!("removed {}", record_path.display());
    }
    Ok(Uninstalled {
        root: target.root().to_path_buf(),
        mode: target.mode(),
        dry_run: req.dry_run,
        kvm_conf: KvmConfOutcome {
            path: target.path(&record.kvm_conf.path),
            action: kvm_action,
            backup: record.kvm_conf.backup.as_ref().map(|b| target.path(b)),
        },
        package_action,
        dependencies_removed,
        stacks_removed,
        release: record.release,
        record: record_path,
        package: record.package,
        remove_command: record.remove_command,
    })
}

/// What `uninstall` did (its JSON document).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Uninstalled {
    root: PathBuf,
    mode: InstallMode,
    dry_run: bool,
    release: String,
    record: PathBuf,
    kvm_conf: KvmConfOutcome,
    package: HostPackage,
    /// `removed`, `left` (there before, staging, or never installed),
    /// `kept` (the running kernel) or `absent` (already gone).
    package_action: &'static str,
    /// Dependency packages this install added and uninstall removed.
    dependencies_removed: Vec<String>,
    /// The release directories removed from `/opt/snp-build/releases`.
    stacks_removed: Vec<PathBuf>,
    remove_command: Vec<String>,
}

/// Why the package stays (staging, or installed before snp-build).
fn explain_package(target: &Target, record: &Record) {
    let remove = record.remove_command.join(" ");
    if record.mode == InstallMode::Staging {
        tracing::info!(
            "{} was unpacked into {} without the package manager: delete its files from there; on a system where it is installed, remove it with: {remove}",
            record.package.name,
            target.root().display()
        );
    } else if record.package_preinstalled {
        tracing::info!(
            "{} was installed before snp-build installed this release: left alone (to remove it: {remove})",
            record.package.name
        );
    }
}

/// Removes the kernel package this install put on the live system;
/// never the kernel that is running.
fn remove_kernel_package(record: &Record, dry_run: bool) -> anyhow::Result<&'static str> {
    let package = &record.package;
    let remove = record.remove_command.join(" ");
    let Some(state) = package.installed_state() else {
        tracing::info!(
            "{} is not installed (any more): nothing to remove",
            package.name
        );
        return Ok("absent");
    };
    if state.version != package.version {
        // A failed `dpkg -i` of this version can leave another in place:
        // that one is not ours to remove.
        tracing::warn!(
            "{} {} is installed, not the {} this install put there: left alone",
            package.name,
            state.version,
            package.version
        );
        return Ok("left");
    }
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    if running.trim() == package.kernel_release {
        tracing::warn!(
            "{} is the running kernel ({}): not removed; boot another kernel, then run: snp-build uninstall --yes",
            package.name,
            package.kernel_release
        );
        return Ok("kept");
    }
    if dry_run {
        tracing::info!("[dry-run] would run: {remove}");
        return Ok("removed");
    }
    tracing::info!("running: {remove}");
    let cmd = crate::host::packages::command(&record.remove_command);
    crate::exec::run_to_stderr(&cmd).with_context(|| {
        format!(
            "removing {} (the install record is kept: fix the cause, then run snp-build uninstall --yes again)",
            package.name
        )
    })?;
    remove_depmod_files(Path::new("/lib/modules").join(&package.kernel_release));
    Ok("removed")
}

/// Upstream `bindeb-pkg` packages (unlike Debian's own) leave behind the
/// `modules.*` indexes that depmod wrote at install (initramfs-tools runs
/// it): no package owns them. Once the package is gone they are removed,
/// and the directory if nothing else is in it; anything else there (a
/// DKMS module, say) stays, and is named.
fn remove_depmod_files(dir: PathBuf) {
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut others = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && name.starts_with("modules.") {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!("removing {}: {e}", entry.path().display());
            }
        } else {
            others.push(name);
        }
    }
    if others.is_empty() {
        if std::fs::remove_dir(&dir).is_ok() {
            tracing::info!(
                "removed {} (depmod's indexes, which no package owns)",
                dir.display()
            );
        }
    } else {
        tracing::warn!(
            "{} still holds files no snp-build install put there ({}): left alone",
            dir.display(),
            others.join(", ")
        );
    }
}

/// Removes the dependency packages the install added, one at a time with
/// `dpkg --purge`, which refuses when another package has come to depend
/// on one: that one stays, with a warning. Returns what was removed.
fn remove_dependencies(packages: &[String], dry_run: bool) -> Vec<String> {
    let mut removed = Vec::new();
    for package in packages {
        let cmd = Cmd::new("dpkg", Path::new("/")).arg("--purge").arg(package);
        if dry_run {
            tracing::info!("[dry-run] would run: {}", cmd.display());
            removed.push(package.clone());
            continue;
        }
        tracing::info!("running: {}", cmd.display());
        match crate::exec::run_to_stderr(&cmd) {
            Ok(()) => removed.push(package.clone()),
            Err(e) => tracing::warn!("{e:#}: {package} stays (something else needs it now)"),
        }
    }
    removed
}

/// Removes a kernel package an earlier install put here, when it is still
/// installed and not the running kernel; a failure is a warning (it is
/// not this release's).
fn remove_earlier_package(format: PackageFormat, id: &str, dry_run: bool) {
    if package_state(format, id).is_none() {
        return;
    }
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let running = running.trim();
    if !running.is_empty() && id.ends_with(running) {
        tracing::warn!("{id} is the running kernel: left alone");
        return;
    }
    let words = remove_command(format, id);
    let cmd = crate::host::packages::command(&words);
    if dry_run {
        tracing::info!(
            "[dry-run] would run: {} (an earlier install's)",
            cmd.display()
        );
        return;
    }
    tracing::info!("running: {} (an earlier install's kernel)", cmd.display());
    if let Err(e) = crate::exec::run_to_stderr(&cmd) {
        tracing::warn!("{e:#}: {id} stays");
    }
}

/// Restores the backup, or removes the kvm.conf an install created; leaves
/// a file edited since the install alone. Returns what it did.
fn undo_kvm_conf(target: &Target, kvm: &KvmRecord, dry_run: bool) -> anyhow::Result<&'static str> {
    let dest = target.path(&kvm.path);
    let would = if dry_run { "[dry-run] would " } else { "" };
    let current = match std::fs::read(&dest) {
        Ok(bytes) => Some(sha256_hex(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", dest.display())),
    };
    if current.as_ref().is_some_and(|sha| *sha != kvm.sha256) {
        tracing::warn!(
            "{} was changed since the install: left alone{}",
            dest.display(),
            kvm.backup
                .as_ref()
                .map(|b| format!(
                    " (the earlier file is still in {})",
                    target.path(b).display()
                ))
                .unwrap_or_default()
        );
        return Ok("left");
    }
    if let Some(backup) = &kvm.backup {
        let backup = target.path(backup);
        if !backup.is_file() {
            tracing::warn!(
                "the backup {} is gone: {} left alone",
                backup.display(),
                dest.display()
            );
            return Ok("left");
        }
        tracing::info!("{would}put back {} as {}", backup.display(), dest.display());
        if !dry_run {
            std::fs::rename(&backup, &dest)
                .with_context(|| format!("moving {} to {}", backup.display(), dest.display()))?;
        }
        return Ok("restored");
    }
    if kvm.created && current.is_some() {
        tracing::info!(
            "{would}remove {} (there was none before the install)",
            dest.display()
        );
        if !dry_run {
            std::fs::remove_file(&dest).with_context(|| format!("removing {}", dest.display()))?;
        }
        return Ok("removed");
    }
    tracing::info!(
        "{} was there before the install: left alone",
        dest.display()
    );
    Ok("left")
}
