//! What commands print: the `--json` document (exactly one, on stdout,
//! with `schema_version` and `command`) and the few human outputs that go
//! to stdout (the plan table, the effective configuration, a converted pin
//! file, a launch digest).
//!
//! Every document is a [`Document`]: the envelope, the command's typed
//! fields flattened in, and `status`; a failed command's fields are a
//! [`Failure`]. Their JSON Schemas are generated from these types
//! (`snp-build schema`, `docs/schemas/<command>.schema.json`).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::commands::build::BuildSummary;
use crate::commands::plan::Planned;
use crate::host::doctor::Report;
use crate::host::snp::HostReport;
use crate::release::measure::MeasurementRecord;

/// Version of every JSON document snp-build prints.
pub const SCHEMA_VERSION: u32 = 1;

/// A command's fields, whatever their type.
pub type Fields = Box<dyn erased_serde::Serialize>;

/// One `--json` document.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "{T}Document")]
pub struct Document<T> {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The subcommand (`build` without one).
    pub command: String,
    /// The command's own fields, at the top level.
    #[serde(flatten)]
    pub fields: T,
    pub status: DocumentStatus,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocumentStatus {
    /// Exit code 0.
    Ok,
    /// A build whose stages (some of them) failed: its summary is there.
    Failed,
    /// Any other failure.
    Error,
}

/// The fields of a failed command: what it can still report, then its
/// exit code and error.
#[derive(Serialize, JsonSchema)]
pub struct Failure<'a> {
    /// A build whose stages failed still reports every stage and source.
    #[serde(flatten)]
    pub summary: Option<&'a BuildSummary>,
    /// The doctor answers in one shape: its report's fields at the top,
    /// as when it exits 0.
    #[serde(flatten)]
    pub report: Option<Checks<'a>>,
    /// Any other command stopped by the build host's (or the SNP host's)
    /// checks: the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight: Option<Checks<'a>>,
    /// The exit code (README's table).
    pub exit_code: i32,
    /// The error and its causes.
    pub error: String,
}

/// The checks that stopped a command: the build host's or the SNP host's.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Checks<'a> {
    Build(&'a Report),
    Host(&'a HostReport),
}

/// A command's document as its schema describes it: its fields, or its
/// failure.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "{T}Outcome")]
pub enum Outcome<T> {
    Ok(Document<T>),
    Failed(Document<Failure<'static>>),
}

/// The whole document: the envelope around `fields`, in its canonical
/// form (keys sorted).
pub fn document<T: Serialize>(
    command: &str,
    fields: T,
    status: DocumentStatus,
) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(Document {
        schema_version: SCHEMA_VERSION,
        command: command.to_string(),
        fields,
        status,
    })?)
}

/// A command's result as its fields.
pub fn fields(value: impl Serialize + 'static) -> anyhow::Result<Fields> {
    Ok(Box::new(value))
}

// The documents of commands whose result is not a domain type.

/// `plan`, and `build --dry-run`: each stage, whether it runs and why.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Plan {
    pub stages: Vec<Planned>,
}

/// `keygen`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Keys {
    pub secret_key: PathBuf,
    pub public_key: PathBuf,
    /// The secret key is protected by a password.
    pub encrypted: bool,
}

/// `config`: the pin file with every default filled in.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Config {
    /// Where the pin file came from (its path, or the embedded default).
    pub origin: String,
    /// The effective configuration, table by table.
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub config: toml::Table,
}

/// `measure`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Measured {
    pub measurement: MeasurementRecord,
}

/// `completions SHELL`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Completions {
    /// `bash`, `zsh` or `fish`.
    pub shell: String,
    pub script: String,
}

/// `man`: one page on stdout, or every page written into `--dir`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Man {
    Page {
        /// The page, roff.
        roff: String,
    },
    Pages {
        /// The files written.
        pages: Vec<PathBuf>,
    },
}

/// `schema`: the JSON Schemas written.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Schemas {
    pub files: Vec<PathBuf>,
}

/// The plan as a table for people.
pub fn plan_table(plan: &[Planned]) -> String {
    let width = plan.iter().map(|p| p.stage.len()).max().unwrap_or(5).max(5);
    let mut out = format!("{:width$}  action  why\n", "stage");
    for p in plan {
        let mut reasons = p.reasons.iter();
        out.push_str(&format!(
            "{:width$}  {:6}  {}\n",
            p.stage,
            p.action.word(),
            reasons.next().map(ToString::to_string).unwrap_or_default()
        ));
        for r in reasons {
            out.push_str(&format!("{:width$}  {:6}  {r}\n", "", ""));
        }
        if let Some(pin) = &p.pin {
            out.push_str(&format!("{:width$}  {:6}  pinned: {pin}\n", "", ""));
        }
    }
    out
}
