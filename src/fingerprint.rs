//! Fingerprints and stamps: whether a stage must run again.
//!
//! A stage's fingerprint is the set of its inputs, by name. Its stamp
//! (`<work>/state/<stage>.json`) holds the fingerprint it was last built
//! from and the size, mtime and SHA-256 of every output, and is written
//! atomically only after the stage succeeded (and removed when it starts).
//!
//! | input | kernel-host / kernel-guest | qemu | ovmf |
//! |---|---|---|---|
//! | `sha`: the resolved upstream SHA | yes | yes | yes |
//! | `patches`: the series' content hash | yes | yes | yes |
//! | `submodules`: their resolved SHAs | | | yes |
//! | `base-config`: kind, and the file's SHA-256 for a file | yes | | |
//! | `edits`: the scripts/config edits as written (so the SHA in LOCALVERSION does not count twice) | yes | | |
//! | `package-format` | yes | | |
//! | `compiler-launcher` | yes | yes | |
//! | `target-list`, `configure-args` | | yes | |
//! | `platform`, `arch`, `build-target`, `toolchain`, `defines`, `build-args`, `outputs` | | | yes |
//! | `install`: the install prefix | | yes | yes |
//! | `tool:<name>`: first line of `<name> --version` (gcc, make, ...) | gcc, make | gcc, make, python3, ninja | gcc, make, nasm, iasl, python3 |
//! | `snp-build`: this program's version | yes | yes | yes |
//!
//! Not inputs: the job count and `--serial` (they change how fast, not
//! what), the work dir path, timestamps. A test changes each input in turn
//! and checks that exactly the stages using it run again.
//!
//! A stage also runs when its stamp is missing (never built, or its last
//! run failed: that is resume), when `--force` names it, or when an output
//! it recorded is gone or modified. Outputs are checked cheaply: size and
//! mtime first; the hash is read only when those differ, so a no-op run
//! does not re-read gigabytes of kernel packages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::patch::hex;

/// Inputs by name; values are short human-readable strings (long ones are
/// hashed) so a reason can say `old -> new`.
pub type Inputs = BTreeMap<String, String>;

/// A recorded output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: u128,
    pub sha256: String,
}

/// What a successful stage left behind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stamp {
    pub inputs: Inputs,
    pub outputs: Vec<OutputFile>,
    /// The stage's own summary (packages, versions, verification...), for
    /// the release and the JSON report when the stage is skipped.
    pub summary: Value,
}

/// Whether a stage runs, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub run: bool,
    pub reasons: Vec<String>,
}

impl Decision {
    fn run(reasons: Vec<String>) -> Decision {
        Decision { run: true, reasons }
    }
}

pub fn stamp_path(work_dir: &Path, stage: &str) -> PathBuf {
    work_dir.join("state").join(format!("{stage}.json"))
}

/// The stamp of `stage`, if there is a readable one.
pub fn read_stamp(work_dir: &Path, stage: &str) -> Option<Stamp> {
    let text = std::fs::read_to_string(stamp_path(work_dir, stage)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn write_stamp(work_dir: &Path, stage: &str, stamp: &Stamp) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(stamp).context("serializing a stamp")?;
    crate::fsutil::write_atomic(&stamp_path(work_dir, stage), &text)
}

/// Forgets a stage's stamp (when it starts: a failed run must rerun).
pub fn remove_stamp(work_dir: &Path, stage: &str) -> anyhow::Result<()> {
    match std::fs::remove_file(stamp_path(work_dir, stage)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing the stamp of {stage}"))
        }
        _ => Ok(()),
    }
}

/// The decision for a stage with `inputs`, given its last stamp.
pub fn decide(inputs: &Inputs, stamp: Option<&Stamp>, forced: bool) -> Decision {
    if forced {
        return Decision::run(vec!["forced (--force)".into()]);
    }
    let Some(stamp) = stamp else {
        return Decision::run(vec![
            "no record of a successful build (never built, or the last run failed)".into(),
        ]);
    };
    let changed = changed_inputs(&stamp.inputs, inputs);
    if !changed.is_empty() {
        return Decision::run(changed);
    }
    let damaged: Vec<String> = stamp.outputs.iter().filter_map(output_problem).collect();
    if !damaged.is_empty() {
        return Decision::run(damaged);
    }
    Decision {
        run: false,
        reasons: vec!["up to date".into()],
    }
}

/// `name: old -> new` for every input that differs.
pub fn changed_inputs(old: &Inputs, new: &Inputs) -> Vec<String> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (o, n) = (old.get(k), new.get(k));
            (o != n).then(|| {
                format!(
                    "{k} changed: {} -> {}",
                    o.map(String::as_str).unwrap_or("(none)"),
                    n.map(String::as_str).unwrap_or("(none)")
                )
            })
        })
        .collect()
}

/// Why a recorded output no longer stands, if it does not.
fn output_problem(out: &OutputFile) -> Option<String> {
    let meta = match std::fs::metadata(&out.path) {
        Ok(m) => m,
        Err(_) => return Some(format!("output {} is gone", out.path.display())),
    };
    if meta.len() == out.size && mtime_ns(&meta) == out.mtime_ns {
        return None;
    }
    // Size or mtime moved: only the content decides.
    match sha256_file(&out.path) {
        Ok(h) if h == out.sha256 => None,
        _ => Some(format!("output {} was modified", out.path.display())),
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Records `paths` as outputs (hashing each once, after the stage).
pub fn record_outputs(paths: &[PathBuf]) -> anyhow::Result<Vec<OutputFile>> {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(OutputFile {
                path: p.clone(),
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
                sha256: sha256_file(p)?,
            })
        })
        .collect()
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
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

/// A short stand-in for a long input value.
pub fn digest(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    format!("sha256:{}", &hex(&Sha256::digest(bytes))[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> Inputs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decisions() {
        let a = inputs(&[("sha", "111"), ("install", "/x")]);
        assert!(decide(&a, None, false).run);
        let stamp = Stamp {
            inputs: a.clone(),
            outputs: vec![],
            summary: Value::Null,
        };
        assert!(!decide(&a, Some(&stamp), false).run);
        assert!(decide(&a, Some(&stamp), true).run);
        let b = inputs(&[("sha", "222"), ("install", "/x")]);
        let d = decide(&b, Some(&stamp), false);
        assert_eq!(d.reasons, ["sha changed: 111 -> 222"]);
    }

    #[test]
    fn outputs_are_checked_by_content_when_metadata_moves() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("out.bin");
        std::fs::write(&f, b"abc").unwrap();
        let rec = record_outputs(std::slice::from_ref(&f)).unwrap();
        let stamp = Stamp {
            inputs: Inputs::new(),
            outputs: rec,
            summary: Value::Null,
        };
        assert!(!decide(&Inputs::new(), Some(&stamp), false).run);
        // Same content, new mtime: still up to date.
        std::fs::write(&f, b"abc").unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(t)
            .unwrap();
        assert!(!decide(&Inputs::new(), Some(&stamp), false).run);
        std::fs::write(&f, b"abd").unwrap();
        assert!(decide(&Inputs::new(), Some(&stamp), false).reasons[0].contains("was modified"));
        std::fs::remove_file(&f).unwrap();
        assert!(decide(&Inputs::new(), Some(&stamp), false).reasons[0].contains("is gone"));
    }
}
