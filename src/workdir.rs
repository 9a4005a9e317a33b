//! The work dir: every path under it, and the lock that keeps one
//! snp-build at a time on it.
//!
//! Guarantees:
//! - [`WorkDir`] is the one place that joins paths under the work dir;
//!   stages get their own [`StageDir`] and name their products through it.
//!   `clean` walks the same type, so it removes exactly what builds make.
//! - The root is absolute (made so once, here), so no path depends on the
//!   directory a later step runs in.
//! - The lock is an OS file lock (`File::try_lock`) on
//!   `<work>/.snp-build.lock`, which holds the owner's pid. The kernel drops
//!   it when its process dies, so a killed run never leaves a stale lock.
//!
//! ```text
//! <work>/
//!   .snp-build.lock            the lock (the owner's pid)
//!   git/<store>.git            bare object stores (`linux` is shared by both kernels)
//!   <stage>/src                a stage's tree; <stage>/src.broken-<UTC> moved-aside ones
//!   <stage>/<product>          what a stage keeps beside its tree (packages/, config, ...)
//!   <stage>/dirty.diff         local changes a build went ahead with (--allow-dirty)
//!   state/<stage>.json         stamps; state/tool-versions.json the tool-version cache
//!   logs/<stage>.log           one log per stage
//!   saved-diffs/               hand edits dropped by --discard-changes
//!   source-commit.<table>      build.sh's record of the short SHA built
//!   stable-commits.lock        the lock of the embedded default pins
//! ```

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The work dir, resolved to an absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkDir {
    root: PathBuf,
}

/// Name prefix of a tree moved aside because it was broken.
const BROKEN_PREFIX: &str = "src.broken-";

impl WorkDir {
    pub fn new(path: &Path) -> anyhow::Result<WorkDir> {
        let root = std::path::absolute(path)
            .with_context(|| format!("resolving the work dir {}", path.display()))?;
        Ok(WorkDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<work>/logs`.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// `<work>/logs/<stage>.log`.
    pub fn log(&self, stage: &str) -> PathBuf {
        self.logs().join(format!("{stage}.log"))
    }

    /// `<work>/state`: stamps and caches.
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    /// `<work>/state/<stage>.json`.
    pub fn stamp(&self, stage: &str) -> PathBuf {
        self.state().join(format!("{stage}.json"))
    }

    /// `<work>/state/tool-versions.json`.
    pub fn tool_versions(&self) -> PathBuf {
        self.state().join("tool-versions.json")
    }

    /// `<work>/state/installer-sha256.json`: the installer binary's hash,
    /// by its file's identity (see `release::installer`).
    pub fn installer_hash(&self) -> PathBuf {
        self.state().join("installer-sha256.json")
    }

    /// `<work>/git`: the object stores.
    pub fn stores(&self) -> PathBuf {
        self.root.join("git")
    }

    /// `<work>/git/<family>.git`.
    pub fn store(&self, family: &str) -> PathBuf {
        self.stores().join(format!("{family}.git"))
    }

    /// `<work>/saved-diffs`.
    pub fn saved_diffs(&self) -> PathBuf {
        self.root.join("saved-diffs")
    }

    /// `<work>/saved-diffs/<stage>-<stamp>.diff`.
    pub fn saved_diff(&self, stage: &str, stamp: &str) -> PathBuf {
        self.saved_diffs().join(format!("{stage}-{stamp}.diff"))
    }

    /// `<work>/source-commit.<table>`: build.sh's record of the short SHA.
    pub fn source_commit(&self, table: &str) -> PathBuf {
        self.root.join(format!("source-commit.{table}"))
    }

    /// `<work>/stable-commits.lock`: where the embedded default's lock goes.
    pub fn default_pin_lock(&self) -> PathBuf {
        self.root.join("stable-commits.lock")
    }

    /// `<work>/<stage>`.
    pub fn stage(&self, stage: &str) -> StageDir {
        StageDir {
            dir: self.root.join(stage),
        }
    }

    /// Holds the work dir for the life of a command that changes it.
    pub fn lock(&self) -> anyhow::Result<WorkDirLock> {
        lock(&self.root)
    }
}

/// `<work>/<stage>`: a stage's tree and the products it keeps beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDir {
    dir: PathBuf,
}

impl StageDir {
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `<stage>/src`: the source tree.
    pub fn tree(&self) -> PathBuf {
        self.dir.join("src")
    }

    /// `<stage>/<name>`: something the stage makes beside its tree.
    pub fn product(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `<stage>/dirty.diff`: the local changes a build went ahead with
    /// (`--allow-dirty`), kept while the tree differs.
    pub fn dirty_diff(&self) -> PathBuf {
        self.dir.join("dirty.diff")
    }

    /// A new name for moving the tree aside: `<stage>/src.broken-<stamp>`.
    pub fn broken_tree(&self, stamp: &str) -> PathBuf {
        self.dir.join(format!("{BROKEN_PREFIX}{stamp}"))
    }

    /// The trees moved aside so far (they may hold user work).
    pub fn broken_trees(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        out.retain(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(BROKEN_PREFIX))
        });
        out.sort();
        out
    }
}

/// Held for the life of a command that changes the work dir.
#[derive(Debug)]
pub struct WorkDirLock {
    _file: File,
}

/// Another snp-build holds the lock (exit 6).
#[derive(Debug, thiserror::Error)]
#[error(
    "work dir {dir} in use by pid {pid}\n  help: wait for that snp-build to finish, or use another --work-dir"
)]
pub struct WorkDirInUse {
    pub dir: String,
    pub pid: String,
}

fn lock(work_dir: &Path) -> anyhow::Result<WorkDirLock> {
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let path = work_dir.join(".snp-build.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(WorkDirInUse {
                dir: work_dir.display().to_string(),
                pid: pid.trim().to_string(),
            }
            .into());
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(WorkDirLock { _file: file })
}
