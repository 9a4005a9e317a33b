//! The boot check: the release's own QEMU boots the release's firmware
//! under TCG (no KVM, no SEV: any build box) and the serial console is
//! read until it shows what that boot should reach.
//!
//! - A unified OVMF image (`OVMF.fd`, from `OvmfPkgX64`) reaches the UEFI
//!   Shell's `Shell>` prompt with no disk.
//! - An AmdSevX64 image (`OVMF.amdsev.fd`, once the OVMF stage builds it)
//!   has no shell: it is booted with the built guest kernel
//!   (`-kernel`, `console=ttyS0`). Outside an SEV guest it cannot run
//!   that kernel: edk2 2025.02's `BlobVerifierLibSevHashes` refuses every
//!   fw_cfg blob when QEMU put no hashes table into the launch (only an
//!   SEV guest with `kernel-hashes=on` has one), and says so on its debug
//!   console. That message (or the kernel's banner, should a later
//!   firmware boot it) is how far the check asks it to get: SEC, PEI, DXE
//!   and BDS ran, and BDS fetched the kernel.
//! - The guest kernel also boots under `OVMF.fd` the same way, when its
//!   verified config has a serial console (the upstream stack's pins
//!   give it one; a bare tinyconfig has none, which the check names).
//!
//! Every boot's console is kept in `DIR/e2e/boot-*.log`. QEMU runs with
//! `-nodefaults` (Debian's QEMU source strips the VGA and NIC option ROMs
//! the default devices would load) and is killed when the marker shows or
//! the time is up.

use anyhow::{Context, Result, ensure};
use std::fs;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::report::{run_ok, secs};

/// How long a TCG boot may take on a shared 2-core box (OVMF to the
/// shell took under 20 s here; a DEBUG OVMF logs a lot on the serial port).
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a kernel may run on after its banner: to its panic (no root
/// file system) under TCG.
const KERNEL_RUN_ON: Duration = Duration::from_secs(120);

/// What a kernel prints first on its console.
const KERNEL_BANNER: &str = "Linux version";

/// What AmdSevX64's blob verifier (edk2 2025.02,
/// `OvmfPkg/AmdSev/BlobVerifierLibSevHashes`) prints when the launch has
/// no kernel hashes table, i.e. outside an SEV guest.
const AMDSEV_NO_HASHES: &str = "Verifier called but no hashes table";

/// The firmware images `launch-qemu.sh` can boot, by file name.
const UNIFIED_FIRMWARE: &[&str] = &["OVMF.fd", "OVMF.amdsev.fd"];

/// One boot.
struct Boot<'a> {
    firmware: &'a Path,
    /// A kernel booted directly, and its command line.
    kernel: Option<(&'a Path, &'a str)>,
    /// What the console must show: any one of these.
    markers: &'static [&'static str],
    /// How long to read on once a marker showed (a kernel runs on to where
    /// it stops: with no root file system it panics, and `panic=-1` with
    /// `-no-reboot` ends QEMU).
    run_on: Duration,
    log: PathBuf,
}

/// What a boot showed.
struct Outcome {
    /// The marker the console showed.
    reached: Option<&'static str>,
    elapsed: Duration,
    /// The console's last non-empty lines (escape codes removed).
    tail: Vec<String>,
}

impl Boot<'_> {
    fn run(&self, qemu: &Path) -> Result<Outcome> {
        let mut cmd = Command::new(qemu);
        cmd.args(["-machine", "q35", "-accel", "tcg", "-m", "512"])
            .args(["-nodefaults", "-display", "none", "-serial", "stdio"])
            .args(["-no-reboot", "-bios"])
            .arg(self.firmware);
        if let Some((kernel, append)) = self.kernel {
            cmd.arg("-kernel").arg(kernel).arg("-append").arg(append);
        }
        let mut log = fs::File::create(&self.log)
            .with_context(|| format!("creating {}", self.log.display()))?;
        writeln!(log, "# {cmd:?}")?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", qemu.display()))?;
        let started = Instant::now();
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        for mut out in [
            Box::new(child.stdout.take().context("no stdout")?) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().context("no stderr")?),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut console = Vec::new();
        let mut reached = None;
        let mut seen = Instant::now();
        while started.elapsed() < BOOT_TIMEOUT {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(bytes) => {
                    log.write_all(&bytes)?;
                    console.extend_from_slice(&bytes);
                    if reached.is_none() {
                        reached = self
                            .markers
                            .iter()
                            .copied()
                            .find(|m| contains(&console, m.as_bytes()));
                        if reached.is_some() {
                            seen = Instant::now();
                        }
                    }
                    if reached.is_some() && seen.elapsed() >= self.run_on {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if reached.is_some() && seen.elapsed() >= self.run_on {
                        break;
                    }
                }
                // QEMU exited (e.g. a kernel panic with -no-reboot).
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let elapsed = started.elapsed();
        // The child this function started, by its own handle.
        let _ = child.kill();
        let _ = child.wait();
        let text = strip_escapes(&String::from_utf8_lossy(&console));
        let mut tail: Vec<String> = text
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        tail = tail.split_off(tail.len().saturating_sub(3));
        Ok(Outcome {
            reached,
            elapsed,
            tail,
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Text without ANSI escape sequences (the UEFI console's colours and
/// cursor moves).
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// Boots what the release holds (see the module documentation); every
/// passed boot is pushed onto `checks`. `scratch` holds the consoles and
/// the unpacked guest kernel.
pub(super) fn check_boots(
    release: &Path,
    guest_config: &Path,
    scratch: &Path,
    checks: &mut Vec<String>,
) -> Result<()> {
    let qemu = release.join("usr/local/bin/qemu-system-x86_64");
    let firmware_dir = release.join("usr/local/share/qemu");
    let kernel = guest_kernel(release, guest_config, scratch)?;
    let append = "console=ttyS0 earlyprintk=serial panic=-1";
    let mut booted = 0;
    for name in UNIFIED_FIRMWARE {
        let firmware = firmware_dir.join(name);
        if !firmware.is_file() {
            continue;
        }
        let amdsev = name.contains("amdsev");
        let mut boots = Vec::new();
        if !amdsev {
            boots.push(Boot {
                firmware: &firmware,
                kernel: None,
                markers: &["Shell>"],
                run_on: Duration::ZERO,
                log: scratch.join(format!("boot-{name}-shell.log")),
            });
        }
        match &kernel {
            Ok(k) => boots.push(Boot {
                firmware: &firmware,
                kernel: Some((k, append)),
                markers: if amdsev {
                    &[KERNEL_BANNER, AMDSEV_NO_HASHES]
                } else {
                    &[KERNEL_BANNER]
                },
                run_on: KERNEL_RUN_ON,
                log: scratch.join(format!("boot-{name}-kernel.log")),
            }),
            Err(why) if amdsev => {
                anyhow::bail!("{name} has no shell and the guest kernel cannot boot: {why}")
            }
            Err(why) => checks.push(format!(
                "boot {name} with the guest kernel: not run ({why})"
            )),
        }
        for boot in boots {
            eprintln!(
                "e2e-real: booting {name}{} under TCG, waiting for {:?}",
                if boot.kernel.is_some() {
                    " with the guest kernel"
                } else {
                    ""
                },
                boot.markers
            );
            let out = boot.run(&qemu)?;
            let Some(reached) = out.reached else {
                anyhow::bail!(
                    "booting {name} under TCG: none of {:?} on the console after {}; last \
                     lines: {:?} (console in {})",
                    boot.markers,
                    secs(out.elapsed),
                    out.tail,
                    boot.log.display()
                );
            };
            checks.push(match (boot.kernel, reached) {
                (None, _) => format!(
                    "boot: the release's QEMU (TCG, q35) boots {name} to the UEFI `Shell>` in {}",
                    secs(out.elapsed)
                ),
                (Some(_), AMDSEV_NO_HASHES) => format!(
                    "boot: the release's QEMU (TCG, q35) runs {name} with the guest kernel \
                     (`-kernel`) through to BDS, which fetches the kernel and refuses it as \
                     it must outside SEV (`{AMDSEV_NO_HASHES}`: no kernel hashes table), in {}",
                    secs(out.elapsed)
                ),
                (Some(_), _) => format!(
                    "boot: the release's QEMU (TCG, q35) boots the guest kernel through {name} \
                     (`-kernel`, console=ttyS0): `{}`, and it runs to `{}` ({} in all)",
                    line_from(&boot.log, KERNEL_BANNER, " (")
                        .unwrap_or_else(|| KERNEL_BANNER.into()),
                    line_from(&boot.log, "Kernel panic", ".")
                        .or_else(|| out.tail.last().cloned())
                        .unwrap_or_default(),
                    secs(out.elapsed)
                ),
            });
            booted += 1;
        }
    }
    ensure!(
        booted > 0,
        "no unified firmware ({}) in {} to boot",
        UNIFIED_FIRMWARE.join(", "),
        firmware_dir.display()
    );
    Ok(())
}

/// The first console line holding `marker`, from the marker up to `end`.
fn line_from(log: &Path, marker: &str, end: &str) -> Option<String> {
    let text = strip_escapes(&String::from_utf8_lossy(&fs::read(log).ok()?));
    let line = text.lines().find(|l| l.contains(marker))?;
    let from = &line[line.find(marker)?..];
    Some(from.split(end).next().unwrap_or(from).trim().to_string())
}

/// The guest kernel's image from the release's `linux/guest/linux-image-*`
/// package, unpacked into `scratch`; an error says why it cannot boot to
/// a console.
fn guest_kernel(release: &Path, config: &Path, scratch: &Path) -> Result<Result<PathBuf, String>> {
    let text =
        fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    if !text.lines().any(|l| l == "CONFIG_SERIAL_8250_CONSOLE=y") {
        return Ok(Err(
            "its config has no serial console (CONFIG_SERIAL_8250_CONSOLE)".into(),
        ));
    }
    let dir = release.join("linux/guest");
    let Some(deb) = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("linux-image-") && !n.contains("-dbg") && n.ends_with(".deb")
            })
        })
    else {
        return Ok(Err(format!("no linux-image-*.deb in {}", dir.display())));
    };
    let unpacked = scratch.join("guest-kernel");
    super::remove(&unpacked)?;
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    let boot = unpacked.join("boot");
    Ok(fs::read_dir(&boot)
        .with_context(|| format!("reading {}", boot.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| format!("no boot/vmlinuz-* in {}", deb.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(
            strip_escapes("\u{1b}[1m\u{1b}[33mShell> \u{1b}[0m\r\n"),
            "Shell> \n"
        );
    }
}
