//! Caching, plan and resume (issue: caching): the second run only redoes
//! what changed.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const ALL: [&str; 4] = ["qemu", "ovmf", "kernel-guest", "kernel-host"];

/// Stage names whose status is `ok` (they ran).
fn ran(doc: &Value) -> Vec<String> {
    doc["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "ok")
        .map(|s| s["stage"].as_str().unwrap().to_string())
        .collect()
}

/// Builds everything, applies `change`, builds again with `args`, and
/// checks that exactly `expected` ran the second time.
fn reruns_exactly(change: impl FnOnce(&Scratch), args: &[&str], expected: &[&str]) -> Value {
    let s = Scratch::new(shared_fixtures());
    let first = s.run_ok(&["-j2"]);
    assert_eq!(ran(&first), ALL);
    change(&s);
    let mut all = vec!["-j2"];
    all.extend(args);
    let second = s.run_ok(&all);
    assert_eq!(ran(&second), expected, "{second}");
    for st in second["stages"].as_array().unwrap() {
        if st["status"] == "skipped" {
            assert_eq!(st["reasons"][0], "up to date");
        }
    }
    second
}

fn reason_of<'a>(doc: &'a Value, name: &str) -> &'a str {
    stage(doc, name)["reasons"][0].as_str().unwrap()
}

#[test]
fn nothing_changed_nothing_runs() {
    let doc = reruns_exactly(|_| {}, &[], &[]);
    assert_eq!(doc["stages"].as_array().unwrap().len(), 4);
}

#[test]
fn input_sha_reruns_only_that_source() {
    let root = tempfile::tempdir().unwrap();
    let fx = own_fixtures(root.path());
    let s = Scratch::new(&fx);
    assert_eq!(ran(&s.run_ok(&["-j2"])), ALL);
    let new = upstream_commit(&fx.join("qemu.git"), "snp-latest", "NEWS", "x\n", None);
    s.run_ok(&["update", "qemu"]);
    let doc = s.run_ok(&["-j2"]);
    assert_eq!(ran(&doc), ["qemu"]);
    assert!(
        reason_of(&doc, "qemu").starts_with("sha changed: "),
        "{doc}"
    );
    assert!(reason_of(&doc, "qemu").ends_with(&new), "{doc}");
}

#[test]
fn input_patches_reruns_only_that_source() {
    let doc = reruns_exactly(
        |s| {
            let tree = s.tree("ovmf");
            let readme = "Readme.md";
            let old = std::fs::read_to_string(tree.join(readme)).unwrap();
            let first = old.lines().next().unwrap();
            let dir = s.path().join("patches/ovmf");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("0001-note.patch"),
                format!(
                    "--- a/{readme}\n+++ b/{readme}\n@@ -1 +1 @@\n-{first}\n+{first} (patched)\n"
                ),
            )
            .unwrap();
        },
        &[],
        &["ovmf"],
    );
    assert!(
        reason_of(&doc, "ovmf").starts_with("patches changed: none -> "),
        "{doc}"
    );
}

#[test]
fn input_base_config_reruns_both_kernels() {
    // A base config file: its content is an input, not just its name.
    let doc = reruns_exactly(
        |s| {
            let base = s.path().join("base.config");
            std::fs::copy(s.work().join("kernel-host/config"), &base).unwrap();
            s.edit_pins(
                "base-config = [\"defconfig\", \"configs/snp-{kernel}.config\"]",
                "base-config = \"base.config\"",
            );
        },
        &[],
        &["kernel-guest", "kernel-host"],
    );
    assert!(
        reason_of(&doc, "kernel-host")
            .starts_with("base-config changed: defconfig + configs/snp-host.config (")
    );
}

#[test]
fn input_edits_reruns_both_kernels_with_a_clean_build() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["-j2"]);
    s.edit_pins("[kernel]\n", "[kernel]\nallow-dropped = [\"UBSAN\"]\n");
    let doc = s.run_ok(&["-j2"]);
    assert_eq!(ran(&doc), ["kernel-guest", "kernel-host"]);
    let log = std::fs::read_to_string(s.work().join("logs/kernel-host.log")).unwrap();
    assert!(
        log.contains("make ARCH=x86_64 distclean") || log.contains("distclean"),
        "a clean build: {log}"
    );
}

#[test]
fn only_a_new_sha_builds_the_kernel_incrementally() {
    let root = tempfile::tempdir().unwrap();
    let fx = own_fixtures(root.path());
    let s = Scratch::new(&fx);
    s.run_ok(&["kernel", "host"]);
    upstream_commit(
        &fx.join("linux.git"),
        "snp-host-latest",
        "NEWS",
        "x\n",
        None,
    );
    s.run_ok(&["update", "kernel", "host"]);
    let doc = s.run_ok(&["kernel", "host"]);
    assert_eq!(ran(&doc), ["kernel-host"]);
    let log = std::fs::read_to_string(s.work().join("logs/kernel-host.log")).unwrap();
    assert!(
        !log.contains("distclean"),
        "no distclean for a new SHA: {log}"
    );
    // --clean forces one.
    let doc = s.run_ok(&["kernel", "host", "--clean", "--force"]);
    assert_eq!(ran(&doc), ["kernel-host"]);
    let log = std::fs::read_to_string(s.work().join("logs/kernel-host.log")).unwrap();
    assert!(log.contains("distclean"), "{log}");
}

#[test]
fn input_package_format_reruns_both_kernels() {
    reruns_exactly(
        |_| {},
        &["--package-format", "rpm"],
        &["kernel-guest", "kernel-host"],
    );
}

#[test]
fn input_compiler_launcher_reruns_the_stages_that_use_it() {
    reruns_exactly(
        |s| {
            s.set_launcher(&s.slow_launcher("0"));
        },
        &[],
        &["qemu", "kernel-guest", "kernel-host"],
    );
}

#[test]
fn input_qemu_configure_args_reruns_only_qemu() {
    reruns_exactly(
        |s| {
            s.edit_pins(
                "branch = \"snp-latest\"\n",
                "branch = \"snp-latest\"\nconfigure-args = [\"--disable-docs\"]\n",
            )
        },
        &[],
        &["qemu"],
    );
}

#[test]
fn input_ovmf_defines_reruns_only_ovmf() {
    let doc = reruns_exactly(
        |s| {
            let text = std::fs::read_to_string(s.pins()).unwrap();
            let ovmf_at = text.find("[ovmf]").unwrap();
            let (a, b) = text.split_at(ovmf_at);
            let b = b.replacen("branch = \"snp-latest\"\n", "branch = \"snp-latest\"\ndefines = [\"DEBUG_ON_SERIAL_PORT=TRUE\", \"SMM_REQUIRE=FALSE\"]\n", 1);
            std::fs::write(s.pins(), format!("{a}{b}")).unwrap();
        },
        &[],
        &["ovmf"],
    );
    assert!(
        reason_of(&doc, "ovmf").starts_with("defines changed: DEBUG_ON_SERIAL_PORT=TRUE -> "),
        "{doc}"
    );
}

#[test]
fn input_install_dir_reruns_qemu_and_ovmf() {
    reruns_exactly(|_| {}, &["--install", "other/prefix"], &["qemu", "ovmf"]);
}

#[test]
fn input_tool_version_reruns_the_stages_that_use_the_tool() {
    // A different `nasm` on PATH (only OVMF uses it).
    let s = Scratch::new(shared_fixtures());
    let bin = s.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let run = |extra_path: Option<&Path>| {
        let path = match extra_path {
            Some(p) => format!("{}:{}", p.display(), std::env::var("PATH").unwrap()),
            None => std::env::var("PATH").unwrap(),
        };
        let out = assert_cmd::Command::cargo_bin("snp-build")
            .unwrap()
            .current_dir(s.path())
            .env(INSTALLER_ENV, "none")
            .env("PATH", path)
            .args([
                "--config",
                "stable-commits.toml",
                "--work-dir",
                "build",
                "-j2",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    script(
        &bin.join("nasm"),
        "#!/bin/sh\necho 'NASM version 2.16.01 compiled on Jan  1 2024'\n",
    );
    assert_eq!(ran(&run(Some(&bin))), ALL);
    std::fs::write(
        bin.join("nasm"),
        "#!/bin/sh\necho 'NASM version 2.16.03 compiled on Jan  1 2025'\n",
    )
    .unwrap();
    let doc = run(Some(&bin));
    assert_eq!(ran(&doc), ["ovmf"]);
    assert!(
        reason_of(&doc, "ovmf").contains("tool:nasm changed: NASM version 2.16.01"),
        "{doc}"
    );
}

#[test]
fn a_deleted_or_edited_output_reruns_its_stage() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["-j2"]);
    std::fs::remove_file(s.path().join("usr/local/bin/qemu-system-x86_64")).unwrap();
    let vars = s.path().join("usr/local/share/qemu/OVMF_VARS.fd");
    let mut bytes = std::fs::read(&vars).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&vars, bytes).unwrap();
    let doc = s.run_ok(&["-j2"]);
    assert_eq!(ran(&doc), ["qemu", "ovmf"]);
    assert!(
        reason_of(&doc, "qemu").contains("qemu-system-x86_64 is gone"),
        "{doc}"
    );
    assert!(
        reason_of(&doc, "ovmf").contains("OVMF_VARS.fd was modified"),
        "{doc}"
    );
    // Touching without changing content is not a change.
    let f = std::fs::File::options().write(true).open(&vars).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3))
        .unwrap();
    assert_eq!(ran(&s.run_ok(&[])), Vec::<String>::new());
}

#[test]
fn plan_before_a_build_matches_what_runs_and_dry_run_changes_nothing() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["qemu"]);
    let plan = s.run_ok(&["plan"]);
    let planned: Vec<(String, String)> = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["stage"].as_str().unwrap().into(),
                p["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(planned[0], ("qemu".to_string(), "skip".to_string()));

    let snapshot = |dir: &Path| {
        let mut v = Vec::new();
        fn walk(d: &Path, v: &mut Vec<(String, u64)>) {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    walk(&e.path(), v);
                } else {
                    v.push((e.path().display().to_string(), m.len()));
                }
            }
        }
        walk(dir, &mut v);
        v.sort();
        v
    };
    let before = snapshot(s.path());
    let dry = s.run_ok(&["--dry-run"]);
    assert_eq!(dry["stages"], plan["stages"], "--dry-run prints the plan");
    assert_eq!(snapshot(s.path()), before, "--dry-run changed files");

    let build = s.run_ok(&[]);
    let actual: Vec<(String, String)> = build["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| {
            let action = if st["status"] == "ok" { "run" } else { "skip" };
            (st["stage"].as_str().unwrap().into(), action.to_string())
        })
        .collect();
    assert_eq!(actual, planned);
}

#[test]
fn a_killed_build_resumes_without_redoing_finished_stages() {
    let s = Scratch::new(shared_fixtures());
    // qemu and ovmf finish; the kernel is killed mid-compile.
    s.run_ok(&["qemu"]);
    s.run_ok(&["ovmf"]);
    let pins = s.set_launcher(&s.slow_launcher("30"));
    let mut child = s.spawn(&["kernel", "host"]);
    wait_until(60, "the kernel to start compiling", || {
        std::fs::read_to_string(s.work().join("logs/kernel-host.log"))
            .unwrap_or_default()
            .contains("slow-cc")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // SIGKILL leaves the build's own process groups running: stop them, as
    // an admin (or the machine's reboot) would.
    let me = s.path().display().to_string();
    std::process::Command::new("pkill")
        .args(["-KILL", "-f", &me])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));

    std::fs::write(s.pins(), pins).unwrap();
    let doc = s.run_ok(&["kernel", "host"]);
    assert_eq!(ran(&doc), ["kernel-host"]);
    let again = s.run_ok(&[]);
    // qemu and ovmf were never redone; the guest kernel was never built.
    assert_eq!(ran(&again), ["kernel-guest"]);
}

#[test]
fn a_second_run_on_the_same_work_dir_fails_fast_with_the_pid() {
    let s = Scratch::new(shared_fixtures());
    let pins = s.set_launcher(&s.slow_launcher("20"));
    let child = s.spawn(&["qemu"]);
    let pid = child.id().to_string();
    let lockfile = s.work().join(".snp-build.lock");
    wait_until(30, "the first run to take the lock", || {
        std::fs::read_to_string(&lockfile).unwrap_or_default() == pid
    });
    let started = std::time::Instant::now();
    let r = s.run(&["qemu"]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("in use by pid {pid}")),
        "{}",
        r.stderr
    );
    assert!(started.elapsed().as_secs() < 10, "it must fail fast");
    // Stop the first run (SIGTERM: it stops its stages and exits 130).
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    // Its lock died with it: the next run is not blocked.
    std::fs::write(s.pins(), pins).unwrap();
    s.run_ok(&["qemu"]);
}

#[test]
fn a_new_qemu_sha_rebuilds_incrementally_without_configure() {
    let root = tempfile::tempdir().unwrap();
    let fx = own_fixtures(root.path());
    let s = Scratch::new(&fx);
    s.run_ok(&["qemu"]);
    let log = || std::fs::read_to_string(s.work().join("logs/qemu.log")).unwrap();
    assert!(
        log().contains("/configure --target-list="),
        "the first build configures"
    );
    upstream_commit(&fx.join("qemu.git"), "snp-latest", "NEWS", "x\n", None);
    s.run_ok(&["update", "qemu"]);
    let doc = s.run_ok(&["qemu"]);
    assert_eq!(ran(&doc), ["qemu"]);
    let text = log();
    assert!(
        !text.contains("/configure --target-list="),
        "configure reran: {text}"
    );
    assert!(
        !text.contains("Compiling C object "),
        "objects were rebuilt: {text}"
    );
    // --clean configures afresh (QEMU's configure empties build/).
    s.run_ok(&["qemu", "--force", "--clean"]);
    let text = log();
    assert!(
        text.contains("/configure --target-list=") && text.contains("Compiling C object "),
        "{text}"
    );
}
