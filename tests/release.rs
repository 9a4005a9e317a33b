//! The release (issue: release): dated directory, manifest, checksums,
//! byte-identical tarball, and the scripts inside it, on fixture builds.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

const DATE: &str = "2026-11-22";

fn package(s: &Scratch, out: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--package", "--date", DATE, "--output", out, "-j2"];
    args.extend(extra);
    s.run_ok(&args)
}

#[test]
fn the_release_holds_the_listed_files_verified_by_its_checksums_and_manifest() {
    let s = Scratch::new(shared_fixtures());
    let doc = package(&s, "out", &[]);
    let dir = s.release("out", DATE);
    let files = files_under(&dir);
    for want in [
        "SHA256SUMS",
        "install.sh",
        "launch-qemu.sh",
        "kvm.conf",
        "manifest.json",
        "source-config",
        "stable-commits.lock",
        "kernel-config.host",
        "kernel-config.guest",
        "source-commit.qemu",
        "source-commit.ovmf",
        "source-commit.kernel.host",
        "source-commit.kernel.guest",
        "usr/local/bin/qemu-system-x86_64",
        "usr/local/share/qemu/OVMF_CODE.fd",
        "usr/local/share/qemu/OVMF_VARS.fd",
        "usr/local/share/qemu/OVMF.fd",
    ] {
        assert!(
            files.contains(&want.to_string()),
            "{want} missing from {files:?}"
        );
    }
    let host: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("linux/host/"))
        .collect();
    let guest: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("linux/guest/"))
        .collect();
    assert!(
        host.iter().all(|f| f.contains("-snp-host-")) && !host.is_empty(),
        "{host:?}"
    );
    assert!(
        guest.iter().all(|f| f.contains("-snp-guest-")) && !guest.is_empty(),
        "{guest:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("kvm.conf")).unwrap(),
        "options kvm_amd sev-snp=1 sev=1 sev-es=1\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("source-config")).unwrap(),
        std::fs::read_to_string(s.pins()).unwrap()
    );

    let check = Command::new("sha256sum")
        .args(["-c", "--strict", "--quiet", "SHA256SUMS"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    assert_eq!(
        sums.lines().count(),
        files.len() - 1,
        "SHA256SUMS covers every other file"
    );

    let manifest = release_manifest(&dir);
    assert_eq!(manifest["schema_version"], 1);
    for (name, bare, branch) in [
        ("qemu", "qemu.git", "snp-latest"),
        ("ovmf", "ovmf.git", "snp-latest"),
        ("kernel-host", "linux.git", "snp-host-latest"),
        ("kernel-guest", "linux.git", "snp-guest-latest"),
    ] {
        let head = rev_parse(&shared_fixtures().join(bare), branch);
        assert_eq!(manifest["sources"][name]["sha"], head.as_str(), "{name}");
        assert_eq!(head_of_tree(&s, name), head, "{name}: the tree's HEAD");
    }
    assert_eq!(
        manifest["sources"]["ovmf"]["submodules"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
    assert!(
        manifest["kernels"]["host"]["verification"]["failures"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        manifest["kernels"]["host"]["image"]
            .as_str()
            .unwrap()
            .starts_with("linux/host/linux-image-")
    );
    assert!(
        manifest["build_host"]["gcc"]
            .as_str()
            .unwrap()
            .contains("gcc")
    );
    let artifacts = manifest["artifacts"].as_array().unwrap();
    assert_eq!(
        artifacts.len(),
        files.len() - 4,
        "every file but the manifest, the SBOM, the provenance and SHA256SUMS"
    );
    for a in artifacts {
        let line = format!(
            "{}  {}",
            a["sha256"].as_str().unwrap(),
            a["path"].as_str().unwrap()
        );
        assert!(sums.lines().any(|l| l == line), "{line}");
    }

    // --json: the release path, the tarball and its SHA-256.
    let r = &doc["release"];
    assert_eq!(r["path"], dir.display().to_string());
    assert_eq!(r["tarball"], s.tarball("out", DATE).display().to_string());
    let sha = fingerprint_of(&s.tarball("out", DATE));
    assert_eq!(r["tarball_sha256"], sha.as_str());
    // No temporary directories are left beside it.
    let left: Vec<String> = std::fs::read_dir(s.path().join("out"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

fn head_of_tree(s: &Scratch, name: &str) -> String {
    head(&s.tree(name))
}

fn fingerprint_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn identical_inputs_give_a_byte_identical_tarball_and_the_epoch_only_changes_times() {
    let s = Scratch::new(shared_fixtures());
    package(&s, "a", &[]);
    // Nothing changed: a second release elsewhere is the same bytes.
    let doc = package(&s, "b", &[]);
    assert_eq!(
        doc["stages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|st| st["status"] == "ok")
            .count(),
        0,
        "no stage reran"
    );
    let (a, b) = (
        std::fs::read(s.tarball("a", DATE)).unwrap(),
        std::fs::read(s.tarball("b", DATE)).unwrap(),
    );
    assert!(a == b, "tarballs differ");

    // A different SOURCE_DATE_EPOCH: only the timestamps differ.
    let out = assert_cmd::Command::cargo_bin("snp-build")
        .unwrap()
        .current_dir(s.path())
        .env(INSTALLER_ENV, "none")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "--config",
            "stable-commits.toml",
            "--work-dir",
            "build",
            "--package",
            "--date",
            DATE,
            "--output",
            "c",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = std::fs::read(s.tarball("c", DATE)).unwrap();
    assert!(a != c);
    let listing = |t: &Path| {
        let out = Command::new("tar")
            .args(["-tvzf"])
            .arg(t)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let (la, lc) = (
        listing(&s.tarball("a", DATE)),
        listing(&s.tarball("c", DATE)),
    );
    assert!(
        lc.contains("2023-11-14 22:13"),
        "mtime is SOURCE_DATE_EPOCH: {lc}"
    );
    let strip = |l: &str| -> Vec<String> {
        l.lines()
            .map(|x| {
                let w: Vec<&str> = x.split_whitespace().collect();
                format!("{} {} {} {}", w[0], w[1], w[2], w[5..].join(" "))
            })
            .collect()
    };
    assert_eq!(
        strip(&la),
        strip(&lc),
        "same entries, owners, modes and sizes"
    );
    for line in la.lines() {
        assert!(line.contains(" root/root "), "{line}");
    }
    // The manifest, the SBOM (timestamp) and the provenance record the
    // epoch (and so each other's digests); every other file is the same.
    let (da, dc) = (s.release("a", DATE), s.release("c", DATE));
    for f in files_under(&da) {
        if [
            "manifest.json",
            "SHA256SUMS",
            "sbom.cdx.json",
            "provenance.json",
        ]
        .contains(&f.as_str())
        {
            continue;
        }
        assert_eq!(
            std::fs::read(da.join(&f)).unwrap(),
            std::fs::read(dc.join(&f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn old_packages_never_reach_a_release_and_kernels_are_never_mixed_in_rpm_either() {
    let s = Scratch::new(shared_fixtures());
    package(&s, "out", &["--package-format", "rpm"]);
    // Leftovers of an imagined earlier run where packages are collected.
    std::fs::write(
        s.work()
            .join("kernel-host/packages/kernel-5.0.0_old-1.x86_64.rpm"),
        "old",
    )
    .unwrap();
    std::fs::write(
        s.work()
            .join("kernel-host/linux-image-5.0.0-old_1_amd64.deb"),
        "old",
    )
    .unwrap();
    package(&s, "out", &["--package-format", "rpm", "--force"]);
    let files = files_under(&s.release("out", DATE));
    assert!(!files.iter().any(|f| f.contains("5.0.0")), "{files:?}");
    let host: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("linux/host/"))
        .collect();
    let guest: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("linux/guest/"))
        .collect();
    assert!(
        !host.is_empty()
            && host
                .iter()
                .all(|f| f.ends_with(".rpm") && f.contains("snp_host")),
        "{host:?}"
    );
    assert!(
        !guest.is_empty()
            && guest
                .iter()
                .all(|f| f.ends_with(".rpm") && f.contains("snp_guest")),
        "{guest:?}"
    );
}

#[test]
fn install_sh_in_a_fixture_release_stages_the_host_image_and_stops_on_tampering() {
    let s = Scratch::new(shared_fixtures());
    // install.sh runs the release's own snp-build: this release carries one.
    let run = s.run_env(
        &[(INSTALLER_ENV, installer().as_os_str())],
        &["--package", "--date", DATE, "--output", "out", "-j2"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dir = s.release("out", DATE);
    let root = s.path().join("root");
    std::fs::create_dir_all(&root).unwrap();

    let dry = Command::new("bash")
        .arg(dir.join("install.sh"))
        .args(["--dry-run", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&dry.stdout),
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(dry.status.success(), "{text}");
    assert!(
        text.contains("linux-image-6.1.0-snp-host-") && !text.contains("-dbg_"),
        "{text}"
    );
    assert!(text.contains("kvm.conf"), "{text}");
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "a dry run changes nothing"
    );

    let real = Command::new("bash")
        .arg(dir.join("install.sh"))
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        real.status.success(),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    let boot: Vec<String> = std::fs::read_dir(root.join("boot"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        boot.iter()
            .any(|f| f.starts_with("vmlinuz-6.1.0-snp-host-")),
        "{boot:?}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/modprobe.d/kvm.conf")).unwrap(),
        "options kvm_amd sev-snp=1 sev=1 sev-es=1\n"
    );

    let fresh = s.path().join("root2");
    std::fs::create_dir_all(&fresh).unwrap();
    let fd = dir.join("usr/local/share/qemu/OVMF_VARS.fd");
    let mut bytes = std::fs::read(&fd).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&fd, bytes).unwrap();
    let bad = Command::new("bash")
        .arg(dir.join("install.sh"))
        .arg("--root")
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("OVMF_VARS.fd")
            || String::from_utf8_lossy(&bad.stdout).contains("OVMF_VARS.fd")
    );
    assert_eq!(
        std::fs::read_dir(&fresh).unwrap().count(),
        0,
        "nothing installed from a tampered release"
    );
}

#[test]
fn launch_qemu_dry_run_uses_the_releases_own_qemu_and_firmware() {
    let s = Scratch::new(shared_fixtures());
    package(&s, "out", &[]);
    let dir = s.release("out", DATE);
    let out = Command::new("bash")
        .arg(dir.join("launch-qemu.sh"))
        .args(["-dry-run", "-cbitpos", "51", "-sev-snp"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        args[0],
        dir.join("usr/local/bin/qemu-system-x86_64")
            .display()
            .to_string()
    );
    assert!(Path::new(&args[0]).is_file());
    let bios = args.iter().position(|a| a == "-bios").unwrap();
    assert!(Path::new(&args[bios + 1]).is_file(), "{}", args[bios + 1]);
    assert!(
        args.iter()
            .any(|a| a.starts_with("sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1")),
        "{args:?}"
    );
}

#[test]
fn without_a_terminal_output_is_plain_lines() {
    let s = Scratch::new(shared_fixtures());
    let r = s.run(&["--package", "--date", DATE, "--output", "out"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stderr.contains('\u{1b}') && !r.stdout.contains('\u{1b}'),
        "escape codes without a TTY"
    );
    assert!(!r.stderr.contains('\r'), "no carriage-return redraws");
    for stage in ["qemu", "ovmf", "kernel-host", "kernel-guest", "release"] {
        assert!(
            r.stderr
                .lines()
                .any(|l| l.starts_with(&format!("{stage}: "))),
            "{stage}: {}",
            r.stderr
        );
    }
}

/// Runs snp-build in `s` with a file size limit of `kib` KiB: a write past
/// it fails with EFBIG, as one on a full disk fails with ENOSPC, and root
/// is held to it too (SIGXFSZ ignored, so the write fails instead of the
/// process dying).
fn run_with_file_limit(s: &Scratch, kib: u64, args: &[&str]) -> Run {
    let out = Command::new("bash")
        .current_dir(s.path())
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f \"$1\"; shift; exec \"$@\"",
            "bash",
            &kib.to_string(),
        ])
        .arg(assert_cmd::cargo::cargo_bin("snp-build"))
        .env(INSTALLER_ENV, "none")
        .args(["--config", "stable-commits.toml", "--work-dir", "build"])
        .args(args)
        .output()
        .unwrap();
    Run::from(out)
}

/// The names in `dir` (not recursive), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// A release write that fails midway (issue 25) leaves no temporary name
/// behind and the previous release whole (never a directory without its
/// tarball); the next run sweeps what runs that died left, and only
/// theirs.
#[test]
fn a_failed_write_leaves_the_previous_release_and_no_temporary_files() {
    let s = Scratch::new(shared_fixtures());
    package(&s, "out", &[]);
    let out = s.path().join("out");
    let (dir, tar) = (s.release("out", DATE), s.tarball("out", DATE));
    let before = names(&out);
    let tar_before = std::fs::read(&tar).unwrap();
    let manifest_before = std::fs::read(dir.join("manifest.json")).unwrap();

    // A limit every file of the release fits but its tarball does not:
    // the failure comes at the tarball, after the directory was whole.
    let largest = walkdir::WalkDir::new(&dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .max()
        .unwrap();
    let limit = largest / 1024 + 8;
    assert!(
        tar_before.len() as u64 > limit * 1024,
        "the fixture tarball ({} bytes) must exceed {limit} KiB",
        tar_before.len()
    );
    let r = run_with_file_limit(
        &s,
        limit,
        &[
            "--package",
            "--date",
            DATE,
            "--output",
            "out",
            "-j2",
            "--force=release",
        ],
    );
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("File too large") && r.stderr.contains(".tar.gz"),
        "names the tarball and why: {}",
        r.stderr
    );
    assert_eq!(names(&out), before, "no temporary name is left");
    assert_eq!(std::fs::read(&tar).unwrap(), tar_before);
    assert_eq!(
        std::fs::read(dir.join("manifest.json")).unwrap(),
        manifest_before
    );

    // Leftovers of runs that died (a pid no process can have), of a run
    // from before the guards (no random suffix), and of a live process.
    let dead = 4_000_000_000u32;
    let live = std::process::id();
    let name = format!("snp-release-{DATE}");
    let planted_dir = out.join(format!(".{name}.tmp-{dead}-AbC123"));
    std::fs::create_dir_all(planted_dir.join("usr")).unwrap();
    std::fs::write(planted_dir.join("usr/half"), "x").unwrap();
    for leftover in [
        format!(".{name}.tar.gz.tmp-{dead}-XyZ789"),
        format!(".{name}.tar.gz.tmp-{dead}"),
        format!(".{name}.old-{dead}"),
    ] {
        std::fs::write(out.join(leftover), "half").unwrap();
    }
    let alive = out.join(format!(".{name}.tar.gz.tmp-{live}-LiVe00"));
    std::fs::write(&alive, "busy").unwrap();
    // A previous release a dead run moved aside and never replaced goes
    // back where it was.
    let other = "snp-release-2026-01-01";
    let aside = out.join(format!(".{other}.old-{dead}"));
    std::fs::create_dir(&aside).unwrap();
    std::fs::write(aside.join("manifest.json"), "{}").unwrap();
    package(&s, "out", &[]);
    let mut want = before.clone();
    want.push(alive.file_name().unwrap().to_string_lossy().to_string());
    want.push(other.to_string());
    want.sort();
    assert_eq!(names(&out), want, "only the dead runs' names are swept");
    assert_eq!(std::fs::read(&tar).unwrap(), tar_before);
    assert_eq!(
        std::fs::read_to_string(out.join(other).join("manifest.json")).unwrap(),
        "{}"
    );
}
