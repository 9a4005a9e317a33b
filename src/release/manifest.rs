//! `manifest.json`, the release's own account of itself, as a type:
//! [`Manifest`] is what the release writes and what every reader
//! (`install`, `doctor --host --release`, `verify`) deserializes, and its
//! JSON Schema ([`schema`], `manifest.schema.json` in every release and in
//! `docs/schemas/`) is generated from the same type.
//!
//! Guarantees:
//! - The bytes are canonical: keys sorted at every level (the document is
//!   written through `serde_json`'s sorted map), pretty-printed, no
//!   trailing newline; the same release gives the same bytes.
//! - The stages' sections (`qemu`, `ovmf`, `kernels.host`, ...) are typed
//!   by their stages; here they are opaque ([`Manifest::stages`]), placed
//!   at the key path each stage names, and read back typed by whoever
//!   knows the stage ([`Manifest::section`]). Their schemas come from the
//!   registry ([`schema`] takes them), so this module never names a
//!   component.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Section;
use super::measure::ReleaseMeasurement;
use crate::host::PackageFormat;
use crate::source::patch::PatchFile;

/// Version of [`Manifest`]'s layout.
pub const SCHEMA_VERSION: u32 = 1;
/// Its name in the release.
pub const FILE: &str = "manifest.json";
/// Its schema's name in the release, beside it.
pub const SCHEMA_FILE: &str = "manifest.schema.json";

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The snp-build that made the release.
    pub snp_build_version: String,
    /// `snp-release-<YYYY-MM-DD>`.
    pub release: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Every timestamp in the release (the tarball's mtimes, the SBOM's).
    pub source_date_epoch: u64,
    pub build_host: BuildHost,
    /// Each source by name (`kernel-host`, `qemu`, ...).
    pub sources: BTreeMap<String, Source>,
    /// The expected SEV-SNP launch digests of the release's `OVMF.fd`;
    /// null without one.
    pub measurement: Option<ReleaseMeasurement>,
    /// Every file of the release but `manifest.json`, `SHA256SUMS`, the
    /// SBOM, the provenance and the signature, in path order.
    pub artifacts: Vec<Artifact>,
    /// Each stage's section at its key (`qemu`, `kernels`: `{host,
    /// guest}`): typed by the stage (see [`Manifest::section`]); a
    /// one-word section of a stage the release lacks is null, a nested
    /// one is left out of its (always present) parent.
    #[serde(flatten)]
    #[schemars(skip)]
    pub stages: BTreeMap<String, Value>,
}

/// The machine the release was built on, as far as it says.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BuildHost {
    /// os-release's `PRETTY_NAME`.
    pub distro: Option<String>,
    /// os-release's `ID`.
    pub id: Option<String>,
    /// os-release's `ID_LIKE`.
    pub id_like: Option<String>,
    /// `gcc`'s version.
    pub gcc: String,
    pub package_format: PackageFormat,
}

/// One source as built.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    /// Its URL, credentials redacted.
    pub url: String,
    /// What the pin file pins (`branch snp-latest`, `tag v9.1.0`, ...).
    pub pin: String,
    /// The commit built.
    pub sha: String,
    /// Its 12-digit name (`-dirty` appended when built with local
    /// changes), as `source-commit.*` holds it.
    pub short_sha: String,
    /// Submodule path -> commit.
    pub submodules: BTreeMap<String, String>,
    /// HEAD once its patches are applied, when it carries some.
    pub patched_head: Option<String>,
    /// SHA-256 of the patch series, when it has one.
    pub patch_series_sha256: Option<String>,
    pub patches: Vec<PatchFile>,
    /// Built with local changes (`--allow-dirty`); absent when clean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
    /// The release's diff of those changes (`dirty/<source>.diff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_diff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_diff_sha256: Option<String>,
    /// The files that differ from the pinned (and patched) commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_files: Option<Vec<String>>,
}

/// One file of the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Artifact {
    /// Its path inside the release directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    /// Puts each stage's section at its key path: a missing one-word
    /// section is null (`"qemu": null`), a missing nested one is left out
    /// of its (always present) parent (`"kernels": {}`).
    pub fn place(&mut self, sections: &[Section]) -> anyhow::Result<()> {
        for section in sections {
            let Some((first, rest)) = section.key.split_first() else {
                continue;
            };
            let body = section
                .body
                .as_ref()
                .map(serde_json::to_value)
                .transpose()?;
            let Some((last, between)) = rest.split_last() else {
                self.stages
                    .insert(first.to_string(), body.unwrap_or(Value::Null));
                continue;
            };
            let mut at = self
                .stages
                .entry(first.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            for key in between {
                at = at
                    .as_object_mut()
                    .context("a manifest section inside a value")?
                    .entry(key.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
            }
            let map = at
                .as_object_mut()
                .context("a manifest section inside a value")?;
            if let Some(body) = body {
                map.insert(last.to_string(), body);
            }
        }
        Ok(())
    }

    /// The section at `key` (a stage's `Spec::manifest`) as the stage's
    /// type; `None` when the release has none there or it does not read
    /// as `T`.
    pub fn section<T: DeserializeOwned>(&self, key: &[&str]) -> Option<T> {
        let (first, rest) = key.split_first()?;
        let mut at = self.stages.get(*first)?;
        for k in rest {
            at = at.get(k)?;
        }
        T::deserialize(at).ok()
    }

    /// The document's bytes (see the module's guarantees).
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        // Through `Value`: its maps sort their keys, at every level,
        // the stages' sections included.
        Ok(serde_json::to_vec_pretty(&serde_json::to_value(self)?)?)
    }

    /// A release directory's `manifest.json`.
    pub fn read(release: &Path) -> anyhow::Result<Manifest> {
        let path = release.join(FILE);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not an snp-build manifest", path.display()))
    }
}

/// `manifest.json`'s JSON Schema: [`Manifest`]'s, with each stage's
/// section (its key path, and the schema `generator` made of its type)
/// at its place. A one-word section is required (null when the release
/// lacks the stage); a nested one is optional inside its required parent.
/// Make the sections' schemas with `generator` before calling this, so
/// their definitions are part of the result.
pub fn schema(generator: &mut SchemaGenerator, sections: Vec<(&[&str], Schema)>) -> Schema {
    let mut root = generator.root_schema_for::<Manifest>();
    root.insert("title".into(), "snp-build manifest.json".into());
    let mut top = Map::new();
    for (key, schema) in sections {
        let Some((first, rest)) = key.split_first() else {
            continue;
        };
        let mut at = &mut top;
        let mut name = *first;
        let mut schema = schema.to_value();
        if rest.is_empty() {
            schema = schemars::json_schema!({ "anyOf": [schema, { "type": "null" }] }).to_value();
        }
        for k in rest {
            // A parent: an object of the sections below it.
            let parent = at.entry(name.to_string()).or_insert_with(|| {
                schemars::json_schema!({ "type": "object", "properties": {} }).to_value()
            });
            at = parent
                .get_mut("properties")
                .and_then(Value::as_object_mut)
                .expect("a section's parent schema has properties");
            name = k;
        }
        at.insert(name.to_string(), schema);
    }
    let names: Vec<Value> = top.keys().cloned().map(Value::String).collect();
    if let Some(properties) = root.get_mut("properties").and_then(Value::as_object_mut) {
        properties.extend(top);
    }
    if let Some(list) = root.get_mut("required").and_then(Value::as_array_mut) {
        list.extend(names);
    }
    root
}
