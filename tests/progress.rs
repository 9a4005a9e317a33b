//! How far a stage is (issue 14, item 4): ninja's `[N/M]` for QEMU (the
//! fixture QEMU prints it as QEMU's ninja does), the recorded duration for
//! make-based stages; a bar with a percentage and an ETA on a terminal,
//! plain percentage lines without one.

mod common;

use std::process::{Command, Stdio};

use common::*;

#[test]
fn without_a_terminal_percentages_are_plain_lines() {
    let s = Scratch::new(shared_fixtures());
    // Every line may print (the default is at most one per 30 s per stage,
    // longer than a fixture stage runs).
    let every = std::ffi::OsString::from("0");
    let r = s.run_env(&[("SNP_BUILD_PROGRESS_EVERY", every.as_os_str())], &["-j2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("qemu: ") && l.contains("% (about")),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains('\x1b'),
        "escape codes without a terminal"
    );
    // The kernels have no [N/M]: once a build recorded their duration,
    // the clock says how far they are.
    let r = s.run_env(
        &[("SNP_BUILD_PROGRESS_EVERY", every.as_os_str())],
        &["-j2", "--force=kernel-host"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("kernel-host: ") && l.contains("% (about")),
        "{}",
        r.stderr
    );
    // By default (30 s) a fixture build prints none.
    let r = s.run(&["-j2", "--force"]);
    assert!(!r.stderr.contains("% (about"), "{}", r.stderr);
}

/// On a terminal: QEMU's bar shows a percentage and an ETA while it
/// runs, and once the run is over the screen keeps the record, as cargo's
/// does: the fetch result and the stage's `done in` line (issue 27, item 5).
#[test]
fn on_a_terminal_qemu_shows_a_percentage_and_an_eta_and_the_record_stays() {
    let s = Scratch::new(shared_fixtures());
    let bin = assert_cmd::cargo::cargo_bin("snp-build");
    // `script` runs it on a pseudo-terminal (stderr is a terminal there),
    // sized so that nothing scrolls off the emulated screen below.
    let cmd = format!(
        "stty rows {ROWS} cols {COLS}; exec {} --config stable-commits.toml --work-dir build -j2 qemu",
        bin.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(s.path())
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The label is drawn bold: drop the escape sequences, then look at
    // each line as drawn.
    let plain = strip_escapes(&text);
    let bar = plain
        .split(['\r', '\n'])
        .find(|line| line.contains("qemu") && line.contains("% ETA"));
    assert!(bar.is_some(), "no percentage bar for qemu:\n{text:?}");

    // What the terminal shows once the run is over: the raw bytes still
    // hold lines that were drawn and then cleared, the screen does not.
    let size = |n: u16| std::num::NonZero::new(n).expect("a screen has a size");
    let mut term = vt100::Parser::new(size(ROWS), size(COLS), 0);
    term.process(&out.stdout);
    // Row by row: indicatif pads a line to the full width, which the
    // emulator counts as wrapping into the next row in `contents()`.
    let rows: Vec<String> = term.screen().rows(0, COLS).collect();
    let lines: Vec<&str> = rows.iter().map(|r| r.trim_end()).collect();
    let screen = lines.join("\n");
    let kept = |what: &str, test: &dyn Fn(&str) -> bool| {
        assert!(
            lines.iter().any(|l| test(l)),
            "the {what} line is not on the screen after the run:\n{screen}"
        );
    };
    kept("fetch result", &|l| {
        l.starts_with("qemu: ") && l.contains(" at ") && l.ends_with(')')
    });
    kept("stage's done in", &|l| {
        l.starts_with("qemu: done in ") && l.ends_with('s')
    });
    // No live bar is left behind: its ETA is not on the final screen.
    assert!(!screen.contains("% ETA"), "a bar was left drawn:\n{screen}");
}

const ROWS: u16 = 200;
const COLS: u16 = 160;

/// `text` without ANSI escape sequences (`ESC [ ... letter`, and the
/// two-byte ones).
fn strip_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}
