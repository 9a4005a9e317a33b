//! `snp-build fetch` and `update`, and the build's first step: bring the
//! selected components' trees to their pins and record the lock.

use std::path::PathBuf;

use serde::Serialize;

use super::Globals;
use crate::source::lock::Lock;
use crate::source::short_sha;
use crate::source::{self, Mode, Synced};
use crate::stage::{Component, Registry, Selection, Stack};
use crate::workdir::WorkDir;

/// What `fetch`/`update` were asked.
#[derive(Debug, Clone, Default)]
pub struct FetchRequest {
    /// `update`: re-resolve branches and tags instead of using the lock.
    pub update: bool,
    /// Fail instead of resolving any pin the lock does not cover (CI).
    pub locked: bool,
    /// Overwrite hand edits in a tree (their diff is saved first).
    pub discard_changes: bool,
    pub components: Vec<String>,
}

/// What was fetched (its JSON document).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Fetched {
    pub lock: PathBuf,
    pub sources: Vec<Synced>,
}

/// `fetch` and `update`: the selected trees at their pins, with what moved.
pub fn fetch(
    registry: &Registry,
    globals: &Globals,
    req: &FetchRequest,
) -> anyhow::Result<Fetched> {
    let selection = Selection::parse(&req.components, registry)?;
    let stack = super::load(registry, globals.config.as_deref())?;
    let components = stack.select(&selection)?;
    let work = WorkDir::new(&globals.work_dir)?;
    let _signals = crate::exec::Registry::global();
    let _lock = work.lock()?;
    let mode = if req.update {
        Mode::Update
    } else {
        Mode::UseLock
    };
    let (lock, synced) = sync(&stack, &work, &components, mode, req)?;
    if req.update {
        for s in &synced {
            match &s.previous_sha {
                Some(old) => {
                    tracing::info!("{}: {} -> {}", s.source, short_sha(old), short_sha(&s.sha))
                }
                None => tracing::info!("{}: {} (unchanged)", s.source, short_sha(&s.sha)),
            }
        }
    }
    Ok(Fetched {
        lock: lock.path,
        sources: synced,
    })
}

/// Brings the trees of `components` to their pins, updating the lock.
pub fn sync(
    stack: &Stack,
    work: &WorkDir,
    components: &[&dyn Component],
    mode: Mode,
    req: &FetchRequest,
) -> anyhow::Result<(Lock, Vec<Synced>)> {
    let mut lock = Lock::load(&Lock::path_for(&stack.file.origin, work), &stack.names())?;
    let sources: Vec<_> = components.iter().filter_map(|c| c.source()).collect();
    let opts = source::Options {
        mode,
        locked: req.locked,
        discard_changes: req.discard_changes,
    };
    let synced = source::sync(&sources, work, &mut lock, opts)?;
    Ok((lock, synced))
}
