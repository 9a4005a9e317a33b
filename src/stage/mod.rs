//! Build stages: one per source (`kernel-host`, `kernel-guest`, `qemu`,
//! `ovmf`), run side by side under one job budget.
//!
//! How the budget works (`-j N`): a GNU make jobserver with N tokens is
//! shared by every running stage. A stage holds one token while it runs
//! (that is make's implicit slot, which every make has besides the
//! jobserver's tokens), so at most N stages run at once and the compile
//! jobs of all makes together never exceed N. Tools that are not jobserver
//! clients (QEMU's ninja before 1.13, edk2's `build -n`) take what tokens
//! are free when they start, up to their fair share, and get that count as
//! their own `-j`/`-n`. `--serial` runs one stage at a time, `-jN` each.
//!
//! A stage that fails stops the others (their process groups are
//! signalled) unless `--keep-going`; finished stages are never undone.

pub mod kernel;
pub mod ovmf;
pub mod qemu;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::component::SourceId;
use crate::config::{Config, PackageFormat};
use crate::exec::{Cancelled, Cmd, Interrupted, Registry, StageRun};
use crate::fingerprint::{self, Decision, Inputs, Stamp};
use crate::output::Progress;
use crate::source::Synced;
use crate::toolversion::ToolVersions;

/// What every stage shares.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    pub work_dir: PathBuf,
    /// Absolute install prefix (QEMU and OVMF), as build.sh's --install.
    pub install: PathBuf,
    pub jobs: usize,
    pub serial: bool,
    pub keep_going: bool,
    /// deb or rpm (never Auto here).
    pub package_format: PackageFormat,
    pub launcher: Option<String>,
    /// `--force`: `Some(empty)` forces every stage, `Some(names)` those.
    pub force: Option<Vec<String>>,
    /// `--clean`: kernels start from `make distclean`.
    pub clean: bool,
}

impl BuildEnv {
    pub fn logs(&self) -> PathBuf {
        self.work_dir.join("logs")
    }

    /// `<work>/<stage>`: the stage's own directory (its tree is `src/`).
    pub fn stage_dir(&self, id: SourceId) -> PathBuf {
        self.work_dir.join(id.name())
    }

    pub fn forced(&self, stage: &str) -> bool {
        self.force
            .as_ref()
            .is_some_and(|f| f.is_empty() || f.iter().any(|n| n == stage))
    }
}

/// What a stage needs to know about its source for its fingerprint.
#[derive(Debug, Clone)]
pub struct SourceFacts {
    /// The resolved SHA, or a description of what is unresolved.
    pub sha: String,
    pub series_hash: String,
    pub submodules: BTreeMap<String, String>,
}

impl From<&Synced> for SourceFacts {
    fn from(s: &Synced) -> SourceFacts {
        SourceFacts {
            sha: s.sha.clone(),
            series_hash: s.series_hash.clone().unwrap_or_default(),
            submodules: s.submodules.clone(),
        }
    }
}

/// A stage's fingerprint (see `fingerprint.rs` for the table of inputs).
pub fn inputs(
    config: &Config,
    env: &BuildEnv,
    id: SourceId,
    facts: &SourceFacts,
    tools: &mut ToolVersions,
) -> Inputs {
    let mut i = Inputs::new();
    i.insert("sha".into(), facts.sha.clone());
    let patches = if facts.series_hash.is_empty() {
        "none".to_string()
    } else {
        facts.series_hash[..16.min(facts.series_hash.len())].to_string()
    };
    i.insert("patches".into(), patches);
    i.insert("snp-build".into(), env!("CARGO_PKG_VERSION").into());
    let (tool_list, own): (&[&str], Inputs) = match id {
        SourceId::KernelHost | SourceId::KernelGuest => {
            (kernel::TOOLS, kernel::inputs(config, env, id))
        }
        SourceId::Qemu => (qemu::TOOLS, qemu::inputs(config, env)),
        SourceId::Ovmf => (ovmf::TOOLS, ovmf::inputs(config, env, facts)),
    };
    for t in tool_list {
        i.insert(format!("tool:{t}"), tools.version(t));
    }
    i.extend(own);
    i
}

/// One stage of a build: its source, fingerprint and decision.
#[derive(Debug, Clone)]
pub struct Work {
    pub synced: Synced,
    pub inputs: Inputs,
    pub decision: Decision,
}

/// What a stage made: its summary (for JSON and the release) and the
/// files whose loss or change makes it run again.
pub struct Built {
    pub summary: Value,
    pub outputs: Vec<PathBuf>,
}

/// How a stage may use the job budget.
#[derive(Debug, Clone, Copy)]
pub struct Jobs {
    /// make gets the shared jobserver (parallel mode).
    pub jobserver: bool,
    /// For tools that are not jobserver clients, and for every make in
    /// serial mode: the `-j`/`-n` to pass.
    pub fixed: usize,
}

impl Jobs {
    /// A `make` command using the budget the right way.
    pub fn make(&self, dir: &Path) -> Cmd {
        let cmd = Cmd::new("make", dir);
        if self.jobserver {
            cmd.jobserver()
        } else {
            cmd.arg(format!("-j{}", self.fixed))
        }
    }
}

/// The result of one stage, as reported in `--json` and used by the
/// release.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub stage: SourceId,
    /// `ok`, `skipped`, `failed` or `cancelled`.
    pub status: &'static str,
    /// Why it ran, or why it was skipped.
    pub reasons: Vec<String>,
    pub duration_s: f64,
    pub log: PathBuf,
    pub outputs: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Outcomes as the stamps of `ids` record them (for planning a release
/// without building).
pub fn recorded_outcomes(env: &BuildEnv, ids: &[SourceId]) -> Vec<Outcome> {
    ids.iter()
        .filter_map(|id| {
            let stamp = fingerprint::read_stamp(&env.work_dir, id.name())?;
            Some(Outcome {
                stage: *id,
                status: "skipped",
                reasons: vec!["up to date".into()],
                duration_s: 0.0,
                log: env.logs().join(format!("{id}.log")),
                outputs: stamp.summary,
                error: None,
            })
        })
        .collect()
}

/// Runs the stages of `work` that must run, skips the rest, and returns
/// every outcome in build order. Errors only for problems outside the
/// stages; a failed stage is an outcome (the caller decides the exit code).
pub fn run_all(config: &Config, env: &BuildEnv, work: &[Work]) -> anyhow::Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    let mut to_run = Vec::new();
    for w in work {
        if w.decision.run {
            to_run.push(w);
            continue;
        }
        let stamp = fingerprint::read_stamp(&env.work_dir, w.synced.source.name());
        Progress::new(w.synced.source.name())
            .finish(format!("skipped: {}", w.decision.reasons.join("; ")));
        outcomes.push(Outcome {
            stage: w.synced.source,
            status: "skipped",
            reasons: w.decision.reasons.clone(),
            duration_s: 0.0,
            log: env.logs().join(format!("{}.log", w.synced.source)),
            outputs: stamp.map(|s| s.summary).unwrap_or(Value::Null),
            error: None,
        });
    }
    if !to_run.is_empty() {
        outcomes.extend(run_stages(config, env, &to_run)?);
    }
    outcomes.sort_by_key(|o| SourceId::BUILD_ORDER.iter().position(|id| *id == o.stage));
    Ok(outcomes)
}

fn run_stages(config: &Config, env: &BuildEnv, work: &[&Work]) -> anyhow::Result<Vec<Outcome>> {
    let registry = Registry::global();
    if registry.was_interrupted() {
        return Err(Interrupted.into());
    }
    std::fs::create_dir_all(env.logs())
        .with_context(|| format!("creating {}", env.logs().display()))?;
    let client = if env.serial {
        None
    } else {
        Some(jobserver::Client::new(env.jobs).context("creating the make jobserver")?)
    };
    let share = (env.jobs / work.len().max(1)).max(1);
    let outcomes = Mutex::new(Vec::new());

    let run_one = |w: &Work| {
        let s = &w.synced;
        let started = Instant::now();
        let progress = Progress::new(s.source.name());
        let log = env.logs().join(format!("{}.log", s.source));
        // The stage's token: make's implicit slot.
        let mut extra = Vec::new();
        let token = client
            .as_ref()
            .map(|c| c.acquire().context("acquiring a job token"));
        let result = match token.transpose() {
            Err(e) => Err(e),
            Ok(_token) => {
                let jobs = match &client {
                    Some(c) => {
                        // Non-jobserver tools: what is free now, up to the share.
                        while 1 + extra.len() < share {
                            match c.try_acquire() {
                                Ok(Some(t)) => extra.push(t),
                                _ => break,
                            }
                        }
                        Jobs {
                            jobserver: true,
                            fixed: 1 + extra.len(),
                        }
                    }
                    None => Jobs {
                        jobserver: false,
                        fixed: env.jobs,
                    },
                };
                progress.step(format!("started ({})", log.display()));
                StageRun::new(
                    s.source.name(),
                    log.clone(),
                    &progress,
                    client.as_ref(),
                    &registry,
                )
                .map(|run| run.with_env(reproducible_env(s)))
                .and_then(|run| run_stage(config, env, w, &run, jobs))
            }
        };
        drop(extra);
        let duration_s = started.elapsed().as_secs_f64();
        let outcome = match result {
            Ok(outputs) => {
                progress.finish(format!("done in {duration_s:.1}s"));
                Outcome {
                    stage: s.source,
                    status: "ok",
                    reasons: w.decision.reasons.clone(),
                    duration_s,
                    log,
                    outputs,
                    error: None,
                }
            }
            Err(e) => {
                let cancelled = e.is::<Cancelled>() || e.is::<Interrupted>();
                progress.finish(if cancelled {
                    "stopped".to_string()
                } else {
                    format!("FAILED after {duration_s:.1}s")
                });
                if !cancelled && !env.keep_going {
                    registry.cancel_all();
                }
                Outcome {
                    stage: s.source,
                    status: if cancelled { "cancelled" } else { "failed" },
                    reasons: w.decision.reasons.clone(),
                    duration_s,
                    log,
                    outputs: Value::Null,
                    error: Some(format!("{e:#}")),
                }
            }
        };
        outcomes.lock().unwrap().push(outcome);
    };

    if env.serial {
        for w in work {
            if registry.is_cancelled() {
                break;
            }
            run_one(w);
        }
    } else {
        std::thread::scope(|scope| {
            for w in work {
                scope.spawn(|| run_one(w));
            }
        });
    }
    if registry.was_interrupted() {
        return Err(Interrupted.into());
    }
    Ok(outcomes.into_inner().unwrap())
}

/// One stage: forget its stamp, build, then record what it made.
fn run_stage(
    config: &Config,
    env: &BuildEnv,
    w: &Work,
    run: &StageRun<'_>,
    jobs: Jobs,
) -> anyhow::Result<Value> {
    let s = &w.synced;
    fingerprint::remove_stamp(&env.work_dir, s.source.name())?;
    for reason in &w.decision.reasons {
        run.note(&format!("runs because: {reason}"));
    }
    run.note(&format!(
        "stage {} at {} ({}), jobs: {}",
        s.source,
        s.sha,
        s.pin,
        if jobs.jobserver {
            format!("jobserver of {}", env.jobs)
        } else {
            format!("-j{}", jobs.fixed)
        }
    ));
    let built = match s.source {
        SourceId::KernelHost | SourceId::KernelGuest => kernel::build(config, env, s, run, jobs)?,
        SourceId::Qemu => qemu::build(config, env, s, run, jobs)?,
        SourceId::Ovmf => ovmf::build(config, env, s, run, jobs)?,
    };
    // build.sh's record of what was built: the short upstream SHA.
    let record = env
        .work_dir
        .join(format!("source-commit.{}", s.source.commit_file_suffix()));
    crate::fsutil::write_atomic(&record, format!("{}\n", short_sha(&s.sha)).as_bytes())?;
    let mut outputs = built.outputs;
    outputs.push(record);
    let stamp = Stamp {
        inputs: w.inputs.clone(),
        outputs: fingerprint::record_outputs(&outputs)?,
        summary: built.summary.clone(),
    };
    fingerprint::write_stamp(&env.work_dir, s.source.name(), &stamp)?;
    Ok(built.summary)
}

/// Timestamps and names the builds embed, fixed to the pinned commit so a
/// clean rebuild of the same inputs can give the same bytes: the standard
/// SOURCE_DATE_EPOCH, and kbuild's own variables (which otherwise put the
/// build time, user and host into the kernel).
fn reproducible_env(s: &Synced) -> BTreeMap<String, std::ffi::OsString> {
    let epoch = s.commit_time.max(0);
    BTreeMap::from([
        ("SOURCE_DATE_EPOCH".to_string(), epoch.to_string().into()),
        (
            "KBUILD_BUILD_TIMESTAMP".to_string(),
            format!("@{epoch}").into(),
        ),
        ("KBUILD_BUILD_USER".to_string(), "snp-build".into()),
        ("KBUILD_BUILD_HOST".to_string(), "snp-build".into()),
    ])
}

/// The short upstream SHA used in LOCALVERSION and `source-commit.*`
/// (12 digits, the kernel's own abbreviation length).
pub fn short_sha(sha: &str) -> &str {
    &sha[..12.min(sha.len())]
}
