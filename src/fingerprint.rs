//! Fingerprints and stamps: whether a stage must run again.
//!
//! A stage's fingerprint is its typed inputs struct (each component's
//! `Inputs`, the contract), recorded flat, field name to short text, so a
//! reason can say `name changed: old -> new`. Its stamp
//! (`<work>/state/<stage>.json`) holds the fingerprint it was last built
//! from, the size, mtime and SHA-256 of every output, and the stage's typed
//! outputs; it is written atomically only after the stage succeeded (and
//! removed when it starts).
//!
//! | input | kernel-host / kernel-guest | qemu | ovmf |
//! |---|---|---|---|
//! | `sha`: the resolved upstream SHA | yes | yes | yes |
//! | `patches`: the series' content hash | yes | yes | yes |
//! | `tool:<name>`: the version of each tool in the stage's tool list (a program's version line, a library's pkg-config version, python3's for Python modules) | yes | yes | yes |
//! | `snp-build`: this program's version | yes | yes | yes |
//! | `os`: the build box's os-release ID and VERSION_ID and architecture (its compilers and libraries come with it) | yes | yes | yes |
//! | `submodules`: their resolved SHAs | | | yes |
//! | `dirty`: the SHA-256 of the tree's diff from its pin, for a tree built with --allow-dirty (absent for a clean tree) | yes | yes | yes |
//! | `base-config`: the base (a make target, or a file and its SHA-256), then each fragment and its SHA-256 | yes | | |
//! | `edits`: the scripts/config edits as written (so the SHA in LOCALVERSION does not count twice) | yes | | |
//! | `package-format` | yes | | |
//! | `compiler-launcher` | yes | yes | |
//! | `target-list`, `configure-args` | | yes | |
//! | `platform`, `arch`, `build-target`, `toolchain`, `defines`, `build-args`, `outputs`, `extra-platforms` | | | yes |
//! | `install`: where the files land on this box (the install dir; what they are does not depend on it: they are configured for the release's /usr/local; so it is left out of the shared cache's key, see LOCAL_ONLY below) | | yes | yes |
//!
//! (A unit test in `stage::registry` holds this table against the inputs
//! each component really records.)
//!
//! Not inputs, so a fingerprint means the same on every machine and the
//! shared cache (`[cache]`) can key stage outputs by it:
//! - the job count and `--serial` (they change how fast, not what);
//! - the work dir and every other absolute path of the box, the user and
//!   the hostname: none reaches an output (the `gcc` wrapper maps the
//!   paths away; `tests/reproducible.rs` builds as another user), so
//!   keying on them would only stop boxes sharing;
//! - a kernel base config file's path (its SHA-256 is the input);
//! - the cache settings, the signing key: machine policy;
//! - timestamps.
//!
//! A test changes each input in turn and checks that exactly the stages
//! using it run again.
//!
//! A stage also runs when its stamp is missing (never built, or its last
//! run failed: that is resume), when `--force` names it, or when an output
//! it recorded is gone or modified. Outputs are checked cheaply: size and
//! mtime first; the hash is read only when those differ, so a no-op run
//! does not re-read gigabytes of kernel packages.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::hash::sha256_file;

/// A fingerprint: inputs by name; values are short human-readable strings (long ones are
/// hashed).
pub type Fingerprint = BTreeMap<String, String>;

/// A typed inputs struct, flat: each field's name and its text. Nested
/// maps (`#[serde(flatten)]`) contribute their own keys.
pub fn flatten(inputs: &impl Serialize) -> Fingerprint {
    let Ok(Value::Object(map)) = serde_json::to_value(inputs) else {
        return Fingerprint::new();
    };
    map.into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect()
}

/// Inputs that say where a stage's files land on this box, not what they
/// are: part of the local decision (files somewhere else must be made
/// again), left out of the key the shared cache tags outputs by ([`shared`]).
pub const LOCAL_ONLY: &[&str] = &["install"];

/// The inputs that mean the same on every machine: the shared cache's key.
pub fn shared(inputs: &Fingerprint) -> Fingerprint {
    inputs
        .iter()
        .filter(|(k, _)| !LOCAL_ONLY.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A recorded output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: u128,
    pub sha256: String,
}

/// What a successful stage left behind; `S` is its typed summary (the
/// stage's outputs, or the release's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stamp<S> {
    pub inputs: Fingerprint,
    pub outputs: Vec<OutputFile>,
    pub summary: S,
    /// How long the stage ran (from its job slot to its stamp), for the
    /// next build's scheduling: longest first. Not an input.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// What the release says of the stage's source that only its tree
    /// could tell: so a release can be made from this stamp (and from
    /// outputs pulled from a shared cache) with no tree on the box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRecord>,
}

/// The facts a release reads from a source tree, recorded when the stage
/// ran (see [`Stamp::source`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Committer time of the pinned commit (Unix seconds).
    pub commit_time: i64,
    /// HEAD of the tree with its patches applied, when it carries some.
    pub patched_head: Option<String>,
    /// Submodule path -> URL (credentials redacted).
    pub submodule_urls: BTreeMap<String, String>,
    /// The SPDX licence the tree declares, if it does.
    pub license: Option<String>,
    /// Submodule path -> the SPDX licence its tree declares, for those
    /// that declare one. (Absent from stamps written before it was kept.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub submodule_licenses: BTreeMap<String, String>,
}

/// The running time a stage's stamp recorded, if any (whatever its
/// summary's type).
pub fn recorded_duration(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let stamp: Stamp<serde::de::IgnoredAny> = serde_json::from_str(&text).ok()?;
    stamp.duration_s
}

/// Why a stage runs, or why it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Forced,
    NeverBuilt,
    Changed {
        input: String,
        old: Option<String>,
        new: Option<String>,
    },
    OutputGone(PathBuf),
    OutputModified(PathBuf),
    UpToDate,
    /// Pulled from the shared cache instead of built.
    Pulled {
        from: String,
        tag: String,
        bytes: u64,
    },
    /// The plan: the shared cache has it.
    InCache {
        at: String,
    },
    /// The release: a stage whose outputs it packages runs.
    PackagedStageRuns,
    /// The release: the build stops before it (a stage's tree differs).
    BuildStops,
    /// The plan: the tree differs from its pinned commit (these files),
    /// and what a build does about it.
    TreeDiffers {
        files: Vec<String>,
        then: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Forced => f.write_str("forced (--force)"),
            Reason::NeverBuilt => {
                f.write_str("no record of a successful build (never built, or the last run failed)")
            }
            Reason::Changed { input, old, new } => write!(
                f,
                "{input} changed: {} -> {}",
                old.as_deref().unwrap_or("(none)"),
                new.as_deref().unwrap_or("(none)")
            ),
            Reason::OutputGone(p) => write!(f, "output {} is gone", p.display()),
            Reason::OutputModified(p) => write!(f, "output {} was modified", p.display()),
            Reason::UpToDate => f.write_str("up to date"),
            Reason::Pulled { from, tag, bytes } => write!(
                f,
                "pulled from {from} ({}, tag {tag})",
                crate::progress::human_bytes(*bytes)
            ),
            Reason::InCache { at } => write!(f, "in the shared cache: {at}"),
            Reason::PackagedStageRuns => f.write_str("a stage it packages runs"),
            Reason::BuildStops => f.write_str("the build stops before it"),
            Reason::TreeDiffers { files, then } => {
                const SHOWN: usize = 5;
                let mut list = files[..files.len().min(SHOWN)].join(", ");
                if files.len() > SHOWN {
                    list.push_str(&format!(" and {} more", files.len() - SHOWN));
                }
                write!(f, "the tree differs from its pin ({list}): {then}")
            }
        }
    }
}

/// In JSON a reason is its sentence.
impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl schemars::JsonSchema for Reason {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Reason".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Why a stage runs, or why it does not: a sentence for people."
        })
    }
}

/// Whether a stage runs, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub run: bool,
    pub reasons: Vec<Reason>,
}

impl Decision {
    pub fn run(reasons: Vec<Reason>) -> Decision {
        Decision { run: true, reasons }
    }

    pub fn up_to_date() -> Decision {
        Decision {
            run: false,
            reasons: vec![Reason::UpToDate],
        }
    }
}

/// The stamp at `path`, if there is a readable one of this shape.
pub fn read_stamp<S: DeserializeOwned>(path: &Path) -> Option<Stamp<S>> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn write_stamp<S: Serialize>(path: &Path, stamp: &Stamp<S>) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(stamp).context("serializing a stamp")?;
    crate::fsutil::write_atomic(path, &text)
}

/// Forgets a stamp (when its stage starts: a failed run must rerun).
pub fn remove_stamp(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing the stamp {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The decision for a stage with `inputs`, given its last stamp.
pub fn decide<S>(inputs: &Fingerprint, stamp: Option<&Stamp<S>>, forced: bool) -> Decision {
    if forced {
        return Decision::run(vec![Reason::Forced]);
    }
    let Some(stamp) = stamp else {
        return Decision::run(vec![Reason::NeverBuilt]);
    };
    let changed = changed_inputs(&stamp.inputs, inputs);
    if !changed.is_empty() {
        return Decision::run(changed);
    }
    let damaged: Vec<Reason> = stamp.outputs.iter().filter_map(output_problem).collect();
    if !damaged.is_empty() {
        return Decision::run(damaged);
    }
    Decision::up_to_date()
}

/// `name: old -> new` for every input that differs.
pub fn changed_inputs(old: &Fingerprint, new: &Fingerprint) -> Vec<Reason> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (o, n) = (old.get(k), new.get(k));
            (o != n).then(|| Reason::Changed {
                input: k.clone(),
                old: o.cloned(),
                new: n.cloned(),
            })
        })
        .collect()
}

/// Why a recorded output no longer stands, if it does not.
fn output_problem(out: &OutputFile) -> Option<Reason> {
    let meta = match std::fs::metadata(&out.path) {
        Ok(m) => m,
        Err(_) => return Some(Reason::OutputGone(out.path.clone())),
    };
    if meta.len() == out.size && mtime_ns(&meta) == out.mtime_ns {
        tracing::trace!("output {}: size and mtime as recorded", out.path.display());
        return None;
    }
    // Size or mtime moved: only the content decides.
    let same = matches!(sha256_file(&out.path), Ok(h) if h == out.sha256);
    tracing::trace!(
        "output {}: size or mtime moved; content {}",
        out.path.display(),
        if same { "as recorded" } else { "changed" }
    );
    (!same).then(|| Reason::OutputModified(out.path.clone()))
}

pub fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> Fingerprint {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn stamp(inputs: Fingerprint, outputs: Vec<OutputFile>) -> Stamp<()> {
        Stamp {
            inputs,
            outputs,
            summary: (),
            duration_s: None,
            source: None,
        }
    }

    #[test]
    fn decisions() {
        let a = inputs(&[("sha", "111"), ("install", "/x")]);
        assert!(decide::<()>(&a, None, false).run);
        let stamp = stamp(a.clone(), vec![]);
        assert!(!decide(&a, Some(&stamp), false).run);
        assert!(decide(&a, Some(&stamp), true).run);
        let b = inputs(&[("sha", "222"), ("install", "/x")]);
        let d = decide(&b, Some(&stamp), false);
        assert_eq!(d.reasons[0].to_string(), "sha changed: 111 -> 222");
        assert_eq!(d.reasons.len(), 1);
    }

    #[test]
    fn typed_inputs_flatten_to_named_texts() {
        #[derive(Serialize)]
        #[serde(rename_all = "kebab-case")]
        struct Example {
            sha: String,
            target_list: String,
            #[serde(flatten)]
            tools: BTreeMap<String, String>,
        }
        let flat = flatten(&Example {
            sha: "abc".into(),
            target_list: "x86_64-softmmu".into(),
            tools: BTreeMap::from([("tool:gcc".into(), "12".into())]),
        });
        assert_eq!(
            flat,
            inputs(&[
                ("sha", "abc"),
                ("target-list", "x86_64-softmmu"),
                ("tool:gcc", "12")
            ])
        );
    }

    #[test]
    fn outputs_are_checked_by_content_when_metadata_moves() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("out.bin");
        std::fs::write(&f, b"abc").unwrap();
        let rec = record_outputs(std::slice::from_ref(&f)).unwrap();
        let stamp = stamp(Fingerprint::new(), rec);
        assert!(!decide(&Fingerprint::new(), Some(&stamp), false).run);
        // Same content, new mtime: still up to date.
        std::fs::write(&f, b"abc").unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(t)
            .unwrap();
        assert!(!decide(&Fingerprint::new(), Some(&stamp), false).run);
        std::fs::write(&f, b"abd").unwrap();
        assert!(
            decide(&Fingerprint::new(), Some(&stamp), false).reasons[0]
                .to_string()
                .contains("was modified")
        );
        std::fs::remove_file(&f).unwrap();
        assert!(
            decide(&Fingerprint::new(), Some(&stamp), false).reasons[0]
                .to_string()
                .contains("is gone")
        );
    }
}
