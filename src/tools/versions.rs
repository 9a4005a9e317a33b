//! The versions of a stage's tools, for its fingerprint (and the gcc line
//! of the manifest), asked the catalog's one way.
//!
//! Guarantees:
//! - A program's version is the first line of its catalog query's answer
//!   that carries a version number (else its first line), asked once per
//!   binary and remembered
//!   in `<work>/state/tool-versions.json`, keyed by the binary's path,
//!   size and mtime and the query's arguments. A no-op build runs no
//!   version query at all.
//! - A library's version is its pkg-config `Version:` (a file read, no
//!   subprocess); a Python-modules tool stands for `python3`'s version.
//! - A tool that is not there reads `missing`, so installing it later
//!   changes the fingerprint.
//! - `plan` reads the cache and never writes it; a build saves what it
//!   learnt.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use super::probe::{ProbeEnv, version_output};
use super::{Probe, lookup, version_in};
use crate::workdir::WorkDir;

/// The cache of one work dir, plus what this process has looked up.
#[derive(Debug)]
pub struct ToolVersions {
    path: PathBuf,
    cache: BTreeMap<String, String>,
    dirty: bool,
    env: ProbeEnv,
    /// What this process has already answered, by tool name.
    known: BTreeMap<String, String>,
}

impl ToolVersions {
    /// Reads the cache of `work` (absent or unreadable: empty).
    pub fn load(work: &WorkDir) -> ToolVersions {
        let path = work.tool_versions();
        let cache = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        ToolVersions {
            path,
            cache,
            dirty: false,
            env: ProbeEnv::system(),
            known: BTreeMap::new(),
        }
    }

    /// The version of catalog tool `tool` on this host (a name the catalog
    /// does not know is asked `--version` as a program of that name).
    pub fn version(&mut self, tool: &str) -> String {
        if let Some(v) = self.known.get(tool) {
            return v.clone();
        }
        let (version, how) = match lookup(tool).map(|t| &t.probe) {
            Some(Probe::Library { header, pkg_config }) => {
                let version = match (
                    self.env.find_header(header),
                    self.env.pkg_config_version(pkg_config),
                ) {
                    (_, Some(v)) => v,
                    (Some(_), None) => "present (no pkg-config version)".into(),
                    (None, None) => "missing".into(),
                };
                (version, "read")
            }
            Some(Probe::PythonModules { .. }) => return self.version("python3"),
            Some(Probe::Program {
                program,
                version_args,
            }) => self.program(program, version_args),
            None => self.program(tool, &["--version"]),
        };
        tracing::debug!("tool version: {tool}: {version} ({how})");
        self.known.insert(tool.to_string(), version.clone());
        version
    }

    /// A program's version line: from the cache when its binary is the
    /// one the cache saw, else asked now.
    fn program(&mut self, program: &str, args: &[&str]) -> (String, &'static str) {
        let Some(bin) = self.env.find_program(program) else {
            return ("missing".into(), "not on PATH");
        };
        // `v2`: how a version line is picked (a cache written by another
        // rule must not answer).
        let key = match std::fs::metadata(&bin) {
            Ok(m) => format!(
                "v2|{}|{}|{}|{}",
                bin.display(),
                m.len(),
                m.modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
                args.join(" ")
            ),
            Err(_) => return ("missing".into(), "unreadable"),
        };
        if let Some(v) = self.cache.get(&key) {
            return (v.clone(), "cached");
        }
        let v = match version_output(&bin, args) {
            Some(text) => version_line(&text),
            None => "unrunnable".into(),
        };
        self.cache.insert(key, v.clone());
        self.dirty = true;
        (v, "queried")
    }

    /// Saves new entries (the build does; `plan` never writes).
    pub fn save(&self) -> anyhow::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        crate::fsutil::write_atomic(&self.path, &serde_json::to_vec_pretty(&self.cache)?)
    }
}

/// The first line that carries a version number (as the preflight reads
/// it), else the first non-empty one. (Not "the first line that says
/// version": make's and ld's licence lines say "version 3".)
fn version_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| version_in(l).is_some_and(|v| !v.is_empty()))
        .or(lines.first())
        .map(|l| l.to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_line_is_the_first_with_a_version_number() {
        assert_eq!(
            version_line(
                "\nIntel ACPI Component Architecture\nASL+ Optimizing Compiler/Disassembler version 20220331\n"
            ),
            "ASL+ Optimizing Compiler/Disassembler version 20220331"
        );
        assert_eq!(
            version_line("gcc (Debian 12.2.0-14+deb12u1) 12.2.0\nCopyright"),
            "gcc (Debian 12.2.0-14+deb12u1) 12.2.0"
        );
        assert_eq!(version_line("v5.36.0"), "v5.36.0");
        assert_eq!(
            version_line(
                "GNU Make 4.3\nBuilt for x86_64-pc-linux-gnu\nLicense GPLv3+: GNU GPL version 3 or later"
            ),
            "GNU Make 4.3"
        );
        assert_eq!(version_line(""), "unknown");
    }
}
