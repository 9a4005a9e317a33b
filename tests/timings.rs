//! `--timings` (issue 14, item 3): `logs/timings.html` and
//! `logs/timings.json` from a real fixture build, the page opened in a
//! real headless browser (Debian's chromium), which must render a row for
//! every stage, skipped ones marked so; and `--json` carries each stage's
//! phases.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// The page as chromium renders it (`--dump-dom`), or `None` (after
/// saying why) without chromium.
fn rendered(html: &Path) -> Option<String> {
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })?;
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

const STAGES: [&str; 5] = ["qemu", "ovmf", "kernel-guest", "kernel-host", "release"];

#[test]
fn timings_render_a_row_for_every_stage_in_a_real_browser() {
    let s = Scratch::new(shared_fixtures());
    let doc = s.run_ok(&["--package", "--output", "out", "-j2", "--timings"]);
    let logs = s.work().join("logs");
    let html = logs.join("timings.html");
    let json: Value =
        serde_json::from_slice(&std::fs::read(logs.join("timings.json")).unwrap()).unwrap();

    // The JSON: every stage, its phases in order, a sample or more.
    let names: Vec<&str> = json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(names, STAGES, "{json}");
    for stage in &json["stages"].as_array().unwrap()[..4] {
        let phases: Vec<&str> = stage["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            phases,
            ["fetch", "configure", "compile", "package"],
            "{stage}"
        );
        assert_eq!(stage["status"], "ok");
        let start = stage["start_s"].as_f64().unwrap();
        let end = stage["end_s"].as_f64().unwrap();
        assert!(start <= end, "{stage}");
    }
    assert!(!json["samples"].as_array().unwrap().is_empty(), "{json}");
    // --json carries the same phases.
    let qemu = stage(&doc, "qemu");
    assert_eq!(qemu["phases"][2]["name"], "compile", "{qemu}");

    // The page, self-contained, as a browser renders it.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("<script") && !page.contains("http"),
        "not self-contained"
    );
    let Some(dom) = rendered(&html) else {
        panic!("chromium is not installed (.ci/install-deps installs it)");
    };
    for name in STAGES {
        assert!(
            dom.contains(&format!(r#"data-stage="{name}" data-status="ok""#)),
            "no row for {name} in the rendered page:\n{dom}"
        );
    }
    assert!(dom.contains(r#"id="jobs-chart""#), "{dom}");

    // Again: nothing runs, and every stage gets a row marked skipped.
    s.run_ok(&["--package", "--output", "out", "-j2", "--timings"]);
    let dom = rendered(&html).unwrap();
    for name in STAGES {
        assert!(
            dom.contains(&format!(r#"data-stage="{name}" data-status="skipped""#)),
            "{name} is not marked skipped:\n{dom}"
        );
    }
    assert!(dom.contains("skipped: up to date"), "{dom}");
}

/// The start order of a `-j1` build (one stage at a time through the
/// jobserver), read from `--timings`.
fn start_order(s: &Scratch) -> Vec<String> {
    let json: Value =
        serde_json::from_slice(&std::fs::read(s.work().join("logs/timings.json")).unwrap())
            .unwrap();
    let mut started: Vec<(f64, String)> = json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|st| Some((st["start_s"].as_f64()?, st["stage"].as_str()?.to_string())))
        .filter(|(_, name)| name != "release")
        .collect();
    started.sort_by(|a, b| a.0.total_cmp(&b.0));
    started.into_iter().map(|(_, n)| n).collect()
}

/// Longest first (issue 14, item 2): stages take their job slot in the
/// order of the durations their last stamps recorded, not build order.
#[test]
fn the_longest_stage_takes_the_first_job_slot() {
    let s = Scratch::new(shared_fixtures());
    // Cold: no stamp yet, the components' estimates (QEMU's is the
    // longest, as on real trees).
    s.run_ok(&["-j1", "--timings"]);
    assert_eq!(start_order(&s)[0], "qemu");
    // The stamps now hold how long each stage ran; give them an order
    // unlike the estimates' (QEMU last), as a run would record them.
    let longest_first = ["kernel-host", "ovmf", "kernel-guest", "qemu"];
    for (i, name) in longest_first.iter().enumerate() {
        let path = s.work().join(format!("state/{name}.json"));
        let mut stamp: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(stamp["duration_s"].as_f64().is_some(), "{stamp}");
        stamp["duration_s"] = Value::from(40.0 - 10.0 * i as f64);
        std::fs::write(&path, serde_json::to_vec_pretty(&stamp).unwrap()).unwrap();
    }
    s.run_ok(&["-j1", "--timings", "--force"]);
    assert_eq!(start_order(&s), longest_first);
}
