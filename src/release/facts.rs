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
    /// Its URL as a valid URI (see [`uri`]), when it can be one.
    pub uri: Option<String>,
    /// Submodule path -> URL as a valid URI (credentials redacted), for
    /// those whose URL can be one.
    pub submodule_urls: BTreeMap<String, String>,
    /// The SPDX licence the tree declares, if it does.
    pub license: Option<String>,
    /// Submodule path -> the SPDX licence its tree declares.
    pub submodule_licenses: BTreeMap<String, String>,
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
        let base = uri(&synced.url, None);
        // A relative submodule URL is relative to its superproject's:
        // the nearest enclosing submodule's, else the source's.
        let mut submodule_urls: BTreeMap<String, url::Url> = BTreeMap::new();
        for (path, url) in &record.submodule_urls {
            let parent = submodule_urls
                .iter()
                .filter(|(p, _)| path.starts_with(&format!("{p}/")))
                .max_by_key(|(p, _)| p.len())
                .map(|(_, u)| u)
                .or(base.as_ref());
            if let Some(u) = uri(url, parent) {
                submodule_urls.insert(path.clone(), u);
            }
        }
        SourceFacts {
            synced,
            uri: base.map(String::from),
            submodule_urls: submodule_urls
                .into_iter()
                .map(|(p, u)| (p, u.into()))
                .collect(),
            license: record.license,
            submodule_licenses: record.submodule_licenses,
        }
    }
}

/// A git URL (credentials already redacted) as the valid absolute URI the
/// SBOM and the provenance must hold: a `scheme://` URL parsed, which
/// percent-encodes what a URI cannot hold (a space); an absolute path as
/// `file://`; git's scp-like `[user@]host:path` as the `ssh://` URL forges
/// document for it; a relative one (a submodule's `../brotli.git`)
/// resolved against `base` as git does, taking the superproject's URL as
/// a directory. `None` when none of these applies: better no URI than a
/// wrong one.
pub fn uri(url: &str, base: Option<&url::Url>) -> Option<url::Url> {
    if url.contains("://") {
        return url::Url::parse(url).ok();
    }
    if url.starts_with('/') {
        return url::Url::from_file_path(url).ok();
    }
    if url.starts_with("./") || url.starts_with("../") {
        let mut dir = base?.clone();
        if !dir.path().ends_with('/') {
            let path = format!("{}/", dir.path());
            dir.set_path(&path);
        }
        return dir.join(url).ok();
    }
    let (host, path) = url.split_once(':')?;
    if host.is_empty() || host.contains('/') {
        return None;
    }
    url::Url::parse(&format!("ssh://{host}/{}", path.trim_start_matches('/'))).ok()
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

#[cfg(test)]
mod tests {
    use super::uri;

    #[test]
    fn every_url_form_becomes_a_valid_uri() {
        let https = url::Url::parse("https://h.example/a/ovmf.git").unwrap();
        for (url, base, want) in [
            ("https://h.example/q.git", None, "https://h.example/q.git"),
            ("file:///srv/my repo.git", None, "file:///srv/my%20repo.git"),
            ("/srv/my repo.git", None, "file:///srv/my%20repo.git"),
            (
                "git@github.com:AMDESE/linux.git",
                None,
                "ssh://git@github.com/AMDESE/linux.git",
            ),
            (
                "../brotli.git",
                Some(&https),
                "https://h.example/a/brotli.git",
            ),
            (
                "./sub.git",
                Some(&https),
                "https://h.example/a/ovmf.git/sub.git",
            ),
        ] {
            assert_eq!(
                uri(url, base).map(String::from).as_deref(),
                Some(want),
                "{url}"
            );
        }
        assert_eq!(uri("../brotli.git", None), None);
    }
}
