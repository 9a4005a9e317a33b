//! Bad requests are refused with exit 2, naming the thing, before anything
//! is fetched (issue: a release that says exactly what it is).

mod common;

use std::path::Path;

use common::*;

/// Nothing was fetched: no object store, no tree.
fn nothing_fetched(s: &Scratch) {
    assert!(!s.work().join("git").exists(), "something was fetched");
}

fn refused(s: &Scratch, args: &[&str], says: &[&str]) -> Run {
    let r = s.run(args);
    assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    for needle in says {
        assert!(
            r.stderr.contains(needle),
            "{args:?}: no {needle:?} in\n{}",
            r.stderr
        );
    }
    nothing_fetched(s);
    r
}

#[test]
fn a_pin_file_with_no_source_is_refused() {
    let s = Scratch::new(shared_fixtures());
    std::fs::write(
        s.pins(),
        "# nothing pinned\n[build]\ncompiler-launcher = \"\"\n",
    )
    .unwrap();
    for args in [&["--package"][..], &[], &["plan"], &["fetch"]] {
        let r = refused(&s, args, &["pins no source", "[qemu]", "help:"]);
        assert!(r.stdout.is_empty());
    }
}

#[test]
fn a_whole_release_needs_every_source_but_a_named_component_packages_alone() {
    let s = Scratch::new(shared_fixtures());
    let pins = std::fs::read_to_string(s.pins()).unwrap();
    let only_qemu = pins[pins.find("[qemu]").unwrap()..pins.find("[ovmf]").unwrap()].to_string();
    std::fs::write(s.pins(), &only_qemu).unwrap();
    refused(
        &s,
        &["--package"],
        &[
            "[ovmf]",
            "[kernel.guest]",
            "[kernel.host]",
            "snp-build qemu --package",
        ],
    );
    refused(&s, &["plan", "--package"], &["[ovmf]"]);
    // Naming the component is building it on purpose, as build.sh allows.
    let doc = s.run_ok(&[
        "qemu",
        "--package",
        "--output",
        "out",
        "--date",
        "2026-11-29",
    ]);
    assert_eq!(doc["release"]["status"], "ok", "{doc}");
}

#[test]
fn a_date_must_be_on_the_calendar() {
    let s = Scratch::new(shared_fixtures());
    for bad in ["2024-02-30", "2026-13-01", "2026-1-01", "20261129"] {
        refused(
            &s,
            &["--package", "--date", bad],
            &[bad, "calendar date", "YYYY-MM-DD"],
        );
    }
    let r = s.run(&["plan", "--package", "--date", "2024-02-29", "--json"]);
    assert_eq!(r.code, 0, "a leap day is a date: {}", r.stderr);
}

#[test]
fn a_source_date_epoch_that_is_not_seconds_is_refused_before_building() {
    let s = Scratch::new(shared_fixtures());
    for bad in ["yesterday", "-5", "1.5e9", "99999999999999"] {
        let r = s.run_env(
            &[("SOURCE_DATE_EPOCH", std::ffi::OsStr::new(bad))],
            &["--package", "--date", "2026-11-29"],
        );
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("SOURCE_DATE_EPOCH=\"{bad}\""))
                && r.stderr.contains("seconds since 1970")
                && r.stderr.contains("help:"),
            "{}",
            r.stderr
        );
        nothing_fetched(&s);
    }
    // Empty means unset (as `SOURCE_DATE_EPOCH= snp-build ...` means).
    let r = s.run_env(
        &[("SOURCE_DATE_EPOCH", std::ffi::OsStr::new(""))],
        &["plan", "--package", "--date", "2026-11-29"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn an_output_that_cannot_take_the_release_is_refused_up_front() {
    let s = Scratch::new(shared_fixtures());
    let file = s.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let at_file = file.display().to_string();
    refused(
        &s,
        &["--package", "--output", &at_file],
        &[&at_file, "not a directory"],
    );
    // Under a file: nothing can be made there (root ignores permission bits,
    // but not this).
    let under = file.join("out").display().to_string();
    refused(
        &s,
        &["--package", "--output", &under],
        &[&under, "cannot be written"],
    );
    // A read-only file system.
    if Path::new("/proc/sys").is_dir() {
        refused(
            &s,
            &["--package", "--output", "/proc/sys/snp-release"],
            &["/proc/sys/snp-release", "cannot be written"],
        );
    }
}

#[test]
fn a_job_budget_the_jobserver_cannot_hold_is_clamped_with_a_warning() {
    let s = Scratch::new(shared_fixtures());
    let r = s.run(&["-j", "100000", "qemu"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("warning: -j 100000 is more than the job server can hold")
            && r.stderr.contains("using -j 4096"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_second_writer_of_a_release_name_waits_for_the_first() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["qemu"]);
    let out = s.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Another snp-build is writing a release there.
    let held = std::fs::File::open(&out).unwrap();
    held.lock().unwrap();
    let mut child = s.spawn(&[
        "qemu",
        "--package",
        "--output",
        "out",
        "--date",
        "2026-11-29",
    ]);
    let mut stderr = child.stderr.take().unwrap();
    let waiting = std::thread::spawn(move || {
        use std::io::Read;
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // It waits while the name is held...
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "it did not wait");
    assert!(!out.join("snp-release-2026-11-29.tar.gz").exists());
    // ...and writes once it is free; what it prints is the file on disk.
    drop(held);
    let status = child.wait().unwrap();
    let text = waiting.join().unwrap();
    assert!(status.success(), "{text}");
    assert!(
        text.contains("another snp-build is writing a release into"),
        "{text}"
    );
    let tarball = out.join("snp-release-2026-11-29.tar.gz");
    let sha = sha256_file(&tarball);
    assert!(text.contains(&format!("(sha256 {sha})")), "{text}");
}
