//! The kernels' default base config is the same on any build host:
//! `defconfig` plus the config fragments kept in `configs/`, compiled in
//! and written out by `snp-build init` (issue: a release that says exactly
//! what it is).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn repo_fragment(kernel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("configs/snp-{kernel}.config")),
    )
    .unwrap()
}

/// Builds and packages both kernels into `out`: the release dir and its
/// manifest.
fn package_kernels(s: &Scratch, out: &str) -> (PathBuf, Value) {
    let doc = s.run_ok(&[
        "kernel",
        "--package",
        "--date",
        "2026-11-29",
        "--output",
        out,
        "-j2",
    ]);
    let release = PathBuf::from(doc["release"]["path"].as_str().unwrap());
    let manifest = release_manifest(&release);
    (release, manifest)
}

#[test]
fn the_embedded_default_pins_need_no_boot_config() {
    // An empty directory: no pin file, so the embedded default. Whether or
    // not this machine has /boot/config-*, nothing asks for it.
    let dir = tempfile::tempdir().unwrap();
    let r = snp_build(dir.path(), &["doctor", "--json"]);
    let doc = r.json();
    for kernel in ["host", "guest"] {
        let check = doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == format!("kernel-{kernel} base config"))
            .unwrap_or_else(|| panic!("{doc}"));
        assert_eq!(check["status"], "ok", "{check}");
        assert_eq!(
            check["found"],
            format!("make defconfig + configs/snp-{kernel}.config")
        );
        assert!(!check.to_string().contains("/boot"), "{check}");
    }
    let r = snp_build(dir.path(), &["plan", "--package", "--json"]);
    assert_eq!(r.code, 0, "plan gets past config: {}", r.stderr);
}

#[test]
fn init_writes_the_fragments_beside_the_pin_file_and_keeps_yours() {
    let dir = tempfile::tempdir().unwrap();
    let r = snp_build(dir.path(), &["init", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for kernel in ["host", "guest"] {
        let written =
            std::fs::read_to_string(dir.path().join(format!("configs/snp-{kernel}.config")))
                .unwrap();
        assert_eq!(written, repo_fragment(kernel), "the compiled-in copy");
    }
    assert_eq!(r.json()["fragments"].as_array().unwrap().len(), 2);

    // A fragment you changed survives init of a new pin file...
    std::fs::remove_file(dir.path().join("stable-commits.toml")).unwrap();
    let mine = dir.path().join("configs/snp-host.config");
    std::fs::write(&mine, "CONFIG_MINE=y\n").unwrap();
    let r = snp_build(dir.path(), &["init"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("kept"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "CONFIG_MINE=y\n");
    // ...and --force puts the default back.
    let r = snp_build(dir.path(), &["init", "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(&mine).unwrap(),
        repo_fragment("host")
    );
}

#[test]
fn the_release_records_the_base_config_and_an_edited_fragment_rebuilds_its_kernel() {
    let s = Scratch::new(shared_fixtures());
    // No configs/ beside this pin file: the compiled-in fragments.
    let (_, manifest) = package_kernels(&s, "out");
    for kernel in ["host", "guest"] {
        let base = &manifest["kernels"][kernel]["base_config"];
        assert_eq!(
            base["setting"],
            format!("defconfig + configs/snp-{kernel}.config"),
            "{base}"
        );
        let fragment = &base["fragments"][0];
        assert_eq!(fragment["origin"], "embedded", "{base}");
        assert_eq!(
            fragment["sha256"],
            sha256_hex(repo_fragment(kernel).as_bytes()),
            "{base}"
        );
        let sha = base["sha256"].as_str().unwrap();
        assert_eq!(sha.len(), 64, "{base}");
    }

    // The same fragment as a file beside the pin file: nothing changes
    // (the content is the input, not where it came from)...
    std::fs::create_dir_all(s.path().join("configs")).unwrap();
    for kernel in ["host", "guest"] {
        std::fs::write(
            s.path().join(format!("configs/snp-{kernel}.config")),
            repo_fragment(kernel),
        )
        .unwrap();
    }
    let doc = s.run_ok(&["plan", "kernel"]);
    for name in ["kernel-host", "kernel-guest"] {
        assert_eq!(stage(&doc, name)["action"], "skip", "{doc}");
    }
    // ...an edit of the host's reruns the host kernel only, which now has
    // the option, and the release says the fragment came from the file.
    let host = s.path().join("configs/snp-host.config");
    let mut text = std::fs::read_to_string(&host).unwrap();
    text.push_str("CONFIG_IOMMU_DEFAULT_DMA_STRICT=y\n");
    std::fs::write(&host, &text).unwrap();
    let doc = s.run_ok(&["plan", "kernel"]);
    assert_eq!(stage(&doc, "kernel-guest")["action"], "skip", "{doc}");
    assert_eq!(stage(&doc, "kernel-host")["action"], "run", "{doc}");
    assert!(
        stage(&doc, "kernel-host")["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("base-config changed"),
        "{doc}"
    );
    let (release, manifest) = package_kernels(&s, "out2");
    let base = &manifest["kernels"]["host"]["base_config"];
    assert_eq!(base["fragments"][0]["origin"], "file", "{base}");
    assert_eq!(base["fragments"][0]["sha256"], sha256_hex(text.as_bytes()));
    let config = std::fs::read_to_string(release.join("kernel-config.host")).unwrap();
    assert!(
        config.contains("CONFIG_IOMMU_DEFAULT_DMA_STRICT=y"),
        "{config}"
    );
}

#[test]
fn defconfig_alone_loses_sev_and_a_missing_fragment_is_refused_before_fetching() {
    let s = Scratch::new(shared_fixtures());
    // The fragment is what makes the default edits hold on defconfig.
    s.edit_pins(
        "base-config = [\"defconfig\", \"configs/snp-{kernel}.config\"]",
        "base-config = \"defconfig\"",
    );
    let r = s.run(&["kernel", "host"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("KVM_AMD_SEV")),
        "{}",
        r.stderr
    );

    let s = Scratch::new(shared_fixtures());
    s.edit_pins(
        "\"configs/snp-{kernel}.config\"",
        "\"configs/ours-{kernel}.config\"",
    );
    for args in [
        &["kernel", "host"][..],
        &["plan"],
        &["--package", "--dry-run"],
    ] {
        let r = s.run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("configs/ours-")
                && r.stderr.contains("does not exist")
                && r.stderr.contains("snp-build init"),
            "{}",
            r.stderr
        );
        assert!(!s.work().join("git").exists(), "nothing fetched");
    }
}
