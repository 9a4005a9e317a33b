//! This machine as a build box and as an SNP host: its distribution family
//! and package format ([`os_release`], [`PackageFormat`]), its package
//! manager ([`packages`]), the build checks ([`doctor`], [`preflight`]),
//! whether it can run SNP guests ([`snp`], [`platform`], against the
//! versions of [`minimums`]), and whether it can boot a
//! kernel release ([`boot`]). Installing a release on it is a command
//! (`commands::install`); this module holds only the machine's facts.
//!
//! Guarantees:
//! - Debian-like means os-release `ID` or any word of `ID_LIKE` is
//!   `debian` (build.sh's exact `ID_LIKE == debian` missed
//!   `ID_LIKE="ubuntu debian"`); everything else gets rpm and dnf.
//! - Nothing here knows the pipeline's components: checks take plain lists
//!   of what each stage needs.

pub mod boot;
pub mod doctor;
pub mod launcher;
pub mod minimums;
pub mod packages;
pub mod platform;
pub mod preflight;
pub mod snp;
pub mod sysroot;

/// Where `install` places each release's userland (QEMU, OVMF,
/// `launch-qemu.sh`, ...), one directory per release, under the root.
pub const RELEASES_REL: &str = "opt/snp-build/releases";
/// The link to the release installed last, which `doctor --host` checks
/// when no `--release` is given.
pub const STACK_CURRENT_REL: &str = "opt/snp-build/current";

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use packages::Distro;

/// The os-release file the binary reads (tests pass their own to the
/// library functions).
pub const OS_RELEASE: &str = "/etc/os-release";

/// The kernel package format: the `package-format` knob (`auto`), or what
/// a host uses (`deb`, `rpm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PackageFormat {
    Auto,
    Deb,
    Rpm,
}

impl PackageFormat {
    /// The packages' file extension (`deb` for anything but rpm).
    pub fn extension(self) -> &'static str {
        match self {
            PackageFormat::Rpm => "rpm",
            _ => "deb",
        }
    }
}

/// `/etc/os-release` as key -> value (quotes removed).
pub fn os_release(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches(|c| c == '"' || c == '\'').to_string(),
            )
        })
        .collect()
}

/// Debian-like when `ID` or any word of `ID_LIKE` is `debian` (build.sh
/// compared `ID_LIKE == debian` and missed `ID_LIKE="ubuntu debian"`).
/// The build box's OS as far as outputs can depend on it: os-release's
/// `ID` and `VERSION_ID` and the architecture (`debian 12 x86_64`). Its
/// compilers and libraries come with it, and its hostname, user and paths
/// do not matter (they never reach an output).
pub fn os_identity(os_release_path: &Path) -> String {
    let os = os_release(os_release_path);
    let field = |k: &str| os.get(k).cloned().unwrap_or_else(|| "unknown".to_string());
    format!(
        "{} {} {}",
        field("ID"),
        field("VERSION_ID"),
        std::env::consts::ARCH
    )
}

pub fn is_debian_like(os: &BTreeMap<String, String>) -> bool {
    let id = os.get("ID").map(String::as_str) == Some("debian");
    let like = os
        .get("ID_LIKE")
        .is_some_and(|l| l.split_whitespace().any(|w| w == "debian"));
    id || like
}

/// The concrete package format for `knob` on this host.
pub fn package_format(knob: PackageFormat, os_release_path: &Path) -> PackageFormat {
    match knob {
        PackageFormat::Auto => {
            if is_debian_like(&os_release(os_release_path)) {
                PackageFormat::Deb
            } else {
                PackageFormat::Rpm
            }
        }
        other => other,
    }
}

/// The kernel image package among a kernel build's packages:
/// `linux-image-<rel>_...` but never its `-dbg` sibling (build.sh's
/// `linux-image-*.deb` matched both); for rpm, `kernel-<ver>` but not
/// `kernel-headers`/`kernel-devel`.
pub fn kernel_image_package(packages: &[PathBuf], format: PackageFormat) -> Option<PathBuf> {
    packages
        .iter()
        .find(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            match format {
                PackageFormat::Rpm => {
                    name.starts_with("kernel-")
                        && name[7..].starts_with(|c: char| c.is_ascii_digit())
                }
                _ => {
                    let package = name.split('_').next().unwrap_or("");
                    package.starts_with("linux-image-") && !package.ends_with("-dbg")
                }
            }
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(text: &str) -> BTreeMap<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("os-release");
        std::fs::write(&p, text).unwrap();
        os_release(&p)
    }

    #[test]
    fn debian_family() {
        assert!(is_debian_like(&os("ID=debian\n")));
        assert!(is_debian_like(&os("ID=ubuntu\nID_LIKE=debian\n")));
        assert!(is_debian_like(&os("ID=pop\nID_LIKE=\"ubuntu debian\"\n")));
        assert!(!is_debian_like(&os("ID=fedora\n")));
        assert!(!is_debian_like(&os(
            "ID=\"rhel\"\nID_LIKE=\"centos fedora\"\n"
        )));
        assert!(!is_debian_like(&os("ID=foo\nID_LIKE=debianish\n")));
    }

    #[test]
    fn the_image_package_is_never_the_dbg_one() {
        let debs: Vec<PathBuf> = [
            "linux-headers-6.1.0-snp-host-abc_6.1.0-snp-host-abc-1_amd64.deb",
            "linux-image-6.1.0-snp-host-abc-dbg_6.1.0-snp-host-abc-1_amd64.deb",
            "linux-image-6.1.0-snp-host-abc_6.1.0-snp-host-abc-1_amd64.deb",
            "linux-libc-dev_6.1.0-snp-host-abc-1_amd64.deb",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(
            kernel_image_package(&debs, PackageFormat::Deb).unwrap(),
            PathBuf::from("linux-image-6.1.0-snp-host-abc_6.1.0-snp-host-abc-1_amd64.deb")
        );
        let rpms: Vec<PathBuf> = [
            "kernel-headers-6.1.0_snp_host_abc-1.x86_64.rpm",
            "kernel-6.1.0_snp_host_abc-1.x86_64.rpm",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(
            kernel_image_package(&rpms, PackageFormat::Rpm).unwrap(),
            PathBuf::from("kernel-6.1.0_snp_host_abc-1.x86_64.rpm")
        );
    }
}
