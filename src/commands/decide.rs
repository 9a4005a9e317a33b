//! Pull, skip or build: the one decision for a stage, which `plan` (and
//! `--dry-run`), the settling before the fetch and the build all make
//! here, so what the plan says and what the build does cannot disagree.
//!
//! | the stage | choice |
//! |---|---|
//! | its stamp holds its inputs (not `--force`d) | skip |
//! | must run, `--force`d | build (the cache is not asked) |
//! | must run, no cache (none configured, or it failed earlier this run) | build |
//! | must run, the bytes it would build are not the pin's (local changes, `--allow-dirty`; a tree that cannot be read; a pin whose commit is not known yet) | build (the cache is not asked) |
//! | must run, the cache has its fingerprint | pull |
//! | must run, the cache has it not (or refuses what it has) | build |
//!
//! And after a stage ran: only a successful build of the pinned bytes is
//! pushed (read-write), never one with local changes.
//!
//! What asking the cache means is the caller's: the plan reads a manifest
//! ([`Share::has`]), settling and the build pull ([`Share::pull`], which
//! writes the stamp); a tag asked once in a run is not asked again.

use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::fingerprint::{Decision, Fingerprint, Reason};
use crate::stage::share::{Pulled, Share};
use crate::stage::{BuildEnv, Component, Outcome, SourceFacts, Status, Work};
use crate::tools::versions::ToolVersions;

/// What to do with a stage.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice<P> {
    /// Its stamp holds: nothing to do.
    Skip,
    /// The shared cache has it: `P` is what asking brought (the plan: its
    /// tag's location; a build: the pulled outputs, in place).
    Pull(P),
    /// Build it here.
    Build,
}

/// The bytes a stage would be built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// Exactly the pinned (and patched) commit's, or no tree at all (the
    /// lock pins it): what a cache tag stands for.
    Pinned,
    /// Not the pin's: local changes (`--allow-dirty`), or a tree that
    /// cannot be read.
    Differs,
    /// Not known yet: a pin the lock does not cover, before the fetch
    /// resolves it (its tag cannot be named).
    Unresolved,
}

/// The decision table (see the module's). `tree` is read, and `ask` is
/// called, only when the answer turns on them: a stage that is skipped,
/// forced, or has no cache to ask costs neither a tree status nor a
/// registry request.
pub fn choose<P>(
    decision: &Decision,
    forced: bool,
    cache: bool,
    tree: impl FnOnce() -> Tree,
    ask: impl FnOnce() -> anyhow::Result<Option<P>>,
) -> anyhow::Result<Choice<P>> {
    if !decision.run {
        return Ok(Choice::Skip);
    }
    if forced || !cache || tree() != Tree::Pinned {
        return Ok(Choice::Build);
    }
    Ok(match ask()? {
        Some(found) => Choice::Pull(found),
        None => Choice::Build,
    })
}

/// Whether a stage that ran with `status` from `tree` goes to the cache
/// (given one that takes pushes): only a successful build of the pin.
pub fn pushes(status: Status, tree: Tree) -> bool {
    status == Status::Ok && tree == Tree::Pinned
}

/// A stage's fingerprint and its stamp's verdict on it.
pub struct Judged {
    pub inputs: Fingerprint,
    pub forced: bool,
    pub decision: Decision,
}

/// Fingerprints `c` from `facts` and judges it against its stamp (and
/// `--force`).
pub fn judge(
    env: &BuildEnv,
    c: &dyn Component,
    facts: &SourceFacts,
    tools: &mut ToolVersions,
) -> Judged {
    let inputs = c.fingerprint(env, facts, tools);
    let forced = env.force.forces(c.spec().name);
    let decision = c.decide(&env.work, &inputs, forced);
    Judged {
        inputs,
        forced,
        decision,
    }
}

/// The decision of a stage pulled from the cache.
pub fn pulled(reason: Reason) -> Decision {
    Decision {
        run: false,
        reasons: vec![reason],
    }
}

/// A run's shared cache (if it has one) as the decision asks it, and the
/// tags already asked for: a miss or a refusal before the fetch is not
/// asked again after it.
pub struct Cache<'a> {
    share: Option<&'a Share>,
    asked: RefCell<BTreeSet<String>>,
}

impl<'a> Cache<'a> {
    pub fn new(share: Option<&'a Share>) -> Cache<'a> {
        Cache {
            share,
            asked: RefCell::default(),
        }
    }

    /// [`choose`] with this run's cache: `ask` is called with it when the
    /// answer turns on it.
    fn choose<P>(
        &self,
        judged: &Judged,
        tree: impl FnOnce() -> Tree,
        ask: impl FnOnce(&Share) -> anyhow::Result<Option<P>>,
    ) -> anyhow::Result<Choice<P>> {
        // A cache to ask: configured, and not found unavailable this run.
        let share = self.share.filter(|s| !s.is_down());
        choose(
            &judged.decision,
            judged.forced,
            share.is_some(),
            tree,
            || share.map_or(Ok(None), ask),
        )
    }

    /// The plan's choice: a pull names where the cache has it (one
    /// manifest read; nothing is pulled).
    pub fn plan(
        &self,
        stage: &str,
        judged: &Judged,
        tree: impl FnOnce() -> Tree,
    ) -> anyhow::Result<Choice<String>> {
        self.choose(judged, tree, |s| {
            let has = s.has(stage, &judged.inputs)?;
            Ok(has.then(|| s.location(stage, &judged.inputs)))
        })
    }

    /// The build's choice (and settling's): a pull has put the outputs in
    /// place and written the stamp.
    pub fn build(
        &self,
        env: &BuildEnv,
        c: &dyn Component,
        judged: &Judged,
        tree: impl FnOnce() -> Tree,
    ) -> anyhow::Result<Choice<Pulled>> {
        self.choose(judged, tree, |s| {
            let tag = s.location(c.spec().name, &judged.inputs);
            if !self.asked.borrow_mut().insert(tag) {
                return Ok(None);
            }
            s.pull(env, c, &judged.inputs)
        })
    }

    /// After the stages ran: pushes each that [`pushes`] allows
    /// (read-write), whether or not another stage failed.
    pub fn push(
        &self,
        env: &BuildEnv,
        work: &[Work<'_>],
        outcomes: &[Outcome],
    ) -> anyhow::Result<()> {
        let Some(share) = self.share.filter(|s| s.pushes()) else {
            return Ok(());
        };
        for (o, w) in outcomes.iter().zip(work) {
            if pushes(o.status, Tree::of(w.synced.dirty.is_some())) {
                share.push(env, w.component)?;
            }
        }
        Ok(())
    }
}

impl Tree {
    /// A fetched tree: `dirty` when it is built with local changes.
    pub fn of(dirty: bool) -> Tree {
        if dirty { Tree::Differs } else { Tree::Pinned }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn runs() -> Decision {
        Decision::run(vec![Reason::NeverBuilt])
    }

    /// `choose`, recording whether it read the tree and asked the cache.
    struct Asked {
        tree: Cell<bool>,
        cache: Cell<bool>,
    }

    fn pick(
        decision: &Decision,
        forced: bool,
        cache: bool,
        tree: Tree,
        has: bool,
    ) -> (Choice<&'static str>, Asked) {
        let asked = Asked {
            tree: Cell::new(false),
            cache: Cell::new(false),
        };
        let choice = choose(
            decision,
            forced,
            cache,
            || {
                asked.tree.set(true);
                tree
            },
            || {
                asked.cache.set(true);
                Ok(has.then_some("tag"))
            },
        )
        .unwrap();
        (choice, asked)
    }

    #[test]
    fn a_fresh_stamp_skips_without_asking() {
        let (choice, asked) = pick(&Decision::up_to_date(), false, true, Tree::Pinned, true);
        assert_eq!(choice, Choice::Skip);
        assert!(!asked.tree.get() && !asked.cache.get());
    }

    #[test]
    fn a_forced_rebuild_builds_even_what_the_cache_has() {
        let forced = Decision::run(vec![Reason::Forced]);
        let (choice, asked) = pick(&forced, true, true, Tree::Pinned, true);
        assert_eq!(choice, Choice::Build);
        assert!(!asked.tree.get() && !asked.cache.get());
    }

    #[test]
    fn a_cache_hit_pulls() {
        let (choice, asked) = pick(&runs(), false, true, Tree::Pinned, true);
        assert_eq!(choice, Choice::Pull("tag"));
        assert!(asked.tree.get() && asked.cache.get());
    }

    #[test]
    fn a_cache_miss_builds() {
        let (choice, asked) = pick(&runs(), false, true, Tree::Pinned, false);
        assert_eq!(choice, Choice::Build);
        assert!(asked.cache.get());
    }

    #[test]
    fn no_cache_configured_builds_without_reading_the_tree() {
        let (choice, asked) = pick(&runs(), false, false, Tree::Pinned, true);
        assert_eq!(choice, Choice::Build);
        assert!(!asked.tree.get() && !asked.cache.get());
    }

    #[test]
    fn a_tree_that_is_not_the_pin_never_pulls() {
        for tree in [Tree::Differs, Tree::Unresolved] {
            let (choice, asked) = pick(&runs(), false, true, tree, true);
            assert_eq!(choice, Choice::Build, "{tree:?}");
            assert!(!asked.cache.get(), "{tree:?}: the cache was asked");
        }
    }

    #[test]
    fn a_registry_error_is_the_callers() {
        let e = choose::<()>(
            &runs(),
            false,
            true,
            || Tree::Pinned,
            || anyhow::bail!("--cache-remote-required"),
        );
        assert!(e.is_err());
    }

    #[test]
    fn only_a_successful_build_of_the_pin_is_pushed() {
        assert!(pushes(Status::Ok, Tree::Pinned));
        assert!(!pushes(Status::Ok, Tree::Differs));
        assert!(!pushes(Status::Ok, Tree::of(true)));
        for status in [
            Status::Failed,
            Status::Cancelled,
            Status::Skipped,
            Status::Pulled,
        ] {
            assert!(!pushes(status, Tree::Pinned), "{status:?}");
        }
    }
}
