//! The published JSON Schemas (`docs/schemas/`): generated from the types
//! snp-build writes with (`snp-build schema`), so they must not drift from
//! them; and real documents (a fixture release's `manifest.json` and
//! `provenance.json`, an install record, the `--json` documents of the
//! commands that made them, a failed command's) must validate against them.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const RELEASE: &str = "snp-release-2026-11-29";

fn docs_schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas")
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files of `dir`, by name.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Validates `instance` against the schema `docs/schemas/<name>.schema.json`.
fn assert_valid(name: &str, instance: &Value) {
    let schema = read_json(&docs_schemas().join(format!("{name}.schema.json")));
    let validator = jsonschema::options()
        .offline()
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name}.schema.json is not a valid schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name} does not validate against its schema: {errors:#?}\n{instance:#}"
    );
}

/// (a) `docs/schemas/` is exactly what `snp-build schema` writes now.
#[test]
fn docs_schemas_are_what_the_binary_generates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("schemas");
    let r = Run::from(
        assert_cmd::Command::cargo_bin("snp-build")
            .unwrap()
            .args(["schema", "--json", "--dir"])
            .arg(&out)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_valid("schema", &r.json());
    assert_eq!(
        names(&out),
        names(&docs_schemas()),
        "docs/schemas/ lists other documents: run `cargo run -- schema` and commit docs/schemas/"
    );
    for name in names(&out) {
        assert!(
            std::fs::read(out.join(&name)).unwrap()
                == std::fs::read(docs_schemas().join(&name)).unwrap(),
            "docs/schemas/{name} drifted from the types: run `cargo run -- schema` and commit docs/schemas/"
        );
    }
    // The validator does judge: a manifest without its release fails.
    let schema = read_json(&docs_schemas().join("manifest.schema.json"));
    let validator = jsonschema::options().offline().build(&schema).unwrap();
    assert!(!validator.is_valid(&serde_json::json!({ "schema_version": 1 })));
}

/// (b) A fixture release's documents, and the `--json` documents of the
/// commands that make, check, install and remove it, validate.
#[test]
fn real_documents_validate_against_their_schemas() {
    let s = Scratch::new(shared_fixtures());
    let plan = s.run_ok(&["plan"]);
    assert_valid("plan", &plan);
    let fetch = s.run_ok(&["fetch"]);
    assert_valid("fetch", &fetch);
    let build = s.run_ok(PACKAGE);
    assert_valid("build", &build);
    let release = s.path().join("out").join(RELEASE);

    // The release's documents, against the schemas it carries and ours.
    let manifest = read_json(&release.join("manifest.json"));
    assert_valid("manifest", &manifest);
    assert!(!manifest["qemu"].is_null(), "a full release: {manifest:#}");
    assert!(!manifest["measurement"].is_null());
    assert!(
        std::fs::read(release.join("manifest.schema.json")).unwrap()
            == std::fs::read(docs_schemas().join("manifest.schema.json")).unwrap(),
        "the release carries the published manifest schema"
    );
    let sums = std::fs::read_to_string(release.join("SHA256SUMS")).unwrap();
    assert!(
        sums.lines().any(|l| l.ends_with("  manifest.schema.json")),
        "{sums}"
    );
    assert_valid("provenance", &read_json(&release.join("provenance.json")));

    let rel = release.display().to_string();
    assert_valid("verify", &s.run_ok(&["verify", &rel]));
    assert_valid("measure", &s.run_ok(&["measure", "--release", &rel]));
    assert_valid("config", &s.run_ok(&["config"]));

    // An install into a staging root, its record, and its removal.
    let root = tempfile::tempdir().unwrap();
    let root_arg = root.path().display().to_string();
    let install = s.run_ok(&["install", "--root", &root_arg, &rel]);
    assert_valid("install", &install);
    let record = read_json(&root.path().join("var/lib/snp-build/installed.json"));
    assert_valid("install-record", &record);
    let uninstall = s.run_ok(&["uninstall", "--root", &root_arg, "--yes"]);
    assert_valid("uninstall", &uninstall);

    // The doctor answers in one shape whether this box is ready or not.
    let r = s.run(&["doctor", "--json"]);
    assert_valid("doctor", &r.json());
    assert_valid("clean", &s.run_ok(&["clean"]));

    // A failed command's document: the envelope, its exit code and error.
    let r = s.run(&["verify", "--json", "/nonexistent/snp-release-2026-11-29"]);
    assert_ne!(r.code, 0);
    let failed = r.json();
    assert_eq!(failed["status"], "error", "{failed:#}");
    assert_valid("verify", &failed);
}
