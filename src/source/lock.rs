//! The lock file: every pin resolved to a full SHA, next to the pins.
//!
//! `stable-commits.toml` -> `stable-commits.lock` beside it; with the
//! embedded default, `stable-commits.lock` in the work dir. A build uses a
//! source's entry while its `url` and pin equal the pin file's, so two
//! builds a week apart use the same commits even if upstream moved or was
//! force-pushed. Changing one pin invalidates that entry only. The file is
//! written atomically (temporary file, then rename).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::{Origin, Rev, Source};
use crate::workdir::WorkDir;

pub const LOCK_VERSION: u32 = 1;

/// One resolved source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Entry {
    pub url: String,
    /// The pin as written: `branch`, `tag`, `commit`, or `commit`+`branch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The resolved full SHA.
    pub sha: String,
    /// Submodule path -> resolved full SHA (as recorded by `sha`'s tree).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub submodules: BTreeMap<String, String>,
}

impl Entry {
    pub fn new(source: &Source, sha: String, submodules: BTreeMap<String, String>) -> Entry {
        let (branch, tag, commit) = match &source.rev {
            Rev::Branch { name } => (Some(name.clone()), None, None),
            Rev::Tag { name } => (None, Some(name.clone()), None),
            Rev::Commit { sha, branch } => (branch.clone(), None, Some(sha.clone())),
        };
        Entry {
            url: source.url.redacted(),
            branch,
            tag,
            commit,
            sha,
            submodules,
        }
    }

    /// Whether this entry was resolved from exactly this pin.
    pub fn matches(&self, source: &Source) -> bool {
        let pinned = Entry::new(source, String::new(), BTreeMap::new());
        self.url == pinned.url
            && self.branch == pinned.branch
            && self.tag == pinned.tag
            && self.commit == pinned.commit
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    version: u32,
    #[serde(default)]
    sources: BTreeMap<String, Entry>,
}

/// The lock file and where it lives; entries by source name.
#[derive(Debug, Clone)]
pub struct Lock {
    pub path: PathBuf,
    entries: BTreeMap<String, Entry>,
}

impl Lock {
    /// Where the lock of a pin file from `origin` lives.
    pub fn path_for(origin: &Origin, work: &WorkDir) -> PathBuf {
        match origin {
            Origin::File(p) => p.with_extension("lock"),
            Origin::Embedded => work.default_pin_lock(),
        }
    }

    /// Reads the lock (an absent file is an empty lock); `known` are the
    /// source names an entry may have.
    pub fn load(path: &Path, known: &[&str]) -> anyhow::Result<Lock> {
        let mut lock = Lock {
            path: path.to_path_buf(),
            entries: BTreeMap::new(),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(lock),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let file: LockFile = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a valid lock file: {}\n  help: delete it and run `snp-build update` to resolve the pins again",
                path.display(),
                e.message()
            )
        })?;
        if file.version != LOCK_VERSION {
            anyhow::bail!(
                "{}: lock file version {} is not {LOCK_VERSION}\n  help: run `snp-build update` to rewrite it",
                path.display(),
                file.version
            );
        }
        for (name, entry) in file.sources {
            if !known.contains(&name.as_str()) {
                anyhow::bail!("{}: unknown source `{name}` in the lock", path.display());
            }
            lock.entries.insert(name, entry);
        }
        Ok(lock)
    }

    /// The entry for `source` if it was resolved from the same pin.
    pub fn get(&self, source: &Source) -> Option<&Entry> {
        self.entries.get(source.name).filter(|e| e.matches(source))
    }

    /// The entry a fetch uses for `source`: [`Lock::get`], with the
    /// decision said at debug level (`RUST_LOG=debug`).
    pub fn decide(&self, source: &Source) -> Option<&Entry> {
        let entry = self.get(source);
        match entry {
            Some(e) => tracing::debug!(
                stage = source.name,
                "fetch decision: the lock covers [{}] ({}): {}",
                source.table,
                source.rev,
                e.sha
            ),
            None => tracing::debug!(
                stage = source.name,
                "fetch decision: [{}] ({}) is not in the lock: resolve it at {}",
                source.table,
                source.rev,
                source.url
            ),
        }
        entry
    }

    /// Any entry for the source `name`, matching or not (for "old -> new"
    /// reports).
    pub fn previous(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub fn set(&mut self, name: &str, entry: Entry) {
        self.entries.insert(name.to_string(), entry);
    }

    /// Writes the lock atomically.
    pub fn save(&self) -> anyhow::Result<()> {
        let file = LockFile {
            version: LOCK_VERSION,
            sources: self.entries.clone(),
        };
        let text = format!(
            "# Resolved by snp-build from the pins; `snp-build update` refreshes it.\n{}",
            toml::to_string_pretty(&file).context("serializing the lock")?
        );
        crate::fsutil::write_atomic(&self.path, text.as_bytes())
    }
}

/// `--locked`, and the lock does not cover a pin (exit 5).
#[derive(Debug, thiserror::Error)]
#[error(
    "{source_name}: {reason}\n  help: run `snp-build update` to resolve the pins and rewrite {lock}"
)]
pub struct LockMismatch {
    pub source_name: String,
    pub reason: String,
    pub lock: String,
}

/// `--locked`, and a pinned tag names another commit upstream than the
/// lock has (exit 5, as [`LockMismatch`]): a tag is meant never to move,
/// so the move is the user's to accept.
#[derive(Debug, thiserror::Error)]
#[error(
    "{source_name}: tag {tag} moved upstream: the lock has {locked}, {url} now has {upstream}\n  help: if the move is expected, run `snp-build update {source_name}` to accept it (it rewrites {lock}); otherwise keep building the locked commit without --locked and ask upstream why the tag moved"
)]
pub struct TagMoved {
    pub source_name: String,
    pub tag: String,
    pub url: String,
    pub locked: String,
    pub upstream: String,
    pub lock: String,
}
