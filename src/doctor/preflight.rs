//! The build checks: tools per stage, base configs, disk, cores, memory.
//!
//! Disk estimates (per stage; source tree with its git objects, build
//! output and packages). Rough on purpose, which is why a shortfall is
//! `low` and does not block:
//!
//! | stage  | base config                          | estimate | from |
//! |--------|--------------------------------------|----------|------|
//! | kernel | `running` or a file (a distro config) | 25 GiB  | NOTES.md: 15-25 GB for a full distro-config kernel with debug info |
//! | kernel | `defconfig`                           | 6 GiB   | a ~1.5 GB checkout plus a few GB of objects with debug info |
//! | kernel | `tinyconfig`                          | 3 GiB   | the checkout plus a small build |
//! | qemu   |                                      | 3 GiB    | a checkout and ~2,700 objects for x86_64-softmmu |
//! | ovmf   |                                      | 3 GiB    | edk2 with submodules and one platform build |

use std::path::{Path, PathBuf};

use super::catalog::{self, ProbeEnv, Probed, Requirement};
use super::{Check, Distro, PreflightFailed, Report, Status};
use crate::component::SourceId;
use crate::config::{BaseConfig, Config, PackageFormat};
use crate::kconfig::{BaseSource, Kernel};
use crate::output::human_bytes;
use crate::stage::kernel::{base_source, check_base};

const GIB: u64 = 1 << 30;

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
/// when something blocks. `package_format` "auto" is resolved here.
pub fn preflight(
    config: &Config,
    ids: &[SourceId],
    package_format: PackageFormat,
    work_dir: &Path,
) -> anyhow::Result<Report> {
    let report = check_build(config, ids, package_format, work_dir, &Env::system());
    if report.ready {
        Ok(report)
    } else {
        Err(PreflightFailed { report }.into())
    }
}

/// Every check for stages `ids`, as seen through `env`.
pub fn check_build(
    config: &Config,
    ids: &[SourceId],
    package_format: PackageFormat,
    work_dir: &Path,
    env: &Env,
) -> Report {
    let format = crate::host::package_format(package_format, &env.os_release);
    let distro = Distro::detect(&env.os_release);
    let mut checks: Vec<Check> = needed_tools(config, ids, format)
        .iter()
        .map(|n| tool_check(n, &env.probe, distro))
        .collect();
    checks.extend(ids.iter().filter_map(|id| base_config_check(config, *id)));
    checks.push(disk_check(config, ids, work_dir));
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
    by: Vec<&'static str>,
}

/// The tools of all stages `ids`, merged, in first-asked order.
fn needed_tools(config: &Config, ids: &[SourceId], format: PackageFormat) -> Vec<Needed> {
    let mut all: Vec<Needed> = Vec::new();
    for id in ids {
        // Both kernels share one list: name them once.
        let by = if Kernel::from_source(*id).is_some() {
            "kernel"
        } else {
            id.name()
        };
        for req in stage_tools(config, *id, format) {
            match all.iter_mut().find(|n| n.req.tool == req.tool) {
                Some(n) => {
                    if !n.by.contains(&by) {
                        n.by.push(by);
                    }
                    n.req.min_version = higher(n.req.min_version.take(), req.min_version);
                }
                None => all.push(Needed { req, by: vec![by] }),
            }
        }
    }
    all
}

fn higher(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(
            if catalog::compare_versions(&a, &b) == std::cmp::Ordering::Less {
                b
            } else {
                a
            },
        ),
        (a, b) => a.or(b),
    }
}

/// What one stage needs, per the pin file.
fn stage_tools(config: &Config, id: SourceId, format: PackageFormat) -> Vec<Requirement> {
    let Some(kernel) = Kernel::from_source(id) else {
        return match id {
            SourceId::Qemu => config.qemu.tools.clone(),
            _ => config.ovmf.tools.clone(),
        };
    };
    let tools = &config.kernel.tools;
    let mut reqs = tools.common.clone();
    reqs.extend(match format {
        PackageFormat::Rpm => tools.rpm.iter().cloned(),
        _ => tools.deb.iter().cloned(),
    });
    if needs_btf(config, kernel) {
        reqs.extend(tools.btf.iter().cloned());
    }
    reqs
}

/// Whether this kernel's config will have `DEBUG_INFO_BTF` (which runs
/// pahole): the edits turn it on, or the base config file has it and the
/// edits do not turn it off. `defconfig` and `tinyconfig` leave it off.
fn needs_btf(config: &Config, kernel: Kernel) -> bool {
    const BTF: &str = "DEBUG_INFO_BTF";
    let edits = &config.kernel.edits;
    if edits.disable.iter().any(|o| o == BTF) {
        return false;
    }
    if edits.enable.iter().any(|o| o == BTF) {
        return true;
    }
    match base_source(config, kernel) {
        BaseSource::File(path) => std::fs::read_to_string(path)
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "CONFIG_DEBUG_INFO_BTF=y")),
        BaseSource::MakeTarget(_) => false,
    }
}

fn tool_check(n: &Needed, env: &ProbeEnv, distro: Distro) -> Check {
    let by = format!("by {}", n.by.join(", "));
    let needed = match &n.req.min_version {
        Some(v) => format!(">= {v}, {by}"),
        None => by,
    };
    let (status, found) = match catalog::probe(&n.req, env) {
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
// Base config, disk, cores, memory.

fn base_setting(config: &Config, kernel: Kernel) -> &BaseConfig {
    match kernel {
        Kernel::Host => &config.kernel.host_base_config,
        Kernel::Guest => &config.kernel.guest_base_config,
    }
}

/// A kernel's base config source: a make target is always there; a file
/// (including `running`'s `/boot/config-$(uname -r)`) must exist.
fn base_config_check(config: &Config, id: SourceId) -> Option<Check> {
    let kernel = Kernel::from_source(id)?;
    let setting = match base_setting(config, kernel) {
        BaseConfig::Running => "running".to_string(),
        BaseConfig::Defconfig => "defconfig".to_string(),
        BaseConfig::Tinyconfig => "tinyconfig".to_string(),
        BaseConfig::File(p) => p.display().to_string(),
    };
    let name = format!("{id} base config");
    let needed = format!("base-config = {setting:?}");
    let check = match (base_source(config, kernel), check_base(config, kernel)) {
        (BaseSource::MakeTarget(t), _) => Check::new(name, Status::Ok, format!("make {t}")),
        (BaseSource::File(p), Ok(())) => Check::new(name, Status::Ok, p.display().to_string()),
        (BaseSource::File(p), Err(e)) => {
            Check::new(name, Status::Missing, format!("no {}", p.display())).help(e.to_string())
        }
    };
    Some(check.needed(needed))
}

/// Estimated disk use of one stage, in GiB (see the module doc).
fn disk_estimate_gib(config: &Config, id: SourceId) -> u64 {
    match Kernel::from_source(id) {
        Some(kernel) => match base_setting(config, kernel) {
            BaseConfig::Running | BaseConfig::File(_) => 25,
            BaseConfig::Defconfig => 6,
            BaseConfig::Tinyconfig => 3,
        },
        None => 3,
    }
}

fn disk_check(config: &Config, ids: &[SourceId], work_dir: &Path) -> Check {
    let parts: Vec<String> = ids
        .iter()
        .map(|id| format!("{id} {}", disk_estimate_gib(config, *id)))
        .collect();
    let estimate = ids
        .iter()
        .map(|id| disk_estimate_gib(config, *id))
        .sum::<u64>();
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
    use crate::config::Origin;

    fn config(text: &str) -> Config {
        Config::parse(text, Origin::File("p.toml".into()), Path::new("/d")).unwrap()
    }

    const PINS: &str = "[kernel]\nbase-config = \"tinyconfig\"\n\
        [kernel.host]\nurl = \"u\"\nbranch = \"b\"\n\
        [kernel.guest]\nurl = \"u\"\nbranch = \"b\"\n\
        [qemu]\nurl = \"u\"\nbranch = \"b\"\n\
        [ovmf]\nurl = \"u\"\nbranch = \"b\"\n";

    fn names(needed: &[Needed]) -> Vec<String> {
        needed.iter().map(|n| n.req.to_string()).collect()
    }

    #[test]
    fn stages_share_tools_and_name_who_needs_them() {
        let c = config(PINS);
        let n = needed_tools(&c, &[SourceId::Qemu, SourceId::Ovmf], PackageFormat::Deb);
        let gcc = n.iter().find(|n| n.req.tool == "gcc").unwrap();
        assert_eq!(gcc.by, ["qemu", "ovmf"]);
        assert!(names(&n).contains(&"nasm >= 2.15.01".to_string()));
        let n = needed_tools(
            &c,
            &[SourceId::KernelGuest, SourceId::KernelHost],
            PackageFormat::Deb,
        );
        assert_eq!(
            n.iter().find(|n| n.req.tool == "gcc").unwrap().by,
            ["kernel"]
        );
        assert!(!names(&n).iter().any(|t| t.contains("nasm")));
    }

    #[test]
    fn kernel_packaging_tools_follow_the_package_format() {
        let c = config(PINS);
        let deb = names(&needed_tools(
            &c,
            &[SourceId::KernelHost],
            PackageFormat::Deb,
        ));
        let rpm = names(&needed_tools(
            &c,
            &[SourceId::KernelHost],
            PackageFormat::Rpm,
        ));
        assert!(deb.contains(&"dpkg-dev".into()) && !deb.contains(&"rpm-build".into()));
        assert!(rpm.contains(&"rpm-build".into()) && !rpm.contains(&"dpkg-dev".into()));
    }

    #[test]
    fn pahole_only_when_the_config_enables_btf() {
        let has_pahole = |c: &Config| {
            names(&needed_tools(
                c,
                &[SourceId::KernelHost],
                PackageFormat::Deb,
            ))
            .contains(&"pahole >= 1.16".to_string())
        };
        assert!(!has_pahole(&config(PINS)));
        let enabled = PINS.replace(
            "base-config = \"tinyconfig\"\n",
            "base-config = \"tinyconfig\"\nenable = [\"DEBUG_INFO_BTF\"]\n",
        );
        assert!(has_pahole(&config(&enabled)));

        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("distro.config");
        std::fs::write(&base, "CONFIG_64BIT=y\nCONFIG_DEBUG_INFO_BTF=y\n").unwrap();
        let from_file = PINS.replace("tinyconfig", &base.display().to_string());
        assert!(has_pahole(&config(&from_file)));
        let disabled = from_file.replace(
            "[kernel.host]",
            "disable = [\"DEBUG_INFO_BTF\"]\n[kernel.host]",
        );
        assert!(!has_pahole(&config(&disabled)));
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
    fn fedora_hosts_get_a_dnf_line_with_fedora_names() {
        let dir = tempfile::tempdir().unwrap();
        let os = dir.path().join("os-release");
        std::fs::write(&os, "ID=fedora\nVERSION_ID=40\n").unwrap();
        let env = Env {
            os_release: os,
            probe: ProbeEnv {
                path: vec![dir.path().join("empty")],
                include_dirs: vec![],
                pkg_config_dirs: vec![],
            },
        };
        let c = config(PINS);
        let r = check_build(&c, &[SourceId::Ovmf], PackageFormat::Auto, dir.path(), &env);
        assert!(!r.ready);
        assert_eq!(r.distro, Distro::Fedora);
        assert_eq!(r.package_format, PackageFormat::Rpm);
        let line = r.install.unwrap();
        assert!(line.starts_with("dnf install -y "), "{line}");
        assert!(line.contains("nasm acpica-tools"), "{line}");
        assert!(
            line.contains("gcc-c++") && line.contains("libuuid-devel"),
            "{line}"
        );
    }

    #[test]
    fn missing_running_config_blocks_with_its_help() {
        let c = config(&PINS.replace("tinyconfig", "running"));
        let check = base_config_check(&c, SourceId::KernelHost).unwrap();
        // CI machines and containers have no /boot/config-*; hosts do.
        if check.status == Status::Missing {
            assert!(check.found.contains("/boot/config-"), "{check:?}");
            assert!(check.help.unwrap().contains("tinyconfig"));
        }
        let c = config(PINS);
        let check = base_config_check(&c, SourceId::KernelGuest).unwrap();
        assert_eq!(check.status, Status::Ok);
        assert_eq!(check.found, "make tinyconfig");
        assert!(base_config_check(&c, SourceId::Qemu).is_none());
    }

    #[test]
    fn disk_space_is_read_at_the_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let (at, free) = free_space(&dir.path().join("not/yet/there")).unwrap();
        assert_eq!(at, dir.path());
        assert!(free > 0);
        let c = config(PINS);
        let check = disk_check(&c, &[SourceId::Qemu, SourceId::KernelHost], dir.path());
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
