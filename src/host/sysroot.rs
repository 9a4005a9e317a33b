//! The file system `doctor --host` reads: the running system's `/`, or a
//! `--sysroot` stand-in (every check is tested against a fake one). Its own
//! file so that the checks' modules (`snp.rs`, `platform.rs`) share it
//! without importing each other.

use std::path::{Path, PathBuf};

/// The file system the checks read: `/`, or a `--sysroot` stand-in.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    /// The real `/`: device files must be device files.
    real: bool,
}

impl Root {
    pub fn new(sysroot: Option<&Path>) -> Root {
        match sysroot {
            Some(dir) => Root {
                dir: dir.to_path_buf(),
                real: false,
            },
            None => Root {
                dir: PathBuf::from("/"),
                real: true,
            },
        }
    }

    /// The directory standing for `/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `abs` (an absolute path such as `/proc/cpuinfo`) under this root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.dir.join(abs.trim_start_matches('/'))
    }

    /// Whether this is the running system's `/` (not a `--sysroot`): only
    /// then may a check run one of its programs.
    pub fn is_real(&self) -> bool {
        self.real
    }

    pub fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.path(abs)).ok()
    }
}
