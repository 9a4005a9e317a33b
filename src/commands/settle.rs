//! Before anything is fetched: the stages whose outputs can stand without
//! their source trees, so a box that pulls (or already pulled) every
//! stage from the shared cache fetches nothing.
//!
//! Only a stage the lock covers is settled here (the lock gives its SHA
//! and submodules, so its fingerprint needs no tree), and only when its
//! tree, if there is one, has no local changes (those go through the
//! fetch, which stops, keeps or discards them as asked). Such a stage is
//! settled when
//! - its stamp holds and its tree is absent (a box that pulled it): the
//!   stamp recorded what the release says of the tree; or
//! - it must run, is not `--force`d, and the shared cache has it whole:
//!   pulled.
//!
//! Which of the two is [`super::decide`]'s choice, as for the plan and
//! the build.
//!
//! Everything else is fetched and decided as before, and may still be
//! pulled once its fingerprint is known (a pin the lock does not cover).

use super::decide::{Cache, Choice, Tree, judge, pulled};
use crate::fingerprint::{Decision, Fingerprint};
use crate::source::lock::Lock;
use crate::source::patch;
use crate::source::{Origin, Synced};
use crate::stage::share::recorded_source;
use crate::stage::{BuildEnv, Component};
use crate::tools::versions::ToolVersions;

/// A stage that needs no fetch.
pub struct Settled {
    pub synced: Synced,
    pub inputs: Fingerprint,
    pub decision: Decision,
}

/// For each component, in order, settled or `None` (fetch it). The tags
/// asked for stay in `cache` (a miss or a refusal is not asked for again
/// after the fetch).
pub fn settle(
    env: &BuildEnv,
    lock: &Lock,
    components: &[&dyn Component],
    cache: &Cache<'_>,
    tools: &mut ToolVersions,
) -> anyhow::Result<Vec<Option<Settled>>> {
    components
        .iter()
        .map(|c| settle_one(env, lock, *c, cache, tools))
        .collect()
}

fn settle_one(
    env: &BuildEnv,
    lock: &Lock,
    c: &dyn Component,
    cache: &Cache<'_>,
    tools: &mut ToolVersions,
) -> anyhow::Result<Option<Settled>> {
    let name = c.spec().name;
    let Some(source) = c.source() else {
        return Ok(None);
    };
    let Some(entry) = lock.decide(source) else {
        return Ok(None);
    };
    let tree = env.work.stage(name).tree();
    let judged = judge(env, c, &super::plan::facts_from_lock(source, lock)?, tools);
    let series = patch::read_series(&source.patches)?;
    // No tree: the lock's commit is what would be built. A tree there is
    // pulled over only when it has no local changes (one that cannot be
    // read counts as changed: the fetch recovers a broken tree).
    let there = tree.exists();
    let choice = cache.build(env, c, &judged, || {
        let clean = !there || crate::source::tree_changes(&tree).is_ok_and(|f| f.is_empty());
        if clean { Tree::Pinned } else { Tree::Differs }
    })?;
    let (record, decision) = match choice {
        // Up to date without its tree: if the stamp can speak for it.
        Choice::Skip if !there => match recorded_source(env, name) {
            Some(record) => (record, judged.decision),
            None => return Ok(None),
        },
        // A tree there goes through the fetch as always (which checks
        // it against its pin), and is decided there.
        Choice::Skip | Choice::Build => return Ok(None),
        Choice::Pull(p) => match p.source {
            Some(record) => (record, pulled(p.reason)),
            // An artifact without the tree's facts: the tree is fetched
            // for the release (the outputs stand).
            None => return Ok(None),
        },
    };
    Ok(Some(Settled {
        synced: Synced::new(
            source,
            &series,
            entry.sha.clone(),
            entry.submodules.clone(),
            tree,
            Origin::Recorded(record),
        ),
        inputs: judged.inputs,
        decision,
    }))
}
