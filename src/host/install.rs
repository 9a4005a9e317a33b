//! `snp-build install` and `snp-build uninstall`: the job of the release's
//! own `install.sh` (templates/install.sh), from the binary, with the same
//! rules.
//!
//! Guarantees:
//! - **Only a trusted signature installs, when keys are trusted**:
//!   `--trusted-key PUB`, else `[install] trusted-keys` in
//!   `<root>/etc/snp-build/config.toml`, else every `*.pub` in
//!   `<root>/etc/snp-build/trusted-keys/` ([`super::verify`]).
//! - **Nothing changes before the release is verified.** A tarball is
//!   unpacked into a temporary directory first (an entry that is absolute,
//!   holds `..`, or is anything but a file or directory is refused), then
//!   every file listed in `SHA256SUMS` must be present with its hash, and
//!   every file of the release must be listed. Any difference stops the
//!   install with [`ChecksumMismatch`] naming each file (exit 1).
//! - **The host kernel image package only**, never `-dbg`, headers, devel
//!   or libc-dev ([`super::kernel_image_package`]); exactly one
//!   must match, in the format of the target's distribution (os-release
//!   `ID` or a word of `ID_LIKE` is `debian`: `.deb`, else `.rpm`; with
//!   `--root DIR`, `DIR/etc/os-release` when it exists). The manifest's
//!   `kernels.host.image` settles a tie.
//! - **Live** (no `--root`): `dpkg -i PKG` or `dnf install -y PKG`; the
//!   distribution's QEMU packages (`apt-get install -y qemu-system-x86`,
//!   `dnf install -y qemu-kvm`) only when `ldd` says the release's QEMU
//!   lacks libraries. Must run as root; asks for confirmation on a
//!   terminal unless `--yes`, and refuses (exit 2) without a terminal
//!   rather than wait for an answer.
//! - **Staging** (`--root DIR`, made when missing, as `cargo install
//!   --root`): `dpkg-deb -x PKG DIR`
//!   or `rpm2cpio PKG | cpio -idm` in DIR; no maintainer scripts, no
//!   dependency installs (the command is printed). Needs no root.
//! - **`--dry-run`** verifies, then prints every action; changes nothing.
//! - **kvm.conf** goes to `<root>/etc/modprobe.d/kvm.conf`, written
//!   atomically (mode 0644). An identical file is left alone; a different
//!   one is first copied to `kvm.conf.bak-<UTC YYYYmmddTHHMMSSZ>` beside it
//!   (`-N` appended when that name is taken).
//! - **What was done is recorded** in `<root>/var/lib/snp-build/installed.json`
//!   ([`Record`], written atomically). Its paths are as seen from the
//!   root, i.e. on the target system. A repeated install that finds
//!   kvm.conf unchanged keeps the earlier record's backup, so `uninstall`
//!   still restores what was there before the first install.
//! - **Commands are argument vectors**, never shell strings; their output
//!   goes to stderr, so stdout carries only the `--json` document.
//! - `uninstall` puts the kvm.conf backup back (or removes the kvm.conf
//!   an install created), but never touches a kvm.conf edited since the
//!   install; it prints the package removal command (`apt-get remove` /
//!   `dnf remove`) without running it, then removes the record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::verify::{ChecksumMismatch, Problem, ProblemKind};
use super::verify::{Contents, check_end, check_entry, open_tarball};
use super::{PackageFormat, is_debian_like, kernel_image_package, os_release};
use crate::error::UsageError;
use crate::exec::Cmd;
use crate::fsutil::{utc_stamp, write_atomic};
use crate::hash::sha256_hex;
use crate::signing::TrustedKey;

/// The release's QEMU, whose libraries decide the dependency install.
pub const QEMU_REL: &str = "usr/local/bin/qemu-system-x86_64";
/// Where kvm.conf goes, under the root.
pub const KVM_CONF_REL: &str = "etc/modprobe.d/kvm.conf";
/// Where the install record goes, under the root.
pub const RECORD_REL: &str = "var/lib/snp-build/installed.json";
/// Version of [`Record`]'s layout.
pub const RECORD_SCHEMA: u32 = 1;

/// Where an install goes: the live system, or a staging root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// How to ask before a live install (unless `yes`).
    pub ask: Ask<'a>,
    /// `--trusted-key PUB` (repeatable): only a release signed by one of
    /// these installs. Empty: the target's policy ([`trusted_keys`]).
    pub trusted_keys: &'a [PathBuf],
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
#[derive(Debug, Clone, Copy)]
pub struct UninstallRequest<'a> {
    pub root: Option<&'a Path>,
    pub dry_run: bool,
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

// ---------------------------------------------------------------------------
// The target: the live system or a staging root.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Live,
    Staging(PathBuf),
}

impl Target {
    fn new(root: Option<&Path>) -> anyhow::Result<Target> {
        let Some(dir) = root else {
            return Ok(Target::Live);
        };
        // As `cargo install --root`: a staging root that does not exist yet
        // is made, but only once the release is verified and the install
        // goes ahead (a file in the way is refused now).
        if dir.exists() && !dir.is_dir() {
            return Err(
                UsageError::new(format!("--root {}: not a directory", dir.display()))
                    .help("give a directory to unpack into (it is made when missing)")
                    .into(),
            );
        }
        let abs = if dir.exists() {
            dir.canonicalize()
        } else {
            std::path::absolute(dir)
        }
        .with_context(|| format!("resolving --root {}", dir.display()))?;
        if abs == Path::new("/") {
            return Err(UsageError::new("--root / is the live system")
                .help("drop --root for a live install (as root, with its checks and confirmation)")
                .into());
        }
        Ok(Target::Staging(abs))
    }

    fn root(&self) -> &Path {
        match self {
            Target::Live => Path::new("/"),
            Target::Staging(dir) => dir,
        }
    }

    fn is_live(&self) -> bool {
        *self == Target::Live
    }

    fn mode(&self) -> InstallMode {
        if self.is_live() {
            InstallMode::Live
        } else {
            InstallMode::Staging
        }
    }

    /// `rel` (relative, or absolute as seen on the target) under the root.
    fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        self.root().join(rel.strip_prefix("/").unwrap_or(rel))
    }

    /// The os-release that decides the package format.
    fn os_release(&self) -> PathBuf {
        let staged = self.path("etc/os-release");
        if !self.is_live() && staged.is_file() {
            return staged;
        }
        [
            Path::new("/etc/os-release"),
            Path::new("/usr/lib/os-release"),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or(Path::new("/etc/os-release"))
        .to_path_buf()
    }
}

/// Live changes need root; dry runs and staging installs do not.
fn check_privileges(target: &Target, dry_run: bool, command: &'static str) -> anyhow::Result<()> {
    if target.is_live() && !dry_run && !rustix::process::geteuid().is_root() {
        return Err(NotRoot { command }.into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding and unpacking the release.

/// A release ready to read: a directory, possibly unpacked from a tarball.
struct Opened {
    /// The release's files.
    dir: PathBuf,
    /// What the user named (made absolute): the directory or the tarball.
    given: PathBuf,
    /// `snp-release-<date>`.
    name: String,
    /// Holds the unpacked tarball until the install is done.
    _unpacked: Option<tempfile::TempDir>,
}

fn open_release(release: Option<&Path>) -> anyhow::Result<Opened> {
    let given = match release {
        Some(p) => p.to_path_buf(),
        None => newest_release(Path::new("."))?,
    };
    let given =
        std::path::absolute(&given).with_context(|| format!("resolving {}", given.display()))?;
    if given.is_dir() {
        // A private copy is verified and installed: a file swapped in the
        // release directory after the check (while we ask, say) never
        // reaches the system.
        let (tmp, dir) = private_copy(&given)?;
        return Ok(Opened {
            name: file_name(&given),
            dir,
            given,
            _unpacked: Some(tmp),
        });
    }
    if !given.is_file() {
        return Err(
            UsageError::new(format!("{}: no such release", given.display()))
                .help("give an snp-release-<date> directory or its .tar.gz")
                .into(),
        );
    }
    tracing::info!("unpacking {}", given.display());
    let (tmp, dir) = unpack(&given)?;
    Ok(Opened {
        name: file_name(&dir),
        dir,
        given,
        _unpacked: Some(tmp),
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// The newest `snp-release-*` directory in `dir` (names carry the date,
/// so the greatest name is the newest).
fn newest_release(dir: &Path) -> anyhow::Result<PathBuf> {
    let newest = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snp-release-"))
        .max();
    match newest {
        Some(name) => Ok(dir.join(name)),
        None => Err(UsageError::new(format!(
            "no snp-release-* directory in {}",
            std::path::absolute(dir).unwrap_or_default().display()
        ))
        .help("give the release: `snp-build install DIR` or `snp-build install snp-release-<date>.tar.gz`")
        .into()),
    }
}

/// Copies a release directory into a new private (0700) temporary
/// directory, symlinks as symlinks (so verification still sees and refuses
/// them); returns it and the copy.
fn private_copy(release: &Path) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::Builder::new()
        .prefix("snp-build-install-")
        .tempdir()
        .context("creating a temporary directory to copy the release into")?;
    let dir = tmp.path().join(file_name(release));
    for entry in walkdir::WalkDir::new(release) {
        let entry = entry.with_context(|| format!("reading {}", release.display()))?;
        let to = dir.join(entry.path().strip_prefix(release)?);
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&to)
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &to)
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to).map(drop)
        } else {
            bail!(
                "{}: a release holds only files and directories",
                entry.path().display()
            );
        }
        .with_context(|| format!("copying {} to {}", entry.path().display(), to.display()))?;
    }
    Ok((tmp, dir))
}

/// Unpacks a release tarball into a new temporary directory; returns it
/// and the release directory inside (the tarball's one top directory).
fn unpack(tarball: &Path) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let mut archive = open_tarball(tarball)?;
    let tmp = tempfile::Builder::new()
        .prefix("snp-build-install-")
        .tempdir()
        .context("creating a temporary directory to unpack the release in")?;
    let mut tops = BTreeSet::new();
    let entries = archive
        .entries()
        .with_context(|| format!("reading {}", tarball.display()))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("reading {}", tarball.display()))?;
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue; // pax metadata, not a file
        }
        let path = entry.path()?.into_owned();
        check_entry(&path, entry.header())
            .with_context(|| format!("refusing to unpack {}", tarball.display()))?;
        if let Some(Component::Normal(top)) = path.components().find(|c| *c != Component::CurDir) {
            tops.insert(top.to_os_string());
        }
        entry
            .unpack_in(tmp.path())
            .with_context(|| format!("unpacking {} from {}", path.display(), tarball.display()))?;
    }
    check_end(archive.into_inner())
        .with_context(|| format!("refusing to unpack {}", tarball.display()))?;
    let top = match tops.len() {
        1 => tops.into_iter().next().unwrap_or_default(),
        n => bail!(
            "{}: expected one top-level directory (snp-release-<date>/), found {n}",
            tarball.display()
        ),
    };
    let dir = tmp.path().join(top);
    Ok((tmp, dir))
}

// ---------------------------------------------------------------------------
// The host kernel package.

/// The host kernel image package an install puts on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPackage {
    /// Path inside the release (`linux/host/...`).
    pub file: String,
    pub format: PackageFormat,
    /// The package name (`linux-image-<release>`, or `kernel` for rpm).
    pub name: String,
    pub version: String,
    /// The kernel release it installs (`uname -r` after the reboot).
    pub kernel_release: String,
    pub sha256: String,
}

impl HostPackage {
    /// The command that removes it again (printed by `uninstall`).
    pub fn remove_command(&self) -> Vec<String> {
        match self.format {
            PackageFormat::Rpm => {
                let nevra = self.file_name().trim_end_matches(".rpm").to_string();
                vec!["dnf".into(), "remove".into(), nevra]
            }
            _ => vec!["apt-get".into(), "remove".into(), self.name.clone()],
        }
    }

    fn file_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }
}

/// The package format the target's distribution installs.
fn target_format(target: &Target) -> (PackageFormat, PathBuf) {
    let path = target.os_release();
    let os = os_release(&path);
    let format = if is_debian_like(&os) {
        PackageFormat::Deb
    } else {
        PackageFormat::Rpm
    };
    (format, path)
}

/// The manifest's `kernels.host` `image` and `release`, when it has them.
fn manifest_host(dir: &Path) -> (Option<String>, Option<String>) {
    let manifest: Value = std::fs::read(dir.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let host = &manifest["kernels"]["host"];
    let text = |v: &Value| v.as_str().map(str::to_string);
    (text(&host["image"]), text(&host["release"]))
}

/// Chooses the one host kernel image package of `format` among the listed
/// (verified) files.
fn choose_package(
    dir: &Path,
    sums: &BTreeMap<String, String>,
    format: PackageFormat,
    os_release: &Path,
) -> anyhow::Result<HostPackage> {
    let host: Vec<&String> = sums
        .keys()
        .filter(|p| p.starts_with("linux/host/"))
        .collect();
    let images: Vec<&String> = host
        .iter()
        .copied()
        .filter(|p| kernel_image_package(&[PathBuf::from(p)], format).is_some())
        .collect();
    let (manifest_image, manifest_release) = manifest_host(dir);
    let file = match images.as_slice() {
        [one] => (*one).clone(),
        [] if host.is_empty() => bail!(
            "{}: linux/host/ holds no host kernel package",
            dir.display()
        ),
        [] => bail!(
            "this system needs .{} packages (from {}), but linux/host/ holds: {}",
            format.extension(),
            os_release.display(),
            host.iter()
                .map(|p| p.trim_start_matches("linux/host/"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        many => match manifest_image.as_ref().filter(|m| many.contains(m)) {
            Some(m) => m.clone(),
            None => bail!(
                "expected one host kernel image package in linux/host/, found {}: {}",
                many.len(),
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    let (name, version, derived_release) = package_identity(&file, format);
    let kernel_release = match manifest_release {
        Some(r) if manifest_image.as_deref() == Some(file.as_str()) => r,
        _ => derived_release,
    };
    Ok(HostPackage {
        sha256: sums[&file].clone(),
        file,
        format,
        name,
        version,
        kernel_release,
    })
}

/// (name, version, kernel release) from a package's file name:
/// `linux-image-<kr>_<version>_<arch>.deb` or
/// `kernel-<kr with _ for ->-<rel>.<arch>.rpm`.
fn package_identity(file: &str, format: PackageFormat) -> (String, String, String) {
    let base = file.rsplit('/').next().unwrap_or(file);
    match format {
        PackageFormat::Rpm => {
            let stem = base.trim_end_matches(".rpm");
            let nvr = stem.rsplit_once('.').map_or(stem, |(nvr, _arch)| nvr);
            let version = nvr.strip_prefix("kernel-").unwrap_or(nvr).to_string();
            let upstream = version
                .rsplit_once('-')
                .map_or(version.as_str(), |(v, _)| v);
            ("kernel".into(), version.clone(), upstream.replace('_', "-"))
        }
        _ => {
            let mut parts = base.trim_end_matches(".deb").split('_');
            let name = parts.next().unwrap_or_default().to_string();
            let version = parts.next().unwrap_or_default().to_string();
            let release = name
                .strip_prefix("linux-image-")
                .unwrap_or(&name)
                .to_string();
            (name, version, release)
        }
    }
}

/// The command that puts the package on the target.
enum PackageStep {
    /// One command.
    Run(Cmd),
    /// `rpm2cpio PKG | cpio -idm ...` in the root.
    RpmToCpio { package: PathBuf, root: PathBuf },
}

impl PackageStep {
    fn new(target: &Target, package: &Path, format: PackageFormat) -> PackageStep {
        let root = target.root().to_path_buf();
        let cmd = |program: &str, args: &[&str]| {
            Cmd::new(program, &root)
                .args(args.iter().copied())
                .arg(package)
        };
        match (target, format) {
            (Target::Live, PackageFormat::Rpm) => PackageStep::Run(cmd("dnf", &["install", "-y"])),
            (Target::Live, _) => PackageStep::Run(cmd("dpkg", &["-i"])),
            (Target::Staging(_), PackageFormat::Rpm) => PackageStep::RpmToCpio {
                package: package.to_path_buf(),
                root,
            },
            (Target::Staging(_), _) => {
                PackageStep::Run(cmd("dpkg-deb", &["-x"]).arg(root.as_os_str()))
            }
        }
    }

    fn display(&self) -> String {
        match self {
            PackageStep::Run(cmd) => cmd.display(),
            PackageStep::RpmToCpio { package, root } => format!(
                "{} | {} (in {})",
                Cmd::new("rpm2cpio", root).arg(package).display(),
                Cmd::new("cpio", root).args(CPIO_ARGS).display(),
                root.display()
            ),
        }
    }

    fn tools(&self) -> Vec<String> {
        match self {
            PackageStep::Run(cmd) => vec![cmd.program.to_string_lossy().into_owned()],
            PackageStep::RpmToCpio { .. } => vec!["rpm2cpio".into(), "cpio".into()],
        }
    }

    fn run(&self) -> anyhow::Result<()> {
        match self {
            PackageStep::Run(cmd) => run(cmd),
            PackageStep::RpmToCpio { package, root } => rpm_to_cpio(package, root),
        }
    }
}

const CPIO_ARGS: [&str; 3] = ["-idm", "--quiet", "--no-absolute-filenames"];

/// `rpm2cpio PACKAGE | cpio -idm` in `root`, through a pipe, no shell.
fn rpm_to_cpio(package: &Path, root: &Path) -> anyhow::Result<()> {
    crate::exec::pipe_to_stderr(
        &Cmd::new("rpm2cpio", root).arg(package),
        &Cmd::new("cpio", root).args(CPIO_ARGS),
    )
    .with_context(|| format!("unpacking {} into {}", package.display(), root.display()))
}

/// Runs a command, its output on stderr; fails on a non-zero exit.
fn run(cmd: &Cmd) -> anyhow::Result<()> {
    crate::exec::run_to_stderr(cmd)
}

/// Fails naming the first of `tools` not on PATH.
fn check_tools(tools: &[String]) -> anyhow::Result<()> {
    for tool in tools {
        if crate::tools::probe::ProbeEnv::system()
            .find_program(tool)
            .is_none()
        {
            bail!("`{tool}` is not installed; it is needed to install this release");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Runtime dependencies.

/// What the release's QEMU needs from the distribution.
#[derive(Debug, Clone, Serialize)]
struct Dependencies {
    /// Libraries `ldd` reports "not found".
    missing: Vec<String>,
    /// The distribution's QEMU package set (installs their libraries).
    command: Vec<String>,
    /// Whether this install runs it (live, libraries missing).
    run: bool,
}

fn qemu_packages(format: PackageFormat) -> Vec<String> {
    let words: &[&str] = match format {
        PackageFormat::Rpm => &["dnf", "install", "-y", "qemu-kvm"],
        _ => &["apt-get", "install", "-y", "qemu-system-x86"],
    };
    words.iter().map(|w| w.to_string()).collect()
}

/// The libraries `ldd` reports "not found" (first word of each line).
fn parse_ldd(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("not found"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `ldd` on the release's QEMU; warns (and finds nothing) when it cannot tell.
fn missing_libraries(dir: &Path, command: &[String]) -> Vec<String> {
    let qemu = dir.join(QEMU_REL);
    if !qemu.is_file() {
        tracing::warn!("{QEMU_REL} is missing from the release; not checking QEMU's libraries");
        return Vec::new();
    }
    let result = crate::exec::capture(&Cmd::new("ldd", dir).arg(&qemu));
    match result {
        Err(_) => {
            tracing::warn!(
                "ldd is not installed; cannot check QEMU's libraries (if QEMU fails to start, run: {})",
                command.join(" ")
            );
            Vec::new()
        }
        // Not a dynamic executable: nothing to install.
        Ok(o) if !o.success => Vec::new(),
        Ok(o) => parse_ldd(&o.stdout),
    }
}

// ---------------------------------------------------------------------------
// kvm.conf.

/// What happens to `<root>/etc/modprobe.d/kvm.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KvmAction {
    /// No file there: write ours.
    Create,
    /// A different file there: back it up, then write ours.
    Replace { backup: PathBuf },
    /// Already ours, byte for byte.
    Unchanged,
}

impl KvmAction {
    fn name(&self) -> &'static str {
        match self {
            KvmAction::Create => "created",
            KvmAction::Replace { .. } => "replaced",
            KvmAction::Unchanged => "unchanged",
        }
    }
}

fn plan_kvm_conf(
    dest: &Path,
    ours: &[u8],
    now: std::time::SystemTime,
) -> anyhow::Result<KvmAction> {
    match std::fs::read(dest) {
        Ok(existing) if existing == ours => Ok(KvmAction::Unchanged),
        Ok(_) => Ok(KvmAction::Replace {
            backup: backup_path(dest, now),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KvmAction::Create),
        Err(e) => Err(e).with_context(|| format!("reading {}", dest.display())),
    }
}

/// `<dest>.bak-<UTC stamp>`, with `-N` appended while that name is taken.
fn backup_path(dest: &Path, now: std::time::SystemTime) -> PathBuf {
    let base = format!("{}.bak-{}", dest.display(), utc_stamp(now));
    let mut candidate = PathBuf::from(&base);
    let mut n = 0;
    while candidate.symlink_metadata().is_ok() {
        n += 1;
        candidate = PathBuf::from(format!("{base}-{n}"));
    }
    candidate
}

/// Backs up (when replacing) and writes kvm.conf, mode 0644.
fn apply_kvm_conf(dest: &Path, ours: &[u8], action: &KvmAction) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match action {
        KvmAction::Unchanged => return Ok(()),
        KvmAction::Replace { backup } => {
            std::fs::copy(dest, backup).with_context(|| {
                format!("backing up {} to {}", dest.display(), backup.display())
            })?;
        }
        KvmAction::Create => {}
    }
    write_atomic(dest, ours)?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", dest.display()))
}

// ---------------------------------------------------------------------------
// The record.

/// `<root>/var/lib/snp-build/installed.json`: what `install` did, for
/// `uninstall` and for people. Paths under `kvm_conf` are as seen from the
/// root (on the target system).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub schema_version: u32,
    /// `snp-release-<date>`.
    pub release: String,
    /// The release directory or tarball installed from.
    pub release_path: PathBuf,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub installed_at: String,
    /// `live` or `staging`.
    pub mode: InstallMode,
    pub package: HostPackage,
    /// How to remove the package (printed by `uninstall`, never run).
    pub remove_command: Vec<String>,
    pub kvm_conf: KvmRecord,
    /// The dependency install command, when this install ran it.
    pub dependencies_command: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds).
fn iso_time(now: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(now)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn read_record(path: &Path) -> anyhow::Result<Option<Record>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not an snp-build install record", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The kvm.conf part of the record: an unchanged file keeps what an
/// earlier install recorded about it.
fn kvm_record(
    action: &KvmAction,
    sha256: String,
    previous: Option<&Record>,
    on_target: impl Fn(&Path) -> PathBuf,
) -> KvmRecord {
    let path = on_target(Path::new(KVM_CONF_REL));
    let (backup, created) = match action {
        KvmAction::Create => (None, true),
        KvmAction::Replace { backup } => (Some(on_target(backup)), false),
        KvmAction::Unchanged => previous
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

// ---------------------------------------------------------------------------
// install.

/// Everything `install` will do, decided before anything changes.
struct Plan {
    target: Target,
    package: HostPackage,
    package_step: PackageStep,
    deps: Dependencies,
    kvm_src: Vec<u8>,
    kvm_dest: PathBuf,
    kvm_action: KvmAction,
}

impl Plan {
    /// The tools the steps that will run need.
    fn tools(&self) -> Vec<String> {
        let mut tools = self.package_step.tools();
        if self.deps.run {
            tools.push(self.deps.command[0].clone());
        }
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
    let target = Target::new(req.root)?;
    check_privileges(&target, req.dry_run, "install")?;
    let trusted = trusted_keys(&target, req.trusted_keys)?;
    let opened = open_release(req.release)?;
    let contents = Contents::from_dir(&opened.dir)?;
    let sums = super::verify::check_sums(&contents, &opened.given)?;
    let signature = super::verify::require_signature(&contents, &opened.given, &trusted)?;
    super::verify::check_documents(&contents, &opened.given, &sums, false)?;
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
    let plan = make_plan(&target, &opened, &sums)?;
    describe_plan(&plan, req.dry_run);
    if req.dry_run {
        tracing::info!("dry run: nothing was changed");
        return Ok(summary(&opened, &plan, sums.len(), true, None));
    }
    check_tools(&plan.tools())?;
    if target.is_live() && !req.yes {
        confirm(&plan, req.ask)?;
    }
    let record_path = execute(&plan, &opened)?;
    next_steps(&plan);
    Ok(summary(
        &opened,
        &plan,
        sums.len(),
        false,
        Some(record_path),
    ))
}

fn make_plan(
    target: &Target,
    opened: &Opened,
    sums: &BTreeMap<String, String>,
) -> anyhow::Result<Plan> {
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
    let command = qemu_packages(format);
    let missing = missing_libraries(&opened.dir, &command);
    let deps = Dependencies {
        run: target.is_live() && !missing.is_empty(),
        missing,
        command,
    };
    let kvm_src = std::fs::read(opened.dir.join("kvm.conf"))
        .with_context(|| format!("reading kvm.conf from {}", opened.given.display()))?;
    let kvm_dest = target.path(KVM_CONF_REL);
    let kvm_action = plan_kvm_conf(&kvm_dest, &kvm_src, std::time::SystemTime::now())?;
    Ok(Plan {
        target: target.clone(),
        package,
        package_step,
        deps,
        kvm_src,
        kvm_dest,
        kvm_action,
    })
}

/// Prints each step; in a dry run as "would".
fn describe_plan(plan: &Plan, dry_run: bool) {
    let will = if dry_run { "[dry-run] would" } else { "will" };
    if let Target::Staging(root) = &plan.target {
        tracing::info!(
            "staging install into {}: the package is unpacked, no maintainer scripts run, no dependencies are installed",
            root.display()
        );
    }
    tracing::info!("{will} run: {}", plan.package_step.display());
    let deps = &plan.deps;
    if deps.missing.is_empty() {
        tracing::info!("QEMU's shared libraries are all present: no distribution packages needed");
    } else if deps.run && !dry_run {
        tracing::info!(
            "QEMU needs libraries this system lacks ({}): will run: {}",
            deps.missing.join(", "),
            deps.command.join(" ")
        );
    } else {
        tracing::info!(
            "QEMU needs libraries this system lacks ({}); on the target system run: {}",
            deps.missing.join(", "),
            deps.command.join(" ")
        );
    }
    let dest = plan.kvm_dest.display();
    match &plan.kvm_action {
        KvmAction::Unchanged => tracing::info!("{dest} is already up to date: left alone"),
        KvmAction::Create => tracing::info!("{will} write {dest}"),
        KvmAction::Replace { backup } => tracing::info!(
            "{will} keep the existing, different {dest} as {}, then write {dest}",
            backup.display()
        ),
    }
}

/// Asks on a terminal; refuses without one.
fn confirm(plan: &Plan, ask: Ask<'_>) -> anyhow::Result<()> {
    if ask(&format!(
        "Install {} and kvm.conf on this system?",
        plan.package.name
    ))? {
        return Ok(());
    }
    bail!("not confirmed: nothing was changed")
}

/// Does the plan; returns where the record went.
fn execute(plan: &Plan, opened: &Opened) -> anyhow::Result<PathBuf> {
    if let Target::Staging(root) = &plan.target {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating --root {}", root.display()))?;
    }
    let record_path = plan.target.path(RECORD_REL);
    let previous = read_record(&record_path).unwrap_or_else(|e| {
        tracing::warn!("{e:#}; replacing it");
        None
    });
    plan.package_step.run().with_context(|| {
        format!(
            "installing {}{}",
            plan.package.file,
            if plan.target.is_live() && plan.package.format == PackageFormat::Deb {
                " (if dpkg names missing dependencies, `apt-get -f install` installs them; then run snp-build install again)"
            } else {
                ""
            }
        )
    })?;
    if plan.deps.run {
        let cmd = Cmd::new(&plan.deps.command[0], Path::new("/")).args(&plan.deps.command[1..]);
        run(&cmd)?;
    }
    apply_kvm_conf(&plan.kvm_dest, &plan.kvm_src, &plan.kvm_action)?;
    let record = Record {
        schema_version: RECORD_SCHEMA,
        release: opened.name.clone(),
        release_path: opened.given.clone(),
        installed_at: iso_time(std::time::SystemTime::now()),
        mode: plan.target.mode(),
        remove_command: plan.package.remove_command(),
        kvm_conf: kvm_record(
            &plan.kvm_action,
            sha256_hex(&plan.kvm_src),
            previous.as_ref(),
            |p| plan.on_target(p),
        ),
        package: plan.package.clone(),
        dependencies_command: plan.deps.run.then(|| plan.deps.command.clone()),
    };
    write_atomic(&record_path, &serde_json::to_vec_pretty(&record)?)?;
    tracing::info!("recorded what was done in {}", record_path.display());
    Ok(record_path)
}

fn next_steps_lines(plan: &Plan) -> Vec<String> {
    let kr = &plan.package.kernel_release;
    vec![
        format!(
            "Reboot into the SNP host kernel {kr} (choose it in the GRUB menu if it is not the default), then check that SEV-SNP is enabled:"
        ),
        "  cat /sys/module/kvm_amd/parameters/sev_snp    # should print Y".into(),
        "  snp-build doctor --host".into(),
    ]
}

fn next_steps(plan: &Plan) {
    match &plan.target {
        Target::Live => tracing::info!("done."),
        Target::Staging(root) => tracing::info!(
            "staged into {}. No maintainer scripts ran: the target still has to build the initramfs and boot loader entry for {}.",
            root.display(),
            plan.package.kernel_release
        ),
    }
    for line in next_steps_lines(plan) {
        tracing::info!("{}", line);
    }
}

/// What `install` did (its JSON document).
#[derive(Debug, Serialize)]
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
    kvm_conf: KvmConfOutcome,
    record: Option<PathBuf>,
    next_steps: Vec<String>,
}

/// What happened to kvm.conf.
#[derive(Debug, Serialize)]
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
        package_command: plan.package_step.display(),
        dependencies: plan.deps.clone(),
        kvm_conf: KvmConfOutcome {
            path: plan.kvm_dest.clone(),
            action: plan.kvm_action.name(),
            backup,
        },
        record,
        next_steps: next_steps_lines(plan),
    }
}

// ---------------------------------------------------------------------------
// uninstall.

/// `snp-build uninstall`.
pub fn uninstall(req: &UninstallRequest) -> anyhow::Result<Uninstalled> {
    let target = Target::new(req.root)?;
    check_privileges(&target, req.dry_run, "uninstall")?;
    let record_path = target.path(RECORD_REL);
    let Some(record) = read_record(&record_path)? else {
        bail!(
            "nothing to uninstall: {} does not exist (snp-build install writes it)",
            record_path.display()
        );
    };
    let kvm_action = undo_kvm_conf(&target, &record.kvm_conf, req.dry_run)?;
    let remove = record.remove_command.join(" ");
    if record.mode == InstallMode::Staging {
        tracing::info!(
            "{} was unpacked into {} without the package manager: delete its files from there; on a system where it is installed, remove it with: {remove}",
            record.package.name,
            target.root().display()
        );
    } else {
        tracing::info!("to remove the host kernel package, run: {remove}");
    }
    if req.dry_run {
        tracing::info!("[dry-run] would remove {}", record_path.display());
        tracing::info!("dry run: nothing was changed");
    } else {
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
        release: record.release,
        record: record_path,
        package: record.package,
        remove_command: record.remove_command,
    })
}

/// What `uninstall` did (its JSON document).
#[derive(Debug, Serialize)]
pub struct Uninstalled {
    root: PathBuf,
    mode: InstallMode,
    dry_run: bool,
    release: String,
    record: PathBuf,
    kvm_conf: KvmConfOutcome,
    package: HostPackage,
    remove_command: Vec<String>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    const HASH: &str = "7bc4fa3b930c2964087c3b239250a63c2275c24dfa7bd6abdabdfec68e8cf5be";

    #[test]
    fn ldd_not_found_lines_name_the_libraries() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibpixman-1.so.0 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\tlibslirp.so.0 => not found\n";
        assert_eq!(parse_ldd(text), ["libpixman-1.so.0", "libslirp.so.0"]);
        assert!(parse_ldd("\tnot a dynamic executable\n").len() <= 1);
    }

    #[test]
    fn package_identity_from_file_names() {
        let deb = "linux/host/linux-image-6.1.0-snp-host-abc_6.1.0-snp-host-abc-1_amd64.deb";
        assert_eq!(
            package_identity(deb, PackageFormat::Deb),
            (
                "linux-image-6.1.0-snp-host-abc".into(),
                "6.1.0-snp-host-abc-1".into(),
                "6.1.0-snp-host-abc".into()
            )
        );
        let rpm = "linux/host/kernel-6.1.0_snp_host_abc-1.x86_64.rpm";
        assert_eq!(
            package_identity(rpm, PackageFormat::Rpm),
            (
                "kernel".into(),
                "6.1.0_snp_host_abc-1".into(),
                "6.1.0-snp-host-abc".into()
            )
        );
        let p = HostPackage {
            file: rpm.into(),
            format: PackageFormat::Rpm,
            name: "kernel".into(),
            version: "6.1.0_snp_host_abc-1".into(),
            kernel_release: "6.1.0-snp-host-abc".into(),
            sha256: HASH.into(),
        };
        assert_eq!(
            p.remove_command(),
            ["dnf", "remove", "kernel-6.1.0_snp_host_abc-1.x86_64"]
        );
    }

    #[test]
    fn the_dbg_package_is_never_chosen() {
        let dir = tempfile::tempdir().unwrap();
        let sums: BTreeMap<String, String> = [
            "linux/host/linux-image-6.1.0-snp-host-abc-dbg_6.1.0-snp-host-abc-1_amd64.deb",
            "linux/host/linux-headers-6.1.0-snp-host-abc_6.1.0-snp-host-abc-1_amd64.deb",
            "linux/host/linux-image-6.1.0-snp-host-abc_6.1.0-snp-host-abc-1_amd64.deb",
            "linux/guest/linux-image-6.1.0-snp-guest-abc_6.1.0-snp-guest-abc-1_amd64.deb",
        ]
        .iter()
        .map(|p| (p.to_string(), HASH.to_string()))
        .collect();
        let p = choose_package(dir.path(), &sums, PackageFormat::Deb, Path::new("os")).unwrap();
        assert_eq!(
            p.file,
            "linux/host/linux-image-6.1.0-snp-host-abc_6.1.0-snp-host-abc-1_amd64.deb"
        );
        let err = choose_package(dir.path(), &sums, PackageFormat::Rpm, Path::new("os"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs .rpm packages"), "{err}");
    }

    #[test]
    fn backups_get_a_utc_stamp_and_a_counter_when_taken() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("kvm.conf");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_369_295);
        let first = backup_path(&dest, t);
        assert_eq!(first, dir.path().join("kvm.conf.bak-20261122T174135Z"));
        std::fs::write(&first, "x").unwrap();
        assert_eq!(
            backup_path(&dest, t),
            dir.path().join("kvm.conf.bak-20261122T174135Z-1")
        );
        assert_eq!(iso_time(t), "2026-11-22T17:41:35Z");
    }

    #[test]
    fn kvm_conf_plans() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("kvm.conf");
        let now = SystemTime::now();
        assert_eq!(
            plan_kvm_conf(&dest, b"a\n", now).unwrap(),
            KvmAction::Create
        );
        std::fs::write(&dest, "a\n").unwrap();
        assert_eq!(
            plan_kvm_conf(&dest, b"a\n", now).unwrap(),
            KvmAction::Unchanged
        );
        assert!(matches!(
            plan_kvm_conf(&dest, b"b\n", now).unwrap(),
            KvmAction::Replace { .. }
        ));
    }
}
