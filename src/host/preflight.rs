//! The build checks: every tool the selected stages need (merged, with the
//! highest minimum version any of them asks), the stages' own checks (a
//! kernel's base config), free disk space in the work dir against the
//! stages' estimates, cores and memory (for information).
//!
//! Each stage's needs come from its component ([`StageNeeds`]); this file
//! knows no component. The disk estimates are rough on purpose (each
//! component documents its own), which is why a shortfall is `low` and
//! does not block. Cheap and read-only: no network, nothing written; the
//! only subprocesses are version queries of tools with a minimum version
//! and one `python3` import check.

use std::path::{Path, PathBuf};

use super::doctor::{Check, PreflightFailed, Report, Status};
use super::{Distro, PackageFormat};
use crate::progress::human_bytes;
use crate::tools::probe::{ProbeEnv, Probed, probe};
use crate::tools::{Requirement, compare_versions};

const GIB: u64 = 1 << 30;

/// What one stage needs from the build host, as its component says.
#[derive(Debug, Clone)]
pub struct StageNeeds {
    /// The stage (`kernel-host`), for the disk line.
    pub stage: String,
    /// Who asks for its tools in the table (`kernel` for both kernels,
    /// which share one list).
    pub group: String,
    pub tools: Vec<Requirement>,
    /// Checks of its own (a kernel's base config).
    pub checks: Vec<Check>,
    /// Its rough disk use (see the module doc).
    pub disk_gib: u64,
}

/// Where the checks look; [`Env::system`] is this machine.
#[derive(Debug, Clone)]
pub struct Env {
    /// Decides apt-get or dnf, and `package-format = "auto"`.
    pub os_release: PathBuf,
    pub probe: ProbeEnv,
}

impl Env {
    pub fn system() -> Env {
        Env {
            os_release: PathBuf::from(super::OS_RELEASE),
            probe: ProbeEnv::system(),
        }
    }
}

/// The build's preflight: the checks of [`check_build`] on this machine;
/// an error ([`PreflightFailed`], exit 4, its message the whole table)
/// when something blocks.
pub fn preflight(
    needs: &[StageNeeds],
    format: PackageFormat,
    work_dir: &Path,
) -> anyhow::Result<Report> {
    let report = check_build(needs, format, work_dir, &Env::system());
    if report.ready {
        Ok(report)
    } else {
        Err(PreflightFailed { report }.into())
    }
}

/// Every check for the stages of `needs` (whose tool lists are for the
/// package format `format`), as seen through `env`.
pub fn check_build(
    needs: &[StageNeeds],
    format: PackageFormat,
    work_dir: &Path,
    env: &Env,
) -> Report {
    let distro = Distro::detect(&env.os_release);
    let mut checks: Vec<Check> = needed_tools(needs)
        .iter()
        .map(|n| tool_check(n, &env.probe, distro))
        .collect();
    checks.extend(needs.iter().flat_map(|n| n.checks.iter().cloned()));
    checks.push(disk_check(needs, work_dir));
    checks.push(cores_check());
    checks.push(memory_check(Path::new("/proc/meminfo")));
    Report::new(checks, format, distro)
}

// ---------------------------------------------------------------------------
// Tools.

/// One tool, with the highest minimum any stage asks and who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Needed {
    req: Requirement,
    by: Vec<String>,
}

/// The tools of all stages, merged, in first-asked order.
fn needed_tools(needs: &[StageNeeds]) -> Vec<Needed> {
    let mut all: Vec<Needed> = Vec::new();
    for stage in needs {
        let by = &stage.group;
        for req in &stage.tools {
            match all.iter_mut().find(|n| n.req.tool == req.tool) {
                Some(n) => {
                    if !n.by.contains(by) {
                        n.by.push(by.clone());
                    }
                    n.req.min_version = higher(n.req.min_version.take(), req.min_version.clone());
                }
                None => all.push(Needed {
                    req: req.clone(),
                    by: vec![by.clone()],
                }),
            }
        }
    }
    all
}

fn higher(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if compare_versions(&a, &b) == std::cmp::Ordering::Less {
            b
        } else {
            a
        }),
        (a, b) => a.or(b),
    }
}

fn tool_check(n: &Needed, env: &ProbeEnv, distro: Distro) -> Check {
    let by = format!("by {}", n.by.join(", "));
    let needed = match &n.req.min_version {
        Some(v) => format!(">= {v}, {by}"),
        None => by,
    };
    let (status, found) = match probe(&n.req, env) {
        Probed::Ok { found } => (Status::Ok, found),
        Probed::TooOld { found } => (Status::TooOld, found),
        Probed::Unverified { found } => (Status::Unverified, found),
        Probed::Missing { why } => (Status::Missing, why),
    };
    let mut check = Check::new(&n.req.tool, status, found).needed(needed);
    check.package = n.req.spec().map(|t| distro.package(t).to_string());
    if status == Status::Unverified {
        check = check.help(format!(
            "could not read its version; make sure it is {} or later",
            n.req.min_version.as_deref().unwrap_or("?")
        ));
    }
    check
}

// ---------------------------------------------------------------------------
// Disk, cores, memory.

fn disk_check(needs: &[StageNeeds], work_dir: &Path) -> Check {
    let parts: Vec<String> = needs
        .iter()
        .map(|n| format!("{} {}", n.stage, n.disk_gib))
        .collect();
    let estimate = needs.iter().map(|n| n.disk_gib).sum::<u64>();
    let needed = format!("~{estimate} GiB ({})", parts.join(", "));
    let name = format!("disk space ({})", work_dir.display());
    match free_space(work_dir) {
        Some((dir, free)) => {
            let found = format!("{} free on {}", human_bytes(free), dir.display());
            let status = if free < estimate * GIB {
                Status::Low
            } else {
                Status::Ok
            };
            Check::new(name, status, found).needed(needed).help(
                "free some space or pass --work-dir on a bigger disk; the estimate is rough (a distro-config kernel alone takes 15-25 GB, a tinyconfig one far less)",
            )
        }
        None => Check::new(name, Status::Unverified, "cannot read free space")
            .needed(needed)
            .help("check the free space of the work dir's disk by hand (`df -h`)"),
    }
}

/// Free bytes (for an unprivileged user) on the disk that holds `dir`,
/// read at its nearest existing ancestor (the work dir may not exist yet).
fn free_space(dir: &Path) -> Option<(PathBuf, u64)> {
    let mut at = std::path::absolute(dir).ok()?;
    while !at.exists() {
        at = at.parent()?.to_path_buf();
    }
    let st = rustix::fs::statvfs(&at).ok()?;
    Some((at, st.f_bavail * st.f_frsize))
}

fn cores_check() -> Check {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Check::new("cores", Status::Info, cores.to_string())
        .needed(format!("the default job budget is -j{cores}"))
}

/// MemTotal and MemAvailable from `/proc/meminfo`.
fn memory_check(meminfo: &Path) -> Check {
    let text = std::fs::read_to_string(meminfo).unwrap_or_default();
    let kib = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let found = match (kib("MemTotal:"), kib("MemAvailable:")) {
        (Some(t), Some(a)) => format!(
            "{} total, {} available",
            human_bytes(t * 1024),
            human_bytes(a * 1024)
        ),
        (Some(t), None) => format!("{} total", human_bytes(t * 1024)),
        _ => format!("unknown (cannot read {})", meminfo.display()),
    };
    Check::new("memory", Status::Info, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Requirement {
        Requirement::parse(text).unwrap()
    }

    fn needs(stage: &str, group: &str, tools: &[&str]) -> StageNeeds {
        StageNeeds {
            stage: stage.into(),
            group: group.into(),
            tools: tools.iter().map(|t| req(t)).collect(),
            checks: vec![],
            disk_gib: 3,
        }
    }

    fn names(needed: &[Needed]) -> Vec<String> {
        needed.iter().map(|n| n.req.to_string()).collect()
    }

    #[test]
    fn stages_share_tools_and_name_who_needs_them() {
        let n = needed_tools(&[
            needs("qemu", "qemu", &["gcc", "make"]),
            needs("ovmf", "ovmf", &["gcc", "nasm >= 2.15.01"]),
        ]);
        let gcc = n.iter().find(|n| n.req.tool == "gcc").unwrap();
        assert_eq!(gcc.by, ["qemu", "ovmf"]);
        assert!(names(&n).contains(&"nasm >= 2.15.01".to_string()));
        let n = needed_tools(&[
            needs("kernel-guest", "kernel", &["gcc"]),
            needs("kernel-host", "kernel", &["gcc", "pahole >= 1.2"]),
            needs("other", "other", &["pahole >= 1.16"]),
        ]);
        assert_eq!(
            n.iter().find(|n| n.req.tool == "gcc").unwrap().by,
            ["kernel"]
        );
        assert!(names(&n).contains(&"pahole >= 1.16".to_string()));
    }

    #[test]
    fn higher_minimum_wins() {
        assert_eq!(
            higher(Some("1.16".into()), Some("1.2".into())).as_deref(),
            Some("1.16")
        );
        assert_eq!(higher(None, Some("2".into())).as_deref(), Some("2"));
        assert_eq!(higher(None, None), None);
    }

    #[test]
    fn disk_space_is_read_at_the_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let (at, free) = free_space(&dir.path().join("not/yet/there")).unwrap();
        assert_eq!(at, dir.path());
        assert!(free > 0);
        let check = disk_check(
            &[
                needs("qemu", "qemu", &[]),
                needs("kernel-host", "kernel", &[]),
            ],
            dir.path(),
        );
        assert_eq!(check.needed, "~6 GiB (qemu 3, kernel-host 3)");
    }

    #[test]
    fn memory_is_read_from_meminfo() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meminfo");
        std::fs::write(
            &p,
            "MemTotal:        2097152 kB\nMemFree: 1 kB\nMemAvailable:    1048576 kB\n",
        )
        .unwrap();
        assert_eq!(memory_check(&p).found, "2.0 GiB total, 1.0 GiB available");
    }
}
