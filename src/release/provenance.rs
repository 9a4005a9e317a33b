//! `provenance.json`: an in-toto Statement v1 whose predicate is SLSA
//! provenance v1 (<https://slsa.dev/spec/v1.0/provenance>).
//!
//! - Subjects: the release's files with their SHA-256, as `SHA256SUMS`
//!   lists them, but for `SHA256SUMS`, the SBOM, the provenance and the
//!   signature. (A file inside the tarball cannot name the tarball.)
//! - External parameters: the pin file's and the lock's digests, the
//!   release date and `SOURCE_DATE_EPOCH`.
//! - Resolved dependencies: each source at its commit, its patches and its
//!   submodules.
//! - The builder: snp-build and its version. No start or finish time: they
//!   are optional in SLSA v1 and would make every build differ.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::facts::BuildFacts;

/// Its name in the release.
pub const FILE: &str = "provenance.json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What kind of build this is: the recipe is snp-build's, its inputs the
/// external parameters.
pub const BUILD_TYPE: &str = "urn:snp-build:buildtype:release:v1";
/// The builder: snp-build (its version is in `runDetails.builder.version`).
pub const BUILDER_ID: &str = "urn:snp-build:builder";

// The predicate's fields are declared in name order: the bytes are those
// of the sorted form earlier releases wrote.

/// The in-toto Statement v1 (`provenance.json`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub kind: String,
    /// The release's files (but those that describe them).
    pub subject: Vec<Subject>,
    /// [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

/// A file and its digest.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Subject {
    pub name: String,
    pub digest: Digest,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Digest {
    pub sha256: String,
}

/// SLSA provenance v1.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// [`BUILD_TYPE`].
    pub build_type: String,
    pub external_parameters: ExternalParameters,
    pub internal_parameters: InternalParameters,
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// What the release was asked to be.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalParameters {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `stable-commits.lock`, when the release carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<ResourceDescriptor>,
    /// The pin file as the release carries it (`source-config`).
    pub pin_file: ResourceDescriptor,
    pub release: String,
    pub source_date_epoch: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InternalParameters {
    /// Tool name -> version, as the stages' stamps recorded them.
    pub tools: BTreeMap<String, String>,
}

/// An in-toto ResourceDescriptor: a source at its commit, a patch, a
/// submodule, the pin file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    /// Algorithm (`gitCommit`, `sha256`) -> digest.
    pub digest: BTreeMap<String, String>,
    pub name: String,
    /// SPDX's VCS form, `git+<url>@<commit>`, when the URL can be a URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// What a source's descriptor adds.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Annotations {
    /// SHA-256 of the local changes built (`--allow-dirty`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_diff_sha256: Option<String>,
    /// HEAD once the patches are applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patched_head: Option<String>,
    /// The pin (`branch snp-latest`).
    pub pin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunDetails {
    pub builder: Builder,
    /// Empty: no start or finish time (they would make every build differ).
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Builder {
    /// [`BUILDER_ID`].
    pub id: String,
    /// `snp-build` -> its version.
    pub version: BTreeMap<String, String>,
}

fn digest(algorithm: &str, value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(algorithm.to_string(), value.to_string())])
}

/// The provenance's bytes.
pub fn render(f: &BuildFacts<'_>) -> anyhow::Result<Vec<u8>> {
    let mut dependencies = Vec::new();
    for s in &f.sources {
        let synced = s.synced;
        dependencies.push(ResourceDescriptor {
            annotations: Some(Annotations {
                dirty_diff_sha256: synced.dirty.as_ref().map(|d| d.diff_sha256.clone()),
                patched_head: synced.patched_head.clone(),
                pin: synced.pin.clone(),
            }),
            digest: digest("gitCommit", &synced.sha),
            name: synced.source.to_string(),
            // SPDX's VCS form, `git+<url>@<commit>`: the pin (`branch
            // snp-latest`, with its space) is an annotation, not part of a URI.
            uri: s
                .uri
                .as_ref()
                .map(|uri| format!("git+{uri}@{}", synced.sha)),
        });
        for p in &synced.patches {
            dependencies.push(ResourceDescriptor {
                annotations: None,
                digest: digest("sha256", &p.sha256),
                name: format!("{}/patches/{}", synced.source, p.file),
                uri: None,
            });
        }
        for (path, sha) in &synced.submodules {
            dependencies.push(ResourceDescriptor {
                annotations: None,
                digest: digest("gitCommit", sha),
                name: format!("{}/{path}", synced.source),
                uri: s
                    .submodule_urls
                    .get(path)
                    .map(|url| format!("git+{url}@{sha}")),
            });
        }
    }
    let statement = Statement {
        kind: STATEMENT_TYPE.into(),
        subject: f
            .artifacts
            .iter()
            .map(|(name, sha)| Subject {
                name: name.clone(),
                digest: Digest {
                    sha256: sha.clone(),
                },
            })
            .collect(),
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Predicate {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE.into(),
                external_parameters: ExternalParameters {
                    date: f.date.to_string(),
                    lock: f.lock_sha256.as_ref().map(|lock| ResourceDescriptor {
                        annotations: None,
                        digest: digest("sha256", lock),
                        name: "stable-commits.lock".into(),
                        uri: None,
                    }),
                    pin_file: ResourceDescriptor {
                        annotations: None,
                        digest: digest("sha256", &f.pin_file_sha256),
                        name: "source-config".into(),
                        uri: None,
                    },
                    release: f.release.to_string(),
                    source_date_epoch: f.epoch,
                },
                internal_parameters: InternalParameters {
                    tools: f.tools.clone(),
                },
                resolved_dependencies: dependencies,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: BUILDER_ID.into(),
                    version: digest("snp-build", env!("CARGO_PKG_VERSION")),
                },
                metadata: BTreeMap::new(),
            },
        },
    };
    let mut out = serde_json::to_vec_pretty(&statement)?;
    out.push(b'\n');
    Ok(out)
}
