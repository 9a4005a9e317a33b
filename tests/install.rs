//! `snp-build install` and `uninstall` (issue 8, item 3) against real
//! fixture releases: staging installs into temporary roots, the kvm.conf
//! backup rule, refusal of tampered releases and unsafe tarballs, dry runs.
//!
//! One deb release (and one rpm release) is built per test binary and only
//! read; a test that changes a release works on its own copy.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

const DATE: &str = "2026-11-22";
const NAME: &str = "snp-release-2026-11-22";

/// A release built from the fixtures, shared by the tests.
fn built(format: &str) -> &'static Scratch {
    static DEB: OnceLock<Scratch> = OnceLock::new();
    static RPM: OnceLock<Scratch> = OnceLock::new();
    let cell = if format == "rpm" { &RPM } else { &DEB };
    cell.get_or_init(|| {
        let s = Scratch::kept(shared_fixtures());
        // With the installer, which install.sh checks and runs.
        let r = s.run_env(
            &[(INSTALLER_ENV, installer().as_os_str())],
            &[
                "--package",
                "--package-format",
                format,
                "--date",
                DATE,
                "--output",
                "out",
                "-j2",
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        s
    })
}

fn release() -> PathBuf {
    built("deb").release("out", DATE)
}

fn tarball() -> PathBuf {
    built("deb").tarball("out", DATE)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file under `dir` with its content.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

fn kvm_conf(root: &Path) -> PathBuf {
    root.join("etc/modprobe.d/kvm.conf")
}

fn record(root: &Path) -> Value {
    let path = root.join("var/lib/snp-build/installed.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn backups(root: &Path) -> Vec<String> {
    let dir = root.join("etc/modprobe.d");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kvm.conf.bak-"))
        .collect();
    names.sort();
    names
}

/// `kvm.conf.bak-YYYYmmddTHHMMSSZ`.
fn is_backup_name(name: &str) -> bool {
    let Some(stamp) = name.strip_prefix("kvm.conf.bak-") else {
        return false;
    };
    let b = stamp.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

/// A private copy of the deb release, to tamper with.
/// The host kernel image package of a release (never the -dbg one).
fn host_image(release: &Path) -> String {
    files_under(release)
        .into_iter()
        .find(|f| f.starts_with("linux/host/linux-image-") && !f.contains("-dbg"))
        .unwrap()
}

fn copy_of_release(dir: &Path) -> PathBuf {
    copy_as(dir, NAME)
}

/// A copy of the deb release in `dir`, named `name` (an unsigned release
/// is known by its directory's name).
fn copy_as(dir: &Path, name: &str) -> PathBuf {
    let copy = dir.join(name);
    let st = Command::new("cp")
        .arg("-a")
        .arg(release())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    copy
}

#[test]
fn install_root_stages_the_image_package_and_kvm_conf_and_a_second_run_backs_up_nothing() {
    let root = tempfile::tempdir().unwrap();
    let doc = snp_build_json(
        Path::new("."),
        &["install", "--root", s(root.path()), s(&release())],
    );
    assert_eq!(doc["command"], "install");
    assert_eq!(doc["mode"], "staging");
    assert_eq!(doc["kvm_conf"]["action"], "created");
    let package = doc["package"]["name"].as_str().unwrap();
    assert!(package.starts_with("linux-image-6.1.0-snp-host-"), "{doc}");
    assert!(!package.ends_with("-dbg"));

    let files = files_under(root.path());
    let kr = doc["package"]["kernel_release"].as_str().unwrap();
    assert!(kr.starts_with("6.1.0-snp-host-"), "{kr}");
    assert!(
        files.contains(&format!("boot/vmlinuz-{kr}")),
        "no vmlinuz in {files:?}"
    );
    assert!(
        files.iter().all(|f| !f.contains("-dbg")
            && !f.contains("linux-headers")
            && !f.contains("usr/include")),
        "only the image package belongs in the root: {files:?}"
    );
    assert_eq!(
        std::fs::read(kvm_conf(root.path())).unwrap(),
        std::fs::read(release().join("kvm.conf")).unwrap()
    );
    let rec = record(root.path());
    assert_eq!(rec["release"], NAME);
    assert_eq!(rec["release_path"], s(&release()));
    assert_eq!(rec["package"]["name"], package);
    assert_eq!(rec["kvm_conf"]["path"], "/etc/modprobe.d/kvm.conf");
    assert_eq!(rec["kvm_conf"]["created"], true);
    assert!(rec["kvm_conf"]["backup"].is_null());
    assert_eq!(rec["remove_command"][0], "dpkg");
    assert_eq!(rec["remove_command"][1], "--purge");
    assert_eq!(rec["steps"][1]["step"], "stack");
    assert_eq!(rec["steps"][1]["state"], "done");
    assert_eq!(rec["steps"][2]["step"], "kernel-package");
    assert_eq!(rec["steps"][2]["state"], "done");
    assert_eq!(rec["complete"], true);
    assert!(rec["installed_at"].as_str().unwrap().ends_with('Z'));

    // Again: same content, so nothing is backed up, and the record still
    // knows the first install created kvm.conf.
    let again = snp_build_json(
        Path::new("."),
        &["install", "--root", s(root.path()), s(&release())],
    );
    assert_eq!(again["kvm_conf"]["action"], "unchanged");
    assert!(
        backups(root.path()).is_empty(),
        "{:?}",
        backups(root.path())
    );
    assert_eq!(record(root.path())["kvm_conf"]["created"], true);
}

#[test]
fn a_different_kvm_conf_is_backed_up_and_uninstall_puts_it_back() {
    let root = tempfile::tempdir().unwrap();
    let old = "options kvm_amd sev=1\n";
    std::fs::create_dir_all(root.path().join("etc/modprobe.d")).unwrap();
    std::fs::write(kvm_conf(root.path()), old).unwrap();

    let doc = snp_build_json(
        Path::new("."),
        &["install", "--root", s(root.path()), s(&release())],
    );
    assert_eq!(doc["kvm_conf"]["action"], "replaced");
    let names = backups(root.path());
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(is_backup_name(&names[0]), "{names:?}");
    let backup = root.path().join("etc/modprobe.d").join(&names[0]);
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), old);
    assert_eq!(
        std::fs::read(kvm_conf(root.path())).unwrap(),
        std::fs::read(release().join("kvm.conf")).unwrap()
    );
    assert_eq!(
        record(root.path())["kvm_conf"]["backup"],
        format!("/etc/modprobe.d/{}", names[0])
    );

    // A dry run changes nothing.
    let before = snapshot(root.path());
    let dry = snp_build_json(
        Path::new("."),
        &["uninstall", "--root", s(root.path()), "--dry-run"],
    );
    assert_eq!(dry["kvm_conf"]["action"], "restored");
    assert_eq!(snapshot(root.path()), before);

    let r = snp_build(
        Path::new("."),
        &["uninstall", "--root", s(root.path()), "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["command"], "uninstall");
    assert_eq!(doc["kvm_conf"]["action"], "restored");
    assert_eq!(std::fs::read_to_string(kvm_conf(root.path())).unwrap(), old);
    assert!(backups(root.path()).is_empty());
    assert!(
        !root
            .path()
            .join("var/lib/snp-build/installed.json")
            .exists()
    );
    let name = doc["package"]["name"].as_str().unwrap();
    assert_eq!(doc["remove_command"][0], "dpkg");
    assert_eq!(doc["remove_command"][2], name);
    assert!(
        r.stderr.contains(&format!("dpkg --purge {name}")),
        "{}",
        r.stderr
    );
    // Nothing left to undo.
    let r = snp_build(Path::new("."), &["uninstall", "--root", s(root.path())]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to uninstall"), "{}", r.stderr);
}

#[test]
fn uninstall_removes_the_kvm_conf_it_created_but_never_one_edited_since() {
    let created = tempfile::tempdir().unwrap();
    snp_build_json(
        Path::new("."),
        &["install", "--root", s(created.path()), s(&release())],
    );
    let doc = snp_build_json(Path::new("."), &["uninstall", "--root", s(created.path())]);
    assert_eq!(doc["kvm_conf"]["action"], "removed");
    assert!(!kvm_conf(created.path()).exists());

    let edited = tempfile::tempdir().unwrap();
    snp_build_json(
        Path::new("."),
        &["install", "--root", s(edited.path()), s(&release())],
    );
    std::fs::write(kvm_conf(edited.path()), "options kvm_amd sev-snp=0\n").unwrap();
    let r = snp_build(Path::new("."), &["uninstall", "--root", s(edited.path())]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("changed since the install"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(kvm_conf(edited.path())).unwrap(),
        "options kvm_amd sev-snp=0\n"
    );
}

#[test]
fn a_tampered_release_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = copy_of_release(tmp.path());
    let image = host_image(&copy);
    let mut bytes = std::fs::read(copy.join(&image)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(copy.join(&image), bytes).unwrap();
    std::fs::write(copy.join("linux/host/extra.deb"), "not listed").unwrap();

    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let r = snp_build(
        Path::new("."),
        &["install", "--root", s(&root), s(&copy), "--json"],
    );
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("modified: {image}")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("not listed in SHA256SUMS: linux/host/extra.deb"),
        "{}",
        r.stderr
    );
    assert_eq!(r.json()["status"], "error");
    assert!(
        std::fs::read_dir(&root).unwrap().next().is_none(),
        "the root must stay empty: {:?}",
        files_under(&root)
    );

    // A listed file that is gone is named too, also in a dry run.
    std::fs::remove_file(copy.join("kvm.conf")).unwrap();
    let r = snp_build(
        Path::new("."),
        &["install", "--root", s(&root), "--dry-run", s(&copy)],
    );
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stderr.contains("missing: kvm.conf"), "{}", r.stderr);
}

#[test]
fn the_tarball_installs_too() {
    let root = tempfile::tempdir().unwrap();
    let doc = snp_build_json(
        Path::new("."),
        &["install", "--root", s(root.path()), s(&tarball())],
    );
    assert_eq!(doc["release"], NAME);
    assert_eq!(doc["release_path"], s(&tarball()));
    let kr = doc["package"]["kernel_release"].as_str().unwrap();
    assert!(root.path().join(format!("boot/vmlinuz-{kr}")).is_file());
    assert!(kvm_conf(root.path()).is_file());
    assert_eq!(record(root.path())["release_path"], s(&tarball()));
}

#[test]
fn a_tarball_with_an_entry_outside_the_release_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let evil = tmp.path().join("evil.tar.gz");
    {
        let f = std::fs::File::create(&evil).unwrap();
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let data = b"pwned\n";
        let mut h = tar::Header::new_old();
        let name = b"snp-release-2026-11-22/../../escaped";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        tar.append(&h, &data[..]).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // A verification failure (exit 8), from install and from verify.
    let r = snp_build(tmp.path(), &["install", "--root", s(&root), s(&evil)]);
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stderr.contains("`..`"), "{}", r.stderr);
    let r = snp_build(tmp.path(), &["verify", s(&evil)]);
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stderr.contains("`..`"), "{}", r.stderr);
    assert!(std::fs::read_dir(&root).unwrap().next().is_none());
}

#[test]
fn dry_run_with_root_changes_nothing_and_names_the_package() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/modprobe.d")).unwrap();
    std::fs::write(kvm_conf(root.path()), "options kvm_amd sev=1\n").unwrap();
    let before = snapshot(root.path());
    let r = snp_build(
        Path::new("."),
        &[
            "install",
            "--dry-run",
            "--root",
            s(root.path()),
            s(&release()),
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(snapshot(root.path()), before);
    let doc = r.json();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["kvm_conf"]["action"], "replaced");
    assert!(doc["record"].is_null());
    let file = doc["package"]["file"].as_str().unwrap();
    let base = file.rsplit('/').next().unwrap();
    assert!(
        r.stderr.contains("[dry-run] would run: dpkg-deb -x") && r.stderr.contains(base),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("[dry-run] would keep the existing"),
        "{}",
        r.stderr
    );
}

#[test]
fn without_an_argument_the_newest_release_here_is_installed() {
    let tmp = tempfile::tempdir().unwrap();
    copy_of_release(tmp.path());
    std::fs::create_dir(tmp.path().join("snp-release-2025-01-01")).unwrap();
    std::fs::write(tmp.path().join("snp-release-2027-01-01.tar.gz"), "").unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let doc = snp_build_json(tmp.path(), &["install", "--dry-run", "--root", s(&root)]);
    assert_eq!(doc["release"], NAME);

    let empty = tempfile::tempdir().unwrap();
    let r = snp_build(empty.path(), &["install", "--dry-run", "--root", s(&root)]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("no snp-release-* directory"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_live_install_without_a_terminal_needs_yes_and_a_live_dry_run_changes_nothing() {
    // stdin is /dev/null: a live install must refuse rather than wait.
    let r = snp_build(Path::new("."), &["install", s(&release())]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("--yes") || r.stderr.contains("must run as root"),
        "{}",
        r.stderr
    );
    let r = snp_build(Path::new("."), &["install", "--dry-run", s(&release())]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("[dry-run] would run: dpkg -i"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
}

#[test]
fn a_user_other_than_root_needs_dry_run_or_root() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let has_setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !is_root || !has_setpriv {
        eprintln!("skipped: needs root and setpriv to run as another user");
        return;
    }
    let bin = assert_cmd::cargo::cargo_bin("snp-build");
    for command in ["install", "uninstall"] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .arg(command)
            .current_dir("/")
            .output()
            .unwrap();
        let r = Run::from(out);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains("must run as root"), "{}", r.stderr);
        assert!(r.stderr.contains("--root DIR"), "{}", r.stderr);
    }
}

#[test]
fn an_rpm_system_gets_the_kernel_rpm_and_refuses_debs() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/os-release"),
        "ID=fedora\nVERSION_ID=41\n",
    )
    .unwrap();
    // A deb release does not fit: refused, naming what it holds.
    let before = snapshot(root.path());
    let r = snp_build(
        Path::new("."),
        &["install", "--root", s(root.path()), s(&release())],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("needs .rpm packages"), "{}", r.stderr);
    assert!(r.stderr.contains("linux-image-"), "{}", r.stderr);
    assert_eq!(snapshot(root.path()), before);

    let rpm_release = built("rpm").release("out", DATE);
    let doc = snp_build_json(
        Path::new("."),
        &["install", "--root", s(root.path()), s(&rpm_release)],
    );
    assert_eq!(doc["package"]["format"], "rpm");
    assert_eq!(doc["package"]["name"], "kernel");
    let kr = doc["package"]["kernel_release"].as_str().unwrap();
    assert!(root.path().join(format!("boot/vmlinuz-{kr}")).is_file());
    assert!(
        files_under(root.path())
            .iter()
            .all(|f| !f.starts_with("usr/include")),
        "kernel-headers must not be installed"
    );
    let rec = record(root.path());
    assert_eq!(rec["remove_command"][0], "dnf");
    assert_eq!(rec["remove_command"][2], "-y");
    let nevra = rec["remove_command"][3].as_str().unwrap();
    assert!(nevra.starts_with("kernel-6.1.0_snp_host_"), "{nevra}");
}

/// Replaces `rel` in the release `dir` by `path` and fixes SHA256SUMS.
/// Replaces a file of an (unsigned) release and its SHA256SUMS line; the
/// SBOM and provenance, which would now disagree, are dropped (an install
/// checks them only when present).
fn replace_and_resum(dir: &Path, rel: &str, path: &Path) {
    std::fs::copy(path, dir.join(rel)).unwrap();
    for doc in ["sbom.cdx.json", "provenance.json"] {
        let _ = std::fs::remove_file(dir.join(doc));
    }
    let out = Command::new("sha256sum")
        .arg(rel)
        .current_dir(dir)
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let fixed: String = sums
        .lines()
        .filter(|l| !l.ends_with("  sbom.cdx.json") && !l.ends_with("  provenance.json"))
        .map(|l| {
            if l.ends_with(&format!("  {rel}")) {
                line.trim_end().to_string()
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(dir.join("SHA256SUMS"), fixed).unwrap();
}

#[test]
fn a_qemu_lacking_libraries_gets_the_distro_command_printed_in_a_staging_install() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = copy_of_release(tmp.path());
    // A QEMU linked against a library that is then removed.
    let build = tmp.path().join("build");
    std::fs::create_dir(&build).unwrap();
    std::fs::write(build.join("lib.c"), "int snp_fake(void) { return 0; }\n").unwrap();
    std::fs::write(
        build.join("main.c"),
        "int snp_fake(void);\nint main(void) { return snp_fake(); }\n",
    )
    .unwrap();
    let gcc = |args: &[&str]| {
        let st = Command::new("gcc")
            .args(args)
            .current_dir(&build)
            .status()
            .unwrap();
        assert!(st.success(), "gcc {args:?}");
    };
    gcc(&["-shared", "-fPIC", "-o", "libsnpfake.so", "lib.c"]);
    gcc(&["-o", "qemu", "main.c", "-L.", "-lsnpfake"]);
    std::fs::remove_file(build.join("libsnpfake.so")).unwrap();
    replace_and_resum(
        &copy,
        "usr/local/bin/qemu-system-x86_64",
        &build.join("qemu"),
    );

    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let r = snp_build(
        Path::new("."),
        &["install", "--root", s(&root), s(&copy), "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["dependencies"]["missing"][0], "libsnpfake.so");
    assert_eq!(doc["dependencies"]["run"], false);
    assert!(
        r.stderr.contains(
            "on the target system run: apt-get install -y --no-install-recommends qemu-system-x86"
        ),
        "{}",
        r.stderr
    );
    assert!(record(&root)["dependencies_command"].is_null());
}

/// A copy of the release in `dir` whose host kernel package is garbage
/// (listed in SHA256SUMS as it is): the package step fails.
fn release_with_a_broken_package(dir: &Path) -> PathBuf {
    let copy = copy_of_release(dir);
    let image = host_image(&copy);
    let garbage = dir.join("garbage.deb");
    std::fs::write(&garbage, "not a Debian package\n").unwrap();
    replace_and_resum(&copy, &image, &garbage);
    copy
}

/// A staging install whose package cannot be unpacked stops at that step
/// (exit 9) in both installers, and the advice names `--root`: following
/// it never touches the live system.
#[test]
fn a_failed_staging_step_is_exit_9_and_the_advice_keeps_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = release_with_a_broken_package(tmp.path());

    let root = tmp.path().join("root");
    let r = snp_build(Path::new("."), &["install", "--root", s(&root), s(&copy)]);
    assert_eq!(r.code, 9, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("install stopped at step `kernel-package`"),
        "{}",
        r.stderr
    );
    let undo = format!("snp-build uninstall --root {} --yes", root.display());
    assert!(r.stderr.contains(&undo), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("--root {}", root.display())));
    assert_eq!(record(&root)["steps"][2]["state"], "failed");

    let root = tmp.path().join("root-sh");
    let out = Command::new(copy.join("install.sh"))
        .args(["--root", s(&root)])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{stderr}");
    assert!(
        stderr.contains("install stopped at step `kernel-package`"),
        "{stderr}"
    );
    // Through install.sh, its advice names install.sh: the host may have
    // no other snp-build.
    let undo = format!(
        "{} uninstall --root {} --yes",
        copy.join("install.sh").display(),
        root.display()
    );
    assert!(stderr.contains(&undo), "{stderr}");
    assert_eq!(record(&root)["steps"][2]["state"], "failed");
}

/// A release dated before the installed one is refused (exit 10, nothing
/// changed, also in a dry run) unless --allow-downgrade; the same release
/// again, or a newer one, is no downgrade.
#[test]
fn an_older_release_over_a_newer_one_needs_allow_downgrade() {
    let tmp = tempfile::tempdir().unwrap();
    let newer = copy_as(tmp.path(), "snp-release-2026-12-04");
    let older = copy_as(tmp.path(), "snp-release-2024-05-01");
    let root = tmp.path().join("root");
    snp_build_json(Path::new("."), &["install", "--root", s(&root), s(&newer)]);
    let before = snapshot(&root);
    for dry_run in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["install", "--root", s(&root), s(&older)];
        args.extend(dry_run);
        let r = snp_build(Path::new("."), &args);
        assert_eq!(r.code, 10, "{args:?}: {}", r.stderr);
        for says in [
            "snp-release-2024-05-01 is older than snp-release-2026-12-04",
            "nothing was changed",
            "--allow-downgrade",
        ] {
            assert!(
                r.stderr.contains(says),
                "{args:?}: no {says:?} in {}",
                r.stderr
            );
        }
        assert!(snapshot(&root) == before, "{args:?} changed the root");
    }
    let r = snp_build(
        Path::new("."),
        &["install", "--root", s(&root), s(&older), "--json"],
    );
    assert_eq!(r.json()["exit_code"], 10, "{}", r.stdout);
    snp_build_json(Path::new("."), &["install", "--root", s(&root), s(&newer)]);

    let doc = snp_build_json(
        Path::new("."),
        &[
            "install",
            "--root",
            s(&root),
            s(&older),
            "--allow-downgrade",
        ],
    );
    assert_eq!(doc["release"], "snp-release-2024-05-01");
    assert_eq!(record(&root)["release"], "snp-release-2024-05-01");
    snp_build_json(Path::new("."), &["install", "--root", s(&root), s(&newer)]);
}

/// Signs `dir`'s SHA256SUMS with a fresh passwordless key, by Debian's
/// minisign, with the trusted comment snp-build writes; returns the key.
fn sign_with_minisign(dir: &Path, keys: &Path) -> PathBuf {
    let (public, secret) = (keys.join("k.pub"), keys.join("k.key"));
    let st = Command::new("minisign")
        .args(["-G", "-W", "-f", "-p", s(&public), "-s", s(&secret)])
        .stdin(Stdio::null())
        .output()
        .expect("Debian's minisign: run .ci/install-deps");
    assert!(st.status.success(), "{st:?}");
    let sha = sha256_file(&dir.join("manifest.json"));
    let name = dir.file_name().unwrap().to_str().unwrap();
    let comment = format!("release:{name} source_date_epoch:0 manifest_sha256:{sha}");
    let st = Command::new("minisign")
        .args(["-S", "-s", s(&secret), "-m", "SHA256SUMS", "-t", &comment])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    public
}

/// The command after `label` on a line of `text`, run as printed (its
/// first word, snp-build or a path to install.sh, made the binary under
/// test where it names snp-build).
fn run_printed(text: &str, label: &str) -> (String, std::process::Output) {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {text}"));
    let command = line.rsplit("run: ").next().unwrap().to_string();
    let words = shlex::split(&command).unwrap();
    let program = if words[0] == "snp-build" {
        assert_cmd::cargo::cargo_bin("snp-build")
    } else {
        PathBuf::from(&words[0])
    };
    let out = Command::new(program)
        .args(&words[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (command, out)
}

/// After a failed step, the printed "to finish" command carries the
/// run's --trusted-key (and --root): run verbatim, it checks the
/// signature again instead of "no trusted key configured"; the printed
/// undo, run verbatim, undoes. Both installers.
#[test]
fn the_printed_advice_keeps_the_checks_and_works_verbatim() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = release_with_a_broken_package(tmp.path());
    let key = sign_with_minisign(&copy, tmp.path());

    let root = tmp.path().join("root");
    let r = snp_build(
        Path::new("."),
        &[
            "install",
            "--root",
            s(&root),
            "--trusted-key",
            s(&key),
            s(&copy),
        ],
    );
    assert_eq!(r.code, 9, "{}", r.stderr);
    let (finish, out) = run_printed(&r.stderr, "to finish:");
    assert!(
        finish.contains(&format!("--trusted-key {}", key.display())),
        "{finish}"
    );
    assert!(
        finish.contains(&format!("--root {}", root.display())),
        "{finish}"
    );
    let again = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{finish}: {again}");
    assert!(!again.contains("no trusted key"), "{finish}: {again}");
    assert!(
        again.contains("install stopped at step `kernel-package`"),
        "{again}"
    );
    let (undo, out) = run_printed(&r.stderr, "to undo what was done:");
    assert!(
        out.status.success(),
        "{undo}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !root.join("var/lib/snp-build/installed.json").exists(),
        "{undo} left the record"
    );

    // install.sh prints ./install.sh's own command, with the key.
    let root = tmp.path().join("root-sh");
    let out = Command::new(copy.join("install.sh"))
        .args(["--root", s(&root), "--trusted-key", s(&key)])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(9), "{stderr}");
    let (finish, out) = run_printed(&stderr, "to finish:");
    assert!(
        finish.starts_with(&format!("{} ", copy.join("install.sh").display()))
            && finish.ends_with(" --yes"),
        "{finish}"
    );
    assert!(
        finish.contains(&format!("--trusted-key {}", key.display())),
        "{finish}"
    );
    let again = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{finish}: {again}");
    assert!(!again.contains("no trusted key"), "{finish}: {again}");
}

/// A `dpkg-deb` first on PATH that takes `secs` seconds before the real
/// one: a step long enough to press Ctrl-C in. Returns the PATH.
fn slow_dpkg_deb(dir: &Path, secs: u32) -> String {
    let bin = dir.join("slow-bin");
    std::fs::create_dir_all(&bin).unwrap();
    script(
        &bin.join("dpkg-deb"),
        &format!(
            "#!/bin/sh\ntouch \"$SNP_TEST_STARTED\"\nsleep {secs}\nexec /usr/bin/dpkg-deb \"$@\"\n"
        ),
    );
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

/// Starts an installer in a process group of its own (as a terminal's
/// foreground job), with `path` and `tmp` as PATH and TMPDIR.
fn spawn_installer(program: &Path, args: &[&str], path: &str, tmp: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    Command::new(program)
        .args(args)
        .env("PATH", path)
        .env("TMPDIR", tmp)
        .env("SNP_TEST_STARTED", tmp.join("started"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap()
}

/// Waits for the slow `dpkg-deb` to start (it touches `started`), then
/// signals the installer alone (`group`: false) or its whole group (as
/// Ctrl-C at a terminal does); returns its exit code and stderr.
fn interrupt_during_package_step(
    child: std::process::Child,
    started: &Path,
    group: bool,
) -> (Option<i32>, String) {
    wait_until(60, "the kernel package step to start", || started.exists());
    let pid = child.id() as i32;
    unsafe {
        if group {
            libc::kill(-pid, libc::SIGINT);
        } else {
            libc::kill(pid, libc::SIGINT);
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Ctrl-C during `install`'s package step, in both installers: the step
/// under way finishes (signal to the installer alone) or is reported as
/// interrupted (signal to the group), never as dpkg's failure; the record
/// says `interrupted`, the temp dirs are gone, exit 130, and the printed
/// command, run verbatim, finishes the install.
#[test]
fn ctrl_c_during_an_install_finishes_or_marks_the_step_and_says_how_to_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = copy_of_release(tmp.path());
    let path = slow_dpkg_deb(tmp.path(), 2);
    let snp_build = assert_cmd::cargo::cargo_bin("snp-build");
    let install_sh = copy.join("install.sh");
    for (installer, group) in [
        ("snp-build", false),
        ("snp-build", true),
        ("install.sh", false),
        ("install.sh", true),
    ] {
        let case = format!("{installer} group={group}");
        let root = tmp.path().join(format!("root-{installer}-{group}"));
        let temps = tmp.path().join(format!("tmp-{installer}-{group}"));
        std::fs::create_dir_all(&temps).unwrap();
        let child = if installer == "snp-build" {
            spawn_installer(
                &snp_build,
                &["install", "--root", s(&root), s(&copy)],
                &path,
                &temps,
            )
        } else {
            spawn_installer(&install_sh, &["--root", s(&root)], &path, &temps)
        };
        let (code, stderr) = interrupt_during_package_step(child, &temps.join("started"), group);
        assert_eq!(code, Some(130), "{case}: {stderr}");
        // The error is the interrupt, not what it made fail.
        let error = stderr.lines().find(|l| l.contains("error:")).unwrap_or("");
        assert!(error.contains("error: interrupted: "), "{case}: {stderr}");
        assert!(!stderr.contains("mirror"), "{case}: {stderr}");
        let rec = record(&root);
        assert_eq!(rec["interrupted"], true, "{case}: {rec}");
        assert_eq!(rec["complete"], false, "{case}: {rec}");
        let state = &rec["steps"][2]["state"];
        if group {
            assert_eq!(state, "interrupted", "{case}: {rec}");
        } else {
            assert_eq!(state, "done", "{case}: {rec}");
            assert!(
                stderr.contains("before step `kvm-conf`"),
                "{case}: {stderr}"
            );
        }
        std::fs::remove_file(temps.join("started")).unwrap();
        assert_eq!(
            std::fs::read_dir(&temps).unwrap().count(),
            0,
            "{case}: temp dirs left"
        );
        // The printed command goes on (with the real dpkg-deb).
        let (finish, out) = run_printed(&stderr, "to finish:");
        assert!(
            out.status.success(),
            "{case}: {finish}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(record(&root)["complete"], true, "{case}");
        assert!(
            record(&root).get("interrupted").is_none_or(|v| v == false),
            "{case}"
        );
    }
}
