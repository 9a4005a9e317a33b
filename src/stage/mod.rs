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

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::component::SourceId;
use crate::config::{Config, PackageFormat};
use crate::exec::{Cancelled, Cmd, Interrupted, Registry, StageRun};
use crate::output::Progress;
use crate::source::Synced;

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
    pub verbose: bool,
}

impl BuildEnv {
    pub fn logs(&self) -> PathBuf {
        self.work_dir.join("logs")
    }

    /// `<work>/<stage>`: the stage's own directory (its tree is `src/`).
    pub fn stage_dir(&self, id: SourceId) -> PathBuf {
        self.work_dir.join(id.name())
    }
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
    /// `ok`, `failed` or `cancelled`.
    pub status: &'static str,
    pub duration_s: f64,
    pub log: PathBuf,
    pub outputs: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs the stages for `synced` sources and returns their outcomes in
/// build order. Errors only for problems outside the stages; a failed
/// stage is an outcome (the caller decides the exit code).
pub fn run_all(config: &Config, env: &BuildEnv, synced: &[Synced]) -> anyhow::Result<Vec<Outcome>> {
    let registry = Registry::global();
    std::fs::create_dir_all(env.logs())
        .with_context(|| format!("creating {}", env.logs().display()))?;
    let client = if env.serial {
        None
    } else {
        Some(jobserver::Client::new(env.jobs).context("creating the make jobserver")?)
    };
    let share = (env.jobs / synced.len().max(1)).max(1);
    let outcomes = Mutex::new(Vec::new());

    let run_one = |s: &Synced| {
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
                    env.verbose,
                )
                .and_then(|run| run_stage(config, env, s, &run, jobs))
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
        for s in synced {
            if registry.is_cancelled() {
                break;
            }
            run_one(s);
        }
    } else {
        std::thread::scope(|scope| {
            for s in synced {
                scope.spawn(|| run_one(s));
            }
        });
    }
    if registry.was_interrupted() {
        return Err(Interrupted.into());
    }
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|o| SourceId::BUILD_ORDER.iter().position(|id| *id == o.stage));
    Ok(outcomes)
}

fn run_stage(
    config: &Config,
    env: &BuildEnv,
    s: &Synced,
    run: &StageRun<'_>,
    jobs: Jobs,
) -> anyhow::Result<Value> {
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
    let outputs = match s.source {
        SourceId::KernelHost | SourceId::KernelGuest => kernel::build(config, env, s, run, jobs)?,
        SourceId::Qemu => qemu::build(config, env, s, run, jobs)?,
        SourceId::Ovmf => ovmf::build(config, env, s, run, jobs)?,
    };
    // build.sh's record of what was built: the short upstream SHA.
    let record = env
        .work_dir
        .join(format!("source-commit.{}", s.source.commit_file_suffix()));
    crate::fsutil::write_atomic(&record, format!("{}\n", short_sha(&s.sha)).as_bytes())?;
    Ok(outputs)
}

/// The short upstream SHA used in LOCALVERSION and `source-commit.*`
/// (12 digits, the kernel's own abbreviation length).
pub fn short_sha(sha: &str) -> &str {
    &sha[..12.min(sha.len())]
}
