//! The kernel fetch race (issue 14 item 9), for `cargo xtask bench` and
//! `cargo xtask e2e-real`: snp-build's `fetch kernel` into an empty work
//! dir against build.sh's `git clone` + `cp -r` of the same repository,
//! both over `git://` from one `git daemon` on loopback (so snp-build
//! fetches shallow, as it does from AMD's https), in the same run.

use anyhow::{Context, Result};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::report::{self, Run, mib, secs};

/// What the race measured.
pub struct Race {
    /// `snp-build fetch kernel`: the shared store and both trees.
    pub ours: Run,
    pub ours_disk: u64,
    /// build.sh: clone, check out one kernel, `cp -r`, check out the other.
    pub buildsh_wall: Duration,
    pub buildsh_cpu: Duration,
    pub buildsh_disk: u64,
    /// `git clone --depth 1 --branch <host branch>`'s peak RSS (KiB).
    pub depth1_rss_kib: u64,
}

impl Race {
    /// The rows both reports print: `[measure, result, notes]`.
    pub fn rows(&self) -> Vec<[String; 3]> {
        let ratio = self.ours.wall.as_secs_f64() / self.buildsh_wall.as_secs_f64();
        vec![
            [
                "Fetch both kernel trees (empty work dir, `git://` on loopback): \
                 `snp-build fetch kernel` vs build.sh's `git clone` + `cp -r`"
                    .into(),
                format!("{} vs {}", secs(self.ours.wall), secs(self.buildsh_wall)),
                format!(
                    "{:.0}% of build.sh's wall time ({}); CPU {} vs {}",
                    100.0 * ratio,
                    if ratio <= 1.0 { "met" } else { "MISSED" },
                    secs(self.ours.cpu),
                    secs(self.buildsh_cpu)
                ),
            ],
            [
                "Fetch peak memory: `snp-build fetch kernel` vs `git clone --depth 1`".into(),
                format!(
                    "{:.0} MiB vs {:.0} MiB",
                    self.ours.tree_max_rss_kib as f64 / 1024.0,
                    self.depth1_rss_kib as f64 / 1024.0
                ),
                format!(
                    "{}; largest process of each (`ru_maxrss`)",
                    if self.ours.tree_max_rss_kib <= self.depth1_rss_kib {
                        "met"
                    } else {
                        "MISSED"
                    }
                ),
            ],
            [
                "Kernel sources on disk: store + both trees vs `git clone` + `cp -r`".into(),
                format!("{} vs {}", mib(self.ours_disk), mib(self.buildsh_disk)),
                format!(
                    "{:.0}% of build.sh's",
                    100.0 * self.ours_disk as f64 / self.buildsh_disk as f64
                ),
            ],
        ]
    }
}

/// Serves `repo` (a bare repository under `base`) with `git daemon`, and
/// races the two fetches into `root`. `pins` is the pin file's text and
/// `url` the kernels' URL in it, replaced by the daemon's.
pub fn kernel_race(
    bin: &Path,
    pins: &str,
    url: &str,
    base: &Path,
    repo: &str,
    branches: (&str, &str),
    root: &Path,
) -> Result<Race> {
    let mut daemon = Daemon::start(base)?;
    let result = (|| {
        let served = format!("git://127.0.0.1:{}/{repo}", daemon.port);
        if root.exists() {
            fs::remove_dir_all(root)?;
        }
        fs::create_dir_all(root)?;
        let pin_file = root.join("stable-commits.toml");
        fs::write(&pin_file, pins.replace(url, &served))?;
        let work = root.join("work");
        let ours = report::measure(
            Command::new(bin)
                .arg("--config")
                .arg(&pin_file)
                .arg("--work-dir")
                .arg(&work)
                .args(["fetch", "kernel"])
                .current_dir(root),
            true,
        )?;
        anyhow::ensure!(
            ours.status.success(),
            "snp-build fetch kernel failed: {}",
            ours.stdout
        );
        let ours_disk = report::disk_usage_all(&[
            work.join("git/linux.git"),
            work.join("kernel-host/src"),
            work.join("kernel-guest/src"),
        ])?;
        // build.sh: clone the whole repository (all branches), check out
        // one kernel, copy the tree for the other, check that one out.
        let (host_branch, guest_branch) = branches;
        let guest = root.join("buildsh/linux/guest");
        let host = root.join("buildsh/linux/host");
        fs::create_dir_all(guest.parent().context("no parent")?)?;
        let steps: Vec<Command> = vec![
            git(&["clone", "-q", &served], Some(&guest), None),
            git(
                &["checkout", "-q", &format!("origin/{guest_branch}")],
                None,
                Some(&guest),
            ),
            {
                let mut c = Command::new("cp");
                c.arg("-r").arg(&guest).arg(&host);
                c
            },
            git(
                &["checkout", "-q", &format!("origin/{host_branch}")],
                None,
                Some(&host),
            ),
        ];
        let (mut buildsh_wall, mut buildsh_cpu) = (Duration::ZERO, Duration::ZERO);
        for mut step in steps {
            let run = report::measure(&mut step, true)?;
            anyhow::ensure!(run.status.success(), "{step:?} failed");
            buildsh_wall += run.wall;
            buildsh_cpu += run.cpu;
        }
        let buildsh_disk = report::disk_usage_all(&[guest, host])?;
        let shallow = root.join("depth1");
        let depth1 = report::measure(
            &mut git(
                &[
                    "clone",
                    "-q",
                    "--depth",
                    "1",
                    "--branch",
                    host_branch,
                    &served,
                ],
                Some(&shallow),
                None,
            ),
            true,
        )?;
        anyhow::ensure!(depth1.status.success(), "git clone --depth 1 failed");
        Ok(Race {
            ours,
            ours_disk,
            buildsh_wall,
            buildsh_cpu,
            buildsh_disk,
            depth1_rss_kib: depth1.tree_max_rss_kib,
        })
    })();
    daemon.stop();
    result
}

/// `git ARGS [DEST]`, in `dir` when given.
fn git(args: &[&str], dest: Option<&PathBuf>, dir: Option<&PathBuf>) -> Command {
    let mut c = Command::new("git");
    c.args(args);
    if let Some(d) = dest {
        c.arg(d);
    }
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c
}

/// `git daemon` on a free loopback port, run directly (not through the
/// `git` wrapper) so stopping it leaves no orphan.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(base: &Path) -> Result<Daemon> {
        let exec_path = report::run_ok(Command::new("git").arg("--exec-path"))?;
        let program = Path::new(exec_path.trim()).join("git-daemon");
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&program)
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg(format!("--base-path={}", base.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let mut daemon = Daemon { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(daemon);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon.stop();
        anyhow::bail!("git daemon did not start listening on port {port}")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
