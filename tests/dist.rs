//! The .deb of `cargo xtask dist` (xtask/src/deb.rs), built by the same
//! function from this build's snp-build: what it holds, where, with which
//! owner, modes and control fields, and that two builds in other
//! directories under another umask are byte for byte the same.
//! (tests/host_system.rs installs it into a real Debian.)
//!
//! Needs Debian's dpkg-deb, binutils' strip, gzip and md5sum, which CI's
//! Debian has (binutils from .ci/install-deps).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// What snp-build prints for `args`, which must succeed.
fn snp(args: &[&str]) -> String {
    run_succeeds(snp_build_std(Path::new(".")).args(args))
}

#[test]
fn the_deb_holds_the_binary_completions_man_pages_and_copyright_and_is_reproducible() {
    let bin = Path::new(env!("CARGO_BIN_EXE_snp-build"));
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let deb = xtask::deb::build(bin, a.path()).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(deb, a.path().join(format!("snp-build_{version}_amd64.deb")));
    // Again elsewhere, under a umask that would make every file private.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let again = xtask::deb::build(bin, &b.path().join("deeper"));
    rustix::process::umask(old);
    let again = again.unwrap();
    assert!(
        std::fs::read(&deb).unwrap() == std::fs::read(&again).unwrap(),
        "two builds of the .deb differ: {} {}",
        deb.display(),
        again.display()
    );
    let leftovers: Vec<_> = std::fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "staging left behind: {leftovers:?}");

    let field =
        |name: &str| run_succeeds(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), "snp-build");
    assert_eq!(field("Version").trim(), version);
    assert_eq!(field("Architecture").trim(), "amd64");
    assert_eq!(field("Priority").trim(), "optional");
    assert_eq!(field("Depends").trim(), "libc6 (>= 2.35), libgcc-s1");
    assert!(field("Maintainer").trim().ends_with('>'));
    assert!(field("Description").contains("SEV-SNP"));
    let installed: u64 = field("Installed-Size").trim().parse().unwrap();
    let bin_kib = std::fs::metadata(bin).unwrap().len() / 1024;
    assert!(
        installed > 1000 && installed < bin_kib,
        "Installed-Size {installed} KiB: the stripped binary and a few small files"
    );

    // The listing: `-rwxr-xr-x root/root 123 2026-01-01 00:00 ./usr/bin/snp-build`.
    let listing = run_succeeds(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let entries: Vec<(&str, &str, &str)> = listing
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[0], w[1], *w.last().unwrap())
        })
        .collect();
    let mode_of = |path: &str| {
        entries
            .iter()
            .find(|e| e.2 == format!("./{path}"))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"))
            .0
    };
    assert_eq!(mode_of("usr/bin/snp-build"), "-rwxr-xr-x");
    for path in [
        "usr/share/bash-completion/completions/snp-build",
        "usr/share/zsh/vendor-completions/_snp-build",
        "usr/share/fish/vendor_completions.d/snp-build.fish",
        "usr/share/man/man1/snp-build.1.gz",
        "usr/share/man/man1/snp-build-install.1.gz",
        "usr/share/doc/snp-build/copyright",
    ] {
        assert_eq!(mode_of(path), "-rw-r--r--", "{path}");
    }
    for (mode, owner, path) in &entries {
        assert_eq!(*owner, "root/root", "{path}");
        if mode.starts_with('d') {
            assert_eq!(*mode, "drwxr-xr-x", "{path}");
        }
    }
    // One time for every entry: the commit's (or SOURCE_DATE_EPOCH).
    let times: std::collections::BTreeSet<String> = listing
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            format!("{} {}", w[3], w[4])
        })
        .collect();
    assert_eq!(times.len(), 1, "{listing}");

    // The contents are what the binary prints.
    let x = a.path().join("x");
    run_succeeds(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x));
    for (shell, path) in xtask::deb::COMPLETIONS {
        assert_eq!(
            std::fs::read_to_string(x.join(path)).unwrap(),
            snp(&["completions", shell]),
            "{shell}"
        );
    }
    let gz = std::fs::read(x.join("usr/share/man/man1/snp-build.1.gz")).unwrap();
    // gzip -n: no original name (FLG bit 3), no time (MTIME 0).
    assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
    assert_eq!(gz[3] & 0x08, 0, "a file name in the gzip header");
    assert_eq!(&gz[4..8], &[0, 0, 0, 0], "a time in the gzip header");
    let page = run_succeeds(
        Command::new("gzip")
            .arg("-dc")
            .arg(x.join("usr/share/man/man1/snp-build.1.gz")),
    );
    assert_eq!(page, snp(&["man"]));
    let copyright = std::fs::read_to_string(x.join("usr/share/doc/snp-build/copyright")).unwrap();
    assert!(
        copyright.starts_with(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
        )
    );
    assert!(copyright.contains("License: MIT"));
    // The shipped binary is stripped, and still this snp-build.
    let shipped = x.join("usr/bin/snp-build");
    assert!(!run_succeeds(Command::new("readelf").arg("-S").arg(&shipped)).contains(".symtab"));
    assert_eq!(
        run_succeeds(Command::new(&shipped).arg("--version")),
        snp(&["--version"])
    );
}
