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
//! Everything else is fetched and decided as before, and may still be
//! pulled once its fingerprint is known (a pin the lock does not cover).

use std::collections::BTreeSet;

use crate::fingerprint::{Decision, Fingerprint};
use crate::source::Synced;
use crate::source::lock::Lock;
use crate::source::patch;
use crate::stage::share::{Share, recorded_source};
use crate::stage::{BuildEnv, Component};
use crate::tools::versions::ToolVersions;

/// A stage that needs no fetch.
pub struct Settled {
    pub synced: Synced,
    pub inputs: Fingerprint,
    pub decision: Decision,
}

/// What settling found: for each component, in order, settled or `None`
/// (fetch it); and the tags it already asked the cache for (a miss or a
/// refusal is not asked for again after the fetch).
pub struct Settling {
    pub settled: Vec<Option<Settled>>,
    pub asked: BTreeSet<String>,
}

pub fn settle(
    env: &BuildEnv,
    lock: &Lock,
    components: &[&dyn Component],
    share: Option<&Share>,
    tools: &mut ToolVersions,
) -> anyhow::Result<Settling> {
    let mut out = Settling {
        settled: Vec::new(),
        asked: BTreeSet::new(),
    };
    for c in components {
        let s = settle_one(env, lock, *c, share, tools, &mut out.asked)?;
        out.settled.push(s);
    }
    Ok(out)
}

fn settle_one(
    env: &BuildEnv,
    lock: &Lock,
    c: &dyn Component,
    share: Option<&Share>,
    tools: &mut ToolVersions,
    asked: &mut BTreeSet<String>,
) -> anyhow::Result<Option<Settled>> {
    let name = c.spec().name;
    let Some(source) = c.source() else {
        return Ok(None);
    };
    let Some(entry) = lock.decide(source) else {
        return Ok(None);
    };
    let tree = env.work.stage(name).tree();
    let facts = super::plan::facts_from_lock(source, lock)?;
    let inputs = c.fingerprint(env, &facts, tools);
    let forced = env.force.forces(name);
    let decision = c.decide(&env.work, &inputs, forced);
    let series = patch::read_series(&source.patches)?;
    // A tree there: unless the stage would be pulled, it goes through the
    // fetch as always (which checks the tree against its pin); one with
    // local changes, or one that cannot be read (the fetch recovers a
    // broken tree), is fetched and decided there too.
    let pulls = decision.run && !forced && share.is_some_and(|s| !s.is_down());
    if tree.exists()
        && (!pulls || !crate::source::tree_changes(&tree).is_ok_and(|files| files.is_empty()))
    {
        return Ok(None);
    }
    if !decision.run {
        // Up to date without its tree: if the stamp can speak for it.
        return Ok(recorded_source(env, name).map(|record| Settled {
            synced: Synced::from_record(source, entry, &series, record, tree),
            inputs,
            decision,
        }));
    }
    let Some(share) = share.filter(|_| pulls) else {
        return Ok(None);
    };
    asked.insert(share.location(name, &inputs));
    let Some(pulled) = share.pull(env, c, &inputs)? else {
        return Ok(None);
    };
    let Some(record) = pulled.source else {
        // An artifact without the tree's facts: the tree is fetched for
        // the release (the outputs stand).
        return Ok(None);
    };
    Ok(Some(Settled {
        synced: Synced::from_record(source, entry, &series, record, tree),
        inputs,
        decision: Decision {
            run: false,
            reasons: vec![pulled.reason],
        },
    }))
}
