//! `cargo xtask bench`: snp-build's caching, parallelism, disk and memory
//! numbers on `--size bench` fixtures, written into the `bench` section of
//! `BENCHMARKS.md` (issue 6's targets: a no-op rebuild under 1 s with zero
//! build subprocesses, peak RSS under 64 MB).
//!
//! Every build runs the release binary with `-j2 --package --json`; what
//! ran is read from the JSON summary (`stages[].status`, `release.status`).
//!
//! | row | how |
//! |---|---|
//! | cold build | fresh work dir, everything, `--package` |
//! | no-op rebuild | the same command again, 5 times (each compares every tree with its pin): median and max wall time; stages and release `skipped` in the summary; the stage logs (`logs/*.log`) not rewritten (size and mtime); programs executed counted with `strace -f -e trace=execve` in a separate, untimed run |
//! | one source changed | a new commit on the fixture QEMU branch (`fixtures::commit_file`), `snp-build update qemu`, rebuild: which stages ran |
//! | parallel vs serial | cold builds in two more fresh work dirs, `-j2` and `-j2 --serial` |
//! | two builders | the tarballs of those two builds, compared byte for byte: the serial one ran in a longer directory (work dir, output, install prefix), with umask 077, `TZ=Asia/Tokyo` and `LANG=de_DE.UTF-8` |
//! | kernel source disk | `snp-build fetch kernel` from a loopback `git daemon` (so shallow) vs build.sh's `git clone` + `cp -r` of the same repository: `du` of the store and both trees |
//! | shared cache | box A (a fresh work dir) builds cold and pushes to a real `docker-registry` on loopback; box B (an empty work dir at another path, the same pin file and lock) pulls: B's wall time against A's, the bytes B pulled, the programs a box like B runs (`strace`, untimed; tool version queries listed apart) and the three tarballs compared (`share.rs`) |
//! | peak RSS | the no-op run: `ru_maxrss` from `wait4` (it runs no child); the cold build: snp-build's own `VmHWM`, sampled every 20 ms, and the largest process of the whole tree (`wait4`, includes compilers) |

use anyhow::{Context, Result, ensure};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::build_dir::{Build, JOBS};
use crate::fixtures::{self, Size};
use crate::report::{self, secs};

const NOOP_RUNS: usize = 5;

/// `cargo xtask bench [--out FILE] [--dir DIR]`.
pub fn run(out_md: &Path, dir: Option<&Path>) -> Result<()> {
    let machine = report::machine();
    let bin = report::release_binary()?;
    let (dir, temporary) = match dir {
        Some(d) => (d.to_path_buf(), false),
        None => (
            std::env::temp_dir().join(format!("snp-bench-{}", std::process::id())),
            true,
        ),
    };
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let result = bench(&bin, &dir, &machine);
    if temporary {
        let _ = fs::remove_dir_all(&dir);
    }
    let body = result?;
    println!("{body}");
    report::write_section(out_md, "bench", &body)?;
    eprintln!("bench: wrote its section of {}", out_md.display());
    Ok(())
}

fn bench(bin: &Path, dir: &Path, machine: &str) -> Result<String> {
    eprintln!("bench: creating --size bench fixtures in {}", dir.display());
    let fx = fixtures::create(&dir.join("fx"), Size::Bench)?;
    let at = |name: &str| Build {
        bin,
        pins: fx.pin_file.clone(),
        root: dir.join(name),
    };
    let mut rows: Vec<[String; 3]> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // Cold build of everything.
    let a = at("a");
    eprintln!("bench: cold build (-j{JOBS} --package)");
    let (cold, cold_json) = a.build(&[])?;
    let ran = report::stages_ran(&cold_json);
    rows.push([
        "Cold build, everything, `--package`".into(),
        secs(cold.wall),
        format!("ran: {}", ran.join(", ")),
    ]);
    let times: Vec<String> = report::stage_times(&cold_json)
        .iter()
        .map(|(s, _, d)| format!("{s} {}", secs(Duration::from_secs_f64(*d))))
        .collect();
    notes.push(format!("Cold build stage times: {}.", times.join(", ")));

    // No-op rebuilds.
    eprintln!("bench: no-op rebuilds");
    let logs = a.root.join("work/logs");
    let before = report::snapshot(&logs);
    let mut walls = Vec::new();
    let mut noop_rss = 0;
    let mut last_noop = None;
    for _ in 0..NOOP_RUNS {
        let (run, json) = a.build(&[])?;
        let ran = report::stages_ran(&json);
        ensure!(ran.is_empty(), "a no-op rebuild ran {ran:?}");
        let skipped = json["stages"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["status"] == "skipped"));
        ensure!(skipped, "a no-op rebuild did not skip every stage: {json}");
        walls.push(run.wall);
        noop_rss = noop_rss.max(run.tree_max_rss_kib);
        last_noop = Some(run);
    }
    let last_noop = last_noop.context("no no-op run")?;
    let after = report::snapshot(&logs);
    ensure!(
        before == after,
        "a no-op rebuild rewrote stage logs in {}",
        logs.display()
    );
    walls.sort();
    let median = walls[walls.len() / 2];
    let max = *walls.last().unwrap_or(&median);
    rows.push([
        format!("No-op rebuild (median of {NOOP_RUNS}; max)"),
        format!("{} ({})", secs(median), secs(max)),
        format!(
            "target < 100 ms, the check of every tree against its pin included: {}",
            if max < Duration::from_millis(100) {
                "met"
            } else {
                "MISSED"
            }
        ),
    ]);
    let execs = report::count_execs(&a.build_command(&[]), &dir.join("noop.strace"))?;
    let after_traced = report::snapshot(&logs);
    ensure!(
        before == after_traced,
        "the traced no-op rebuild rewrote stage logs"
    );
    let (count_cell, count_note) = match &execs {
        Some((n, progs)) => (
            n.to_string(),
            format!(
                "`strace -f -e trace=execve` saw {n} program(s) executed besides snp-build{}; \
                 the JSON summary had every stage and the release `skipped`, and none of the \
                 {} stage logs was rewritten (size and mtime)",
                if progs.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", progs.join(", "))
                },
                before.len()
            ),
        ),
        None => (
            "0 (by summary and logs)".into(),
            format!(
                "strace unavailable: counted by the JSON summary (every stage and the release \
                 `skipped`) and the {} stage logs not rewritten (size and mtime)",
                before.len()
            ),
        ),
    };
    rows.push([
        "No-op rebuild: build subprocesses".into(),
        count_cell.clone(),
        format!(
            "target 0: {}; {count_note}",
            if execs.as_ref().is_none_or(|(n, _)| *n == 0) {
                "met"
            } else {
                "MISSED"
            }
        ),
    ]);

    // One source changed: a new QEMU commit.
    eprintln!("bench: one source changed (new QEMU commit)");
    let sha = fixtures::commit_file(
        &fx.qemu,
        "snp-latest",
        "docs/bench.txt",
        b"a new upstream commit\n",
        "docs: bench commit",
    )?;
    report::run_ok(&mut a.command(&["update", "qemu"]))?;
    let (changed, changed_json) = a.build(&[])?;
    let ran = report::stages_ran(&changed_json);
    rows.push([
        "One source changed (new QEMU commit, `update qemu`, rebuild)".into(),
        secs(changed.wall),
        format!(
            "ran: {} ({})",
            ran.join(", "),
            if ran == ["qemu", "release"] {
                "as expected"
            } else {
                "UNEXPECTED: expected qemu, release"
            }
        ),
    ]);
    notes.push(format!(
        "One source changed: QEMU branch moved to {}; the other stages were skipped.",
        &sha[..12]
    ));

    // Parallel vs serial, cold, in fresh work dirs.
    eprintln!("bench: cold build, parallel");
    let (par, _) = at("parallel").build(&[])?;
    // The serial build is also the second builder of the reproducibility
    // row: another (longer) directory, umask 077, another time zone and
    // locale.
    eprintln!("bench: cold build, --serial (umask 077, TZ and LANG set, other dirs)");
    let other = at("serial-builder-with-a-longer-path");
    let mut serial = other.build_command(&["--serial"]);
    fs::create_dir_all(other.root.join("out"))?;
    let ser = report::measure(report::as_second_builder(&mut serial), true)?;
    ensure!(
        ser.status.success(),
        "the serial build failed: {}",
        ser.stdout
    );
    // Issue 14 item 5: QEMU is the longest stage, as on real trees.
    let serial_times = report::stage_times(&ser.json()?);
    let qemu = serial_times
        .iter()
        .find(|(stage, _, _)| stage == "qemu")
        .map_or(0.0, |(_, _, d)| *d);
    notes.push(format!(
        "In the `--serial` cold build QEMU ran {:.1} s, {:.0}% of its wall time ({}).",
        qemu,
        100.0 * qemu / ser.wall.as_secs_f64(),
        serial_times
            .iter()
            .map(|(s, _, d)| format!("{s} {d:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    rows.push([
        format!("Cold build `-j{JOBS}` vs `-j{JOBS} --serial`"),
        format!("{} vs {}", secs(par.wall), secs(ser.wall)),
        format!(
            "parallel takes {:.0}% of serial",
            100.0 * par.wall.as_secs_f64() / ser.wall.as_secs_f64()
        ),
    ]);

    // Reproducibility: the two cold builds of the same pins.
    let (one, two) = (
        fs::read(at("parallel").tarball())?,
        fs::read(other.tarball())?,
    );
    rows.push([
        "Same pins, two builders: other work dir, output dir and install prefix, umask 022 vs 077, TZ and LANG".into(),
        if one == two {
            "byte-identical".into()
        } else {
            "DIFFERENT".into()
        },
        format!(
            "the `-j{JOBS}` and `--serial` cold builds above; tarball SHA-256 {} vs {}",
            &report::sha256_hex(&one)[..16],
            &report::sha256_hex(&two)[..16]
        ),
    ]);

    // A fleet: box A builds cold and pushes, box B pulls (issue 17).
    let (share_rows, share_notes) = crate::share::rows(bin, &fx.pin_file, &dir.join("share"))?;
    rows.extend(share_rows);
    notes.extend(share_notes);

    // Fetching the kernels, and their disk use, against build.sh's way.
    eprintln!("bench: kernel fetch race (git daemon on loopback)");
    let race = crate::fetch::kernel_race(
        bin,
        &fs::read_to_string(&fx.pin_file)?,
        &fixtures::file_url(&fx.linux),
        &fx.dir,
        "linux.git",
        ("snp-host-latest", "snp-guest-latest"),
        &dir.join("fetch"),
    )?;
    rows.extend(race.rows());

    // Peak RSS.
    let cold_own = cold.own_hwm_kib.max(par.own_hwm_kib).max(ser.own_hwm_kib);
    rows.push([
        "Peak RSS of snp-build, no-op rebuild".into(),
        format!("{:.1} MiB", noop_rss as f64 / 1024.0),
        format!(
            "target < 64 MB: {}; `ru_maxrss` from wait4 (no child ran)",
            if noop_rss * 1024 < 64_000_000 {
                "met"
            } else {
                "MISSED"
            }
        ),
    ]);
    rows.push([
        "Peak RSS of snp-build, cold builds".into(),
        format!("{:.1} MiB", cold_own as f64 / 1024.0),
        format!(
            "its own VmHWM sampled every 20 ms; the largest process in the build tree \
             (compilers included) was {:.1} MiB",
            cold.tree_max_rss_kib.max(par.tree_max_rss_kib) as f64 / 1024.0
        ),
    ]);

    let cores: usize = JOBS.parse().unwrap_or(2);
    let mut at_limit = vec![report::EFFICIENCY_HEADER.to_string()];
    at_limit.push(report::efficiency_row(
        &format!("cold, `-j{JOBS}`"),
        &par,
        cores,
    ));
    at_limit.push(report::efficiency_row(
        &format!("cold, `-j{JOBS} --serial`"),
        &ser,
        cores,
    ));
    at_limit.push(report::efficiency_row(
        "one pin moved (QEMU)",
        &changed,
        cores,
    ));
    at_limit.push(report::efficiency_row(
        "no-op (the last run)",
        &last_noop,
        cores,
    ));

    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Caching and parallelism (`cargo xtask bench`)\n\n\
         On `cargo xtask fixtures --size bench` upstreams (fake trees with real compile work: \
         ~150 generated C files in the kernel, 160 in QEMU after 150 serial configure probes), the release binary, `-j{JOBS} --package --json`.\n\n\
         {machine}"
    );
    let _ = writeln!(s, "| measure | result | notes |\n|---|---|---|");
    for [a, b, c] in &rows {
        let _ = writeln!(s, "| {a} | {b} | {c} |");
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "At the machine's limit: the limit is the CPU work of every child process divided \
         by the {cores} cores, so wall / limit = 1.00 means no core ever idled.\n\n{}\n",
        at_limit.join("\n")
    );
    for n in notes {
        let _ = writeln!(s, "{n}\n");
    }
    Ok(s)
}
