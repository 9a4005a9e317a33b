//! Launch measurements and the libvirt domains of a release (issue 10),
//! end to end against a release built from the fixture upstreams.
//!
//! The digests are compared with the `sev-snp-measure` command-line tool
//! from PyPI, which `.ci/install-deps` installs twice: 0.0.13 (the init2
//! VMSA) in a venv at `$SNP_BUILD_TEST_VENV` (default
//! `/opt/snp-build-test/venv`), and 0.0.9 (the last with the legacy VMSA) at
//! `$SNP_BUILD_TEST_VENV_LEGACY` (default `/opt/snp-build-test/venv-legacy`).
//! The fixture release is `legacy`: its host kernel says 6.1. The libvirt
//! checks need `virt-xml-validate` (Debian packages libvirt-clients and
//! libxml2-utils, also from `.ci/install-deps`). A missing tool fails the
//! test with what to install; nothing is skipped.
//!
//! Kernel files: sev-snp-measure (like QEMU's kernel-hashes) hashes the
//! kernel and initrd files byte for byte and never parses them, so the
//! direct-boot cases use small files of arbitrary bytes made here.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

const DATE: &str = "2026-11-22";

/// One fixture release per test binary (read-only use).
struct Built {
    scratch: Scratch,
    /// The package run's JSON document and stderr.
    doc: Value,
    stderr: String,
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let scratch = Scratch::kept(shared_fixtures());
        let r = scratch.run(&[
            "--package",
            "--date",
            DATE,
            "--output",
            "out",
            "-j2",
            "--json",
        ]);
        assert_eq!(r.code, 0, "packaging failed:\n{}", r.stderr);
        Built {
            doc: r.json(),
            stderr: r.stderr,
            scratch,
        }
    })
}

fn release() -> PathBuf {
    built().scratch.release("out", DATE)
}

fn ovmf() -> PathBuf {
    release().join("usr/local/share/qemu/OVMF.fd")
}

fn manifest() -> Value {
    release_manifest(&release())
}

/// The sev-snp-measure of a VMSA mode (`init2` or `legacy`); fails
/// clearly when its venv is missing.
fn sev_snp_measure(mode: &str) -> PathBuf {
    xtask::sev_snp_measure::for_mode(mode).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The digest sev-snp-measure prints for these arguments, with the release
/// of it that computes `mode`'s VMSA.
fn reference_digest_in(mode: &str, args: &[String]) -> String {
    let out = Command::new(sev_snp_measure(mode))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sev-snp-measure {args:?}: {}",
        text(&out.stderr)
    );
    let d = text(&out.stdout).trim().to_string();
    assert_eq!(d.len(), 96, "not a SHA-384 hex digest: {d:?}");
    d
}

/// The VMSA mode of the fixture release (what its manifest names).
fn release_mode() -> String {
    manifest()["measurement"]["vmsa_mode"]
        .as_str()
        .expect("measurement.vmsa_mode")
        .to_string()
}

/// The reference digest in the fixture release's mode, for QEMU's guest
/// features (0x1) unless `args` name others (sev-snp-measure 0.0.9's
/// default is 0x21).
fn reference_digest(args: &[String]) -> String {
    let mut args = args.to_vec();
    if !args.iter().any(|a| a == "--guest-features") {
        args.extend(strings(&["--guest-features", "0x1"]));
    }
    reference_digest_in(&release_mode(), &args)
}

/// A MEASUREMENTS line's arguments: (its mode, the rest, as sev-snp-measure
/// takes them).
fn split_mode(args: &str) -> (String, Vec<String>) {
    let mut words: Vec<String> = args.split(' ').map(String::from).collect();
    let at = words
        .iter()
        .position(|w| w == "--vmsa-mode")
        .unwrap_or_else(|| panic!("no --vmsa-mode in {args:?}"));
    let mode = words.remove(at + 1);
    words.remove(at);
    (mode, words)
}

/// `snp-build measure ARGS --json`: the measurement record.
fn measure_json(args: &[String]) -> Value {
    let out = snp_build_std(Path::new("."))
        .arg("measure")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "snp-build measure {args:?}: {}",
        text(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["command"], "measure");
    assert_eq!(doc["status"], "ok");
    doc["measurement"].clone()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Small stand-in kernel and initrd files.
fn boot_files(dir: &Path) -> (PathBuf, PathBuf) {
    let kernel = dir.join("bzImage");
    let initrd = dir.join("initrd.img");
    let bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&kernel, &bytes).unwrap();
    std::fs::write(&initrd, &bytes[..3000]).unwrap();
    (kernel, initrd)
}

#[test]
fn digests_equal_sev_snp_measure_for_every_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let (kernel, initrd) = boot_files(tmp.path());
    let (k, i) = (kernel.to_str().unwrap(), initrd.to_str().unwrap());
    let append = "console=ttyS0 earlyprintk=serial root=/dev/sda2";
    // vCPUs, type, and the direct boot arguments (both tools take the same).
    let table: Vec<(u32, &str, Vec<&str>)> = vec![
        (1, "EPYC-v4", vec![]),
        (4, "EPYC-v4", vec![]),
        (8, "EPYC-v4", vec![]),
        (1, "EPYC-Milan", vec![]),
        (4, "EPYC-Milan", vec![]),
        (8, "EPYC-Milan", vec![]),
        (
            4,
            "EPYC-v4",
            vec!["--kernel", k, "--initrd", i, "--append", append],
        ),
        (
            8,
            "EPYC-Milan",
            vec!["--kernel", k, "--initrd", i, "--append", append],
        ),
        (1, "EPYC-v4", vec!["--kernel", k]),
        (4, "EPYC-Milan", vec!["--kernel", k, "--append", "quiet"]),
    ];
    let fw = ovmf();
    let fw = fw.to_str().unwrap();
    let mut report = Vec::new();
    for (vcpus, vcpu_type, boot) in &table {
        let mut shape = strings(&["--vcpus", &vcpus.to_string(), "--vcpu-type", vcpu_type]);
        shape.extend(strings(boot));
        // Guest features given: 0.0.9's default is 0x21, 0.0.13's 0x1.
        let mut theirs = strings(&["--mode", "snp", "--guest-features", "0x1", "--ovmf", fw]);
        theirs.extend(shape.clone());
        let mut digests = Vec::new();
        for mode in ["legacy", "init2"] {
            let mut ours = strings(&["--ovmf", fw, "--vmsa-mode", mode]);
            ours.extend(shape.clone());
            let m = measure_json(&ours);
            let want = reference_digest_in(mode, &theirs);
            assert_eq!(m["digest"], want.as_str(), "{mode} shape {shape:?}");
            assert_eq!(m["vmsa_mode"], mode);
            assert_eq!(m["vcpus"], *vcpus);
            assert_eq!(m["vcpu_type"], *vcpu_type);
            assert_eq!(m["kernel_hashes"].is_null(), boot.is_empty(), "{m}");
            report.push(format!("{want}  {} --vmsa-mode {mode}", shape.join(" ")));
            digests.push(want);
        }
        assert_ne!(digests[0], digests[1], "the two layouts differ: {shape:?}");
    }
    // Without --vmsa-mode and without a release, the init2 layout.
    let mut plain = strings(&["--ovmf", fw]);
    plain.extend(strings(&["--vcpus", "2"]));
    assert_eq!(measure_json(&plain)["vmsa_mode"], "init2");
    // The table, for the record (cargo test -- --nocapture).
    println!("{}", report.join("\n"));
}

#[test]
fn every_measurements_line_equals_sev_snp_measure_and_snp_build_measure() {
    let text = std::fs::read_to_string(release().join("MEASUREMENTS")).unwrap();
    let lines = snp_build::release::measure::parse_measurements(&text);
    assert_eq!(
        lines.len(),
        snp_build::release::measure::release_shapes(snp_build::snp_support::VmsaMode::Legacy).len()
    );
    assert_eq!(
        lines[0].0, "--vcpus 4 --vcpu-type EPYC-v4 --guest-features 0x1 --vmsa-mode legacy",
        "the first line is launch-qemu.sh -sev-snp's default shape, in the release's mode"
    );
    assert_eq!(
        snp_build::release::measure::recorded_mode(&text).map(|m| m.to_string()),
        Some("legacy".to_string())
    );
    // The legacy lines come again with DEBUG_SWAP (0x21).
    assert!(
        lines
            .iter()
            .any(|(a, _)| a.contains("--guest-features 0x21"))
    );
    let fw = ovmf();
    for (args, digest) in &lines {
        let (mode, shape) = split_mode(args);
        assert_eq!(mode, "legacy", "{args}");
        let mut theirs = strings(&["--mode", "snp", "--ovmf", fw.to_str().unwrap()]);
        theirs.extend(shape.clone());
        assert_eq!(reference_digest_in(&mode, &theirs), *digest, "{args}");
        if args.contains("--vcpus 2 ") {
            // And `snp-build measure --release DIR ARGS` recomputes it,
            // with the mode given or taken from the release.
            let mut ours = strings(&["--release", release().to_str().unwrap()]);
            ours.extend(shape);
            assert_eq!(measure_json(&ours)["digest"], digest.as_str(), "{args}");
        }
    }
}

#[test]
fn the_release_records_the_default_shape_with_every_input_and_prints_it() {
    let b = built();
    let m = manifest();
    let meas = &m["measurement"];
    let digest = meas["digest"].as_str().expect("measurement.digest");
    assert_eq!(digest.len(), 96);
    assert_eq!(meas["algorithm"], "SHA-384");
    assert_eq!(meas["vcpus"], 4);
    assert_eq!(meas["vcpu_type"], "EPYC-v4");
    assert_eq!(meas["guest_features"], "0x1");
    assert_eq!(meas["vmm_type"], "QEMU");
    assert!(meas["kernel_hashes"].is_null(), "{meas}");
    assert_eq!(meas["firmware"]["path"], "usr/local/share/qemu/OVMF.fd");
    let sums = std::fs::read_to_string(release().join("SHA256SUMS")).unwrap();
    let ovmf_sum = sums
        .lines()
        .find(|l| l.ends_with("  usr/local/share/qemu/OVMF.fd"))
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert_eq!(meas["firmware"]["sha256"], ovmf_sum);
    assert!(
        meas["firmware"]["sev_metadata_sections"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    assert!(meas["calculator"].as_str().unwrap().starts_with("sev "));
    assert!(
        sums.contains("  MEASUREMENTS\n"),
        "SHA256SUMS covers MEASUREMENTS"
    );
    assert!(sums.contains("  libvirt-snp.xml\n") && sums.contains("  libvirt-sev.xml\n"));

    // The same digest as sev-snp-measure's defaults (guest features 0x1, QEMU).
    let reference = reference_digest(&strings(&[
        "--mode",
        "snp",
        "--vcpus",
        "4",
        "--vcpu-type",
        "EPYC-v4",
        "--ovmf",
        ovmf().to_str().unwrap(),
    ]));
    assert_eq!(digest, reference);

    // MEASUREMENTS: greppable, one line per shape, its firmware named.
    let text = std::fs::read_to_string(release().join("MEASUREMENTS")).unwrap();
    assert!(
        text.lines().any(|l| l
            == format!(
                "{digest}  --vcpus 4 --vcpu-type EPYC-v4 --guest-features 0x1 --vmsa-mode legacy"
            )),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == format!("# firmware-sha256: {ovmf_sum}")),
        "{text}"
    );
    assert_eq!(
        meas["shapes"].as_array().unwrap().len(),
        snp_build::release::measure::parse_measurements(&text).len()
    );

    // Printed at the end of the run, and in its JSON summary.
    assert_eq!(b.doc["release"]["snp_launch_digest"], digest);
    let last = b.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("expected SEV-SNP launch digest") && last.ends_with(digest),
        "{}",
        b.stderr
    );
}

#[test]
fn measure_prints_the_digest_alone_on_stdout_and_checks_its_arguments() {
    let dir = release();
    let out = snp_build_std(Path::new("."))
        .args(["measure", "--release", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}\n",
            manifest()["measurement"]["digest"].as_str().unwrap()
        )
    );
    assert!(
        text(&out.stderr).contains("EPYC-v4"),
        "{}",
        text(&out.stderr)
    );

    for (args, needle) in [
        (vec!["measure"], "--release DIR or --ovmf FILE"),
        (
            vec!["measure", "--ovmf", "x", "--vcpu-type", "Pentium"],
            "EPYC-Milan",
        ),
        (
            vec!["measure", "--ovmf", "x", "--guest-features", "lots"],
            "not a number",
        ),
        (vec!["measure", "--ovmf", "x", "--vcpus", "0"], "--vcpus"),
        (vec!["measure", "--ovmf", "x", "--initrd", "i"], "--kernel"),
        (vec!["measure", "--release", "/nonexistent"], "OVMF.fd"),
    ] {
        let out = snp_build_std(Path::new(".")).args(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(needle),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = snp_build_std(Path::new("."))
        .args(["measure", "--ovmf"])
        .arg(ovmf())
        .args(["--kernel", "/nonexistent/bzImage"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/nonexistent/bzImage"),
        "{}",
        text(&out.stderr)
    );
    let out = snp_build_std(Path::new("."))
        .args(["measure", "--ovmf"])
        .arg(ovmf())
        .args(["--kernel", "/etc/hostname", "--append", " leading-space"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("whitespace"),
        "{}",
        text(&out.stderr)
    );
}

/// Overwrites the first copy of `guid` (little-endian bytes) in the last
/// 4 KiB of `data`.
fn clobber(data: &mut [u8], guid: &[u8; 16]) {
    let tail = data.len() - 4096;
    let at = data[tail..]
        .windows(16)
        .position(|w| w == guid)
        .expect("GUID in the footer table")
        + tail;
    data[at..at + 16].fill(0x5a);
}

#[test]
fn firmware_without_sev_metadata_is_a_clear_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(ovmf()).unwrap();
    // OVMF_SEV_METADATA_GUID dc886566-984a-4798-a75e-5585a7bf67cc
    let meta = [
        0x66, 0x65, 0x88, 0xdc, 0x4a, 0x98, 0x98, 0x47, 0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67,
        0xcc,
    ];
    // SEV_HASH_TABLE_RV_GUID 7255371f-3a3b-4b04-927b-1da6efa8d454
    let hashes = [
        0x1f, 0x37, 0x55, 0x72, 0x3b, 0x3a, 0x04, 0x4b, 0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4,
        0x54,
    ];
    let mut no_meta = good.clone();
    clobber(&mut no_meta, &meta);
    let mut no_hashes = good.clone();
    clobber(&mut no_hashes, &hashes);
    let mut bad_offset = good.clone();
    // The metadata entry's offset (the 4 bytes before its size and GUID).
    let tail = bad_offset.len() - 4096;
    let g = bad_offset[tail..]
        .windows(16)
        .position(|w| w == meta)
        .unwrap()
        + tail;
    bad_offset[g - 6..g - 2].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("no-metadata.fd", no_meta, "no SEV metadata"),
        ("bad-offset.fd", bad_offset, "corrupt SEV metadata entry"),
        ("vars.fd", vec![0xff; 128 * 1024], "no OVMF footer table"),
        ("empty.fd", vec![], "not an OVMF image"),
        (
            "short.fd",
            good[good.len() - 40..].to_vec(),
            "not an OVMF image",
        ),
    ];
    for (name, bytes, problem) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = snp_build_std(Path::new("."))
            .args(["measure", "--ovmf"])
            .arg(&path)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(err.contains(&path.display().to_string()), "{name}: {err}");
        assert!(err.contains(problem), "{name}: {err}");
    }

    // Without a hashes table the firmware still measures, but not a kernel.
    let path = tmp.path().join("no-hashes.fd");
    std::fs::write(&path, no_hashes).unwrap();
    let (kernel, _) = boot_files(tmp.path());
    let plain = measure_json(&strings(&["--ovmf", path.to_str().unwrap()]));
    assert_eq!(plain["firmware"]["kernel_hashes_table"], Value::Null);
    let out = snp_build_std(Path::new("."))
        .args(["measure", "--ovmf"])
        .arg(&path)
        .arg("--kernel")
        .arg(&kernel)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&path.display().to_string()) && err.contains("no kernel hashes table"),
        "{err}"
    );
}

/// `launch-qemu.sh -dry-run ARGS` in the release: (stdout lines, stderr).
fn launch_dry(args: &[&str]) -> (Vec<String>, String) {
    let out = Command::new("bash")
        .arg(release().join("launch-qemu.sh"))
        .args(["-dry-run", "-cbitpos", "51"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    (
        text(&out.stdout).lines().map(String::from).collect(),
        text(&out.stderr),
    )
}

/// The `run snp-build measure ...` hint of a dry run, run through bash with
/// this build's snp-build first on PATH; returns the digest it prints.
fn run_hint(stderr: &str) -> String {
    let hint = stderr
        .lines()
        .find_map(|l| l.split_once("; run snp-build measure "))
        .map(|(_, rest)| format!("snp-build measure {rest}"))
        .unwrap_or_else(|| panic!("no snp-build measure hint:\n{stderr}"));
    let path = format!(
        "{}:{}",
        assert_cmd::cargo::cargo_bin("snp-build")
            .parent()
            .unwrap()
            .display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-c", &hint])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{hint}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

#[test]
fn launch_qemu_dry_run_prints_the_expected_digest_or_the_measure_command() {
    let digest = manifest()["measurement"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let fw = ovmf();
    let fw = fw.to_str().unwrap();

    // The default shape: straight from MEASUREMENTS; stdout stays QEMU's argv.
    let (argv, err) = launch_dry(&["-sev-snp"]);
    assert!(
        err.contains(&format!("expected SEV-SNP launch digest: {digest}")),
        "{err}"
    );
    assert!(argv.iter().all(|a| !a.contains(&digest)));
    // Another listed shape.
    let milan8 = snp_build::release::measure::parse_measurements(
        &std::fs::read_to_string(release().join("MEASUREMENTS")).unwrap(),
    )
    .into_iter()
    .find(|(a, _)| a == "--vcpus 8 --vcpu-type EPYC-Milan --guest-features 0x1 --vmsa-mode legacy")
    .unwrap()
    .1;
    let (_, err) = launch_dry(&["-sev-snp", "-smp", "8", "-cpu", "EPYC-Milan,+avx2"]);
    assert!(err.contains(&milan8), "{err}");

    // A shape MEASUREMENTS lacks: the command, which gives sev-snp-measure's digest.
    let (_, err) = launch_dry(&["-sev-snp", "-smp", "3"]);
    assert!(
        err.contains("not precomputed (MEASUREMENTS has no line"),
        "{err}"
    );
    assert_eq!(
        run_hint(&err),
        reference_digest(&strings(&[
            "--mode",
            "snp",
            "--vcpus",
            "3",
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            fw
        ]))
    );

    // A direct kernel boot: kernel, initrd and the command line it passes.
    let tmp = tempfile::tempdir().unwrap();
    let (kernel, initrd) = boot_files(tmp.path());
    let (k, i) = (kernel.to_str().unwrap(), initrd.to_str().unwrap());
    let (argv, err) = launch_dry(&["-sev-snp", "-kernel", k, "-initrd", i]);
    assert!(
        argv.iter().any(|a| a.ends_with(",kernel-hashes=on")),
        "{argv:?}"
    );
    let append = &argv[argv.iter().position(|a| a == "-append").unwrap() + 1];
    assert_eq!(
        run_hint(&err),
        reference_digest(&strings(&[
            "--mode",
            "snp",
            "--vcpus",
            "4",
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            fw,
            "--kernel",
            k,
            "--initrd",
            i,
            "--append",
            append
        ]))
    );

    // No note for guests without SNP.
    let (_, err) = launch_dry(&["-sev"]);
    assert!(!err.contains("launch digest"), "{err}");
}

// ------------------------------------------------------------------ libvirt

fn substituted(name: &str, dir: &Path) -> (String, PathBuf) {
    let xml = std::fs::read_to_string(release().join(name))
        .unwrap()
        .replace("@RELEASE_DIR@", release().to_str().unwrap());
    let path = dir.join(name);
    std::fs::write(&path, &xml).unwrap();
    (xml, path)
}

fn require_virt_xml_validate() {
    let ok = Command::new("sh")
        .args(["-c", "command -v virt-xml-validate && command -v xmllint"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "virt-xml-validate (Debian package libvirt-clients) and xmllint (libxml2-utils) \
         are needed: run `bash .ci/install-deps`"
    );
}

fn virt_xml_validate(path: &Path) -> std::process::Output {
    Command::new("virt-xml-validate")
        .arg(path)
        .arg("domain")
        .output()
        .unwrap()
}

/// libvirt's version as (major, minor), from `virsh --version`.
fn libvirt_version() -> (u32, u32) {
    let out = Command::new("virsh").arg("--version").output().unwrap();
    let v = text(&out.stdout);
    let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn child<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> roxmltree::Node<'a, 'a> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .unwrap_or_else(|| panic!("<{}> has no <{name}>", node.tag_name().name()))
}

fn parse_int(s: &str) -> u64 {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

#[test]
fn libvirt_snp_domain_has_launch_security_and_the_release_qemu_and_firmware() {
    let template = std::fs::read_to_string(release().join("libvirt-snp.xml")).unwrap();
    assert_eq!(
        template,
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/libvirt-snp.xml")
        )
        .unwrap()
    );
    // The placeholder is documented in the comment at the top.
    let head = &template[..template.find("<domain").unwrap()];
    assert!(
        head.contains("@RELEASE_DIR@") && head.contains("absolute path"),
        "{head}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let (xml, path) = substituted("libvirt-snp.xml", tmp.path());
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let domain = doc.root_element();
    assert!(domain.has_tag_name("domain"));
    assert_eq!(domain.attribute("type"), Some("kvm"));

    let sec = child(domain, "launchSecurity");
    assert_eq!(sec.attribute("type"), Some("sev-snp"));
    let cbitpos = parse_int(child(sec, "cbitpos").text().unwrap());
    assert!((32..64).contains(&cbitpos), "cbitpos {cbitpos}");
    assert_eq!(parse_int(child(sec, "reducedPhysBits").text().unwrap()), 1);
    let policy = parse_int(child(sec, "policy").text().unwrap());
    assert_eq!(policy & 0x20000, 0x20000, "SNP policy bit 17 must be set");
    assert_eq!(policy & 0x80000, 0, "no debugging");

    let os = child(domain, "os");
    let loader = child(os, "loader");
    assert_eq!(loader.attribute("type"), Some("rom"));
    assert_eq!(
        Path::new(loader.text().unwrap().trim()),
        ovmf(),
        "the loader is the release's OVMF.fd"
    );
    let emulator = child(child(domain, "devices"), "emulator");
    let qemu = release().join("usr/local/bin/qemu-system-x86_64");
    assert_eq!(Path::new(emulator.text().unwrap().trim()), qemu);
    assert!(qemu.is_file());

    let mem = child(domain, "memoryBacking");
    assert_eq!(child(mem, "source").attribute("type"), Some("memfd"));
    assert_eq!(child(mem, "access").attribute("mode"), Some("shared"));

    // The domain's shape is the one MEASUREMENTS lists first.
    assert_eq!(child(domain, "vcpu").text(), Some("4"));
    assert_eq!(child(child(domain, "cpu"), "model").text(), Some("EPYC-v4"));

    // libvirt >= 10.5 knows sev-snp: validate the domain as it is. Older
    // schemas (Debian 12: 9.0) predate it: validate everything else, with
    // the launchSecurity type set to sev (the same child elements).
    require_virt_xml_validate();
    let (major, minor) = libvirt_version();
    let checked = if (major, minor) >= (10, 5) {
        path
    } else {
        let p = tmp.path().join("snp-as-sev.xml");
        std::fs::write(&p, xml.replace("type='sev-snp'", "type='sev'")).unwrap();
        p
    };
    let out = virt_xml_validate(&checked);
    assert!(
        out.status.success(),
        "libvirt {major}.{minor}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn libvirt_sev_domain_validates_with_virt_xml_validate() {
    require_virt_xml_validate();
    let tmp = tempfile::tempdir().unwrap();
    let (xml, path) = substituted("libvirt-sev.xml", tmp.path());
    let out = virt_xml_validate(&path);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let domain = doc.root_element();
    let sec = child(domain, "launchSecurity");
    assert_eq!(sec.attribute("type"), Some("sev"));
    assert_eq!(parse_int(child(sec, "policy").text().unwrap()), 0x1);
    let os = child(domain, "os");
    let code = release().join("usr/local/share/qemu/OVMF_CODE.fd");
    assert_eq!(Path::new(child(os, "loader").text().unwrap()), code);
    let vars = child(os, "nvram").attribute("template").unwrap();
    assert_eq!(
        Path::new(vars),
        release().join("usr/local/share/qemu/OVMF_VARS.fd")
    );
    assert!(code.is_file() && Path::new(vars).is_file());
    // Unsubstituted, the placeholder is not a path libvirt accepts as is.
    let raw = std::fs::read_to_string(release().join("libvirt-sev.xml")).unwrap();
    assert!(raw.contains("@RELEASE_DIR@/usr/local/bin/qemu-system-x86_64"));
}
