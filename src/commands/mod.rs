//! The commands, each a function from a plain request (no clap types) to a
//! typed result the CLI renders: the build ([`build`]), `plan`
//! ([`plan`]), `fetch`/`update` ([`fetch`]), `doctor` ([`doctor`]),
//! `clean` ([`clean`]), and the pin file chores ([`pins`]).
//!
//! Guarantees:
//! - Each validates the pin file against the registry before anything
//!   else, so a bad file is reported (exit 2) before any work.
//! - They loop over the configured components; none names one.
//! - Never: parses a command line, prints JSON, or picks an exit code.

pub mod build;
pub mod clean;
pub mod doctor;
pub mod fetch;
pub mod package;
pub mod pins;
pub mod plan;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::PinFile;
use crate::error::UsageError;
use crate::host::PackageFormat;
use crate::stage::{BuildEnv, Force, Registry, Stack};
use crate::workdir::WorkDir;

/// The options every command accepts (`--config`, `--work-dir`, ...).
#[derive(Debug, Clone)]
pub struct Globals {
    pub config: Option<PathBuf>,
    pub work_dir: PathBuf,
    /// The install prefix, made absolute here.
    pub install: PathBuf,
    /// `-j`; `None`: the number of cores.
    pub jobs: Option<usize>,
}

/// Loads the pin file (`--config`, `./stable-commits.toml` or the
/// embedded default) and validates it against `registry`.
pub fn load(registry: &Registry, config: Option<&Path>) -> anyhow::Result<Stack> {
    Ok(registry.configure(PinFile::load(config)?)?)
}

/// How a build or plan runs, beyond the pin file.
#[derive(Debug, Clone, Default)]
pub struct EnvRequest {
    /// `--force[=STAGES]`: `Some(empty)` forces every stage.
    pub force: Option<Vec<String>>,
    pub clean: bool,
    pub serial: bool,
    pub keep_going: bool,
    pub package_format: Option<PackageFormat>,
}

/// The largest job budget: make's jobserver keeps one byte per token in a
/// pipe (64 KiB on Linux), and no build box has more cores than this.
pub const MAX_JOBS: usize = 4096;

/// Everything the stages share, from the command line and the pin file.
pub fn build_env(globals: &Globals, stack: &Stack, req: &EnvRequest) -> anyhow::Result<BuildEnv> {
    // A bare --force arrives as one empty name: it means every stage.
    let force = match &req.force {
        None => Force::None,
        Some(names) => {
            let names: Vec<String> = names.iter().filter(|n| !n.is_empty()).cloned().collect();
            stack.check_stage_names(&names, crate::release::STAGE)?;
            if names.is_empty() {
                Force::All
            } else {
                Force::Stages(names)
            }
        }
    };
    let install = std::path::absolute(&globals.install)
        .with_context(|| format!("resolving --install {}", globals.install.display()))?;
    let knob = req.package_format.unwrap_or(stack.build.package_format);
    let mut jobs = globals.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if jobs > MAX_JOBS {
        tracing::warn!(
            "-j {jobs} is more than the job server can hold (its tokens live in a pipe): using -j {MAX_JOBS}"
        );
        jobs = MAX_JOBS;
    }
    Ok(BuildEnv {
        work: WorkDir::new(&globals.work_dir)?,
        install,
        jobs,
        serial: req.serial,
        keep_going: req.keep_going,
        package_format: crate::host::package_format(knob, Path::new(crate::host::OS_RELEASE)),
        launcher: stack.build.compiler_launcher.clone(),
        force,
        clean: req.clean,
    })
}

/// Where a release goes: `--output` (made absolute) and `--date` (checked;
/// default today), and the time its files carry.
#[derive(Debug, Clone)]
pub struct ReleaseTarget {
    pub output: PathBuf,
    pub date: String,
    /// `SOURCE_DATE_EPOCH`, checked here so a bad value stops nothing late.
    pub source_date_epoch: Option<u64>,
}

impl ReleaseTarget {
    /// Checks `--output` and `--date` (no side effect: see
    /// [`ReleaseTarget::check_writable`]).
    pub fn new(output: &Path, date: Option<&str>) -> anyhow::Result<ReleaseTarget> {
        let output = std::path::absolute(output)
            .with_context(|| format!("resolving --output {}", output.display()))?;
        if output.exists() && !output.is_dir() {
            return Err(UsageError::new(format!(
                "--output {} is not a directory",
                output.display()
            ))
            .help("name the directory the release and its tarball go into")
            .into());
        }
        let date = match date {
            Some(d) => {
                crate::release::check_date(d)?;
                d.to_string()
            }
            None => crate::fsutil::utc_today(),
        };
        Ok(ReleaseTarget {
            output,
            date,
            source_date_epoch: crate::release::source_date_epoch()?,
        })
    }

    /// Makes `--output` and writes a file into it, so a build never runs
    /// only to fail at its end: a path under a file, a read-only disk or a
    /// directory without write permission is refused here, named.
    pub fn check_writable(&self) -> anyhow::Result<()> {
        let refuse = |e: std::io::Error| -> anyhow::Error {
            UsageError::new(format!(
                "--output {}: the release cannot be written there: {e}",
                self.output.display()
            ))
            .help("choose a writable directory with --output")
            .into()
        };
        std::fs::create_dir_all(&self.output).map_err(refuse)?;
        tempfile::NamedTempFile::new_in(&self.output)
            .map(drop)
            .map_err(refuse)
    }
}
