//! OVMF (edk2): submodules present, `make -C BaseTools`, `edksetup.sh
//! --reconfig` sourced, then edk2's `build` with the platform, arch,
//! target, toolchain, defines and arguments from the pin file, and the
//! configured firmware files copied into `<install>/share/qemu`.
//!
//! edksetup.sh must be sourced by bash: that is done by a fixed script
//! (below) that takes the tree and `build`'s arguments as positional
//! parameters, so no configuration value is ever parsed by a shell.
//! `build -n` is not a jobserver client: it gets the build's `-j` as `-n`,
//! and each compile takes a job token in the `gcc` wrapper.
//!
//! No build path reaches the firmware. edk2 records two: every `__FILE__`
//! of its `ASSERT`s and `DEBUG`s (it compiles by absolute path), and each
//! module's input path, which GenFw writes into the image's CodeView debug
//! entry. Its tools_def finds `gcc` and `GenFw` on `PATH`, so the script
//! puts `<work>/ovmf/wrappers/` first: a `gcc` that adds
//! `-ffile-prefix-map=<tree>=.`, and a `GenFw` that hands the real one the
//! workspace's paths relative to its working directory (the module names
//! stay in OVMF's debug log). The tree is not edited.
//!
//! | `[ovmf]` knob | meaning |
//! |---|---|
//! | `platform` | the `.dsc` inside the tree (`OvmfPkg/OvmfPkgX64.dsc`, or `OvmfPkg/AmdSev/AmdSevX64.dsc`, which gets its empty `grub.efi`) |
//! | `arch`, `build-target` | `build -a`, `-b` |
//! | `toolchain` | `build -t`; `auto`: GCC5, or GCC4x with gcc 4 (as build.sh) |
//! | `defines`, `build-args` | `-D` defines and extra `build` arguments |
//! | `jobs` | `build -n`; 0: the build's `-j` (each compile still takes a job token) |
//! | `outputs` | files copied from the platform's FV directory |
//! | `extra-platforms` | more platforms built from the same tree, each `{ platform = DSC, outputs = { FV_FILE = INSTALLED_NAME } }`: e.g. `AmdSevX64.dsc`'s `OVMF.fd` installed as `OVMF.amdsev.fd` beside the general `OVMF.fd` |
//! | `tools` | the host tools it needs |
//!
//! Its only work-dir product is `wrappers/`; the firmware goes to the
//! install prefix. Disk estimate: 3 GiB (edk2 with submodules and one
//! platform build).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::component::{BuildEnv, Common, Entry, Job, SourceFacts, Spec, Stage};
use super::wrappers::Wrappers;
use crate::config::{ConfigError, Document, Source, both};
use crate::exec::Cmd;
use crate::hash::digest;
use crate::host::PackageFormat;
use crate::release;
use crate::tools::{Requirement, version_args, version_in};
use crate::workdir::StageDir;

const SPEC: Spec = Spec {
    name: "ovmf",
    table: "ovmf",
    shared_knobs: None,
    store: "ovmf",
    manifest: &["ovmf"],
    launch_role: None,
};

/// Its registry entry.
pub fn entry() -> Entry {
    Entry::new::<Ovmf>(SPEC, Box::new(|doc| Ok(Box::new(Ovmf::configure(doc)?))))
}

/// `[ovmf]`'s knobs as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Table {
    platform: Option<Spanned<String>>,
    arch: Option<Spanned<String>>,
    build_target: Option<Spanned<String>>,
    toolchain: Option<Spanned<String>>,
    defines: Option<Spanned<Vec<String>>>,
    build_args: Option<Vec<String>>,
    jobs: Option<u32>,
    outputs: Option<Spanned<Vec<String>>>,
    extra_platforms: Option<Spanned<Vec<ExtraTable>>>,
    tools: Option<Vec<Spanned<String>>>,
}

/// One of `extra-platforms` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtraTable {
    platform: String,
    outputs: std::collections::BTreeMap<String, String>,
}

/// A platform built after the main one: its `.dsc` and which of its FV
/// files are installed under which names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExtraPlatform {
    pub platform: String,
    /// FV file name -> installed name (`OVMF.fd` -> `OVMF.amdsev.fd`).
    pub outputs: std::collections::BTreeMap<String, String>,
}

/// `[ovmf]`'s knobs, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Knobs {
    pub platform: String,
    pub arch: String,
    pub build_target: String,
    /// `None` means "auto": GCC5, or GCC4x with gcc 4.
    pub toolchain: Option<String>,
    pub defines: Vec<String>,
    pub build_args: Vec<String>,
    /// `None` means a share of the job budget.
    pub jobs: Option<u32>,
    pub outputs: Vec<String>,
    pub extra_platforms: Vec<ExtraPlatform>,
    pub tools: Vec<Requirement>,
}

/// The OVMF component.
#[derive(Debug)]
pub struct Ovmf {
    source: Option<Source>,
    pub knobs: Knobs,
}

impl Ovmf {
    pub fn configure(doc: &Document<'_>) -> Result<Ovmf, ConfigError> {
        // Knobs first: a misspelt key is named as such, not as a missing pin.
        let t: Table = doc.knobs(SPEC.table)?;
        let (source, knobs) = both(doc.source(SPEC.source_spec()), Self::knobs(doc, &t))?;
        Ok(Ovmf { source, knobs })
    }

    fn knobs(doc: &Document<'_>, t: &Table) -> Result<Knobs, ConfigError> {
        let word =
            |v: &Option<Spanned<String>>, key: &str, help: &str| -> Result<String, ConfigError> {
                let s = doc.knob(v, key)?;
                let value = s.get_ref();
                if value.is_empty()
                    || !value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(doc.error(
                        Some(s.span()),
                        key,
                        format!("{value:?} is not a valid value"),
                        help,
                    ));
                }
                Ok(value.clone())
            };

        let platform = doc.knob(&t.platform, "ovmf.platform")?;
        let p = platform.get_ref();
        let dsc_help = "give a .dsc path relative to the edk2 tree, e.g. \"OvmfPkg/OvmfPkgX64.dsc\" or \"OvmfPkg/AmdSev/AmdSevX64.dsc\"";
        let is_dsc = |p: &str| {
            p.ends_with(".dsc") && !p.starts_with('/') && !p.split('/').any(|c| c == "..")
        };
        if !is_dsc(p) {
            return Err(doc.error(
                Some(platform.span()),
                "ovmf.platform",
                format!("{p:?} is not a platform description inside the tree"),
                dsc_help,
            ));
        }
        let is_file_name = |o: &str| !(o.is_empty() || o.contains('/') || o == "." || o == "..");
        let toolchain = word(
            &t.toolchain,
            "ovmf.toolchain",
            "use \"auto\" or an edk2 toolchain tag such as \"GCC5\"",
        )?;
        let defines = doc.knob(&t.defines, "ovmf.defines")?;
        for d in defines.get_ref() {
            let name = d.split_once('=').map(|(n, _)| n).unwrap_or("");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(doc.error(
                    Some(defines.span()),
                    "ovmf.defines",
                    format!("{d:?} is not a NAME=VALUE define"),
                    "write each define as \"NAME=VALUE\", e.g. \"DEBUG_ON_SERIAL_PORT=TRUE\"",
                ));
            }
        }
        let outputs = doc.knob(&t.outputs, "ovmf.outputs")?;
        if outputs.get_ref().is_empty()
            || outputs
                .get_ref()
                .iter()
                .any(|o| o.is_empty() || o.contains('/') || o == "." || o == "..")
        {
            return Err(doc.error(
                Some(outputs.span()),
                "ovmf.outputs",
                "the output list is empty or names something that is not a file name",
                "list file names from the FV directory, e.g. [\"OVMF_CODE.fd\", \"OVMF_VARS.fd\", \"OVMF.fd\"]",
            ));
        }
        let extra = doc.knob(&t.extra_platforms, "ovmf.extra-platforms")?;
        let mut installed: Vec<&str> = outputs.get_ref().iter().map(String::as_str).collect();
        let mut extra_platforms = Vec::new();
        for e in extra.get_ref() {
            if !is_dsc(&e.platform) {
                return Err(doc.error(
                    Some(extra.span()),
                    "ovmf.extra-platforms",
                    format!(
                        "{:?} is not a platform description inside the tree",
                        e.platform
                    ),
                    dsc_help,
                ));
            }
            for (from, to) in &e.outputs {
                if !is_file_name(from) || !is_file_name(to) || installed.contains(&to.as_str()) {
                    return Err(doc.error(
                        Some(extra.span()),
                        "ovmf.extra-platforms",
                        format!("{}: {from:?} = {to:?} is not a file name, or installs over another platform's file", e.platform),
                        "map each FV file to its own installed name, e.g. outputs = { \"OVMF.fd\" = \"OVMF.amdsev.fd\" }",
                    ));
                }
                installed.push(to);
            }
            if e.outputs.is_empty() {
                return Err(doc.error(
                    Some(extra.span()),
                    "ovmf.extra-platforms",
                    format!("{} installs nothing", e.platform),
                    "give its outputs, e.g. outputs = { \"OVMF.fd\" = \"OVMF.amdsev.fd\" }",
                ));
            }
            extra_platforms.push(ExtraPlatform {
                platform: e.platform.clone(),
                outputs: e.outputs.clone(),
            });
        }
        let jobs = *doc.knob(&t.jobs, "ovmf.jobs")?;
        Ok(Knobs {
            platform: p.clone(),
            arch: word(&t.arch, "ovmf.arch", "build.sh uses \"X64\"")?,
            build_target: word(
                &t.build_target,
                "ovmf.build-target",
                "use \"DEBUG\", \"RELEASE\" or \"NOOPT\"",
            )?,
            toolchain: (toolchain != "auto").then_some(toolchain),
            defines: defines.get_ref().clone(),
            build_args: doc.knob(&t.build_args, "ovmf.build-args")?.clone(),
            jobs: (jobs != 0).then_some(jobs),
            outputs: outputs.get_ref().clone(),
            extra_platforms,
            tools: doc.requirements(&t.tools, "ovmf.tools")?,
        })
    }
}

/// OVMF's fingerprint (see the table in `fingerprint.rs`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Inputs {
    #[serde(flatten)]
    common: Common,
    submodules: String,
    platform: String,
    arch: String,
    build_target: String,
    toolchain: String,
    defines: String,
    build_args: String,
    outputs: String,
    extra_platforms: String,
    install: String,
}

/// What the OVMF stage made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    /// The edk2 toolchain tag it built with.
    pub toolchain: String,
    /// The firmware files, installed under the prefix.
    pub firmware: Vec<PathBuf>,
}

/// The manifest's `ovmf` section.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "OvmfSection")]
pub struct Manifest {
    /// The platform description built (`OvmfPkg/OvmfPkgX64.dsc`).
    pub platform: String,
    /// The edk2 toolchain tag (`GCC5`).
    pub toolchain: String,
    /// The `-D` defines given to `build`.
    pub defines: Vec<String>,
    /// The platforms built after it, and the files each installed.
    pub extra_platforms: Vec<ExtraPlatform>,
}

/// `$1` is the tree; the rest are `build`'s arguments, passed verbatim.
const EDK2_BUILD: &str = r#"set -e
cd "$1"
shift
. ./edksetup.sh --reconfig
PATH="$SNP_BUILD_WRAPPERS:$PATH"
exec build "$@"
"#;

/// `wrappers/GenFw`: edk2's GenFw with every argument under the workspace
/// made relative to the working directory (when that is inside the
/// workspace too): GenFw records its input's path in the image.
const GENFW_WRAPPER: &str = r#"#!/bin/sh
# snp-build: GenFw with the workspace's paths made relative (GenFw writes its input path into the image).
case $PWD/ in
  "$WORKSPACE"/*)
    for a do
      shift
      case $a in
        "$WORKSPACE"/*) set -- "$@" "$(realpath -s --relative-to=. "$a")" ;;
        *) set -- "$@" "$a" ;;
      esac
    done ;;
esac
exec "$EDK_TOOLS_PATH/BinWrappers/PosixLike/GenFw" "$@"
"#;

impl Stage for Ovmf {
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
        self.knobs.tools.clone()
    }

    fn disk_estimate_gib(&self) -> u64 {
        3
    }

    /// Debian's edk2 (OvmfPkgX64): 256 s cold in `cargo xtask e2e-real`.
    fn time_estimate_s(&self) -> f64 {
        250.0
    }

    fn inputs(&self, common: Common, env: &BuildEnv, facts: &SourceFacts) -> Inputs {
        let k = &self.knobs;
        Inputs {
            common,
            submodules: digest(&facts.submodules),
            platform: k.platform.clone(),
            arch: k.arch.clone(),
            build_target: k.build_target.clone(),
            toolchain: k.toolchain.clone().unwrap_or_else(|| "auto".into()),
            defines: k.defines.join(" "),
            build_args: k.build_args.join(" "),
            outputs: k.outputs.join(" "),
            extra_platforms: digest(&k.extra_platforms),
            install: env.install.display().to_string(),
        }
    }

    fn build(&self, job: &Job<'_>) -> anyhow::Result<Outputs> {
        let (env, run, jobs) = (job.env, job.run, job.jobs);
        let s = job.source;
        let tree = &s.tree;
        let knobs = &self.knobs;
        if s.submodules.is_empty() {
            // Only submodule paths left empty count: a tree may list submodules
            // in .gitmodules yet carry their contents as plain files (Debian's
            // edk2 source does).
            let empty = empty_submodule_paths(tree);
            if !empty.is_empty() {
                bail!(
                    "ovmf: {} has submodules but they are not checked out ({})\n  help: set `submodules = true` in [ovmf] (edk2 needs them)",
                    tree.display(),
                    empty.join(", ")
                );
            }
        }
        // Every platform: the main one with its outputs as named, then the
        // extra ones with theirs renamed.
        let mut platforms: Vec<(&str, Vec<(&str, &str)>)> = vec![(
            knobs.platform.as_str(),
            knobs
                .outputs
                .iter()
                .map(|o| (o.as_str(), o.as_str()))
                .collect(),
        )];
        for e in &knobs.extra_platforms {
            platforms.push((
                e.platform.as_str(),
                e.outputs
                    .iter()
                    .map(|(f, t)| (f.as_str(), t.as_str()))
                    .collect(),
            ));
        }
        let mut dscs = Vec::new();
        for (platform, _) in &platforms {
            let dsc = tree.join(platform);
            let text = std::fs::read_to_string(&dsc).with_context(|| {
                format!(
                    "ovmf: the platform {} is not in the tree (`platform` or `extra-platforms` in [ovmf])",
                    dsc.display()
                )
            })?;
            if platform.ends_with("AmdSev/AmdSevX64.dsc") {
                // AmdSevX64 embeds a grub.efi that build.sh users provide as
                // an empty file; an existing one is left alone.
                let grub = tree.join("OvmfPkg/AmdSev/Grub/grub.efi");
                if !grub.exists() {
                    std::fs::create_dir_all(grub.parent().unwrap_or(tree))?;
                    std::fs::write(&grub, b"")
                        .with_context(|| format!("creating {}", grub.display()))?;
                    run.note(&format!("created empty {}", grub.display()));
                }
            }
            dscs.push((dsc, text));
        }

        // BaseTools (edk2's host tools) and edksetup: edk2's configure.
        run.phase("configure");
        run.run(&jobs.make(tree).arg("-C").arg("BaseTools"))?;

        let toolchain = match &knobs.toolchain {
            Some(t) => t.clone(),
            None => {
                // gcc's version, asked the catalog's one way, in the log.
                let out = run.capture(&Cmd::new("gcc", tree).args(version_args("gcc")))?;
                let gcc = version_in(&out)
                    .context("ovmf: cannot read gcc's version (toolchain = \"auto\")")?;
                let tag = edk2_toolchain(&gcc);
                run.note(&format!("toolchain: {tag} (auto: gcc {gcc})"));
                tag
            }
        };
        let n = knobs.jobs.map(|j| j as usize).unwrap_or(jobs.width);
        let wrappers = Wrappers::install(&job.dir, tree, &[("GenFw", GENFW_WRAPPER)])
            .context("ovmf: writing the build wrappers")?;
        let dest = env.install.join("share/qemu");
        std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
        let mut copied = Vec::new();
        for ((platform, outputs), (dsc, dsc_text)) in platforms.iter().zip(&dscs) {
            let mut cmd = wrappers
                .apply(Cmd::new("bash", tree))
                .arg("-c")
                .arg(EDK2_BUILD)
                .arg("snp-build-edk2")
                .arg(tree.as_os_str())
                .args(&knobs.build_args);
            for d in &knobs.defines {
                cmd = cmd.arg(format!("-D{d}"));
            }
            cmd = cmd.args([
                "-n".to_string(),
                n.to_string(),
                "-t".into(),
                toolchain.clone(),
                "-a".into(),
                knobs.arch.clone(),
                "-p".into(),
                platform.to_string(),
                "-b".into(),
                knobs.build_target.clone(),
            ]);
            run.phase("compile");
            run.run(&jobs.non_client(cmd))?;
            run.phase("package");
            let fv = tree
                .join(output_directory(dsc_text, dsc)?)
                .join(format!("{}_{toolchain}", knobs.build_target))
                .join("FV");
            for (name, installed) in outputs {
                let from = fv.join(name);
                if !from.is_file() {
                    bail!(
                        "ovmf: the build did not produce {}\n  help: check `outputs` in [ovmf] against what {platform} builds (log: {})",
                        from.display(),
                        run.log_path.display()
                    );
                }
                let to = dest.join(installed);
                std::fs::copy(&from, &to)
                    .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
                run.note(&format!("installed {}", to.display()));
                copied.push(to);
            }
        }
        Ok(Outputs {
            toolchain,
            firmware: copied,
        })
    }

    fn output_files(&self, outputs: &Outputs) -> Vec<PathBuf> {
        outputs.firmware.clone()
    }

    fn release_files(
        &self,
        outputs: &Outputs,
        env: &BuildEnv,
    ) -> anyhow::Result<Vec<release::ReleaseFile>> {
        release::ReleaseFile::all_installed(&outputs.firmware, &env.install)
    }

    fn manifest(&self, outputs: &Outputs) -> Manifest {
        Manifest {
            platform: self.knobs.platform.clone(),
            toolchain: outputs.toolchain.clone(),
            defines: self.knobs.defines.clone(),
            extra_platforms: self.knobs.extra_platforms.clone(),
        }
    }

    fn products(&self, dir: &StageDir) -> Vec<PathBuf> {
        vec![dir.product(super::wrappers::DIR)]
    }
}

/// The edk2 toolchain tag for a gcc version: GCC5 for gcc 5 and later,
/// GCC4x for gcc 4.x, as build.sh.
fn edk2_toolchain(gcc_version: &str) -> String {
    let mut parts = gcc_version.trim().split('.');
    let major = parts.next().unwrap_or("");
    if major == "4" {
        format!("GCC4{}", parts.next().unwrap_or("9"))
    } else {
        "GCC5".to_string()
    }
}

/// The platform's `OUTPUT_DIRECTORY` (e.g. `Build/OvmfX64`), from its
/// `[Defines]` section.
fn output_directory(dsc: &str, path: &Path) -> anyhow::Result<PathBuf> {
    dsc.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "OUTPUT_DIRECTORY").then(|| PathBuf::from(v.trim()))
        })
        .with_context(|| {
            format!(
                "ovmf: {} has no OUTPUT_DIRECTORY in [Defines]",
                path.display()
            )
        })
}

/// The submodules of the tree (gitlinks in its index, as git itself
/// counts them) whose directory is missing or empty. Entries of
/// `.gitmodules` without a gitlink are not submodules: Debian's edk2 source
/// lists its submodules there but carries their contents as plain files
/// (and leaves the ones OVMF does not need empty).
fn empty_submodule_paths(tree: &Path) -> Vec<String> {
    let Ok(index) = git2::Repository::open(tree).and_then(|r| r.index()) else {
        return Vec::new();
    };
    index
        .iter()
        .filter(|e| e.mode == 0o160000)
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .filter(|p| {
            std::fs::read_dir(tree.join(p))
                .map(|mut d| d.next().is_none())
                .unwrap_or(true)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gitlinks_count_as_submodules() {
        let tree = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(tree.path()).unwrap();
        // As in Debian's edk2: .gitmodules names paths that are plain
        // files (vendored) or empty, with no gitlink.
        std::fs::write(
            tree.path().join(".gitmodules"),
            "[submodule \"v\"]\n\tpath = Vendored\n\turl = https://example.invalid/v\n\
             [submodule \"e\"]\n\tpath = Empty\n\turl = https://example.invalid/e\n",
        )
        .unwrap();
        std::fs::create_dir_all(tree.path().join("Vendored")).unwrap();
        std::fs::write(tree.path().join("Vendored/file.c"), "").unwrap();
        std::fs::create_dir_all(tree.path().join("Empty")).unwrap();
        assert!(empty_submodule_paths(tree.path()).is_empty());
        // A real submodule (a gitlink) left empty is reported.
        let mut index = repo.index().unwrap();
        index
            .add(&git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o160000,
                uid: 0,
                gid: 0,
                file_size: 0,
                id: git2::Oid::from_str("0123456789012345678901234567890123456789").unwrap(),
                flags: 0,
                flags_extended: 0,
                path: b"Empty".to_vec(),
            })
            .unwrap();
        index.write().unwrap();
        assert_eq!(empty_submodule_paths(tree.path()), ["Empty"]);
    }

    #[test]
    fn toolchains() {
        assert_eq!(edk2_toolchain("12"), "GCC5");
        assert_eq!(edk2_toolchain("4.8.5"), "GCC48");
        assert_eq!(edk2_toolchain("5.4.0"), "GCC5");
    }

    #[test]
    fn reads_output_directory() {
        let dsc = "[Defines]\n  PLATFORM_NAME = Ovmf\n  # OUTPUT_DIRECTORY = nope\n  OUTPUT_DIRECTORY               = Build/OvmfX64\n";
        assert_eq!(
            output_directory(dsc, Path::new("x.dsc")).unwrap(),
            PathBuf::from("Build/OvmfX64")
        );
        assert!(output_directory("[Defines]\n", Path::new("x.dsc")).is_err());
    }
}
