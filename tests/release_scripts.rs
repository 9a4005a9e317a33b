//! The two scripts every release carries, `templates/install.sh` and
//! `templates/launch-qemu.sh`, run inside a fake release: the scripts and
//! `kvm.conf` copied in, a stand-in QEMU, firmware files, and real kernel
//! packages made with `dpkg-deb --build` (or `rpmbuild`), all covered by a
//! `SHA256SUMS` written with `sha256sum`.
//!
//! Needs (Debian packages, installed by `.ci/install-deps`): dpkg (dpkg-deb,
//! essential), rpm (rpmbuild, rpm2cpio), cpio, shellcheck, gcc, util-linux
//! (setpriv).
//! Several cases assume the tests run as root (as CI does); they say so.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{describe, sha256_file, text};

const HOST_REL: &str = "6.1.0-snp-host-abc";
const GUEST_REL: &str = "6.1.0-snp-guest-def";
/// The stand-in QEMU: prints its arguments, exits with $FAKE_QEMU_STATUS.
const FAKE_QEMU: &str = "#!/bin/sh\n\
    for a in \"$@\"; do echo \"ARG:$a\"; done\n\
    exit \"${FAKE_QEMU_STATUS:-0}\"\n";

fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("templates")
}

fn has_tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", "command -v \"$1\" >/dev/null", "sh", name])
        .status()
        .is_ok_and(|s| s.success())
}

fn require_tool(name: &str, package: &str) {
    assert!(
        has_tool(name),
        "`{name}` is not installed: install the Debian package `{package}` \
         (bash .ci/install-deps does) to run these tests"
    );
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn assert_root(why: &str) {
    assert!(is_root(), "this test must run as root (as CI does): {why}");
}

/// Runs a command that must succeed; returns its output.
fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", describe(&out));
    out
}

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Every file under `dir` (relative path -> content).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Packages {
    Deb,
    Rpm,
    /// No kernel packages (enough for launch-qemu.sh).
    None,
}

/// A fake `snp-release-<date>/` in a temporary directory, with an empty
/// staging root and a directory for guest images beside it.
struct Release {
    tmp: tempfile::TempDir,
}

impl Release {
    fn new(packages: Packages) -> Release {
        let tmp = tempfile::tempdir().unwrap();
        // Readable by the unprivileged user of the setpriv cases.
        set_mode(tmp.path(), 0o755);
        let r = Release { tmp };
        let dir = r.dir();
        for dir in [r.dir(), r.root(), r.guests()] {
            fs::create_dir_all(&dir).unwrap();
        }
        for script in ["install.sh", "launch-qemu.sh"] {
            fs::copy(templates().join(script), dir.join(script)).unwrap();
            set_mode(&dir.join(script), 0o755);
        }
        fs::copy(templates().join("kvm.conf"), dir.join("kvm.conf")).unwrap();
        let qemu = dir.join("usr/local/bin/qemu-system-x86_64");
        write(&qemu, FAKE_QEMU);
        set_mode(&qemu, 0o755);
        for fd in ["OVMF_CODE", "OVMF_VARS", "OVMF"] {
            write(
                &dir.join(format!("usr/local/share/qemu/{fd}.fd")),
                &format!("{fd} firmware\n"),
            );
        }
        write(&dir.join("source-commit.qemu"), "0123abc\n");
        write(&dir.join("source-config"), "[qemu]\n");
        write(&dir.join("stable-commits.lock"), "[qemu]\n");
        write(&dir.join("kernel-config.host"), "CONFIG_KVM_AMD_SEV=y\n");
        write(&dir.join("kernel-config.guest"), "CONFIG_SEV_GUEST=m\n");
        // The one installer, which install.sh checks and runs.
        common::add_installer(&dir);
        match packages {
            Packages::Deb => r.add_debs(),
            Packages::Rpm => r.add_rpms(),
            Packages::None => {}
        }
        r.write_sums();
        r
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("snp-release-2025-01-01")
    }

    /// The staging root for `install.sh --root`.
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn guests(&self) -> PathBuf {
        self.tmp.path().join("guests")
    }

    fn scratch(&self, name: &str) -> PathBuf {
        let p = self.tmp.path().join("scratch").join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// The packages `make bindeb-pkg` makes, for host and guest.
    fn add_debs(&self) {
        require_tool("dpkg-deb", "dpkg");
        for (side, rel) in [("host", HOST_REL), ("guest", GUEST_REL)] {
            let out = self.dir().join("linux").join(side);
            let version = format!("{rel}-1");
            let pkgs: Vec<(String, Vec<(String, String)>)> = vec![
                (
                    format!("linux-image-{rel}"),
                    vec![
                        (format!("boot/vmlinuz-{rel}"), format!("vmlinuz {rel}\n")),
                        (format!("lib/modules/{rel}/modules.order"), String::new()),
                    ],
                ),
                (
                    format!("linux-image-{rel}-dbg"),
                    vec![(
                        format!("usr/lib/debug/boot/vmlinux-{rel}"),
                        "debug\n".into(),
                    )],
                ),
                (
                    format!("linux-headers-{rel}"),
                    vec![(format!("usr/src/linux-headers-{rel}/Makefile"), "".into())],
                ),
                (
                    "linux-libc-dev".into(),
                    vec![("usr/include/linux/snp-fake.h".into(), "".into())],
                ),
            ];
            for (name, files) in pkgs {
                let stage = self.scratch(&format!("deb-{name}"));
                write(
                    &stage.join("DEBIAN/control"),
                    &format!(
                        "Package: {name}\nVersion: {version}\nArchitecture: amd64\n\
                         Maintainer: test <test@example.org>\nDescription: fixture {name}\n"
                    ),
                );
                for (path, content) in files {
                    write(&stage.join(path), &content);
                }
                fs::create_dir_all(&out).unwrap();
                ok(Command::new("dpkg-deb")
                    .args(["--root-owner-group", "-Zgzip", "--build"])
                    .arg(&stage)
                    .arg(out.join(format!("{name}_{version}_amd64.deb")))
                    .stdout(Stdio::null()));
            }
        }
    }

    /// The packages `make binrpm-pkg` makes (kernel, kernel-headers,
    /// kernel-devel; version with '-' turned into '_'), for host and guest.
    fn add_rpms(&self) {
        require_tool("rpmbuild", "rpm");
        for (side, rel) in [("host", HOST_REL), ("guest", GUEST_REL)] {
            let top = self.scratch(&format!("rpmbuild-{side}"));
            let spec = top.join("kernel.spec");
            write(
                &spec,
                &format!(
                    "Name: kernel\nVersion: {ver}\nRelease: 1\nSummary: fixture kernel\n\
                     License: GPL-2.0\nBuildArch: x86_64\n\
                     %define debug_package %{{nil}}\n%define __os_install_post %{{nil}}\n\
                     %description\nfixture\n\
                     %package headers\nSummary: fixture headers\n%description headers\nfixture\n\
                     %package devel\nSummary: fixture devel\n%description devel\nfixture\n\
                     %install\n\
                     mkdir -p %{{buildroot}}/boot %{{buildroot}}/usr/include/linux \
                     %{{buildroot}}/usr/src/kernels/{rel}\n\
                     echo 'vmlinuz {rel}' > %{{buildroot}}/boot/vmlinuz-{rel}\n\
                     touch %{{buildroot}}/usr/include/linux/snp-fake.h\n\
                     touch %{{buildroot}}/usr/src/kernels/{rel}/Makefile\n\
                     %files\n/boot/vmlinuz-{rel}\n\
                     %files headers\n/usr/include/linux/snp-fake.h\n\
                     %files devel\n/usr/src/kernels/{rel}/Makefile\n",
                    ver = rel.replace('-', "_"),
                ),
            );
            let out = self.dir().join("linux").join(side);
            fs::create_dir_all(&out).unwrap();
            ok(Command::new("rpmbuild")
                .args(["-bb", "--quiet", "--nodeps"])
                .arg("--define")
                .arg(format!("_topdir {}", top.display()))
                .arg("--define")
                .arg(format!("_rpmdir {}", out.display()))
                .args([
                    "--define",
                    "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
                    "--define",
                    "_build_id_links none",
                ])
                .arg(&spec)
                .stdout(Stdio::null()));
        }
    }

    /// `SHA256SUMS` over every other file, paths relative to the release.
    fn write_sums(&self) {
        let dir = self.dir();
        let files: Vec<PathBuf> = snapshot(&dir)
            .into_keys()
            .filter(|p| p != Path::new("SHA256SUMS"))
            .collect();
        let out = ok(Command::new("sha256sum")
            .arg("--")
            .args(&files)
            .current_dir(&dir));
        fs::write(dir.join("SHA256SUMS"), out.stdout).unwrap();
    }

    fn install(&self, args: &[&str]) -> Output {
        Command::new(self.dir().join("install.sh"))
            .args(args)
            .current_dir(self.tmp.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn launch(&self, args: &[&str]) -> Output {
        Command::new(self.dir().join("launch-qemu.sh"))
            .args(args)
            .current_dir(self.guests())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A dry run's QEMU command, one argument per line on stdout.
    fn launch_dry(&self, args: &[&str]) -> (Vec<String>, String) {
        let mut all = vec!["-dry-run"];
        all.extend_from_slice(args);
        let out = self.launch(&all);
        assert!(
            out.status.success(),
            "launch-qemu.sh {all:?}: {}",
            describe(&out)
        );
        let argv = text(&out.stdout).lines().map(String::from).collect();
        (argv, text(&out.stderr))
    }

    /// A guest image in the guests directory.
    fn disk(&self, name: &str) -> String {
        let p = self.guests().join(name);
        fs::write(&p, "disk").unwrap();
        p.to_str().unwrap().to_string()
    }

    fn root_str(&self) -> String {
        self.root().to_str().unwrap().to_string()
    }
}

/// Runs `cmd` as the unprivileged user nobody (65534).
fn as_nobody(program: &Path, args: &[&str], cwd: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

// ---------------------------------------------------------------- install.sh

/// How an install is started: the release's `install.sh`, or this build's
/// `snp-build install DIR`. One installer runs behind both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Script,
    Binary,
}

impl Release {
    fn install_by(&self, entry: Entry, args: &[&str]) -> Output {
        match entry {
            Entry::Script => self.install(args),
            Entry::Binary => Command::new(assert_cmd::cargo::cargo_bin("snp-build"))
                .arg("install")
                .args(args)
                .arg(self.dir())
                .current_dir(self.tmp.path())
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        }
    }
}

/// Every case through both entry points, each on a fresh release: the
/// same exit code, and the same files in the staging root (issue 27: one
/// order, one record, one table of exit codes).
#[test]
fn install_sh_and_snp_build_install_are_one_installer() {
    type Case = (&'static str, Packages, fn(&Release), Vec<&'static str>, i32);
    fn nothing(_: &Release) {}
    fn older_installed(r: &Release) {
        // The record of a newer install.
        let record = r.root().join("var/lib/snp-build/installed.json");
        fs::create_dir_all(record.parent().unwrap()).unwrap();
        let out = Command::new(assert_cmd::cargo::cargo_bin("snp-build"))
            .args(["install", "--root"])
            .arg(r.root())
            .arg(r.dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        let text = fs::read_to_string(&record)
            .unwrap()
            .replace("snp-release-2025-01-01", "snp-release-2025-06-01");
        fs::write(&record, text).unwrap();
    }
    fn rpm_only(_: &Release) {}
    let cases: Vec<Case> = vec![
        (
            "dry run",
            Packages::Deb,
            nothing,
            vec!["--dry-run", "--root", "@ROOT@"],
            0,
        ),
        (
            "staging install",
            Packages::Deb,
            nothing,
            vec!["--root", "@ROOT@"],
            0,
        ),
        (
            "older than the installed one",
            Packages::Deb,
            older_installed,
            vec!["--root", "@ROOT@"],
            10,
        ),
        (
            "older, allowed",
            Packages::Deb,
            older_installed,
            vec!["--root", "@ROOT@", "--allow-downgrade"],
            0,
        ),
        (
            "rpm packages for a Debian root",
            Packages::Rpm,
            rpm_only,
            vec!["--root", "@ROOT@"],
            1,
        ),
        (
            "an unknown option",
            Packages::Deb,
            nothing,
            vec!["--frobnicate"],
            2,
        ),
        (
            "a trusted key that is not there",
            Packages::Deb,
            nothing,
            vec!["--root", "@ROOT@", "--trusted-key", "/nonexistent.pub"],
            2,
        ),
        (
            "live, no terminal, no --yes",
            Packages::Deb,
            nothing,
            vec![],
            2,
        ),
    ];
    for (what, packages, prepare, args, code) in cases {
        let mut staged = Vec::new();
        for entry in [Entry::Script, Entry::Binary] {
            let r = Release::new(packages);
            fs::create_dir_all(r.root().join("etc")).unwrap();
            fs::write(r.root().join("etc/os-release"), "ID=debian\n").unwrap();
            prepare(&r);
            let before = snapshot(&r.root());
            let root = r.root_str();
            let args: Vec<&str> = args
                .iter()
                .map(|a| if *a == "@ROOT@" { root.as_str() } else { a })
                .collect();
            let out = r.install_by(entry, &args);
            assert_eq!(
                out.status.code(),
                Some(code),
                "{entry:?}, {what}: {}",
                describe(&out)
            );
            let after = snapshot(&r.root());
            if code != 0 || args.contains(&"--dry-run") {
                assert!(before == after, "{entry:?}, {what}: the root changed");
            }
            let record = r.root().join("var/lib/snp-build/installed.json");
            if code == 0 && !args.contains(&"--dry-run") {
                let text = fs::read_to_string(&record).unwrap();
                assert!(
                    !text.contains("snp-build-install-"),
                    "{entry:?}, {what}: the record names a temp path:\n{text}"
                );
                let current = r.root().join("opt/snp-build/current");
                assert!(
                    current.join("launch-qemu.sh").is_file(),
                    "{entry:?}, {what}: no stack placed"
                );
                assert!(current.join("usr/local/share/qemu/OVMF.fd").is_file());
                assert!(current.join("bin/snp-build").is_file());
                assert!(!current.join("linux").exists(), "packages placed");
            }
            staged.push(after.into_keys().collect::<Vec<_>>());
        }
        assert_eq!(
            staged[0], staged[1],
            "{what}: the two entry points staged different files"
        );
    }
}

/// What only the launcher checks, before it runs anything of the
/// release's: the binary's SHA256SUMS line, and that there is one.
#[test]
fn install_sh_runs_only_the_binary_sha256sums_names() {
    let r = Release::new(Packages::Deb);
    let bin = r.dir().join("bin/snp-build");
    // Replaced by another program whose line was not updated: refused, and
    // the replacement never runs.
    fs::remove_file(&bin).unwrap();
    write(&bin, "#!/bin/sh\ntouch \"$0.ran\"\n");
    set_mode(&bin, 0o755);
    let out = r.install(&["--dry-run", "--root", &r.root_str()]);
    assert_eq!(out.status.code(), Some(8), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("bin/snp-build does not match SHA256SUMS"),
        "{}",
        describe(&out)
    );
    assert!(
        !r.dir().join("bin/snp-build.ran").exists(),
        "the unchecked binary ran"
    );
    // A release built without it says how to install it instead.
    fs::remove_file(&bin).unwrap();
    r.write_sums();
    let out = r.install(&["--dry-run", "--root", &r.root_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("carries no bin/snp-build"),
        "{}",
        describe(&out)
    );
    assert!(snapshot(&r.root()).is_empty());
}

/// `install.sh uninstall` is `snp-build uninstall`: the stack, the
/// staged package's record and kvm.conf go.
#[test]
fn install_sh_uninstall_undoes_a_staging_install() {
    let r = Release::new(Packages::Deb);
    let out = r.install(&["--root", &r.root_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(r.root().join("opt/snp-build/current").exists());
    let out = r.install(&["uninstall", "--root", &r.root_str(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["stacks_removed"],
        serde_json::json!(["/opt/snp-build/releases/snp-release-2025-01-01"])
    );
    assert!(!r.root().join("opt/snp-build").exists());
    assert!(!r.root().join("var/lib/snp-build/installed.json").exists());
}

#[test]
fn install_stops_before_changing_anything_when_a_file_is_tampered_or_missing() {
    let r = Release::new(Packages::Deb);
    let fd = r.dir().join("usr/local/share/qemu/OVMF.fd");
    let mut bytes = fs::read(&fd).unwrap();
    bytes[0] ^= 1;
    fs::write(&fd, bytes).unwrap();

    for args in [vec!["--root", &r.root_str()], vec!["--dry-run"]] {
        let out = r.install(&args);
        assert_eq!(out.status.code(), Some(8), "{args:?}: {}", describe(&out));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("usr/local/share/qemu/OVMF.fd"), "{stderr}");
        assert!(stderr.contains("nothing was changed"), "{stderr}");
        assert!(!text(&out.stdout).contains("dpkg"), "{}", describe(&out));
    }
    assert!(snapshot(&r.root()).is_empty(), "something was installed");

    // A listed file that is gone is named too.
    fs::remove_file(r.dir().join("source-config")).unwrap();
    let out = r.install(&["--root", &r.root_str()]);
    assert_eq!(out.status.code(), Some(8), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("source-config"), "{stderr}");
    assert!(snapshot(&r.root()).is_empty(), "something was installed");

    // A package that SHA256SUMS does not cover is never installed.
    r.write_sums();
    let sums = r.dir().join("SHA256SUMS");
    let kept: String = fs::read_to_string(&sums)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("linux/host/linux-image-"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&sums, kept).unwrap();
    let out = r.install(&["--root", &r.root_str()]);
    assert_eq!(out.status.code(), Some(8), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("not listed in SHA256SUMS"),
        "{}",
        describe(&out)
    );
    assert!(snapshot(&r.root()).is_empty(), "something was installed");
}

/// One table of tampered releases, run against both installers: each is
/// refused before anything changes, with the same exit code (8: the release
/// failed verification) by `snp-build install` and by the release's
/// `install.sh`.
#[test]
fn both_installers_refuse_the_same_tampered_releases() {
    type Tamper = fn(&Release);
    fn append_sum(r: &Release, line: String) {
        let sums = r.dir().join("SHA256SUMS");
        let mut text = fs::read_to_string(&sums).unwrap();
        text.push_str(&line);
        fs::write(sums, text).unwrap();
    }
    fn outside(r: &Release, name: &str, content: &str) -> PathBuf {
        let p = r.tmp.path().join(name);
        write(&p, content);
        p
    }
    let cases: &[(&str, Tamper, i32)] = &[
        (
            "an extra file SHA256SUMS does not list",
            |r| write(&r.dir().join("extra.sh"), "#!/bin/sh\necho surprise\n"),
            8,
        ),
        (
            "a ../ entry in SHA256SUMS",
            |r| {
                let p = outside(r, "outside", "outside the release\n");
                append_sum(r, format!("{}  ../outside\n", sha256_file(&p)));
            },
            8,
        ),
        (
            "an absolute entry in SHA256SUMS",
            |r| {
                let p = outside(r, "abs", "absolute\n");
                append_sum(r, format!("{}  {}\n", sha256_file(&p), p.display()));
            },
            8,
        ),
        (
            "a symlinked kvm.conf whose target matches its line",
            |r| {
                let target = outside(r, "evil.conf", "options kvm_amd sev-snp=0\n");
                let conf = r.dir().join("kvm.conf");
                fs::remove_file(&conf).unwrap();
                std::os::unix::fs::symlink(&target, &conf).unwrap();
                r.write_sums();
            },
            8,
        ),
        (
            "a symlinked directory",
            |r| {
                let qemu = r.dir().join("usr/local/share/qemu");
                let moved = r.tmp.path().join("moved-qemu");
                fs::rename(&qemu, &moved).unwrap();
                std::os::unix::fs::symlink(&moved, &qemu).unwrap();
            },
            8,
        ),
        (
            "a modified file",
            |r| {
                write(
                    &r.dir().join("source-config"),
                    "[qemu]\nurl = \"elsewhere\"\n",
                )
            },
            8,
        ),
        (
            "a listed file that is gone",
            |r| fs::remove_file(r.dir().join("kernel-config.guest")).unwrap(),
            8,
        ),
        (
            "a line that is not a checksum line",
            |r| append_sum(r, "not a checksum\n".into()),
            8,
        ),
        (
            "a file listed twice",
            |r| {
                let sums = fs::read_to_string(r.dir().join("SHA256SUMS")).unwrap();
                let first = sums.lines().next().unwrap().to_string();
                append_sum(r, format!("{first}\n"));
            },
            8,
        ),
    ];
    for (what, tamper, script_code) in cases {
        let r = Release::new(Packages::Deb);
        tamper(&r);
        let by_binary = Command::new(assert_cmd::cargo::cargo_bin("snp-build"))
            .args(["install", "--root", &r.root_str()])
            .arg(r.dir())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            by_binary.status.code(),
            Some(*script_code),
            "snp-build install, {what}: {}",
            describe(&by_binary)
        );
        assert!(
            snapshot(&r.root()).is_empty(),
            "snp-build install changed something: {what}"
        );
        let by_script = r.install(&["--root", &r.root_str()]);
        assert_eq!(
            by_script.status.code(),
            Some(*script_code),
            "install.sh, {what}: {}",
            describe(&by_script)
        );
        assert!(
            text(&by_script.stderr).contains("nothing was changed"),
            "install.sh, {what}: {}",
            describe(&by_script)
        );
        assert!(
            snapshot(&r.root()).is_empty(),
            "install.sh changed something: {what}"
        );
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The arguments every guest gets, with `machine` as the -machine value.
fn common_head(r: &Release, machine: &str) -> Vec<String> {
    let qemu = r.dir().join("usr/local/bin/qemu-system-x86_64");
    let mut v = vec![qemu.to_str().unwrap().to_string()];
    v.extend(strs(&[
        "-enable-kvm",
        "-machine",
        machine,
        "-cpu",
        "EPYC-v4",
        "-smp",
        "4",
        "-m",
        "2048M",
        "-no-reboot",
        "-nographic",
    ]));
    v
}

fn split_firmware(r: &Release, vars: &str) -> Vec<String> {
    let code = r.dir().join("usr/local/share/qemu/OVMF_CODE.fd");
    vec![
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=0,file={},readonly=on",
            code.display()
        ),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={vars}"),
    ]
}

fn scsi_disk(disk: &str) -> Vec<String> {
    vec![
        "-device".into(),
        "virtio-scsi-pci,id=scsi0,disable-legacy=on,iommu_platform=true".into(),
        "-drive".into(),
        format!("file={disk},if=none,id=disk0,format=qcow2"),
        "-device".into(),
        "scsi-hd,drive=disk0".into(),
    ]
}

#[test]
fn launch_dry_run_prints_the_expected_arguments_for_sev_sev_es_and_snp() {
    let r = Release::new(Packages::None);
    let disk = r.disk("disk.qcow2");
    let vars = r.guests().join("disk.OVMF_VARS.fd");
    let vars = vars.to_str().unwrap();
    let monitor = strs(&["-monitor", "pty"]);

    for (flag, policy) in [("-sev", "0x1"), ("-sev-es", "0x5")] {
        let (argv, stderr) = r.launch_dry(&["-cbitpos", "51", flag, "-hda", &disk]);
        let mut want = common_head(&r, "q35,confidential-guest-support=sev0,vmport=off");
        want.push("-object".into());
        want.push(format!(
            "sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy={policy}"
        ));
        want.extend(split_firmware(&r, vars));
        want.extend(scsi_disk(&disk));
        want.extend(monitor.clone());
        assert_eq!(argv, want, "{flag}\n{stderr}");
        assert!(
            stderr.contains(&format!(
                "would copy {}",
                r.dir().join("usr/local/share/qemu/OVMF_VARS.fd").display()
            )),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("to {vars}")), "{stderr}");
    }

    let (argv, stderr) = r.launch_dry(&["-cbitpos", "51", "-sev-snp", "-hda", &disk]);
    let mut want = common_head(
        &r,
        "q35,confidential-guest-support=sev0,memory-backend=ram1,vmport=off",
    );
    want.extend(strs(&[
        "-object",
        "memory-backend-memfd,id=ram1,size=2048M,share=true,prealloc=false",
        "-object",
        "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1",
        "-bios",
    ]));
    want.push(
        r.dir()
            .join("usr/local/share/qemu/OVMF.fd")
            .to_str()
            .unwrap()
            .into(),
    );
    want.extend(scsi_disk(&disk));
    want.extend(monitor.clone());
    assert_eq!(argv, want, "-sev-snp\n{stderr}");
    assert!(
        !stderr.contains("OVMF_VARS"),
        "SNP needs no VARS copy: {stderr}"
    );

    // No SEV flag: a plain KVM guest on the split firmware.
    let (argv, _) = r.launch_dry(&["-hda", &disk]);
    let mut want = common_head(&r, "q35");
    want.extend(split_firmware(&r, vars));
    want.extend(scsi_disk(&disk));
    want.extend(monitor);
    assert_eq!(argv, want, "plain guest");

    // A dry run creates no file: only the disk image is there.
    let names: Vec<PathBuf> = snapshot(&r.guests()).into_keys().collect();
    assert_eq!(names, vec![PathBuf::from("disk.qcow2")]);
}

#[test]
fn launch_dry_run_passes_the_other_options_through() {
    let r = Release::new(Packages::None);
    let disk = r.disk("guest.img");
    let iso = r.disk("installer.iso");
    let kernel = r.disk("vmlinuz");
    let initrd = r.disk("initrd.img");
    let bios = r.guests().join("fw");
    for fd in ["OVMF.fd", "OVMF_CODE.fd", "OVMF_VARS.fd"] {
        write(&bios.join(fd), fd);
    }
    let certs = r.guests().join("certs.bin");
    let monitor = r.guests().join("mon.sock");
    let (argv, _) = r.launch_dry(&[
        "-sev-snp",
        "-cbitpos",
        "48",
        "-allow-debug",
        "-mem",
        "4096",
        "-smp",
        "2",
        "-cpu",
        "EPYC-Milan",
        "-bios",
        bios.to_str().unwrap(),
        "-hda",
        &disk,
        "-cdrom",
        &iso,
        "-kernel",
        &kernel,
        "-initrd",
        &initrd,
        "-append",
        "console=ttyS0 root=/dev/sda1",
        "-default-network",
        "-monitor",
        monitor.to_str().unwrap(),
        "-certs",
        certs.to_str().unwrap(),
    ]);
    let has = |pair: [&str; 2]| argv.windows(2).any(|w| w[0] == pair[0] && w[1] == pair[1]);
    let snp = format!(
        "sev-snp-guest,id=sev0,cbitpos=48,reduced-phys-bits=1,policy=0xb0000,certs-path={},kernel-hashes=on",
        certs.display()
    );
    let bios_fd = bios.join("OVMF.fd");
    let disk_drive = format!("file={disk},if=none,id=disk0,format=raw");
    let cd_drive = format!("file={iso},if=none,id=cd0,format=raw,media=cdrom,readonly=on");
    let mon = format!("unix:{},server=on,wait=off", monitor.display());
    for pair in [
        ["-cpu", "EPYC-Milan"],
        ["-smp", "2"],
        ["-m", "4096M"],
        [
            "-object",
            "memory-backend-memfd,id=ram1,size=4096M,share=true,prealloc=false",
        ],
        ["-object", &snp],
        ["-bios", bios_fd.to_str().unwrap()],
        ["-drive", &disk_drive],
        ["-drive", &cd_drive],
        ["-device", "scsi-cd,drive=cd0,bootindex=0"],
        ["-netdev", "user,id=vmnic"],
        [
            "-device",
            "virtio-net-pci,netdev=vmnic,disable-legacy=on,iommu_platform=true,romfile=",
        ],
        ["-kernel", &kernel],
        ["-initrd", &initrd],
        ["-append", "console=ttyS0 root=/dev/sda1"],
        ["-monitor", &mon],
    ] {
        assert!(has(pair), "{pair:?} not in {argv:#?}");
    }
    assert_eq!(
        argv.iter().filter(|a| *a == "-device").count(),
        4,
        "{argv:#?}"
    );

    // -allow-debug clears SEV's no-debug bit: 0x1 -> 0x0, ES 0x5 -> 0x4.
    for (flag, policy) in [("-sev", "0x0"), ("-sev-es", "0x4")] {
        let (argv, _) = r.launch_dry(&[flag, "-allow-debug", "-cbitpos", "51"]);
        let obj = format!("sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy={policy}");
        assert!(argv.contains(&obj), "{obj} not in {argv:#?}");
    }
    // -kernel without -append gets AMD's default command line.
    let (argv, _) = r.launch_dry(&["-kernel", &kernel]);
    assert!(
        argv.contains(&"console=ttyS0 earlyprintk=serial root=/dev/sda2".to_string()),
        "{argv:#?}"
    );
}

#[test]
fn launch_without_cbitpos_dry_run_uses_a_placeholder_when_cpuid_is_unreadable() {
    require_tool("setpriv", "util-linux");
    assert_root("it drops to the user nobody, who cannot read /dev/cpu/0/cpuid");
    let r = Release::new(Packages::None);
    let script = r.dir().join("launch-qemu.sh");
    let out = as_nobody(&script, &["-dry-run", "-sev-snp"], &r.guests());
    assert!(out.status.success(), "{}", describe(&out));
    let argv: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert!(
        argv.contains(&"sev-snp-guest,id=sev0,cbitpos=<cbitpos>,reduced-phys-bits=1".to_string()),
        "{argv:#?}"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("placeholder <cbitpos>"), "{stderr}");
    assert!(stderr.contains("not root"), "{stderr}");

    // Without -dry-run it is root only.
    let out = as_nobody(&script, &["-sev-snp", "-cbitpos", "51"], &r.guests());
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("must be run as root"),
        "{}",
        describe(&out)
    );
}

#[test]
fn launch_runs_the_release_qemu_with_a_private_vars_copy_and_a_log() {
    assert_root("a real launch is root only");
    let r = Release::new(Packages::None);
    let disk = r.disk("vm1.raw");
    let log = r.guests().join("console.log");
    let out = r.launch(&[
        "-sev",
        "-cbitpos",
        "51",
        "-hda",
        &disk,
        "-log",
        log.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let vars = r.guests().join("vm1.OVMF_VARS.fd");
    assert_eq!(fs::read_to_string(&vars).unwrap(), "OVMF_VARS firmware\n");
    let stdout = text(&out.stdout);
    let drive = format!("ARG:file={disk},if=none,id=disk0,format=raw");
    assert!(stdout.contains(&drive), "{stdout}");
    assert!(stdout.contains(&format!(
        "ARG:if=pflash,format=raw,unit=1,file={}",
        vars.display()
    )));
    let logged = fs::read_to_string(&log).unwrap();
    let first = logged.lines().next().unwrap();
    assert!(
        first.contains("-object sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x1"),
        "{logged}"
    );
    assert!(logged.contains(&drive), "{logged}");

    // The existing VARS copy is reused, and QEMU's exit status is the script's.
    fs::write(&vars, "guest's own variables").unwrap();
    let out = Command::new(r.dir().join("launch-qemu.sh"))
        .args([
            "-sev",
            "-cbitpos",
            "51",
            "-hda",
            &disk,
            "-log",
            log.to_str().unwrap(),
        ])
        .env("FAKE_QEMU_STATUS", "7")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert_eq!(fs::read_to_string(&vars).unwrap(), "guest's own variables");
}

#[test]
fn launch_usage_errors() {
    let r = Release::new(Packages::None);
    for args in [
        vec!["-dry-run", "-bogus"],
        vec!["-dry-run", "-mem"],
        vec!["-dry-run", "-mem", "lots"],
        vec!["-dry-run", "-initrd", "x"],
        vec!["-dry-run", "-sev", "-certs", "c.bin"],
        vec!["-dry-run", "-cbitpos", "64"],
    ] {
        let out = r.launch(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
    }
    let out = r.launch(&["-dry-run", "-hda", "/nonexistent/disk.qcow2"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains("/nonexistent/disk.qcow2"));
    let out = r.launch(&["-h"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("-sev-snp"));
}

// ---------------------------------------------------------------- shellcheck

#[test]
fn release_scripts_are_shellcheck_clean() {
    require_tool("shellcheck", "shellcheck");
    let out = Command::new("shellcheck")
        .arg(templates().join("install.sh"))
        .arg(templates().join("launch-qemu.sh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "shellcheck: {}", describe(&out));
}

// ------------------------------------------------------- launch measurement

/// The note a dry run prints about the launch digest (its one line).
fn digest_note(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.contains("expected SEV-SNP launch digest"))
        .unwrap_or_else(|| panic!("no launch digest note:\n{stderr}"))
}

#[test]
fn launch_dry_run_starts_guests_in_the_vmsa_mode_measurements_assume() {
    let r = Release::new(Packages::None);
    let fw = r.dir().join("usr/local/share/qemu/OVMF.fd");
    let params = r.guests().join("kvm_amd-parameters");
    fs::create_dir_all(&params).unwrap();
    let measurements = |mode: &str, lines: &str| {
        write(
            &r.dir().join("MEASUREMENTS"),
            &format!(
                "# firmware-sha256: {}\n# vmsa-mode: {mode}\n{lines}",
                sha256_file(&fw)
            ),
        )
    };
    let dry = |args: &[&str]| {
        let out = Command::new(r.dir().join("launch-qemu.sh"))
            .args(["-dry-run", "-cbitpos", "51"])
            .args(args)
            .env("SNP_LAUNCH_KVM_AMD_PARAMS", &params)
            .current_dir(r.guests())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        (text(&out.stdout), text(&out.stderr))
    };
    let uname = text(&Command::new("uname").arg("-r").output().unwrap().stdout);
    let nums: Vec<u32> = uname
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    let host_has_init2 = (nums[0], nums[1]) >= (6, 10);

    // init2: SEV guests are created with KVM_SEV_INIT2 too, and an SNP
    // launch on a host without it says the digest will differ.
    let (d1, d21) = ("c3".repeat(48), "d4".repeat(48));
    measurements(
        "init2",
        &format!("{d1}  --vcpus 4 --vcpu-type EPYC-v4 --guest-features 0x1 --vmsa-mode init2\n"),
    );
    let (argv, _) = dry(&["-sev-es"]);
    assert!(argv.contains(",legacy-vm-type=off\n"), "{argv}");
    let (_, err) = dry(&["-sev-snp"]);
    assert!(digest_note(&err).contains(&d1), "{err}");
    assert_eq!(
        err.contains("which this host's kernel"),
        !host_has_init2,
        "{err}"
    );

    // legacy: QEMU chooses; kvm_amd's debug_swap turns the guest features
    // into 0x21, and the digest is looked up with them.
    measurements(
        "legacy",
        &format!(
            "{d1}  --vcpus 4 --vcpu-type EPYC-v4 --guest-features 0x1 --vmsa-mode legacy\n\
             {d21}  --vcpus 4 --vcpu-type EPYC-v4 --guest-features 0x21 --vmsa-mode legacy\n"
        ),
    );
    let (argv, _) = dry(&["-sev-es"]);
    assert!(!argv.contains("legacy-vm-type"), "{argv}");
    let (_, err) = dry(&["-sev-snp"]);
    assert!(digest_note(&err).contains(&d1), "{err}");
    write(&params.join("debug_swap"), "Y\n");
    let (_, err) = dry(&["-sev-snp"]);
    assert!(err.contains("debug_swap is on"), "{err}");
    assert!(digest_note(&err).contains(&d21), "{err}");
    let (_, err) = dry(&["-sev-snp", "-smp", "3"]);
    assert!(
        digest_note(&err)
            .ends_with("--vcpus 3 --vcpu-type EPYC-v4 --guest-features 0x21 --vmsa-mode legacy"),
        "{err}"
    );
}

#[test]
fn launch_dry_run_notes_the_snp_digest_from_measurements_or_the_measure_command() {
    let r = Release::new(Packages::None);
    let fw = r.dir().join("usr/local/share/qemu/OVMF.fd");
    let (d4, d2) = ("a1".repeat(48), "b2".repeat(48));
    // As snp-build writes it (src/measure.rs, ReleaseMeasurements::file_text).
    write(
        &r.dir().join("MEASUREMENTS"),
        &format!(
            "# Expected SEV-SNP launch digests\n\
             # firmware: usr/local/share/qemu/OVMF.fd\n\
             # firmware-sha256: {}\n\
             # vmsa-mode: init2\n\
             {d4}  --vcpus 4 --vcpu-type EPYC-v4 --guest-features 0x1 --vmsa-mode init2\n\
             {d2}  --vcpus 2 --vcpu-type EPYC-Milan --guest-features 0x1 --vmsa-mode init2\n",
            sha256_file(&fw)
        ),
    );
    let snp = |extra: &[&str]| {
        let mut args = vec!["-cbitpos", "51", "-sev-snp"];
        args.extend_from_slice(extra);
        r.launch_dry(&args)
    };
    let measure = |rest: &str| {
        format!(
            "; run snp-build measure --ovmf {} {rest}",
            fw.to_str().unwrap()
        )
    };

    // Listed shapes: the digest; stdout stays exactly QEMU's arguments.
    let (argv, err) = snp(&[]);
    assert_eq!(
        digest_note(&err),
        format!(
            "launch-qemu.sh: expected SEV-SNP launch digest: {d4} \
             (MEASUREMENTS: --vcpus 4 --vcpu-type EPYC-v4 --guest-features 0x1 --vmsa-mode init2)"
        )
    );
    assert!(argv.iter().all(|a| !a.contains(&d4)), "{argv:?}");
    let (_, err) = snp(&["-smp", "2", "-cpu", "EPYC-Milan,+avx2"]);
    assert!(digest_note(&err).contains(&d2), "{err}");

    // Shapes it lacks: the snp-build measure command for exactly this guest.
    let (_, err) = snp(&["-smp", "2"]);
    let note = digest_note(&err);
    assert!(
        note.contains(
            "not precomputed (MEASUREMENTS has no line for --vcpus 2 --vcpu-type EPYC-v4"
        ),
        "{note}"
    );
    assert!(
        note.ends_with(&measure(
            "--vcpus 2 --vcpu-type EPYC-v4 --guest-features 0x1 --vmsa-mode init2"
        )),
        "{note}"
    );
    let (_, err) = snp(&["-cpu", "EPYC-v4,family=25"]);
    assert!(
        digest_note(&err).contains("changes the CPU signature"),
        "{err}"
    );

    let kernel = r.disk("vmlinuz");
    let initrd = r.disk("initrd.img");
    let (_, err) = snp(&["-kernel", &kernel, "-initrd", &initrd]);
    let note = digest_note(&err);
    assert!(note.contains("direct kernel boot"), "{note}");
    assert!(
        note.ends_with(&measure(&format!(
            "--vcpus 4 --vcpu-type EPYC-v4 --guest-features 0x1 --vmsa-mode init2 --kernel {kernel} \
             --initrd {initrd} --append 'console=ttyS0 earlyprintk=serial root=/dev/sda2'"
        ))),
        "{note}"
    );
    let (_, err) = snp(&["-kernel", &kernel, "-append", "it's quiet"]);
    assert!(
        digest_note(&err).ends_with(&format!("--kernel {kernel} --append 'it'\\''s quiet'")),
        "{err}"
    );

    // Other firmware: a copy of the release's is still the listed one.
    let same = r.guests().join("same-fw");
    let other = r.guests().join("other-fw");
    for dir in [&same, &other] {
        for fd in ["OVMF_CODE.fd", "OVMF_VARS.fd"] {
            write(&dir.join(fd), fd);
        }
    }
    fs::copy(&fw, same.join("OVMF.fd")).unwrap();
    write(&other.join("OVMF.fd"), "another firmware\n");
    let (_, err) = snp(&["-bios", same.to_str().unwrap()]);
    assert!(digest_note(&err).contains(&d4), "{err}");
    let (_, err) = snp(&["-bios", other.to_str().unwrap()]);
    let note = digest_note(&err);
    assert!(
        note.contains("is not a firmware MEASUREMENTS lists")
            && note.contains(&format!(
                "run snp-build measure --ovmf {}/OVMF.fd --vcpus 4",
                other.display()
            )),
        "{note}"
    );

    // No SNP, no note; no MEASUREMENTS, the command.
    let (_, err) = r.launch_dry(&["-cbitpos", "51", "-sev-es"]);
    assert!(!err.contains("launch digest"), "{err}");
    fs::remove_file(r.dir().join("MEASUREMENTS")).unwrap();
    let (_, err) = snp(&[]);
    let note = digest_note(&err);
    assert!(
        note.contains("this release has no MEASUREMENTS file")
            && note.ends_with(&measure(
                "--vcpus 4 --vcpu-type EPYC-v4 --guest-features 0x1 --vmsa-mode init2"
            )),
        "{note}"
    );
}
