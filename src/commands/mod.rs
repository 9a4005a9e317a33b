//! The commands, each a function from a plain request (no clap types) to a
//! typed result the CLI renders: the build ([`build`]), `plan`
//! ([`plan`]), `fetch`/`update` ([`fetch`]), `doctor` ([`doctor`]),
//! `clean` ([`clean`]), and the pin file chores ([`pins`]); and the host
//! admin's commands on a built release, which need no pin file:
//! `install`/`uninstall` ([`install`]) and `verify` ([`verify`]).
//!
//! Guarantees:
//! - Each command that reads the pin file validates it against the
//!   registry before anything else, so a bad file is reported (exit 2)
//!   before any work.
//! - They loop over the configured components; none names one.
//! - Never: parses a command line, prints JSON, or picks an exit code.

pub mod build;
pub mod clean;
pub mod decide;
pub mod doctor;
pub mod fetch;
pub mod install;
pub mod package;
pub mod pins;
pub mod plan;
pub mod settle;
pub mod stacks;
pub mod support;
pub mod verify;

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
    /// `--cache-remote`, `--no-cache-remote`, `--cache-remote-required`.
    pub cache: crate::config::cache::CacheRequest,
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
        cache: cache_policy(stack, &req.cache)?,
    })
}

/// The cache policy: the pin file's `[cache]`, then the machine files,
/// then the command line (see `config::cache`).
fn cache_policy(
    stack: &Stack,
    req: &crate::config::cache::CacheRequest,
) -> anyhow::Result<Option<crate::config::cache::CachePolicy>> {
    use crate::config::cache;
    // The pin file first: the machine's own files win over it.
    let mut layers = vec![(stack.file.origin.display_name(), stack.build.cache.clone())];
    for file in cache::machine_files() {
        let table = cache::read_machine_file(&file)?;
        layers.push((file.display().to_string(), table));
    }
    Ok(cache::settle(&layers, req)?)
}

/// Where a release goes: `--output` (made absolute) and `--date` (checked;
/// default today), and the time its files carry.
#[derive(Debug, Clone)]
pub struct ReleaseTarget {
    pub output: PathBuf,
    pub date: String,
    /// `SOURCE_DATE_EPOCH`, checked here so a bad value stops nothing late.
    pub source_date_epoch: Option<u64>,
    /// The key that signs the release, opened (password asked) up front.
    pub signer: Option<std::sync::Arc<crate::signing::Signer>>,
    /// The key id the release should be signed by (the signer's; for
    /// `plan`, read from the key's `.pub` without opening the key).
    pub sign_key_id: Option<String>,
    /// The snp-build binary the release carries ([`installer_binary`]).
    pub installer: Option<PathBuf>,
}

/// Where the signing key comes from: `--sign PATH`, else
/// `SNP_BUILD_SIGNING_KEY`, else `[release] signing-key`.
pub fn signing_key_path(flag: Option<&Path>, stack: &crate::stage::Stack) -> Option<PathBuf> {
    flag.map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os(crate::signing::KEY_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| stack.build.signing_key.clone())
}

/// The environment variable that overrides `[release] installer`.
pub const INSTALLER_ENV: &str = "SNP_BUILD_INSTALLER";

/// The binary a release carries as `bin/snp-build`: `SNP_BUILD_INSTALLER`,
/// else `[release] installer`, else the running snp-build. A named file
/// that is not one is refused now, before any work (exit 2).
pub fn installer_binary(stack: &crate::stage::Stack) -> anyhow::Result<Option<PathBuf>> {
    use crate::config::InstallerBinary;
    let (choice, from) = match std::env::var(INSTALLER_ENV) {
        Ok(v) if !v.is_empty() => (
            InstallerBinary::parse(&v, Path::new("")),
            INSTALLER_ENV.to_string(),
        ),
        _ => (
            stack.build.installer.clone(),
            format!(
                "[release] installer in {}",
                stack.file.origin.display_name()
            ),
        ),
    };
    match choice {
        InstallerBinary::Omitted => Ok(None),
        InstallerBinary::Running => std::env::current_exe()
            .map(Some)
            .context("finding the running snp-build, which the release carries as bin/snp-build"),
        InstallerBinary::File(path) => {
            let path = std::path::absolute(&path).unwrap_or(path);
            if path.is_file() {
                Ok(Some(path))
            } else {
                Err(UsageError::new(format!(
                    "{from}: {}: no such file",
                    path.display()
                ))
                .help("name an snp-build binary (`cargo xtask dist` makes a portable one), `self` for this one, or `none` for a release without bin/snp-build")
                .into())
            }
        }
    }
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
            signer: None,
            sign_key_id: None,
            installer: None,
        })
    }

    /// Carries `installer` as the release's `bin/snp-build`.
    pub fn with_installer(mut self, installer: Option<PathBuf>) -> ReleaseTarget {
        self.installer = installer;
        self
    }

    /// Opens the signing key (asking for its password now, before any
    /// work).
    pub fn sign_with(mut self, key: Option<&Path>) -> anyhow::Result<ReleaseTarget> {
        if let Some(path) = key {
            let signer = crate::signing::Signer::load(path)?;
            self.sign_key_id = Some(signer.key_id());
            self.signer = Some(std::sync::Arc::new(signer));
        }
        Ok(self)
    }

    /// The key id `plan` expects, from the key's `.pub` (the secret key
    /// is not opened).
    pub fn expect_signed_by(mut self, key: Option<&Path>) -> ReleaseTarget {
        self.sign_key_id = key
            .and_then(|k| crate::signing::TrustedKey::load(&crate::signing::pub_path(k)).ok())
            .map(|t| crate::signing::key_id(&t.key));
        self
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
