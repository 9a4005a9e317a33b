//! Every message is a tracing event: the default level prints what a
//! person always saw (plain lines, no escape codes), `-v` each command line
//! as it starts, `RUST_LOG=debug` the decisions (fetch, fingerprint inputs,
//! tool versions); `--json` stdout is untouched by any of it.

mod common;

use std::ffi::OsStr;

use common::*;

/// Makes a build's stderr comparable across machines and runs: paths,
/// durations, hashes and transfer sizes become placeholders; lines are
/// sorted (stages run side by side).
fn normalized(stderr: &str, s: &Scratch) -> Vec<String> {
    let mut lines: Vec<String> = stderr
        .lines()
        .map(|l| {
            let l = l
                .replace(&s.path().display().to_string(), "<dir>")
                .replace(&shared_fixtures().display().to_string(), "<fx>");
            let words: Vec<String> = l
                .split(' ')
                .map(|w| {
                    let core = w.trim_matches(|c: char| "(),".contains(c));
                    let is_hex = core.len() >= 12 && core.chars().all(|c| c.is_ascii_hexdigit());
                    let is_time = core.ends_with('s')
                        && core[..core.len() - 1].contains('.')
                        && core[..core.len() - 1]
                            .chars()
                            .all(|c| c.is_ascii_digit() || c == '.');
                    if is_hex {
                        w.replace(core, "<hex>")
                    } else if is_time {
                        w.replace(core, "<t>")
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            // Fetch sizes follow the fixture trees' contents, not the format.
            let mut line = words.join(" ");
            if let Some(at) = line.find("received ") {
                let end = line[at..].find(')').map_or(line.len(), |e| at + e);
                line.replace_range(at..end, "received <n> objects, <size>");
            }
            line
        })
        .collect();
    lines.sort();
    lines
}

/// What a cold fixture build with `--package` prints, line for line
/// (sorted), as before tracing carried the messages.
const COLD_BUILD: &[&str] = &[
    "4 stage(s) built, 0 up to date; logs in <dir>/build/logs",
    "expected SEV-SNP launch digest (launch-qemu.sh -sev-snp: 4 vCPUs EPYC-v4; others in MEASUREMENTS): <hex>",
    "kernel-guest: branch snp-guest-latest at <hex> (cloned, received <n> objects, <size>)",
    "kernel-guest: checking out <hex>",
    "kernel-guest: done in <t>",
    "kernel-guest: fetching from file://<fx>/linux.git",
    "kernel-guest: listing file://<fx>/linux.git",
    "kernel-guest: started (<dir>/build/logs/kernel-guest.log)",
    "kernel-host: branch snp-host-latest at <hex> (cloned)",
    "kernel-host: checking out <hex>",
    "kernel-host: done in <t>",
    "kernel-host: listing file://<fx>/linux.git",
    "kernel-host: started (<dir>/build/logs/kernel-host.log)",
    "ovmf: branch snp-latest at <hex> (cloned, received <n> objects, <size>)",
    "ovmf: checking out <hex>",
    "ovmf: done in <t>",
    "ovmf: fetching from file://<fx>/ovmf.git",
    "ovmf: listing file://<fx>/ovmf.git",
    "ovmf: started (<dir>/build/logs/ovmf.log)",
    "ovmf: submodule MdeModulePkg/Library/BrotliCustomDecompressLib/brotli",
    "qemu: branch snp-latest at <hex> (cloned, received <n> objects, <size>)",
    "qemu: checking out <hex>",
    "qemu: done in <t>",
    "qemu: fetching from file://<fx>/qemu.git",
    "qemu: listing file://<fx>/qemu.git",
    "qemu: started (<dir>/build/logs/qemu.log)",
    "release: <dir>/out/snp-release-2026-11-29",
    "release: <dir>/out/snp-release-2026-11-29.tar.gz (<hex>)",
    "release: assembling <dir>/out/snp-release-2026-11-29",
    "release: writing the tarball",
    "tarball: <dir>/out/snp-release-2026-11-29.tar.gz (sha256 <hex>)",
];

/// What the same build prints when nothing changed.
const NO_OP: &[&str] = &[
    "0 stage(s) built, 4 up to date; logs in <dir>/build/logs",
    "expected SEV-SNP launch digest (launch-qemu.sh -sev-snp: 4 vCPUs EPYC-v4; others in MEASUREMENTS): <hex>",
    "kernel-guest: branch snp-guest-latest at <hex> (unchanged)",
    "kernel-guest: skipped: up to date",
    "kernel-host: branch snp-host-latest at <hex> (unchanged)",
    "kernel-host: skipped: up to date",
    "ovmf: branch snp-latest at <hex> (unchanged)",
    "ovmf: skipped: up to date",
    "qemu: branch snp-latest at <hex> (unchanged)",
    "qemu: skipped: up to date",
    "release: <dir>/out/snp-release-2026-11-29",
    "release: up to date: <dir>/out/snp-release-2026-11-29.tar.gz",
    "tarball: <dir>/out/snp-release-2026-11-29.tar.gz (sha256 <hex>)",
];

#[test]
fn the_default_output_of_a_fixture_build_is_what_it_always_was() {
    let s = Scratch::new(shared_fixtures());
    let cold = s.run(PACKAGE);
    assert_eq!(cold.code, 0, "{}", cold.stderr);
    assert!(
        !cold.stderr.contains('\x1b'),
        "escape codes without a terminal"
    );
    assert!(cold.stdout.is_empty(), "stdout: {}", cold.stdout);
    assert_eq!(normalized(&cold.stderr, &s), COLD_BUILD, "{}", cold.stderr);
    let again = s.run(PACKAGE);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(normalized(&again.stderr, &s), NO_OP, "{}", again.stderr);
}

#[test]
fn verbose_prints_each_command_line_as_it_starts() {
    let s = Scratch::new(shared_fixtures());
    let r = s.run(&["-v", "qemu"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Every command the stage log records is echoed, in the same order.
    let log = std::fs::read_to_string(s.work().join("logs/qemu.log")).unwrap();
    let logged: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("] $ ").map(|(_, c)| c))
        .map(|c| c.split("    (in ").next().unwrap())
        .collect();
    let echoed: Vec<&str> = r
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("qemu: $ "))
        .map(|c| c.split("    (in ").next().unwrap())
        .collect();
    assert!(logged.len() >= 3, "{log}");
    assert_eq!(echoed, logged, "{}", r.stderr);
    assert!(
        echoed
            .iter()
            .any(|c| c.contains("/configure --target-list=")),
        "{echoed:?}"
    );
    // And its output lines, as -v always streamed them.
    assert!(
        r.stderr.contains("qemu: QEMU emulator version"),
        "{}",
        r.stderr
    );
    // Without -v, none of that.
    let quiet = s.run(&["--force=qemu", "qemu"]);
    assert!(!quiet.stderr.contains("$ "), "{}", quiet.stderr);
}

#[test]
fn rust_log_debug_shows_the_fetch_decision_fingerprints_and_tool_versions() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["fetch"]);
    let r = s.run_env(&[("RUST_LOG", OsStr::new("debug"))], &["plan", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (what, needle) in [
        (
            "the fetch decision",
            "qemu: fetch decision: the lock covers [qemu]",
        ),
        ("the fingerprint inputs", "ovmf: fingerprint inputs: "),
        ("an input's value", "tool:nasm="),
        ("the tool-version cache", "tool version: gcc: "),
    ] {
        assert!(r.stderr.contains(needle), "no {what} in:\n{}", r.stderr);
    }
    // stdout is still exactly the one JSON document.
    let doc = r.json();
    assert_eq!(doc["command"], "plan");
    assert!(!r.stderr.contains('\x1b'));
    // -v is the same level as RUST_LOG=debug; RUST_LOG wins over -v.
    let v = s.run(&["plan", "-v"]);
    assert!(v.stderr.contains("fingerprint inputs"), "{}", v.stderr);
    let quiet = s.run_env(&[("RUST_LOG", OsStr::new("warn"))], &["plan", "-v"]);
    assert!(
        !quiet.stderr.contains("fingerprint inputs"),
        "{}",
        quiet.stderr
    );
}

#[test]
fn a_rust_log_that_names_nothing_of_ours_still_shows_our_errors() {
    let dir = tempfile::tempdir().unwrap();
    for spec in ["debgu", "cargo=debug"] {
        let out = assert_cmd::Command::cargo_bin("snp-build")
            .unwrap()
            .current_dir(dir.path())
            .env("RUST_LOG", spec)
            .args(["plan", "--config", "nope.toml"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("error: nope.toml") && stderr.contains("cannot read"),
            "RUST_LOG={spec}: {stderr}"
        );
    }
}

#[test]
fn plan_honours_the_package_format_as_a_build_would() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["-j2"]);
    // (`--package-format` is the build's option; given before `plan`.)
    let plan = s.run_ok(&["--package-format", "rpm", "plan"]);
    let dry = s.run_ok(&["--dry-run", "--package-format", "rpm"]);
    for doc in [&plan, &dry] {
        let action = |name: &str| {
            doc["stages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["stage"] == name)
                .unwrap()["action"]
                .clone()
        };
        assert_eq!(action("kernel-host"), "run", "{doc}");
        assert_eq!(action("qemu"), "skip", "{doc}");
    }
    assert_eq!(plan["stages"], dry["stages"]);
}
