//! Where messages go: human text to stderr, machine output (`--json`) to
//! stdout as exactly one JSON document carrying `schema_version`.

use serde_json::{Map, Value, json};

/// Version of every JSON document snp-build prints.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub verbose: u8,
}

impl Output {
    /// A message for the person at the terminal (always stderr).
    pub fn info(&self, message: impl AsRef<str>) {
        eprintln!("{}", message.as_ref());
    }

    pub fn warn(&self, message: impl AsRef<str>) {
        eprintln!("warning: {}", message.as_ref());
    }

    /// Prints the command's JSON document: `fields` plus `schema_version`
    /// and `command`.
    pub fn document(&self, command: &str, fields: Value) {
        let mut doc = Map::new();
        doc.insert("schema_version".into(), json!(SCHEMA_VERSION));
        doc.insert("command".into(), json!(command));
        if let Value::Object(map) = fields {
            doc.extend(map);
        }
        println!("{}", Value::Object(doc));
    }
}
