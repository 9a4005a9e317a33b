//! What a component is: a typed [`Stage`] (its pin, knobs, tools, typed
//! inputs and outputs, release entries and work-dir products), and the
//! type-erased [`Component`] the registry and everything else loop over.
//!
//! The contract between a stage and the rest is typed end to end: `build()`
//! returns the stage's `Outputs` struct, the stamp records it, and the
//! release asks the stage itself for its files and manifest section. No
//! string keys cross this boundary.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

use crate::config::{ConfigError, Document, Source, SourceSpec};
use crate::exec::{Budget, Cmd, StageRun};
use crate::fingerprint::{self, Decision, Fingerprint, Stamp};
use crate::host::PackageFormat;
use crate::host::doctor::Check;
use crate::host::preflight::StageNeeds;
use crate::release;
use crate::source::Synced;
use crate::tools::Requirement;
use crate::tools::versions::ToolVersions;
use crate::workdir::{StageDir, WorkDir};

/// A component as data: its names, its tables and where its things go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The stage's and its source's name: logs, stamps, JSON, `--force`,
    /// `patches/<name>/`.
    pub name: &'static str,
    /// The pin file table that pins its source (`kernel.host`); its words
    /// are the component's selection words (`kernel host`), and build.sh's
    /// `source-commit.<table>` records it.
    pub table: &'static str,
    /// A table of knobs it shares with others (`kernel`), if any.
    pub shared_knobs: Option<&'static str>,
    /// The object store it shares with sources of the same upstream
    /// family (`linux`).
    pub store: &'static str,
    /// Where its section goes in the release manifest (`kernels`, `host`).
    pub manifest: &'static [&'static str],
    /// What it is in an SEV-SNP launch, if it decides one: which versions
    /// can launch SNP and which VMSA the guest gets (`snp_support`).
    pub launch_role: Option<crate::snp_support::Role>,
}

impl Spec {
    pub fn source_spec(&self) -> SourceSpec {
        SourceSpec {
            name: self.name,
            table: self.table,
            store: self.store,
        }
    }

    /// The family it belongs to: its table's first word (`kernel`).
    pub fn group(&self) -> &'static str {
        self.table.split('.').next().unwrap_or(self.table)
    }
}

/// Makes a configured component from a parsed pin file.
pub type Configure =
    Box<dyn Fn(&Document<'_>) -> Result<Box<dyn Component>, ConfigError> + Send + Sync>;

/// The JSON Schema of a stage's manifest section (its `Stage::Manifest`),
/// made with the manifest's generator (so it may refer to its definitions).
pub type ManifestSchema = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// One registered component: its spec, how to configure it from a pin
/// file, and its manifest section's schema (each component file offers an
/// `entry()`, made with [`Entry::new`]; the registry lists them).
pub struct Entry {
    pub spec: Spec,
    pub configure: Configure,
    pub manifest_schema: ManifestSchema,
}

impl Entry {
    /// The entry of the stage `S`: its section's schema is `S::Manifest`'s.
    pub fn new<S: Stage>(spec: Spec, configure: Configure) -> Entry {
        Entry {
            spec,
            configure,
            manifest_schema: |generator| generator.subschema_for::<S::Manifest>(),
        }
    }
}

/// `--force`: which stages run even when up to date.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Force {
    #[default]
    None,
    All,
    Stages(Vec<String>),
}

impl Force {
    pub fn forces(&self, stage: &str) -> bool {
        match self {
            Force::None => false,
            Force::All => true,
            Force::Stages(names) => names.iter().any(|n| n == stage),
        }
    }
}

/// What every stage of a build shares.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    pub work: WorkDir,
    /// Absolute install prefix (QEMU and OVMF), as build.sh's --install.
    pub install: PathBuf,
    pub jobs: usize,
    pub serial: bool,
    pub keep_going: bool,
    /// deb or rpm (never Auto here).
    pub package_format: PackageFormat,
    pub launcher: Option<String>,
    pub force: Force,
    /// `--clean`: kernels start from `make distclean`, QEMU from configure.
    pub clean: bool,
    /// Where stage outputs are shared (machine policy: never an input).
    pub cache: Option<crate::config::cache::CachePolicy>,
}

/// What a stage's fingerprint needs to know about its source.
#[derive(Debug, Clone)]
pub struct SourceFacts {
    /// The resolved SHA, or a description of what is unresolved.
    pub sha: String,
    pub series_hash: String,
    pub submodules: BTreeMap<String, String>,
    /// The SHA-256 of the local changes a build goes ahead with.
    pub dirty: Option<String>,
}

impl From<&Synced> for SourceFacts {
    fn from(s: &Synced) -> SourceFacts {
        SourceFacts {
            sha: s.sha.clone(),
            series_hash: s.series_hash.clone().unwrap_or_default(),
            submodules: s.submodules.clone(),
            dirty: s.dirty.as_ref().map(|d| d.diff_sha256.clone()),
        }
    }
}

/// The inputs every stage records (the first rows of the table in
/// `fingerprint.rs`); each stage's own `Inputs` flattens this in.
#[derive(Debug, Clone, Serialize)]
pub struct Common {
    /// The resolved upstream SHA.
    pub sha: String,
    /// The patch series' content hash (16 hex digits), or `none`.
    pub patches: String,
    /// `tool:<name>`: the version of each tool in the stage's list.
    #[serde(flatten)]
    pub tools: ToolInputs,
    /// This program's version.
    #[serde(rename = "snp-build")]
    pub snp_build: &'static str,
    /// The build box's OS and architecture (`debian 12 x86_64`).
    pub os: String,
    /// The local changes built with `--allow-dirty` (absent when clean).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirty: Option<String>,
}

/// Tool versions by tool name, recorded as `tool:<name>` inputs.
#[derive(Debug, Clone, Default)]
pub struct ToolInputs(pub BTreeMap<String, String>);

impl Serialize for ToolInputs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (format!("tool:{k}"), v)))
    }
}

/// How a stage may use the job budget.
#[derive(Debug, Clone, Copy)]
pub struct Jobs {
    /// Parallel mode: make gets the shared jobserver, and a tool that is
    /// no jobserver client has each compile take a token from it.
    pub jobserver: bool,
    /// The `-j`/`-n` to give a tool that is no jobserver client (and every
    /// make in serial mode): the build's `-j`. In parallel mode the tokens
    /// bound what really runs, so it may use every free core.
    pub width: usize,
}

impl Jobs {
    /// A `make` command using the budget the right way.
    pub fn make(&self, dir: &Path) -> Cmd {
        let cmd = Cmd::new("make", dir);
        if self.jobserver {
            cmd.budget(Budget::Jobserver)
        } else {
            cmd.arg(format!("-j{}", self.width))
        }
    }

    /// `cmd`, a tool that is no jobserver client given `-j`/`-n`
    /// [`Jobs::width`], under the budget: in parallel mode its compiles
    /// take job tokens (through the stage's `gcc` wrapper, which must be
    /// first on its `PATH`).
    pub fn non_client(&self, cmd: Cmd) -> Cmd {
        if self.jobserver {
            cmd.budget(Budget::Tokens)
        } else {
            cmd
        }
    }
}

/// What a stage's `build()` gets.
pub struct Job<'a> {
    pub env: &'a BuildEnv,
    /// Its source, at the pinned (and patched) commit.
    pub source: &'a Synced,
    /// `<work>/<stage>`: its tree and its products.
    pub dir: StageDir,
    /// Runs its commands (log, environment, process group, -v echo).
    pub run: &'a StageRun<'a>,
    pub jobs: Jobs,
}

/// One component, typed: implement this, add one registry line, and give
/// it its table in `stable-commits.toml` (see ARCHITECTURE.md).
pub trait Stage: Send + Sync + 'static {
    /// Its fingerprint: every input that decides its outputs.
    type Inputs: Serialize;
    /// What `build()` made; the stamp records it, the release reads it.
    type Outputs: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;
    /// Its section of the release manifest (its schema is part of
    /// `manifest.schema.json`).
    type Manifest: Serialize + schemars::JsonSchema + Send + Sync + 'static;

    fn spec(&self) -> &Spec;
    /// Its pin, when the pin file has its table.
    fn source(&self) -> Option<&Source>;
    /// The host tools it needs: one list for the preflight, the
    /// fingerprint and version queries alike.
    fn tools(&self, format: PackageFormat) -> Vec<Requirement>;
    /// Build-host checks of its own, beside its tools.
    fn checks(&self) -> Vec<Check> {
        Vec::new()
    }
    /// Rough disk use in GiB (tree, objects, build output).
    fn disk_estimate_gib(&self) -> u64;
    /// Rough running time in seconds on a 2-core machine, for scheduling
    /// the longest stage first before any build has recorded one (its
    /// stamp's `duration_s` wins). Only the order between stages matters.
    fn time_estimate_s(&self) -> f64 {
        60.0
    }
    /// Refuses a request this host cannot satisfy, before any work.
    fn check_request(&self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Its typed inputs, given the ones every stage has.
    fn inputs(&self, common: Common, env: &BuildEnv, facts: &SourceFacts) -> Self::Inputs;
    fn build(&self, job: &Job<'_>) -> anyhow::Result<Self::Outputs>;
    /// The files whose loss or change makes it run again.
    fn output_files(&self, outputs: &Self::Outputs) -> Vec<PathBuf>;
    /// Its files in the release.
    fn release_files(
        &self,
        outputs: &Self::Outputs,
        env: &BuildEnv,
    ) -> anyhow::Result<Vec<release::ReleaseFile>>;
    fn manifest(&self, outputs: &Self::Outputs) -> Self::Manifest;
    /// The version it built, as it reports it (`make kernelrelease`,
    /// `qemu-system-x86_64 --version`), for a stage with a launch role.
    fn launch_version(&self, _outputs: &Self::Outputs) -> Option<String> {
        None
    }
    /// What it keeps beside its tree under the work dir (for `clean`).
    fn products(&self, dir: &StageDir) -> Vec<PathBuf>;
}

/// A stage's outputs with their type erased (they serialize as themselves).
#[derive(Clone, Debug)]
pub struct Built(Arc<dyn AnyOutputs>);

trait AnyOutputs: erased_serde::Serialize + Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
}

impl<T: Serialize + Debug + Send + Sync + 'static> AnyOutputs for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

erased_serde::serialize_trait_object!(AnyOutputs);

impl Serialize for Built {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// In a schema: the stage's own `Outputs` (each stage's type; see its file).
impl schemars::JsonSchema for Built {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StageOutputs".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "The stage's typed outputs (its `Outputs` struct, as its stamp records them)."
        })
    }
}

impl Built {
    fn new<T: Serialize + Debug + Send + Sync + 'static>(outputs: T) -> Built {
        Built(Arc::new(outputs))
    }

    fn get<T: 'static>(&self) -> &T {
        self.0
            .as_any()
            .downcast_ref()
            .expect("outputs handed back to the stage that built them")
    }
}

/// A manifest section with its type erased.
pub type ManifestSection = Box<dyn erased_serde::Serialize + Send + Sync>;

/// The registry's view of a [`Stage`]: the same, with types erased.
pub trait Component: Send + Sync {
    fn spec(&self) -> &Spec;
    fn source(&self) -> Option<&Source>;
    fn tools(&self, format: PackageFormat) -> Vec<Requirement>;
    fn checks(&self) -> Vec<Check>;
    fn disk_estimate_gib(&self) -> u64;
    fn time_estimate_s(&self) -> f64;
    fn check_request(&self) -> anyhow::Result<()>;
    /// Its fingerprint, flat (`name` -> text), with its tools' versions.
    fn fingerprint(
        &self,
        env: &BuildEnv,
        facts: &SourceFacts,
        versions: &mut ToolVersions,
    ) -> Fingerprint;
    /// Whether it must run for `inputs`, judged against its stamp (a
    /// stamp whose outputs no longer read as this stage's counts as none).
    fn decide(&self, work: &WorkDir, inputs: &Fingerprint, forced: bool) -> Decision;
    fn build(&self, job: &Job<'_>) -> anyhow::Result<Built>;
    /// The outputs its last successful build recorded, if its stamp holds
    /// them.
    fn recorded(&self, work: &WorkDir) -> Option<Built>;
    /// Outputs read from their JSON (a pulled record), if they are this
    /// stage's.
    fn parse_outputs(&self, outputs: &crate::cache::artifact::Outputs) -> Option<Built>;
    fn output_files(&self, built: &Built) -> Vec<PathBuf>;
    fn release_files(
        &self,
        built: &Built,
        env: &BuildEnv,
    ) -> anyhow::Result<Vec<release::ReleaseFile>>;
    fn manifest(&self, built: &Built) -> ManifestSection;
    fn launch_version(&self, built: &Built) -> Option<String>;
    fn products(&self, dir: &StageDir) -> Vec<PathBuf>;
}

impl<S: Stage> Component for S {
    fn spec(&self) -> &Spec {
        Stage::spec(self)
    }

    fn source(&self) -> Option<&Source> {
        Stage::source(self)
    }

    fn tools(&self, format: PackageFormat) -> Vec<Requirement> {
        Stage::tools(self, format)
    }

    fn checks(&self) -> Vec<Check> {
        Stage::checks(self)
    }

    fn disk_estimate_gib(&self) -> u64 {
        Stage::disk_estimate_gib(self)
    }

    fn time_estimate_s(&self) -> f64 {
        Stage::time_estimate_s(self)
    }

    fn check_request(&self) -> anyhow::Result<()> {
        Stage::check_request(self)
    }

    fn fingerprint(
        &self,
        env: &BuildEnv,
        facts: &SourceFacts,
        versions: &mut ToolVersions,
    ) -> Fingerprint {
        let tools = Stage::tools(self, env.package_format)
            .iter()
            .map(|r| (r.tool.clone(), versions.version(&r.tool)))
            .collect();
        let patches = if facts.series_hash.is_empty() {
            "none".to_string()
        } else {
            facts.series_hash[..16.min(facts.series_hash.len())].to_string()
        };
        let common = Common {
            sha: facts.sha.clone(),
            patches,
            tools: ToolInputs(tools),
            snp_build: env!("CARGO_PKG_VERSION"),
            os: crate::host::os_identity(Path::new(crate::host::OS_RELEASE)),
            dirty: facts
                .dirty
                .as_ref()
                .map(|d| format!("sha256:{}", &d[..16.min(d.len())])),
        };
        let inputs = fingerprint::flatten(&Stage::inputs(self, common, env, facts));
        tracing::debug!(
            stage = Stage::spec(self).name,
            "fingerprint inputs: {}",
            inputs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        inputs
    }

    fn decide(&self, work: &WorkDir, inputs: &Fingerprint, forced: bool) -> Decision {
        let stamp: Option<Stamp<S::Outputs>> =
            fingerprint::read_stamp(&work.stamp(Stage::spec(self).name));
        fingerprint::decide(inputs, stamp.as_ref(), forced)
    }

    fn build(&self, job: &Job<'_>) -> anyhow::Result<Built> {
        Stage::build(self, job).map(Built::new)
    }

    fn recorded(&self, work: &WorkDir) -> Option<Built> {
        let stamp: Stamp<S::Outputs> =
            fingerprint::read_stamp(&work.stamp(Stage::spec(self).name))?;
        Some(Built::new(stamp.summary))
    }

    fn parse_outputs(&self, outputs: &crate::cache::artifact::Outputs) -> Option<Built> {
        outputs.read::<S::Outputs>().map(Built::new)
    }

    fn output_files(&self, built: &Built) -> Vec<PathBuf> {
        Stage::output_files(self, built.get::<S::Outputs>())
    }

    fn release_files(
        &self,
        built: &Built,
        env: &BuildEnv,
    ) -> anyhow::Result<Vec<release::ReleaseFile>> {
        Stage::release_files(self, built.get::<S::Outputs>(), env)
    }

    fn manifest(&self, built: &Built) -> ManifestSection {
        Box::new(Stage::manifest(self, built.get::<S::Outputs>()))
    }

    fn launch_version(&self, built: &Built) -> Option<String> {
        Stage::launch_version(self, built.get::<S::Outputs>())
    }

    fn products(&self, dir: &StageDir) -> Vec<PathBuf> {
        Stage::products(self, dir)
    }
}

impl dyn Component + '_ {
    /// What it needs from the build host, for the preflight and `doctor`.
    pub fn needs(&self, format: PackageFormat) -> StageNeeds {
        StageNeeds {
            stage: self.spec().name.to_string(),
            group: self.spec().group().to_string(),
            tools: self.tools(format),
            checks: self.checks(),
            disk_gib: self.disk_estimate_gib(),
        }
    }
}

/// Where QEMU and OVMF are configured to live: the release's own layout
/// (`usr/local/` inside it). `--install` only says where the files land.
pub const PREFIX: &str = "/usr/local";
