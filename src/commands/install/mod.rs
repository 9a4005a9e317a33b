//! `snp-build install` and `snp-build uninstall`: the job of the release's
//! own `install.sh` (templates/install.sh), from the binary, under one
//! contract (the exit codes in README, the refusals, the record).
//!
//! Guarantees:
//! - **Only a trusted signature installs, when keys are trusted**:
//!   `--trusted-key PUB`, else `[install] trusted-keys` in
//!   `<root>/etc/snp-build/config.toml`, else every `*.pub` in
//!   `<root>/etc/snp-build/trusted-keys/` ([`crate::commands::verify`]).
//! - **Nothing changes before the whole install is planned and checked**:
//!   the release verified (a private copy, or the tarball unpacked into a
//!   private temporary directory), the package chosen, the libraries QEMU
//!   lacks mapped to packages, kvm.conf compared, every tool found, the
//!   confirmation given. A verification failure exits 8; a trusted
//!   signature must name the release as it is found (its directory or
//!   tarball name, its manifest: [`crate::commands::verify`]).
//! - **Never backwards by accident**: a release dated before the one the
//!   target's record says is installed is refused (exit 10) unless
//!   `--allow-downgrade`; the date is the name's (`snp-release-<date>`,
//!   which a trusted signature vouches for).
//! - **The host kernel image package only**, never `-dbg`, headers,
//!   devel or libc-dev, in the target's format (os-release `ID`/`ID_LIKE`
//!   `debian`: `.deb`, else `.rpm`); the manifest settles a tie.
//! - **Live, in an admin's order** ([`record::StepName`]): the
//!   dependencies first (`apt-get update`, then `apt-get install -y
//!   --no-install-recommends` of the packages providing the missing
//!   sonames, or `dnf` by soname), then the kernel package (`dpkg -i` /
//!   `dnf install -y`), then kvm.conf; then the boot checks
//!   ([`crate::host::boot`]): "reboot into" is said only when the
//!   initramfs and a boot loader entry exist.
//! - **All or nothing, with an accurate record**: the record is written
//!   before the first change and after each step ([`record`]). A failed
//!   step stops the install with [`StepFailed`] (exit 9): the step, what
//!   was done before it, the command that finishes and the one that undoes
//!   (`snp-build uninstall --yes`). A kernel hook that fails leaves the
//!   package half-configured (`iF`): the message names the hook and
//!   `dpkg --configure -a`.
//! - **Staging** (`--root DIR`, made when missing): `dpkg-deb -x` or
//!   `rpm2cpio | cpio -idm` into DIR; no maintainer scripts, no
//!   dependencies (printed), no root needed.
//! - **`--dry-run`** verifies, then prints every action; changes nothing.
//! - **kvm.conf** ([`kvm`]): an identical file is left alone, a different
//!   one kept as `kvm.conf.bak-<UTC stamp>` first.
//! - **Commands are argument vectors**, never shell strings; their output
//!   goes to stderr, so stdout carries only the `--json` document.
//! - **`uninstall`** undoes what the record says was done, newest first:
//!   kvm.conf put back (never a kvm.conf edited since), the kernel package
//!   removed (`dpkg --purge` / `dnf remove`) unless it was there before
//!   or is the running kernel, the dependency packages this install added
//!   removed unless something else needs them; then the record goes.

mod deps;
mod kvm;
mod package;
pub mod record;
mod release;
mod stack;
mod target;
mod uninstall;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::commands::verify::Contents;
pub use crate::commands::verify::{ChecksumMismatch, Problem, ProblemKind};
use crate::error::UsageError;
use crate::hash::sha256_hex;
use crate::host::PackageFormat;
use crate::host::doctor::Check;
use crate::signing::TrustedKey;
use deps::Dependencies;
use kvm::{KvmAction, apply_kvm_conf, plan_kvm_conf};
pub use package::HostPackage;
use package::{PackageStep, choose_package, failed_hook, target_format};
use record::{
    RECORD_SCHEMA, Record, StepName, StepRecord, StepState, iso_time, kvm_record, read_record,
};
use release::{Opened, open_release};
use stack::StackPlan;
use target::{Target, check_privileges};
pub use uninstall::{Uninstalled, uninstall};

/// The release's QEMU, whose libraries decide the dependency install.
pub const QEMU_REL: &str = "usr/local/bin/qemu-system-x86_64";
/// Where kvm.conf goes, under the root.
pub const KVM_CONF_REL: &str = "etc/modprobe.d/kvm.conf";
/// Where the install record goes, under the root.
pub const RECORD_REL: &str = "var/lib/snp-build/installed.json";

/// Where an install goes: the live system, or a staging root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstallMode {
    Live,
    Staging,
}

/// Asks the person at the terminal a yes/no question (the CLI's); an
/// error when nobody can answer.
pub type Ask<'a> = &'a dyn Fn(&str) -> anyhow::Result<bool>;

/// `snp-build install`'s options.
#[derive(Clone, Copy)]
pub struct InstallRequest<'a> {
    /// Release directory or tarball; `None`: the newest `snp-release-*`
    /// directory in the current directory.
    pub release: Option<&'a Path>,
    pub dry_run: bool,
    /// Staging root; `None`: the live system.
    pub root: Option<&'a Path>,
    /// Do not ask before a live install.
    pub yes: bool,
    /// Someone is at a terminal to answer: the dependency download size
    /// is shown before asking.
    pub interactive: bool,
    /// How to ask before a live install (unless `yes`).
    pub ask: Ask<'a>,
    /// `--trusted-key PUB` (repeatable): only a release signed by one of
    /// these installs. Empty: the target's policy ([`trusted_keys`]).
    pub trusted_keys: &'a [PathBuf],
    /// Install a release older than the installed one.
    pub allow_downgrade: bool,
}

/// The target's trust policy: `[install] trusted-keys` in
/// `<root>/etc/snp-build/config.toml`, else every `*.pub` in
/// `<root>/etc/snp-build/trusted-keys/`. Any key makes a signature by one
/// of them required.
pub const HOST_CONFIG_REL: &str = "etc/snp-build/config.toml";
pub const TRUSTED_KEYS_REL: &str = "etc/snp-build/trusted-keys";

/// `[install]` of the host config.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct HostConfig {
    #[serde(default)]
    install: InstallPolicy,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct InstallPolicy {
    #[serde(default)]
    trusted_keys: Vec<PathBuf>,
}

/// The keys a release must be signed by: `--trusted-key`, else the
/// target's policy (see [`HOST_CONFIG_REL`]); none: no signature needed.
fn trusted_keys(target: &Target, flags: &[PathBuf]) -> anyhow::Result<Vec<TrustedKey>> {
    if !flags.is_empty() {
        return flags.iter().map(|p| TrustedKey::load(p)).collect();
    }
    let config = target.path(HOST_CONFIG_REL);
    if config.is_file() {
        let text = std::fs::read_to_string(&config)
            .with_context(|| format!("reading {}", config.display()))?;
        let parsed: HostConfig = toml::from_str(&text).map_err(|e| {
            UsageError::new(format!("{}: {}", config.display(), e.message()))
                .help("`[install] trusted-keys` is a list of .pub files")
        })?;
        if !parsed.install.trusted_keys.is_empty() {
            // Paths as seen on the target; a relative one is relative to
            // the config file's directory there.
            let base =
                Path::new("/").join(Path::new(HOST_CONFIG_REL).parent().unwrap_or(Path::new("")));
            return parsed
                .install
                .trusted_keys
                .iter()
                .map(|p| TrustedKey::load(&target.path(base.join(p))))
                .collect();
        }
    }
    let dir = target.path(TRUSTED_KEYS_REL);
    if dir.is_dir() {
        return TrustedKey::load_dir(&dir);
    }
    Ok(Vec::new())
}

/// `snp-build uninstall`'s options.
#[derive(Clone, Copy)]
pub struct UninstallRequest<'a> {
    pub root: Option<&'a Path>,
    pub dry_run: bool,
    /// Do not ask before a live uninstall.
    pub yes: bool,
    pub ask: Ask<'a>,
}

// ---------------------------------------------------------------------------
// Errors.

/// A live install or uninstall by a user other than root.
#[derive(Debug, thiserror::Error)]
#[error(
    "`snp-build {command}` changes this system and must run as root\n  help: try --dry-run to see what it would do, or --root DIR for a staging install into DIR"
)]
pub struct NotRoot {
    pub command: &'static str,
}

/// What a stopped install or uninstall did, and how to go on: the lines
/// under its headline.
#[derive(Debug)]
pub struct Advice {
    pub done: Vec<String>,
    pub record: PathBuf,
    pub finish: String,
    pub undo: String,
}

impl std::fmt::Display for Advice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = if self.done.is_empty() {
            "nothing".to_string()
        } else {
            self.done.join(", ")
        };
        write!(
            f,
            "  done before it: {done}\n  the record of what was done: {}\n  to finish: {}\n  to undo what was done: {}",
            self.record.display(),
            self.finish,
            self.undo
        )
    }
}

/// A step of a live install failed after the record was written (exit 9):
/// the system may be changed, and the record says exactly how.
#[derive(Debug, thiserror::Error)]
#[error("install stopped at step `{}`: {what}\n{advice}", step.word())]
pub struct StepFailed {
    pub step: StepName,
    pub what: String,
    pub advice: Advice,
}

/// Ctrl-C or SIGTERM stopped an install or uninstall (exit 130): the step
/// under way finished or was stopped, the record says which, and how to
/// go on.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: {where_}\n{advice}")]
pub struct InstallInterrupted {
    pub where_: String,
    pub advice: Advice,
}

/// The release is dated before the one the target's record says is
/// installed; nothing was changed (exit 10).
#[derive(Debug, thiserror::Error)]
#[error(
    "{release} is older than {installed}, which {} says is installed; nothing was changed\n  help: install {installed} or a newer release; to go back to {release} on purpose, pass --allow-downgrade",
    record.display()
)]
pub struct Downgrade {
    pub release: String,
    pub installed: String,
    pub record: PathBuf,
}

// ---------------------------------------------------------------------------
// install.

/// Everything `install` will do, decided before anything changes.
struct Plan {
    target: Target,
    format: PackageFormat,
    package: HostPackage,
    package_step: PackageStep,
    deps: Dependencies,
    /// Where the release's userland goes.
    stack: StackPlan,
    kvm_src: Vec<u8>,
    kvm_dest: PathBuf,
    kvm_action: KvmAction,
    /// The record an earlier install left on the target.
    previous: Option<Record>,
    /// The checks this run was asked for, as flags (shell-quoted): every
    /// command the install prints for the user carries them, so following
    /// the advice checks what this run checked.
    carried: String,
}

impl Plan {
    /// The earlier record, when its kvm.conf step was done: the file there
    /// may be that install's, and its backup the admin's original.
    fn earlier_kvm(&self) -> Option<&Record> {
        self.previous.as_ref().filter(|p| p.done(StepName::KvmConf))
    }

    /// `snp-build install [--root DIR] --yes RELEASE`: what finishes it
    /// (through `install.sh`, that script: the host may have no other
    /// snp-build).
    fn again(&self, release: &Path) -> String {
        if let Some(script) = launched_by() {
            return format!("{script}{}{} --yes", self.root_flag(), self.carried);
        }
        format!(
            "snp-build install{}{} --yes {}",
            self.root_flag(),
            self.carried,
            quoted(&absolute(release))
        )
    }

    /// `snp-build uninstall [--root DIR] --yes`: what undoes it.
    fn undo(&self) -> String {
        if let Some(script) = launched_by() {
            return format!("{script} uninstall{} --yes", self.root_flag());
        }
        format!("snp-build uninstall{} --yes", self.root_flag())
    }

    fn root_flag(&self) -> String {
        match &self.target {
            Target::Live => String::new(),
            Target::Staging(root) => format!(" --root {}", quoted(&absolute(root))),
        }
    }

    /// The tools the steps that will run need.
    fn tools(&self) -> Vec<String> {
        let mut tools = self.package_step.tools();
        if self.deps.run {
            tools.push(self.deps.update_command[0].clone());
            tools.push(self.deps.command[0].clone());
        }
        tools.dedup();
        tools
    }

    /// A path under the root, as seen on the target (`/etc/...`).
    fn on_target(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(self.target.root()) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => Path::new("/").join(path),
        }
    }
}

/// `snp-build install`.
pub fn install(req: &InstallRequest) -> anyhow::Result<Installed> {
    // Ctrl-C and SIGTERM are caught: a step under way finishes or is
    // marked interrupted, the temp dirs go, and the advice is printed.
    let _signals = crate::exec::Registry::global();
    let target = Target::new(req.root)?;
    check_privileges(&target, req.dry_run, "install")?;
    let trusted = trusted_keys(&target, req.trusted_keys)?;
    let opened = open_release(req.release)?;
    let contents = Contents::from_dir(&opened.dir)?;
    let sums = crate::commands::verify::check_sums(&contents, &opened.given)?;
    let signature = crate::commands::verify::require_signature(
        &contents,
        &opened.given,
        &trusted,
        &opened.found_as(),
    )?;
    crate::commands::verify::check_documents(&contents, &opened.given, &sums, false)?;
    tracing::info!(
        "verified {}: {} files match SHA256SUMS; {}",
        opened.given.display(),
        sums.len(),
        if trusted.is_empty() {
            format!("{signature} (no trusted key configured: not checked)")
        } else {
            signature.to_string()
        }
    );
    let plan = make_plan(&target, &opened, &sums, req)?;
    describe_plan(&plan, &opened, req.dry_run);
    if req.dry_run {
        tracing::info!("dry run: nothing was changed");
        return Ok(summary(&opened, &plan, sums.len(), true, None, Vec::new()));
    }
    check_tools(&plan.tools())?;
    if target.is_live() && !req.yes {
        if req.interactive && plan.deps.run {
            show_download_size(&plan);
        }
        confirm(&plan, req.ask)?;
    }
    let (record_path, boot) = execute(&plan, &opened)?;
    next_steps(&plan, &boot);
    Ok(summary(
        &opened,
        &plan,
        sums.len(),
        false,
        Some(record_path),
        boot,
    ))
}

/// Set by the release's `install.sh` to its own path, so that printed
/// advice names the command the admin ran.
pub const LAUNCHER_ENV: &str = "SNP_BUILD_LAUNCHED_BY";

/// The `install.sh` that runs this install, quoted, when one does.
fn launched_by() -> Option<String> {
    let script = std::env::var_os(LAUNCHER_ENV).filter(|s| !s.is_empty())?;
    Some(quoted(Path::new(&script)))
}

/// A path as the user's shell takes it back.
fn quoted(path: &Path) -> String {
    let text = path.to_string_lossy();
    shlex::try_quote(&text).map_or_else(|_| text.to_string(), |q| q.into_owned())
}

/// `path` from the current directory, so printed advice works from any.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The flags of `req` that printed advice must carry (see `Plan::carried`).
fn carried_flags(req: &InstallRequest) -> String {
    let mut flags: String = req
        .trusted_keys
        .iter()
        .map(|k| format!(" --trusted-key {}", quoted(&absolute(k))))
        .collect();
    if req.allow_downgrade {
        flags.push_str(" --allow-downgrade");
    }
    flags
}

fn make_plan(
    target: &Target,
    opened: &Opened,
    sums: &BTreeMap<String, String>,
    req: &InstallRequest,
) -> anyhow::Result<Plan> {
    let allow_downgrade = req.allow_downgrade;
    let (format, os_release) = target_format(target);
    let package = choose_package(&opened.dir, sums, format, &os_release)?;
    tracing::info!(
        "host kernel package: {} (kernel {}; .{} packages, from {})",
        package.file,
        package.kernel_release,
        format.extension(),
        os_release.display()
    );
    let package_step = PackageStep::new(target, &opened.dir.join(&package.file), format);
    let deps = Dependencies::plan(&opened.dir, format, target.is_live());
    let stack = StackPlan::new(target, &opened.name, sums.keys());
    let kvm_src = std::fs::read(opened.dir.join("kvm.conf"))
        .with_context(|| format!("reading kvm.conf from {}", opened.given.display()))?;
    let kvm_dest = target.path(KVM_CONF_REL);
    // An earlier install's record is read now, before anything changes: one
    // that cannot be read is refused, never replaced (it may be the only
    // note of what that install did).
    let record_path = target.path(RECORD_REL);
    let previous = read_record(&record_path).map_err(|e| {
        UsageError::new(format!("{e:#}"))
            .help(format!(
                "move {} aside (it records what an earlier install did; `snp-build uninstall` reads it), then install again",
                record_path.display()
            ))
    })?;
    if let Some(installed) = previous.as_ref().map(|p| p.release.as_str())
        && is_older(&opened.name, installed)
    {
        if !allow_downgrade {
            return Err(Downgrade {
                release: opened.name.clone(),
                installed: installed.to_string(),
                record: record_path,
            }
            .into());
        }
        tracing::warn!(
            "{} is older than {installed}, which is installed: going back to it (--allow-downgrade)",
            opened.name
        );
    }
    let earlier_kvm = previous
        .as_ref()
        .filter(|p| p.done(StepName::KvmConf))
        .map(|p| p.kvm_conf.sha256.as_str());
    let kvm_action = plan_kvm_conf(
        &kvm_dest,
        &kvm_src,
        earlier_kvm,
        std::time::SystemTime::now(),
    )?;
    Ok(Plan {
        target: target.clone(),
        format,
        package,
        package_step,
        deps,
        stack,
        kvm_src,
        kvm_dest,
        kvm_action,
        previous,
        carried: carried_flags(req),
    })
}

/// Whether `release` is dated before `installed` (by their names'
/// dates); a name without a date orders against nothing.
fn is_older(release: &str, installed: &str) -> bool {
    use crate::release_name::date_of;
    matches!((date_of(release), date_of(installed)), (Some(new), Some(old)) if new < old)
}

/// Prints each step, in the order they run; in a dry run as "would".
fn describe_plan(plan: &Plan, opened: &Opened, dry_run: bool) {
    let will = if dry_run { "[dry-run] would" } else { "will" };
    if let Target::Staging(root) = &plan.target {
        tracing::info!(
            "staging install into {}: the package is unpacked, no maintainer scripts run, no dependencies are installed",
            root.display()
        );
    }
    let deps = &plan.deps;
    if deps.missing.is_empty() {
        tracing::info!("QEMU's shared libraries are all present: no distribution packages needed");
    } else if deps.run {
        tracing::info!(
            "QEMU needs libraries this system lacks ({}): {will} run: {}, then: {}",
            deps.missing.join(", "),
            deps.update_command.join(" "),
            deps.command.join(" ")
        );
    } else {
        tracing::info!(
            "QEMU needs libraries this system lacks ({}); on the target system run: {}",
            deps.missing.join(", "),
            deps.command.join(" ")
        );
    }
    tracing::info!(
        "{will} place the release's QEMU, firmware, launch-qemu.sh, MEASUREMENTS and libvirt domains ({} files) in {} and point {} at it",
        plan.stack.files.len(),
        plan.stack.on_target.display(),
        Path::new("/")
            .join(crate::host::STACK_CURRENT_REL)
            .display()
    );
    tracing::info!("{will} run: {}", opened.shown(&plan.package_step.display()));
    let dest = plan.kvm_dest.display();
    match &plan.kvm_action {
        KvmAction::Unchanged => tracing::info!("{dest} is already up to date: left alone"),
        KvmAction::Create => tracing::info!("{will} write {dest}"),
        KvmAction::Update => tracing::info!(
            "{will} rewrite {dest} (an earlier snp-build install wrote it; its backup of the original stays)"
        ),
        KvmAction::Replace { backup } => tracing::info!(
            "{will} keep the existing, different {dest} as {}, then write {dest}",
            backup.display()
        ),
    }
}

/// Refreshes the package lists and prints what the dependency install
/// would download and use (`--assume-no`), so the person asked knows.
fn show_download_size(plan: &Plan) {
    let update = crate::host::packages::command(&plan.deps.update_command);
    if let Err(e) = crate::exec::run_to_stderr(&update) {
        tracing::warn!("{e:#}");
    }
    let sizing = crate::host::packages::command(&plan.deps.size_command(plan.format));
    if let Ok(out) = crate::exec::capture(&sizing) {
        for line in deps::size_lines(&out.text()) {
            tracing::info!("dependencies: {line}");
        }
    }
}

/// Asks on a terminal; refuses without one.
fn confirm(plan: &Plan, ask: Ask<'_>) -> anyhow::Result<()> {
    let deps = if plan.deps.run {
        format!("{} and ", plan.deps.packages.join(", "))
    } else {
        String::new()
    };
    if ask(&format!(
        "Install {deps}{}, kvm.conf and the release's QEMU and firmware in {} on this system?",
        plan.package.name,
        plan.stack.on_target.display()
    ))? {
        return Ok(());
    }
    bail!("not confirmed: nothing was changed")
}

/// Fails naming the first of `tools` not on PATH.
fn check_tools(tools: &[String]) -> anyhow::Result<()> {
    for tool in tools {
        if crate::tools::probe::ProbeEnv::system()
            .find_program(tool)
            .is_none()
        {
            bail!(
                "`{tool}` is not installed; it is needed to install this release; nothing was changed"
            );
        }
    }
    Ok(())
}

/// The record as it stands before the first change: every step planned
/// (or skipped), what an earlier install recorded carried over.
fn first_record(plan: &Plan, opened: &Opened) -> Record {
    let previous = plan.previous.as_ref();
    let ours = plan.package.id();
    let same_package = previous.filter(|p| p.package.id() == ours);
    let package_preinstalled = match same_package {
        Some(p) => p.package_preinstalled,
        None => {
            plan.target.is_live()
                && plan
                    .package
                    .installed_state()
                    .is_some_and(|s| s.is_installed() && s.version == plan.package.version)
        }
    };
    // Kernel packages earlier installs put here stay uninstall's to remove.
    let mut earlier_packages: Vec<String> = previous
        .map(|p| p.earlier_packages.clone())
        .unwrap_or_default();
    if let Some(p) = previous.filter(|p| p.package.id() != ours) {
        let touched = p.steps.is_empty() || p.touched().contains(&StepName::KernelPackage);
        if touched && !p.package_preinstalled && p.mode == plan.target.mode() {
            earlier_packages.push(p.package.id());
        }
    }
    earlier_packages.retain(|id| *id != ours);
    earlier_packages.dedup();
    // Releases earlier installs placed stay uninstall's to remove too.
    let mut earlier_stacks: Vec<String> = previous
        .map(|p| {
            let placed = p
                .stack
                .as_ref()
                .filter(|_| p.touched().contains(&StepName::Stack));
            p.earlier_stacks
                .iter()
                .cloned()
                .chain(
                    placed
                        .and_then(|d| d.file_name())
                        .map(|n| n.to_string_lossy().into_owned()),
                )
                .collect()
        })
        .unwrap_or_default();
    earlier_stacks.retain(|n| *n != opened.name);
    earlier_stacks.sort();
    earlier_stacks.dedup();
    let step = |step, run: bool, command: Option<String>| StepRecord {
        step,
        state: if run {
            StepState::Planned
        } else {
            StepState::Skipped
        },
        command,
        note: None,
    };
    let mut kvm_step = step(
        StepName::KvmConf,
        plan.kvm_action != KvmAction::Unchanged,
        None,
    );
    if plan.kvm_action == KvmAction::Unchanged && plan.earlier_kvm().is_some() {
        // Ours already, from an earlier install: still ours to undo.
        kvm_step.state = StepState::Done;
        kvm_step.note = Some("written by an earlier install".into());
    }
    Record {
        schema_version: RECORD_SCHEMA,
        release: opened.name.clone(),
        release_path: opened.given.clone(),
        installed_at: iso_time(std::time::SystemTime::now()),
        mode: plan.target.mode(),
        remove_command: plan.package.remove_command(),
        package_preinstalled,
        kvm_conf: kvm_record(
            &plan.kvm_action,
            sha256_hex(&plan.kvm_src),
            plan.earlier_kvm(),
            |p| plan.on_target(p),
        ),
        package: plan.package.clone(),
        dependencies_command: plan.deps.run.then(|| plan.deps.command.clone()),
        dependencies_installed: previous
            .map(|p| p.dependencies_installed.clone())
            .unwrap_or_default(),
        earlier_packages,
        stack: Some(plan.stack.on_target.clone()),
        earlier_stacks,
        steps: vec![
            step(
                StepName::Dependencies,
                plan.deps.run,
                plan.deps.run.then(|| plan.deps.command.join(" ")),
            ),
            step(
                StepName::Stack,
                true,
                Some(format!(
                    "place {} files in {}",
                    plan.stack.files.len(),
                    plan.stack.on_target.display()
                )),
            ),
            step(
                StepName::KernelPackage,
                true,
                Some(opened.shown(&plan.package_step.display())),
            ),
            kvm_step,
        ],
        complete: false,
        interrupted: false,
    }
}

/// Runs the steps in order, the record kept true after each; returns
/// where the record is and, live, the boot checks.
fn execute(plan: &Plan, opened: &Opened) -> anyhow::Result<(PathBuf, Vec<Check>)> {
    if let Target::Staging(root) = &plan.target {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating --root {}", root.display()))?;
    }
    let record_path = plan.target.path(RECORD_REL);
    let record = first_record(plan, opened);
    record.write(&record_path)?;
    tracing::info!("recording each step in {}", record_path.display());
    let mut run = Steps {
        record,
        path: &record_path,
        again: plan.again(&opened.given),
        undo: plan.undo(),
        done: Vec::new(),
    };
    if plan.deps.run {
        install_dependencies(plan, &mut run)?;
    }
    run.start(StepName::Stack)?;
    if let Err(e) = plan.stack.place(&opened.dir) {
        return Err(run.fail(
            StepName::Stack,
            format!("{e:#}"),
            None,
            format!("fix the cause, then run: {}", run.again),
        ));
    }
    run.finish(
        StepName::Stack,
        &format!("{}", plan.stack.on_target.display()),
    )?;
    install_package(plan, &mut run)?;
    if plan.kvm_action != KvmAction::Unchanged {
        run.start(StepName::KvmConf)?;
        if let Err(e) = apply_kvm_conf(&plan.kvm_dest, &plan.kvm_src, &plan.kvm_action) {
            return Err(run.fail(
                StepName::KvmConf,
                format!("{e:#}"),
                None,
                format!("fix the cause, then run: {}", run.again),
            ));
        }
        run.finish(StepName::KvmConf, "kvm.conf")?;
    }
    let boot = if plan.target.is_live() {
        crate::host::boot::check(Path::new("/"), &plan.package.kernel_release, plan.format)
    } else {
        Vec::new()
    };
    run.record.complete = true;
    run.write()?;
    tracing::info!("recorded what was done in {}", record_path.display());
    Ok((record_path, boot))
}

/// The steps as they run, and the record that follows them.
struct Steps<'a> {
    record: Record,
    path: &'a Path,
    /// The command that finishes the install, and the one that undoes it.
    again: String,
    undo: String,
    /// What was done so far, for a failure's message.
    done: Vec<String>,
}

impl Steps<'_> {
    fn start(&mut self, step: StepName) -> anyhow::Result<()> {
        // Ctrl-C during a step lets it finish; the install stops before
        // the next one.
        if crate::exec::interrupted() {
            return Err(
                self.interrupted(format!("the install stopped before step `{}`", step.word()))
            );
        }
        self.record.set(step, StepState::Running, None);
        self.write()
    }

    fn finish(&mut self, step: StepName, what: &str) -> anyhow::Result<()> {
        self.record.set(step, StepState::Done, None);
        self.done.push(what.to_string());
        self.write()
    }

    fn advice(&self, finish: String) -> Advice {
        Advice {
            done: self.done.clone(),
            record: self.path.to_path_buf(),
            finish,
            undo: self.undo.clone(),
        }
    }

    /// Marks the record interrupted and returns the error that says so.
    fn interrupted(&mut self, where_: String) -> anyhow::Error {
        self.record.interrupted = true;
        if let Err(e) = self.record.write(self.path) {
            tracing::warn!("{e:#}");
        }
        InstallInterrupted {
            where_,
            advice: self.advice(format!("run: {}", self.again)),
        }
        .into()
    }

    /// Writes the record; failing to, after the system may have changed,
    /// stops the install as a failed step would (exit 9).
    fn write(&self) -> anyhow::Result<()> {
        self.record.write(self.path).map_err(|e| {
            self.stop(
                self.current(),
                format!("{e:#}: the record may no longer say what was done"),
                format!("fix the cause, then run: {}", self.again),
            )
        })
    }

    /// The step under way (the last one that is not planned or skipped).
    fn current(&self) -> StepName {
        self.record
            .steps
            .iter()
            .rev()
            .find(|s| !matches!(s.state, StepState::Planned | StepState::Skipped))
            .map_or(StepName::Dependencies, |s| s.step)
    }

    /// Marks the step failed (the record written, or a warning when even
    /// that fails) and returns the error that stops the install.
    fn fail(
        &mut self,
        step: StepName,
        what: String,
        note: Option<String>,
        finish: String,
    ) -> anyhow::Error {
        // A step that failed after Ctrl-C failed because of it: its
        // command took the signal too (a terminal signals the whole
        // group). Never blamed on the mirror or on dpkg.
        if crate::exec::interrupted_after_failure() {
            self.record.set(step, StepState::Interrupted, note);
            return self.interrupted(format!(
                "the install stopped during step `{}` (its command was stopped: {what})",
                step.word()
            ));
        }
        self.record.set(step, StepState::Failed, note);
        if let Err(e) = self.record.write(self.path) {
            tracing::warn!("{e:#}");
        }
        self.stop(step, what, finish)
    }

    fn stop(&self, step: StepName, what: String, finish: String) -> anyhow::Error {
        StepFailed {
            step,
            what,
            advice: self.advice(finish),
        }
        .into()
    }
}

/// Step 1: the packages QEMU's missing libraries come from.
fn install_dependencies(plan: &Plan, run: &mut Steps) -> anyhow::Result<()> {
    run.start(StepName::Dependencies)?;
    let absent: Vec<String> = plan
        .deps
        .packages
        .iter()
        .filter(|p| plan.format == PackageFormat::Deb && !deb_installed(p))
        .cloned()
        .collect();
    let result =
        crate::host::packages::refresh_and_install(&plan.deps.update_command, &plan.deps.command);
    // Whatever the outcome, what is installed now is recorded.
    let added: Vec<String> = absent.into_iter().filter(|p| deb_installed(p)).collect();
    for p in added {
        if !run.record.dependencies_installed.contains(&p) {
            run.record.dependencies_installed.push(p);
        }
    }
    if let Err(e) = result {
        let finish = format!(
            "once `{}` works, run: {}",
            plan.deps.command.join(" "),
            run.again
        );
        return Err(run.fail(
            StepName::Dependencies,
            format!(
                "{e:#}: the packages providing {} could not be installed (is the package mirror reachable?)",
                plan.deps.missing.join(", ")
            ),
            None,
            finish,
        ));
    }
    let what = format!("dependencies ({})", plan.deps.packages.join(", "));
    run.finish(StepName::Dependencies, &what)
}

/// Whether dpkg has `package` installed and configured.
fn deb_installed(package: &str) -> bool {
    package::deb_state(package).is_some_and(|s| s.is_installed())
}

/// Step 2: the kernel package.
fn install_package(plan: &Plan, run: &mut Steps) -> anyhow::Result<()> {
    run.start(StepName::KernelPackage)?;
    let again = run.again.clone();
    let failed = match plan.package_step.run() {
        Ok(Ok(())) => return run.finish(StepName::KernelPackage, &plan.package.name),
        Ok(Err(teed)) => teed,
        Err(e) => {
            return Err(run.fail(
                StepName::KernelPackage,
                format!("{e:#}"),
                None,
                format!("fix the cause, then run: {again}"),
            ));
        }
    };
    let command = plan.package_step.display();
    let state = plan
        .target
        .is_live()
        .then(|| plan.package.installed_state())
        .flatten();
    if let Some(state) = state.filter(|s| s.is_half_configured()) {
        let hook = failed_hook(&failed.output);
        let note = format!(
            "{} is unpacked but not configured (dpkg status {}){}",
            plan.package.name,
            state.abbrev,
            hook.as_ref()
                .map(|h| format!(": the kernel hook {h} failed"))
                .unwrap_or_default()
        );
        return Err(run.fail(
            StepName::KernelPackage,
            format!("`{command}` failed ({}): {note}", failed.status),
            Some(note.clone()),
            format!(
                "fix what {} needs, then run: dpkg --configure -a (and then {again} for kvm.conf)",
                hook.as_deref().unwrap_or("the failed maintainer script")
            ),
        ));
    }
    Err(run.fail(
        StepName::KernelPackage,
        format!("`{command}` failed ({})", failed.status),
        None,
        format!("fix the cause printed above, then run: {again}"),
    ))
}

fn next_steps_lines(plan: &Plan, boot: &[Check]) -> Vec<String> {
    let kr = &plan.package.kernel_release;
    let missing: Vec<&Check> = boot.iter().filter(|c| c.status.blocks()).collect();
    if !missing.is_empty() {
        let mut lines = vec![format!(
            "the SNP host kernel {kr} is installed, but this host cannot boot it yet:"
        )];
        for c in missing {
            lines.push(format!(
                "  {}: {}; {}",
                c.check,
                c.found,
                c.help.as_deref().unwrap_or_default()
            ));
        }
        lines.push("then run `snp-build doctor --host` to check again".into());
        return lines;
    }
    // A staging root has no initramfs or boot entry yet: rebooting is
    // for the target, once it has both.
    let reboot = match plan.target {
        Target::Live => "Reboot into",
        Target::Staging(_) => "On the target, once it has both: reboot into",
    };
    vec![
        format!(
            "{reboot} the SNP host kernel {kr} (choose it in the GRUB menu if it is not the default), then check that SEV-SNP is enabled:"
        ),
        "  cat /sys/module/kvm_amd/parameters/sev_snp    # should print Y".into(),
        "  snp-build doctor --host".into(),
        format!(
            "The release's QEMU and firmware are in {} (linked as {}): start guests with its launch-qemu.sh; undo everything with its bin/snp-build uninstall",
            plan.stack.on_target.display(),
            Path::new("/")
                .join(crate::host::STACK_CURRENT_REL)
                .display()
        ),
    ]
}

fn next_steps(plan: &Plan, boot: &[Check]) {
    match &plan.target {
        Target::Live => tracing::info!("done."),
        Target::Staging(root) => tracing::info!(
            "staged into {}. No maintainer scripts ran: the target still has to build the initramfs and boot loader entry for {}.",
            root.display(),
            plan.package.kernel_release
        ),
    }
    let boot_ready = !boot.iter().any(|c| c.status.blocks());
    for line in next_steps_lines(plan, boot) {
        if boot_ready {
            tracing::info!("{}", line);
        } else {
            tracing::warn!("{}", line);
        }
    }
}

/// What `install` did (its JSON document).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Installed {
    release: String,
    release_path: PathBuf,
    verified_files: usize,
    root: PathBuf,
    mode: InstallMode,
    dry_run: bool,
    package: HostPackage,
    package_command: String,
    dependencies: Dependencies,
    /// Where the release's userland goes (as the target sees it).
    stack: PathBuf,
    kvm_conf: KvmConfOutcome,
    record: Option<PathBuf>,
    /// The live install's boot checks (initramfs, boot loader entry).
    boot: Vec<Check>,
    /// Both boot checks passed (always false for staging and dry runs,
    /// which do not check).
    boot_ready: bool,
    next_steps: Vec<String>,
}

/// What happened to kvm.conf.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct KvmConfOutcome {
    path: PathBuf,
    action: &'static str,
    backup: Option<PathBuf>,
}

fn summary(
    opened: &Opened,
    plan: &Plan,
    verified: usize,
    dry_run: bool,
    record: Option<PathBuf>,
    boot: Vec<Check>,
) -> Installed {
    let backup = match &plan.kvm_action {
        KvmAction::Replace { backup } => Some(backup.clone()),
        _ => None,
    };
    Installed {
        release: opened.name.clone(),
        release_path: opened.given.clone(),
        verified_files: verified,
        root: plan.target.root().to_path_buf(),
        mode: plan.target.mode(),
        dry_run,
        package: plan.package.clone(),
        package_command: opened.shown(&plan.package_step.display()),
        dependencies: plan.deps.clone(),
        stack: plan.stack.on_target.clone(),
        kvm_conf: KvmConfOutcome {
            path: plan.kvm_dest.clone(),
            action: plan.kvm_action.name(),
            backup,
        },
        record,
        boot_ready: !boot.is_empty() && !boot.iter().any(|c| c.status.blocks()),
        next_steps: next_steps_lines(plan, &boot),
        boot,
    }
}
