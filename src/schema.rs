//! JSON Schemas of the documents snp-build writes, generated from their
//! Rust types (`schemars`), so a reader checks against the one definition
//! the program writes with.
//!
//! Guarantees:
//! - One setting for every schema: JSON Schema draft 2020-12, describing
//!   what snp-build *writes* (a field it leaves out when empty is
//!   optional, every other one required).
//! - Deterministic bytes: keys sorted at every level, pretty-printed,
//!   one trailing newline (a release carries `manifest.schema.json`, and
//!   releases are byte-reproducible).

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// The generator every schema is made with.
pub fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
}

/// The root schema of `T`.
pub fn of<T: JsonSchema>() -> Schema {
    generator().into_root_schema_for::<T>()
}

/// A schema's bytes (see the guarantees).
pub fn to_bytes(schema: &Schema) -> Vec<u8> {
    // Through `Value`, whose maps sort their keys.
    let mut bytes = serde_json::to_vec_pretty(schema.as_value()).expect("a JSON Schema is JSON");
    bytes.push(b'\n');
    bytes
}
