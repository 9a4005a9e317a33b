//! The work-dir lock: one snp-build at a time per work dir.
//!
//! An OS file lock (`File::try_lock`) on `<work>/.snp-build.lock`, which
//! holds the owner's pid. The kernel drops the lock when its process dies,
//! so a killed run never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::Context;

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

pub fn lock(work_dir: &Path) -> anyhow::Result<WorkDirLock> {
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
