//! The command line as a user meets it: the embedded default, `init`,
//! `config`, global flags, JSON on stdout, exit codes.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

#[test]
fn without_a_pin_file_the_embedded_default_is_used_and_said() {
    let dir = tempfile::tempdir().unwrap();
    let out = snp_build_in(dir.path()).arg("config").output().unwrap();
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
    snp_build_in(dir.path()).arg("init").assert().success();
    let written = std::fs::read_to_string(dir.path().join("stable-commits.toml")).unwrap();
    assert_eq!(written, include_str!("../stable-commits.toml"));

    let again = snp_build_in(dir.path()).arg("init").output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    // With ./stable-commits.toml present, it is used without the note.
    let out = snp_build_in(dir.path()).arg("config").output().unwrap();
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
    let out = snp_build_in(dir.path())
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
    let out = snp_build_in(dir.path())
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
        let out = snp_build_in(dir.path()).args(args).output().unwrap();
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
        let out = snp_build_in(dir.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    snp_build_in(dir.path()).arg("--help").assert().success();
    snp_build_in(dir.path()).arg("--version").assert().success();
}

/// `snp-build completions SHELL`'s stdout, after checking it succeeded.
fn completions(shell: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = snp_build_in(dir.path())
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The visible subcommands a user completes to (a sample of each kind:
/// build, host, release, and the completions command itself).
const SUBCOMMANDS: &[&str] = &["plan", "doctor", "install", "verify", "completions"];

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    let bash = completions("bash");
    assert!(bash.contains("complete -F _snp__build"), "{bash}");
    assert!(bash.contains("snp-build"));
    let zsh = completions("zsh");
    assert!(zsh.starts_with("#compdef snp-build"), "{zsh}");
    let fish = completions("fish");
    assert!(fish.contains("complete -c snp-build"), "{fish}");
    for script in [&bash, &zsh, &fish] {
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{sub} missing from\n{script}");
        }
        assert!(script.contains("work-dir"), "{script}");
    }
    // With --json the script is the document's field, not printed beside it.
    let dir = tempfile::tempdir().unwrap();
    let out = snp_build_in(dir.path())
        .args(["completions", "fish", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["command"], "completions");
    assert_eq!(doc["shell"], "fish");
    assert_eq!(doc["script"].as_str(), Some(fish.as_str()));
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = snp_build_in(dir.path())
        .args(["completions", "ksh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid value 'ksh'"), "{stderr}");
    assert!(stderr.contains("bash, zsh, fish"), "{stderr}");
    let out = snp_build_in(dir.path())
        .arg("completions")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// bash sources the script and then completes for real: `snp-build pl`
/// offers `plan`, and past a subcommand (clap-rs/clap#6421: nothing did,
/// for a hyphenated binary name) `snp-build completions ` offers the three
/// shells and `snp-build import-legacy --f` its `--force`.
#[test]
fn bash_sources_the_completion_and_completes_subcommands() {
    let bin = Path::new(env!("CARGO_BIN_EXE_snp-build"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = r#"source <(snp-build completions bash) && complete -p snp-build &&
        COMP_WORDS=(snp-build pl); COMP_CWORD=1; _snp__build snp-build pl snp-build;
        echo "sub: ${COMPREPLY[*]}";
        COMP_WORDS=(snp-build completions ''); COMP_CWORD=2; _snp__build snp-build '' completions;
        echo "shells: ${COMPREPLY[*]}";
        COMP_WORDS=(snp-build import-legacy --f); COMP_CWORD=2; _snp__build snp-build --f import-legacy;
        echo "flags: ${COMPREPLY[*]}""#;
    let out = std::process::Command::new("bash")
        .args(["-c", script])
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("complete -o bashdefault"), "{stdout}");
    assert!(stdout.contains("-F _snp__build snp-build"), "{stdout}");
    assert!(stdout.contains("sub: plan\n"), "{stdout}");
    // The shells come after the subcommand's flags (an empty word offers both).
    assert!(stdout.contains(" --help bash zsh fish\n"), "{stdout}");
    assert!(stdout.contains("flags: --force\n"), "{stdout}");
}

#[test]
fn the_man_page_is_roff_naming_every_subcommand_and_each_has_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let out = snp_build_in(dir.path()).arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH snp-build 1 "), "{page}");
    assert!(page.contains(".SH SUBCOMMANDS"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("snp\\-build\\-{sub}(1)")),
            "{sub}: {page}"
        );
    }
    // The exit codes and the registry's components are in the page.
    assert!(page.contains("4 preflight"), "{page}");
    assert!(page.contains("kernel host"), "{page}");
    // Hidden and clap's own: no page of their own, so not named.
    assert!(!page.contains("snp\\-build\\-man("), "{page}");
    assert!(!page.contains("snp\\-build\\-help("), "{page}");

    // --dir: the same main page, and a page for every one it names.
    let pages = dir.path().join("man1");
    snp_build_in(dir.path())
        .args(["man", "--dir"])
        .arg(&pages)
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(pages.join("snp-build.1")).unwrap(),
        page
    );
    let named: Vec<&str> = page
        .split("snp\\-build\\-")
        .skip(1)
        .filter_map(|rest| rest.split_once("(1)").map(|(name, _)| name))
        .collect();
    assert!(named.len() >= 14, "{named:?}");
    for name in named {
        let file = pages.join(format!("snp-build-{}.1", name.replace("\\-", "-")));
        let sub = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        assert!(
            sub.starts_with(".ie") && sub.contains(".TH snp-build-"),
            "{sub}"
        );
    }
    let install = std::fs::read_to_string(pages.join("snp-build-install.1")).unwrap();
    assert!(install.contains("\\-\\-allow\\-downgrade"), "{install}");
}
