//! Facts about the build host: distro family (for deb vs rpm), gcc.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::PackageFormat;

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

/// The edk2 toolchain tag for a gcc version string (`gcc -dumpversion`):
/// GCC5 for gcc 5 and later, GCC4x for gcc 4.x, as build.sh.
pub fn edk2_toolchain(gcc_version: &str) -> String {
    let mut parts = gcc_version.trim().split('.');
    let major = parts.next().unwrap_or("");
    if major == "4" {
        format!("GCC4{}", parts.next().unwrap_or("9"))
    } else {
        "GCC5".to_string()
    }
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
    fn toolchains() {
        assert_eq!(edk2_toolchain("12"), "GCC5");
        assert_eq!(edk2_toolchain("4.8.5"), "GCC48");
        assert_eq!(edk2_toolchain("5.4.0"), "GCC5");
    }
}
