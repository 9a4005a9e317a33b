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

use serde::Serialize;
use serde_json::{Value, json};

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

#[derive(Serialize)]
struct Statement {
    #[serde(rename = "_type")]
    kind: &'static str,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: &'static str,
    predicate: Value,
}

#[derive(Serialize)]
struct Subject {
    name: String,
    digest: Digest,
}

#[derive(Serialize)]
struct Digest {
    sha256: String,
}

/// The provenance's bytes.
pub fn render(f: &BuildFacts<'_>) -> anyhow::Result<Vec<u8>> {
    let mut dependencies = Vec::new();
    for s in &f.sources {
        let synced = s.synced;
        let mut dep = json!({
            "name": synced.source,
            "digest": { "gitCommit": synced.sha },
        });
        // SPDX's VCS form, `git+<url>@<commit>`: the pin (`branch
        // snp-latest`, with its space) is an annotation, not part of a URI.
        if let Some(uri) = &s.uri {
            dep["uri"] = json!(format!("git+{uri}@{}", synced.sha));
        }
        let mut annotations = serde_json::Map::new();
        annotations.insert("pin".into(), json!(synced.pin));
        if let Some(h) = &synced.patched_head {
            annotations.insert("patchedHead".into(), json!(h));
        }
        if let Some(d) = &synced.dirty {
            annotations.insert("dirtyDiffSha256".into(), json!(d.diff_sha256));
        }
        dep["annotations"] = Value::Object(annotations);
        dependencies.push(dep);
        for p in &synced.patches {
            dependencies.push(json!({
                "name": format!("{}/patches/{}", synced.source, p.file),
                "digest": { "sha256": p.sha256 },
            }));
        }
        for (path, sha) in &synced.submodules {
            let mut dep = json!({
                "name": format!("{}/{path}", synced.source),
                "digest": { "gitCommit": sha },
            });
            if let Some(url) = s.submodule_urls.get(path) {
                dep["uri"] = json!(format!("git+{url}@{sha}"));
            }
            dependencies.push(dep);
        }
    }
    let mut external = json!({
        "release": f.release,
        "date": f.date,
        "sourceDateEpoch": f.epoch,
        "pinFile": { "name": "source-config", "digest": { "sha256": f.pin_file_sha256 } },
    });
    if let Some(lock) = &f.lock_sha256 {
        external["lock"] = json!({ "name": "stable-commits.lock", "digest": { "sha256": lock } });
    }
    let statement = Statement {
        kind: STATEMENT_TYPE,
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
        predicate_type: PREDICATE_TYPE,
        predicate: json!({
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": { "tools": f.tools },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": { "snp-build": env!("CARGO_PKG_VERSION") },
                },
                "metadata": {},
            },
        }),
    };
    let mut out = serde_json::to_vec_pretty(&statement)?;
    out.push(b'\n');
    Ok(out)
}
