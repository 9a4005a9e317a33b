//! Build only what was pinned: a tree that differs from its pinned commit
//! stops the build (exit 7) unless `--discard-changes` or `--allow-dirty`
//! (issue: a release that says exactly what it is).

mod common;

use common::*;

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all: Vec<&str> = PACKAGE.to_vec();
    all.extend_from_slice(extra);
    all
}

#[test]
fn a_hand_edit_stops_every_build_until_discarded_or_allowed() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(PACKAGE);
    let tree = s.tree("qemu");
    let configure = tree.join("configure");
    let original = std::fs::read_to_string(&configure).unwrap();
    std::fs::write(&configure, format!("{original}\n# my local fix\n")).unwrap();
    std::fs::write(tree.join("NOTES.local"), "scratch\n").unwrap();

    // The plan says so before any build: this stage and the release stop.
    let doc = s.run_ok(&["plan", "--package"]);
    assert_eq!(stage(&doc, "qemu")["action"], "stop", "{doc}");
    let why = stage(&doc, "qemu")["reasons"][0].as_str().unwrap();
    assert!(
        why.contains("differs from its pin")
            && why.contains("configure")
            && why.contains("NOTES.local")
            && why.contains("exit 7"),
        "{why}"
    );
    assert_eq!(stage(&doc, "release")["action"], "stop", "{doc}");
    assert_eq!(stage(&doc, "ovmf")["action"], "skip", "{doc}");
    // --dry-run with --allow-dirty: it would build it as it is.
    let doc = s.run_ok(&args(&["--dry-run", "--allow-dirty"]));
    assert_eq!(stage(&doc, "qemu")["action"], "run", "{doc}");

    // Nothing changed upstream: the edit is still caught, forced or not.
    for extra in [&[][..], &["--force=qemu"], &["--force"]] {
        let r = s.run(&args(extra));
        assert_eq!(r.code, 7, "{extra:?}: {}", r.stderr);
        for needle in [
            "configure",
            "NOTES.local",
            "differs from its pinned commit",
            "--allow-dirty",
        ] {
            assert!(
                r.stderr.contains(needle),
                "{extra:?}: no {needle:?} in {}",
                r.stderr
            );
        }
    }
    assert!(
        std::fs::read_to_string(&configure)
            .unwrap()
            .contains("my local fix")
    );

    // --allow-dirty builds it, and the release says so.
    let doc = s.run_ok(&args(&["--allow-dirty"]));
    let qemu = doc["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["stage"] == "qemu")
        .unwrap();
    assert_eq!(qemu["status"], "ok", "{doc}");
    let release = std::path::PathBuf::from(doc["release"]["path"].as_str().unwrap());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(release.join("manifest.json")).unwrap()).unwrap();
    let source = &manifest["sources"]["qemu"];
    assert_eq!(source["dirty"], true, "{source}");
    assert!(
        source["short_sha"].as_str().unwrap().ends_with("-dirty"),
        "{source}"
    );
    let diff = std::fs::read(release.join("dirty/qemu.diff")).unwrap();
    assert!(String::from_utf8_lossy(&diff).contains("+# my local fix"));
    let sha = {
        use sha2::{Digest, Sha256};
        Sha256::digest(&diff)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(source["dirty_diff_sha256"], sha.as_str());
    assert!(
        std::fs::read_to_string(release.join("source-commit.qemu"))
            .unwrap()
            .trim()
            .ends_with("-dirty")
    );
    // Other sources stay as they were.
    assert!(manifest["sources"]["ovmf"].get("dirty").is_none());

    // --discard-changes saves the diff, resets the tree, and builds clean.
    let r = s.run(&args(&["--discard-changes", "--json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.json();
    let saved = doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|src| src["source"] == "qemu")
        .unwrap()["saved_diff"]
        .as_str()
        .unwrap()
        .to_string();
    let saved = std::fs::read_to_string(saved).unwrap();
    assert!(
        saved.contains("+# my local fix") && saved.contains("NOTES.local"),
        "{saved}"
    );
    assert_eq!(std::fs::read_to_string(&configure).unwrap(), original);
    assert!(!tree.join("NOTES.local").exists());
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");
    let release = std::path::PathBuf::from(doc["release"]["path"].as_str().unwrap());
    assert!(!release.join("dirty").exists());
    // And a clean tree builds as before.
    let again = s.run_ok(PACKAGE);
    assert_eq!(again["release"]["status"], "skipped", "{again}");
}

#[test]
fn a_dirty_kernel_is_named_dirty_in_its_package_and_localversion() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["kernel", "guest"]);
    let tree = s.tree("kernel-guest");
    let makefile = tree.join("Makefile");
    let text = std::fs::read_to_string(&makefile).unwrap();
    std::fs::write(&makefile, format!("{text}\n# a local change\n")).unwrap();
    let doc = s.run_ok(&[
        "kernel",
        "guest",
        "--allow-dirty",
        "--package",
        "--output",
        "out",
        "--date",
        "2026-11-29",
    ]);
    let sha = head(&tree);
    let named = format!("-snp-guest-{}-dirty", &sha[..12]);
    let outputs = &stage(&doc, "kernel-guest")["outputs"];
    assert_eq!(outputs["localversion"], named, "{outputs}");
    let image = outputs["image"].as_str().unwrap();
    assert!(image.contains(&named), "{image}");
    let release = std::path::PathBuf::from(doc["release"]["path"].as_str().unwrap());
    let packages: Vec<String> = std::fs::read_dir(release.join("linux/guest"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(packages.iter().all(|p| p.contains(&named)), "{packages:?}");
}
