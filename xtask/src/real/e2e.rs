//! `cargo xtask e2e-real [--stack amd|upstream] DIR`: the repos
//! `real-sources` made, built by snp-build end to end and checked as a
//! user would (see `docs/real-trees.md`).

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Stack, check_one_stack, remove};
use crate::fixtures;
use crate::report::{self, run_ok, secs};

/// `cargo xtask e2e-real DIR`: see the module documentation and
/// `docs/real-trees.md`.
pub fn e2e_real(dir: &Path, stack: Stack, jobs: usize, out_md: &Path, keep: bool) -> Result<()> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{} (run `cargo xtask real-sources` first)", dir.display()))?;
    check_one_stack(&dir, stack)?;
    let pins = dir.join(stack.pin_file());
    ensure!(
        pins.is_file(),
        "{} is missing: run `cargo xtask real-sources --stack {} {}` first",
        pins.display(),
        stack.name(),
        dir.display()
    );
    let machine = report::machine();
    let bin = report::release_binary()?;
    let e2e = dir.join("e2e");
    if !keep {
        remove(&e2e)?;
    }
    fs::create_dir_all(&e2e)?;
    let work = e2e.join("work");
    let install = e2e.join("usr/local");
    let output = e2e.join("out");
    fs::create_dir_all(&output)?;
    let snp = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("--config")
            .arg(&pins)
            .arg("--work-dir")
            .arg(&work)
            .arg("--install")
            .arg(&install)
            .arg("-j")
            .arg(jobs.to_string())
            .args(args)
            .current_dir(&e2e);
        c
    };
    let mut checks: Vec<String> = Vec::new();

    // 1. doctor --fix: what is missing installed by the doctor itself.
    eprintln!("e2e-real: snp-build doctor --fix");
    let doctor = snp(&["doctor", "--fix", "--json"])
        .stderr(Stdio::inherit())
        .output()
        .context("running snp-build doctor --fix")?;
    let report: Value = serde_json::from_slice(&doctor.stdout)
        .context("snp-build doctor --fix --json printed no JSON document")?;
    ensure!(
        doctor.status.success(),
        "snp-build doctor --fix: still not ready ({}): {}",
        doctor.status,
        report["error"]
    );
    let installed = report["fix"]["packages"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    checks.push(if installed.is_empty() {
        "doctor: ready".into()
    } else {
        format!("doctor --fix: ready after installing {installed}")
    });

    // 2. Fetching the kernels, against build.sh's clone + cp -r, shallow
    // over git:// as from AMD's https (the cold build below fetches from
    // file:// URLs, which libgit2 fetches whole). The amd stack only: the
    // fetch is the same code for any kernel tree.
    let race_rows = if stack == Stack::Amd {
        eprintln!("e2e-real: kernel fetch race (git daemon on loopback)");
        let race = crate::fetch::kernel_race(
            &bin,
            &fs::read_to_string(&pins)?,
            &fixtures::file_url(&dir.join("linux.git")),
            &dir,
            "linux.git",
            ("snp-host-latest", "snp-guest-latest"),
            &e2e.join("fetch-race"),
        )?;
        remove(&e2e.join("fetch-race"))?;
        race.rows()
    } else {
        Vec::new()
    };

    // 3. The cold build.
    eprintln!("e2e-real: snp-build --package (cold; this takes a while)");
    let out_s = output.to_string_lossy().into_owned();
    // One date for every build here, so a run across midnight stays a no-op.
    let date = run_ok(Command::new("date").args(["-u", "+%Y-%m-%d"]))?
        .trim()
        .to_string();
    let cold = report::measure(
        &mut snp(&["--package", "--json", "--date", &date, "--output", &out_s]),
        false,
    )?;
    let cold_json = cold.json().ok();
    ensure!(
        cold.status.success(),
        "snp-build --package failed ({}); its JSON summary:\n{}",
        cold.status,
        cold.stdout
    );
    let cold_json = cold_json.context("no JSON summary")?;
    eprintln!("e2e-real: cold build took {}", secs(cold.wall));

    // 4. Checks, as a user would.
    check_release(&bin, stack, &cold_json, &work, &e2e, &mut checks)?;

    // 5. The no-op rebuild.
    let noop = report::measure(
        &mut snp(&["--package", "--json", "--date", &date, "--output", &out_s]),
        true,
    )?;
    ensure!(
        noop.status.success(),
        "the no-op rebuild failed: {}",
        noop.stdout
    );
    let noop_json = noop.json()?;
    let ran = report::stages_ran(&noop_json);
    ensure!(ran.is_empty(), "the no-op rebuild ran {ran:?}");
    checks.push(format!(
        "no-op rebuild: nothing ran, {} wall, peak RSS {} MiB",
        secs(noop.wall),
        noop.tree_max_rss_kib / 1024
    ));

    // 6 and 7, the amd stack only (they measure snp-build, whichever
    // trees it builds): one pin moved, and a second builder.
    let changed = if stack == Stack::Amd {
        // 6. A new commit on QEMU's branch that changes one C source file:
        // only qemu and the release rerun, and ninja rebuilds only what depends
        // on that file (configure is left alone).
        let source = QEMU_CHANGED_SOURCE;
        let current = run_ok(
            Command::new("git")
                .arg("-C")
                .arg(dir.join("qemu.git"))
                .args(["show", &format!("snp-latest:{source}")]),
        )?;
        let new_sha = fixtures::commit_file(
            &dir.join("qemu.git"),
            "snp-latest",
            source,
            format!(
                "{current}/* cargo xtask e2e-real: {:?} */\n",
                std::time::SystemTime::now()
            )
            .as_bytes(),
            "util: a new upstream commit changing one source file (cargo xtask e2e-real)",
        )?;
        run_ok(&mut snp(&["update", "qemu"]))?;
        let changed = report::measure(
            &mut snp(&["--package", "--json", "--date", &date, "--output", &out_s]),
            false,
        )?;
        ensure!(
            changed.status.success(),
            "the rebuild after the QEMU commit failed: {}",
            changed.stdout
        );
        let changed_json = changed.json()?;
        let ran = report::stages_ran(&changed_json);
        ensure!(
            ran == ["qemu", "release"],
            "after a new QEMU commit, expected only qemu and the release to rerun, got {ran:?}"
        );
        checks.push(format!(
            "new QEMU commit {} changing {source}: `snp-build update qemu`, rebuild reran {} in {}",
            &new_sha[..12],
            ran.join(" + "),
            secs(changed.wall)
        ));

        // 7. The kernels again, by a second builder: same pins, another work
        // dir, output dir and install prefix, umask 077, another TZ and locale.
        let first_release = PathBuf::from(
            cold_json["release"]["path"]
                .as_str()
                .context("the cold build's summary names no release")?,
        );
        let second = second_builder_kernels(&bin, &pins, &e2e, jobs, &date, &first_release)?;
        checks.push(second);
        Some((changed, changed_json))
    } else {
        None
    };

    // 8. The table.
    if keep {
        checks.push(
            "run with --keep: the first build reused the sources DIR/e2e had fetched in \
             an earlier run, so its wall time excludes fetching"
                .into(),
        );
    }
    let body = e2e_table(
        stack,
        &machine,
        jobs,
        &cold,
        &cold_json,
        &noop,
        changed.as_ref().map(|(r, j)| (r, j)),
        &race_rows,
        &checks,
    );
    println!("{body}");
    report::write_section(out_md, stack.section(), &body)?;
    eprintln!("e2e-real: wrote its section of {}", out_md.display());
    Ok(())
}

/// Builds and packages OVMF and the two kernels in
/// `e2e/second-builder-...` with umask 077, `TZ=Asia/Tokyo` and
/// `LANG=de_DE.UTF-8`, and compares its firmware, kernel packages and
/// configs with `first_release`'s, byte for byte.
/// Returns the check line (saying DIFFERENT, with the files, when they are).
fn second_builder_kernels(
    bin: &Path,
    pins: &Path,
    e2e: &Path,
    jobs: usize,
    date: &str,
    first_release: &Path,
) -> Result<String> {
    let root = e2e.join("second-builder-with-a-longer-path");
    remove(&root)?;
    fs::create_dir_all(root.join("out"))?;
    eprintln!(
        "e2e-real: OVMF and the kernels again, by a second builder (umask 077, other dirs, TZ, LANG)"
    );
    // One component per run, as build.sh takes it; no release: the stages'
    // own outputs are compared with the first release's copies.
    let mut wall = std::time::Duration::ZERO;
    for component in ["ovmf", "kernel"] {
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(pins)
            .arg("--work-dir")
            .arg(root.join("work"))
            .arg("--install")
            .arg(root.join("prefix"))
            .arg("-j")
            .arg(jobs.to_string())
            .args([component, "--json", "--date", date])
            .current_dir(&root);
        let run = report::measure(report::as_second_builder(&mut cmd), false)?;
        ensure!(
            run.status.success(),
            "the second builder's `{component}` build failed: {}",
            run.stdout
        );
        wall += run.wall;
    }
    // Where the second builder's copy of a release file is.
    let second_copy = |name: &str| -> PathBuf {
        if let Some(fd) = name.strip_prefix("usr/local/") {
            return root.join("prefix").join(fd);
        }
        if let Some(kernel) = name.strip_prefix("kernel-config.") {
            return root
                .join("work")
                .join(format!("kernel-{kernel}"))
                .join("config");
        }
        let mut parts = name.splitn(3, '/');
        let (_, kernel, file) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        root.join("work")
            .join(format!("kernel-{kernel}"))
            .join("packages")
            .join(file)
    };
    let mut same = Vec::new();
    let mut different = Vec::new();
    let mut compare = |name: String| -> Result<()> {
        let a = fs::read(first_release.join(&name))?;
        let b = fs::read(second_copy(&name)).unwrap_or_default();
        if a == b {
            same.push(name);
        } else {
            different.push(name);
        }
        Ok(())
    };
    for name in ["OVMF_CODE.fd", "OVMF_VARS.fd", "OVMF.fd"] {
        let name = format!("usr/local/share/qemu/{name}");
        if first_release.join(&name).exists() {
            compare(name)?;
        }
    }
    for kernel in ["host", "guest"] {
        let mut names: Vec<String> = fs::read_dir(first_release.join("linux").join(kernel))?
            .flatten()
            .map(|e| format!("linux/{kernel}/{}", e.file_name().to_string_lossy()))
            .collect();
        names.push(format!("kernel-config.{kernel}"));
        names.sort();
        for name in names {
            compare(name)?;
        }
    }
    Ok(if different.is_empty() {
        format!(
            "{SECOND_BUILDER}: OVMF and kernels rebuilt in {}, all {} firmware and kernel files byte-identical ({})",
            secs(wall),
            same.len(),
            same.join(", ")
        )
    } else {
        format!(
            "{SECOND_BUILDER}: OVMF and kernels rebuilt in {}; DIFFERENT: {}; identical: {}",
            secs(wall),
            different.join(", "),
            same.join(", ")
        )
    })
}

/// The QEMU source file the "one pin moved" commit changes (a comment
/// appended): linked into every QEMU binary through libqemuutil.
const QEMU_CHANGED_SOURCE: &str = "util/cutils.c";

/// How the second builder differs from the first.
const SECOND_BUILDER: &str = "second builder (other work dir, output and install prefix, umask 077, TZ=Asia/Tokyo, LANG=de_DE.UTF-8)";

/// The checks of a finished release; each passed check is pushed.
/// `scratch` holds what the boot check writes (consoles, the unpacked
/// guest kernel).
fn check_release(
    bin: &Path,
    stack: Stack,
    summary: &Value,
    work: &Path,
    scratch: &Path,
    checks: &mut Vec<String>,
) -> Result<()> {
    let release = PathBuf::from(
        summary["release"]["path"]
            .as_str()
            .context("the summary names no release")?,
    );
    let local = release.join("usr/local");

    let qemu = local.join("bin/qemu-system-x86_64");
    let version = run_ok(Command::new(&qemu).arg("--version"))?;
    let first = version.lines().next().unwrap_or("").to_string();
    ensure!(
        first.contains(stack.qemu_version()),
        "{} --version: {first}",
        qemu.display()
    );
    checks.push(format!("`qemu-system-x86_64 --version`: {first}"));

    let firmware = local.join("share/qemu");
    for name in ["OVMF_CODE.fd", "OVMF_VARS.fd", "OVMF.fd", "OVMF.amdsev.fd"] {
        let path = firmware.join(name);
        if name.starts_with("OVMF.") && !path.exists() {
            continue;
        }
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            data.len() > 44 && &data[40..44] == b"_FVH",
            "{} has no _FVH signature at offset 40",
            path.display()
        );
        checks.push(format!(
            "{name}: `_FVH` at offset 40 ({} KiB)",
            data.len() / 1024
        ));
    }

    let sha_of = |source: &str| -> Option<String> {
        summary["sources"].as_array()?.iter().find_map(|s| {
            let name = s["source"].as_str().or_else(|| s["name"].as_str())?;
            (name == source).then(|| s["sha"].as_str().map(|x| x[..12].to_string()))?
        })
    };
    for kernel in ["host", "guest"] {
        let sha = sha_of(&format!("kernel-{kernel}"))
            .with_context(|| format!("the summary has no kernel-{kernel} SHA"))?;
        let dir = release.join("linux").join(kernel);
        let want = format!("-snp-{kernel}-{sha}");
        let image = fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("linux-image-") && !n.contains("-dbg") && n.ends_with(".deb"))
            .with_context(|| format!("no linux-image-*.deb in {}", dir.display()))?;
        ensure!(image.contains(&want), "{image} does not carry {want}");
        let info = run_ok(Command::new("dpkg-deb").arg("--info").arg(dir.join(&image)))?;
        let version = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("Version: "))
            .unwrap_or("?")
            .to_string();
        // The package's Version: Linux 6.1's bindeb-pkg takes the kernel
        // release (`6.1.192-snp-host-<sha>+-2`); since 6.3 it is
        // `setlocalversion --no-local` (`6.12.118-g<sha>-2`), without
        // LOCALVERSION. Either way it names the commit.
        ensure!(
            version.contains(&sha),
            "{image}: Version {version} does not name the commit {sha}"
        );
        checks.push(format!(
            "{kernel}: {image} (dpkg-deb --info: Version {version})"
        ));
        let config = work.join(format!("kernel-{kernel}/config"));
        let text =
            fs::read_to_string(&config).with_context(|| format!("reading {}", config.display()))?;
        let missing: Vec<&str> = stack
            .snp_options()
            .iter()
            .copied()
            .filter(|o| !text.lines().any(|l| l == *o))
            .collect();
        ensure!(
            missing.is_empty(),
            "{} lacks {}",
            config.display(),
            missing.join(", ")
        );
        checks.push(format!(
            "{kernel}: verified .config has {}",
            stack.snp_options().join(", ")
        ));
    }

    run_ok(
        Command::new("sha256sum")
            .args(["--quiet", "-c", "SHA256SUMS"])
            .current_dir(&release),
    )?;
    checks.push("`sha256sum -c SHA256SUMS`: OK".into());

    // The release's own checks: checksums, SBOM and provenance digests
    // (no trusted key: a signature would be reported, not judged).
    let mut verified = vec![release.clone()];
    if let Some(tarball) = summary["release"]["tarball"].as_str() {
        verified.push(PathBuf::from(tarball));
    }
    for path in &verified {
        run_ok(Command::new(bin).arg("verify").arg(path))
            .with_context(|| format!("snp-build verify {}", path.display()))?;
    }
    checks.push(format!(
        "`snp-build verify`: the release directory{} pass (checksums, SBOM, provenance)",
        if verified.len() > 1 {
            " and its tarball"
        } else {
            ""
        }
    ));

    let launch = run_ok(
        Command::new(release.join("launch-qemu.sh"))
            .args(["-dry-run", "-sev-snp", "-cbitpos", "51"])
            .current_dir(&release),
    )?;
    let args: Vec<&str> = launch.lines().collect();
    let binary = args.first().copied().unwrap_or("");
    ensure!(
        Path::new(binary).is_file(),
        "launch-qemu.sh -dry-run: QEMU {binary:?} does not exist"
    );
    let bios = args
        .iter()
        .position(|a| *a == "-bios")
        .and_then(|i| args.get(i + 1))
        .context("launch-qemu.sh -dry-run -sev-snp printed no -bios")?;
    ensure!(
        Path::new(bios).is_file(),
        "launch-qemu.sh -dry-run: firmware {bios} does not exist"
    );
    ensure!(
        launch.contains("sev-snp-guest") && launch.contains("cbitpos=51"),
        "launch-qemu.sh -dry-run -sev-snp printed no sev-snp-guest object with cbitpos=51"
    );
    checks.push(format!(
        "`launch-qemu.sh -dry-run -sev-snp -cbitpos 51`: {} args, QEMU and -bios {} exist",
        args.len(),
        Path::new(bios)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
    ));

    super::boot::check_boots(&release, &work.join("kernel-guest/config"), scratch, checks)?;
    check_digests(&release, checks)?;
    Ok(())
}

/// Every line of the release's `MEASUREMENTS` (each firmware, each shape)
/// against what the sev-snp-measure of its `--vmsa-mode` prints for the
/// same firmware and shape.
fn check_digests(release: &Path, checks: &mut Vec<String>) -> Result<()> {
    let text = fs::read_to_string(release.join("MEASUREMENTS"))
        .context("reading the release's MEASUREMENTS")?;
    let mut compared: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (want, args) = line
            .split_once("  ")
            .with_context(|| format!("MEASUREMENTS: not `DIGEST  ARGS`: {line}"))?;
        let words: Vec<&str> = args.split(' ').collect();
        let value = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1))
                .copied()
        };
        let mode = value("--vmsa-mode").context("a MEASUREMENTS line without --vmsa-mode")?;
        let firmware = format!(
            "usr/local/share/qemu/{}",
            value("--firmware").unwrap_or("OVMF.fd")
        );
        let tool = crate::sev_snp_measure::for_mode(mode)?;
        let got = run_ok(
            Command::new(&tool)
                .args(["--mode", "snp", "--ovmf", &firmware])
                .args(["--vcpus", value("--vcpus").unwrap_or("?")])
                .args(["--vcpu-type", value("--vcpu-type").unwrap_or("?")])
                .args(["--guest-features", value("--guest-features").unwrap_or("?")])
                .current_dir(release),
        )?
        .trim()
        .to_string();
        ensure!(
            got == want,
            "MEASUREMENTS `{args}`: snp-build says {want}, {} says {got}",
            tool.display()
        );
        *compared.entry((firmware, mode.to_string())).or_default() += 1;
    }
    ensure!(
        !compared.is_empty(),
        "no digest in MEASUREMENTS was compared"
    );
    let each: Vec<String> = compared
        .iter()
        .map(|((fw, mode), n)| format!("{n} of {fw} ({mode})"))
        .collect();
    checks.push(format!(
        "digests: every line of `MEASUREMENTS` equals sev-snp-measure's for its VMSA mode \
         (0.0.13 for init2, 0.0.9 for legacy): {}",
        each.join(", ")
    ));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn e2e_table(
    stack: Stack,
    machine: &str,
    jobs: usize,
    cold: &report::Run,
    cold_json: &Value,
    noop: &report::Run,
    changed: Option<(&report::Run, &Value)>,
    fetch: &[[String; 3]],
    checks: &[String],
) -> String {
    let mut s = String::new();
    let flag = match stack {
        Stack::Amd => String::new(),
        Stack::Upstream => format!(" --stack {}", stack.name()),
    };
    let _ = writeln!(
        s,
        "## {} (`cargo xtask e2e-real{flag}`)\n\n\
         {} (`cargo xtask real-sources{flag}`), \
         built by `snp-build --package -j{jobs}`; kernels from `tinyconfig` plus SEV's \
         dependencies. Stage wall times from the build's `--json` summary \
         (`stages[].duration_s`); stages run side by side, so they overlap.\n\n{machine}",
        stack.title(),
        stack.trees(),
    );
    let after: Vec<(String, String, f64)> =
        changed.map_or_else(Vec::new, |(_, j)| report::stage_times(j));
    let shown = |status: &str, d: f64| {
        if status == "ok" {
            secs(Duration::from_secs_f64(d))
        } else {
            status.to_string()
        }
    };
    if changed.is_some() {
        let _ = writeln!(
            s,
            "| stage | cold build | after a new QEMU commit (one source file) |\n|---|---|---|"
        );
    } else {
        let _ = writeln!(s, "| stage | cold build |\n|---|---|");
    }
    for (stage, status, d) in report::stage_times(cold_json) {
        let cold_cell = shown(&status, d);
        match changed {
            Some(_) => {
                let again = after
                    .iter()
                    .find(|(n, _, _)| *n == stage)
                    .map(|(_, st, d2)| shown(st, *d2))
                    .unwrap_or_default();
                let _ = writeln!(s, "| {stage} | {cold_cell} | {again} |");
            }
            None => {
                let _ = writeln!(s, "| {stage} | {cold_cell} |");
            }
        }
    }
    let whole = "| **whole run** (wall: fetch, the stages side by side, release) |";
    match changed {
        Some((run, _)) => {
            let _ = writeln!(
                s,
                "{whole} **{}** | **{}** |",
                secs(cold.wall),
                secs(run.wall)
            );
        }
        None => {
            let _ = writeln!(s, "{whole} **{}** |", secs(cold.wall));
        }
    }
    let _ = writeln!(
        s,
        "\nNo-op rebuild (`snp-build --package` again): **{}** wall, no stage and no \
         release rerun (JSON summary), peak RSS {:.1} MiB (wait4).",
        secs(noop.wall),
        noop.tree_max_rss_kib as f64 / 1024.0
    );
    let mut rows = vec![report::efficiency_row("cold", cold, jobs)];
    if let Some((run, _)) = changed {
        rows.push(report::efficiency_row(
            "one pin moved (a new QEMU commit)",
            run,
            jobs,
        ));
    }
    rows.push(report::efficiency_row("no-op", noop, jobs));
    let _ = writeln!(
        s,
        "\nAt the machine's limit (the limit is the CPU work of every child process \
         divided by the {jobs} cores; wall / limit = 1.00 means no core idled):\n\n{}\n{}\n",
        report::EFFICIENCY_HEADER,
        rows.join("\n"),
    );
    s.push_str(&content_check_table(cold_json, changed.map(|(_, j)| j)));
    if !fetch.is_empty() {
        let _ = writeln!(
            s,
            "Fetching (issue 14 item 9):\n\n| measure | result | notes |\n|---|---|---|"
        );
        for [a, b, c] in fetch {
            let _ = writeln!(s, "| {a} | {b} | {c} |");
        }
        s.push('\n');
    }
    let _ = writeln!(s, "Checks passed:\n");
    for c in checks {
        let _ = writeln!(s, "- {c}");
    }
    let pending = stack.not_covered();
    if !pending.is_empty() {
        let _ = writeln!(s, "\nNot covered yet:\n");
        for p in pending {
            let _ = writeln!(s, "- {p}");
        }
    }
    s
}

/// The cost of the check by hash (issue 25: before a stage runs and
/// after, every tracked file hashed) beside the stage's own time, in the
/// same build: `sources[].content_check` against `stages[].duration_s`.
fn content_check_table(cold_json: &Value, changed_json: Option<&Value>) -> String {
    let mut s = String::from(
        "Content check (issue 25: the trees hashed before each stage runs and again after it, \
         on every core; budget: 5% of a cold kernel stage, 20% of the one-file QEMU rebuild):\n\n\
         | build | tree | files | before | after | stage | (before + after) / stage |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let builds = [
        ("cold", Some(cold_json)),
        ("after a new QEMU commit", changed_json),
    ];
    for (label, doc) in builds.into_iter().filter_map(|(l, d)| Some((l, d?))) {
        let stages = report::stage_times(doc);
        for source in doc["sources"].as_array().into_iter().flatten() {
            let Some(check) = source.get("content_check") else {
                continue;
            };
            let name = source["source"].as_str().unwrap_or("?");
            let before = check["before_s"].as_f64().unwrap_or(0.0);
            let after = check["after_s"].as_f64().unwrap_or(0.0);
            let stage = stages
                .iter()
                .find(|(n, _, _)| n == name)
                .map_or(0.0, |(_, _, d)| *d);
            let ratio = if stage > 0.0 {
                format!("{:.1}%", 100.0 * (before + after) / stage)
            } else {
                "-".into()
            };
            let _ = writeln!(
                s,
                "| {label} | {name} | {} | {before:.2} s | {after:.2} s | {stage:.1} s | {ratio} |",
                check["files"]
            );
        }
    }
    s.push('\n');
    s
}
