//! Installing a release for real (issue 18): a Debian 12 system made with
//! `debootstrap --variant=minbase bookworm` from this machine's own apt
//! mirror (cached between runs), a fixture release, and both installers
//! (`snp-build install` and the release's `install.sh`) run inside it with
//! `chroot`, then `snp-build uninstall`. The same system is the fresh
//! machine of README's command 1 (`doctor --fix`, issue 24).
//!
//! Each command runs in its own mount namespace (`unshare --mount`), where
//! /proc, /sys, /dev and the snp-build binary are bound into the system:
//! the mounts end with the command, whatever happens to the test. The
//! network is cut with `unshare --net` where a scenario needs it.
//!
//! The fixture QEMU is linked against libpixman-1.so.0, which a minbase
//! system lacks, so every install has a real dependency to install (from
//! the mirror) or to fail on (offline).
//!
//! Needs root, debootstrap and the mirror. Without them each test says why
//! it is skipped; with `SNP_BUILD_TEST_REQUIRE_SYSTEM=1` (CI sets it) that
//! is a failure instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use common::*;
use serde_json::Value;

const DATE: &str = "2026-11-22";
const NAME: &str = "snp-release-2026-11-22";
/// What the system had in /etc/modprobe.d/kvm.conf before any install.
const ORIGINAL_KVM_CONF: &str = "options kvm_amd sev=1\n";
// ------------------------------------------------------------------ setup

/// Why the system tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root (chroot and mount need it)".into());
    }
    for tool in ["debootstrap", "unshare", "chroot", "mount"] {
        if !on_path(tool) {
            return Some(format!(
                "{tool} is not installed (.ci/install-deps installs it)"
            ));
        }
    }
    None
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| d.join(tool).is_file())
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|d| Path::new(d).join(tool).is_file())
    })
}

/// Skips (or, under CI, fails) with the reason.
fn skip(reason: &str) {
    if std::env::var_os("SNP_BUILD_TEST_REQUIRE_SYSTEM").is_some_and(|v| v == "1") {
        panic!("the real-system install tests cannot run: {reason}");
    }
    // Past the test harness's capture (which hides a passing test's
    // eprintln!), so the skip shows in every `cargo test` run.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (not a pass): real-system install test: {reason}"
    );
}

/// The Debian mirror this machine's apt uses for bookworm itself (not
/// -updates, -security or a third-party repository).
fn mirror() -> Option<String> {
    let mut texts = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in texts {
        // deb822 stanzas: `URIs:` and `Suites:` lines.
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            };
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:"))
                && suites.split_whitespace().any(|s| s == "bookworm")
            {
                return uris.split_whitespace().next().map(str::to_string);
            }
        }
        // One-line form: `deb [options] URL bookworm main`.
        for line in text.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"deb")
                && let Some(i) = words.iter().position(|w| w.contains("://"))
                && words.get(i + 1) == Some(&"bookworm")
            {
                return Some(words[i].to_string());
            }
        }
    }
    None
}

fn cache_dir() -> PathBuf {
    std::env::var_os("SNP_BUILD_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/snp-build-test"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Base {
    /// `debootstrap --variant=minbase`: no initramfs generator, no boot loader.
    Minbase,
    /// The same with initramfs-tools.
    Initramfs,
}

/// The cached base system, made on first use: `Err` says why it cannot be.
fn base(kind: Base) -> Result<PathBuf, String> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let name = match kind {
        Base::Minbase => "bookworm-minbase",
        Base::Initramfs => "bookworm-minbase-initramfs-tools",
    };
    let dir = cache_dir().join(name);
    if dir.join("etc/debian_version").is_file() {
        return Ok(dir);
    }
    let mirror = mirror().ok_or("no Debian mirror in /etc/apt/sources.list(.d)")?;
    std::fs::create_dir_all(cache_dir()).map_err(|e| format!("{}: {e}", cache_dir().display()))?;
    let tmp = cache_dir().join(format!("{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase");
    if kind == Base::Initramfs {
        cmd.arg("--include=initramfs-tools");
    }
    let out = cmd
        .args(["bookworm"])
        .arg(&tmp)
        .arg(&mirror)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running debootstrap: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "debootstrap from {mirror} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    std::fs::rename(&tmp, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// The fixture release, its QEMU linked against libpixman-1.so.0.
fn release() -> &'static Path {
    static BUILT: OnceLock<(Scratch, PathBuf)> = OnceLock::new();
    &BUILT
        .get_or_init(|| {
            let s = Scratch::kept(shared_fixtures());
            s.edit_pins(
                "tools = [\"gcc\", \"make\", \"meson\", \"ninja\"]\n",
                "tools = [\"gcc\", \"make\", \"meson\", \"ninja\"]\nconfigure-args = [\"--extra-ldflags=-Wl,--no-as-needed -l:libpixman-1.so.0\"]\n",
            );
            build_with_installer(&s, DATE);
            let dir = s.path().join("out").join(NAME);
            (s, dir)
        })
        .1
}

/// A second release whose host kernel has another release string (as the
/// next night's build would), installed over the first.
fn newer_release() -> &'static Path {
    static BUILT: OnceLock<(Scratch, PathBuf)> = OnceLock::new();
    &BUILT
        .get_or_init(|| {
            let s = Scratch::kept(shared_fixtures());
            s.edit_pins(
                "tools = [\"gcc\", \"make\", \"meson\", \"ninja\"]\n",
                "tools = [\"gcc\", \"make\", \"meson\", \"ninja\"]\nconfigure-args = [\"--extra-ldflags=-Wl,--no-as-needed -l:libpixman-1.so.0\"]\n",
            );
            s.edit_pins(
                "[kernel]\n",
                "[kernel]\nset-str = { LOCALVERSION = \"-snp2-{kernel}-{sha}\" }\n",
            );
            build_with_installer(&s, NEWER_DATE);
            let dir = s.path().join("out").join(format!("snp-release-{NEWER_DATE}"));
            (s, dir)
        })
        .1
}

const NEWER_DATE: &str = "2026-11-23";

/// `--package` with the release carrying this build's snp-build, stripped
/// as `cargo xtask dist` ships it: the installer `install.sh` runs.
fn build_with_installer(s: &Scratch, date: &str) {
    let r = s.run_env(
        &[(INSTALLER_ENV, installer().as_os_str())],
        &[
            "--package",
            "--date",
            date,
            "--output",
            "out",
            "-j2",
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// The kernel release of the fixture host kernel.
fn kernel_release() -> String {
    kernel_release_of(release())
}

fn kernel_release_of(release: &Path) -> String {
    let manifest = release_manifest(release);
    manifest["kernels"]["host"]["release"]
        .as_str()
        .unwrap()
        .to_string()
}

// ----------------------------------------------------------------- systems

/// A private copy of a base system, with the release in /root and the
/// original kvm.conf in place.
struct System {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Installer {
    /// `snp-build install --yes`.
    Binary,
    /// The release's `install.sh --yes`.
    Script,
}

const BOTH: [Installer; 2] = [Installer::Binary, Installer::Script];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Net {
    On,
    Cut,
}

impl System {
    /// `None` (after saying why) when no system can be made here.
    fn new(kind: Base) -> Option<System> {
        let sys = System::bare(kind)?;
        sh(Command::new("cp")
            .arg("-a")
            .arg(release())
            .arg(sys.root.join("root")));
        std::fs::create_dir_all(sys.root.join("etc/modprobe.d")).unwrap();
        std::fs::write(sys.root.join("etc/modprobe.d/kvm.conf"), ORIGINAL_KVM_CONF).unwrap();
        // The mount point [`Self::run`] binds this build's snp-build on.
        std::fs::write(sys.root.join("usr/local/bin/snp-build"), "").unwrap();
        Some(sys)
    }

    /// A private copy of the base system as debootstrap made it: no
    /// release (so no fixture build), no snp-build bound in.
    fn bare(kind: Base) -> Option<System> {
        if let Some(reason) = unavailable() {
            skip(&reason);
            return None;
        }
        let base = match base(kind) {
            Ok(b) => b,
            Err(reason) => {
                skip(&reason);
                return None;
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("snp-build-system-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        sh(Command::new("cp").arg("-a").arg(&base).arg(&root));
        std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).ok();
        Some(System { _dir: dir, root })
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Runs `cmd` inside the system (chroot), with /proc, /sys, /dev and
    /// (on a [`Self::new`] system) the snp-build binary bound in a mount
    /// namespace of its own.
    fn run(&self, net: Net, cmd: &[&str]) -> Run {
        let root = self.root.to_str().unwrap();
        let bin = env!("CARGO_BIN_EXE_snp-build");
        let script = format!(
            "set -e; for d in proc sys dev; do mount --rbind /$d '{root}'/$d; done; \
             if [ -e '{root}'/usr/local/bin/snp-build ]; then \
             mount --bind '{bin}' '{root}'/usr/local/bin/snp-build; fi; \
             exec chroot '{root}' \"$@\""
        );
        let mut unshare = Command::new("unshare");
        unshare.args(["--mount", "--fork"]);
        if net == Net::Cut {
            unshare.arg("--net");
        }
        let out = unshare
            .args(["sh", "-c", &script, "sh"])
            .args(cmd)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run::from(out)
    }

    /// Runs `cmd` on a terminal (`script` gives it a pty) and types `input`.
    fn run_tty(&self, cmd: &str, input: &str) -> Run {
        let root = self.root.to_str().unwrap();
        let bin = env!("CARGO_BIN_EXE_snp-build");
        let script = format!(
            "set -e; for d in proc sys dev; do mount --rbind /$d '{root}'/$d; done; \
             mount --bind '{bin}' '{root}'/usr/local/bin/snp-build; \
             exec chroot '{root}' script -qec \"$1\" /dev/null"
        );
        let mut child = Command::new("unshare")
            .args(["--mount", "--fork", "sh", "-c", &script, "sh", cmd])
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C")
            .env("TERM", "dumb")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.as_bytes()).unwrap();
        }
        Run::from(child.wait_with_output().unwrap())
    }

    fn install(&self, installer: Installer, net: Net) -> Run {
        self.install_from(installer, net, NAME)
    }

    /// Installs the release `/root/NAME` (copied in with [`Self::add`]).
    fn install_from(&self, installer: Installer, net: Net, name: &str) -> Run {
        let dir = format!("/root/{name}");
        match installer {
            Installer::Binary => self.run(net, &["snp-build", "install", "--yes", &dir, "--json"]),
            Installer::Script => self.run(net, &[&format!("{dir}/install.sh"), "--yes"]),
        }
    }

    /// Copies another release into /root.
    fn add(&self, release: &Path) {
        sh(Command::new("cp")
            .arg("-a")
            .arg(release)
            .arg(self.path("/root")));
    }

    fn uninstall(&self) -> Run {
        self.run(Net::On, &["snp-build", "uninstall", "--yes", "--json"])
    }

    /// dpkg's two-letter state of a package (`ii`, `iF`), or "" when dpkg
    /// has no record of it (never installed, or purged).
    fn dpkg_state(&self, package: &str) -> String {
        let out = self.run(
            Net::On,
            &["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", package],
        );
        let state = out.stdout.trim().to_string();
        if out.code != 0 || state.starts_with('u') || state.starts_with('p') {
            return String::new();
        }
        state
    }

    fn record(&self) -> Option<Value> {
        std::fs::read(self.path("/var/lib/snp-build/installed.json"))
            .ok()
            .map(|b| serde_json::from_slice(&b).expect("the record is JSON"))
    }

    fn kvm_conf(&self) -> String {
        std::fs::read_to_string(self.path("/etc/modprobe.d/kvm.conf")).unwrap_or_default()
    }

    /// kvm.conf backups beside it.
    fn backups(&self) -> Vec<String> {
        std::fs::read_dir(self.path("/etc/modprobe.d"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("kvm.conf.bak-"))
            .collect()
    }

    /// Adds a kernel hook, as other packages do.
    fn hook(&self, name: &str, body: &str) {
        let hook = self.path(&format!("/etc/kernel/postinst.d/{name}"));
        std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
        std::fs::write(&hook, format!("#!/bin/sh\n{body}\n")).unwrap();
        sh(Command::new("chmod").arg("755").arg(&hook));
    }

    /// After `uninstall`: what the system was before the install.
    fn assert_as_before(&self, what: &str) {
        self.assert_kernel_gone(&kernel_release(), what);
        assert_eq!(
            self.dpkg_state("libpixman-1-0"),
            "",
            "{what}: dependency left"
        );
        assert_eq!(self.kvm_conf(), ORIGINAL_KVM_CONF, "{what}: kvm.conf");
        assert!(self.backups().is_empty(), "{what}: {:?}", self.backups());
        assert!(self.record().is_none(), "{what}: the record is left");
        assert!(
            !self.path("/opt/snp-build").exists(),
            "{what}: the stack is left in /opt/snp-build"
        );
    }

    fn assert_kernel_gone(&self, kr: &str, what: &str) {
        assert_eq!(
            self.dpkg_state(&format!("linux-image-{kr}")),
            "",
            "{what}: kernel package left"
        );
        assert!(
            !self.path(&format!("/boot/vmlinuz-{kr}")).exists(),
            "{what}"
        );
        assert!(!self.path(&format!("/lib/modules/{kr}")).exists(), "{what}");
        assert!(
            !self.path(&format!("/boot/initrd.img-{kr}")).exists(),
            "{what}"
        );
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn all_output(r: &Run) -> String {
    format!("{}\n{}", r.stdout, r.stderr)
}

fn steps(record: &Value) -> Vec<(String, String)> {
    record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

// ------------------------------------------------------------------- tests

/// The release binary starts on a bare minbase system: no OpenSSL there,
/// and ldd names only libc-family libraries.
#[test]
fn the_binary_runs_on_a_minimal_debian() {
    let Some(sys) = System::new(Base::Minbase) else {
        return;
    };
    assert_eq!(sys.dpkg_state("libssl3"), "", "minbase has no OpenSSL");
    let r = sys.run(Net::Cut, &["snp-build", "--version"]);
    assert_eq!(r.code, 0, "{}", all_output(&r));
    assert!(r.stdout.starts_with("snp-build "), "{}", r.stdout);
    // It runs (the host is not an SNP host, so the answer is no: exit 1).
    let r = sys.run(Net::Cut, &["snp-build", "doctor", "--host"]);
    assert_eq!(r.code, 1, "{}", all_output(&r));
    assert!(r.stderr.contains("vendor_id"), "{}", r.stderr);
    let r = sys.run(Net::Cut, &["ldd", "/usr/local/bin/snp-build"]);
    assert_eq!(r.code, 0, "{}", all_output(&r));
    for line in r.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let lib = line.split_whitespace().next().unwrap();
        let base = lib.rsplit('/').next().unwrap();
        // What `cargo xtask dist` allows, and the kernel's vDSO.
        assert!(
            base == "linux-vdso.so.1" || xtask::elf::ALLOWED.contains(&base),
            "not libc-family: {line}\n{}",
            r.stdout
        );
        assert!(!line.contains("not found"), "{line}");
    }
}

/// The .deb of `cargo xtask dist` (built by the same function, from this
/// build's binary) on a bare minbase system: `dpkg -i` installs it
/// offline (its Depends, libc6 and libgcc-s1, are in every minimal
/// Debian), the command, its man pages (man-db installed from the
/// mirror) and its bash completion work there, `dpkg --verify` finds
/// every file as packaged, and `dpkg -r` leaves none of them.
#[test]
fn the_deb_installs_on_a_minimal_debian_and_removes_cleanly() {
    let Some(sys) = System::bare(Base::Minbase) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let deb = xtask::deb::build(Path::new(env!("CARGO_BIN_EXE_snp-build")), out.path())
        .expect("building the .deb as cargo xtask dist does");
    let name = deb.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::copy(&deb, sys.path(&format!("/root/{name}"))).unwrap();
    let shipped: Vec<&str> = xtask::deb::COMPLETIONS
        .iter()
        .map(|(_, path)| *path)
        .chain([
            xtask::deb::BINARY,
            xtask::deb::COPYRIGHT,
            "usr/share/man/man1/snp-build.1.gz",
            "usr/share/man/man1/snp-build-install.1.gz",
        ])
        .collect();
    assert_eq!(sys.dpkg_state("snp-build"), "");
    assert!(!sys.path("/usr/bin/snp-build").exists());

    let r = sys.run(Net::Cut, &["dpkg", "-i", &format!("/root/{name}")]);
    assert_eq!(r.code, 0, "{}", all_output(&r));
    assert_eq!(sys.dpkg_state("snp-build"), "ii");
    for path in &shipped {
        assert!(sys.path(path).is_file(), "{path} not installed");
    }
    let r = sys.run(Net::Cut, &["dpkg", "--verify", "snp-build"]);
    assert_eq!(r.code, 0, "{}", all_output(&r));
    assert_eq!(r.stdout, "", "files differ from the package's md5sums");
    // Nothing is bound in: this is the packaged binary, on PATH.
    let r = sys.run(
        Net::Cut,
        &["sh", "-c", "command -v snp-build && snp-build --version"],
    );
    assert_eq!(r.code, 0, "{}", all_output(&r));
    assert_eq!(
        r.stdout,
        format!(
            "/usr/bin/snp-build\nsnp-build {}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let r = sys.run(
        Net::Cut,
        &[
            "bash",
            "-c",
            "source /usr/share/bash-completion/completions/snp-build && complete -p snp-build",
        ],
    );
    assert_eq!(r.code, 0, "{}", all_output(&r));
    assert!(
        r.stdout.contains("-F _snp__build snp-build"),
        "{}",
        r.stdout
    );

    // man-db, as a user would get it (minbase has none).
    let r = sys.run(
        Net::On,
        &[
            "sh",
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends man-db",
        ],
    );
    assert_eq!(r.code, 0, "installing man-db: {}", all_output(&r));
    for (page, file) in [
        ("snp-build", "/usr/share/man/man1/snp-build.1.gz"),
        (
            "snp-build-install",
            "/usr/share/man/man1/snp-build-install.1.gz",
        ),
    ] {
        let r = sys.run(Net::Cut, &["man", "-w", page]);
        assert_eq!(r.code, 0, "man -w {page}: {}", all_output(&r));
        assert_eq!(r.stdout.trim(), file);
    }
    let r = sys.run(
        Net::Cut,
        &["sh", "-c", "MANPAGER=cat MANWIDTH=80 man snp-build"],
    );
    assert_eq!(r.code, 0, "{}", all_output(&r));
    for text in ["SUBCOMMANDS", "snp-build-install(1)", "--work-dir"] {
        assert!(r.stdout.contains(text), "{text}: {}", r.stdout);
    }

    let r = sys.run(Net::Cut, &["dpkg", "-r", "snp-build"]);
    assert_eq!(r.code, 0, "{}", all_output(&r));
    assert_eq!(
        sys.dpkg_state("snp-build"),
        "",
        "no conffiles: nothing kept"
    );
    for path in &shipped {
        assert!(!sys.path(path).exists(), "{path} left after dpkg -r");
    }
    assert!(!sys.path("/usr/share/doc/snp-build").exists());
    let r = sys.run(Net::Cut, &["man", "-w", "snp-build"]);
    assert_ne!(r.code, 0, "man still finds a page: {}", r.stdout);
}

/// README's command 1 on a fresh machine (issue 24). A minbase Debian 12
/// system has none of the build's tools: `snp-build doctor --fix` installs
/// what the default pins need from the mirror (the catalog's Debian names,
/// all of them real packages), the doctor is then ready, and the main job
/// gets past its preflight to fail only at the network, naming the URL.
#[test]
fn on_a_fresh_system_doctor_fix_gets_the_main_job_to_the_network() {
    let Some(sys) = System::new(Base::Minbase) else {
        return;
    };
    let in_root = |net, cmd: &str| sys.run(net, &["sh", "-c", &format!("cd /root && {cmd}")]);
    let before = in_root(Net::On, "snp-build doctor --json");
    assert_eq!(before.code, 4, "{}", all_output(&before));
    let missing: Vec<String> = before.json()["checks"]
        .as_array()
        .expect("the checks at the top level")
        .iter()
        .filter(|c| c["status"] == "missing")
        .map(|c| c["check"].as_str().unwrap().to_string())
        .collect();
    for tool in ["gcc", "iasl", "glib", "flex", "debhelper"] {
        assert!(missing.iter().any(|m| m == tool), "{tool}: {missing:?}");
    }

    let fix = in_root(Net::On, "snp-build doctor --fix --json");
    assert_eq!(fix.code, 0, "{}", all_output(&fix));
    let doc = fix.json();
    assert_eq!(doc["ready"], true, "{doc}");
    assert!(doc["install"].is_null(), "{doc}");
    let installed = doc["fix"]["packages"].as_array().unwrap();
    assert!(installed.contains(&"acpica-tools".into()), "{doc}");
    assert_eq!(
        doc["fix"]["commands"][0], "apt-get update",
        "root needs no sudo: {doc}"
    );
    assert_eq!(sys.dpkg_state("acpica-tools"), "ii");

    // Again: nothing to install, ready.
    let again = in_root(Net::On, "snp-build doctor --fix --json");
    assert_eq!(again.code, 0, "{}", all_output(&again));
    assert_eq!(again.json()["fix"]["commands"], serde_json::json!([]));

    // The main job: past the request and the preflight, stopped by the
    // network (cut here, so that no test reaches GitHub), naming the URL.
    let job = in_root(Net::Cut, "snp-build --package");
    assert_eq!(job.code, 1, "{}", all_output(&job));
    assert!(
        job.stderr
            .contains("error: qemu: fetching https://github.com/AMDESE/qemu.git"),
        "{}",
        job.stderr
    );
    assert!(!job.stderr.contains("lacks what the build needs"));
}

/// Offline, with QEMU's library missing: the dependency step fails first,
/// so the kernel package is never installed; the record says so, and
/// uninstall leaves the system as it was. For both installers.
#[test]
fn an_offline_host_gets_nothing_half_installed_and_uninstall_restores_it() {
    for installer in BOTH {
        let Some(sys) = System::new(Base::Minbase) else {
            return;
        };
        let kr = kernel_release();
        let r = sys.install(installer, Net::Cut);
        let out = all_output(&r);
        assert_eq!(r.code, 9, "{installer:?}: {out}");
        assert!(
            out.contains("install stopped at step `dependencies`"),
            "{installer:?}: {out}"
        );
        assert!(out.contains("libpixman-1-0"), "{installer:?}: {out}");
        // `snp-build uninstall --yes`, or through install.sh its own
        // `install.sh uninstall --yes`: the host may have no snp-build.
        let undo = match installer {
            Installer::Binary => "snp-build uninstall --yes".to_string(),
            Installer::Script => format!("/root/{NAME}/install.sh uninstall --yes"),
        };
        assert!(out.contains(&undo), "{installer:?}: {out}");
        assert!(!out.contains("Reboot into"), "{installer:?}: {out}");
        assert_eq!(
            sys.dpkg_state(&format!("linux-image-{kr}")),
            "",
            "{installer:?}"
        );
        assert!(!sys.path(&format!("/boot/vmlinuz-{kr}")).exists());
        assert_eq!(sys.kvm_conf(), ORIGINAL_KVM_CONF, "{installer:?}");
        let record = sys.record().expect("a record of the failed install");
        assert_eq!(record["complete"], false, "{installer:?}: {record}");
        assert_eq!(
            steps(&record),
            pairs(&[
                ("dependencies", "failed"),
                ("stack", "planned"),
                ("kernel-package", "planned"),
                ("kvm-conf", "planned")
            ]),
            "{installer:?}: {record}"
        );
        assert_eq!(record["dependencies_installed"], serde_json::json!([]));

        let r = sys.uninstall();
        assert_eq!(r.code, 0, "{installer:?}: {}", all_output(&r));
        sys.assert_as_before(&format!("{installer:?} offline"));
    }
}

/// With the mirror reachable but no initramfs generator and no boot
/// loader: the dependency and the kernel install, kvm.conf is replaced
/// (the original kept), and the install says what the host still lacks
/// to boot it instead of "reboot into". Then `snp-build uninstall` undoes
/// either installer's work.
#[test]
fn a_host_without_initramfs_tools_is_told_what_is_missing_and_uninstall_undoes_it() {
    for installer in BOTH {
        let Some(sys) = System::new(Base::Minbase) else {
            return;
        };
        let kr = kernel_release();
        let r = sys.install(installer, Net::On);
        let out = all_output(&r);
        assert_eq!(r.code, 0, "{installer:?}: {out}");
        assert!(
            out.contains("--no-install-recommends libpixman-1-0"),
            "{installer:?}: {out}"
        );
        assert_eq!(sys.dpkg_state("libpixman-1-0"), "ii", "{installer:?}");
        assert_eq!(
            sys.dpkg_state(&format!("linux-image-{kr}")),
            "ii",
            "{installer:?}"
        );
        assert!(sys.path(&format!("/boot/vmlinuz-{kr}")).is_file());
        assert!(sys.path(&format!("/lib/modules/{kr}")).is_dir());
        assert!(!sys.path(&format!("/boot/initrd.img-{kr}")).exists());
        assert_eq!(
            sys.kvm_conf(),
            std::fs::read_to_string(release().join("kvm.conf")).unwrap()
        );
        let backups = sys.backups();
        assert_eq!(backups.len(), 1, "{installer:?}: {backups:?}");
        assert_eq!(
            std::fs::read_to_string(sys.path(&format!("/etc/modprobe.d/{}", backups[0]))).unwrap(),
            ORIGINAL_KVM_CONF
        );
        assert!(
            out.contains(&format!("initramfs for {kr}")),
            "{installer:?}: {out}"
        );
        assert!(
            out.contains(&format!(
                "apt-get install --no-install-recommends initramfs-tools && update-initramfs -c -k {kr}"
            )),
            "{installer:?}: {out}"
        );
        assert!(
            out.contains(&format!("boot loader entry for {kr}")),
            "{installer:?}: {out}"
        );
        assert!(!out.contains("Reboot into"), "{installer:?}: {out}");
        if installer == Installer::Binary {
            assert_eq!(r.json()["boot_ready"], false);
        }
        let record = sys.record().unwrap();
        assert_eq!(record["complete"], true, "{installer:?}: {record}");
        assert_eq!(
            steps(&record),
            pairs(&[
                ("dependencies", "done"),
                ("stack", "done"),
                ("kernel-package", "done"),
                ("kvm-conf", "done")
            ]),
            "{installer:?}: {record}"
        );
        assert_eq!(
            record["dependencies_installed"],
            serde_json::json!(["libpixman-1-0"])
        );
        assert_eq!(record["package_preinstalled"], false);

        let r = sys.uninstall();
        assert_eq!(r.code, 0, "{installer:?}: {}", all_output(&r));
        assert_eq!(r.json()["package_action"], "removed");
        sys.assert_as_before(&format!("{installer:?} then snp-build uninstall"));
    }
}

/// With initramfs-tools and a boot loader hook (what grub's
/// zz-update-grub does, reduced to writing the entry), the kernel
/// package's postinst builds the initramfs and the entry: the host is
/// ready, and only then is "reboot into" said.
#[test]
fn a_host_with_initramfs_tools_and_a_boot_loader_is_ready_to_reboot() {
    for installer in BOTH {
        let Some(sys) = System::new(Base::Initramfs) else {
            return;
        };
        sys.hook(
            "zz-update-grub",
            "mkdir -p /boot/grub && echo \"menuentry 'Debian, with Linux $1' { linux $2 }\" >> /boot/grub/grub.cfg",
        );
        let kr = kernel_release();
        let r = sys.install(installer, Net::On);
        let out = all_output(&r);
        assert_eq!(r.code, 0, "{installer:?}: {out}");
        assert!(
            sys.path(&format!("/boot/initrd.img-{kr}")).is_file(),
            "{installer:?}: {out}"
        );
        assert!(
            out.contains(&format!("Reboot into the SNP host kernel {kr}")),
            "{installer:?}: {out}"
        );
        assert!(!out.contains("cannot boot it yet"), "{installer:?}: {out}");
        if installer == Installer::Binary {
            assert_eq!(r.json()["boot_ready"], true, "{out}");
        }
        // doctor --host --release agrees (it is not an SNP host, but the
        // kernel lines are ok).
        let r = sys.run(
            Net::Cut,
            &[
                "snp-build",
                "doctor",
                "--host",
                "--release",
                &format!("/root/{NAME}"),
            ],
        );
        assert!(
            r.stderr.contains(&format!("initramfs for {kr}")),
            "{}",
            r.stderr
        );
        for line in r.stderr.lines().filter(|l| l.contains(&kr)) {
            assert!(line.contains(" ok "), "{line}\n{}", r.stderr);
        }

        let r = sys.uninstall();
        assert_eq!(r.code, 0, "{installer:?}: {}", all_output(&r));
        sys.assert_as_before(&format!("{installer:?} with initramfs-tools"));
    }
}

/// A kernel hook that fails leaves the package half-configured (`iF`):
/// the install stops naming the hook and `dpkg --configure -a`, the record
/// lists the package, and uninstall removes it.
#[test]
fn a_failing_kernel_hook_is_named_and_the_record_lists_the_package() {
    for installer in BOTH {
        let Some(sys) = System::new(Base::Minbase) else {
            return;
        };
        sys.hook(
            "zz-fail",
            "echo 'zz-fail: the boot partition is full' >&2; exit 1",
        );
        let kr = kernel_release();
        let r = sys.install(installer, Net::On);
        let out = all_output(&r);
        assert_eq!(r.code, 9, "{installer:?}: {out}");
        assert!(
            out.contains("install stopped at step `kernel-package`"),
            "{installer:?}: {out}"
        );
        assert!(
            out.contains("/etc/kernel/postinst.d/zz-fail"),
            "{installer:?}: {out}"
        );
        assert!(out.contains("dpkg --configure -a"), "{installer:?}: {out}");
        assert!(!out.contains("apt-get -f install"), "{installer:?}: {out}");
        assert_eq!(
            sys.dpkg_state(&format!("linux-image-{kr}")),
            "iF",
            "{installer:?}"
        );
        assert_eq!(sys.kvm_conf(), ORIGINAL_KVM_CONF, "{installer:?}");
        let record = sys.record().unwrap();
        assert_eq!(
            steps(&record),
            pairs(&[
                ("dependencies", "done"),
                ("stack", "done"),
                ("kernel-package", "failed"),
                ("kvm-conf", "planned")
            ]),
            "{installer:?}: {record}"
        );
        let note = record["steps"][2]["note"].as_str().unwrap_or_default();
        assert!(
            note.contains("zz-fail") && note.contains("iF"),
            "{installer:?}: {record}"
        );

        let r = sys.uninstall();
        assert_eq!(r.code, 0, "{installer:?}: {}", all_output(&r));
        sys.assert_as_before(&format!("{installer:?} with a failing hook"));
    }
}

/// One table of exit codes, the same for both installers (README's
/// "Installing" table): each case is run by `snp-build install` and by the
/// release's `install.sh`, inside a real system.
#[test]
fn the_installers_share_one_table_of_exit_codes() {
    type Prepare = fn(&System);
    fn nothing(_: &System) {}
    fn tamper(sys: &System) {
        std::fs::write(
            sys.path(&format!("/root/{NAME}/extra.sh")),
            "echo surprise\n",
        )
        .unwrap();
    }
    fn untamper(sys: &System) {
        let _ = std::fs::remove_file(sys.path(&format!("/root/{NAME}/extra.sh")));
        // The release as built again: its .deb and SHA256SUMS.
        sh(Command::new("cp")
            .arg("-a")
            .arg(release())
            .arg(sys.path("/root")));
    }
    /// The host kernel .deb changed, and its SHA256SUMS line updated to
    /// match: the SBOM still names the built one.
    fn change_deb(sys: &System) {
        let dir = sys.path(&format!("/root/{NAME}"));
        let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
        let mut out = String::new();
        for line in sums.lines() {
            let (_, rel) = line.split_once("  ").unwrap();
            if rel.starts_with("linux/host/linux-image-") && !rel.contains("-dbg") {
                let path = dir.join(rel);
                let mut bytes = std::fs::read(&path).unwrap();
                bytes.extend_from_slice(b"changed");
                std::fs::write(&path, &bytes).unwrap();
                out.push_str(&format!("{}  {rel}\n", sha256_hex(&bytes)));
            } else {
                out.push_str(&format!("{line}\n"));
            }
        }
        std::fs::write(dir.join("SHA256SUMS"), out).unwrap();
    }
    let cases: &[(&str, &[&str], Net, Prepare, i32)] = &[
        ("an unknown option", &["--bogus"], Net::On, nothing, 2),
        (
            "no terminal to confirm on, no --yes",
            &[],
            Net::On,
            nothing,
            2,
        ),
        (
            "a file the release does not list",
            &["--yes"],
            Net::On,
            tamper,
            8,
        ),
        (
            "a changed .deb, its SHA256SUMS line updated, no key",
            &["--yes"],
            Net::On,
            change_deb,
            8,
        ),
        ("a dry run", &["--dry-run"], Net::Cut, untamper, 0),
        (
            "a dependency that cannot be installed",
            &["--yes"],
            Net::Cut,
            nothing,
            9,
        ),
        (
            "an install that goes through",
            &["--yes"],
            Net::On,
            nothing,
            0,
        ),
    ];
    for installer in BOTH {
        let Some(sys) = System::new(Base::Minbase) else {
            return;
        };
        let dir = format!("/root/{NAME}");
        // On a terminal both ask, after showing what the dependencies
        // would download, and "n" changes nothing (1).
        let install = match installer {
            Installer::Binary => format!("snp-build install {dir}"),
            Installer::Script => format!("{dir}/install.sh"),
        };
        let r = sys.run_tty(&install, "n\n");
        let out = all_output(&r);
        assert_eq!(r.code, 1, "{installer:?} on a terminal: {out}");
        assert!(out.contains("Need to get"), "{installer:?}: {out}");
        assert!(
            out.contains("[y/N]") && out.contains("not confirmed"),
            "{out}"
        );
        assert!(
            sys.record().is_none(),
            "{installer:?}: a refused install wrote a record"
        );
        assert_eq!(sys.dpkg_state("libpixman-1-0"), "", "{installer:?}");
        for (what, args, net, prepare, code) in cases {
            prepare(&sys);
            let mut cmd: Vec<String> = match installer {
                Installer::Binary => vec!["snp-build".into(), "install".into()],
                Installer::Script => vec![format!("{dir}/install.sh")],
            };
            cmd.extend(args.iter().map(|a| a.to_string()));
            if installer == Installer::Binary {
                cmd.push(dir.clone());
            }
            let words: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let r = sys.run(*net, &words);
            assert_eq!(r.code, *code, "{installer:?}, {what}: {}", all_output(&r));
            if *code == 2 || *code == 8 {
                assert!(
                    sys.record().is_none(),
                    "{installer:?}, {what}: a record was written"
                );
            }
        }
        // The stack is on the host: launch-qemu.sh runs from there and
        // finds QEMU and OVMF, and doctor --host finds the release itself.
        let launch = "/opt/snp-build/current/launch-qemu.sh";
        std::fs::write(sys.path("/root/disk.img"), "disk").unwrap();
        let r = sys.run(
            Net::On,
            &[launch, "-dry-run", "-sev-snp", "-hda", "/root/disk.img"],
        );
        assert_eq!(r.code, 0, "{installer:?}: {}", all_output(&r));
        assert!(
            r.stdout
                .contains("/opt/snp-build/current/usr/local/bin/qemu-system-x86_64")
                && r.stdout.contains("OVMF.fd"),
            "{installer:?}: {}",
            all_output(&r)
        );
        let r = sys.run(Net::On, &["snp-build", "doctor", "--host", "--json"]);
        let doc: Value =
            serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}", all_output(&r)));
        let line = doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "installed release")
            .unwrap_or_else(|| panic!("{installer:?}: {doc:#}"));
        assert_eq!(line["status"], "ok", "{installer:?}: {doc:#}");
        assert!(line["found"].as_str().unwrap().contains(NAME), "{doc:#}");
        let record = std::fs::read(sys.path("/var/lib/snp-build/installed.json")).unwrap();
        assert!(
            !String::from_utf8_lossy(&record).contains("snp-build-install-"),
            "{installer:?}: the record names a temp path"
        );
        let r = sys.run_tty("snp-build uninstall", "n\n");
        assert_eq!(r.code, 1, "uninstall on a terminal: {}", all_output(&r));
        assert!(all_output(&r).contains("Uninstall"), "{}", all_output(&r));
        assert_eq!(
            std::fs::read(sys.path("/var/lib/snp-build/installed.json")).unwrap(),
            record,
            "a refused uninstall changed the record"
        );
        // Without a terminal, uninstall needs --yes (2).
        let r = sys.run(Net::On, &["snp-build", "uninstall"]);
        assert_eq!(r.code, 2, "{}", all_output(&r));

        // uninstall: the work is undone (0), then there is nothing to undo (1).
        let r = sys.uninstall();
        assert_eq!(r.code, 0, "{installer:?}: {}", all_output(&r));
        sys.assert_as_before(&format!("{installer:?}, after the table"));
        let r = sys.uninstall();
        assert_eq!(r.code, 1, "{installer:?}: {}", all_output(&r));
        assert!(r.stderr.contains("nothing to uninstall"), "{}", r.stderr);
    }
}

/// The same release installed twice, then the next release over it, each
/// by the other installer: the record keeps what the first install found
/// (the admin's kvm.conf, the packages that were not there), so one
/// `uninstall` removes both kernels and the dependency and puts the
/// original kvm.conf back.
#[test]
fn repeat_and_newer_installs_are_undone_by_one_uninstall() {
    for installer in BOTH {
        let Some(sys) = System::new(Base::Minbase) else {
            return;
        };
        let other = match installer {
            Installer::Binary => Installer::Script,
            Installer::Script => Installer::Binary,
        };
        let (kr, newer) = (kernel_release(), kernel_release_of(newer_release()));
        assert_ne!(kr, newer);
        sys.add(newer_release());
        let newer_name = format!("snp-release-{NEWER_DATE}");
        for (by, name) in [
            (installer, NAME),
            (other, NAME),
            (installer, newer_name.as_str()),
        ] {
            let r = sys.install_from(by, Net::On, name);
            assert_eq!(r.code, 0, "{by:?} installing {name}: {}", all_output(&r));
        }
        assert_eq!(sys.dpkg_state(&format!("linux-image-{kr}")), "ii");
        assert_eq!(sys.dpkg_state(&format!("linux-image-{newer}")), "ii");
        assert_eq!(sys.backups().len(), 1, "{:?}", sys.backups());
        let record = sys.record().unwrap();
        assert_eq!(
            record["earlier_packages"],
            serde_json::json!([format!("linux-image-{kr}")]),
            "{record}"
        );
        assert_eq!(record["package_preinstalled"], false, "{record}");
        assert!(!record["kvm_conf"]["backup"].is_null(), "{record}");
        assert_eq!(record["steps"][3]["state"], "done", "{record}");
        assert_eq!(
            record["dependencies_installed"],
            serde_json::json!(["libpixman-1-0"])
        );

        let r = sys.uninstall();
        assert_eq!(r.code, 0, "{}", all_output(&r));
        sys.assert_kernel_gone(&newer, &format!("{installer:?}: the newer kernel"));
        sys.assert_as_before(&format!("{installer:?}, {other:?}, {installer:?}"));
    }
}

/// install.sh with a trusted key on a minimal Debian, which has no
/// minisign: the launcher must check the signature before it runs the
/// release's snp-build. In a dry run it installs nothing and names the apt
/// line (exit 1), offline apt fails and it says so (exit 1); online it
/// installs Debian's minisign, checks, and the install goes through.
#[test]
fn install_sh_with_a_trusted_key_installs_minisign_first() {
    let Some(sys) = System::new(Base::Minbase) else {
        return;
    };
    let dir = sys.path(&format!("/root/{NAME}"));
    let keys = tempfile::tempdir().unwrap();
    let secret = keys.path().join("k.key");
    let public = sys.path("/root/k.pub");
    sh(Command::new("minisign")
        .args(["-G", "-W", "-f", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret));
    let manifest = sha256_hex(&std::fs::read(dir.join("manifest.json")).unwrap());
    sh(Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(&secret)
        .arg("-m")
        .arg(dir.join("SHA256SUMS"))
        .arg("-t")
        .arg(format!("release:{NAME} manifest_sha256:{manifest}")));
    let script = format!("/root/{NAME}/install.sh");
    let with_key = |net: Net, extra: &[&str]| {
        let mut cmd = vec![script.as_str(), "--trusted-key", "/root/k.pub"];
        cmd.extend_from_slice(extra);
        sys.run(net, &cmd)
    };
    assert!(
        !sys.path("/usr/bin/minisign").exists(),
        "the base system already has minisign"
    );
    let r = with_key(Net::On, &["--dry-run"]);
    assert_eq!(r.code, 1, "{}", all_output(&r));
    assert!(
        r.stderr
            .contains("apt-get install -y --no-install-recommends minisign"),
        "{}",
        all_output(&r)
    );
    let r = with_key(Net::Cut, &["--yes"]);
    assert_eq!(r.code, 1, "{}", all_output(&r));
    assert!(
        r.stderr.contains("is the package mirror reachable"),
        "{}",
        all_output(&r)
    );
    assert!(sys.record().is_none(), "offline: a record was written");
    let r = with_key(Net::On, &["--yes"]);
    assert_eq!(r.code, 0, "{}", all_output(&r));
    assert!(sys.path("/usr/bin/minisign").exists());
    assert!(r.stderr.contains("signed by"), "{}", all_output(&r));
    // Signed by another key: refused before the release's binary runs.
    let other = sys.path("/root/other.pub");
    sh(Command::new("minisign")
        .args(["-G", "-W", "-f", "-p"])
        .arg(&other)
        .arg("-s")
        .arg(keys.path().join("other.key")));
    let r = sys.run(
        Net::On,
        &[&script, "--trusted-key", "/root/other.pub", "--yes"],
    );
    assert_eq!(r.code, 8, "{}", all_output(&r));
    assert!(
        r.stderr
            .contains("is not a valid signature of SHA256SUMS by a trusted key"),
        "{}",
        all_output(&r)
    );
    let r = sys.run(Net::On, &[&script, "uninstall", "--yes"]);
    assert_eq!(r.code, 0, "{}", all_output(&r));
    assert!(sys.record().is_none());
    assert!(!sys.path("/opt/snp-build").exists());
}
