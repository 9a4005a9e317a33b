//! The bench's shared-cache row (issue 17): box A builds cold and pushes
//! to a real registry on loopback; box B, an empty work dir at another
//! path with the same pins (and lock), pulls. Measured side by side in one
//! run: B's wall time as a fraction of A's, the bytes B pulled, the
//! programs B ran (by `strace`, in a third, untimed box like B) and
//! whether B's tarball is A's, byte for byte.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::build_dir::Build;
use crate::registry::OciRegistry;
use crate::report::{self, mib, secs};

/// One box: a bench build dir (work, install, output: `build_dir::Build`)
/// with its own machine config, sharing through `remote` in `mode`.
struct Box_<'a> {
    build: Build<'a>,
}

impl<'a> Box_<'a> {
    fn new(bin: &'a Path, pins: &Path, root: PathBuf, remote: &str, mode: &str) -> Result<Self> {
        let config = root.join("xdg/snp-build");
        fs::create_dir_all(&config)?;
        fs::create_dir_all(root.join("out"))?;
        fs::write(
            config.join("config.toml"),
            format!("[cache]\nremote = \"{remote}\"\nmode = \"{mode}\"\ninsecure = true\n"),
        )?;
        Ok(Box_ {
            build: Build {
                bin,
                pins: pins.to_path_buf(),
                root,
            },
        })
    }

    fn command(&self) -> Command {
        let mut c = self.build.build_command(&[]);
        c.env("XDG_CONFIG_HOME", self.build.root.join("xdg"));
        c
    }

    fn tarball(&self) -> Result<Vec<u8>> {
        let path = self.build.tarball();
        fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }
}

fn statuses(json: &Value) -> Vec<String> {
    json["stages"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| {
                    format!(
                        "{} {}",
                        s["stage"].as_str().unwrap_or("?"),
                        s["status"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether an exec is a tool version query (`gcc --version`, `nasm -v`,
/// `pkg-config --modversion X`, `perl -e 'print $^V'`, python3's module
/// check): the fingerprint's, which the issue does not count.
fn is_version_probe(argv: &str) -> bool {
    [
        "\"--version\"",
        "\"-v\"",
        "\"-V\"",
        "\"--modversion\"",
        "\"print $^V\"",
        "import ",
    ]
    .iter()
    .any(|p| argv.contains(p))
}

/// The rows and notes.
pub fn rows(bin: &Path, pins: &Path, dir: &Path) -> Result<(Vec<[String; 3]>, Vec<String>)> {
    let reg = OciRegistry::start(false);
    let remote = reg.remote("bench/snp");
    let a = Box_::new(bin, pins, dir.join("box-a"), &remote, "read-write")?;
    eprintln!("bench: shared cache, box A (cold, pushes to {remote})");
    let run_a = report::measure(&mut a.command(), true)?;
    ensure!(run_a.status.success(), "box A failed: {}", run_a.stdout);
    let json_a = run_a.json()?;
    let b = Box_::new(
        bin,
        pins,
        dir.join("elsewhere/another/path/box-b"),
        &remote,
        "read-only",
    )?;
    eprintln!("bench: shared cache, box B (empty work dir elsewhere, pulls)");
    let run_b = report::measure(&mut b.command(), true)?;
    ensure!(run_b.status.success(), "box B failed: {}", run_b.stdout);
    let json_b = run_b.json()?;
    let pulled: Vec<&Value> = json_b["stages"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["status"] == "pulled").collect())
        .unwrap_or_default();
    let bytes: u64 = pulled
        .iter()
        .filter_map(|s| s["pulled"]["bytes"].as_u64())
        .sum();
    let trees: Vec<String> = ["qemu", "ovmf", "kernel-guest", "kernel-host"]
        .iter()
        .filter(|s| b.build.root.join("work").join(s).join("src").exists())
        .map(|s| s.to_string())
        .collect();
    // The programs a box like B runs, traced (untimed).
    let traced = Box_::new(
        bin,
        pins,
        dir.join("elsewhere/box-b-traced"),
        &remote,
        "read-only",
    )?;
    let execs = traced_execs(&traced.command(), &dir.join("box-b.strace"))?;
    let (probes, others): (Vec<_>, Vec<_>) = execs.into_iter().partition(|(_, probe)| *probe);
    let others: Vec<String> = others.into_iter().map(|(argv, _)| argv).collect();
    let same = a.tarball()? == b.tarball()? && b.tarball()? == traced.tarball()?;
    let fraction = run_b.wall.as_secs_f64() / run_a.wall.as_secs_f64();
    let mut rows = vec![[
        "Shared cache: box B (empty work dir at another path, same pins, warm registry) vs box A (cold, pushes)".to_string(),
        format!("{} vs {} ({:.1}%)", secs(run_b.wall), secs(run_a.wall), 100.0 * fraction),
        format!(
            "target at most 5%: {}; B: {} of {} stages pulled, {} pulled, source trees fetched: {}",
            if fraction <= 0.05 { "met" } else { "MISSED" },
            pulled.len(),
            json_b["stages"].as_array().map_or(0, Vec::len),
            mib(bytes),
            if trees.is_empty() { "none".to_string() } else { trees.join(", ") },
        ),
    ]];
    rows.push([
        "Shared cache: build subprocesses on box B".to_string(),
        others.len().to_string(),
        format!(
            "target 0: {}; `strace -f -e trace=execve` on a third box like B saw {} programs run by tool version queries (not counted){}",
            if others.is_empty() { "met" } else { "MISSED" },
            probes.len(),
            if others.is_empty() {
                String::new()
            } else {
                format!(" and: {}", others.join("; "))
            }
        ),
    ]);
    rows.push([
        "Shared cache: B's tarball against A's".to_string(),
        if same {
            "byte-identical".into()
        } else {
            "DIFFERENT".into()
        },
        format!(
            "A built and pushed, B pulled (other work dir, install dir and output dir); SHA-256 {}",
            &report::sha256_hex(&b.tarball()?)[..16]
        ),
    ]);
    let notes = vec![format!(
        "Shared cache: box A {}; box B {}.",
        statuses(&json_a).join(", "),
        statuses(&json_b).join(", ")
    )];
    Ok((rows, notes))
}

/// Every program a command runs, by `strace -f`, each with its argv and
/// whether it is a tool version query or runs under one (a `pyenv` shim
/// behind `python3 --version`, `pkg-config`'s own helpers): the
/// fingerprint's probes, which the issue does not count. The command
/// itself (the first exec) is left out.
fn traced_execs(cmd: &Command, trace: &Path) -> Result<Vec<(String, bool)>> {
    let (status, text) = report::strace(cmd, trace, "execve,clone,clone3,fork,vfork")?
        .context("strace is missing or cannot trace here (apt-get install strace)")?;
    ensure!(status.success(), "the traced box failed ({status})");
    let mut parent: std::collections::HashMap<u32, u32> = Default::default();
    let mut execs: Vec<(u32, String)> = Vec::new();
    let mut pending: std::collections::HashMap<u32, String> = Default::default();
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.trim().parse::<u32>() else {
            continue;
        };
        let result = rest.trim_end().rsplit_once("= ").map(|(_, r)| r.trim());
        let argv = || {
            let start = rest.find("execve(").map_or(0, |i| i + 7);
            let end = rest.find("], ").map_or(rest.len(), |i| i + 1);
            rest[start..end.max(start)].to_string()
        };
        // A call another process interrupted is split in two lines: the
        // argv on the first (`<unfinished ...>`), the result on the second.
        if rest.contains("execve(") && rest.trim_end().ends_with("<unfinished ...>") {
            pending.insert(pid, argv());
        } else if rest.contains("execve resumed") {
            if let Some(argv) = pending.remove(&pid).filter(|_| result == Some("0")) {
                execs.push((pid, argv));
            }
        } else if rest.contains("execve(") && result == Some("0") {
            execs.push((pid, argv()));
        } else if ["clone", "fork"].iter().any(|c| rest.contains(c))
            && let Some(child) = result.and_then(|r| r.split_whitespace().next()?.parse().ok())
        {
            parent.insert(child, pid);
        }
    }
    let probes: std::collections::HashSet<u32> = execs
        .iter()
        .filter(|(_, argv)| is_version_probe(argv))
        .map(|(pid, _)| *pid)
        .collect();
    let under_probe = |mut pid: u32| loop {
        if probes.contains(&pid) {
            return true;
        }
        match parent.get(&pid) {
            Some(p) => pid = *p,
            None => return false,
        }
    };
    Ok(execs
        .into_iter()
        .skip(1)
        .map(|(pid, argv)| (argv, under_probe(pid)))
        .collect())
}
