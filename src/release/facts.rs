//! What the SBOM and the provenance say about a build, gathered once from
//! the release's inputs: the sources as synced, the release's files and
//! digests, the pin file and lock, and the tools the stamps recorded.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;

use crate::fingerprint::{self, Stamp};
use crate::source::Synced;

/// One source, with what the SBOM adds to the sync record.
pub struct SourceFacts<'a> {
    pub synced: &'a Synced,
    /// Submodule path -> URL (credentials redacted).
    pub submodule_urls: BTreeMap<String, String>,
    /// The SPDX licence the tree declares, if it does.
    pub license: Option<String>,
}

pub struct BuildFacts<'a> {
    /// `snp-release-<date>`.
    pub release: &'a str,
    pub date: &'a str,
    pub epoch: u64,
    pub sources: Vec<SourceFacts<'a>>,
    /// The files the SBOM and provenance describe (release path, SHA-256),
    /// sorted: every file `SHA256SUMS` lists but the SBOM and the
    /// provenance themselves.
    pub artifacts: Vec<(String, String)>,
    /// SHA-256 of the pin file as the release carries it (`source-config`).
    pub pin_file_sha256: String,
    pub lock_sha256: Option<String>,
    /// Tool name -> version, from the packaged stages' stamps.
    pub tools: BTreeMap<String, String>,
}

impl BuildFacts<'_> {
    /// The release's time, RFC 3339 in UTC.
    pub fn timestamp_rfc3339(&self) -> String {
        let epoch = std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.epoch);
        crate::fsutil::utc_rfc3339(epoch)
    }
}

impl<'a> SourceFacts<'a> {
    pub fn of(synced: &'a Synced) -> SourceFacts<'a> {
        let record = synced.record();
        SourceFacts {
            synced,
            submodule_urls: record.submodule_urls,
            license: record.license,
        }
    }
}

/// The `tool:<name>` inputs of the stamps at `stamps` (the versions each
/// stage was built with), merged by name.
pub fn stamped_tools(stamps: &[std::path::PathBuf]) -> BTreeMap<String, String> {
    let mut tools = BTreeMap::new();
    for path in stamps {
        let Some(stamp) = fingerprint::read_stamp::<IgnoredAny>(path) else {
            continue;
        };
        let stamp: Stamp<IgnoredAny> = stamp;
        for (key, value) in &stamp.inputs {
            if let Some(name) = key.strip_prefix("tool:") {
                tools.insert(name.to_string(), value.clone());
            }
        }
    }
    tools
}
