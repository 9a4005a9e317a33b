//! Which host kernel and QEMU can launch SEV-SNP guests, and which VMSA
//! the release's digests assume (issue 26, item 3), end to end against
//! fixture upstreams given upstream release names: a QEMU tag below v9.1 is
//! refused before anything is fetched (or built with --allow-unsupported),
//! a tree whose version files say less than its branch name is refused
//! once fetched, and a 6.12 host kernel makes an init2 release whose
//! digests equal sev-snp-measure 0.0.13's.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A branch `name` of the bare `repo`, from `from`, whose `file` says
/// `content`; tagged `tag` when given.
fn release_branch(
    repo: &Path,
    from: &str,
    name: &str,
    file: &str,
    content: &str,
    tag: Option<&str>,
) {
    git(repo, &["branch", name, from]);
    let sha = upstream_commit(repo, name, file, content, None);
    if let Some(tag) = tag {
        git(repo, &["tag", tag, &sha]);
    }
}

/// Whether a stage has a stamp (`<work>/state/<stage>.json`).
fn stage_ran(s: &Scratch, stage: &str) -> bool {
    s.work()
        .join("state")
        .join(format!("{stage}.json"))
        .exists()
}

fn sev_snp_measure_init2() -> PathBuf {
    xtask::sev_snp_measure::for_mode("init2").unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn an_upstream_qemu_below_9_1_is_refused_before_fetching_and_built_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let fx = own_fixtures(dir.path());
    release_branch(
        &fx.join("qemu.git"),
        "snp-latest",
        "stable-8.2",
        "VERSION",
        "8.2.0\n",
        Some("v8.2.0"),
    );
    let s = Scratch::new(&fx);
    let pins = std::fs::read_to_string(s.pins()).unwrap();
    let qemu = pins.find("[qemu]").unwrap();
    let at = qemu + pins[qemu..].find("branch = \"snp-latest\"").unwrap();
    let edited = format!(
        "{}tag = \"v8.2.0\"{}",
        &pins[..at],
        &pins[at + "branch = \"snp-latest\"".len()..]
    );
    std::fs::write(s.pins(), edited).unwrap();

    let r = s.run(PACKAGE);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for needle in [
        "cannot launch SEV-SNP guests (as pinned)",
        "QEMU 8.2.0 ([qemu] tag v8.2.0)",
        "9.1",
        "--allow-unsupported",
    ] {
        assert!(r.stderr.contains(needle), "no {needle:?} in\n{}", r.stderr);
    }
    assert!(!s.work().join("git").exists(), "something was fetched");
    // plan builds nothing: it warns.
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("a build refuses this"), "{}", r.stderr);

    // On request it is built, and its release assumes the legacy VMSA.
    let mut args = PACKAGE.to_vec();
    args.push("--allow-unsupported");
    let r = s.run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("going ahead: --allow-unsupported"),
        "{}",
        r.stderr
    );
    let m = release_manifest(&s.release("out", "2026-11-29"));
    assert_eq!(
        m["measurement"]["vmsa_mode"], "legacy",
        "{}",
        m["measurement"]
    );
    let why = m["measurement"]["vmsa_mode_reason"].as_str().unwrap();
    assert!(why.contains("QEMU 8.2.0") && why.contains("9.1"), "{why}");
}

#[test]
fn a_tree_whose_version_file_says_less_than_its_branch_is_refused_once_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let fx = own_fixtures(dir.path());
    // A branch named as QEMU's 9.1 stable branch whose tree is 8.2.
    release_branch(
        &fx.join("qemu.git"),
        "snp-latest",
        "stable-9.1",
        "VERSION",
        "8.2.0\n",
        None,
    );
    let s = Scratch::new(&fx);
    s.edit_pins(
        "branch = \"snp-latest\"\n# configure",
        "branch = \"stable-9.1\"\n# configure",
    );
    let r = s.run(PACKAGE);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("(as fetched)") && r.stderr.contains("QEMU 8.2.0 (its tree at"),
        "{}",
        r.stderr
    );
    for stage in ["qemu", "ovmf", "kernel-host", "kernel-guest"] {
        assert!(!stage_ran(&s, stage), "{stage} ran");
    }
}

#[test]
fn a_6_12_host_kernel_and_two_ovmf_platforms_make_an_init2_release_with_both_firmwares_measured() {
    let dir = tempfile::tempdir().unwrap();
    let fx = own_fixtures(dir.path());
    let linux = fx.join("linux.git");
    let makefile = git(&linux, &["show", "snp-host-latest:Makefile"]);
    release_branch(
        &linux,
        "snp-host-latest",
        "linux-6.12.y",
        "Makefile",
        &format!(
            "{}\n",
            makefile.replace("PATCHLEVEL = 1\n", "PATCHLEVEL = 12\n")
        ),
        None,
    );
    let s = Scratch::new(&fx);
    s.edit_pins("branch = \"snp-host-latest\"", "branch = \"linux-6.12.y\"");
    // [ovmf] is the fixture pin file's last table.
    let mut pins = std::fs::read_to_string(s.pins()).unwrap();
    pins.push_str(
        "extra-platforms = [\n    { platform = \"OvmfPkg/AmdSev/AmdSevX64.dsc\", \
         outputs = { \"OVMF.fd\" = \"OVMF.amdsev.fd\" } },\n]\n",
    );
    std::fs::write(s.pins(), pins).unwrap();
    let doc = s.run_ok(PACKAGE);
    assert_eq!(doc["release"]["status"], "ok", "{doc}");
    let release = s.release("out", "2026-11-29");
    let m = release_manifest(&release);
    let meas = &m["measurement"];
    assert_eq!(meas["vmsa_mode"], "init2", "{meas}");
    assert_eq!(meas["sev_snp_measure"], "sev-snp-measure >= 0.0.10");
    let why = meas["vmsa_mode_reason"].as_str().unwrap();
    assert!(
        why.contains("host kernel 6.12.0") && why.contains("KVM_SEV_INIT2"),
        "{why}"
    );
    assert_eq!(
        m["ovmf"]["extra_platforms"][0]["platform"], "OvmfPkg/AmdSev/AmdSevX64.dsc",
        "{}",
        m["ovmf"]
    );

    // Both firmwares: in the release, SHA256SUMS and the SBOM.
    let amdsev = release.join("usr/local/share/qemu/OVMF.amdsev.fd");
    let ovmf = release.join("usr/local/share/qemu/OVMF.fd");
    assert!(amdsev.is_file() && ovmf.is_file());
    assert_ne!(
        sha256_file(&amdsev),
        sha256_file(&ovmf),
        "two different images"
    );
    let sums = std::fs::read_to_string(release.join("SHA256SUMS")).unwrap();
    let sbom = std::fs::read_to_string(release.join("sbom.cdx.json")).unwrap();
    for f in [
        "usr/local/share/qemu/OVMF.fd",
        "usr/local/share/qemu/OVMF.amdsev.fd",
    ] {
        assert!(sums.contains(&format!("  {f}\n")), "{f} not in SHA256SUMS");
        assert!(sbom.contains(f), "{f} not in the SBOM");
    }
    assert!(release.join("libvirt-snp-direct.xml").is_file());

    // Both in MEASUREMENTS and the manifest, each line equal to
    // sev-snp-measure 0.0.13's (init2) for its firmware.
    let file = std::fs::read_to_string(release.join("MEASUREMENTS")).unwrap();
    assert!(
        file.contains(&format!(
            "# firmware-sha256: {} OVMF.amdsev.fd",
            sha256_file(&amdsev)
        )),
        "{file}"
    );
    let lines = snp_build::release::measure::parse_measurements(&file);
    assert!(
        lines.iter().all(|(a, _)| a.contains("--vmsa-mode init2")),
        "{file}"
    );
    assert!(
        !lines.iter().any(|(a, _)| a.contains("0x21")),
        "no DEBUG_SWAP lines in init2"
    );
    let other = &meas["other_firmware"][0];
    assert_eq!(other["name"], "OVMF.amdsev.fd");
    assert_ne!(other["default"]["digest"], meas["digest"]);
    let mut checked = [0, 0];
    for (args, digest) in &lines {
        let (fw, which) = match args.strip_suffix(" --firmware OVMF.amdsev.fd") {
            Some(_) => (&amdsev, 1),
            None => (&ovmf, 0),
        };
        if checked[which] >= 3 {
            continue;
        }
        checked[which] += 1;
        let shape: Vec<&str> = args
            .split(' ')
            .take_while(|w| *w != "--vmsa-mode")
            .collect();
        let out = Command::new(sev_snp_measure_init2())
            .args(["--mode", "snp", "--ovmf", fw.to_str().unwrap()])
            .args(&shape)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        assert_eq!(text(&out.stdout).trim(), digest, "{args}");
        // And snp-build measure --release DIR ARGS gives it back.
        let mut again = vec!["measure", "--release", release.to_str().unwrap()];
        again.extend(args.split(' '));
        let r = snp_build(s.path(), &again);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout.trim(), digest, "{args}");
    }
    assert_eq!(checked, [3, 3], "lines of both firmwares");

    // launch-qemu.sh boots either, and looks the digest up for it.
    let dry = |args: &[&str]| {
        let out = Command::new(release.join("launch-qemu.sh"))
            .args(["-dry-run", "-cbitpos", "51", "-sev-snp"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        (text(&out.stdout), text(&out.stderr))
    };
    let (argv, err) = dry(&["-firmware", "OVMF.amdsev.fd"]);
    assert!(argv.contains("OVMF.amdsev.fd\n"), "{argv}");
    assert!(
        err.contains(other["default"]["digest"].as_str().unwrap()),
        "{err}"
    );
    let (argv, err) = dry(&[]);
    assert!(argv.contains("/OVMF.fd\n"), "{argv}");
    assert!(err.contains(meas["digest"].as_str().unwrap()), "{err}");
}

#[test]
fn init_writes_a_named_stack_and_plan_shows_its_pins() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let doc = snp_build_json(d, &["init", "--stack", "upstream"]);
    assert_eq!(doc["stack"], "upstream", "{doc}");
    for f in [
        "stable-commits.toml",
        "configs/snp-host.config",
        "configs/upstream/snp-host.config",
        "configs/upstream/snp-guest.config",
    ] {
        assert!(d.join(f).is_file(), "{f}");
    }
    // plan needs no network: it shows what the pins name.
    let r = snp_build(d, &["plan"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for pin in [
        "pinned: branch linux-6.12.y of https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git",
        "pinned: branch stable-10.0 of https://gitlab.com/qemu-project/qemu.git",
        "pinned: tag edk2-stable202502 of https://github.com/tianocore/edk2.git",
    ] {
        assert!(r.stdout.contains(pin), "no {pin:?} in\n{}", r.stdout);
    }
    assert!(!r.stderr.contains("a build refuses"), "{}", r.stderr);

    // The default stays AMD's; an unknown name is a usage error.
    let amd = tempfile::tempdir().unwrap();
    snp_build_json(amd.path(), &["init"]);
    let text = std::fs::read_to_string(amd.path().join("stable-commits.toml")).unwrap();
    assert!(text.contains("https://github.com/AMDESE/qemu.git"));
    assert!(!amd.path().join("configs/upstream").exists());
    let r = snp_build(amd.path(), &["init", "--stack", "nope", "-o", "x.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("amd") && r.stderr.contains("upstream"),
        "{}",
        r.stderr
    );

    // The CoCo pins: upstream tags that can launch SNP.
    let coco = tempfile::tempdir().unwrap();
    snp_build_json(coco.path(), &["init", "--stack", "coco"]);
    let r = snp_build(coco.path(), &["plan"]);
    assert!(r.stdout.contains("pinned: tag v9.2.0 of"), "{}", r.stdout);
    assert!(!r.stderr.contains("a build refuses"), "{}", r.stderr);
}
