//! The job budget (`-j N`) through the real binary: tools that are no
//! jobserver client (the fixture QEMU's `make -jN`, which stands for QEMU's
//! ninja; the fixture edk2's `build -n`) run at the build's full width,
//! yet the compiles of every stage together never exceed N, because each
//! of their compiles takes a job token in the stage's `gcc` wrapper.
//!
//! The evidence is a `gcc` first on the caller's PATH (the real gcc the
//! wrappers call) that logs when each compile of a `.c` file starts and
//! ends, and sleeps a little so that compiles allowed to overlap do.

mod common;

use std::path::Path;

use common::*;

/// One compile: when it started and ended (ns), and in which directory.
struct Compile {
    start: u128,
    end: u128,
    dir: String,
}

fn counting_gcc(bin: &Path, log: &Path) {
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v gcc"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::create_dir_all(bin).unwrap();
    script(
        &bin.join("gcc"),
        &format!(
            r#"#!/bin/sh
real={real}
src=
for a in "$@"; do case "$a" in *.c) src=$a ;; esac; done
[ -n "$src" ] || exec "$real" "$@"
echo "start $$ $(date +%s%N) $PWD" >> {log}
sleep 0.2
"$real" "$@"
rc=$?
echo "end $$ $(date +%s%N)" >> {log}
exit $rc
"#,
            real = real.trim(),
            log = log.display()
        ),
    );
}

fn compiles(log: &Path) -> Vec<Compile> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut open = std::collections::BTreeMap::new();
    let mut done = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.splitn(4, ' ').collect();
        match w[0] {
            "start" => {
                open.insert(w[1].to_string(), (w[2].parse().unwrap(), w[3].to_string()));
            }
            "end" => {
                let (start, dir) = open.remove(w[1]).expect("an end without a start");
                done.push(Compile {
                    start,
                    end: w[2].parse().unwrap(),
                    dir,
                });
            }
            _ => panic!("bad line {line:?}"),
        }
    }
    assert!(open.is_empty(), "compiles that never ended: {open:?}");
    done
}

/// The most compiles running at one time among `these`.
fn peak<'a>(these: impl Iterator<Item = &'a Compile>) -> usize {
    let mut events: Vec<(u128, i32)> = these.flat_map(|c| [(c.start, 1), (c.end, -1)]).collect();
    // At equal times an end comes first: back to back is not overlapping.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn non_client_tools_use_the_full_width_and_all_compiles_stay_within_the_budget() {
    let s = Scratch::new(shared_fixtures());
    let bin = s.path().join("counting-bin");
    let log = s.path().join("compiles.log");
    counting_gcc(&bin, &log);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [("PATH", std::ffi::OsStr::new(&path))];

    // Every stage under -j2.
    let r = s.run_env(&env, &["-j2", "--json", "--timings"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // At most two stages ran at once: a stage that lends its slot to its
    // compiles does not lend it to a stage waiting to start.
    let timings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.work().join("logs/timings.json")).unwrap())
            .unwrap();
    let spans: Vec<Compile> = timings["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| st["stage"] != "release")
        .map(|st| Compile {
            start: (st["start_s"].as_f64().unwrap() * 1e9) as u128,
            end: (st["end_s"].as_f64().unwrap() * 1e9) as u128,
            dir: st["stage"].as_str().unwrap().to_string(),
        })
        .collect();
    assert_eq!(spans.len(), 4);
    assert!(peak(spans.iter()) <= 2, "more than 2 stages ran at once");
    let all = compiles(&log);
    for stage in ["qemu", "ovmf", "kernel-guest", "kernel-host"] {
        let n = all
            .iter()
            .filter(|c| c.dir.contains(&format!("/build/{stage}/")))
            .count();
        assert!(
            n > 0,
            "no compile of {stage} was seen: {all:?}",
            all = all.len()
        );
    }
    assert!(
        peak(all.iter()) <= 2,
        "{} compiles ran at once under -j2",
        peak(all.iter())
    );
    // Each stage's log says how it shares the budget.
    let qemu_log = std::fs::read_to_string(s.work().join("logs/qemu.log")).unwrap();
    assert!(qemu_log.contains("jobs: jobserver of 2"), "{qemu_log}");
    assert!(qemu_log.contains("$ make -j2"), "{qemu_log}");

    // QEMU alone: its make -j2 (not a jobserver client) gets both tokens,
    // its own slot lent to its compiles, so two compile at once.
    std::fs::remove_file(&log).unwrap();
    let r = s.run_env(&env, &["-j2", "--clean", "--force=qemu", "qemu", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let qemu = compiles(&log);
    assert!(qemu.iter().all(|c| c.dir.contains("/build/qemu/")));
    assert_eq!(peak(qemu.iter()), 2, "QEMU alone did not use both jobs");

    // The fixture edk2's build -n alone: the same.
    std::fs::remove_file(&log).unwrap();
    let r = s.run_env(&env, &["-j2", "--clean", "--force=ovmf", "ovmf", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ovmf = compiles(&log);
    assert_eq!(
        peak(ovmf.iter()),
        2,
        "edk2's build -n2 alone did not use both jobs"
    );
}
