//! The command line as a user meets it: the embedded default, `init`,
//! `config`, global flags, JSON on stdout, exit codes.

use assert_cmd::Command;
use serde_json::Value;

fn snp(dir: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("snp-build").unwrap();
    c.current_dir(dir);
    c
}

#[test]
fn without_a_pin_file_the_embedded_default_is_used_and_said() {
    let dir = tempfile::tempdir().unwrap();
    let out = snp(dir.path()).arg("config").output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("embedded default"), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let effective: toml::Table = toml::from_str(&stdout).unwrap();
    assert_eq!(
        effective["kernel"]["host"]["url"].as_str(),
        Some("https://github.com/AMDESE/linux.git")
    );
    assert_eq!(effective["ovmf"]["branch"].as_str(), Some("snp-latest"));
    assert_eq!(effective["qemu"]["branch"].as_str(), Some("snp-latest"));
    assert_eq!(
        effective["kernel"]["guest"]["branch"].as_str(),
        Some("snp-guest-latest")
    );
}

#[test]
fn init_writes_the_default_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    snp(dir.path()).arg("init").assert().success();
    let written = std::fs::read_to_string(dir.path().join("stable-commits.toml")).unwrap();
    assert_eq!(written, include_str!("../stable-commits.toml"));

    let again = snp(dir.path()).arg("init").output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    // With ./stable-commits.toml present, it is used without the note.
    let out = snp(dir.path()).arg("config").output().unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("embedded"));
}

#[test]
fn config_fills_knobs_a_partial_file_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("only-qemu.toml"),
        "[qemu]\nurl = \"file:///srv/qemu.git\"\nbranch = \"snp-latest\"\nconfigure-args = [\"--disable-docs\"]\n",
    )
    .unwrap();
    let out = snp(dir.path())
        .args(["config", "--config", "only-qemu.toml", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["command"], "config");
    let qemu = &doc["config"]["qemu"];
    assert_eq!(qemu["configure-args"][0], "--disable-docs");
    assert_eq!(qemu["target-list"][0], "x86_64-softmmu");
    assert_eq!(qemu["submodules"], false);
    assert!(doc["config"]["ovmf"].is_null(), "pins are never defaulted");
    assert_eq!(
        doc["config"]["kernel"]["set-val"]["RCU_EXP_CPU_STALL_TIMEOUT"],
        1000
    );
}

#[test]
fn a_source_the_file_lacks_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("only-qemu.toml"),
        "[qemu]\nurl = \"file:///srv/qemu.git\"\nbranch = \"snp-latest\"\n",
    )
    .unwrap();
    let out = snp(dir.path())
        .args(["--config", "only-qemu.toml", "kernel", "host"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[kernel.host]"), "{stderr}");
}

#[test]
fn global_flags_go_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[qemu]\nurl = \"file:///u\"\nbranch = \"b\"\n",
    )
    .unwrap();
    for args in [
        &["--config", "p.toml", "--json", "-v", "config"][..],
        &["config", "--config", "p.toml", "--json", "-v"],
        &[
            "--work-dir",
            "w",
            "config",
            "-j",
            "3",
            "--install",
            "i",
            "--config",
            "p.toml",
            "--json",
        ],
    ] {
        let out = snp(dir.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["origin"], "p.toml", "{args:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["firmware"][..],
        &["kernel", "hots"],
        &["-j", "0"],
        &["--bogus"],
    ] {
        let out = snp(dir.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    snp(dir.path()).arg("--help").assert().success();
    snp(dir.path()).arg("--version").assert().success();
}
