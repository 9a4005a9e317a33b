//! The rest of AMDSEV's host checklist (its README's "Prepare Host" and
//! "Upstream Version Reference"), as `doctor --host` lines: the SEV
//! firmware's API version, SMEE, the IOMMU and libvirt.
//!
//! Guarantees:
//! - Each line reads this machine under a [`Root`]; a program runs only
//!   when the root is the real `/` (under `--sysroot`, a test's stand-in,
//!   nothing does):
//!
//!   | line | read, in this order | ok when | else |
//!   |------|---------------------|---------|------|
//!   | `SEV firmware` | on `/`: `dmesg`, `journalctl -k -b`; then `/var/log/dmesg`, `/var/log/kern.log`, `/var/log/messages` | the last `SEV-SNP API:1.58 build:5` line (else `SEV API:`) of the first that has one says [`SEV_FIRMWARE`] or later | `too old`; none found: `unverified` |
//!   | `/dev/cpu/0/msr 0xc0010010` | 8 bytes at offset 0xc0010010 (SYSCFG) | bit 23 (SMEE) set | `failed`; unreadable (no msr module, not root, a guest): `unverified` |
//!   | `IOMMU` | `/sys/class/iommu/*`, `/proc/cmdline` | a unit, and no `iommu=pt`, `iommu=off`, `iommu.passthrough=1`, `amd_iommu=off`, `amd_iommu=pgtbl_v2` | `failed` |
//!   | `libvirt` | `/usr/sbin/libvirtd`, `/usr/sbin/virtqemud`; the version: on `/` `DAEMON --version`, then dpkg's `/var/lib/dpkg/status` (`libvirt-daemon`, `libvirt-daemon-system`, `libvirt0`) | not installed (`info`), or [`LIBVIRT`] or later | `too old`; version unknown: `unverified` |
//!
//!   The kernel exposes the firmware's API version only in its log (the
//!   ccp driver's `dev_info` in `drivers/crypto/ccp/sev-dev.c`; sysfs has
//!   the PSP's `bootloader_version` and `tee_version`, not SEV's). SNP
//!   needs the IOMMU translating: with none, or in passthrough, the kernel
//!   turns SNP off (`AMD-Vi: SNP: IOMMU disabled or configured in
//!   passthrough mode, SNP cannot be supported`).
//! - The minimums are [`super::minimums`]'s. What could not be read does
//!   not block, and says how to see it; every failure says what fixes it
//!   (the BIOS setting, the firmware file, the kernel command line, a
//!   newer libvirt).

use std::os::unix::fs::FileExt;

use super::doctor::{Check, Status};
use super::minimums::{LIBVIRT, SEV_FIRMWARE};
use super::sysroot::Root;
use crate::exec::Cmd;
use crate::tools::version_in;

/// The SEV lines for an AMD CPU: the firmware, SMEE, the IOMMU.
pub fn checks(root: &Root) -> Vec<Check> {
    vec![firmware_check(root), smee_check(root), iommu_check(root)]
}

// ---------------------------------------------------------------------------
// The SEV firmware's API version

/// What one `SEV API:` or `SEV-SNP API:` line of the kernel log says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FirmwareLine {
    /// `SEV-SNP API:` (printed once SNP is initialised), not `SEV API:`.
    snp: bool,
    /// `major.minor`, e.g. `1.58`.
    api: String,
    build: Option<String>,
}

/// The ccp driver's line: `ccp 0000:a9:00.5: SEV-SNP API:1.58 build:5`.
fn firmware_line(line: &str) -> Option<FirmwareLine> {
    let (snp, rest) = if let Some((_, rest)) = line.split_once("SEV-SNP API:") {
        (true, rest)
    } else {
        (false, line.split_once("SEV API:")?.1)
    };
    let api: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if !api.contains('.') {
        return None;
    }
    let build = rest
        .split_once("build:")
        .map(|(_, b)| {
            b.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .filter(|b| !b.is_empty());
    Some(FirmwareLine { snp, api, build })
}

/// The newest `SEV-SNP API:` line of a log, else its newest `SEV API:`.
fn newest_firmware_line(log: &str) -> Option<FirmwareLine> {
    let lines: Vec<FirmwareLine> = log.lines().filter_map(firmware_line).collect();
    lines
        .iter()
        .rev()
        .find(|l| l.snp)
        .or_else(|| lines.last())
        .cloned()
}

/// The kernel logs to look in, in order, as (where, text): on `/` the
/// running kernel's (`dmesg`, which `dmesg_restrict` may refuse a user,
/// then the journal's), then the log files under the root.
fn kernel_logs(root: &Root) -> impl Iterator<Item = (String, Option<String>)> + '_ {
    const FILES: [&str; 3] = ["/var/log/dmesg", "/var/log/kern.log", "/var/log/messages"];
    let commands: &[&[&str]] = if root.is_real() {
        &[&["dmesg"], &["journalctl", "-k", "-b", "--no-pager", "-q"]]
    } else {
        &[]
    };
    let ran = commands.iter().map(|argv| {
        let cmd = Cmd::new(argv[0], std::path::Path::new("/")).args(&argv[1..]);
        let text = crate::exec::capture(&cmd)
            .ok()
            .filter(|o| o.success)
            .map(|o| o.stdout);
        (format!("`{}`", argv.join(" ")), text)
    });
    let files = FILES.into_iter().map(|f| (f.to_string(), root.read(f)));
    ran.chain(files)
}

fn firmware_check(root: &Root) -> Check {
    let name = "SEV firmware";
    let needed = format!("API {}", SEV_FIRMWARE.or_later());
    let mut looked = Vec::new();
    for (source, text) in kernel_logs(root) {
        let Some(line) = text.as_deref().and_then(newest_firmware_line) else {
            looked.push(source);
            continue;
        };
        let found = format!(
            "{} API {}{}, in {source}",
            if line.snp { "SEV-SNP" } else { "SEV" },
            line.api,
            line.build
                .as_deref()
                .map(|b| format!(" build {b}"))
                .unwrap_or_default()
        );
        return if SEV_FIRMWARE.met_by(&line.api) {
            Check::new(name, Status::Ok, found).needed(needed)
        } else {
            Check::new(name, Status::TooOld, found)
                .needed(needed)
                .help(format!(
                    "SNP needs SEV firmware API {}: on EPYC 7003, put AMD's newer firmware \
                 (developer.amd.com/sev, or a newer linux-firmware package) in \
                 /lib/firmware/amd/ (e.g. amd_sev_fam19h_model0xh.sbin), then reboot or reload \
                 the driver (`rmmod kvm_amd; rmmod ccp; modprobe ccp; modprobe kvm_amd`); \
                 EPYC 9004 and later get their SEV firmware with a BIOS update",
                    SEV_FIRMWARE.or_later()
                ))
        };
    }
    Check::new(
        name,
        Status::Unverified,
        format!("no `SEV API:` line in {}", looked.join(", ")),
    )
    .needed(needed)
    .help(
        "the ccp driver prints the firmware's API version when it initialises SEV: see it as root \
         with `dmesg | grep -e 'SEV API' -e 'SEV-SNP API'`; none at all means SEV did not \
         initialise (`dmesg | grep -i -e ccp -e sev`)",
    )
}

// ---------------------------------------------------------------------------
// SMEE

/// SYSCFG, the MSR whose bit 23 says memory encryption is on (SMEE).
const SYSCFG: u64 = 0xc001_0010;
const SMEE_BIT: u32 = 23;
const MSR: &str = "/dev/cpu/0/msr";

fn smee_check(root: &Root) -> Check {
    let name = format!("{MSR} {SYSCFG:#x}");
    let needed = format!("bit {SMEE_BIT} (SMEE) set");
    let unverified = |found: String, help: &str| {
        Check::new(name.as_str(), Status::Unverified, found)
            .needed(needed.as_str())
            .help(format!(
                "{help}; or read it by hand: `sudo modprobe msr && sudo rdmsr {SYSCFG:#x}` (bit {SMEE_BIT} set means SMEE is on)"
            ))
    };
    let file = match std::fs::File::open(root.path(MSR)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return unverified(
                "absent: the msr module is not loaded".into(),
                "load it (`sudo modprobe msr`) and run `sudo snp-build doctor --host`",
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return unverified(
                "not readable: MSRs need root".into(),
                "run `sudo snp-build doctor --host`",
            );
        }
        Err(e) => return unverified(format!("unreadable: {e}"), "run it as root"),
    };
    let mut bytes = [0u8; 8];
    if let Err(e) = file.read_exact_at(&mut bytes, SYSCFG) {
        // A guest, or a CPU without the MSR, refuses the read (EIO).
        return unverified(
            format!("unreadable at {SYSCFG:#x}: {e}"),
            "SYSCFG reads only on the host itself, as root",
        );
    }
    let value = u64::from_le_bytes(bytes);
    if value & (1 << SMEE_BIT) != 0 {
        Check::new(name, Status::Ok, format!("{value:#x}: SMEE set")).needed(needed)
    } else {
        Check::new(name, Status::Failed, format!("{value:#x}: SMEE clear"))
            .needed(needed)
            .help(
                "enable SMEE in the BIOS (AMD CBS > CPU Common Options > SMEE: Enable) and reboot; \
                 without it SEV INIT fails with error 0x13 (HWERROR_PLATFORM)",
            )
    }
}

// ---------------------------------------------------------------------------
// The IOMMU

/// The kernel command line's words that leave SNP without a translating
/// IOMMU (the kernel then turns SNP off).
fn iommu_refusals(cmdline: &str) -> Vec<String> {
    cmdline
        .split_whitespace()
        .filter(|word| {
            let Some((key, value)) = word.split_once('=') else {
                return false;
            };
            let values = || value.split(',');
            match key {
                "iommu" => values().any(|v| v == "pt" || v == "off"),
                "iommu.passthrough" => matches!(value, "1" | "y" | "Y" | "on"),
                "amd_iommu" => values().any(|v| v == "off" || v == "pgtbl_v2"),
                _ => false,
            }
        })
        .map(str::to_string)
        .collect()
}

fn iommu_check(root: &Root) -> Check {
    let name = "IOMMU";
    let needed = "enabled, translating (no passthrough)";
    let mut units: Vec<String> = std::fs::read_dir(root.path("/sys/class/iommu"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    units.sort();
    let refusals = iommu_refusals(&root.read("/proc/cmdline").unwrap_or_default());
    let cmdline_help = |words: &[String]| {
        format!(
            "take {} off the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then \
             `update-grub` or `grub2-mkconfig -o /boot/grub2/grub.cfg`)",
            words
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if units.is_empty() {
        let mut help = "SNP needs the IOMMU: enable it in the BIOS (NBIO Common Options > IOMMU: \
                        Enabled, and IOMMU/Security > SEV-SNP Support: Enable)"
            .to_string();
        if !refusals.is_empty() {
            help.push_str(&format!(", {}", cmdline_help(&refusals)));
        }
        help.push_str(", and reboot");
        return Check::new(name, Status::Failed, "none in /sys/class/iommu")
            .needed(needed)
            .help(help);
    }
    let found = format!("{} (/sys/class/iommu)", units.join(" "));
    if refusals.is_empty() {
        return Check::new(name, Status::Ok, found).needed(needed);
    }
    Check::new(
        name,
        Status::Failed,
        format!("{found}; /proc/cmdline has {}", refusals.join(" ")),
    )
    .needed(needed)
    .help(format!(
        "the kernel turns SNP off when the IOMMU is off or in passthrough (\"SNP: IOMMU disabled \
         or configured in passthrough mode\"): {}, and reboot",
        cmdline_help(&refusals)
    ))
}

// ---------------------------------------------------------------------------
// libvirt

/// libvirt's daemons: the monolithic one, and the modular QEMU driver's.
const LIBVIRT_DAEMONS: [&str; 2] = ["/usr/sbin/libvirtd", "/usr/sbin/virtqemud"];

/// Debian's packages that carry libvirt's version (one source version).
const LIBVIRT_DEBS: [&str; 3] = ["libvirt-daemon", "libvirt-daemon-system", "libvirt0"];

/// `Version:` of the first installed `packages` entry in a dpkg status
/// file, as (package, version).
fn dpkg_version(status: &str, packages: &[&str]) -> Option<(String, String)> {
    let mut installed = Vec::new();
    for stanza in status.split("\n\n") {
        let field = |key: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            })
        };
        let (Some(package), Some(state), Some(version)) =
            (field("Package"), field("Status"), field("Version"))
        else {
            continue;
        };
        if state.ends_with(" installed") && packages.contains(&package.as_str()) {
            installed.push((package, version));
        }
    }
    packages
        .iter()
        .find_map(|p| installed.iter().find(|(name, _)| name == p).cloned())
}

/// The upstream version in a Debian version: `1:10.6.0-1ubuntu2` is 10.6.0.
fn debian_upstream(version: &str) -> Option<String> {
    let without_epoch = version.split_once(':').map_or(version, |(_, v)| v);
    version_in(without_epoch)
}

/// libvirt, when installed, is [`LIBVIRT`] or later.
pub fn libvirt_check(root: &Root) -> Check {
    let name = "libvirt";
    let needed = format!("{} (when installed)", LIBVIRT.or_later());
    let daemons: Vec<&str> = LIBVIRT_DAEMONS
        .into_iter()
        .filter(|d| root.path(d).exists())
        .collect();
    if daemons.is_empty() {
        return Check::new(
            name,
            Status::Info,
            "not installed (QEMU runs SNP guests without it)",
        )
        .needed(needed);
    }
    let asked = root
        .is_real()
        .then(|| {
            daemons.iter().find_map(|d| {
                let out =
                    crate::exec::capture(&Cmd::new(d, std::path::Path::new("/")).arg("--version"))
                        .ok()
                        .filter(|o| o.success)?;
                Some((version_in(&out.stdout)?, format!("`{d} --version`")))
            })
        })
        .flatten();
    let recorded = || {
        let status = root.read("/var/lib/dpkg/status")?;
        let (package, version) = dpkg_version(&status, &LIBVIRT_DEBS)?;
        Some((
            debian_upstream(&version)?,
            format!("dpkg: {package} {version}"),
        ))
    };
    let Some((version, source)) = asked.or_else(recorded) else {
        return Check::new(
            name,
            Status::Unverified,
            format!("installed ({}), version unknown", daemons.join(", ")),
        )
        .needed(needed)
        .help(format!(
            "see `{} --version`: SNP guests through libvirt need libvirt {}",
            daemons[0],
            LIBVIRT.or_later()
        ));
    };
    let found = format!("{version} ({source})");
    if LIBVIRT.met_by(&version) {
        Check::new(name, Status::Ok, found).needed(needed)
    } else {
        Check::new(name, Status::TooOld, found)
            .needed(needed)
            .help(format!(
                "SNP guests through libvirt need libvirt {}: install a newer one from the \
             distribution (or its backports), or remove libvirt and start guests with the \
             release's launch-qemu.sh",
                LIBVIRT.or_later()
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_lines_as_the_ccp_driver_prints_them() {
        let log = "\
[    5.1] ccp 0000:a9:00.5: sev enabled
[    5.2] ccp 0000:a9:00.5: SEV API:1.55 build:21
[    5.3] ccp 0000:a9:00.5: SEV-SNP API:1.58 build:5
[    5.4] kvm_amd: SEV-SNP enabled (ASIDs 1 - 98)
";
        assert_eq!(
            newest_firmware_line(log),
            Some(FirmwareLine {
                snp: true,
                api: "1.58".into(),
                build: Some("5".into())
            })
        );
        // Without SNP's line, SEV's (the same firmware).
        let sev = newest_firmware_line("ccp 0000:a9:00.5: SEV API:1.49 build:6\n").unwrap();
        assert!(!sev.snp && sev.api == "1.49");
        // A later boot's line wins.
        let two = "SEV-SNP API:1.51 build:1\nSEV-SNP API:1.55 build:3\n";
        assert_eq!(newest_firmware_line(two).unwrap().api, "1.55");
        assert_eq!(newest_firmware_line("SEV-SNP: RMP table\n"), None);
    }

    #[test]
    fn iommu_passthrough_and_off_are_named() {
        assert!(iommu_refusals("BOOT_IMAGE=/vmlinuz root=UUID=1 ro quiet").is_empty());
        assert_eq!(
            iommu_refusals("ro iommu=pt amd_iommu=on"),
            vec!["iommu=pt".to_string()]
        );
        assert_eq!(
            iommu_refusals("amd_iommu=fullflush,off iommu.passthrough=1 iommu=nopt"),
            vec!["amd_iommu=fullflush,off", "iommu.passthrough=1"]
        );
        assert_eq!(
            iommu_refusals("amd_iommu=pgtbl_v2"),
            vec!["amd_iommu=pgtbl_v2"]
        );
    }

    #[test]
    fn libvirt_version_from_dpkg_status() {
        let status = "\
Package: libvirt-clients
Status: install ok installed
Version: 9.0.0-4

Package: libvirt-daemon
Status: deinstall ok config-files
Version: 9.0.0-4

Package: libvirt0
Status: install ok installed
Architecture: amd64
Version: 1:10.6.0-1ubuntu2
";
        let (package, version) = dpkg_version(status, &LIBVIRT_DEBS).unwrap();
        assert_eq!(package, "libvirt0");
        assert_eq!(debian_upstream(&version).as_deref(), Some("10.6.0"));
        assert_eq!(dpkg_version("Package: x\n", &LIBVIRT_DEBS), None);
    }
}
