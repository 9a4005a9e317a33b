//! The release's QEMU's runtime libraries: what `ldd` says is missing,
//! and the distribution packages that provide exactly those, installed
//! as an admin would (`apt-get update`, then `apt-get install
//! --no-install-recommends`; on rpm distributions `dnf` by soname, without
//! weak dependencies). `qemu-system-x86` with recommends brought 364
//! packages and 925 MB, a desktop, for the handful of libraries QEMU
//! really lacked.

use std::path::Path;

use serde::Serialize;

use super::QEMU_REL;
use crate::exec::Cmd;
use crate::host::PackageFormat;
use crate::host::packages::{Distro, Recommends};

/// Debian package for each library QEMU 7.2 to 9.x links (Debian 12 and
/// Ubuntu 22.04/24.04 names; where Ubuntu differs, its t64 name works too
/// because apt resolves the package, not the file). A soname not here
/// falls back to [`DEBIAN_FALLBACK`], which depends on all of them.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("libaio.so.1", "libaio1"),
    ("libasound.so.2", "libasound2"),
    ("libbpf.so.1", "libbpf1"),
    ("libbz2.so.1.0", "libbz2-1.0"),
    ("libcapstone.so.4", "libcapstone4"),
    ("libcap-ng.so.0", "libcap-ng0"),
    ("libcurl-gnutls.so.4", "libcurl3-gnutls"),
    ("libdw.so.1", "libdw1"),
    ("libelf.so.1", "libelf1"),
    ("libepoxy.so.0", "libepoxy0"),
    ("libfdt.so.1", "libfdt1"),
    ("libfuse3.so.3", "libfuse3-3"),
    ("libgbm.so.1", "libgbm1"),
    ("libgcrypt.so.20", "libgcrypt20"),
    ("libgio-2.0.so.0", "libglib2.0-0"),
    ("libglib-2.0.so.0", "libglib2.0-0"),
    ("libgmodule-2.0.so.0", "libglib2.0-0"),
    ("libgobject-2.0.so.0", "libglib2.0-0"),
    ("libgnutls.so.30", "libgnutls30"),
    ("libibverbs.so.1", "libibverbs1"),
    ("libjpeg.so.62", "libjpeg62-turbo"),
    ("liblzo2.so.2", "liblzo2-2"),
    ("libncursesw.so.6", "libncursesw6"),
    ("libnettle.so.8", "libnettle8"),
    ("libnuma.so.1", "libnuma1"),
    ("libpixman-1.so.0", "libpixman-1-0"),
    ("libpmem.so.1", "libpmem1"),
    ("libpng16.so.16", "libpng16-16"),
    ("librdmacm.so.1", "librdmacm1"),
    ("libsasl2.so.2", "libsasl2-2"),
    ("libseccomp.so.2", "libseccomp2"),
    ("libslirp.so.0", "libslirp0"),
    ("libsnappy.so.1", "libsnappy1v5"),
    ("libspice-server.so.1", "libspice-server1"),
    ("libssh.so.4", "libssh-4"),
    ("libtinfo.so.6", "libtinfo6"),
    ("libudev.so.1", "libudev1"),
    ("liburing.so.2", "liburing2"),
    ("libusb-1.0.so.0", "libusb-1.0-0"),
    ("libusbredirparser.so.1", "libusbredirparser1"),
    ("libvdeplug.so.2", "libvdeplug2"),
    ("libvirglrenderer.so.1", "libvirglrenderer1"),
    ("libz.so.1", "zlib1g"),
    ("libzstd.so.1", "libzstd1"),
];

/// What provides every library QEMU can link on Debian-like systems.
pub(super) const DEBIAN_FALLBACK: &str = "qemu-system-x86";

/// What the release's QEMU needs from the distribution.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(super) struct Dependencies {
    /// Libraries `ldd` reports "not found".
    pub missing: Vec<String>,
    /// The packages that provide them (Debian names, or rpm soname
    /// provides such as `libpixman-1.so.0()(64bit)`).
    pub packages: Vec<String>,
    /// Refreshes the package lists first (`apt-get update`, `dnf makecache`).
    pub update_command: Vec<String>,
    /// Installs [`Self::packages`].
    pub command: Vec<String>,
    /// Whether this install runs them (live, libraries missing).
    pub run: bool,
}

impl Dependencies {
    /// Works out the packages for the libraries `ldd` finds missing.
    pub(super) fn plan(dir: &Path, format: PackageFormat, live: bool) -> Dependencies {
        let missing = missing_libraries(dir, format);
        let packages = packages_for(&missing, format);
        let (update_command, command) = commands(format, &packages);
        Dependencies {
            run: live && !missing.is_empty(),
            missing,
            packages,
            update_command,
            command,
        }
    }

    /// The command that shows what the install would download and use,
    /// installing nothing: apt's `--print-uris` (its `--assume-no` is not
    /// enough: apt asks only when it adds packages beyond those named, and
    /// otherwise installs), dnf's `--assumeno` (dnf always asks).
    pub(super) fn size_command(&self, format: PackageFormat) -> Vec<String> {
        let instead = match format {
            PackageFormat::Rpm => "--assumeno",
            _ => "--print-uris",
        };
        self.command
            .iter()
            .map(|w| {
                if w == "-y" {
                    instead.to_string()
                } else {
                    w.clone()
                }
            })
            .collect()
    }
}

/// The package names for the missing sonames, each once, in order. An
/// unknown soname on Debian brings [`DEBIAN_FALLBACK`] (with a warning);
/// rpm distributions install by soname, which needs no table.
fn packages_for(missing: &[String], format: PackageFormat) -> Vec<String> {
    let mut packages: Vec<String> = Vec::new();
    for soname in missing {
        let package = match format {
            PackageFormat::Rpm => format!("{soname}()(64bit)"),
            _ => match DEBIAN_PACKAGES.iter().find(|(s, _)| s == soname) {
                Some((_, p)) => p.to_string(),
                None => {
                    tracing::warn!(
                        "no package is known for {soname}: installing {DEBIAN_FALLBACK}, which provides every library QEMU links"
                    );
                    DEBIAN_FALLBACK.to_string()
                }
            },
        };
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    packages
}

/// (refresh, install) for the format, as argument vectors: without
/// recommends (see the module doc).
fn commands(format: PackageFormat, packages: &[String]) -> (Vec<String>, Vec<String>) {
    let distro = Distro::of_format(format);
    (
        distro.refresh_command(),
        distro.install_words(packages, Recommends::Without),
    )
}

/// The download and disk sizes from `apt-get install --assume-no` or
/// `dnf install --assumeno` output, as the lines they print.
pub(super) fn size_lines(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("Need to get")
                || l.starts_with("After this operation")
                || l.starts_with("Total download size")
                || l.starts_with("Installed size")
                || l.contains("newly installed")
        })
        .map(str::to_string)
        .collect()
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
fn missing_libraries(dir: &Path, format: PackageFormat) -> Vec<String> {
    let qemu = dir.join(QEMU_REL);
    if !qemu.is_file() {
        tracing::warn!("{QEMU_REL} is missing from the release; not checking QEMU's libraries");
        return Vec::new();
    }
    match crate::exec::capture(&Cmd::new("ldd", dir).arg(&qemu)) {
        Err(_) => {
            let fallback = match format {
                PackageFormat::Rpm => "dnf install qemu-kvm",
                _ => "apt-get install --no-install-recommends qemu-system-x86",
            };
            tracing::warn!(
                "ldd is not installed; cannot check QEMU's libraries (if QEMU fails to start, run: {fallback})"
            );
            Vec::new()
        }
        // Not a dynamic executable: nothing to install.
        Ok(o) if !o.success => Vec::new(),
        Ok(o) => parse_ldd(&o.stdout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_not_found_lines_name_the_libraries() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibpixman-1.so.0 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\tlibslirp.so.0 => not found\n";
        assert_eq!(parse_ldd(text), ["libpixman-1.so.0", "libslirp.so.0"]);
        assert!(parse_ldd("\tnot a dynamic executable\n").len() <= 1);
    }

    #[test]
    fn sonames_map_to_packages_once_each() {
        let missing: Vec<String> = [
            "libpixman-1.so.0",
            "libglib-2.0.so.0",
            "libgio-2.0.so.0",
            "libunheard-of.so.3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            packages_for(&missing, PackageFormat::Deb),
            ["libpixman-1-0", "libglib2.0-0", DEBIAN_FALLBACK]
        );
        assert_eq!(
            packages_for(&missing[..1], PackageFormat::Rpm),
            ["libpixman-1.so.0()(64bit)"]
        );
        let (update, install) = commands(PackageFormat::Deb, &["libpixman-1-0".into()]);
        assert_eq!(update, ["apt-get", "update"]);
        assert_eq!(
            install,
            [
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                "libpixman-1-0"
            ]
        );
    }

    #[test]
    fn sizes_are_read_from_apt_and_dnf() {
        let apt = "Reading package lists...\nThe following NEW packages will be installed:\n  libpixman-1-0\n0 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.\nNeed to get 281 kB of archives.\nAfter this operation, 704 kB of additional disk space will be used.\nDo you want to continue? [Y/n] N\nAbort.\n";
        assert_eq!(size_lines(apt).len(), 3);
        let dnf = "Total download size: 288 k\nInstalled size: 700 k\nOperation aborted.\n";
        assert_eq!(size_lines(dnf).len(), 2);
    }
}
