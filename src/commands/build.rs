//! The build: preflight, fetch, decide, run the stages, assemble the
//! release.
//!
//! Order matters for the user: every check that needs no work comes
//! first (the pin file, the components named, a base config that must
//! exist, `--output` and `--date`), then the preflight of the stages the
//! lock says will run (none on a no-op run, so no subprocess at all), and
//! only then anything that fetches or builds.

use crate::stage::Stack;
use std::path::PathBuf;

use serde::Serialize;

use super::decide::{Cache, Choice, Tree, judge, pulled};
use super::fetch::{FetchRequest, sync};
use super::package::release_of;
use super::plan::{Action, Planned};
use super::{EnvRequest, Globals, ReleaseTarget};
use crate::fingerprint::Reason;
use crate::host::preflight::preflight;
use crate::source::Synced;
use crate::source::lock::Lock;
use crate::source::{DirtyPolicy, Mode, check_clean, check_unchanged};
use crate::stage::share::Share;
use crate::stage::{BuildEnv, Component, Outcome, Registry, Selection, SourceFacts, Status, Work};
use crate::tools::versions::ToolVersions;

/// What the build was asked (`snp-build [OPTIONS] [COMPONENT...]`).
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    pub env: EnvRequest,
    pub fetch: FetchRequest,
    /// `--allow-dirty`: build trees that differ from their pins as they are.
    pub allow_dirty: bool,
    /// `--allow-unsupported`: build a host kernel and QEMU that cannot
    /// launch SNP guests instead of refusing them.
    pub allow_unsupported: bool,
    /// `--package`: where the release goes.
    pub package: bool,
    pub output: PathBuf,
    pub date: Option<String>,
    pub dry_run: bool,
    pub no_preflight: bool,
    /// `--sign PATH`: the secret key that signs the release.
    pub sign: Option<PathBuf>,
    /// `--timings`: write `logs/timings.html` and `logs/timings.json`.
    pub timings: bool,
}

/// What a build did (its JSON document), or what a dry run would do.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum BuildResult {
    Built(Box<BuildSummary>),
    DryRun { stages: Vec<Planned> },
}

/// Every source and stage of a build, and its release.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BuildSummary {
    pub lock: PathBuf,
    pub sources: Vec<Synced>,
    pub stages: Vec<Outcome>,
    pub work_dir: PathBuf,
    pub install: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseOutcome>,
}

/// What happened to the release.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ReleaseOutcome {
    pub status: Status,
    pub reasons: Vec<Reason>,
    pub path: PathBuf,
    pub tarball: PathBuf,
    pub tarball_sha256: String,
    pub snp_launch_digest: Option<String>,
    /// The key id of the release's signature (`--sign`).
    pub signed_by: Option<String>,
}

/// One or more stages failed; their reports are the message, and the
/// build's summary travels with it for `--json`.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
pub struct BuildFailed {
    pub text: String,
    pub summary: Box<BuildSummary>,
}

/// The build: fetch, then the stages side by side, then the release.
pub fn build(
    registry: &Registry,
    globals: &Globals,
    req: &BuildRequest,
) -> anyhow::Result<BuildResult> {
    crate::timings::start();
    let selection = Selection::parse(&req.fetch.components, registry)?;
    let stack = super::load(registry, globals.config.as_deref())?;
    let components = stack.request(&selection, req.package)?;
    super::support::check_pins(&components, req.allow_unsupported)?;
    let env = super::build_env(globals, &stack, &req.env)?;
    let target = req
        .package
        .then(|| ReleaseTarget::new(&req.output, req.date.as_deref()))
        .transpose()?;
    // A key from the environment or the pin file only matters to a
    // release; an explicit --sign without one is a mistake.
    if req.sign.is_some() && target.is_none() {
        return Err(crate::error::UsageError::new("--sign needs a release")
            .help("add --package (the signature covers the release's SHA256SUMS)")
            .into());
    }
    let key = super::signing_key_path(req.sign.as_deref(), &stack);
    let target = match target {
        Some(t) if req.dry_run => Some(t.expect_signed_by(key.as_deref())),
        Some(t) => Some(t.sign_with(key.as_deref())?),
        None => None,
    };
    let target = target
        .map(|t| anyhow::Ok(t.with_installer(super::installer_binary(&stack)?)))
        .transpose()?;
    let policy = match (req.fetch.discard_changes, req.allow_dirty) {
        (true, _) => DirtyPolicy::Discard,
        (false, true) => DirtyPolicy::Allow,
        (false, false) => DirtyPolicy::Refuse,
    };
    if req.dry_run {
        let stages = super::plan::show(&stack, &env, &components, target.as_ref(), policy)?;
        return Ok(BuildResult::DryRun { stages });
    }
    if let Some(target) = &target {
        target.check_writable()?;
    }
    let _signals = crate::exec::Registry::global();
    let _lock = env.work.lock()?;
    // --timings: the stages' phases are always recorded (a few mutex
    // calls); the sampler and the files only on request.
    let sampler = req.timings.then(crate::timings::Sampler::start);
    let result = build_locked(&stack, &env, &components, target, req, policy);
    if let Some(sampler) = sampler {
        let mut order: Vec<&str> = components.iter().map(|c| c.spec().name).collect();
        order.push(crate::release::STAGE);
        let report = crate::timings::report(&order, env.jobs, env.serial, sampler.stop());
        match crate::timings::write(&report, &env.work.logs()) {
            Ok(html) => tracing::info!("timings: {}", html.display()),
            Err(e) => tracing::warn!("writing the timings: {e:#}"),
        }
    }
    result
}

/// The build once the work dir is ours: preflight, fetch, stages, release.
fn build_locked(
    stack: &Stack,
    env: &BuildEnv,
    components: &[&dyn Component],
    target: Option<ReleaseTarget>,
    req: &BuildRequest,
    policy: DirtyPolicy,
) -> anyhow::Result<BuildResult> {
    // The stages that need no fetch: up to date without a tree, or
    // pulled from the shared cache (before the preflight: a pulled stage
    // needs no tools beyond its fingerprint's).
    let share = Share::open(env)?;
    let lock_path = Lock::path_for(&stack.file.origin, &env.work);
    let mut tools = ToolVersions::load(&env.work);
    let lock = Lock::load(&lock_path, &stack.names())?;
    // --locked before anything is pulled, as before anything is fetched.
    if req.fetch.locked {
        let sources: Vec<_> = components.iter().filter_map(|c| c.source()).collect();
        crate::source::check_locked(&sources, &lock, Mode::UseLock, &env.work)?;
    }
    let cache = Cache::new(share.as_ref());
    let settled = super::settle::settle(env, &lock, components, &cache, &mut tools)?;
    let to_fetch: Vec<&dyn Component> = components
        .iter()
        .zip(&settled)
        .filter(|(_, s)| s.is_none())
        .map(|(c, _)| *c)
        .collect();
    // Preflight, before anything is fetched: the tools of the stages the
    // lock says will run (none on a no-op run, so no checks at all).
    let mut checked: Vec<&str> = Vec::new();
    if !req.no_preflight {
        // The lock settling read (settling writes none); the trees are
        // checked by the fetch.
        let will_run: Vec<&dyn Component> =
            super::plan::plan(env, &lock, &to_fetch, &Cache::new(None), None)?
                .iter()
                .filter(|p| p.action == Action::Run)
                .filter_map(|p| stack.get(&p.stage))
                .collect();
        check_host(env, &will_run)?;
        checked = will_run.iter().map(|c| c.spec().name).collect();
    }
    // --locked was checked above for every source (upstream's tags
    // included): the fetch does not ask again.
    let fetch = FetchRequest {
        locked: false,
        ..req.fetch.clone()
    };
    let (lock, fetched) = sync(stack, &env.work, &to_fetch, Mode::UseLock, &fetch)?;
    let mut fetched = fetched.into_iter();
    let mut synced = Vec::new();
    let mut work: Vec<Work<'_>> = Vec::new();
    for (c, settled) in components.iter().zip(settled) {
        if let Some(s) = settled {
            synced.push(s.synced.clone());
            work.push(Work {
                component: *c,
                synced: s.synced,
                inputs: s.inputs,
                decision: s.decision,
            });
            continue;
        }
        let mut s = fetched
            .next()
            .expect("one synced source per fetched component");
        // Build only what was pinned: every tree is compared with its commit
        // (by the stat cache, as git status does)...
        check_clean(&mut s, &env.work, policy, false)?;
        // Decide from the SHAs actually resolved, with the plan's functions.
        let mut judged = judge(env, *c, &SourceFacts::from(&s), &mut tools);
        // ...and, where its bytes will be built, by hash: the stat cache
        // can be fooled. What it finds changes the tree's facts.
        if judged.decision.run {
            check_clean(&mut s, &env.work, policy, true)?;
            judged = judge(env, *c, &SourceFacts::from(&s), &mut tools);
        }
        // A pin the lock did not cover is known now: the cache may have it
        // (unless settling already asked for this very tag).
        let decision = match cache.build(env, *c, &judged, || Tree::of(s.dirty.is_some()))? {
            Choice::Pull(p) => pulled(p.reason),
            Choice::Skip | Choice::Build => judged.decision,
        };
        synced.push(s.clone());
        work.push(Work {
            component: *c,
            synced: s,
            inputs: judged.inputs,
            decision,
        });
    }
    tools.save()?;
    super::support::check_trees(components, &synced, req.allow_unsupported)?;
    // A stage the lock did not predict (e.g. a pin it did not cover) is
    // checked now, still before any build command.
    let unchecked: Vec<&dyn Component> = work
        .iter()
        .filter(|w| w.decision.run && !checked.contains(&w.component.spec().name))
        .map(|w| w.component)
        .collect();
    if !req.no_preflight {
        check_host(env, &unchecked)?;
    }
    let outcomes = crate::stage::run::run_all(env, &work)?;
    // What was built came from the bytes that were hashed before it ran:
    // checked again before anything is pushed or released.
    for (o, w) in outcomes.iter().zip(work.iter_mut()) {
        if o.status == Status::Ok {
            check_unchanged(&mut w.synced, &env.work.stamp(w.component.spec().name))?;
            // The summary's copy says what the checks cost.
            if let Some(s) = synced.iter_mut().find(|s| s.source == w.synced.source) {
                s.content_check = w.synced.content_check.clone();
            }
        }
    }
    // What was built here goes to the shared cache (read-write), whether
    // or not another stage failed.
    cache.push(env, &work, &outcomes)?;
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.status == Status::Failed)
        .collect();
    if !failed.is_empty() {
        let text = failed
            .iter()
            .map(|o| o.error.clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let summary = summary(env, lock.path, synced, outcomes, None);
        return Err(BuildFailed { text, summary }.into());
    }
    let count = |status| outcomes.iter().filter(|o| o.status == status).count();
    let (ran, pulled) = (count(Status::Ok), count(Status::Pulled));
    tracing::info!(
        "{ran} stage(s) built, {}{} up to date; logs in {}",
        if pulled > 0 {
            format!("{pulled} pulled, ")
        } else {
            String::new()
        },
        outcomes.len() - ran - pulled,
        env.work.logs().display()
    );
    let Some(target) = target else {
        return Ok(BuildResult::Built(summary(
            env, lock.path, synced, outcomes, None,
        )));
    };
    crate::timings::phase(crate::release::STAGE, "release");
    let release = release_of(stack, env, &synced, &outcomes, &lock.path, &target)?;
    // One snp-build at a time writes a release name (from any work dir).
    let _release_lock = release.lock()?;
    let decision = release.decide()?;
    let made = match (decision.run, release.recorded()) {
        (false, Some(recorded)) => {
            tracing::info!("release: up to date: {}", recorded.tarball.display());
            recorded
        }
        _ => release.make()?,
    };
    tracing::info!(
        "release: {}\ntarball: {} (sha256 {})",
        made.release.display(),
        made.tarball.display(),
        made.tarball_sha256
    );
    if let Some(d) = &made.snp_launch_digest {
        use crate::release::measure;
        tracing::info!(
            "expected SEV-SNP launch digest (launch-qemu.sh -sev-snp: {} vCPUs {}; others in {}): {d}",
            measure::DEFAULT_VCPUS,
            measure::DEFAULT_VCPU_TYPE,
            measure::MEASUREMENTS_FILE
        );
    }
    if !decision.run {
        crate::timings::skipped(
            crate::release::STAGE,
            decision.reasons.iter().map(ToString::to_string).collect(),
        );
    }
    crate::timings::finished(
        crate::release::STAGE,
        if decision.run { "ok" } else { "skipped" },
    );
    let outcome = ReleaseOutcome {
        status: if decision.run {
            Status::Ok
        } else {
            Status::Skipped
        },
        reasons: decision.reasons,
        path: made.release,
        tarball: made.tarball,
        tarball_sha256: made.tarball_sha256,
        snp_launch_digest: made.snp_launch_digest,
        signed_by: made.signed_by,
    };
    let lock_path = lock.path.clone();
    Ok(BuildResult::Built(summary(
        env,
        lock_path,
        synced,
        outcomes,
        Some(outcome),
    )))
}

fn summary(
    env: &BuildEnv,
    lock: PathBuf,
    sources: Vec<Synced>,
    stages: Vec<Outcome>,
    release: Option<ReleaseOutcome>,
) -> Box<BuildSummary> {
    Box::new(BuildSummary {
        lock,
        sources,
        stages,
        work_dir: env.work.root().to_path_buf(),
        install: env.install.clone(),
        release,
    })
}

/// The preflight of `components` (nothing to check: nothing runs).
fn check_host(env: &BuildEnv, components: &[&dyn Component]) -> anyhow::Result<()> {
    if components.is_empty() {
        return Ok(());
    }
    let needs: Vec<_> = components
        .iter()
        .map(|c| c.needs(env.package_format))
        .collect();
    preflight(&needs, env.package_format, env.work.root())?;
    Ok(())
}
