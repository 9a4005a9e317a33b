//! QEMU: `configure --target-list=... --prefix=/usr/local` plus the pin
//! file's extra arguments, `make` of the targets `make install` installs,
//! meson's install into a staging `DESTDIR`, the staged `usr/local/`
//! copied into `--install`, then a check that the installed
//! `qemu-system-x86_64 --version` runs.
//!
//! Only shipped work: QEMU's default target also compiles and links the
//! qtest and unit-test programs (on Debian's QEMU 7.2, 978 of its 2,561
//! ninja steps), which no release ships. Meson lists the installed targets
//! in `build/meson-info/intro-targets.json`; the stage makes just those and
//! then runs what QEMU's `make install` runs after its default target
//! (`meson install --no-rebuild`), so the installed tree is the same. A
//! tree without that file (QEMU before 5.2) gets `make` and `make install`.
//!
//! QEMU's make drives ninja, which (before 1.13) ignores make's
//! jobserver: the stage passes the build's `-jN`, and its `gcc` wrapper
//! (first on `PATH`, `CC=gcc`) makes each compile take a job token.
//!
//! | `[qemu]` knob | meaning |
//! |---|---|
//! | `target-list` | `configure --target-list` (build.sh: `x86_64-softmmu`) |
//! | `configure-args` | extra `configure` arguments, verbatim (no shell) |
//! | `tools` | the host tools it needs |
//!
//! Work-dir products: `qemu/configured-with` (the last configure command,
//! so configure reruns only when it changed) and `qemu/destdir/` (the
//! `make install` staging). Disk estimate: 3 GiB (a checkout and ~2,700
//! objects for x86_64-softmmu).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::component::{BuildEnv, Common, Entry, Job, PREFIX, SourceFacts, Spec, Stage};
use super::wrappers::Wrappers;
use crate::config::{ConfigError, Document, Source, both};
use crate::exec::Cmd;
use crate::hash::digest;
use crate::host::PackageFormat;
use crate::release;
use crate::tools::Requirement;
use crate::workdir::StageDir;

const SPEC: Spec = Spec {
    name: "qemu",
    table: "qemu",
    shared_knobs: None,
    store: "qemu",
    manifest: &["qemu"],
    launch_role: Some(crate::snp_support::Role::Qemu),
};

const CONFIGURED_WITH: &str = "configured-with";
const DESTDIR: &str = "destdir";

/// Its registry entry.
pub fn entry() -> Entry {
    Entry::new::<Qemu>(SPEC, Box::new(|doc| Ok(Box::new(Qemu::configure(doc)?))))
}

/// `[qemu]`'s knobs as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Table {
    target_list: Option<Spanned<Vec<String>>>,
    configure_args: Option<Vec<String>>,
    tools: Option<Vec<Spanned<String>>>,
}

/// `[qemu]`'s knobs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knobs {
    pub target_list: Vec<String>,
    pub configure_args: Vec<String>,
    pub tools: Vec<Requirement>,
}

/// The QEMU component.
#[derive(Debug)]
pub struct Qemu {
    source: Option<Source>,
    pub knobs: Knobs,
}

impl Qemu {
    pub fn configure(doc: &Document<'_>) -> Result<Qemu, ConfigError> {
        // Knobs first: a misspelt key is named as such, not as a missing pin.
        let t: Table = doc.knobs(SPEC.table)?;
        let (source, knobs) = both(doc.source(SPEC.source_spec()), Self::knobs(doc, &t))?;
        Ok(Qemu { source, knobs })
    }

    fn knobs(doc: &Document<'_>, t: &Table) -> Result<Knobs, ConfigError> {
        let targets = doc.knob(&t.target_list, "qemu.target-list")?;
        if targets.get_ref().is_empty() || targets.get_ref().iter().any(|s| s.trim().is_empty()) {
            return Err(doc.error(
                Some(targets.span()),
                "qemu.target-list",
                "the target list is empty or has an empty entry",
                "build.sh builds [\"x86_64-softmmu\"]",
            ));
        }
        Ok(Knobs {
            target_list: targets.get_ref().clone(),
            configure_args: doc.knob(&t.configure_args, "qemu.configure-args")?.clone(),
            tools: doc.requirements(&t.tools, "qemu.tools")?,
        })
    }
}

/// QEMU's fingerprint (see the table in `fingerprint.rs`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Inputs {
    #[serde(flatten)]
    common: Common,
    target_list: String,
    configure_args: String,
    compiler_launcher: String,
    install: String,
}

/// What the QEMU stage made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    /// The installed `qemu-system-x86_64`.
    pub binary: PathBuf,
    /// Its `--version` line.
    pub version: String,
    /// The install prefix.
    pub install: PathBuf,
    /// Every file installed under the prefix.
    pub installed: Vec<PathBuf>,
}

/// The manifest's `qemu` section.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "QemuSection")]
pub struct Manifest {
    /// `qemu-system-x86_64 --version`'s version.
    pub version: String,
}

impl Stage for Qemu {
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

    /// Debian's QEMU 7.2 took 401 s cold in `cargo xtask e2e-real` (2
    /// cores): the longest stage on real trees.
    fn time_estimate_s(&self) -> f64 {
        400.0
    }

    fn inputs(&self, common: Common, env: &BuildEnv, _facts: &SourceFacts) -> Inputs {
        Inputs {
            common,
            target_list: self.knobs.target_list.join(","),
            configure_args: digest(&self.knobs.configure_args),
            compiler_launcher: env.launcher.clone().unwrap_or_default(),
            install: env.install.display().to_string(),
        }
    }

    fn build(&self, job: &Job<'_>) -> anyhow::Result<Outputs> {
        let (env, run, jobs) = (job.env, job.run, job.jobs);
        let tree = &job.source.tree;
        let knobs = &self.knobs;
        // A fixed prefix (QEMU is relocatable: it finds its data beside
        // its binary), and no build path in the objects: the same pins give
        // the same binary in any work dir, for any --install.
        let mut configure = Cmd::new(tree.join("configure"), tree)
            .arg(format!("--target-list={}", knobs.target_list.join(",")))
            .arg(format!("--prefix={PREFIX}"))
            .arg(format!(
                "--extra-cflags={}",
                super::wrappers::prefix_map(tree)
            ))
            .args(&knobs.configure_args);
        // QEMU's configure reads $CC into meson's compiler list. `gcc` (not
        // QEMU's default `cc`) is found on PATH at each compile, where the
        // stage's wrapper is: it takes a job token, then runs the compiler
        // launcher, if any, and gcc (see `Jobs::non_client`).
        configure = configure.env("CC", "gcc");
        let wrappers = Wrappers::install(&job.dir, tree, &[])
            .context("qemu: writing the build wrappers")?
            .launcher(env.launcher.as_deref());
        // QEMU's configure starts a fresh build directory, so it runs only when
        // its command changed (or --clean): a new SHA or patch then rebuilds
        // incrementally, and QEMU's own Makefile reruns configure when the
        // configure script itself changed.
        run.phase("configure");
        let marker = job.dir.product(CONFIGURED_WITH);
        let configured = format!("{}\n{:?}\n", configure.display(), configure.env);
        let previous = std::fs::read_to_string(&marker).unwrap_or_default();
        if env.clean || previous != configured || !tree.join("build/config-host.mak").exists() {
            let _ = std::fs::remove_file(&marker);
            // The wrappers' PATH is not part of the marker: a caller's
            // different PATH must not cost a full rebuild.
            run.run(&wrappers.apply(configure))?;
            crate::fsutil::write_atomic(&marker, configured.as_bytes())?;
        } else {
            run.note("configure: same command as the last build, not rerun (incremental build)");
        }
        // Only what `make install` installs: QEMU's default target also
        // compiles and links the qtest programs, which no release ships.
        let build = tree.join("build");
        // meson's introspection describes the tree configure last saw: a new
        // SHA may add or drop installed targets, so ninja regenerates it
        // (meson's own rule, a no-op when no meson.build changed) first.
        if build.join("build.ninja").exists() {
            run.run(
                &wrappers.apply(
                    configured_command(&build, "NINJA", "ninja")
                        .arg("-C")
                        .arg(&build)
                        .arg("build.ninja"),
                ),
            )?;
        }
        let shipped = shipped_targets(&build)?;
        match &shipped {
            Some(targets) => run.note(&format!(
                "building the {} installed targets only (meson-info/intro-targets.json): {}",
                targets.len(),
                targets.join(" ")
            )),
            None => run.note("no meson-info/intro-targets.json: building QEMU's default target"),
        }
        // ninja (before 1.13) is no jobserver client: make -jN passes the
        // build's -j on to it, and each compile takes a job token.
        run.phase("compile");
        let make = Cmd::new("make", tree)
            .arg(format!("-j{}", jobs.width))
            .args(shipped.iter().flatten());
        run.run(&jobs.non_client(wrappers.apply(make)))?;
        run.phase("package");
        // Installed through DESTDIR, then copied into the prefix: the stage
        // knows exactly which files are its outputs.
        let destdir = job.dir.product(DESTDIR);
        if destdir.exists() {
            std::fs::remove_dir_all(&destdir)
                .with_context(|| format!("removing {}", destdir.display()))?;
        }
        let install = match shipped {
            // What QEMU's `make install` runs once its default target is
            // built (build.ninja's meson-internal__install), without
            // building that target.
            Some(_) => configured_command(&build, "MESON", "meson")
                .args(["install", "--no-rebuild", "--destdir"])
                .arg(&destdir),
            None => Cmd::new("make", tree)
                .arg("install")
                .arg(format!("DESTDIR={}", destdir.display())),
        };
        run.run(&install)?;
        let staged = destdir.join(PREFIX.trim_start_matches('/'));
        let mut installed = Vec::new();
        copy_tree(&staged, &env.install, &mut installed).with_context(|| {
            format!(
                "installing {} into {}",
                staged.display(),
                env.install.display()
            )
        })?;
        installed.sort();

        let binary = env.install.join("bin/qemu-system-x86_64");
        let version = run
            .capture(&Cmd::new(&binary, tree).arg("--version"))
            .map_err(|e| {
                anyhow::anyhow!("the installed {} does not run: {e:#}", binary.display())
            })?;
        Ok(Outputs {
            binary,
            version: version.lines().next().unwrap_or("").trim().to_string(),
            install: env.install.clone(),
            installed,
        })
    }

    fn output_files(&self, outputs: &Outputs) -> Vec<PathBuf> {
        outputs.installed.clone()
    }

    fn release_files(
        &self,
        outputs: &Outputs,
        env: &BuildEnv,
    ) -> anyhow::Result<Vec<release::ReleaseFile>> {
        release::ReleaseFile::all_installed(&outputs.installed, &env.install)
    }

    fn manifest(&self, outputs: &Outputs) -> Manifest {
        Manifest {
            version: outputs.version.clone(),
        }
    }

    fn launch_version(&self, outputs: &Outputs) -> Option<String> {
        Some(outputs.version.clone())
    }

    fn products(&self, dir: &StageDir) -> Vec<PathBuf> {
        vec![
            dir.product(CONFIGURED_WITH),
            dir.product(DESTDIR),
            dir.product(super::wrappers::DIR),
        ]
    }
}

/// The ninja targets `make install` installs (meson's installed build
/// targets, as paths under `build`), or `None` when the tree has no meson
/// introspection (a QEMU before 5.2) or it names another build directory
/// (a moved work dir): then the whole default target is built.
fn shipped_targets(build: &Path) -> anyhow::Result<Option<Vec<String>>> {
    #[derive(Deserialize)]
    struct Target {
        filename: Vec<PathBuf>,
        #[serde(default)]
        installed: bool,
    }
    let path = build.join("meson-info/intro-targets.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let targets: Vec<Target> =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let roots = [build.to_path_buf(), std::fs::canonicalize(build)?];
    let mut shipped = Vec::new();
    for file in targets
        .iter()
        .filter(|t| t.installed)
        .flat_map(|t| &t.filename)
    {
        match roots.iter().find_map(|r| file.strip_prefix(r).ok()) {
            Some(rel) => shipped.push(rel.to_string_lossy().into_owned()),
            None => return Ok(None),
        }
    }
    shipped.sort();
    shipped.dedup();
    Ok((!shipped.is_empty()).then_some(shipped))
}

/// A tool QEMU's configure chose, as `config-host.mak` names it (`MESON=`:
/// the system's meson, QEMU 8.2's own in `build/pyvenv`, or before 8.1 a
/// command line such as `python3 -B .../meson.py`; `NINJA=`), split into
/// words; else `fallback` from PATH. Run in `build`.
fn configured_command(build: &Path, var: &str, fallback: &str) -> Cmd {
    let prefix = format!("{var}=");
    let words = std::fs::read_to_string(build.join("config-host.mak"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()).and_then(shlex::split))
        })
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| vec![fallback.to_string()]);
    Cmd::new(&words[0], build).args(&words[1..])
}

/// Copies every file under `from` to the same place under `to`.
fn copy_tree(from: &Path, to: &Path, copied: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in walkdir::WalkDir::new(from).sort_by_file_name() {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let dst = to.join(entry.path().strip_prefix(from)?);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dst).with_context(|| format!("creating {}", dst.display()))?;
        } else {
            // Replace rather than write through: a running QEMU keeps its binary.
            let _ = std::fs::remove_file(&dst);
            std::fs::copy(entry.path(), &dst).with_context(|| {
                format!("copying {} to {}", entry.path().display(), dst.display())
            })?;
            copied.push(dst);
        }
    }
    Ok(())
}
