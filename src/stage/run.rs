//! Running stages side by side under one job budget.
//!
//! How the budget works (`-j N`): a GNU make jobserver with N tokens is
//! shared by every running stage. A stage holds one token while it runs
//! (that is make's implicit slot, which every make has besides the
//! jobserver's tokens), so at most N stages run at once and the compile
//! jobs of all makes together never exceed N. Tools that are not jobserver
//! clients (QEMU's ninja before 1.13, edk2's `build -n`) get `-jN`/`-nN`,
//! and each of their compiles takes a token first, in the stage's `gcc`
//! wrapper; the stage's own slot is lent to them meanwhile
//! ([`crate::exec::Budget::Tokens`]), never to a stage waiting to start
//! (at most N stages run at once). So every stage can use every free
//! core, and a core freed by one stage goes to whichever compile of any
//! stage asks next: no fixed share outlives the stages it was split with.
//! `--serial` runs one stage at a time, `-jN` each, in build order.
//!
//! **Longest first.** Stages queue for their job slot in order of how long
//! they are expected to run: the `duration_s` their last stamp recorded,
//! else their component's estimate ([`Component::time_estimate_s`]). The
//! critical path starts first; the rest fill the budget behind it.
//!
//! Guarantees:
//! - A stage's stamp is removed when it starts and written (atomically)
//!   only after it succeeded, with its typed outputs and the hash of every
//!   output file; build.sh's `source-commit.<table>` is written with it.
//! - A stage that fails stops the others (their process groups are
//!   signalled) unless `--keep-going`; finished stages are never undone.
//! - Outcomes come back in build order, whatever order stages finished in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::component::{BuildEnv, Built, Component, Job, Jobs};
use crate::exec::{Cancelled, Interrupted, Registry, StageRun};
use crate::fingerprint::{self, Decision, Fingerprint, Reason, Stamp};
use crate::progress::Progress;
use crate::source::Synced;

/// One stage of a build: its component, source, fingerprint and decision.
pub struct Work<'a> {
    pub component: &'a dyn Component,
    pub synced: Synced,
    pub inputs: Fingerprint,
    pub decision: Decision,
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "StageStatus")]
pub enum Status {
    /// Built now.
    Ok,
    /// Up to date: its recorded outputs stand.
    Skipped,
    /// Pulled from the shared cache instead of built.
    Pulled,
    Failed,
    /// Stopped because another stage failed, or by Ctrl-C.
    Cancelled,
}

/// The result of one stage, as reported in `--json` and used by the
/// release.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    pub stage: &'static str,
    pub status: Status,
    /// Why it ran, or why it was skipped.
    pub reasons: Vec<Reason>,
    /// From when it got its job slot and started running to its end.
    pub duration_s: f64,
    /// How long it waited for a job slot before that.
    pub wait_s: f64,
    /// Its phases (fetch, configure, compile, package) on the build's
    /// clock, as `--timings` draws them.
    pub phases: Vec<crate::timings::Phase>,
    pub log: PathBuf,
    /// Where its outputs came from when it was pulled (status `pulled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulled: Option<PulledFrom>,
    /// Its typed outputs (built now, or recorded by its stamp).
    pub outputs: Option<Built>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A pull, in the `--json` summary.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PulledFrom {
    /// The cache remote (`oci://HOST/NAMESPACE`).
    pub from: String,
    /// The artifact's tag (`fp-<SHA-256 of the shared inputs>`).
    pub tag: String,
    /// Bytes pulled (the record and every file).
    pub bytes: u64,
}

/// Outcomes as the stamps of `components` record them (for planning a
/// release without building).
pub fn recorded_outcomes(env: &BuildEnv, components: &[&dyn Component]) -> Vec<Outcome> {
    components
        .iter()
        .filter_map(|c| {
            let name = c.spec().name;
            Some(Outcome {
                stage: name,
                status: Status::Skipped,
                reasons: vec![Reason::UpToDate],
                duration_s: 0.0,
                wait_s: 0.0,
                phases: Vec::new(),
                log: env.work.log(name),
                pulled: None,
                outputs: Some(c.recorded(&env.work)?),
                error: None,
            })
        })
        .collect()
}

/// Runs the stages of `work` that must run, skips the rest, and returns
/// every outcome in build order. Errors only for problems outside the
/// stages; a failed stage is an outcome (the caller decides the exit code).
pub fn run_all(env: &BuildEnv, work: &[Work<'_>]) -> anyhow::Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    let mut to_run = Vec::new();
    for w in work {
        if w.decision.run {
            to_run.push(w);
            continue;
        }
        let name = w.component.spec().name;
        crate::timings::skipped(
            name,
            w.decision.reasons.iter().map(ToString::to_string).collect(),
        );
        let pulled = w.decision.reasons.iter().find_map(|r| match r {
            Reason::Pulled { from, tag, bytes } => Some(PulledFrom {
                from: from.clone(),
                tag: tag.clone(),
                bytes: *bytes,
            }),
            _ => None,
        });
        // A pull said its own line when it finished.
        if pulled.is_none() {
            Progress::new(name).finish(format!(
                "skipped: {}",
                w.decision
                    .reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        outcomes.push(Outcome {
            stage: name,
            status: if pulled.is_some() {
                Status::Pulled
            } else {
                Status::Skipped
            },
            reasons: w.decision.reasons.clone(),
            duration_s: 0.0,
            wait_s: 0.0,
            phases: crate::timings::phases(name),
            log: env.work.log(name),
            pulled,
            outputs: w.component.recorded(&env.work),
            error: None,
        });
    }
    if !to_run.is_empty() {
        outcomes.extend(run_stages(env, &to_run)?);
    }
    let order: Vec<&str> = work.iter().map(|w| w.component.spec().name).collect();
    outcomes.sort_by_key(|o| order.iter().position(|n| *n == o.stage));
    Ok(outcomes)
}

fn run_stages(env: &BuildEnv, work: &[&Work<'_>]) -> anyhow::Result<Vec<Outcome>> {
    let registry = Registry::global();
    if registry.was_interrupted() {
        return Err(Interrupted.into());
    }
    let logs = env.work.logs();
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let client = if env.serial {
        None
    } else {
        Some(jobserver::Client::new(env.jobs).context("creating the make jobserver")?)
    };
    let outcomes = Mutex::new(Vec::new());
    // Each stamp's recorded running time, read once (before any stage
    // removes its stamp): the queue's order and the progress both use it.
    let recorded: BTreeMap<&str, f64> = work
        .iter()
        .filter_map(|w| {
            let name = w.component.spec().name;
            Some((name, fingerprint::recorded_duration(&env.work.stamp(name))?))
        })
        .collect();
    // Longest first: the queue for job slots, in expected-duration order.
    let order = longest_first(work, &recorded);
    tracing::debug!(
        "start order (longest expected first): {}",
        order
            .iter()
            .map(|(name, secs)| format!("{name} ~{secs:.0}s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let queue = SlotQueue::new(order.iter().map(|(n, _)| *n).collect(), env.jobs);

    let run_one = |w: &Work<'_>| {
        let name = w.component.spec().name;
        let queued = Instant::now();
        // Reset once the stage has its slot: waiting is not running.
        let mut started = queued;
        let progress = Progress::new(name);
        // How far it is follows the clock against this once it runs.
        let expected = recorded.get(name).copied();
        let log = env.work.log(name);
        crate::timings::queued(name);
        // The stage's token: make's implicit slot. It counts as running
        // until this closure ends.
        let mut _running = None;
        let token = client.as_ref().map(|c| {
            let (_turn, running) = queue.wait_turn(name);
            _running = Some(running);
            c.acquire().context("acquiring a job token")
        });
        let result = match token.transpose() {
            Err(e) => Err(e),
            // Stopped while it waited: nothing of it is touched (its
            // stamp and its last log stay).
            Ok(_) if registry.is_cancelled() => Err(Cancelled.into()),
            Ok(slot) => {
                started = Instant::now();
                crate::timings::started(name);
                progress.expect(expected);
                // Tools that are no jobserver client run at the full
                // width: their compiles take tokens (exec::Budget::Tokens).
                let jobs = Jobs {
                    jobserver: client.is_some(),
                    width: env.jobs,
                };
                progress.step(format!("started ({})", log.display()));
                keep_previous_log(&log);
                StageRun::new(name, log.clone(), &progress, client.as_ref(), &registry)
                    .map(|run| run.with_slot(slot).with_env(reproducible_env(&w.synced)))
                    .and_then(|run| run_stage(env, w, &run, jobs, started, expected))
            }
        };
        let duration_s = started.elapsed().as_secs_f64();
        let wait_s = started.duration_since(queued).as_secs_f64();
        if wait_s >= 0.1 {
            tracing::debug!(stage = name, "waited {wait_s:.1}s for a job slot");
        }
        crate::timings::finished(
            name,
            match &result {
                Ok(_) => "ok",
                Err(e) if e.is::<Cancelled>() || e.is::<Interrupted>() => "cancelled",
                Err(_) => "failed",
            },
        );
        let outcome = match result {
            Ok(outputs) => {
                progress.finish(format!("done in {duration_s:.1}s"));
                Outcome {
                    stage: name,
                    status: Status::Ok,
                    reasons: w.decision.reasons.clone(),
                    duration_s,
                    wait_s,
                    phases: crate::timings::phases(name),
                    log,
                    pulled: None,
                    outputs: Some(outputs),
                    error: None,
                }
            }
            Err(e) => {
                let cancelled = e.is::<Cancelled>() || e.is::<Interrupted>();
                progress.fail(if cancelled {
                    "stopped".to_string()
                } else {
                    format!("FAILED after {duration_s:.1}s")
                });
                if !cancelled && !env.keep_going {
                    registry.cancel_all();
                }
                Outcome {
                    stage: name,
                    status: if cancelled {
                        Status::Cancelled
                    } else {
                        Status::Failed
                    },
                    reasons: w.decision.reasons.clone(),
                    duration_s,
                    wait_s,
                    phases: crate::timings::phases(name),
                    log,
                    pulled: None,
                    outputs: None,
                    error: Some(format!("{e:#}")),
                }
            }
        };
        outcomes.lock().unwrap().push(outcome);
    };

    if env.serial {
        // Serial: build.sh's order (the total is the same in any order).
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
    env: &BuildEnv,
    w: &Work<'_>,
    run: &StageRun<'_>,
    jobs: Jobs,
    started: Instant,
    previous_duration: Option<f64>,
) -> anyhow::Result<Built> {
    let spec = w.component.spec();
    let s = &w.synced;
    let stamp_path = env.work.stamp(spec.name);
    fingerprint::remove_stamp(&stamp_path)?;
    for reason in &w.decision.reasons {
        run.note(&format!("runs because: {reason}"));
    }
    run.note(&format!(
        "stage {} at {} ({}), jobs: {}",
        spec.name,
        s.sha,
        s.pin,
        if jobs.jobserver {
            format!("jobserver of {}", env.jobs)
        } else {
            format!("-j{}", jobs.width)
        }
    ));
    let built = w.component.build(&Job {
        env,
        source: s,
        dir: env.work.stage(spec.name),
        run,
        jobs,
    })?;
    // build.sh's record of what was built: the short upstream SHA.
    let record = env.work.source_commit(spec.table);
    crate::fsutil::write_atomic(&record, format!("{}\n", s.built_name()).as_bytes())?;
    let mut outputs = w.component.output_files(&built);
    outputs.push(record);
    let stamp = Stamp {
        inputs: w.inputs.clone(),
        outputs: fingerprint::record_outputs(&outputs)?,
        summary: &built,
        duration_s: Some(kept_duration(
            started.elapsed().as_secs_f64(),
            previous_duration,
        )),
        source: Some(s.record()),
    };
    fingerprint::write_stamp(&stamp_path, &stamp)?;
    Ok(built)
}

/// The stages in the order they queue for a job slot: longest expected
/// first (the last stamp's `duration_s`, else the component's estimate);
/// ties keep build order.
fn longest_first(work: &[&Work<'_>], recorded: &BTreeMap<&str, f64>) -> Vec<(&'static str, f64)> {
    let mut order: Vec<(&'static str, f64)> = work
        .iter()
        .map(|w| {
            let name = w.component.spec().name;
            let expected = recorded
                .get(name)
                .copied()
                .unwrap_or_else(|| w.component.time_estimate_s());
            (name, expected)
        })
        .collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1));
    order
}

/// The order in which stages may ask the jobserver for their slot: a
/// stage waits until every stage ahead of it in the queue has its slot, so
/// tokens go to the longest stages first whatever order threads run in.
/// And at most `limit` (the `-j`) stages run at once: a stage that lends
/// its slot to its compiles (`exec::Budget::Tokens`) lends it to them, not
/// to a stage waiting to start, which would hold it (make's implicit
/// slot) for its whole run and starve the longest stage's compiles.
struct SlotQueue {
    state: Mutex<QueueState>,
    limit: usize,
    turn: std::sync::Condvar,
}

struct QueueState {
    waiting: Vec<&'static str>,
    running: usize,
}

impl SlotQueue {
    fn new(order: Vec<&'static str>, limit: usize) -> SlotQueue {
        SlotQueue {
            state: Mutex::new(QueueState {
                waiting: order,
                running: 0,
            }),
            limit: limit.max(1),
            turn: std::sync::Condvar::new(),
        }
    }

    /// Blocks until `stage` is first in line and fewer than `limit` stages
    /// run. The turn passes on when the returned [`Turn`] drops (after the
    /// slot is taken, or on any error or panic, so no stage behind it waits
    /// forever); the stage counts as running until its [`Running`] drops.
    fn wait_turn<'q>(&'q self, stage: &'q str) -> (Turn<'q>, Running<'q>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.waiting.first().is_some_and(|first| *first != stage)
            || state.running >= self.limit
        {
            state = self.turn.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.running += 1;
        (Turn { queue: self, stage }, Running { queue: self })
    }

    /// `stage` has its slot (or gave up): the next one's turn.
    fn done(&self, stage: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.waiting.retain(|s| *s != stage);
        self.turn.notify_all();
    }

    /// A stage ended: one more may start.
    fn ended(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.running -= 1;
        self.turn.notify_all();
    }
}

/// A stage's turn at the slot queue, passed on when dropped.
struct Turn<'q> {
    queue: &'q SlotQueue,
    stage: &'q str,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.queue.done(self.stage);
    }
}

/// A running stage, counted until dropped.
struct Running<'q> {
    queue: &'q SlotQueue,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.queue.ended();
    }
}

/// The running time a stamp keeps for the next build's order and
/// progress: this run's, unless it was under a quarter of the last one
/// (a forced run with nothing to do, an incremental one), which says
/// nothing about a real build of the stage.
fn kept_duration(this_run: f64, previous: Option<f64>) -> f64 {
    match previous {
        Some(previous) if this_run < previous / 4.0 => previous,
        _ => this_run,
    }
}

/// The previous run's log of a stage becomes `<stage>.log.1` (one kept),
/// so a rebuild never loses the log of the build before it.
fn keep_previous_log(log: &std::path::Path) {
    if log.is_file() {
        let mut previous = log.as_os_str().to_owned();
        previous.push(".1");
        if let Err(e) = std::fs::rename(log, &previous) {
            tracing::warn!("keeping the previous log {}: {e}", log.display());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::{SlotQueue, kept_duration};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn stages_start_in_queue_order_and_at_most_limit_run_at_once() {
        let queue = SlotQueue::new(vec!["a", "b", "c", "d"], 2);
        let started = Mutex::new(Vec::new());
        let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for name in ["d", "c", "b", "a"] {
                let (queue, started, now, peak) = (&queue, &started, &now, &peak);
                scope.spawn(move || {
                    let (turn, running) = queue.wait_turn(name);
                    started.lock().unwrap().push(name);
                    drop(turn);
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    now.fetch_sub(1, Ordering::SeqCst);
                    drop(running);
                });
            }
        });
        assert_eq!(*started.lock().unwrap(), ["a", "b", "c", "d"]);
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_run_with_nothing_to_do_keeps_the_real_duration() {
        assert_eq!(kept_duration(0.02, Some(40.0)), 40.0);
        assert_eq!(kept_duration(30.0, Some(40.0)), 30.0);
        assert_eq!(kept_duration(50.0, Some(40.0)), 50.0);
        assert_eq!(kept_duration(5.0, None), 5.0);
    }
}
