//! SHA-256 of bytes and files, as lower-case hex: what SHA256SUMS, the
//! manifest, stamps and patch series record.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Lower-case hex of any bytes.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of a file's content, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// A short stand-in for a long value in a fingerprint: `sha256:` and the
/// first 16 hex digits of its JSON.
pub fn digest(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    format!("sha256:{}", &sha256_hex(&bytes)[..16])
}
