//! The registry: every component, once, in build order; and a pin file
//! validated against it (a [`Stack`]).
//!
//! build.sh's order is qemu, ovmf, then the guest kernel and the host
//! kernel; `Registry::standard` lists them so. Everything that works on
//! "every stage" (plan, fetch selection, preflight, release, clean, the
//! JSON summary) loops over a [`Stack`] and never names a component.

use crate::config::{BuildKnobs, ConfigError, Document, Layout, PinFile};
use crate::error::UsageError;

use super::component::{Component, Entry, Spec};
use super::{kernel, ovmf, qemu};

/// The components snp-build builds, in build order.
pub struct Registry {
    entries: Vec<Entry>,
}

impl Registry {
    /// AMD's stack: QEMU, OVMF, the guest kernel, the host kernel.
    pub fn standard() -> Registry {
        Registry {
            entries: vec![
                qemu::entry(),
                ovmf::entry(),
                kernel::entry(kernel::Kernel::Guest),
                kernel::entry(kernel::Kernel::Host),
            ],
        }
    }

    /// This registry with one more component, built after the others.
    pub fn with(mut self, entry: Entry) -> Registry {
        self.entries.push(entry);
        self
    }

    pub fn specs(&self) -> impl Iterator<Item = &Spec> {
        self.entries.iter().map(|e| &e.spec)
    }

    /// The tables a pin file may have.
    pub fn layout(&self) -> Layout {
        let mut layout = Layout::default();
        for spec in self.specs() {
            layout.sources.push(spec.table);
            if let Some(shared) = spec.shared_knobs
                && !layout.shared.contains(&shared)
            {
                layout.shared.push(shared);
            }
        }
        layout
    }

    /// Validates `file` against every component: its tables, pins and
    /// knobs, all before anything else happens.
    pub fn configure(&self, file: PinFile) -> Result<Stack, ConfigError> {
        let layout = self.layout();
        let (effective, build, components) = {
            let doc = Document::parse(&file, &layout)?;
            let build = doc.build_knobs()?;
            let components = self
                .entries
                .iter()
                .map(|e| (e.configure)(&doc))
                .collect::<Result<Vec<_>, _>>()?;
            (doc.effective(), build, components)
        };
        Ok(Stack {
            file,
            effective,
            build,
            components,
        })
    }
}

/// A pin file validated against the registry: its build knobs and every
/// component configured (pinned or not).
pub struct Stack {
    pub file: PinFile,
    /// The file with every knob filled in (`snp-build config`).
    pub effective: toml::Table,
    pub build: BuildKnobs,
    components: Vec<Box<dyn Component>>,
}

impl Stack {
    /// Every component, in build order.
    pub fn components(&self) -> impl Iterator<Item = &dyn Component> {
        self.components.iter().map(|c| c.as_ref())
    }

    pub fn get(&self, name: &str) -> Option<&dyn Component> {
        self.components().find(|c| c.spec().name == name)
    }

    /// Every stage name, in build order.
    pub fn names(&self) -> Vec<&'static str> {
        self.components().map(|c| c.spec().name).collect()
    }

    /// The components a command works on: those `selection` names (each
    /// must be pinned), or, when it names none, every one this file pins.
    pub fn select(&self, selection: &Selection) -> Result<Vec<&dyn Component>, ConfigError> {
        let Selection::Named(names) = selection else {
            return Ok(self.components().filter(|c| c.source().is_some()).collect());
        };
        let mut out = Vec::new();
        for c in self.components().filter(|c| names.contains(&c.spec().name)) {
            if c.source().is_none() {
                let table = c.spec().table;
                return Err(ConfigError::whole_file(
                    self.file.origin.display_name(),
                    table,
                    format!(
                        "no [{table}] table: the {} source is not pinned",
                        c.spec().name
                    ),
                    format!(
                        "add a [{table}] table with `url` and one of `branch`, `tag` or `commit`, or build only the sources this file pins"
                    ),
                ));
            }
            out.push(c);
        }
        Ok(out)
    }

    /// Checks `--force` names: stages of this stack, or `release`.
    pub fn check_stage_names(&self, names: &[String], extra: &str) -> Result<(), UsageError> {
        for n in names {
            if self.get(n).is_none() && n != extra {
                return Err(
                    UsageError::new(format!("--force: unknown stage `{n}`")).help(format!(
                        "stages are {} and {extra}",
                        self.names().join(", ")
                    )),
                );
            }
        }
        Ok(())
    }
}

/// Which components a command works on, as build.sh's words name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// No words: every component the pin file pins.
    All,
    /// The named ones, by stage name, in build order.
    Named(Vec<&'static str>),
}

impl Selection {
    /// Parses build.sh's positional words against the registry: a table's
    /// words name its component (`qemu`, `kernel host`), a table's first
    /// word names its whole family (`kernel`); none means all.
    pub fn parse(words: &[String], registry: &Registry) -> Result<Selection, UsageError> {
        if words.is_empty() {
            return Ok(Selection::All);
        }
        let asked = words.join(".");
        let named: Vec<&'static str> = registry
            .specs()
            .filter(|s| s.table == asked || s.group() == asked)
            .map(|s| s.name)
            .collect();
        if named.is_empty() {
            return Err(
                UsageError::new(format!("unknown component `{}`", words.join(" "))).help(format!(
                    "choose one of: {} (none means all)",
                    choices(registry).join(", ")
                )),
            );
        }
        Ok(Selection::Named(named))
    }
}

/// Every way to name components: each family with several members, and
/// each component, in registry order.
fn choices(registry: &Registry) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for spec in registry.specs() {
        let members = registry
            .specs()
            .filter(|s| s.group() == spec.group())
            .count();
        if members > 1 && !out.iter().any(|o| o == spec.group()) {
            out.push(spec.group().to_string());
        }
        out.push(spec.table.replace('.', " "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn selection_matches_build_sh() {
        let r = Registry::standard();
        assert_eq!(Selection::parse(&[], &r).unwrap(), Selection::All);
        assert_eq!(
            Selection::parse(&words("kernel"), &r).unwrap(),
            Selection::Named(vec!["kernel-guest", "kernel-host"])
        );
        assert_eq!(
            Selection::parse(&words("kernel host"), &r).unwrap(),
            Selection::Named(vec!["kernel-host"])
        );
        assert_eq!(
            Selection::parse(&words("qemu"), &r).unwrap(),
            Selection::Named(vec!["qemu"])
        );
        assert!(Selection::parse(&words("kernel qemu"), &r).is_err());
        let e = Selection::parse(&words("firmware"), &r).unwrap_err();
        assert!(
            e.help
                .unwrap()
                .contains("qemu, ovmf, kernel, kernel guest, kernel host")
        );
    }

    /// The table at the top of `fingerprint.rs` is the contract: it must
    /// list exactly the inputs each standard component records.
    #[test]
    fn the_documented_fingerprint_table_matches_the_inputs() {
        use std::collections::{BTreeMap, BTreeSet};

        use crate::host::PackageFormat;
        use crate::stage::{BuildEnv, Force, SourceFacts};
        use crate::tools::versions::ToolVersions;
        use crate::workdir::WorkDir;

        let doc = include_str!("../fingerprint.rs");
        let rows: Vec<Vec<&str>> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("//! |"))
            .map(|l| l.split('|').map(str::trim).collect())
            .collect();
        let header = &rows[0];
        // Column -> the stages it stands for.
        let columns: Vec<Vec<&str>> = header[1..]
            .iter()
            .map(|h| h.split(" / ").collect())
            .collect();
        let mut documented: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for row in rows.iter().skip(2).filter(|r| r.len() > 2) {
            let names: Vec<String> = row[0]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|n| {
                    if n.starts_with("tool:") {
                        "tool:*".to_string()
                    } else {
                        n.to_string()
                    }
                })
                .collect();
            for (cell, stages) in row[1..].iter().zip(&columns) {
                if !cell.is_empty() {
                    for stage in stages {
                        documented
                            .entry(stage)
                            .or_default()
                            .extend(names.iter().cloned());
                    }
                }
            }
        }

        let stack = Registry::standard()
            .configure(crate::config::PinFile::embedded())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let env = BuildEnv {
            work: WorkDir::new(dir.path()).unwrap(),
            install: "/opt/snp".into(),
            jobs: 1,
            serial: false,
            keep_going: false,
            package_format: PackageFormat::Deb,
            launcher: None,
            force: Force::None,
            clean: false,
        };
        let facts = SourceFacts {
            sha: "0".repeat(40),
            series_hash: String::new(),
            submodules: BTreeMap::new(),
        };
        let mut versions = ToolVersions::load(&env.work);
        for c in stack.components() {
            let recorded: BTreeSet<String> = c
                .fingerprint(&env, &facts, &mut versions)
                .into_keys()
                .map(|k| {
                    if k.starts_with("tool:") {
                        "tool:*".to_string()
                    } else {
                        k
                    }
                })
                .collect();
            let Some(documented) = documented.get(c.spec().name).cloned() else {
                panic!("{} has no column in the fingerprint table", c.spec().name);
            };
            assert_eq!(
                documented,
                recorded,
                "the fingerprint table and the inputs of {} differ",
                c.spec().name
            );
        }
    }

    #[test]
    fn the_build_order_is_build_shs() {
        let names: Vec<_> = Registry::standard().specs().map(|s| s.name).collect();
        assert_eq!(names, ["qemu", "ovmf", "kernel-guest", "kernel-host"]);
    }
}
