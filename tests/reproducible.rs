//! Identical pins give a byte-identical tarball whoever builds them, and
//! wherever: another work dir, output dir and install prefix, another
//! umask, time zone and locale, and (when the tests run as root) another
//! user. Both builds fetch the same fixture upstreams by the same URLs, so
//! the pin file, and so the release, says the same thing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const DATE: &str = "2026-11-22";

/// A fresh directory holding `pins` as stable-commits.toml.
fn scratch_with(pins: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stable-commits.toml"), pins).unwrap();
    dir
}

/// `id -u`, without a libc call.
fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The files of two extracted trees that differ, for a failure message.
fn differing_files(a: &Path, b: &Path) -> String {
    let out = Command::new("diff")
        .args(["-rq", "--no-dereference"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    let mut report = String::from_utf8_lossy(&out.stdout).to_string();
    // The text files' differences themselves (first lines), to say why.
    let text = Command::new("diff")
        .args([
            "-ru",
            "--no-dereference",
            "--text",
            "--exclude=*.deb",
            "--exclude=*.rpm",
        ])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&text.stdout)
        .lines()
        .take(80)
        .map(String::from)
        .collect();
    report.push_str(&lines.join("\n"));
    report
}

fn extract(tarball: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let ok = Command::new("tar")
        .arg("-xzf")
        .arg(tarball)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar -xzf {}", tarball.display());
}

#[test]
fn another_builder_elsewhere_gets_the_same_tarball() {
    // Upstreams everyone may read (a tempdir is 0700).
    let up = tempfile::tempdir().unwrap();
    std::fs::set_permissions(up.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fx = own_fixtures(up.path());
    let pins = std::fs::read_to_string(fx.join("stable-commits.toml")).unwrap();
    let binary = assert_cmd::cargo::cargo_bin("snp-build");
    // One toolchain for both: the release's SBOM and provenance name the
    // build tools' versions, so "the same inputs" includes them. The
    // system's directories only: a per-user one (a pyenv shim under
    // /root) would give `nobody` another python3.
    let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    // The first builder: this user, its environment, short names.
    let a = scratch_with(&pins);
    // Each carries the same installer bytes from its own path: the release
    // holds the file, never where it came from. (A stand-in: the 250 MB
    // debug binary would only make this slow.)
    let installer = |dir: &Path| {
        let p = dir.join("installer/snp-build");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "#!/bin/sh\necho the same installer\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let out = Command::new(&binary)
        .env("PATH", path)
        .env(INSTALLER_ENV, installer(a.path()))
        .current_dir(a.path())
        .args(["--config", "stable-commits.toml", "--work-dir", "build"])
        .args(["--package", "--date", DATE, "--output", "out", "-j2"])
        .args(["--install", "inst"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "first build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tar_a = a.path().join(format!("out/snp-release-{DATE}.tar.gz"));
    assert!(
        a.path()
            .join(format!("out/snp-release-{DATE}/bin/snp-build"))
            .is_file()
    );

    // The second: other dir names (deeper, so no path is the same length
    // either), umask 077, another time zone and locale, and as `nobody`
    // when we may switch users. It runs its own copy of the binary, which
    // `nobody` can read wherever the checkout is.
    let b = scratch_with(&pins);
    let b_installer = installer(&b.path().join("elsewhere"));
    let home = b.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let exe = b.path().join("snp-build");
    std::fs::copy(&binary, &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_other_user = running_as_root() && Path::new("/usr/bin/setpriv").exists();
    if as_other_user {
        let ok = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(b.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown nobody");
    }
    let cmd = || {
        if as_other_user {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--",
                "sh",
                "-c",
            ]);
            c
        } else {
            let mut c = Command::new("sh");
            c.arg("-c");
            c
        }
    };
    let run_b = |cmd: &mut Command, args: &[&str]| {
        cmd.arg(r#"umask 077; exec "$@""#)
            .arg("sh")
            .arg(&exe)
            .args(["--config", "stable-commits.toml"])
            .args(args)
            .current_dir(b.path())
            .env("PATH", path)
            .env("HOME", &home)
            .env("TZ", "Asia/Tokyo")
            .env("LANG", "de_DE.UTF-8")
            .env("LC_ALL", "de_DE.UTF-8")
            .env("SOURCE_DATE_EPOCH", "")
            .env(INSTALLER_ENV, &b_installer)
            .output()
            .unwrap()
    };
    let work = "a/much/longer/work-directory";
    let output = "release-output/of/builder-b";
    if as_other_user {
        // The upstreams belong to root: refused as git would, saying how to
        // trust them, before anything is built.
        let out = run_b(&mut cmd(), &["fetch", "--work-dir", "w0"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("belongs to another user") && stderr.contains("safe.directory"),
            "{stderr}"
        );
        std::fs::write(home.join(".gitconfig"), "[safe]\n\tdirectory = *\n").unwrap();
    }
    let out = run_b(
        &mut cmd(),
        &[
            "--work-dir",
            work,
            "--package",
            "--date",
            DATE,
            "--output",
            output,
            "-j1",
            "--install",
            "another/install/prefix",
        ],
    );
    assert!(
        out.status.success(),
        "second build (as nobody: {as_other_user}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tar_b: PathBuf = b.path().join(format!("{output}/snp-release-{DATE}.tar.gz"));

    let (bytes_a, bytes_b) = (
        std::fs::read(&tar_a).unwrap(),
        std::fs::read(&tar_b).unwrap(),
    );
    if bytes_a != bytes_b {
        let cmp = tempfile::tempdir().unwrap();
        extract(&tar_a, &cmp.path().join("a"));
        extract(&tar_b, &cmp.path().join("b"));
        panic!(
            "the tarballs differ (second builder as nobody: {as_other_user}):\n{}",
            differing_files(&cmp.path().join("a"), &cmp.path().join("b"))
        );
    }
}

/// Every file under `dir` whose name ends with one of `suffixes`.
fn files_ending(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| {
            e.file_type().is_file()
                && suffixes
                    .iter()
                    .any(|s| e.file_name().to_string_lossy().ends_with(s))
        })
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn edk2_records_no_build_path_in_its_images() {
    // As the real edk2, the fixture compiles by absolute path (its SEC
    // module keeps a __FILE__, as ASSERTs do) and its GenFw writes its
    // input's path into the image (the CodeView entry).
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["ovmf"]);
    let tree = s.tree("ovmf");
    let absolute = tree.display().to_string();
    let images = files_ending(&tree.join("Build"), &[".efi", ".obj"]);
    assert!(images.len() >= 2, "{images:?}");
    for image in &images {
        let bytes = std::fs::read(image).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(&absolute),
            "{} records the build path {absolute}",
            image.display()
        );
    }
    let sec = images
        .iter()
        .find(|p| p.ends_with("OUTPUT/SecMain.efi"))
        .unwrap();
    let text = String::from_utf8_lossy(&std::fs::read(sec).unwrap()).to_string();
    assert!(
        text.contains("RSDSBuild/") && text.contains("SecMain/DEBUG/SecMain.dll"),
        "the module keeps its (relative) name: {text:?}"
    );
    assert!(text.contains("./OvmfPkg/Sec/SecMain.c"), "{text:?}");
}
