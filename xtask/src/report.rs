//! What `cargo xtask bench` and `cargo xtask e2e-real` share: the release
//! binary, running it with measurements, the machine description, and
//! `BENCHMARKS.md`, where each command owns one section between
//! `<!-- NAME:start -->` and `<!-- NAME:end -->` and replaces only that.

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// cargo's target directory: `CARGO_TARGET_DIR` when set (a shared or
/// per-worktree one), else `target/` at the workspace root.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds `snp-build` in release mode and returns its path.
pub fn release_binary() -> Result<PathBuf> {
    let root = workspace_root();
    eprintln!("building snp-build (cargo build --release -p snp-build) ...");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "snp-build"])
        .current_dir(&root)
        .status()
        .context("running cargo build --release")?;
    ensure!(status.success(), "cargo build --release failed: {status}");
    let bin = target_dir().join("release/snp-build");
    ensure!(bin.is_file(), "{} was not built", bin.display());
    Ok(bin)
}

/// One finished run of a command.
#[derive(Debug)]
pub struct Run {
    pub wall: Duration,
    pub status: std::process::ExitStatus,
    pub stdout: String,
    /// `ru_maxrss` from `wait4`: the largest RSS of the process or of any
    /// descendant it waited for, in KiB.
    pub tree_max_rss_kib: u64,
    /// The process's own peak RSS (`VmHWM` in `/proc/PID/status`), sampled
    /// every 20 ms while it runs, in KiB; a lower bound.
    pub own_hwm_kib: u64,
    /// User + system CPU time of the process and every descendant it
    /// waited for (`wait4`'s rusage): all the work the run did.
    pub cpu: Duration,
}

impl Run {
    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "parsing the JSON summary: {}",
                self.stdout.chars().take(400).collect::<String>()
            )
        })
    }
}

/// Runs `cmd` to completion: stdout captured, stderr passed through (or
/// discarded with `quiet`), wall time, and peak memory measured.
pub fn measure(cmd: &mut Command, quiet: bool) -> Result<Run> {
    cmd.stdout(Stdio::piped());
    if quiet {
        cmd.stderr(Stdio::null());
    }
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let done = Arc::new(AtomicBool::new(false));
    let hwm = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, hwm) = (done.clone(), hwm.clone());
        std::thread::spawn(move || {
            let status = format!("/proc/{pid}/status");
            while !done.load(Ordering::SeqCst) {
                if let Some(kib) = fs::read_to_string(&status).ok().and_then(|s| vm_hwm(&s)) {
                    hwm.fetch_max(kib, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)
            .context("reading the command's stdout")?;
    }
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet waited for (std's Child is
    // never waited on after this); both pointers are valid for the call.
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    done.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    if got != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    std::mem::forget(child);
    use std::os::unix::process::ExitStatusExt;
    Ok(Run {
        wall,
        status: std::process::ExitStatus::from_raw(status),
        stdout,
        tree_max_rss_kib: usage.ru_maxrss as u64,
        own_hwm_kib: hwm.load(Ordering::SeqCst),
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
    })
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// How close a run came to the machine's limit: the five numbers of one
/// row of the "at the limit" table (wall, CPU of every child, utilisation
/// = CPU / (wall x cores), the limit = CPU / cores, wall / limit).
pub fn efficiency_row(label: &str, run: &Run, cores: usize) -> String {
    let (wall, cpu) = (run.wall.as_secs_f64(), run.cpu.as_secs_f64());
    let cores = cores.max(1) as f64;
    let limit = cpu / cores;
    format!(
        "| {label} | {} | {} | {:.2} | {} | {:.2} |",
        secs(run.wall),
        secs(run.cpu),
        if wall > 0.0 {
            cpu / (wall * cores)
        } else {
            0.0
        },
        secs(Duration::from_secs_f64(limit)),
        if limit > 0.0 { wall / limit } else { 0.0 }
    )
}

/// The header of that table.
pub const EFFICIENCY_HEADER: &str = "| build | wall | CPU (all children) | utilisation (CPU / (wall x cores)) | limit (CPU / cores) | wall / limit |\n|---|---|---|---|---|---|";

fn vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `cmd` and fails with its output when it fails; returns stdout.
pub fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with stdout and stderr passed through; fails when it fails.
pub fn run_visible(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed with {status}");
    Ok(())
}

/// The machine, as a Markdown list: nproc, memory, CPU model, OS, rustc
/// version, date.
pub fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kib: u64 = m
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown".into());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let os = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|o| {
            o.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let load = fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!(
        "Machine: {nproc} CPUs ({cpu}), {mem} RAM, {os}, {rustc}; taken {date} \
         (1-minute load average at the start: {load}).\n"
    )
}

/// Replaces the section `name` of the Markdown file `path` (the text
/// between `<!-- name:start -->` and `<!-- name:end -->`, markers kept)
/// with `body`, or appends the section; other sections are left as they are.
pub fn write_section(path: &Path, name: &str, body: &str) -> Result<()> {
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let old = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::from(
            "# Benchmarks\n\nMeasured by `cargo xtask bench` and `cargo xtask e2e-real`; each \
             command rewrites only its own section (between its `<!-- NAME:start -->` and \
             `<!-- NAME:end -->` markers).\n",
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let section = format!("{start}\n{}\n{end}", body.trim_end());
    let new = match (old.find(&start), old.find(&end)) {
        (Some(s), Some(e)) if s < e => {
            format!("{}{section}{}", &old[..s], &old[e + end.len()..])
        }
        (None, None) => format!("{}\n\n{section}\n", old.trim_end()),
        _ => bail!(
            "{}: the markers {start} and {end} are unbalanced; fix them by hand",
            path.display()
        ),
    };
    fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

/// Bytes used on disk by everything under `path` (allocated blocks, hard
/// links counted once), as `du -s` does.
pub fn disk_usage(path: &Path) -> Result<u64> {
    let out = run_ok(Command::new("du").args(["-s", "-B1"]).arg(path))?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("reading du's output {out:?}"))
}

/// Bytes used on disk by several paths together (shared hard links once).
pub fn disk_usage_all(paths: &[PathBuf]) -> Result<u64> {
    let out = run_ok(Command::new("du").args(["-s", "-c", "-B1"]).args(paths))?;
    out.lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("reading du's output {out:?}"))
}

/// `1.23 s` / `45 ms`.
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.1} s")
    }
}

/// `12.3 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

/// The stages a build's JSON summary says ran (`status` = `ok`), plus
/// `release` when the release was made.
pub fn stages_ran(summary: &Value) -> Vec<String> {
    let mut ran: Vec<String> = summary["stages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["status"] == "ok")
                .filter_map(|s| s["stage"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if summary["release"]["status"] == "ok" {
        ran.push("release".into());
    }
    ran
}

/// Each stage's `(name, status, duration_s)` from a build's JSON summary.
pub fn stage_times(summary: &Value) -> Vec<(String, String, f64)> {
    summary["stages"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["stage"].as_str().unwrap_or("?").to_string(),
                        s["status"].as_str().unwrap_or("?").to_string(),
                        s["duration_s"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every file under `dir` with its size and mtime, to tell later whether
/// any was rewritten.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if let Ok(m) = e.metadata()
            && m.is_file()
        {
            out.push((
                e.path(),
                m.len(),
                m.modified().unwrap_or(std::time::UNIX_EPOCH),
            ));
        }
    }
    out.sort();
    out
}

/// Runs `cmd` (its environment and directory kept, its output dropped)
/// under `strace -f`, tracing `syscalls` (signals not shown); the run's
/// status and the trace's text. `None` when strace is missing or wrote
/// no trace (it cannot trace here).
pub fn strace(
    cmd: &Command,
    trace_file: &Path,
    syscalls: &str,
) -> Result<Option<(std::process::ExitStatus, String)>> {
    if Command::new("strace").arg("-V").output().is_err() {
        return Ok(None);
    }
    let mut traced = Command::new("strace");
    traced
        .args(["-f", "-qq", "-s", "256", "-e"])
        .arg(format!("trace={syscalls}"))
        .args(["-e", "signal=none", "-o"])
        .arg(trace_file)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(dir) = cmd.get_current_dir() {
        traced.current_dir(dir);
    }
    let status = traced.status().context("running strace")?;
    Ok(fs::read_to_string(trace_file)
        .ok()
        .map(|trace| (status, trace)))
}

/// Counts the programs a command executes (successful `execve` calls
/// after the first) with `strace -f`; `None` when strace is missing or
/// cannot trace here. The traced run is slower: time it separately.
pub fn count_execs(cmd: &Command, trace_file: &Path) -> Result<Option<(usize, Vec<String>)>> {
    let Some((status, trace)) = strace(cmd, trace_file, "execve,execveat")? else {
        return Ok(None);
    };
    if !status.success() && trace.is_empty() {
        return Ok(None);
    }
    let execs: Vec<String> = trace
        .lines()
        .filter(|l| l.contains("execve") && l.trim_end().ends_with("= 0"))
        .map(|l| {
            // A call interleaved with another process's shows up as
            // `<... execve resumed>) = 0`, without the path.
            l.find('"')
                .and_then(|s| {
                    let len = l[s + 1..].find('"')?;
                    Some(l[s + 1..s + 1 + len].to_string())
                })
                .unwrap_or_else(|| "?".into())
        })
        .collect();
    Ok(Some((
        execs.len().saturating_sub(1),
        execs.into_iter().skip(1).collect(),
    )))
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Makes `cmd` the "second builder" of the reproducibility checks: umask
/// 077, `TZ=Asia/Tokyo`, `LANG`/`LC_ALL=de_DE.UTF-8` (its directories are
/// the caller's to choose).
pub fn as_second_builder(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    cmd.env("TZ", "Asia/Tokyo")
        .env("LANG", "de_DE.UTF-8")
        .env("LC_ALL", "de_DE.UTF-8");
    // SAFETY: umask is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    cmd
}
