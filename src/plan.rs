//! The plan: which stages run and why, computed without side effects.
//!
//! `snp-build plan` and `--dry-run` read the pin file, the lock, the patch
//! series, the stamps and the tools' versions, and never fetch or write.
//! A build decides with the same functions after fetching, from the SHAs
//! it actually resolved; with a lock that covers the pins both see the
//! same SHAs, so the plan and the build cannot disagree.

use serde::Serialize;

use crate::component::SourceId;
use crate::config::Config;
use crate::fingerprint::{self, Decision, Inputs};
use crate::lock::Lock;
use crate::patch;
use crate::stage::{self, BuildEnv, SourceFacts};
use crate::toolversion::ToolVersions;

/// One line of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub stage: String,
    /// `run` or `skip`.
    pub action: &'static str,
    pub reasons: Vec<String>,
}

impl Planned {
    pub fn new(stage: &str, d: &Decision) -> Planned {
        Planned {
            stage: stage.to_string(),
            action: if d.run { "run" } else { "skip" },
            reasons: d.reasons.clone(),
        }
    }
}

/// A stage's decision from its inputs and its stamp.
pub fn decide(env: &BuildEnv, stage: &str, inputs: &Inputs) -> Decision {
    let stamp = fingerprint::read_stamp(&env.work_dir, stage);
    fingerprint::decide(inputs, stamp.as_ref(), env.forced(stage))
}

/// What the lock says about a source (no fetch): its SHA if the lock
/// covers the pin, else a description of what would be resolved.
pub fn facts_from_lock(config: &Config, lock: &Lock, id: SourceId) -> anyhow::Result<SourceFacts> {
    let source = config.source(id)?;
    let series = patch::read_series(&source.patches)?;
    let entry = lock.get(source);
    Ok(SourceFacts {
        sha: entry
            .map(|e| e.sha.clone())
            .unwrap_or_else(|| format!("unresolved ({} is not in the lock)", source.rev)),
        series_hash: series.hash,
        submodules: entry.map(|e| e.submodules.clone()).unwrap_or_default(),
    })
}

/// The plan for the stages of `ids`, from the lock.
pub fn plan(
    config: &Config,
    env: &BuildEnv,
    lock: &Lock,
    ids: &[SourceId],
) -> anyhow::Result<Vec<Planned>> {
    let mut tools = ToolVersions::load(&env.work_dir);
    let mut out = Vec::new();
    for id in ids {
        let facts = facts_from_lock(config, lock, *id)?;
        let inputs = stage::inputs(config, env, *id, &facts, &mut tools);
        out.push(Planned::new(id.name(), &decide(env, id.name(), &inputs)));
    }
    Ok(out)
}

/// The plan as a table for people.
pub fn render(plan: &[Planned]) -> String {
    let width = plan.iter().map(|p| p.stage.len()).max().unwrap_or(5).max(5);
    let mut out = format!("{:width$}  action  why\n", "stage");
    for p in plan {
        let mut reasons = p.reasons.iter();
        out.push_str(&format!(
            "{:width$}  {:6}  {}\n",
            p.stage,
            p.action,
            reasons.next().map(String::as_str).unwrap_or("")
        ));
        for r in reasons {
            out.push_str(&format!("{:width$}  {:6}  {r}\n", "", ""));
        }
    }
    out
}
