//! Build stages (issue: stages) and kernel config verification (issue:
//! patches and config), through the real binary on fixture upstreams.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn stage_names(doc: &Value) -> Vec<String> {
    doc["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap().to_string())
        .collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_build_of_everything_installs_qemu_and_firmware_and_keeps_kernel_packages_apart() {
    let s = Scratch::new(shared_fixtures());
    let doc = s.run_ok(&["-j2"]);
    assert_eq!(
        stage_names(&doc),
        ["qemu", "ovmf", "kernel-guest", "kernel-host"]
    );
    for name in ["qemu", "ovmf", "kernel-guest", "kernel-host"] {
        assert_eq!(stage(&doc, name)["status"], "ok", "{name}");
        let log = PathBuf::from(stage(&doc, name)["log"].as_str().unwrap());
        assert_eq!(log, s.work().join(format!("logs/{name}.log")));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("] $ "), "{name}: command lines in the log");
    }
    let install = s.path().join("usr/local");
    assert!(install.join("bin/qemu-system-x86_64").is_file());
    for fd in ["OVMF_CODE.fd", "OVMF_VARS.fd", "OVMF.fd"] {
        assert!(install.join("share/qemu").join(fd).is_file(), "{fd}");
    }
    assert!(
        stage(&doc, "qemu")["outputs"]["version"]
            .as_str()
            .unwrap()
            .starts_with("QEMU emulator version")
    );

    for (kernel, other) in [("host", "guest"), ("guest", "host")] {
        let debs = files(&s.work().join(format!("kernel-{kernel}/packages")));
        assert!(debs.len() >= 3, "{kernel}: {debs:?}");
        let tag = format!("-snp-{kernel}-");
        assert!(
            debs.iter()
                .all(|d| d.contains(&tag) && !d.contains(&format!("-snp-{other}-"))),
            "{kernel}: {debs:?}"
        );
        let image = stage(&doc, &format!("kernel-{kernel}"))["outputs"]["image"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            image.contains("/linux-image-") && !image.contains("-dbg_"),
            "{image}"
        );
        let status = std::process::Command::new("dpkg-deb")
            .arg("--info")
            .arg(&image)
            .output()
            .unwrap();
        assert!(status.status.success(), "dpkg-deb --info {image}");
        assert!(s.work().join(format!("kernel-{kernel}/config")).is_file());
    }
    for (file, bare, branch) in [
        ("source-commit.qemu", "qemu.git", "snp-latest"),
        ("source-commit.ovmf", "ovmf.git", "snp-latest"),
        ("source-commit.kernel.host", "linux.git", "snp-host-latest"),
        (
            "source-commit.kernel.guest",
            "linux.git",
            "snp-guest-latest",
        ),
    ] {
        let short = std::fs::read_to_string(s.work().join(file)).unwrap();
        let full = rev_parse(&shared_fixtures().join(bare), branch);
        assert_eq!(short.trim(), &full[..12], "{file}");
    }

    // The LOCALVERSION carries the pinned short SHA.
    let host_sha = rev_parse(&shared_fixtures().join("linux.git"), "snp-host-latest");
    let release = stage(&doc, "kernel-host")["outputs"]["release"]
        .as_str()
        .unwrap()
        .to_string();
    // As Linux 6.1 in a git tree with LOCALVERSION unset (build.sh's
    // case): the release ends in "+".
    assert!(
        release.ends_with(&format!("-snp-host-{}+", &host_sha[..12])),
        "{release}"
    );
    // Packages of earlier runs are never picked up: plant stale ones where
    // bindeb-pkg writes and in the collected set, then rebuild.
    let stale = "linux-image-5.0.0-old_5.0.0-old-1_amd64.deb";
    std::fs::write(s.work().join("kernel-host").join(stale), "old").unwrap();
    std::fs::write(s.work().join("kernel-host/packages").join(stale), "old").unwrap();
    // Skipped (up to date): the recorded packages are this build's only.
    let again = s.run_ok(&["kernel", "host"]);
    assert_eq!(stage(&again, "kernel-host")["status"], "skipped");
    let recorded = stage(&again, "kernel-host")["outputs"]["packages"].to_string();
    assert!(!recorded.contains("5.0.0-old"), "{recorded}");
    // Rebuilt: the stale files are gone from where packages are collected.
    let again = s.run_ok(&["kernel", "host", "--force"]);
    assert_eq!(stage_names(&again), ["kernel-host"]);
    assert_eq!(stage(&again, "kernel-host")["status"], "ok");
    let debs = files(&s.work().join("kernel-host/packages"));
    assert!(!debs.iter().any(|d| d.contains("5.0.0-old")), "{debs:?}");
    assert!(
        debs.iter()
            .all(|d| d.contains(&format!("-snp-host-{}", &host_sha[..12]))),
        "{debs:?}"
    );
}

#[test]
fn each_selection_builds_only_what_it_names() {
    for (args, want) in [
        (&["qemu"][..], &["qemu"][..]),
        (&["ovmf"], &["ovmf"]),
        (&["kernel"], &["kernel-guest", "kernel-host"]),
        (&["kernel", "host"], &["kernel-host"]),
        (&["kernel", "guest"], &["kernel-guest"]),
    ] {
        let s = Scratch::new(shared_fixtures());
        let doc = s.run_ok(args);
        assert_eq!(stage_names(&doc), want, "{args:?}");
        for name in ["qemu", "ovmf", "kernel-host", "kernel-guest"] {
            assert_eq!(
                s.tree(name).exists(),
                want.contains(&name),
                "{args:?}: {name} tree"
            );
        }
    }
}

#[test]
fn rpm_packages_are_collected_per_kernel() {
    let s = Scratch::new(shared_fixtures());
    let doc = s.run_ok(&["kernel", "--package-format", "rpm"]);
    for (kernel, other) in [("host", "guest"), ("guest", "host")] {
        let rpms = files(&s.work().join(format!("kernel-{kernel}/packages")));
        assert!(
            !rpms.is_empty() && rpms.iter().all(|r| r.ends_with(".rpm")),
            "{rpms:?}"
        );
        assert!(
            rpms.iter()
                .all(|r| r.contains(&format!("snp_{kernel}_"))
                    && !r.contains(&format!("snp_{other}_"))),
            "{rpms:?}"
        );
        let image = stage(&doc, &format!("kernel-{kernel}"))["outputs"]["image"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(image.contains("/kernel-6"), "{image}");
    }
}

/// A compiler launcher that records the start and end of every compile.
fn recorder(dir: &Path, sleep: &str) -> (PathBuf, PathBuf) {
    let log = dir.join("compiles.log");
    let script = dir.join("record-cc");
    common::script(
        &script,
        &format!(
            "#!/bin/sh\necho \"start $$ $(date +%s%N)\" >> '{log}'\n{sleep}\n\"$@\"\nrc=$?\necho \"end $$ $(date +%s%N)\" >> '{log}'\nexit $rc\n",
            log = log.display()
        ),
    );
    (script, log)
}

/// The most compiles that ever ran at once, from the recorded intervals.
fn peak_concurrency(log: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(log).unwrap();
    let mut events: Vec<(u128, i32)> = text
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[2].parse().unwrap(), if w[0] == "start" { 1 } else { -1 })
        })
        .collect();
    // Ends before starts at the same instant.
    events.sort();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in &events {
        now += d;
        peak = peak.max(now);
    }
    (peak as usize, events.len() / 2)
}

#[test]
fn with_j2_never_more_than_two_compiles_run_at_once() {
    let s = Scratch::new(shared_fixtures());
    let (launcher, log) = recorder(s.path(), "sleep 0.05");
    s.set_launcher(&launcher);
    s.run_ok(&["-j2"]);
    let (peak, compiles) = peak_concurrency(&log);
    assert!(compiles > 20, "the launcher saw the compiles ({compiles})");
    assert!(peak <= 2, "{peak} compiles ran at once under -j2");
    assert!(peak >= 1);
}

#[test]
fn a_failing_stage_shows_stage_command_log_tail_and_path() {
    let s = Scratch::new(shared_fixtures());
    s.edit_pins(
        "branch = \"snp-latest\"\n",
        "branch = \"snp-latest\"\nconfigure-args = [\"--enable-fixture-broken\"]\n",
    );
    let r = s.run(&["qemu", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let log = s.work().join("logs/qemu.log");
    assert!(r.stderr.contains("stage qemu failed"), "{}", r.stderr);
    assert!(
        r.stderr.contains("`make -j"),
        "names the command: {}",
        r.stderr
    );
    assert!(r.stderr.contains("exit status"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&log.display().to_string()),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("  | "), "the log's tail: {}", r.stderr);
    assert!(
        r.stderr.contains("FIXTURE_BROKEN") || r.stderr.contains("error"),
        "{}",
        r.stderr
    );
    let doc = r.json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(stage(&doc, "qemu")["status"], "failed");
}

#[test]
fn a_failing_stage_stops_the_others_unless_keep_going() {
    let s = Scratch::new(shared_fixtures());
    s.edit_pins(
        "branch = \"snp-latest\"\n",
        "branch = \"snp-latest\"\nconfigure-args = [\"--enable-fixture-broken\"]\n",
    );
    let r = s.run(&["--keep-going", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let doc = r.json();
    assert_eq!(stage(&doc, "qemu")["status"], "failed");
    for name in ["ovmf", "kernel-guest", "kernel-host"] {
        assert_eq!(
            stage(&doc, name)["status"],
            "ok",
            "{name} with --keep-going"
        );
    }
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

#[test]
fn sigint_stops_every_child_and_the_next_run_continues() {
    let s = Scratch::new(shared_fixtures());
    let (launcher, log) = recorder(s.path(), "sleep 1");
    let text = s.set_launcher(&launcher);
    let child = s.spawn(&["-j2", "kernel", "host"]);
    // Wait until compiles are running, then Ctrl-C.
    wait_until(60, "a compile to start", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("start")
    });
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let left = processes_mentioning(&s.path().display().to_string());
    assert!(left.is_empty(), "children survived: {left:?}");

    // The next run (without the slow launcher) finishes the build.
    std::fs::write(s.pins(), text).unwrap();
    let doc = s.run_ok(&["kernel", "host"]);
    assert_eq!(stage(&doc, "kernel-host")["status"], "ok");
}

#[test]
fn ctrl_c_during_a_non_client_tools_compiles_stops_without_hanging() {
    // QEMU's make -> ninja is no jobserver client: its compiles hold job
    // tokens (taken in the gcc wrapper, the stage's slot lent to them).
    // Stopped, they give them back, and the stage does not wait for its
    // slot again.
    let s = Scratch::new(shared_fixtures());
    let (launcher, log) = recorder(s.path(), "sleep 2");
    let text = s.set_launcher(&launcher);
    let mut child = s.spawn(&["-j2", "qemu"]);
    wait_until(60, "a QEMU compile to start", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("start")
    });
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let mut status = None;
    wait_until(30, "snp-build to exit after Ctrl-C", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(130));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let left = processes_mentioning(&s.path().display().to_string());
    assert!(left.is_empty(), "children survived: {left:?}");
    std::fs::write(s.pins(), text).unwrap();
    let doc = s.run_ok(&["-j2", "qemu"]);
    assert_eq!(stage(&doc, "qemu")["status"], "ok");
}

/// The pin file with `extra` appended to the default `disable` list and
/// `allow` as allow-dropped.
fn with_disabled(s: &Scratch, extra: &[&str], allow: &[&str]) {
    let mut disable = common::embedded_kernel_edits().disable;
    disable.extend(extra.iter().map(|x| x.to_string()));
    let list = |v: &[String]| {
        v.iter()
            .map(|x| format!("\"{x}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let allow: Vec<String> = allow.iter().map(|x| x.to_string()).collect();
    s.edit_pins(
        "[kernel]\n",
        &format!(
            "[kernel]\ndisable = [{}]\nallow-dropped = [{}]\n",
            list(&disable),
            list(&allow)
        ),
    );
}

#[test]
fn config_verification_fails_naming_dropped_options_and_allow_dropped_accepts_them() {
    let fx = shared_fixtures();
    // KVM_AMD_SEV's dependency unset: it is dropped by olddefconfig.
    let s = Scratch::new(fx);
    with_disabled(&s, &["CRYPTO_DEV_SP_PSP"], &[]);
    let r = s.run(&["kernel", "guest"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("KVM_AMD_SEV"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words,
        ["KVM_AMD_SEV", "y", "not", "set"],
        "option, wanted, got: {line}"
    );
    assert!(
        r.stderr.contains("allow-dropped"),
        "says what to do: {}",
        r.stderr
    );
    assert!(
        !s.work().join("kernel-guest/packages").exists(),
        "nothing was packaged"
    );

    // With the dependency set (the default edits), it passes.
    let s = Scratch::new(fx);
    let doc = s.run_ok(&["kernel", "guest"]);
    let v = &stage(&doc, "kernel-guest")["outputs"]["verification"];
    assert_eq!(v["failures"].as_array().unwrap().len(), 0, "{v}");
    assert!(v["checked"].as_u64().unwrap() > 40, "{v}");

    // Accepting the drop explicitly: it passes with a warning naming it.
    let s = Scratch::new(fx);
    with_disabled(&s, &["CRYPTO_DEV_SP_PSP"], &["KVM_AMD_SEV"]);
    let r = s.run(&["kernel", "guest", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("warning") && l.contains("KVM_AMD_SEV")),
        "{}",
        r.stderr
    );
    // One summary line at the default level; each drop under -v.
    let drops: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("allow") && l.contains("dropped"))
        .collect();
    assert_eq!(drops.len(), 1, "{}", r.stderr);
    assert!(
        drops[0].contains("1 config option(s) listed in allow-dropped"),
        "{}",
        drops[0]
    );
    let verbose = s.run(&["kernel", "guest", "-v", "--force=kernel-guest"]);
    assert_eq!(verbose.code, 0, "{}", verbose.stderr);
    assert!(
        verbose
            .stderr
            .contains("config KVM_AMD_SEV: wanted y, got not set (allowed to be dropped)"),
        "{}",
        verbose.stderr
    );
    let doc = r.json();
    let warnings = &stage(&doc, "kernel-guest")["outputs"]["verification"]["warnings"];
    assert!(
        warnings
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["option"] == "KVM_AMD_SEV"),
        "{warnings}"
    );
}

#[test]
fn base_config_running_without_boot_config_names_the_path_and_the_alternatives() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let path = format!("/boot/config-{}", release.trim());
    let s = Scratch::new(shared_fixtures());
    s.edit_pins(
        "base-config = [\"defconfig\", \"configs/snp-{kernel}.config\"]",
        "base-config = \"running\"",
    );
    let r = s.run(&["kernel", "host"]);
    if Path::new(&path).exists() {
        // A host that has it: the build starts from it.
        assert!(
            std::fs::read_to_string(s.work().join("logs/kernel-host.log"))
                .unwrap()
                .contains(&path)
        );
    } else {
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains(&path), "{}", r.stderr);
        assert!(
            r.stderr.contains("defconfig") && r.stderr.contains("tinyconfig"),
            "{}",
            r.stderr
        );
        assert!(!s.tree("kernel-host").exists(), "refused before fetching");
    }
}

#[test]
fn a_missing_tool_stops_the_build_before_any_fetch_with_the_table() {
    let s = Scratch::new(shared_fixtures());
    let empty = s.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let path = [("PATH", empty.as_os_str())];
    let out = s.run_env(&path, &["qemu", "--json"]);
    let stderr = &out.stderr;
    assert_eq!(out.code, 4, "{stderr}");
    assert!(
        stderr.contains("make") && stderr.contains("missing"),
        "the table: {stderr}"
    );
    assert!(
        stderr.contains("apt-get install -y") || stderr.contains("dnf install -y"),
        "{stderr}"
    );
    assert!(!s.tree("qemu").exists(), "nothing was fetched");
    let doc = out.json();
    assert_eq!(doc["exit_code"], 4);
    assert!(
        doc["preflight"]["checks"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{doc}"
    );
    // --no-preflight goes on (and fails later, honestly, without make).
    let out = s.run_env(&path, &["qemu", "--no-preflight"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(s.tree("qemu").exists(), "fetched this time");
}

/// A stage's time counts from when it got its job slot (the span of its
/// own commands in its log), the wait before is reported apart, and a
/// rebuild keeps the previous run's log as `<stage>.log.1`.
#[test]
fn stage_times_count_from_the_job_slot_and_the_previous_log_is_kept() {
    let s = Scratch::new(shared_fixtures());
    s.set_launcher(&s.slow_launcher("0.2"));
    // Four stages, two job slots: two of them wait.
    let doc = s.run_ok(&["-j2"]);
    let last_stamp = |log: &str| -> f64 {
        std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let inner = l.strip_prefix('[')?.split_once("s]")?.0;
                inner.trim().parse::<f64>().ok()
            })
            .fold(0.0, f64::max)
    };
    let mut waited = 0.0;
    let mut logs = Vec::new();
    for st in doc["stages"].as_array().unwrap() {
        let (d, w) = (
            st["duration_s"].as_f64().unwrap(),
            st["wait_s"].as_f64().unwrap(),
        );
        let log = st["log"].as_str().unwrap().to_string();
        let span = last_stamp(&log);
        assert!(
            (d - span).abs() < 1.0,
            "{}: duration_s {d} but its commands span {span}s (waited {w}s)",
            st["stage"]
        );
        waited += w;
        logs.push((log.clone(), std::fs::read(&log).unwrap()));
    }
    assert!(
        waited > 0.5,
        "two stages waited for a slot: {waited}s in all"
    );

    s.run_ok(&["-j2", "--force"]);
    for (log, before) in logs {
        let kept = std::fs::read(format!("{log}.1")).unwrap();
        assert_eq!(kept, before, "{log}.1 is the previous run's log");
    }
}

/// Every file under `dir`, relative, sorted.
fn tree_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn qemu_builds_only_what_make_install_installs_and_installs_the_same_files() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["-j2", "qemu"]);
    let build = s.tree("qemu").join("build");
    // The emulator is built; the qtest programs (QEMU's default target
    // builds them) are not.
    assert!(build.join("qemu-system-x86_64").is_file());
    assert!(!build.join("tests/qtest/test-000").exists());
    let log = std::fs::read_to_string(s.work().join("logs/qemu.log")).unwrap();
    assert!(
        log.contains("building the 1 installed targets only")
            && log.contains("meson install --no-rebuild --destdir"),
        "{log}"
    );
    // build.sh's `make && make install` of the same tree installs the same
    // files (and builds the qtests too).
    let by_make = s.path().join("by-make");
    let out = std::process::Command::new("make")
        .current_dir(s.tree("qemu"))
        .args(["-j2", "install"])
        .arg(format!("DESTDIR={}", by_make.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(build.join("tests/qtest/test-000").is_file());
    let staged = tree_files(&s.work().join("qemu/destdir"));
    assert_eq!(staged, tree_files(&by_make));
    assert!(staged.contains(&"usr/local/bin/qemu-system-x86_64".to_string()));
}

#[test]
fn a_new_qemu_commit_that_adds_an_installed_program_installs_it_without_reconfiguring() {
    // meson's list of installed targets is regenerated before it is read:
    // the incremental build (configure not rerun) must see the new one.
    let root = tempfile::tempdir().unwrap();
    let fx = own_fixtures(root.path());
    let s = Scratch::new(&fx);
    s.run_ok(&["-j2", "qemu"]);
    let bare = fx.join("qemu.git");
    let meson = git(&bare, &["show", "snp-latest:meson.build"]);
    upstream_commit(
        &bare,
        "snp-latest",
        "meson.build",
        &format!(
            "{meson}\nexecutable('qemu-img', files('tests/qtest/libqtest.c'),\n           include_directories: inc, install: true)\n"
        ),
        None,
    );
    s.run_ok(&["update", "qemu"]);
    s.run_ok(&["-j2", "qemu"]);
    let log = std::fs::read_to_string(s.work().join("logs/qemu.log")).unwrap();
    assert!(
        log.contains("configure: same command as the last build, not rerun"),
        "{log}"
    );
    assert!(log.contains("installed targets only"), "{log}");
    assert!(
        s.work()
            .join("qemu/destdir/usr/local/bin/qemu-img")
            .is_file(),
        "{log}"
    );
}
