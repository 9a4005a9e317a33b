//! `snp-build doctor`: can this machine build the selected stages (the
//! default), or run SNP guests (`--host`)?

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Globals;
use crate::error::UsageError;
use crate::host::doctor::{PreflightFailed, Report};
use crate::host::preflight::{Env, check_build};
use crate::host::snp::{HostReport, ReleaseFacts};
use crate::release::manifest::Manifest;
use crate::stage::kernel::{self, Kernel};
use crate::stage::{Registry, Selection};

/// What `snp-build doctor` was asked.
#[derive(Debug, Clone, Default)]
pub struct DoctorRequest {
    pub host: bool,
    pub sysroot: Option<PathBuf>,
    pub release: Option<PathBuf>,
    pub components: Vec<String>,
    /// Install the packages of what is missing first (`--fix`).
    pub fix: bool,
}

/// The report (its JSON document).
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Doctor {
    Build(Report),
    Host(HostReport),
}

/// What `doctor --host` reads of a release's `manifest.json` (nothing
/// from a file that is not one).
fn release_facts(dir: &Path) -> ReleaseFacts {
    let Ok(manifest) = Manifest::read(dir) else {
        return ReleaseFacts::default();
    };
    let host = manifest.section::<kernel::Manifest>(kernel::spec(Kernel::Host).manifest);
    ReleaseFacts {
        host_kernel_release: host.map(|k| k.release),
        pins: manifest.sources.into_values().map(|s| s.pin).collect(),
        vmsa_mode: manifest.measurement.map(|m| m.default.vmsa_mode),
    }
}

/// `snp-build doctor [--host ...] [--fix] [COMPONENT...]`: exactly the
/// build's preflight checks for the selected stages (none named: every
/// source the pin file pins), or the SNP host checks. With `--fix`, the
/// packages of what is missing are installed first (the report's install
/// line, after the package lists are refreshed) and the checks run again.
pub fn doctor(
    registry: &Registry,
    globals: &Globals,
    req: &DoctorRequest,
) -> anyhow::Result<Doctor> {
    if req.host {
        if !req.components.is_empty() {
            return Err(UsageError::new(format!(
                "`doctor --host` checks this machine as an SNP host and takes no components (got `{}`)",
                req.components.join(" ")
            ))
            .help("run `snp-build doctor [COMPONENT...]` for the build checks")
            .into());
        }
        let report = crate::host::snp::command(
            req.sysroot.as_deref(),
            req.release.as_deref(),
            &release_facts,
        )?;
        return Ok(Doctor::Host(report));
    }
    let selection = Selection::parse(&req.components, registry)?;
    let stack = super::load(registry, globals.config.as_deref())?;
    let components = stack.select(&selection)?;
    let env = Env::system();
    let format = crate::host::package_format(stack.build.package_format, &env.os_release);
    let needs: Vec<_> = components.iter().map(|c| c.needs(format)).collect();
    let check = || {
        let mut report = check_build(&needs, format, Path::new(&globals.work_dir), &env);
        // The compiler launcher's servers, when it has some (distcc, icecc).
        if let Some(launcher) = &stack.build.compiler_launcher {
            let checks = crate::host::launcher::checks(launcher);
            report.ready &= checks
                .iter()
                .all(|c| c.status == crate::host::doctor::Status::Ok);
            report.checks.extend(checks);
        }
        report
    };
    let mut report = check();
    if req.fix {
        let fix = crate::host::packages::fix(report.distro, &report.packages());
        if fix.packages.is_empty() {
            tracing::info!("--fix: no package is missing");
        }
        // What an install brought is looked for again, from scratch.
        if !fix.commands.is_empty() {
            report = check();
        }
        report = report.after_fix(fix);
    }
    if !report.ready {
        return Err(PreflightFailed { report }.into());
    }
    tracing::info!("{}", report.render().trim_end());
    tracing::info!("everything the selected stages need is here");
    Ok(Doctor::Build(report))
}
