//! The plan: which stages run and why, computed without side effects.
//!
//! `snp-build plan` and `--dry-run` read the pin file, the lock, the patch
//! series, the stamps, the tools' versions and the trees' status (a tree
//! that differs from its pin is shown as the build would treat it), and
//! never fetch or write.
//! A build decides with the same functions after fetching, from the SHAs
//! it actually resolved (pull, skip or build: [`super::decide`]); with a
//! lock that covers the pins both see the same SHAs, so the plan and the
//! build cannot disagree.

use std::path::PathBuf;

use serde::Serialize;

use super::decide::{self, Cache, Choice, Tree};
use super::{EnvRequest, Globals, ReleaseTarget};
use crate::config::Source;
use crate::fingerprint::{Decision, Reason};
use crate::source::lock::Lock;
use crate::source::{DirtyPolicy, patch};
use crate::stage::run::recorded_outcomes;
use crate::stage::share::Share;
use crate::stage::{BuildEnv, Component, Registry, Selection, SourceFacts, Stack};
use crate::tools::versions::ToolVersions;

/// What the plan says of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Run,
    /// Pulled from the shared cache instead of built.
    Pull,
    Skip,
    /// A build would stop here (exit 7): its tree differs from its pin.
    Stop,
}

impl Action {
    pub fn word(self) -> &'static str {
        match self {
            Action::Run => "run",
            Action::Pull => "pull",
            Action::Skip => "skip",
            Action::Stop => "stop",
        }
    }
}

/// One line of the plan.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Planned {
    pub stage: String,
    pub action: Action,
    pub reasons: Vec<Reason>,
    /// What its source is pinned to (`branch linux-6.12.y of URL`, the URL
    /// redacted); none for the release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

impl Planned {
    pub fn new(stage: &str, d: &Decision) -> Planned {
        Planned {
            stage: stage.to_string(),
            action: if d.run { Action::Run } else { Action::Skip },
            reasons: d.reasons.clone(),
            pin: None,
        }
    }
}

/// What the lock says about a source (no fetch): its SHA if the lock
/// covers the pin, else a description of what would be resolved.
pub fn facts_from_lock(source: &Source, lock: &Lock) -> anyhow::Result<SourceFacts> {
    let series = patch::read_series(&source.patches)?;
    let entry = lock.decide(source);
    Ok(SourceFacts {
        sha: entry
            .map(|e| e.sha.clone())
            .unwrap_or_else(|| format!("unresolved ({} is not in the lock)", source.rev)),
        series_hash: series.hash,
        submodules: entry.map(|e| e.submodules.clone()).unwrap_or_default(),
        dirty: None,
    })
}

/// The plan for `components`, from the lock, with [`decide::choose`]'s
/// table: with a shared cache, a stage that would run and that the cache
/// has (whole manifest, this fingerprint) is a pull, named by its tag.
/// With `dirty`, each tree's status is read and a tree that differs from
/// its pin is shown as the build would treat it; without (the build's
/// preflight, before the fetch checks the trees), trees are not read.
pub fn plan(
    env: &BuildEnv,
    lock: &Lock,
    components: &[&dyn Component],
    cache: &Cache<'_>,
    dirty: Option<DirtyPolicy>,
) -> anyhow::Result<Vec<Planned>> {
    let mut tools = ToolVersions::load(&env.work);
    let mut out = Vec::new();
    for c in components {
        let name = c.spec().name;
        let source = c
            .source()
            .ok_or_else(|| anyhow::anyhow!("{name}: not pinned"))?;
        let judged = decide::judge(env, *c, &facts_from_lock(source, lock)?, &mut tools);
        let files = match dirty {
            Some(_) => crate::source::tree_changes(&env.work.stage(name).tree())?,
            None => Vec::new(),
        };
        // What the build would build: the lock's commit (a tree with
        // changes is reset to it under --discard-changes), the tree as it
        // is (--allow-dirty; a refusing build stops), or a commit the
        // fetch has yet to resolve.
        let tree = || match (lock.decide(source), dirty) {
            (None, _) => Tree::Unresolved,
            (Some(_), Some(DirtyPolicy::Allow | DirtyPolicy::Refuse)) if !files.is_empty() => {
                Tree::Differs
            }
            (Some(_), _) => Tree::Pinned,
        };
        let mut planned = Planned::new(name, &judged.decision);
        planned.pin = Some(format!("{} of {}", source.rev, source.url.redacted()));
        if let Choice::Pull(at) = cache.plan(name, &judged, tree)? {
            planned.action = Action::Pull;
            planned.reasons.push(Reason::InCache { at });
        }
        if let Some(dirty) = dirty.filter(|_| !files.is_empty()) {
            say_tree_differs(&mut planned, files, dirty);
        }
        out.push(planned);
    }
    Ok(out)
}

/// Turns a planned stage whose tree differs from its pin into what the
/// build would do: stop (exit 7), build the tree as it is, or reset it.
fn say_tree_differs(p: &mut Planned, files: Vec<String>, dirty: DirtyPolicy) {
    let then = match dirty {
        DirtyPolicy::Refuse => {
            p.action = Action::Stop;
            p.reasons.clear();
            "a build stops (exit 7); keep the edit as a patch, or pass --discard-changes or --allow-dirty"
        }
        DirtyPolicy::Allow => {
            p.action = Action::Run;
            "built as it is (--allow-dirty), and the release says so"
        }
        DirtyPolicy::Discard => "the changes are saved as a diff and dropped (--discard-changes)",
    };
    p.reasons.insert(
        0,
        Reason::TreeDiffers {
            files,
            then: then.into(),
        },
    );
}

/// What `plan` was asked.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    pub env: EnvRequest,
    /// Include the release (as a build with `--package`).
    pub package: bool,
    pub output: PathBuf,
    pub date: Option<String>,
    pub components: Vec<String>,
}

/// `snp-build plan`: which stages would run, and why (reads only).
pub fn command(
    registry: &Registry,
    globals: &Globals,
    req: &PlanRequest,
) -> anyhow::Result<Vec<Planned>> {
    let selection = Selection::parse(&req.components, registry)?;
    let stack = super::load(registry, globals.config.as_deref())?;
    let components = stack.request(&selection, req.package)?;
    super::support::warn_pins(&components);
    let env = super::build_env(globals, &stack, &req.env)?;
    let key = super::signing_key_path(None, &stack);
    let target = req
        .package
        .then(|| ReleaseTarget::new(&req.output, req.date.as_deref()))
        .transpose()?
        .map(|t| t.expect_signed_by(key.as_deref()))
        .map(|t| anyhow::Ok(t.with_installer(super::installer_binary(&stack)?)))
        .transpose()?;
    show(
        &stack,
        &env,
        &components,
        target.as_ref(),
        DirtyPolicy::Refuse,
    )
}

/// `plan` and `--dry-run`: the decisions, from the lock, changing nothing;
/// with a release target, the release's too. A tree that differs from its
/// pin is shown as the build would treat it under `dirty` (the plan
/// command has no flag for it: `Refuse`).
pub fn show(
    stack: &Stack,
    env: &BuildEnv,
    components: &[&dyn Component],
    release: Option<&ReleaseTarget>,
    dirty: DirtyPolicy,
) -> anyhow::Result<Vec<Planned>> {
    let lock = Lock::load(
        &Lock::path_for(&stack.file.origin, &env.work),
        &stack.names(),
    )?;
    let share = Share::open(env)?;
    let cache = Cache::new(share.as_ref());
    let mut planned = plan(env, &lock, components, &cache, Some(dirty))?;
    if let Some(target) = release {
        if planned.iter().any(|p| p.action == Action::Stop) {
            planned.push(Planned {
                stage: crate::release::STAGE.to_string(),
                action: Action::Stop,
                reasons: vec![Reason::BuildStops],
                pin: None,
            });
            return Ok(planned);
        }
        let decision = if planned
            .iter()
            .any(|p| matches!(p.action, Action::Run | Action::Pull))
        {
            Decision::run(vec![Reason::PackagedStageRuns])
        } else {
            // Every stage is up to date: judge from their stamps.
            let outcomes = recorded_outcomes(env, components);
            super::package::release_of(stack, env, &[], &outcomes, &lock.path, target)?.decide()?
        };
        planned.push(Planned::new(crate::release::STAGE, &decision));
    }
    Ok(planned)
}
