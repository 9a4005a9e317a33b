//! A kernel (host or guest): base config, the pin file's `scripts/config`
//! edits, `make olddefconfig`, verification that every edit survived,
//! `make`, then `bindeb-pkg` (Debian-like hosts) or `binrpm-pkg`.
//!
//! Every make gets `ARCH=x86_64` (plain `tinyconfig` is 32-bit on some
//! hosts) and, with a compiler launcher, `CC="<launcher> gcc"`.
//! Packages are collected per kernel into `<work>/kernel-<host|guest>/packages/`
//! from a place emptied before packaging (`bindeb-pkg` writes into the
//! tree's parent, `<work>/kernel-<host|guest>/`; `binrpm-pkg` into
//! `<tree>/rpmbuild/RPMS/`), so packages of earlier runs, and of the other
//! kernel, are never picked up. The final `.config` is kept as
//! `<work>/kernel-<host|guest>/config`.
//!
//! Both kernels are this one component, registered twice; their knobs are
//! the shared `[kernel]` table ([`knobs`]) and their edits and verification
//! are pure ([`kconfig`]).
//!
//! Disk estimates: a `running` or file base config (a distro config) 25
//! GiB (15-25 GB for a full distro-config kernel with debug info),
//! `defconfig` 6 GiB (a ~1.5 GB checkout plus a few GB of objects),
//! `tinyconfig` 3 GiB.

pub mod base;
pub mod kconfig;
pub mod knobs;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::component::{BuildEnv, Common, Entry, Job, Jobs, SourceFacts, Spec, Stage};
use super::wrappers::Wrappers;
use crate::config::{ConfigError, Document, Source, both};
use crate::exec::Cmd;
use crate::hash::{digest, sha256_file};
use crate::host::doctor::{Check, Status};
use crate::host::{PackageFormat, kernel_image_package};
use crate::release;
use crate::tools::Requirement;
use crate::workdir::StageDir;
use base::{BaseConfig, BaseRecord, BaseSource, FragmentRecord};
pub use kconfig::Kernel;
use kconfig::{DotConfig, KernelEdits, Verification};

const HOST: Spec = Spec {
    name: "kernel-host",
    table: "kernel.host",
    shared_knobs: Some("kernel"),
    store: "linux",
    manifest: &["kernels", "host"],
    launch_role: Some(crate::snp_support::Role::HostKernel),
};

const GUEST: Spec = Spec {
    name: "kernel-guest",
    table: "kernel.guest",
    shared_knobs: Some("kernel"),
    store: "linux",
    manifest: &["kernels", "guest"],
    launch_role: None,
};

const PACKAGES: &str = "packages";
const KEPT_CONFIG: &str = "config";
const CONFIGURED_WITH: &str = "configured-with";

/// The registry entry of one kernel.
pub fn entry(kernel: Kernel) -> Entry {
    Entry::new::<KernelStage>(
        *spec(kernel),
        Box::new(move |doc| Ok(Box::new(KernelStage::configure(doc, kernel)?))),
    )
}

/// The spec of the host or guest kernel stage.
pub fn spec(kernel: Kernel) -> &'static Spec {
    match kernel {
        Kernel::Host => &HOST,
        Kernel::Guest => &GUEST,
    }
}

/// One kernel, configured.
#[derive(Debug)]
pub struct KernelStage {
    kernel: Kernel,
    source: Option<Source>,
    pub knobs: knobs::Knobs,
}

impl KernelStage {
    pub fn configure(doc: &Document<'_>, kernel: Kernel) -> Result<KernelStage, ConfigError> {
        // Knobs first: a misspelt key is named as such, not as a missing pin.
        let shared: knobs::Shared = doc.knobs("kernel")?;
        let own: knobs::PerKernel = doc.knobs(spec(kernel).table)?;
        let (source, knobs) = both(
            doc.source(spec(kernel).source_spec()),
            knobs::validate(doc, &shared, &own, kernel),
        )?;
        Ok(KernelStage {
            kernel,
            source,
            knobs,
        })
    }

    /// Where this kernel's base config comes from on this host.
    pub fn base_source(&self) -> BaseSource {
        base::base_config_source(&self.knobs.base_config.base, &running_release())
    }

    /// Whether this kernel's config will have `DEBUG_INFO_BTF` (which runs
    /// pahole): the edits turn it on, or the base config file or a fragment
    /// has it and the edits do not turn it off. `defconfig` and
    /// `tinyconfig` leave it off.
    fn needs_btf(&self) -> bool {
        const BTF: &str = "DEBUG_INFO_BTF";
        let edits = &self.knobs.edits;
        if edits.disable.iter().any(|o| o == BTF) {
            return false;
        }
        edits.enable.iter().any(|o| o == BTF)
            || self.knobs.base_config.sets(BTF, &running_release())
    }

    /// Checks the base config file and fragments exist, before anything is
    /// fetched or built.
    fn check_base(&self) -> anyhow::Result<()> {
        Ok(self.knobs.base_config.check(&running_release())?)
    }

    /// Makes the starting `.config` in `tree`: the base, then each fragment
    /// merged ([`base::merge_fragment`]) and `make olddefconfig` (so the
    /// edits start from a config Kconfig has settled, as `merge_config.sh`
    /// leaves it).
    fn write_base(&self, job: &Job<'_>, w: &Wrappers, tree: &Path) -> anyhow::Result<BaseRecord> {
        let (env, run, jobs) = (job.env, job.run, job.jobs);
        let spec = &self.knobs.base_config;
        let dot_config = tree.join(".config");
        match self.base_source() {
            BaseSource::File(path) => {
                base::check_base_file(&path, spec.base == BaseConfig::Running)?;
                std::fs::copy(&path, &dot_config)
                    .with_context(|| format!("copying the base config {}", path.display()))?;
                run.note(&format!("base config: {}", path.display()));
            }
            BaseSource::MakeTarget(target) => run.run(&make(env, w, tree, jobs).arg(target))?,
        }
        let mut fragments = Vec::new();
        for f in &spec.fragments {
            let (text, origin) = f.text()?;
            let config = std::fs::read_to_string(&dot_config)
                .with_context(|| format!("reading {}", dot_config.display()))?;
            let merged = base::merge_fragment(&config, &text, &f.written);
            crate::fsutil::write_atomic(&dot_config, merged.as_bytes())?;
            run.note(&format!(
                "merged config fragment {}{}",
                f.written,
                match origin {
                    base::FragmentOrigin::Embedded => " (compiled-in copy)",
                    base::FragmentOrigin::File => "",
                }
            ));
            fragments.push(FragmentRecord::new(f, &text, origin));
        }
        if !fragments.is_empty() {
            run.run(&make(env, w, tree, jobs).arg("olddefconfig"))?;
        }
        Ok(BaseRecord {
            setting: spec.setting(),
            fragments,
            sha256: sha256_file(&dot_config)?,
        })
    }
}

/// A kernel's fingerprint (see the table in `fingerprint.rs`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Inputs {
    #[serde(flatten)]
    common: Common,
    base_config: String,
    edits: String,
    package_format: String,
    compiler_launcher: String,
}

/// What a kernel stage made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    pub kernel: Kernel,
    /// `make kernelrelease`.
    pub release: String,
    /// The rendered LOCALVERSION, if the edits set one.
    pub localversion: Option<String>,
    pub package_format: PackageFormat,
    /// This build's packages, in `<work>/kernel-<k>/packages/`.
    pub packages: Vec<PathBuf>,
    /// The kernel image package among them (never `-dbg`).
    pub image: PathBuf,
    /// The final `.config`, kept beside the tree.
    pub config: PathBuf,
    /// What the edits started from.
    pub base_config: BaseRecord,
    /// Every edit read back from the final `.config`.
    pub verification: Verification,
}

/// The manifest's `kernels.<host|guest>` section.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "KernelSection")]
pub struct Manifest {
    /// Its `uname -r` once booted.
    pub release: String,
    pub localversion: Option<String>,
    pub package_format: PackageFormat,
    pub base_config: BaseRecord,
    pub config_edits: KernelEdits,
    pub verification: Verification,
    /// The kernel image package's path in the release, when it has one.
    pub image: Option<String>,
}

impl Stage for KernelStage {
    type Inputs = Inputs;
    type Outputs = Outputs;
    type Manifest = Manifest;

    fn spec(&self) -> &Spec {
        spec(self.kernel)
    }

    fn source(&self) -> Option<&Source> {
        self.source.as_ref()
    }

    fn tools(&self, format: PackageFormat) -> Vec<Requirement> {
        let tools = &self.knobs.tools;
        let mut reqs = tools.common.clone();
        reqs.extend(match format {
            PackageFormat::Rpm => tools.rpm.iter().cloned(),
            _ => tools.deb.iter().cloned(),
        });
        if self.needs_btf() {
            reqs.extend(tools.btf.iter().cloned());
        }
        reqs
    }

    /// The base config source: a make target is always there; a file
    /// (including `running`'s `/boot/config-$(uname -r)`) and each
    /// fragment must exist (a default fragment always does: compiled in).
    fn checks(&self) -> Vec<Check> {
        let name = format!("{} base config", spec(self.kernel).name);
        let needed = format!("base-config = {}", self.knobs.base_config.pin_value());
        let mut found = vec![match self.base_source() {
            BaseSource::MakeTarget(t) => format!("make {t}"),
            BaseSource::File(p) => p.display().to_string(),
        }];
        found.extend(
            self.knobs
                .base_config
                .fragments
                .iter()
                .map(|f| f.written.clone()),
        );
        let check = match (self.base_source(), self.check_base()) {
            (_, Ok(())) => Check::new(name, Status::Ok, found.join(" + ")),
            (BaseSource::File(p), Err(e)) if !p.is_file() => {
                Check::new(name, Status::Missing, format!("no {}", p.display())).help(e.to_string())
            }
            (_, Err(e)) => {
                Check::new(name, Status::Missing, "a fragment is missing").help(e.to_string())
            }
        };
        vec![check.needed(needed)]
    }

    /// Debian's Linux at defconfig plus the SNP fragments: 226 s (host)
    /// and 285 s (guest) cold in `cargo xtask e2e-real`; a distribution's
    /// full config is many times that.
    fn time_estimate_s(&self) -> f64 {
        match self.knobs.base_config.base {
            BaseConfig::Running | BaseConfig::File(_) => 1800.0,
            BaseConfig::Defconfig => 250.0,
            BaseConfig::Tinyconfig => 120.0,
        }
    }

    fn disk_estimate_gib(&self) -> u64 {
        match self.knobs.base_config.base {
            BaseConfig::Running | BaseConfig::File(_) => 25,
            BaseConfig::Defconfig => 6,
            BaseConfig::Tinyconfig => 3,
        }
    }

    fn check_request(&self) -> anyhow::Result<()> {
        self.check_base()
    }

    fn inputs(&self, common: Common, env: &BuildEnv, _facts: &SourceFacts) -> Inputs {
        Inputs {
            common,
            base_config: self.knobs.base_config.input(&running_release()),
            edits: digest(&self.knobs.edits),
            package_format: format!("{:?}", env.package_format).to_lowercase(),
            compiler_launcher: env.launcher.clone().unwrap_or_default(),
        }
    }

    fn build(&self, job: &Job<'_>) -> anyhow::Result<Outputs> {
        let (env, run, jobs) = (job.env, job.run, job.jobs);
        run.phase("configure");
        let s = job.source;
        let kernel = self.kernel;
        let tree = &s.tree;
        let stage_dir = job.dir.path();
        // `{sha}` in LOCALVERSION: `-dirty` too for a dirty tree, so the
        // package's name never claims the pinned commit alone.
        let built_name = s.built_name();
        let short = built_name.as_str();
        let edits = &self.knobs.edits;
        let w = &Wrappers::install(&job.dir, tree, &[])
            .with_context(|| format!("{}: writing the build wrappers", s.source))?;

        // 0. A clean tree when the configuration changed (or --clean); else
        // kbuild rebuilds only what the new SHA or patches changed.
        std::fs::create_dir_all(stage_dir)?;
        let configured_marker = job.dir.product(CONFIGURED_WITH);
        let configured = format!(
            "{}\n{}\n",
            self.knobs.base_config.input(&running_release()),
            digest(edits)
        );
        let previous = std::fs::read_to_string(&configured_marker).unwrap_or_default();
        if env.clean || previous != configured {
            run.note(if env.clean {
                "clean build (--clean)"
            } else {
                "clean build: the base config or the edits changed"
            });
            run.run(&make(env, w, tree, jobs).arg("distclean"))?;
            let _ = std::fs::remove_file(&configured_marker);
        }

        // 1. Base config and fragments.
        let base_config = self.write_base(job, w, tree)?;

        // 2. The edits, 3. olddefconfig, 4. verification.
        let args = kconfig::scripts_config_args(edits, kernel, short)?;
        run.run(
            &Cmd::new(tree.join("scripts/config"), tree)
                .arg("--file")
                .arg(".config")
                .args(args),
        )?;
        run.run(&make(env, w, tree, jobs).arg("olddefconfig"))?;
        let final_config = DotConfig::load(&tree.join(".config"))?;
        let verification = kconfig::verify(edits, kernel, short, &final_config);
        for line in verification.report().lines() {
            run.note(line);
        }
        // Drops the pin file allows are expected: one summary line, each
        // one under -v (and all in the manifest's verification).
        let (allowed, other): (Vec<_>, Vec<_>) = verification
            .warnings
            .iter()
            .partition(|w| edits.allow_dropped.contains(&w.option));
        for w in &other {
            run.progress.warn(format!(
                "config {}: wanted {}, got {}{}",
                w.option,
                w.wanted,
                w.got,
                w.note
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ));
        }
        if !allowed.is_empty() {
            for w in &allowed {
                tracing::debug!(
                    stage = %s.source,
                    "config {}: wanted {}, got {} (allowed to be dropped)",
                    w.option,
                    w.wanted,
                    w.got
                );
            }
            run.progress.warn(format!(
                "{} config option(s) listed in allow-dropped were dropped by olddefconfig: {} (each under -v; all in manifest.json)",
                allowed.len(),
                allowed
                    .iter()
                    .map(|w| w.option.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !verification.is_ok() {
            bail!(
                "{}: the kernel config edits did not survive `make olddefconfig`\n{}",
                s.source,
                verification.report()
            );
        }
        crate::fsutil::write_atomic(&configured_marker, configured.as_bytes())?;
        let kept_config = job.dir.product(KEPT_CONFIG);
        std::fs::copy(tree.join(".config"), &kept_config)
            .with_context(|| format!("keeping the final config as {}", kept_config.display()))?;

        // 5. Build, 6. package.
        run.phase("compile");
        run.run(&make(env, w, tree, jobs))?;
        run.phase("package");
        let release = run
            .capture(&make(env, w, tree, jobs).args(["-s", "kernelrelease"]))?
            .trim()
            .to_string();
        let format = env.package_format;
        let packages_dir = job.dir.product(PACKAGES);
        clear_old_packages(stage_dir, tree, &packages_dir, format)?;
        let target = match format {
            PackageFormat::Rpm => "binrpm-pkg",
            _ => "bindeb-pkg",
        };
        run.run(&make(env, w, tree, jobs).arg(target))?;
        let packages = collect_packages(stage_dir, tree, &packages_dir, format)?;
        if packages.is_empty() {
            bail!("{}: `make {target}` produced no packages", s.source);
        }
        let image = kernel_image_package(&packages, format).with_context(|| {
            format!(
                "{}: no kernel image package among {:?}",
                s.source,
                file_names(&packages)
            )
        })?;
        for p in &packages {
            run.note(&format!("package: {}", p.display()));
        }
        Ok(Outputs {
            kernel,
            release,
            localversion: kconfig::localversion(edits, kernel, short)?,
            package_format: format,
            packages,
            image,
            config: kept_config,
            base_config,
            verification,
        })
    }

    fn output_files(&self, outputs: &Outputs) -> Vec<PathBuf> {
        let mut files = outputs.packages.clone();
        files.push(outputs.config.clone());
        files
    }

    fn release_files(
        &self,
        outputs: &Outputs,
        _env: &BuildEnv,
    ) -> anyhow::Result<Vec<release::ReleaseFile>> {
        let k = self.kernel.name();
        let mut files: Vec<release::ReleaseFile> = outputs
            .packages
            .iter()
            .map(|p| release::ReleaseFile::new(format!("linux/{k}/{}", file_name(p)), p))
            .collect();
        files.push(release::ReleaseFile::new(
            format!("kernel-config.{k}"),
            &outputs.config,
        ));
        Ok(files)
    }

    fn manifest(&self, outputs: &Outputs) -> Manifest {
        Manifest {
            release: outputs.release.clone(),
            localversion: outputs.localversion.clone(),
            package_format: outputs.package_format,
            base_config: outputs.base_config.clone(),
            config_edits: self.knobs.edits.clone(),
            verification: outputs.verification.clone(),
            image: Some(format!(
                "linux/{}/{}",
                self.kernel.name(),
                file_name(&outputs.image)
            )),
        }
    }

    fn launch_version(&self, outputs: &Outputs) -> Option<String> {
        Some(outputs.release.clone())
    }

    /// Its packages, kept config, configure marker and build wrappers, and what
    /// `bindeb-pkg` leaves beside the tree.
    fn products(&self, dir: &StageDir) -> Vec<PathBuf> {
        let mut out = vec![
            dir.product(PACKAGES),
            dir.product(super::wrappers::DIR),
            dir.product(KEPT_CONFIG),
            dir.product(CONFIGURED_WITH),
        ];
        out.extend(
            std::fs::read_dir(dir.path())
                .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.is_file() && is_packaging_leftover(p)),
        );
        out
    }
}

/// `.deb`, `.buildinfo` and `.changes`: what `make bindeb-pkg` writes
/// beside the tree.
fn is_packaging_leftover(path: &Path) -> bool {
    let name = file_name(path);
    [".deb", ".buildinfo", ".changes"]
        .iter()
        .any(|x| name.ends_with(x))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// `uname -r`, read without a subprocess.
fn running_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Every kernel `make`, with the wrappers first on `PATH`: the tree's path
/// never reaches the objects (gcc's `-ffile-prefix-map`, also for `.S`
/// files and host tools) nor the headers package's recorded command lines
/// (which `KCFLAGS` would), and the packages' changelogs carry the pinned
/// commit's date: the same pins give the same packages in any work dir.
fn make(env: &BuildEnv, w: &Wrappers, tree: &Path, jobs: Jobs) -> Cmd {
    let mut cmd = w.apply(jobs.make(tree)).arg("ARCH=x86_64");
    if let Some(l) = &env.launcher {
        cmd = cmd.arg(format!("CC={l} gcc"));
    }
    cmd
}

fn is_package(path: &Path, format: PackageFormat) -> bool {
    path.extension().is_some_and(|e| e == format.extension())
}

/// Empties every place packages land, so only this run's are collected.
fn clear_old_packages(
    stage_dir: &Path,
    tree: &Path,
    packages_dir: &Path,
    format: PackageFormat,
) -> anyhow::Result<()> {
    if packages_dir.exists() {
        std::fs::remove_dir_all(packages_dir)
            .with_context(|| format!("removing {}", packages_dir.display()))?;
    }
    match format {
        PackageFormat::Rpm => {
            let rpms = tree.join("rpmbuild/RPMS");
            if rpms.exists() {
                std::fs::remove_dir_all(&rpms)
                    .with_context(|| format!("removing {}", rpms.display()))?;
            }
        }
        _ => {
            for entry in std::fs::read_dir(stage_dir)?.flatten() {
                let p = entry.path();
                if p.is_file() && is_packaging_leftover(&p) {
                    std::fs::remove_file(&p)
                        .with_context(|| format!("removing {}", p.display()))?;
                }
            }
        }
    }
    Ok(())
}

/// Moves this run's packages into `packages_dir`; returns them sorted.
fn collect_packages(
    stage_dir: &Path,
    tree: &Path,
    packages_dir: &Path,
    format: PackageFormat,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(packages_dir)?;
    let found = match format {
        PackageFormat::Rpm => walk_files(&tree.join("rpmbuild/RPMS")),
        _ => std::fs::read_dir(stage_dir)?
            .flatten()
            .map(|e| e.path())
            .collect(),
    };
    let mut out = Vec::new();
    for p in found
        .into_iter()
        .filter(|p| p.is_file() && is_package(p, format))
    {
        let to = packages_dir.join(p.file_name().unwrap_or_default());
        std::fs::rename(&p, &to)
            .with_context(|| format!("moving {} to {}", p.display(), to.display()))?;
        out.push(to);
    }
    out.sort();
    Ok(out)
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| !e.file_type().is_dir())
        .map(walkdir::DirEntry::into_path)
        .collect()
}

fn file_names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string()
        })
        .collect()
}
