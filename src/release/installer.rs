//! The installer binary a release carries (`bin/snp-build`): its SHA-256,
//! remembered by the file's identity.
//!
//! Why: the release's decision hashes every file it would hold, and the
//! installer is the one file no stage stamp already hashed. By default it
//! is the running snp-build (megabytes), so every no-op run would read and
//! hash it again. Like git's index, the hash is kept with the file's
//! device, inode, size, mtime and ctime; any write changes the ctime, so a
//! changed file is never taken for the one hashed.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;
use crate::hash::sha256_file;

/// What identifies a file's bytes without reading them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    path: std::path::PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

#[derive(Debug, Serialize, Deserialize)]
struct Remembered {
    file: Identity,
    sha256: String,
}

fn identity(path: &Path) -> anyhow::Result<Identity> {
    let m =
        std::fs::metadata(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Ok(Identity {
        path: path.to_path_buf(),
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
    })
}

/// `binary`'s SHA-256 and size: remembered in `cache` when the file is
/// the one hashed last, else hashed and remembered (a cache that cannot
/// be written only costs the next run a hash).
pub fn sha256(binary: &Path, cache: &Path) -> anyhow::Result<(String, u64)> {
    let file = identity(binary)?;
    let remembered: Option<Remembered> = std::fs::read(cache)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(r) = remembered.filter(|r| r.file == file) {
        return Ok((r.sha256, file.size));
    }
    let sha256 = sha256_file(binary)?;
    // Hashed, then checked again: a file written meanwhile is not
    // remembered under the identity it had before.
    let size = file.size;
    if identity(binary)? == file {
        let record = Remembered {
            file,
            sha256: sha256.clone(),
        };
        if let Ok(bytes) = serde_json::to_vec(&record) {
            let _ = write_atomic(cache, &bytes);
        }
    }
    Ok((sha256, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let (bin, cache) = (dir.path().join("bin"), dir.path().join("cache.json"));
        std::fs::write(&bin, "one").unwrap();
        let first = sha256(&bin, &cache).unwrap();
        assert_eq!(first.0, crate::hash::sha256_hex(b"one"));
        assert!(cache.is_file());
        assert_eq!(sha256(&bin, &cache).unwrap(), first);
        // Same size, same mtime put back: the ctime still moves.
        let mtime = std::fs::metadata(&bin).unwrap().modified().unwrap();
        std::fs::write(&bin, "two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&bin)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(
            sha256(&bin, &cache).unwrap().0,
            crate::hash::sha256_hex(b"two")
        );
    }
}
