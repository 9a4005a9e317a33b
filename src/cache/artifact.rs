//! A stage's outputs as an OCI artifact, in ORAS's conventions, so any
//! OCI tool can read it (`skopeo inspect --raw`, `oras pull`):
//!
//! - the manifest is an OCI image manifest with `artifactType`
//!   [`ARTIFACT_TYPE`] and the empty config (`{}`);
//! - its first layer is the stage's record ([`RECORD_TYPE`], JSON): its
//!   typed outputs with work-dir paths made relative ([`WORK_DIR`]), each
//!   output file's path, size, SHA-256 and mode, and what the release says
//!   of the source tree;
//! - then one layer per output file ([`FILE_TYPE`]), titled with its path
//!   under the work dir (`org.opencontainers.image.title`, which `oras
//!   pull` writes it to) and its mode;
//! - annotations name the stage, the source SHA, the snp-build version and
//!   the fingerprint inputs (JSON);
//! - its tag is `fp-` and the SHA-256 of those inputs ([`tag`]).
//!
//! Nothing here trusts what it reads: [`check_manifest`] and
//! [`check_layers`] refuse an artifact that is not exactly the one asked
//! for, and each blob's digest and size are checked as it is pulled.

use std::collections::BTreeMap;

use super::Damaged;
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fingerprint::{Fingerprint, SourceRecord};

pub const ARTIFACT_TYPE: &str = "application/vnd.snp-build.stage.v1";
pub const RECORD_TYPE: &str = "application/vnd.snp-build.stage.record.v1+json";
pub const FILE_TYPE: &str = "application/vnd.snp-build.file.v1";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY: &[u8] = b"{}";
const TITLE: &str = "org.opencontainers.image.title";
const MODE: &str = "dev.snp-build.mode";
pub const STAGE: &str = "dev.snp-build.stage";
pub const SOURCE_SHA: &str = "dev.snp-build.source-sha";
pub const VERSION: &str = "dev.snp-build.version";
pub const INPUTS: &str = "dev.snp-build.fingerprint";
const RECORD_TITLE: &str = "record.json";
/// The largest record layer read (it is read into memory before anything
/// else is checked; a real one is a few KiB).
const MAX_RECORD: i64 = 16 << 20;

/// The places a stage's outputs live on a box: its work dir and its
/// install dir. Outputs are recorded with absolute paths, and a box
/// pulling them has these elsewhere; a record names them relative to one
/// of these roots, and each box puts them under its own.
#[derive(Debug, Clone)]
pub struct Roots {
    /// (name in a layer's path, token in the record's JSON, this box's path)
    roots: Vec<(&'static str, &'static str, String)>,
}

impl Roots {
    pub fn new(work: &str, install: &str) -> Roots {
        // `/` stays `/` (trimmed, it would match every string).
        let root = |p: &str| match p.trim_end_matches('/') {
            "" => "/".to_string(),
            t => t.to_string(),
        };
        let mut roots = vec![
            ("work", "@WORK_DIR@", root(work)),
            ("install", "@INSTALL_DIR@", root(install)),
        ];
        // The deeper root first, so a root inside the other wins.
        roots.sort_by_key(|r| std::cmp::Reverse(r.2.len()));
        Roots { roots }
    }

    /// `work/...` or `install/...` for a path under a root.
    pub fn relative(&self, path: &str) -> Option<String> {
        self.roots.iter().find_map(|(name, _, root)| {
            let rest = match root.as_str() {
                "/" => path.strip_prefix('/')?,
                r => path.strip_prefix(r)?.strip_prefix('/')?,
            };
            Some(format!("{name}/{rest}"))
        })
    }

    /// This box's path for a record's `work/...` or `install/...`.
    pub fn absolute(&self, relative: &str) -> Option<std::path::PathBuf> {
        let (name, rest) = relative.split_once('/')?;
        let (_, _, root) = self.roots.iter().find(|r| r.0 == name)?;
        Some(std::path::Path::new(root).join(rest))
    }

    /// Every path under a root in `value` made a token (for a record). A
    /// root that is `/` is left alone (every path is under it): a box
    /// whose root is elsewhere then finds the summary's paths are not
    /// where the files go, and refuses the artifact.
    fn tokenize(&self, value: &mut Value) {
        for (_, token, root) in self.roots.iter().filter(|r| r.2 != "/") {
            relocate(value, root, token);
        }
    }

    /// Every token in `value` made this box's path (from a record).
    fn resolve(&self, value: &mut Value) {
        for (_, token, root) in &self.roots {
            relocate(value, token, root);
        }
    }
}

/// A stage's typed outputs as the cache carries them: opaque here (the
/// cache knows no component), read back as the stage's own type
/// ([`Outputs::read`]) by the stage that asks. Its paths are either this
/// box's ([`Outputs::of`], [`Outputs::resolved`]) or tokens
/// ([`Outputs::tokenized`]). Serializes as the outputs themselves, so a
/// stamp's `summary` and a record's `summary` are the same JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Outputs(Value);

impl Outputs {
    /// Any outputs, as their JSON.
    pub fn of(outputs: &impl Serialize) -> anyhow::Result<Outputs> {
        Ok(Outputs(serde_json::to_value(outputs)?))
    }

    /// These outputs with every path under one of `roots` made its token
    /// (for a record).
    pub fn tokenized(&self, roots: &Roots) -> Outputs {
        let mut value = self.0.clone();
        roots.tokenize(&mut value);
        Outputs(value)
    }

    /// These outputs with every token made this box's path (from a record).
    pub fn resolved(&self, roots: &Roots) -> Outputs {
        let mut value = self.0.clone();
        roots.resolve(&mut value);
        Outputs(value)
    }

    /// The outputs as `T`, if they read as one.
    pub fn read<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        T::deserialize(&self.0).ok()
    }
}

/// The tag of a stage built from `inputs`: one per fingerprint, the same
/// on every machine (the inputs hold no path of the machine's).
pub fn tag(inputs: &Fingerprint) -> String {
    let json = serde_json::to_vec(inputs).expect("a map of strings serializes");
    format!("fp-{}", crate::hash::sha256_hex(&json))
}

/// The record layer: everything but the files' bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub stage: String,
    /// The stage's typed outputs, paths under a root as its token
    /// ([`Roots`]).
    pub summary: Outputs,
    pub files: Vec<RecordFile>,
    pub source: Option<SourceRecord>,
    pub duration_s: Option<f64>,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFile {
    /// Its path under a root: `work/...` or `install/...` (no `..`).
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Its permission bits (the release keeps them).
    pub mode: u32,
}

fn descriptor(media_type: &str, digest: String, size: u64, title: &str) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.to_string(),
        digest,
        size: size as i64,
        urls: None,
        artifact_type: None,
        annotations: Some(BTreeMap::from([(TITLE.to_string(), title.to_string())])),
    }
}

/// The empty config's descriptor.
pub fn empty_config() -> OciDescriptor {
    OciDescriptor {
        media_type: EMPTY_TYPE.to_string(),
        digest: format!("sha256:{}", crate::hash::sha256_hex(EMPTY)),
        size: EMPTY.len() as i64,
        urls: None,
        artifact_type: None,
        annotations: None,
    }
}

/// The manifest of an artifact holding `record` (serialized as
/// `record_bytes`) for a stage built from `inputs` at `sha`.
pub fn manifest(record: &Record, record_bytes: &[u8], sha: &str, inputs: &Fingerprint) -> Vec<u8> {
    let mut layers = vec![descriptor(
        RECORD_TYPE,
        format!("sha256:{}", crate::hash::sha256_hex(record_bytes)),
        record_bytes.len() as u64,
        RECORD_TITLE,
    )];
    for f in &record.files {
        let mut d = descriptor(FILE_TYPE, format!("sha256:{}", f.sha256), f.size, &f.path);
        if let Some(a) = d.annotations.as_mut() {
            a.insert(MODE.to_string(), format!("{:04o}", f.mode));
        }
        layers.push(d);
    }
    let annotations = BTreeMap::from([
        (STAGE.to_string(), record.stage.clone()),
        (SOURCE_SHA.to_string(), sha.to_string()),
        (VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
        (
            INPUTS.to_string(),
            serde_json::to_string(inputs).expect("a map of strings serializes"),
        ),
    ]);
    let m = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        config: empty_config(),
        layers,
        subject: None,
        artifact_type: Some(ARTIFACT_TYPE.to_string()),
        annotations: Some(annotations),
    };
    serde_json::to_vec(&m).expect("a manifest serializes")
}

/// A manifest that names this stage and these inputs: its record layer.
pub fn check_manifest(
    bytes: &[u8],
    stage: &str,
    inputs: &Fingerprint,
) -> Result<(OciImageManifest, OciDescriptor), Damaged> {
    let bail = |why: String| Err(Damaged(why));
    let m: OciImageManifest = serde_json::from_slice(bytes)
        .map_err(|e| Damaged(format!("the manifest does not parse: {e}")))?;
    if m.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
        return bail(format!(
            "its artifactType is {:?}, not {ARTIFACT_TYPE}",
            m.artifact_type
        ));
    }
    let notes = m.annotations.clone().unwrap_or_default();
    if notes.get(STAGE).map(String::as_str) != Some(stage) {
        return bail(format!(
            "its annotations name stage {:?}, not {stage}",
            notes.get(STAGE)
        ));
    }
    let Some(theirs) = notes
        .get(INPUTS)
        .and_then(|t| serde_json::from_str::<Fingerprint>(t).ok())
    else {
        return bail("its annotations carry no fingerprint inputs".into());
    };
    if &theirs != inputs {
        let differ: Vec<String> = crate::fingerprint::changed_inputs(inputs, &theirs)
            .iter()
            .map(ToString::to_string)
            .collect();
        return bail(format!(
            "its annotations disagree with the wanted fingerprint ({})",
            differ.join("; ")
        ));
    }
    if notes.get(SOURCE_SHA) != inputs.get("sha") {
        return bail("its source SHA annotation disagrees with the wanted SHA".into());
    }
    let Some(record) = m
        .layers
        .iter()
        .find(|l| l.media_type == RECORD_TYPE)
        .cloned()
    else {
        return bail(format!("the manifest has no record layer ({RECORD_TYPE})"));
    };
    if record.urls.is_some() {
        return bail("its record layer names foreign URLs".into());
    }
    if record.size < 0 || record.size > MAX_RECORD {
        return bail(format!(
            "its record layer claims {} bytes (a record is at most {MAX_RECORD})",
            record.size
        ));
    }
    Ok((m, record))
}

/// Each file of `record` with its layer: refused if a layer is missing or
/// disagrees with the record, or a path could leave the work dir.
pub fn check_layers<'m>(
    m: &'m OciImageManifest,
    record: &Record,
    stage: &str,
) -> Result<Vec<(&'m OciDescriptor, RecordFile)>, Damaged> {
    let bail = |why: String| Err(Damaged(why));
    if record.stage != stage {
        return bail(format!(
            "its record is of stage {}, not {stage}",
            record.stage
        ));
    }
    let mut out = Vec::new();
    for f in &record.files {
        let safe = matches!(f.path.split('/').next(), Some("work" | "install"))
            && f.path.split('/').count() > 1
            && f.path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !safe {
            return bail(format!(
                "its record names a path outside the work and install dirs: {:?}",
                f.path
            ));
        }
        let digest = format!("sha256:{}", f.sha256);
        let layer = m
            .layers
            .iter()
            .find(|l| {
                l.media_type == FILE_TYPE
                    && l.digest == digest
                    && l.annotations.as_ref().and_then(|a| a.get(TITLE)) == Some(&f.path)
            })
            .ok_or_else(|| Damaged(format!("the manifest is missing the layer of {}", f.path)))?;
        if layer.size != f.size as i64 {
            return bail(format!(
                "the layer of {} is {} bytes, its record says {}",
                f.path, layer.size, f.size
            ));
        }
        if layer.urls.is_some() {
            // Foreign URLs would send the pull to another host.
            return bail(format!("the layer of {} names foreign URLs", f.path));
        }
        out.push((layer, f.clone()));
    }
    Ok(out)
}

/// Rewrites every string of `value` that is the path `from` or under it to
/// the same path under `to` (a root to its token and back).
fn relocate(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(s) => {
            if s == from {
                *s = to.to_string();
            } else if let Some(rest) = s.strip_prefix(from).filter(|r| r.starts_with('/')) {
                // Under the root `/`, a path is its rest.
                *s = if to == "/" {
                    rest.to_string()
                } else {
                    format!("{to}{rest}")
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| relocate(v, from, to)),
        Value::Object(map) => map.values_mut().for_each(|v| relocate(v, from, to)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Fingerprint {
        Fingerprint::from([("sha".to_string(), "abc".to_string())])
    }

    fn record() -> Record {
        Record {
            stage: "qemu".into(),
            summary: Outputs(Value::Null),
            files: vec![RecordFile {
                path: "work/qemu/destdir/bin/qemu".into(),
                size: 3,
                sha256: "00".repeat(32),
                mode: 0o755,
            }],
            source: None,
            duration_s: None,
        }
    }

    #[test]
    fn a_manifest_is_checked_against_the_wanted_inputs_and_layers() {
        let r = record();
        let bytes = manifest(&r, b"{}", "abc", &inputs());
        let (m, rec) = check_manifest(&bytes, "qemu", &inputs()).unwrap();
        assert_eq!(rec.media_type, RECORD_TYPE);
        assert_eq!(check_layers(&m, &r, "qemu").unwrap().len(), 1);
        let other = Fingerprint::from([("sha".to_string(), "abd".to_string())]);
        let e = check_manifest(&bytes, "qemu", &other)
            .unwrap_err()
            .to_string();
        assert!(e.contains("disagree") && e.contains("sha changed"), "{e}");
        assert!(check_manifest(&bytes, "ovmf", &inputs()).is_err());
        let mut missing = r.clone();
        missing.files[0].path = "work/qemu/destdir/bin/other".into();
        let e = check_layers(&m, &missing, "qemu").unwrap_err().to_string();
        assert!(e.contains("missing the layer"), "{e}");
        let mut escape = r;
        for bad in ["work/../etc/passwd", "etc/passwd", "/work/x", "work"] {
            escape.files[0].path = bad.into();
            assert!(check_layers(&m, &escape, "qemu").is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_under_a_root_move_and_others_stay() {
        let a = Roots::new("/w/build", "/w/build/usr/local");
        let mut v = serde_json::json!({
            "a": "/w/build/qemu/x", "b": ["/w/build"], "c": "/w/buildx/y", "d": "/usr/local",
            "e": "/w/build/usr/local/bin/q"
        });
        a.tokenize(&mut v);
        assert_eq!(v["a"], "@WORK_DIR@/qemu/x");
        assert_eq!(v["b"][0], "@WORK_DIR@");
        assert_eq!(v["c"], "/w/buildx/y");
        assert_eq!(v["d"], "/usr/local");
        assert_eq!(v["e"], "@INSTALL_DIR@/bin/q");
        assert_eq!(
            a.relative("/w/build/usr/local/bin/q").unwrap(),
            "install/bin/q"
        );
        assert_eq!(a.relative("/w/build/qemu/x").unwrap(), "work/qemu/x");
        assert_eq!(a.relative("/elsewhere/x"), None);
        let b = Roots::new("/b/work", "/opt/i");
        b.resolve(&mut v);
        assert_eq!(v["a"], "/b/work/qemu/x");
        assert_eq!(v["e"], "/opt/i/bin/q");
        assert_eq!(
            b.absolute("install/bin/q").unwrap(),
            std::path::Path::new("/opt/i/bin/q")
        );
        let slash = Roots::new("/w/build", "/");
        assert_eq!(slash.relative("/bin/q").unwrap(), "install/bin/q");
        assert_eq!(slash.relative("/w/build/x").unwrap(), "work/x");
        let mut v = serde_json::json!({"a": "/bin/q", "b": ""});
        slash.tokenize(&mut v);
        assert_eq!(v, serde_json::json!({"a": "/bin/q", "b": ""}));
        let mut v = serde_json::json!({"a": "@INSTALL_DIR@/bin/q", "b": "@INSTALL_DIR@"});
        slash.resolve(&mut v);
        assert_eq!(v, serde_json::json!({"a": "/bin/q", "b": "/"}));
    }
}
