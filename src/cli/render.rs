//! What commands print: the `--json` document (exactly one, on stdout,
//! with `schema_version` and `command`) and the few human outputs that go
//! to stdout (the plan table, the effective configuration, a converted pin
//! file, a launch digest).

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::commands::plan::Planned;

/// Version of every JSON document snp-build prints.
pub const SCHEMA_VERSION: u32 = 1;

/// A command's result as its JSON fields.
pub fn fields(value: &impl Serialize) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(value)?)
}

/// The whole document: `fields` plus `schema_version` and `command`.
pub fn document(command: &str, fields: Value) -> Value {
    let mut doc = Map::new();
    doc.insert("schema_version".into(), json!(SCHEMA_VERSION));
    doc.insert("command".into(), json!(command));
    if let Value::Object(map) = fields {
        doc.extend(map);
    }
    Value::Object(doc)
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
    }
    out
}
