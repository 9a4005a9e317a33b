//! `compiler-launcher = "distcc"` against a real `distccd` on loopback
//! (issue 17): a fixture stage's compiles are served by the daemon, as its
//! log says, and the build's outputs are what a local build makes.

mod common;

use std::process::{Child, Command, Stdio};

use common::*;

struct Distccd {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Distccd {
    fn start() -> Distccd {
        let bin = std::path::Path::new("/usr/bin/distccd");
        assert!(
            bin.exists(),
            "distccd is missing: run .ci/install-deps (Debian's distcc)"
        );
        // The daemon drops to `nobody`, which must be able to write its log.
        let dir = daemon_dir();
        let port = free_port();
        let log = dir.path().join("distccd.log");
        let child = Command::new(bin)
            .args([
                "--daemon",
                "--no-detach",
                "--allow",
                "127.0.0.1",
                "--listen",
                "127.0.0.1",
            ])
            .args([
                "--port",
                &port.to_string(),
                "--jobs",
                "2",
                "--log-level",
                "info",
            ])
            .arg("--log-file")
            .arg(&log)
            .args(["--user", "nobody"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("distccd");
        wait_until(10, "distccd listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Distccd {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// Compiles the daemon finished, by its log.
    fn served(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("COMPILE_OK"))
            .map(String::from)
            .collect()
    }
}

impl Drop for Distccd {
    fn drop(&mut self) {
        stop_daemon(&mut self.child);
    }
}

#[test]
fn qemu_compiles_are_served_by_a_real_distccd() {
    let daemon = Distccd::start();
    let s = Scratch::new(shared_fixtures());
    s.set_launcher(std::path::Path::new("distcc"));
    let hosts = format!("127.0.0.1:{}/2", daemon.port);
    let env: [(&str, &std::ffi::OsStr); 3] = [
        ("DISTCC_HOSTS", hosts.as_ref()),
        // No quiet local retry: a compile the daemon did not serve fails.
        ("DISTCC_FALLBACK", "0".as_ref()),
        ("DISTCC_SKIP_LOCAL_RETRY", "1".as_ref()),
    ];
    let r = s.run_env(&env, &["qemu", "-j2", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(stage(&r.json(), "qemu")["status"], "ok");
    let served = daemon.served();
    assert!(
        served.iter().any(|l| l.contains(".c")),
        "distccd served no compile:\n{}",
        std::fs::read_to_string(&daemon.log).unwrap_or_default()
    );
    // `doctor` sees the launcher's host.
    let r = s.run_env(&env, &["doctor"]);
    assert!(
        r.stderr.contains(&format!("127.0.0.1:{}", daemon.port))
            || r.stdout.contains(&format!("127.0.0.1:{}", daemon.port)),
        "{}{}",
        r.stdout,
        r.stderr
    );
}
