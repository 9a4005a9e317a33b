//! `compiler-launcher = "icecc"` against a real icecream farm on this
//! machine (issue 17): `icecc-scheduler` on loopback and one `iceccd`
//! logged in to it. The scheduler's log shows it placed a fixture stage's
//! compile jobs on the daemon, and the daemon's log that it ran them.
//!
//! icecream 1.4's `iceccd -i lo` binds its TCP port twice and fails, so
//! the daemon listens on every interface (the scheduler on loopback only);
//! and the client finds its daemon at the fixed socket
//! `/run/icecc/iceccd.socket`, so this file holds the only icecream test.

mod common;

use std::process::{Child, Command, Stdio};

use common::*;

struct Farm {
    scheduler: Child,
    daemon: Child,
    dir: tempfile::TempDir,
}

impl Farm {
    fn start() -> Farm {
        for bin in [
            "/usr/sbin/icecc-scheduler",
            "/usr/sbin/iceccd",
            "/usr/bin/icecc",
        ] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: run .ci/install-deps (Debian's icecc)"
            );
        }
        // The daemons drop to the `icecc` user, which writes logs and
        // compile environments here.
        let dir = daemon_dir();
        let port = free_port();
        let scheduler = Command::new("/usr/sbin/icecc-scheduler")
            .args(["-i", "lo", "-p", &port.to_string(), "-vvv", "-l"])
            .arg(dir.path().join("scheduler.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("icecc-scheduler");
        // Its log, not a probe connection: a connection that says nothing
        // holds up the scheduler's next login.
        let log = dir.path().join("scheduler.log");
        wait_until(10, "icecc-scheduler ready", || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("scheduler ready"))
        });
        let daemon = Command::new("/usr/sbin/iceccd")
            .args(["-s", &format!("127.0.0.1:{port}")])
            .args([
                "-p",
                &free_port().to_string(),
                "-m",
                "2",
                "-N",
                "snp-build-test",
                "-vvv",
            ])
            .arg("-b")
            .arg(dir.path().join("envs"))
            .arg("-l")
            .arg(dir.path().join("daemon.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iceccd");
        let farm = Farm {
            scheduler,
            daemon,
            dir,
        };
        let logged_in = (0..600).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            farm.log("daemon.log").contains("Connected to scheduler")
        });
        assert!(
            logged_in,
            "iceccd did not log in to the scheduler in 60 s:\n{}\n{}",
            farm.log("scheduler.log"),
            farm.log("daemon.log")
        );
        farm
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        stop_daemon(&mut self.daemon);
        stop_daemon(&mut self.scheduler);
    }
}

#[test]
fn qemu_compiles_are_scheduled_and_run_by_a_real_icecream_farm() {
    let farm = Farm::start();
    let s = Scratch::new(shared_fixtures());
    s.set_launcher(std::path::Path::new("icecc"));
    // `doctor` sees the daemon before the build.
    let r = s.run(&["doctor", "qemu"]);
    assert!(
        (r.stdout.clone() + &r.stderr).contains("icecc daemon"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let r = s.run(&["qemu", "-j2", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(stage(&r.json(), "qemu")["status"], "ok");
    // Compile jobs (not the configure probes it runs locally) went
    // through the scheduler to the daemon, and the daemon finished them.
    let placed = farm
        .log("scheduler.log")
        .lines()
        .filter(|l| l.contains("in joblist of snp-build-test"))
        .count();
    let done = farm
        .log("daemon.log")
        .lines()
        .filter(|l| l.contains("handle_job_done") && l.trim_end().ends_with(" 0"))
        .count();
    assert!(
        placed > 0 && done >= placed,
        "placed {placed}, done {done}:\n{}\n{}",
        farm.log("scheduler.log"),
        farm.log("daemon.log")
    );
}
