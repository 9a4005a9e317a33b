//! A real OCI registry for the tests and the bench: Debian's
//! `docker-registry` (CNCF distribution 2.8) on a free loopback port, its
//! storage in a temp dir, optionally with htpasswd basic auth.

use std::path::{Path, PathBuf};

static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A real OCI registry (Debian's `docker-registry`, CNCF distribution
/// 2.8) on a free loopback port, with its storage in a temp dir; with
/// `htpasswd`, basic auth for `user:s3cr3t-pw`. Stopped on drop.
pub struct OciRegistry {
    child: std::process::Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl OciRegistry {
    pub fn start(htpasswd: bool) -> OciRegistry {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(
            bin.exists(),
            "docker-registry is missing: run .ci/install-deps (Debian's docker-registry package)"
        );
        let dir = std::env::temp_dir().join(format!(
            "snp-registry-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        if htpasswd {
            let out = std::process::Command::new("htpasswd")
                .args(["-Bbn", "user", "s3cr3t-pw"])
                .output()
                .expect("htpasswd (apache2-utils): run .ci/install-deps");
            std::fs::write(dir.join("htpasswd"), out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: snp-build-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let child = std::process::Command::new(bin)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry");
        let mut reg = OciRegistry { child, port, dir };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return reg;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = reg.child.kill();
        panic!("docker-registry did not start on port {port}");
    }

    /// `oci://127.0.0.1:PORT/NAMESPACE`.
    pub fn remote(&self, namespace: &str) -> String {
        format!("oci://127.0.0.1:{}/{namespace}", self.port)
    }

    /// The path of a blob's bytes in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
