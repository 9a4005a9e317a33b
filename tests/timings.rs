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
