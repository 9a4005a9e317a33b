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

use crate::component::SourceId;
use crate::output::human_bytes;

/// What `clean` removed.
#[derive(Debug, Default, serde::Serialize)]
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

/// Cleans `work_dir` as the flags ask.
pub fn clean(work_dir: &Path, all: bool, broken: bool) -> anyhow::Result<Cleaned> {
    let mut c = Cleaned::default();
    if broken {
        for p in broken_paths(work_dir) {
            tracing::info!("removing {} ({})", p.display(), human_bytes(size_of(&p)));
            c.remove(&p)?;
        }
        if !all {
            return Ok(c);
        }
    }
    for name in ["state", "logs"] {
        c.remove(&work_dir.join(name))?;
    }
    for id in SourceId::BUILD_ORDER {
        let stage = work_dir.join(id.name());
        for name in ["packages", "config", "configured-with", "destdir"] {
            c.remove(&stage.join(name))?;
        }
        for e in read_dir(&stage) {
            let name = e
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if [".deb", ".buildinfo", ".changes"]
                .iter()
                .any(|x| name.ends_with(x))
            {
                c.remove(&e)?;
            }
        }
        c.remove(&work_dir.join(format!("source-commit.{}", id.commit_file_suffix())))?;
        let tree = stage.join("src");
        if all {
            c.remove(&tree)?;
        } else if let Ok(repo) = Repository::open(&tree) {
            for p in ignored_paths(&repo)? {
                c.remove(&p)?;
            }
        }
    }
    if all {
        c.remove(&work_dir.join("git"))?;
    }
    Ok(c)
}

/// Moved-aside trees and saved diffs.
pub fn broken_paths(work_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = SourceId::BUILD_ORDER
        .iter()
        .flat_map(|id| read_dir(&work_dir.join(id.name())))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("src.broken-"))
        })
        .collect();
    let diffs = work_dir.join("saved-diffs");
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

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Bytes under `path` (links not followed).
fn size_of(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| !m.is_dir())
        .map(|m| m.len())
        .sum()
}
