//! The "add a component" recipe, proven: a throwaway fifth component (a
//! toy SVSM firmware stage) is defined here and registered through the
//! registry alone (`Registry::standard().with(...)`), with nothing else in
//! the crate touched. It is pinned by its own table, fetched, planned,
//! built against a tiny fixture repository, and packaged: it appears in
//! `plan`, in the JSON summary and in the release's manifest and checksums.

mod common;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use toml::Spanned;

use common::*;
use snp_build::config::{ConfigError, Document, Source};
use snp_build::host::PackageFormat;
use snp_build::release;
use snp_build::stage::Registry;
use snp_build::stage::component::{BuildEnv, Common, Entry, Job, SourceFacts, Spec, Stage};
use snp_build::tools::Requirement;
use snp_build::workdir::StageDir;

const SPEC: Spec = Spec {
    name: "svsm",
    table: "svsm",
    shared_knobs: None,
    store: "svsm",
    manifest: &["svsm"],
    launch_role: None,
};

/// `[svsm]`'s knobs as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Table {
    image: Option<Spanned<String>>,
    tools: Option<Vec<Spanned<String>>>,
}

struct Svsm {
    source: Option<Source>,
    image: String,
    tools: Vec<Requirement>,
}

impl Svsm {
    fn configure(doc: &Document<'_>) -> Result<Svsm, ConfigError> {
        let t: Table = doc.knobs(SPEC.table)?;
        Ok(Svsm {
            source: doc.source(SPEC.source_spec())?,
            image: doc.knob(&t.image, "svsm.image")?.get_ref().clone(),
            tools: doc.requirements(&t.tools, "svsm.tools")?,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Inputs {
    #[serde(flatten)]
    common: Common,
    image: String,
    install: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Outputs {
    image: PathBuf,
    version: String,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Manifest {
    version: String,
}

impl Stage for Svsm {
    type Inputs = Inputs;
    type Outputs = Outputs;
    type Manifest = Manifest;

    fn spec(&self) -> &Spec {
        &SPEC
    }

    fn source(&self) -> Option<&Source> {
        self.source.as_ref()
    }

    fn tools(&self, _format: PackageFormat) -> Vec<Requirement> {
        self.tools.clone()
    }

    fn disk_estimate_gib(&self) -> u64 {
        1
    }

    fn inputs(&self, common: Common, env: &BuildEnv, _facts: &SourceFacts) -> Inputs {
        Inputs {
            common,
            image: self.image.clone(),
            install: env.install.display().to_string(),
        }
    }

    fn build(&self, job: &Job<'_>) -> anyhow::Result<Outputs> {
        let tree = &job.source.tree;
        job.run.run(&job.jobs.make(tree))?;
        let dest = job.env.install.join("share/svsm");
        std::fs::create_dir_all(&dest)?;
        let image = dest.join(&self.image);
        std::fs::copy(tree.join(&self.image), &image)?;
        let version = std::fs::read_to_string(tree.join("VERSION"))?
            .trim()
            .to_string();
        Ok(Outputs { image, version })
    }

    fn output_files(&self, outputs: &Outputs) -> Vec<PathBuf> {
        vec![outputs.image.clone()]
    }

    fn release_files(
        &self,
        outputs: &Outputs,
        env: &BuildEnv,
    ) -> anyhow::Result<Vec<release::ReleaseFile>> {
        Ok(vec![release::ReleaseFile::installed(
            &outputs.image,
            &env.install,
        )?])
    }

    fn manifest(&self, outputs: &Outputs) -> Manifest {
        Manifest {
            version: outputs.version.clone(),
        }
    }

    fn products(&self, _dir: &StageDir) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// The standard registry plus the toy component: its one registry line.
fn registry() -> Registry {
    Registry::standard().with(Entry::new::<Svsm>(
        SPEC,
        Box::new(|doc| Ok(Box::new(Svsm::configure(doc)?))),
    ))
}

/// A tiny upstream: a Makefile that makes `svsm.bin`, on branch `main`.
fn svsm_upstream(dir: &Path) -> PathBuf {
    let bare = dir.join("svsm.git");
    git(
        dir,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    let work = dir.join("svsm-work");
    git(dir, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    std::fs::write(
        work.join("Makefile"),
        "svsm.bin: svsm.S\n\tcat svsm.S > svsm.bin\n",
    )
    .unwrap();
    std::fs::write(work.join("svsm.S"), "; a toy SVSM image\n").unwrap();
    std::fs::write(work.join("VERSION"), "0.1-fixture\n").unwrap();
    std::fs::write(work.join(".gitignore"), "svsm.bin\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "toy svsm"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    bare
}

/// Runs the CLI in process with the toy registry; returns the JSON
/// document.
fn run_in_process(args: &[&str]) -> Value {
    let mut all = vec!["snp-build"];
    all.extend_from_slice(args);
    all.push("--json");
    let finished = snp_build::cli::run(&registry(), all);
    assert_eq!(finished.code, 0, "snp-build {args:?}: {:?}", finished.json);
    finished.json.expect("a JSON document")
}

#[test]
fn a_fifth_component_registered_alone_is_planned_built_and_released() {
    let s = Scratch::new(shared_fixtures());
    let bare = svsm_upstream(s.path());
    let pins = std::fs::read_to_string(s.pins()).unwrap();
    std::fs::write(
        s.pins(),
        format!(
            "{pins}\n[svsm]\nurl = \"file://{}\"\nbranch = \"main\"\nimage = \"svsm.bin\"\ntools = [\"make\"]\n",
            bare.display()
        ),
    )
    .unwrap();
    let pins = s.pins().display().to_string();
    let work = s.work().display().to_string();
    let install = s.path().join("usr/local").display().to_string();
    let out = s.path().join("out").display().to_string();
    let common = [
        "--config",
        &pins,
        "--work-dir",
        &work,
        "--install",
        &install,
    ];

    // It is a stage of the plan, selected by its table's word too.
    let mut args = common.to_vec();
    args.extend(["plan", "--package", "svsm"]);
    let plan = run_in_process(&args);
    assert_eq!(stage(&plan, "svsm")["action"], "run", "{plan}");

    // It builds beside the standard four, and the release carries it.
    let mut args = common.to_vec();
    args.extend(["--package", "--output", &out, "--date", "2026-11-29", "-j2"]);
    let doc = run_in_process(&args);
    let svsm = stage(&doc, "svsm");
    assert_eq!(svsm["status"], "ok", "{doc}");
    assert_eq!(svsm["outputs"]["version"], "0.1-fixture");
    assert_eq!(stage(&doc, "qemu")["status"], "ok");
    let release = PathBuf::from(doc["release"]["path"].as_str().unwrap());
    let manifest = release_manifest(&release);
    assert_eq!(manifest["svsm"]["version"], "0.1-fixture", "{manifest}");
    assert!(manifest["sources"]["svsm"]["sha"].is_string(), "{manifest}");
    assert!(manifest["qemu"]["version"].is_string(), "{manifest}");
    let sums = std::fs::read_to_string(release.join("SHA256SUMS")).unwrap();
    assert!(sums.contains("  usr/local/share/svsm/svsm.bin\n"), "{sums}");
    assert!(sums.contains("  source-commit.svsm\n"), "{sums}");

    // A second run: up to date, from its stamp's typed outputs.
    let mut args = common.to_vec();
    args.extend(["plan", "svsm"]);
    let again = run_in_process(&args);
    assert_eq!(stage(&again, "svsm")["action"], "skip", "{again}");
}
