//! `snp-build doctor --host [--sysroot DIR] [--release DIR]`: can this
//! machine run SEV-SNP guests?
//!
//! Guarantees:
//! - Reads files, under `--sysroot` when given (tests), else `/`:
//!
//!   | read | ok when |
//!   |------|---------|
//!   | `/proc/cpuinfo` `vendor_id` | `AuthenticAMD` |
//!   | `/proc/cpuinfo` `flags` | `sev`, `sev_es`, `sev_snp` all there |
//!   | `/sys/module/kvm_amd/parameters/{sev,sev_es,sev_snp}` | each `Y` or `1` |
//!   | `/dev/sev` | a character device (under `--sysroot`: any file) |
//!   | the kernel log's `SEV-SNP API:` line | the SEV firmware's API: [`super::minimums::SEV_FIRMWARE`] or later |
//!   | `/dev/cpu/0/msr` at 0xc0010010 (SYSCFG) | bit 23, SMEE, set |
//!   | `/sys/class/iommu`, `/proc/cmdline` | an IOMMU, not in passthrough |
//!   | `/proc/sys/kernel/osrelease` | [`HOST_KERNEL`] or later |
//!   | `/usr/sbin/{libvirtd,virtqemud}` | absent, or [`super::minimums::LIBVIRT`] or later |
//!
//!   The firmware, SMEE, IOMMU and libvirt lines are [`super::platform`]'s
//!   (which also says where each is read, and what runs on `/` only). The
//!   minimums are [`super::minimums`]: the SNP column of the AMDSEV
//!   README's "Upstream Version Reference". On a CPU that is not AMD the
//!   SEV checks are skipped: nothing fixes them.
//! - The release: `--release DIR`, else the one `snp-build install` placed
//!   (`/opt/snp-build/current`, named on its own line; none there is said,
//!   and does not block).
//! - With a release DIR: `DIR/usr/local/bin/qemu-system-x86_64 --version`
//!   must say QEMU's minimum or later, and `DIR/usr/local/share/
//!   qemu/OVMF.fd` (what SNP guests boot with `-bios`) must exist. Its edk2
//!   version is the highest `edk2-stableYYYYMM` in the pins of
//!   `DIR/manifest.json`'s sources; without one the line says it could not
//!   be verified (`unverified`, which does not block). When the manifest
//!   names the host kernel release (`kernels.host.release`), the host must
//!   be running it, or
//!   have `/boot/vmlinuz-<kr>` with its initramfs and a boot loader entry
//!   (the checks of [`super::boot`], the same `install` runs).
//! - The manifest is read by the caller ([`ReleaseFacts`]: this layer
//!   knows the machine, not the release's format).
//! - Every line says what it read, and, when it is wrong, what to do (the
//!   BIOS setting, kvm.conf and reloading kvm_amd, booting the SNP host
//!   kernel, the firmware update, the kernel command line). What could not
//!   be read (the firmware's version without a kernel log, the MSR without
//!   root) is `unverified`, with how to see it, and does not block. Ready
//!   means no line blocks; otherwise the error is [`HostNotReady`] (exit 1).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::doctor::{Check, Status, render_checks};
use super::minimums::{HOST_KERNEL, OVMF, QEMU};
use super::sysroot::Root;
use crate::exec::Cmd;
use crate::snp_support::{Version, VmsaMode, kernel_uses_init2};
use crate::tools::version_in;

fn bios_help() -> String {
    format!(
        "enable SEV-SNP in the BIOS (AMD CBS > CPU Common Options: SMEE, SEV Control, \
         SEV-ES ASID Space Limit, SNP Memory (RMP Table) Coverage; NBIO > IOMMU/Security: SEV-SNP \
         Support), then reboot into the SNP host kernel (sev_snp shows only with a kernel that \
         supports it, {})",
        HOST_KERNEL.or_later()
    )
}

const KVM_CONF: &str = "install kvm.conf (`options kvm_amd sev-snp=1 sev=1 sev-es=1`) in \
     /etc/modprobe.d/ (`snp-build install` does), then reload kvm_amd (`modprobe -r kvm_amd && \
     modprobe kvm_amd`) or reboot; if it stays off, check the BIOS settings and \
     `dmesg | grep -e SEV -e RMP`";

const BOOT_KERNEL: &str = "install the release's SNP host kernel (`snp-build install`), reboot \
     and choose it (its name has -snp-host-)";

/// Whether the host can run SNP guests, line by line.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HostReport {
    pub ready: bool,
    pub checks: Vec<Check>,
}

impl HostReport {
    pub fn render(&self) -> String {
        render_checks(&self.checks, "read")
    }
}

/// The host cannot run SNP guests yet (exit 1); the message is the report.
#[derive(Debug)]
pub struct HostNotReady {
    pub report: HostReport,
}

impl fmt::Display for HostNotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed: Vec<&str> = self
            .report
            .checks
            .iter()
            .filter(|c| c.status.blocks())
            .map(|c| c.check.as_str())
            .collect();
        write!(
            f,
            "this host is not ready to run SEV-SNP guests ({}):\n{}",
            failed.join(", "),
            self.report.render().trim_end()
        )
    }
}

impl std::error::Error for HostNotReady {}

/// What the host checks need to know of a release's `manifest.json`
/// (read by the caller; all `None` without a readable one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseFacts {
    /// Its host kernel's `uname -r` (`kernels.host.release`).
    pub host_kernel_release: Option<String>,
    /// Its sources' pins (the edk2 version is read from them).
    pub pins: Vec<String>,
    /// The VMSA mode its launch digests assume (`measurement.vmsa_mode`).
    pub vmsa_mode: Option<VmsaMode>,
}

/// Reads a release directory's [`ReleaseFacts`].
pub type ReadRelease<'a> = &'a dyn Fn(&Path) -> ReleaseFacts;

/// `doctor --host`: the report on stderr (and for the JSON document), or
/// [`HostNotReady`].
pub fn command(
    sysroot: Option<&Path>,
    release: Option<&Path>,
    read: ReadRelease<'_>,
) -> anyhow::Result<HostReport> {
    let report = check_host(&Root::new(sysroot), release, read);
    if !report.ready {
        return Err(HostNotReady { report }.into());
    }
    tracing::info!("{}", report.render().trim_end());
    tracing::info!("this host is ready to run SEV-SNP guests");
    Ok(report)
}

/// Whether the host can boot the release's SNP host kernel: already
/// running it, or installed with its initramfs and a boot loader entry
/// ([`super::boot`]). Nothing when the manifest names no host kernel.
fn boot_checks(root: &Root, release: &Path, facts: &ReleaseFacts) -> Vec<Check> {
    let Some(kr) = facts.host_kernel_release.clone() else {
        return Vec::new();
    };
    let name = format!("SNP host kernel {kr}");
    let running = root.read("/proc/sys/kernel/osrelease").unwrap_or_default();
    if running.trim() == kr {
        return vec![Check::new(name, Status::Ok, "running")];
    }
    let image = format!("/boot/vmlinuz-{kr}");
    if !root.path(&image).is_file() {
        return vec![
            Check::new(name, Status::Missing, format!("no {image}"))
                .needed("installed, with its initramfs and a boot loader entry")
                .help(format!(
                    "install it: snp-build install {} (then reboot into it)",
                    release.display()
                )),
        ];
    }
    let os = super::os_release(&root.path(super::OS_RELEASE));
    let format = if super::is_debian_like(&os) {
        super::PackageFormat::Deb
    } else {
        super::PackageFormat::Rpm
    };
    let mut checks = vec![Check::new(name, Status::Ok, image)];
    checks.extend(super::boot::check(root.dir(), &kr, format));
    checks
}

/// The VMSA mode the release's digests assume, against the one this
/// host's running kernel gives: Linux >= 6.10 creates SNP guests with
/// `KVM_SEV_INIT2` (see `snp_support`), older kernels the legacy way. A
/// mismatch is an attestation that fails with nothing saying why.
fn vmsa_mode_check(root: &Root, release: &Path, facts: &ReleaseFacts) -> Option<Check> {
    let mode = facts.vmsa_mode?;
    let name = "release VMSA mode";
    let running = root.read("/proc/sys/kernel/osrelease")?;
    let running = running.trim();
    let Some(version) = Version::find_in(running) else {
        return Some(
            Check::new(name, Status::Unverified, mode.as_str()).needed(format!(
                "a host kernel that gives the {mode} VMSA ({running} has no version)"
            )),
        );
    };
    let host = if kernel_uses_init2(version) {
        VmsaMode::Init2
    } else {
        VmsaMode::Legacy
    };
    let check = Check::new(name, Status::Ok, format!("{mode} (MEASUREMENTS)"))
        .needed(format!("what this host's kernel {running} gives: {host}"));
    if host == mode {
        return Some(check);
    }
    Some(Check {
        status: Status::Failed,
        ..check
    }
    .help(format!(
        "guests launched here get the {host} VMSA, so their attestation reports will not carry          the release's digests: boot the release's own host kernel (snp-build install {}), or          compute the digests for this host: snp-build measure --release {} --vmsa-mode {host}",
        release.display(),
        release.display()
    )))
}

/// Every host check (see the module doc).
pub fn check_host(root: &Root, release: Option<&Path>, read: ReadRelease<'_>) -> HostReport {
    let cpuinfo = root.read("/proc/cpuinfo").unwrap_or_default();
    let vendor = cpuinfo_field(&cpuinfo, "vendor_id");
    let mut checks = vec![vendor_check(vendor.as_deref())];
    if vendor.as_deref() == Some("AuthenticAMD") {
        checks.push(flags_check(cpuinfo_field(&cpuinfo, "flags").as_deref()));
        checks.push(kvm_params_check(root));
        checks.push(dev_sev_check(root));
        checks.extend(super::platform::checks(root));
    }
    checks.push(kernel_check(root));
    checks.push(super::platform::libvirt_check(root));
    // Without --release: the release `install` placed, found through its
    // `current` link.
    let installed = root.path(&format!("/{}", super::STACK_CURRENT_REL));
    let release = match release {
        Some(dir) => Some(dir.to_path_buf()),
        None => {
            let (check, found) = installed_check(&installed);
            checks.push(check);
            found
        }
    };
    if let Some(dir) = release.as_deref() {
        let facts = read(dir);
        checks.push(qemu_check(dir));
        checks.push(ovmf_check(dir, &facts));
        checks.extend(boot_checks(root, dir, &facts));
        checks.extend(vmsa_mode_check(root, dir, &facts));
    }
    HostReport {
        ready: !checks.iter().any(|c| c.status.blocks()),
        checks,
    }
}

/// The release `install` placed: `current` and the directory it names.
fn installed_check(current: &Path) -> (Check, Option<PathBuf>) {
    let name = "installed release";
    match std::fs::canonicalize(current) {
        Ok(dir) if dir.is_dir() => {
            let found = format!(
                "{} ({})",
                dir.file_name().unwrap_or_default().to_string_lossy(),
                dir.display()
            );
            (Check::new(name, Status::Ok, found), Some(dir))
        }
        _ => (
            Check::new(name, Status::Info, "none")
                .needed("a release's QEMU and firmware")
                .help(format!(
                    "`snp-build install RELEASE` places one in {} (or give --release DIR to check a release directory)",
                    Path::new("/").join(super::RELEASES_REL).display()
                )),
            None,
        ),
    }
}

/// The first `key : value` of `/proc/cpuinfo` (every processor repeats it).
fn cpuinfo_field(cpuinfo: &str, key: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

fn vendor_check(vendor: Option<&str>) -> Check {
    let name = "/proc/cpuinfo vendor_id";
    match vendor {
        Some("AuthenticAMD") => Check::new(name, Status::Ok, "AuthenticAMD"),
        Some(v) => Check::new(name, Status::Failed, v).help(
            "SEV-SNP needs an AMD EPYC CPU (Zen 3, EPYC 7003, or newer); this machine cannot run SNP guests, so the SEV checks were skipped",
        ),
        None => Check::new(name, Status::Failed, "no vendor_id line")
            .help("cannot tell the CPU vendor; is /proc mounted?"),
    }
    .needed("AuthenticAMD")
}

fn flags_check(flags: Option<&str>) -> Check {
    let name = "/proc/cpuinfo flags";
    let have: Vec<&str> = flags.unwrap_or("").split_whitespace().collect();
    let wanted = ["sev", "sev_es", "sev_snp"];
    let present: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|f| have.contains(f))
        .collect();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|f| !have.contains(f))
        .collect();
    let found = match (present.is_empty(), missing.is_empty()) {
        (_, true) => present.join(" "),
        (true, false) => "none of sev, sev_es, sev_snp".to_string(),
        (false, false) => format!("{}; no {}", present.join(" "), missing.join(", ")),
    };
    let check = if missing.is_empty() {
        Check::new(name, Status::Ok, found)
    } else {
        Check::new(name, Status::Failed, found).help(bios_help())
    };
    check.needed("sev sev_es sev_snp")
}

/// The three kvm_amd parameters, as one line: `sev=Y sev_es=Y sev_snp=N`.
fn kvm_params_check(root: &Root) -> Check {
    const DIR: &str = "/sys/module/kvm_amd/parameters";
    let check =
        |status, found: String| Check::new(DIR, status, found).needed("sev=Y sev_es=Y sev_snp=Y");
    if !root.path("/sys/module/kvm_amd").is_dir() {
        return check(Status::Failed, "absent: kvm_amd is not loaded".into())
            .help(format!("{KVM_CONF}; `modprobe kvm_amd` loads it"));
    }
    let values: Vec<(&str, Option<String>)> = ["sev", "sev_es", "sev_snp"]
        .into_iter()
        .map(|p| {
            (
                p,
                root.read(&format!("{DIR}/{p}"))
                    .map(|v| v.trim().to_string()),
            )
        })
        .collect();
    let found = values
        .iter()
        .map(|(p, v)| format!("{p}={}", v.as_deref().unwrap_or("absent")))
        .collect::<Vec<_>>()
        .join(" ");
    let on = |v: &Option<String>| matches!(v.as_deref(), Some("Y" | "1"));
    if values.iter().all(|(_, v)| on(v)) {
        check(Status::Ok, found)
    } else if values.iter().any(|(_, v)| v.is_none()) {
        // An old kvm_amd has no sev_snp parameter at all.
        check(Status::Failed, found).help(format!(
            "this kernel's kvm_amd lacks SNP parameters: {BOOT_KERNEL}"
        ))
    } else {
        check(Status::Failed, found).help(KVM_CONF)
    }
}

fn dev_sev_check(root: &Root) -> Check {
    use std::os::unix::fs::FileTypeExt;
    let name = "/dev/sev";
    let help = "the ccp driver creates /dev/sev once the PSP has initialised SEV: `modprobe ccp`, then see `dmesg | grep -i -e ccp -e sev`; it needs SEV enabled in the BIOS and current SEV firmware (linux-firmware, /lib/firmware/amd/amd_sev_*.sbin)";
    let check = match std::fs::metadata(root.path(name)) {
        Err(_) => Check::new(name, Status::Failed, "absent").help(help),
        Ok(m) if root.is_real() && !m.file_type().is_char_device() => {
            Check::new(name, Status::Failed, "present, not a character device").help(help)
        }
        Ok(_) => Check::new(name, Status::Ok, "present"),
    };
    check.needed(if root.is_real() {
        "a character device"
    } else {
        "present"
    })
}

fn kernel_check(root: &Root) -> Check {
    let name = "/proc/sys/kernel/osrelease";
    let needed = HOST_KERNEL.or_later();
    let Some(release) = root
        .read("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
    else {
        return Check::new(name, Status::Failed, "unreadable")
            .needed(needed)
            .help("cannot read the kernel release; is /proc mounted?");
    };
    let status = match version_in(&release) {
        Some(v) if HOST_KERNEL.met_by(&v) => Status::Ok,
        _ => Status::TooOld,
    };
    let check = Check::new(name, status, release).needed(needed);
    if status == Status::Ok {
        check
    } else {
        check.help(format!(
            "SNP hosts need Linux {}: {BOOT_KERNEL}",
            HOST_KERNEL.or_later()
        ))
    }
}

fn qemu_check(release: &Path) -> Check {
    let qemu = release.join("usr/local/bin/qemu-system-x86_64");
    let name = format!("{} --version", qemu.display());
    let needed = QEMU.or_later();
    if !qemu.is_file() {
        return Check::new(name, Status::Failed, "absent")
            .needed(needed)
            .help(
                "build the release with QEMU (`snp-build --package`), or give the right --release",
            );
    }
    let version = crate::exec::capture(&Cmd::new(&qemu, Path::new("/")).arg("--version"))
        .ok()
        .and_then(|o| version_in(&o.text()));
    match version {
        None => Check::new(name, Status::Failed, "`--version` printed no version")
            .needed(needed)
            .help("run it by hand: it may lack libraries on this host"),
        Some(v) if !QEMU.met_by(&v) => {
            Check::new(name, Status::TooOld, v).needed(needed).help(format!(
                "SNP needs QEMU {}: pin AMD's snp-latest or a tag v{}.0 or later in [qemu], then rebuild the release",
                QEMU.or_later(),
                QEMU.version
            ))
        }
        Some(v) => Check::new(name, Status::Ok, v).needed(needed),
    }
}

fn ovmf_check(release: &Path, facts: &ReleaseFacts) -> Check {
    let firmware = release.join("usr/local/share/qemu/OVMF.fd");
    let name = firmware.display().to_string();
    let needed = OVMF.or_later();
    if !firmware.is_file() {
        return Check::new(name, Status::Failed, "absent").needed(needed).help(
            "SNP guests boot OVMF.fd with -bios: build the release with OVMF and `outputs` including \"OVMF.fd\"",
        );
    }
    match edk2_stable_tag(facts.pins.iter().map(String::as_str)) {
        Some(tag) if !OVMF.met_by(&tag) => {
            Check::new(name, Status::TooOld, format!("edk2-stable{tag}"))
                .needed(needed)
                .help(format!("pin AMD's snp-latest or {} in [ovmf], then rebuild the release", OVMF.or_later()))
        }
        Some(tag) => Check::new(name, Status::Ok, format!("edk2-stable{tag}")).needed(needed),
        None => Check::new(
            name,
            Status::Unverified,
            "present; no edk2-stable tag recorded in manifest.json",
        )
        .needed(needed)
        .help(format!("its edk2 version could not be verified: make sure the [ovmf] pin is {} (AMD's snp-latest is)", OVMF.or_later())),
    }
}

/// The highest `edk2-stableYYYYMM` in `texts`, as `YYYYMM`.
fn edk2_stable_tag<'a>(texts: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut found: Vec<String> = Vec::new();
    for s in texts {
        for (i, _) in s.match_indices("edk2-stable") {
            let digits: String = s[i + "edk2-stable".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if digits.len() == 6 {
                found.push(digits);
            }
        }
    }
    found.into_iter().max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_fields_come_from_the_first_processor() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sev sev_es\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n";
        assert_eq!(
            cpuinfo_field(text, "vendor_id").as_deref(),
            Some("AuthenticAMD")
        );
        let flags = flags_check(cpuinfo_field(text, "flags").as_deref());
        assert_eq!(flags.status, Status::Failed);
        assert_eq!(flags.found, "sev sev_es; no sev_snp");
        assert!(flags.help.unwrap().contains("BIOS"));
    }

    #[test]
    fn edk2_tag_is_the_highest_in_the_pins() {
        let pins = [
            "tag edk2-stable202408",
            "branch edk2-stable2024",
            "tag edk2-stable202405",
        ];
        assert_eq!(edk2_stable_tag(pins.into_iter()).as_deref(), Some("202408"));
        assert_eq!(edk2_stable_tag(["branch snp-latest"].into_iter()), None);
    }
}
