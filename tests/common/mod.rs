//! Helpers shared by the end-to-end tests: fixture upstreams, the binary,
//! and git plumbing to change upstreams the way real ones change.
#![allow(dead_code)]

use std::borrow::BorrowMut;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use assert_cmd::Command;
use serde_json::Value;

/// A temporary directory for what a test process keeps in a `static`
/// (statics are never dropped, so a `TempDir` there is never removed): it
/// lives in the target dir's tmp (`CARGO_TARGET_TMPDIR`, not `/tmp`),
/// named with this process's id, and each new one removes those whose
/// process is gone.
pub fn process_tempdir(what: &str) -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(base).unwrap();
    for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("proc-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("proc-{}-{what}-", std::process::id()))
        .tempdir_in(base)
        .unwrap()
}

/// One set of fixture upstreams made per test binary (read-only use).
pub fn shared_fixtures() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = process_tempdir("fixtures");
        xtask::fixtures::create(dir.path(), xtask::fixtures::Size::Small).unwrap();
        dir
    })
    .path()
}

/// Fixture upstreams of the test's own, for tests that change upstream.
pub fn own_fixtures(dir: &Path) -> PathBuf {
    let fx = dir.join("upstream");
    std::fs::create_dir_all(&fx).unwrap();
    xtask::fixtures::create(&fx, xtask::fixtures::Size::Small).unwrap();
    fx
}

/// A whole build packaged into `out/` with a fixed date, at `-j2`: the
/// release most tests look at.
#[allow(dead_code)] // each test binary compiles its own copy of common
pub const PACKAGE: &[&str] = &[
    "--package",
    "--output",
    "out",
    "--date",
    "2026-11-29",
    "-j2",
];

/// Which snp-build a release carries (`self`, `none` or a path).
pub const INSTALLER_ENV: &str = "SNP_BUILD_INSTALLER";

/// A test's scratch area: a pin file (copied from `fixtures`, optionally
/// edited) and a work dir.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(fixtures: &Path) -> Scratch {
        Scratch::in_dir(fixtures, tempfile::tempdir().unwrap())
    }

    /// A scratch area kept in a `static` for the whole test process (see
    /// [`process_tempdir`]).
    pub fn kept(fixtures: &Path) -> Scratch {
        Scratch::in_dir(fixtures, process_tempdir("scratch"))
    }

    fn in_dir(fixtures: &Path, dir: tempfile::TempDir) -> Scratch {
        std::fs::copy(
            fixtures.join("stable-commits.toml"),
            dir.path().join("stable-commits.toml"),
        )
        .unwrap();
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn pins(&self) -> PathBuf {
        self.path().join("stable-commits.toml")
    }

    pub fn work(&self) -> PathBuf {
        self.path().join("build")
    }

    pub fn tree(&self, source: &str) -> PathBuf {
        self.work().join(source).join("src")
    }

    /// Replaces `from` by `to` in the pin file.
    pub fn edit_pins(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.pins()).unwrap();
        assert!(text.contains(from), "{from:?} not in pin file:\n{text}");
        std::fs::write(self.pins(), text.replacen(from, to, 1)).unwrap();
    }

    /// `<scratch>/<out>/snp-release-<date>`: a release `--package` wrote.
    pub fn release(&self, out: &str, date: &str) -> PathBuf {
        self.path().join(out).join(format!("snp-release-{date}"))
    }

    /// The tarball beside [`Scratch::release`].
    pub fn tarball(&self, out: &str, date: &str) -> PathBuf {
        self.path()
            .join(out)
            .join(format!("snp-release-{date}.tar.gz"))
    }

    /// Runs snp-build in the scratch dir with this pin file and work dir.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(&[], args)
    }

    /// `run` with extra environment variables (e.g. a narrowed PATH).
    pub fn run_env(&self, env: &[(&str, &std::ffi::OsStr)], args: &[&str]) -> Run {
        let out = snp_build_in(self.path())
            .envs(env.iter().copied())
            .args(args)
            .args(["--config", "stable-commits.toml", "--work-dir", "build"])
            .output()
            .unwrap();
        Run::from(out)
    }

    /// `run` with --json, asserting success; returns the document.
    pub fn run_ok(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let r = self.run(&all);
        assert_eq!(r.code, 0, "snp-build {args:?} failed:\n{}", r.stderr);
        r.json()
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// The row of `check` in a printed table (columns are two or more
    /// spaces apart), e.g. doctor's.
    pub fn row(&self, check: &str) -> &str {
        self.stderr
            .lines()
            .find(|l| {
                l.strip_prefix(check)
                    .is_some_and(|rest| rest.starts_with("  "))
            })
            .unwrap_or_else(|| panic!("no `{check}` row in:\n{}", self.stderr))
    }
}

/// This build's snp-build, to run in `cwd`. A release it packages carries
/// no bin/snp-build unless the test asks (with [`INSTALLER_ENV`]): the
/// debug binary is ~250 MB, and hashing and packing it would dominate
/// every release.
pub fn snp_build_in(cwd: &Path) -> Command {
    Command::from_std(snp_build_std(cwd))
}

/// [`snp_build_in`] as a plain `std::process::Command` (to spawn).
pub fn snp_build_std(cwd: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("snp-build"));
    cmd.current_dir(cwd).env(INSTALLER_ENV, "none");
    cmd
}

/// Runs snp-build in `cwd` with `args`.
pub fn snp_build<S: AsRef<std::ffi::OsStr>>(cwd: &Path, args: &[S]) -> Run {
    Run::from(snp_build_in(cwd).args(args).output().unwrap())
}

/// [`snp_build`] with --json, asserting success; returns the document.
pub fn snp_build_json(cwd: &Path, args: &[&str]) -> Value {
    let r = snp_build(cwd, &[args, &["--json"]].concat());
    assert_eq!(r.code, 0, "snp-build {args:?} failed:\n{}", r.stderr);
    r.json()
}

/// Bytes as text, lossily (for messages and `contains` checks).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A finished process's status and both streams, for a failure message.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Runs `cmd`; panics with the whole output unless it succeeds. Returns
/// its stdout.
pub fn run_succeeds(mut cmd: impl BorrowMut<std::process::Command>) -> String {
    let cmd = cmd.borrow_mut();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", describe(&out));
    text(&out.stdout)
}

/// Runs `cmd`; panics unless it fails. Returns stdout and stderr together.
pub fn run_fails(mut cmd: impl BorrowMut<std::process::Command>) -> String {
    let cmd = cmd.borrow_mut();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        !out.status.success(),
        "{cmd:?}: expected a failure: {}",
        describe(&out)
    );
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// SHA-256 of the file at `path`, as `sha256sum` prints it.
pub fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The `manifest.json` of the release `dir`.
pub fn release_manifest(dir: &Path) -> Value {
    let path = dir.join("manifest.json");
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The `manifest.json` of the release a `--package --json` document names.
pub fn manifest_of(doc: &Value) -> Value {
    release_manifest(Path::new(
        doc["release"]["path"].as_str().expect("release.path"),
    ))
}

/// Runs git with a fixed identity; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(["-c", "protocol.file.allow=always"])
        .args(args)
        .env("GIT_AUTHOR_NAME", "Upstream Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.invalid")
        .env("GIT_COMMITTER_NAME", "Upstream Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A working clone of `repo`'s `snp-latest` at `dest` (to commit to, or
/// to make patches from).
pub fn clone_snp_latest(repo: &Path, dest: &Path) {
    git(
        dest.parent().unwrap(),
        &[
            "clone",
            "-q",
            "-b",
            "snp-latest",
            repo.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    );
}

/// The SHA of `rev` in repository `repo`.
pub fn rev_parse(repo: &Path, rev: &str) -> String {
    git(repo, &["rev-parse", rev])
}

/// Adds a commit on `branch` of the bare upstream `bare` (via a scratch
/// clone and a push); returns its SHA. With `force_from`, the branch is
/// first reset to that rev (a rewritten history, pushed with --force).
pub fn upstream_commit(
    bare: &Path,
    branch: &str,
    file: &str,
    content: &str,
    force_from: Option<&str>,
) -> String {
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("c");
    git(
        work.path(),
        &["clone", "-q", "-b", branch, bare.to_str().unwrap(), "c"],
    );
    if let Some(rev) = force_from {
        git(&clone, &["reset", "-q", "--hard", rev]);
    }
    std::fs::write(clone.join(file), content).unwrap();
    git(&clone, &["add", file]);
    git(&clone, &["commit", "-q", "-m", &format!("update {file}")]);
    let push = if force_from.is_some() {
        "--force"
    } else {
        "-q"
    };
    git(&clone, &["push", "-q", push, "origin", branch]);
    rev_parse(&clone, "HEAD")
}

/// HEAD of a tree.
pub fn head(tree: &Path) -> String {
    rev_parse(tree, "HEAD")
}

/// Writes an executable script.
pub fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl Scratch {
    /// Makes `launcher` the compiler launcher; returns the pin file as it
    /// was, to put back later.
    pub fn set_launcher(&self, launcher: &Path) -> String {
        let text = std::fs::read_to_string(self.pins()).unwrap();
        std::fs::write(
            self.pins(),
            format!(
                "[build]\ncompiler-launcher = \"{}\"\n\n{text}",
                launcher.display()
            ),
        )
        .unwrap();
        text
    }

    /// A launcher that sleeps `seconds` before each compile.
    pub fn slow_launcher(&self, seconds: &str) -> PathBuf {
        let path = self.path().join("slow-cc");
        script(&path, &format!("#!/bin/sh\nsleep {seconds}\nexec \"$@\"\n"));
        path
    }

    /// Starts snp-build in the background (stdout discarded, stderr piped).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        snp_build_std(self.path())
            .args(["--config", "stable-commits.toml", "--work-dir", "build"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Polls `ready` every 20 ms; panics naming `what` after `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The embedded default's kernel edits (what a pin file without `[kernel]`
/// edits gets).
pub fn embedded_kernel_edits() -> snp_build::stage::kernel::kconfig::KernelEdits {
    use snp_build::config::{Document, PinFile};
    use snp_build::stage::kernel::{Kernel, KernelStage};
    let file = PinFile::embedded();
    let layout = snp_build::stage::Registry::standard().layout();
    let doc = Document::parse(&file, &layout).unwrap();
    KernelStage::configure(&doc, Kernel::Host)
        .unwrap()
        .knobs
        .edits
}

/// A scratch dir a daemon that drops to its own user (distccd's
/// `nobody`, iceccd's `icecc`) can write its log and files in.
pub fn daemon_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Stops a daemon a test started, and the workers it forked.
pub fn stop_daemon(child: &mut std::process::Child) {
    let _ = std::process::Command::new("pkill")
        .args(["-P", &child.id().to_string()])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// A TCP port free on loopback now (for a daemon a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback `git daemon` serving `base`, stopped on drop.
pub struct Daemon {
    child: std::process::Child,
    pub port: u16,
}

impl Daemon {
    pub fn start(base: &Path) -> Daemon {
        let port = free_port();
        // The daemon binary itself (not the `git daemon` wrapper), so that
        // killing it leaves no orphan holding the test's stdout.
        let exec_path = git(base, &["--exec-path"]);
        let child = std::process::Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
                &base.display().to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon");
        let mut daemon = Daemon { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return daemon;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = daemon.child.kill();
        let _ = daemon.child.wait();
        panic!("git daemon did not start on port {port}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The entry of stage `name` in a `--json` document's `stages`.
pub fn stage<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == name)
        .unwrap_or_else(|| panic!("no stage {name} in {doc}"))
}

/// A real OCI registry on loopback (shared with `cargo xtask bench`).
#[allow(unused_imports)] // each test binary compiles its own copy of common
pub use xtask::registry::OciRegistry;

/// This build's snp-build stripped, as `cargo xtask dist` ships it (about
/// 45 MB where the debug build is 250): what a test release carries as
/// `bin/snp-build`, the installer its `install.sh` runs. Made once per
/// test binary.
pub fn installer() -> &'static Path {
    static STRIPPED: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &STRIPPED
        .get_or_init(|| {
            let dir = process_tempdir("installer");
            let out = dir.path().join("snp-build");
            let ok = std::process::Command::new("strip")
                .arg("-o")
                .arg(&out)
                .arg(assert_cmd::cargo::cargo_bin("snp-build"))
                .status()
                .expect("strip (binutils, from .ci/install-deps)");
            assert!(ok.success(), "strip failed");
            (dir, out)
        })
        .1
}

/// Puts [`installer`] into the release `dir` as `bin/snp-build` (a hard
/// link when it can: no copy of 45 MB per test).
pub fn add_installer(dir: &Path) {
    let to = dir.join("bin/snp-build");
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&to);
    if std::fs::hard_link(installer(), &to).is_err() {
        std::fs::copy(installer(), &to).unwrap();
    }
}
