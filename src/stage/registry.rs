//! The registry: every component, once, in build order; and a pin file
//! validated against it (a [`Stack`]).
//!
//! build.sh's order is qemu, ovmf, then the guest kernel and the host
//! kernel; `Registry::standard` lists them so. Everything that works on
//! "every stage" (plan, fetch selection, preflight, release, clean, the
//! JSON summary) loops over a [`Stack`] and never names a component.

use crate::config::{BuildKnobs, ConfigError, Document, Errors, Layout, PinFile};
use crate::error::UsageError;

use super::component::{Component, Entry, ManifestSchema, Spec};
use super::{kernel, ovmf, qemu};

/// The components snp-build builds, in build order.
pub struct Registry {
    entries: Vec<Entry>,
}

impl Registry {
    /// AMD's stack: QEMU, OVMF, the guest kernel, the host kernel.
    pub fn standard() -> Registry {
        Registry { entries: vec![] }
            .with(qemu::entry())
            .with(ovmf::entry())
            .with(kernel::entry(kernel::Kernel::Guest))
            .with(kernel::entry(kernel::Kernel::Host))
    }

    /// This registry with one more component, built after the others.
    ///
    /// # Panics
    /// When its name or table is already taken (a programming error).
    pub fn with(mut self, entry: Entry) -> Registry {
        assert!(
            self.specs()
                .all(|s| s.name != entry.spec.name && s.table != entry.spec.table),
            "component {} ([{}]) is registered twice",
            entry.spec.name,
            entry.spec.table
        );
        self.entries.push(entry);
        self
    }

    pub fn specs(&self) -> impl Iterator<Item = &Spec> {
        self.entries.iter().map(|e| &e.spec)
    }

    /// `manifest.json`'s JSON Schema, every registered stage's section in it.
    pub fn manifest_schema(&self) -> schemars::Schema {
        manifest_schema(&self.sections())
    }

    fn sections(&self) -> Vec<(&'static [&'static str], ManifestSchema)> {
        self.entries
            .iter()
            .map(|e| (e.spec.manifest, e.manifest_schema))
            .collect()
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
        let (effective, redacted, build, components) = {
            let doc = Document::parse(&file, &layout)?;
            // Each table is checked whatever the others hold, so one run
            // names every mistake of the file.
            let mut errors = Errors::default();
            let build = errors.take(doc.build_knobs());
            let components: Vec<_> = self
                .entries
                .iter()
                .filter_map(|e| {
                    let c = errors.take((e.configure)(&doc))?;
                    debug_assert_eq!(c.spec(), &e.spec, "an entry's spec is its stage's");
                    Some(c)
                })
                .collect();
            errors.finish()?;
            let build = build.expect("no error, so [build] was read");
            (doc.effective(), doc.redacted_text(), build, components)
        };
        Ok(Stack {
            file,
            effective,
            redacted,
            build,
            components,
            sections: self.sections(),
        })
    }
}

/// The manifest's schema with these sections (their schemas made first,
/// with the generator the manifest's is made with).
fn manifest_schema(sections: &[(&'static [&'static str], ManifestSchema)]) -> schemars::Schema {
    let mut generator = crate::schema::generator();
    let sections = sections
        .iter()
        .map(|(key, schema)| (*key, schema(&mut generator)))
        .collect();
    crate::release::manifest::schema(&mut generator, sections)
}

/// A pin file validated against the registry: its build knobs and every
/// component configured (pinned or not).
pub struct Stack {
    pub file: PinFile,
    /// The file with every knob filled in (`snp-build config`).
    pub effective: toml::Table,
    /// The file as written, its URLs' credentials replaced by `***`.
    pub redacted: String,
    pub build: BuildKnobs,
    components: Vec<Box<dyn Component>>,
    /// Each stage's manifest key and section schema (the registry's).
    sections: Vec<(&'static [&'static str], ManifestSchema)>,
}

impl Stack {
    /// Every component, in build order.
    pub fn components(&self) -> impl Iterator<Item = &dyn Component> {
        self.components.iter().map(|c| c.as_ref())
    }

    pub fn get(&self, name: &str) -> Option<&dyn Component> {
        self.components().find(|c| c.spec().name == name)
    }

    /// `manifest.json`'s JSON Schema (as [`Registry::manifest_schema`]).
    pub fn manifest_schema(&self) -> schemars::Schema {
        manifest_schema(&self.sections)
    }

    /// Every stage name, in build order.
    pub fn names(&self) -> Vec<&'static str> {
        self.components().map(|c| c.spec().name).collect()
    }

    /// The components a command works on: those `selection` names (each
    /// must be pinned), or, when it names none, every one this file pins.
    pub fn select(&self, selection: &Selection) -> Result<Vec<&dyn Component>, ConfigError> {
        let Selection::Named(names) = selection else {
            let pinned: Vec<&dyn Component> =
                self.components().filter(|c| c.source().is_some()).collect();
            if pinned.is_empty() {
                return Err(ConfigError::whole_file(
                    self.file.origin.display_name(),
                    "",
                    "the pin file pins no source: there is nothing to build",
                    format!(
                        "add one of the tables {} (`snp-build init` writes AMD's pins)",
                        self.tables()
                    ),
                ));
            }
            return Ok(pinned);
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

    /// `[a]`, `[b]`, ...: every component's table.
    fn tables(&self) -> String {
        self.components()
            .map(|c| format!("[{}]", c.spec().table))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What a build (or its plan) works on: [`Stack::select`], a whole
    /// release's sources when `package` ([`Stack::check_release`]), and each
    /// component's own request checks (files the pin file names, such as a
    /// kernel's base config and fragments), all before anything is fetched.
    pub fn request(
        &self,
        selection: &Selection,
        package: bool,
    ) -> anyhow::Result<Vec<&dyn Component>> {
        let components = self.select(selection)?;
        if package {
            self.check_release(selection)?;
        }
        for c in &components {
            c.check_request()?;
        }
        Ok(components)
    }

    /// A release of everything (`--package` naming no component) needs
    /// every component pinned; naming components packages just those, as
    /// build.sh does.
    pub fn check_release(&self, selection: &Selection) -> Result<(), ConfigError> {
        if *selection != Selection::All {
            return Ok(());
        }
        let missing: Vec<String> = self
            .components()
            .filter(|c| c.source().is_none())
            .map(|c| format!("[{}]", c.spec().table))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ConfigError::whole_file(
            self.file.origin.display_name(),
            "",
            format!(
                "--package makes a whole release, but the pin file does not pin {}",
                missing.join(", ")
            ),
            "pin them, or name what to build and package, e.g. `snp-build qemu --package`",
        ))
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
        let asked: Vec<&str> = words.iter().map(String::as_str).collect();
        let named: Vec<&'static str> = registry
            .specs()
            .filter(|s| {
                let table: Vec<&str> = s.table.split('.').collect();
                table == asked || asked == [s.group()]
            })
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
pub fn choices(registry: &Registry) -> Vec<String> {
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
        assert!(Selection::parse(&words("kernel.host"), &r).is_err());
        let e = Selection::parse(&words("firmware"), &r).unwrap_err();
        assert!(
            e.help
                .unwrap()
                .contains("qemu, ovmf, kernel, kernel guest, kernel host")
        );
    }

    /// The table at the top of `fingerprint.rs` is the contract: it must
    /// list exactly the inputs each component it has a column for records
    /// (today: all four standard ones).
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
            cache: None,
        };
        let facts = SourceFacts {
            sha: "0".repeat(40),
            series_hash: String::new(),
            submodules: BTreeMap::new(),
            // A dirty tree, so its input is recorded too.
            dirty: Some("0".repeat(64)),
        };
        let mut versions = ToolVersions::load(&env.work);
        assert_eq!(documented.len(), 4, "{documented:?}");
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
            // A component without a column documents its inputs in its own
            // `Inputs` struct; those with one must match it.
            let Some(documented) = documented.get(c.spec().name).cloned() else {
                continue;
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

    // --- pin files configured against the standard registry (ported from
    // the tests of the old config and preflight modules)

    use std::path::Path;

    use crate::config::{Origin, Rev};
    use crate::host::PackageFormat;
    use crate::stage::kernel::base::BaseConfig;
    use crate::stage::kernel::{Kernel, KernelStage};
    use crate::stage::ovmf::Ovmf;
    use crate::stage::qemu::Qemu;
    use crate::tools::Requirement;

    fn file(text: &str) -> PinFile {
        PinFile::new(text.into(), Origin::File("p.toml".into()), "/d".into())
    }

    /// Parses `text` and hands its document to `f`.
    fn with_doc<T>(text: &str, f: impl FnOnce(&Document<'_>) -> T) -> T {
        let pins = file(text);
        let layout = Registry::standard().layout();
        let doc = Document::parse(&pins, &layout).unwrap();
        f(&doc)
    }

    const PINS: &str = "[kernel]\nbase-config = \"tinyconfig\"\n\
        [kernel.host]\nurl = \"file:///u\"\nbranch = \"b\"\n\
        [kernel.guest]\nurl = \"file:///u\"\nbranch = \"b\"\n\
        [qemu]\nurl = \"file:///u\"\nbranch = \"b\"\n\
        [ovmf]\nurl = \"file:///u\"\nbranch = \"b\"\n";

    fn names(reqs: &[Requirement]) -> Vec<String> {
        reqs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn embedded_default_pins_amds_trees_with_build_sh_knobs() {
        let stack = Registry::standard().configure(PinFile::embedded()).unwrap();
        assert_eq!(
            stack.components().filter(|c| c.source().is_some()).count(),
            4
        );
        let host = stack.get("kernel-host").unwrap().source().unwrap();
        assert_eq!(host.url.redacted(), "https://github.com/AMDESE/linux.git");
        assert_eq!(
            host.rev,
            Rev::Branch {
                name: "snp-host-latest".into()
            }
        );
        assert!(stack.get("ovmf").unwrap().source().unwrap().submodules);
        let qemu = stack.get("qemu").unwrap().source().unwrap();
        assert!(!qemu.submodules);
        assert_eq!(qemu.patches, Path::new("patches/qemu"));
        with_doc(crate::config::EMBEDDED, |doc| {
            assert_eq!(
                Qemu::configure(doc).unwrap().knobs.target_list,
                ["x86_64-softmmu"]
            );
            assert_eq!(
                Ovmf::configure(doc).unwrap().knobs.platform,
                "OvmfPkg/OvmfPkgX64.dsc"
            );
            let k = KernelStage::configure(doc, Kernel::Host).unwrap().knobs;
            assert_eq!(k.base_config.base, BaseConfig::Defconfig);
            assert!(k.edits.enable.contains(&"KVM_AMD_SEV".to_string()));
        });
    }

    #[test]
    fn embedded_default_lists_the_real_trees_tools() {
        with_doc(crate::config::EMBEDDED, |doc| {
            let ovmf = names(&Ovmf::configure(doc).unwrap().knobs.tools);
            assert!(ovmf.contains(&"nasm >= 2.15.01".to_string()), "{ovmf:?}");
            assert!(ovmf.contains(&"iasl".to_string()), "{ovmf:?}");
            let qemu = names(&Qemu::configure(doc).unwrap().knobs.tools);
            for t in ["ninja", "meson", "python3-venv", "slirp", "fdt"] {
                assert!(qemu.contains(&t.to_string()), "{t} not in {qemu:?}");
            }
        });
    }

    #[test]
    fn effective_config_round_trips() {
        let partial = "[qemu]\nurl = \"file:///x/qemu.git\"\ntag = \"v9.1.0\"\n";
        let first = Registry::standard().configure(file(partial)).unwrap();
        assert_eq!(
            first.components().filter(|c| c.source().is_some()).count(),
            1
        );
        let text = toml::to_string_pretty(&first.effective).unwrap();
        let again = Registry::standard().configure(file(&text)).unwrap();
        assert_eq!(again.effective, first.effective);
        for name in first.names() {
            assert_eq!(
                again.get(name).unwrap().source(),
                first.get(name).unwrap().source()
            );
        }
        assert_eq!(again.build, first.build);
        with_doc(&text, |doc| {
            assert_eq!(
                Qemu::configure(doc).unwrap().knobs.target_list,
                ["x86_64-softmmu"]
            );
        });
    }

    #[test]
    fn tool_lists_default_from_the_embedded_file_and_refuse_unknown_names() {
        let text = "[ovmf]\nurl = \"file:///u\"\nbranch = \"b\"\ntools = [\"make\"]\n";
        with_doc(text, |doc| {
            assert_eq!(Ovmf::configure(doc).unwrap().knobs.tools.len(), 1);
            let embedded = with_doc(crate::config::EMBEDDED, |d| Qemu::configure(d).unwrap());
            assert_eq!(
                Qemu::configure(doc).unwrap().knobs.tools,
                embedded.knobs.tools
            );
        });
        let e = Registry::standard()
            .configure(file("[kernel]\ntools = [\"gcc\",\n  \"iasll\"]\n"))
            .err()
            .unwrap();
        assert_eq!((e.line, e.column, e.key.as_str()), (3, 3, "kernel.tools"));
        assert!(e.message.contains("unknown tool `iasll`"), "{e}");
        assert!(e.help.as_deref().unwrap().contains("iasl"), "{e}");
        let e = Registry::standard()
            .configure(file(
                "[kernel]\nbtf-tools = [\"pahole\", \"pahole >= 1.16\"]\n",
            ))
            .err()
            .unwrap();
        assert!(e.message.contains("listed twice"), "{e}");
    }

    #[test]
    fn missing_source_names_the_table() {
        let stack = Registry::standard()
            .configure(file("[qemu]\nurl = \"file:///u\"\nbranch = \"b\"\n"))
            .unwrap();
        let e = stack
            .select(&Selection::Named(vec!["ovmf"]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("[ovmf]"), "{e}");
    }

    #[test]
    fn a_misspelt_pin_key_is_named_not_taken_for_a_missing_url() {
        let e = Registry::standard()
            .configure(file("[ovmf]\nurlx = \"u\"\nbranch = \"b\"\n"))
            .err()
            .unwrap();
        assert_eq!((e.line, e.key.as_str()), (2, "ovmf.urlx"), "{e}");
        assert!(e.message.contains("expected one of `url`"), "{e}");
    }

    fn kernel_tools(text: &str, format: PackageFormat) -> Vec<String> {
        with_doc(text, |doc| {
            names(&Stage::tools(
                &KernelStage::configure(doc, Kernel::Host).unwrap(),
                format,
            ))
        })
    }

    use crate::stage::Stage;

    #[test]
    fn kernel_packaging_tools_follow_the_package_format() {
        let deb = kernel_tools(PINS, PackageFormat::Deb);
        let rpm = kernel_tools(PINS, PackageFormat::Rpm);
        assert!(deb.contains(&"dpkg-dev".into()) && !deb.contains(&"rpm-build".into()));
        assert!(rpm.contains(&"rpm-build".into()) && !rpm.contains(&"dpkg-dev".into()));
    }

    #[test]
    fn pahole_only_when_the_config_enables_btf() {
        let has_pahole = |text: &str| {
            kernel_tools(text, PackageFormat::Deb).contains(&"pahole >= 1.16".to_string())
        };
        assert!(!has_pahole(PINS));
        let enabled = PINS.replace(
            "base-config = \"tinyconfig\"\n",
            "base-config = \"tinyconfig\"\nenable = [\"DEBUG_INFO_BTF\"]\n",
        );
        assert!(has_pahole(&enabled));

        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("distro.config");
        std::fs::write(&base, "CONFIG_64BIT=y\nCONFIG_DEBUG_INFO_BTF=y\n").unwrap();
        let from_file = PINS.replace("tinyconfig", &base.display().to_string());
        assert!(has_pahole(&from_file));
        let disabled = from_file.replace(
            "[kernel.host]",
            "disable = [\"DEBUG_INFO_BTF\"]\n[kernel.host]",
        );
        assert!(!has_pahole(&disabled));
    }

    #[test]
    fn fedora_hosts_get_a_dnf_line_with_fedora_names() {
        use crate::host::Distro;
        use crate::host::preflight::{Env, check_build};
        use crate::tools::probe::ProbeEnv;

        let dir = tempfile::tempdir().unwrap();
        let os = dir.path().join("os-release");
        std::fs::write(&os, "ID=fedora\nVERSION_ID=40\n").unwrap();
        let env = Env {
            os_release: os.clone(),
            probe: ProbeEnv {
                path: vec![dir.path().join("empty")],
                include_dirs: vec![],
                pkg_config_dirs: vec![],
            },
        };
        let stack = Registry::standard().configure(file(PINS)).unwrap();
        let format = crate::host::package_format(PackageFormat::Auto, &os);
        let needs = [stack.get("ovmf").unwrap().needs(format)];
        let r = check_build(&needs, format, dir.path(), &env);
        assert!(!r.ready);
        assert_eq!(r.distro, Distro::Fedora);
        assert_eq!(r.package_format, PackageFormat::Rpm);
        let line = r.install.unwrap();
        assert!(line.starts_with("dnf install -y "), "{line}");
        assert!(line.contains("nasm acpica-tools"), "{line}");
        assert!(
            line.contains("gcc-c++") && line.contains("libuuid-devel"),
            "{line}"
        );
    }

    #[test]
    fn missing_running_config_blocks_with_its_help() {
        use crate::host::doctor::Status;

        let checks = |text: &str, name: &str| {
            let stack = Registry::standard().configure(file(text)).unwrap();
            stack.get(name).unwrap().checks()
        };
        let check = checks(&PINS.replace("tinyconfig", "running"), "kernel-host").remove(0);
        // CI machines and containers have no /boot/config-*; hosts do.
        if check.status == Status::Missing {
            assert!(check.found.contains("/boot/config-"), "{check:?}");
            assert!(check.help.unwrap().contains("tinyconfig"));
        }
        let check = checks(PINS, "kernel-guest").remove(0);
        assert_eq!(check.status, Status::Ok);
        assert_eq!(check.found, "make tinyconfig");
        assert!(checks(PINS, "qemu").is_empty());
    }
}
