//! `snp-build clean [--all] [--broken]`: removes what builds left under the
//! work dir, and nothing outside it.
//!
//! - default: build outputs: stamps and logs (`state/`, `logs/`), each
//!   stage's collected packages, kept config and install staging, the
//!   kernel packaging leftovers, `source-commit.*`, and the files the
//!   trees' own `.gitignore` rules mark as build products. Tracked files
//!   and untracked files the tree does not ignore (possibly user work)
//!   stay; so do the trees themselves and the object stores.
//! - `--all`: also the source trees and object stores (the lock stays).
//! - `--broken`: the moved-aside broken trees and saved diffs, listed
//!   before they are removed. They hold user work, so nothing else ever
//!   removes them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use git2::{Repository, StatusOptions};

use super::Globals;
use crate::config::PinFile;
use crate::progress::human_bytes;
use crate::stage::{Registry, Stack};
use crate::workdir::WorkDir;

/// What `clean` removed.
#[derive(Debug, Default, serde::Serialize, schemars::JsonSchema)]
pub struct Cleaned {
    pub removed: Vec<PathBuf>,
    pub bytes: u64,
}

impl Cleaned {
    fn remove(&mut self, path: &Path) -> anyhow::Result<()> {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return Ok(());
        };
        self.bytes += size_of(path);
        if meta.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        }
        .with_context(|| format!("removing {}", path.display()))?;
        self.removed.push(path.to_path_buf());
        Ok(())
    }
}

/// What `clean` was asked.
#[derive(Debug, Clone, Default)]
pub struct CleanRequest {
    /// The source trees and object stores too.
    pub all: bool,
    /// The moved-aside broken trees and saved diffs.
    pub broken: bool,
}

/// `clean`: under the work dir only, with the work dir locked. Nothing
/// here reads the pins, but a `--config` given is checked.
pub fn command(
    registry: &Registry,
    globals: &Globals,
    req: &CleanRequest,
) -> anyhow::Result<Cleaned> {
    let stack = match &globals.config {
        Some(path) => super::load(registry, Some(path))?,
        None => registry.configure(PinFile::embedded())?,
    };
    let work = WorkDir::new(&globals.work_dir)?;
    if !work.root().exists() {
        tracing::info!("{} does not exist: nothing to clean", work.root().display());
        return Ok(Cleaned::default());
    }
    let _lock = work.lock()?;
    let cleaned = clean(&stack, &work, req.all, req.broken)?;
    tracing::info!(
        "removed {} path(s), {}",
        cleaned.removed.len(),
        human_bytes(cleaned.bytes)
    );
    if !req.broken {
        let kept = broken_paths(&stack, &work);
        if !kept.is_empty() {
            tracing::info!(
                "kept {} moved-aside tree(s) or saved diff(s) (they may hold your work); `snp-build clean --broken` lists and removes them",
                kept.len()
            );
        }
    }
    Ok(cleaned)
}

/// Cleans `work` as the flags ask.
pub fn clean(stack: &Stack, work: &WorkDir, all: bool, broken: bool) -> anyhow::Result<Cleaned> {
    let mut c = Cleaned::default();
    if broken {
        for p in broken_paths(stack, work) {
            tracing::info!("removing {} ({})", p.display(), human_bytes(size_of(&p)));
            c.remove(&p)?;
        }
        if !all {
            return Ok(c);
        }
    }
    c.remove(&work.state())?;
    c.remove(&work.logs())?;
    for component in stack.components() {
        let spec = component.spec();
        let dir = work.stage(spec.name);
        for product in component.products(&dir) {
            c.remove(&product)?;
        }
        c.remove(&dir.dirty_diff())?;
        c.remove(&work.source_commit(spec.table))?;
        let tree = dir.tree();
        if all {
            c.remove(&tree)?;
        } else if let Ok(repo) = Repository::open(&tree) {
            for p in ignored_paths(&repo)? {
                c.remove(&p)?;
            }
        }
    }
    if all {
        c.remove(&work.stores())?;
    }
    Ok(c)
}

/// Moved-aside trees and saved diffs.
pub fn broken_paths(stack: &Stack, work: &WorkDir) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = stack
        .components()
        .flat_map(|c| work.stage(c.spec().name).broken_trees())
        .collect();
    let diffs = work.saved_diffs();
    if diffs.exists() {
        out.push(diffs);
    }
    out.sort();
    out
}

/// Files and directories the tree's ignore rules mark (build products).
fn ignored_paths(repo: &Repository) -> anyhow::Result<Vec<PathBuf>> {
    let workdir = repo.workdir().context("a tree without a work dir")?;
    let mut opts = StatusOptions::new();
    opts.include_ignored(true)
        .include_untracked(false)
        .recurse_ignored_dirs(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut opts))?;
    Ok(statuses
        .iter()
        .filter(|e| e.status().is_ignored())
        .filter_map(|e| e.path().ok().map(|p| workdir.join(p.trim_end_matches('/'))))
        .collect())
}

/// Bytes under `path` (links not followed).
fn size_of(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .follow_root_links(false)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| !m.is_dir())
        .map(|m| m.len())
        .sum()
}
