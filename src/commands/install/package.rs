//! The host kernel image package: which file of the release, what it is
//! called and installs, the command that puts it on the target, and what
//! the package manager says about it afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::target::Target;
use crate::exec::Cmd;
use crate::host::{PackageFormat, is_debian_like, kernel_image_package, os_release};

/// The host kernel image package an install puts on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// The command that removes it again (run by `uninstall` when this
    /// install put it there).
    pub fn remove_command(&self) -> Vec<String> {
        remove_command(self.format, &self.id())
    }

    /// What `dpkg` or `rpm` calls this package on an installed system: its
    /// name (deb), or `name-version.arch` (rpm, where every kernel is
    /// called `kernel`).
    pub fn id(&self) -> String {
        match self.format {
            PackageFormat::Rpm => self.file_name().trim_end_matches(".rpm").to_string(),
            _ => self.name.clone(),
        }
    }

    /// What the package manager says about this package on the live
    /// system: `None` when it is not installed (or cannot be asked).
    pub(super) fn installed_state(&self) -> Option<PackageState> {
        package_state(self.format, &self.id())
    }

    fn file_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }
}

/// The state of package `id` ([`HostPackage::id`]) on the live system.
pub(super) fn package_state(format: PackageFormat, id: &str) -> Option<PackageState> {
    match format {
        PackageFormat::Rpm => {
            let cmd = Cmd::new("rpm", Path::new("/"))
                .args(["-q", "--qf", "ii %{VERSION}-%{RELEASE}"])
                .arg(id);
            let out = crate::exec::capture(&cmd).ok().filter(|o| o.success)?;
            PackageState::parse(&out.stdout)
        }
        _ => deb_state(id),
    }
}

/// The command that removes package `id`: `dpkg --purge`, which refuses
/// rather than take other packages with it, or `dnf remove -y`.
pub(super) fn remove_command(format: PackageFormat, id: &str) -> Vec<String> {
    match format {
        PackageFormat::Rpm => vec!["dnf".into(), "remove".into(), "-y".into(), id.into()],
        _ => vec!["dpkg".into(), "--purge".into(), id.into()],
    }
}

/// What dpkg says about a package on the live system; `None` when it is
/// not installed (or dpkg cannot be asked).
pub(super) fn deb_state(name: &str) -> Option<PackageState> {
    let cmd = Cmd::new("dpkg-query", Path::new("/"))
        .args(["-W", "-f", "${db:Status-Abbrev}${Version}"])
        .arg(name);
    let out = crate::exec::capture(&cmd).ok().filter(|o| o.success)?;
    PackageState::parse(&out.stdout)
}

/// The package format the target's distribution installs.
pub(super) fn target_format(target: &Target) -> (PackageFormat, PathBuf) {
    let path = target.os_release();
    let os = os_release(&path);
    let format = if is_debian_like(&os) {
        PackageFormat::Deb
    } else {
        PackageFormat::Rpm
    };
    (format, path)
}

/// The release's host kernel as its manifest names it: its image
/// package's path in the release and its `uname -r`, when it has them.
pub fn release_host_kernel(dir: &Path) -> (Option<String>, Option<String>) {
    use crate::stage::kernel::{self, Kernel};
    let host = crate::release::manifest::Manifest::read(dir)
        .ok()
        .and_then(|m| m.section::<kernel::Manifest>(kernel::spec(Kernel::Host).manifest));
    match host {
        Some(k) => (k.image, Some(k.release)),
        None => (None, None),
    }
}

pub(super) fn choose_package(
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
    let (manifest_image, manifest_release) = release_host_kernel(dir);
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
pub(super) fn package_identity(file: &str, format: PackageFormat) -> (String, String, String) {
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
pub(super) enum PackageStep {
    /// One command.
    Run(Cmd),
    /// `rpm2cpio PKG | cpio -idm ...` in the root.
    RpmToCpio { package: PathBuf, root: PathBuf },
}

impl PackageStep {
    pub(super) fn new(target: &Target, package: &Path, format: PackageFormat) -> PackageStep {
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

    pub(super) fn display(&self) -> String {
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

    pub(super) fn tools(&self) -> Vec<String> {
        match self {
            PackageStep::Run(cmd) => vec![cmd.program.to_string_lossy().into_owned()],
            PackageStep::RpmToCpio { .. } => vec!["rpm2cpio".into(), "cpio".into()],
        }
    }

    /// Runs it; a command that ran and failed is returned with what it
    /// printed (dpkg names a failed kernel hook only there).
    pub(super) fn run(&self) -> anyhow::Result<Result<(), crate::exec::Teed>> {
        match self {
            PackageStep::Run(cmd) => {
                let teed = crate::exec::run_teeing(cmd)?;
                Ok(if teed.success { Ok(()) } else { Err(teed) })
            }
            PackageStep::RpmToCpio { package, root } => rpm_to_cpio(package, root).map(Ok),
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

/// A package's state as `dpkg-query`'s `${db:Status-Abbrev}` gives it:
/// `ii` installed, `iF` half-configured (its postinst failed), `iU`
/// unpacked, and so on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PackageState {
    pub abbrev: String,
    pub version: String,
}

impl PackageState {
    fn parse(text: &str) -> Option<PackageState> {
        let abbrev: String = text.chars().take(2).collect();
        let version = text.get(3..).unwrap_or_default().trim().to_string();
        // "un" / "pn": known to dpkg, not installed.
        if abbrev.len() < 2 || abbrev.starts_with('u') || abbrev.starts_with('p') {
            return None;
        }
        Some(PackageState { abbrev, version })
    }

    /// Installed and configured (`ii`, or `hi` when held); not `rc`
    /// (removed, its configuration kept) nor half-installed.
    pub(super) fn is_installed(&self) -> bool {
        self.abbrev.chars().nth(1) == Some('i')
    }

    /// `iF`: unpacked, but its postinst failed.
    pub(super) fn is_half_configured(&self) -> bool {
        self.abbrev.ends_with('F')
    }
}

/// The kernel hook that failed, from dpkg's output: run-parts names it
/// (`run-parts: /etc/kernel/postinst.d/zz-update-grub exited with return
/// code 1`).
pub(super) fn failed_hook(output: &str) -> Option<String> {
    output.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("run-parts: ")?;
        let (hook, _) = rest.split_once(" exited with")?;
        Some(hook.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "7bc4fa3b930c2964087c3b239250a63c2275c24dfa7bd6abdabdfec68e8cf5be";

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
            ["dnf", "remove", "-y", "kernel-6.1.0_snp_host_abc-1.x86_64"]
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
    fn dpkg_states_and_failed_hooks() {
        let half = PackageState::parse("iF 6.1.0-1").unwrap();
        assert!(half.is_half_configured() && !half.is_installed());
        assert_eq!(half.version, "6.1.0-1");
        assert!(PackageState::parse("ii 6.1.0-1").unwrap().is_installed());
        assert_eq!(PackageState::parse("un "), None);
        let out = "Setting up linux-image-6.1.0 (6.1.0-1) ...\nrun-parts: /etc/kernel/postinst.d/zz-fail exited with return code 1\ndpkg: error processing package\n";
        assert_eq!(
            failed_hook(out).as_deref(),
            Some("/etc/kernel/postinst.d/zz-fail")
        );
    }
}
