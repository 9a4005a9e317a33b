//! Where a build's time went, for `--timings` (modelled on `cargo build
//! --timings`): each stage's phases on one clock (fetch, configure,
//! compile, package, and the release), the wait for a job slot, and,
//! sampled while the build runs, the compile jobs running and the
//! machine's CPU use.
//!
//! Guarantees:
//! - Recording is always on and costs a mutex per phase change (a handful
//!   per stage), so the code that marks phases needs no flag; sampling
//!   (a thread reading `/proc` every [`SAMPLE_EVERY`]) runs only for
//!   `--timings`.
//! - Every time is seconds since the build started, so the JSON and the
//!   HTML are comparable between runs and machines.
//! - [`html::render`] makes one self-contained file: inline CSS and SVG, no
//!   script, no font or image fetched.

pub mod html;
mod sample;

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use sample::Sampler;

/// How often `--timings` samples jobs and CPU.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// One phase of a stage: `[start_s, end_s)` on the build's clock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Phase {
    pub name: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// One stage (or the release) on the build's clock.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageTiming {
    pub stage: String,
    /// `ok`, `skipped`, `failed` or `cancelled`; empty while it runs.
    pub status: String,
    /// Why it was skipped or run (the plan's reasons).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// When it was queued for a job slot, and when it got one.
    pub queued_s: Option<f64>,
    pub start_s: Option<f64>,
    pub end_s: Option<f64>,
    pub phases: Vec<Phase>,
}

/// What the sampler saw at one instant.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    pub t_s: f64,
    /// Compiler, assembler and linker processes running under snp-build.
    pub jobs: u32,
    /// The machine's CPU use since the previous sample, 0.0 to 1.0.
    pub cpu: f64,
}

/// Everything `--timings` writes (`logs/timings.json`, and the HTML).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub snp_build_version: String,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started_at: String,
    pub wall_s: f64,
    /// The job budget (`-j`) and the machine's cores.
    pub jobs: usize,
    pub cores: usize,
    pub serial: bool,
    /// In build order; the release last.
    pub stages: Vec<StageTiming>,
    pub samples: Vec<Sample>,
}

struct Recorder {
    epoch: Instant,
    started_at: String,
    stages: BTreeMap<String, StageTiming>,
    order: Vec<String>,
}

fn recorder() -> &'static Mutex<Recorder> {
    static RECORDER: OnceLock<Mutex<Recorder>> = OnceLock::new();
    RECORDER.get_or_init(|| {
        Mutex::new(Recorder {
            epoch: Instant::now(),
            started_at: crate::fsutil::utc_rfc3339(std::time::SystemTime::now()),
            stages: BTreeMap::new(),
            order: Vec::new(),
        })
    })
}

/// Starts the build's clock (the first call wins: a process builds once).
pub fn start() {
    let _ = recorder();
}

/// Seconds since the build started.
pub fn now() -> f64 {
    recorder()
        .lock()
        .map(|r| r.epoch.elapsed().as_secs_f64())
        .unwrap_or_default()
}

fn with_stage(stage: &str, f: impl FnOnce(&mut StageTiming, f64)) {
    if let Ok(mut r) = recorder().lock() {
        let t = r.epoch.elapsed().as_secs_f64();
        if !r.stages.contains_key(stage) {
            r.order.push(stage.to_string());
        }
        let entry = r
            .stages
            .entry(stage.to_string())
            .or_insert_with(|| StageTiming {
                stage: stage.to_string(),
                ..StageTiming::default()
            });
        f(entry, t);
    }
}

/// `stage` enters `phase` now; the phase it was in ends.
pub fn phase(stage: &str, phase: &str) {
    with_stage(stage, |s, t| {
        close_open_phase(s, t);
        s.phases.push(Phase {
            name: phase.to_string(),
            start_s: t,
            end_s: f64::NAN,
        });
    });
}

/// The phase `stage` is in ends now (it waits, or is done).
pub fn pause(stage: &str) {
    with_stage(stage, close_open_phase);
}

fn close_open_phase(s: &mut StageTiming, t: f64) {
    if let Some(last) = s.phases.last_mut()
        && last.end_s.is_nan()
    {
        last.end_s = t;
    }
}

/// `stage` waits for a job slot from now.
pub fn queued(stage: &str) {
    with_stage(stage, |s, t| s.queued_s = Some(t));
}

/// `stage` got its slot and runs from now.
pub fn started(stage: &str) {
    with_stage(stage, |s, t| s.start_s = Some(t));
}

/// `stage` ended now with `status`.
pub fn finished(stage: &str, status: &str) {
    with_stage(stage, |s, t| {
        close_open_phase(s, t);
        s.end_s = Some(t);
        s.status = status.to_string();
    });
}

/// `stage` was not run: it gets a row marked skipped, with why.
pub fn skipped(stage: &str, reasons: Vec<String>) {
    with_stage(stage, |s, _| {
        s.status = "skipped".into();
        s.reasons = reasons;
    });
}

/// The phases `stage` went through so far (for `--json`).
pub fn phases(stage: &str) -> Vec<Phase> {
    recorder()
        .lock()
        .ok()
        .and_then(|r| r.stages.get(stage).map(|s| s.phases.clone()))
        .unwrap_or_default()
}

/// Everything recorded so far, stages in the order given (then any other
/// in the order first seen), with `samples`.
pub fn report(order: &[&str], jobs: usize, serial: bool, samples: Vec<Sample>) -> Report {
    let Ok(r) = recorder().lock() else {
        return Report::default();
    };
    let wall_s = r.epoch.elapsed().as_secs_f64();
    let mut names: Vec<&str> = order.to_vec();
    for name in &r.order {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let stages = names
        .iter()
        .filter_map(|n| r.stages.get(*n).cloned())
        .map(|mut s| {
            // A phase still open (a stage cut short) ends with the report.
            for p in &mut s.phases {
                if p.end_s.is_nan() {
                    p.end_s = wall_s;
                }
            }
            s
        })
        .collect();
    Report {
        schema_version: 1,
        snp_build_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: r.started_at.clone(),
        wall_s,
        jobs,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        serial,
        stages,
        samples,
    }
}

/// Writes `logs/timings.json` and `logs/timings.html`; returns the HTML's path.
pub fn write(report: &Report, logs: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let json = logs.join("timings.json");
    let html = logs.join("timings.html");
    let mut bytes = serde_json::to_vec_pretty(report)?;
    bytes.push(b'\n');
    crate::fsutil::write_atomic(&json, &bytes)?;
    crate::fsutil::write_atomic(&html, html::render(report).as_bytes())?;
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_close_each_other_and_the_stage_end_closes_the_last() {
        phase("t-stage", "configure");
        phase("t-stage", "compile");
        finished("t-stage", "ok");
        skipped("t-other", vec!["up to date".into()]);
        let r = report(&["t-other", "t-stage"], 2, false, Vec::new());
        let names: Vec<&str> = r.stages.iter().map(|s| s.stage.as_str()).collect();
        assert!(names.starts_with(&["t-other", "t-stage"]), "{names:?}");
        let s = &r.stages[1];
        assert_eq!(s.phases.len(), 2);
        assert_eq!(s.phases[0].end_s, s.phases[1].start_s);
        assert!(s.phases[1].end_s <= s.end_s.unwrap());
        assert_eq!(r.stages[0].status, "skipped");
    }
}
