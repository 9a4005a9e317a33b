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

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

use super::{BuildEnv, Built, Jobs, short_sha};
use crate::component::SourceId;
use crate::config::{BaseConfig, Config, PackageFormat};
use crate::exec::{Cmd, StageRun};
use crate::fingerprint::{Inputs, digest, sha256_file};
use crate::kconfig::{self, BaseSource, DotConfig, Kernel};
use crate::source::Synced;

/// Tools whose versions are part of the fingerprint.
pub const TOOLS: &[&str] = &["gcc", "make"];

/// A kernel's own inputs (see the table in `fingerprint.rs`).
pub fn inputs(config: &Config, env: &BuildEnv, id: SourceId) -> Inputs {
    let kernel = Kernel::from_source(id).unwrap_or(Kernel::Host);
    Inputs::from([
        ("base-config".into(), base_input(config, kernel)),
        ("edits".into(), digest(&config.kernel.edits)),
        (
            "package-format".into(),
            format!("{:?}", env.package_format).to_lowercase(),
        ),
        (
            "compiler-launcher".into(),
            env.launcher.clone().unwrap_or_default(),
        ),
    ])
}

/// The base config as an input: its kind, and a file's content hash.
fn base_input(config: &Config, kernel: Kernel) -> String {
    match base_source(config, kernel) {
        BaseSource::MakeTarget(t) => t.to_string(),
        BaseSource::File(p) => format!(
            "{} ({})",
            p.display(),
            sha256_file(&p)
                .map(|h| h[..16].to_string())
                .unwrap_or_else(|_| "missing".into())
        ),
    }
}

pub fn build(
    config: &Config,
    env: &BuildEnv,
    s: &Synced,
    run: &StageRun<'_>,
    jobs: Jobs,
) -> anyhow::Result<Built> {
    let kernel = Kernel::from_source(s.source).context("not a kernel source")?;
    let tree = &s.tree;
    let stage_dir = env.stage_dir(s.source);
    let short = short_sha(&s.sha);
    let edits = &config.kernel.edits;

    // 0. A clean tree when the configuration changed (or --clean); else
    // kbuild rebuilds only what the new SHA or patches changed.
    std::fs::create_dir_all(&stage_dir)?;
    let configured_marker = stage_dir.join("configured-with");
    let configured = format!("{}\n{}\n", base_input(config, kernel), digest(edits));
    let previous = std::fs::read_to_string(&configured_marker).unwrap_or_default();
    if env.clean || previous != configured {
        run.note(if env.clean {
            "clean build (--clean)"
        } else {
            "clean build: the base config or the edits changed"
        });
        run.run(&make(env, tree, jobs).arg("distclean"))?;
        let _ = std::fs::remove_file(&configured_marker);
    }

    // 1. Base config.
    let base = base_source(config, kernel);
    match &base {
        BaseSource::File(path) => {
            kconfig::check_base_file(
                path,
                matches!(
                    base_setting(config, kernel),
                    crate::config::BaseConfig::Running
                ),
            )?;
            std::fs::copy(path, tree.join(".config"))
                .with_context(|| format!("copying the base config {}", path.display()))?;
            run.note(&format!("base config: {}", path.display()));
        }
        BaseSource::MakeTarget(target) => run.run(&make(env, tree, jobs).arg(*target))?,
    }

    // 2. The edits, 3. olddefconfig, 4. verification.
    let args = kconfig::scripts_config_args(edits, kernel, short)?;
    run.run(
        &Cmd::new(tree.join("scripts/config"), tree)
            .arg("--file")
            .arg(".config")
            .args(args),
    )?;
    run.run(&make(env, tree, jobs).arg("olddefconfig"))?;
    let final_config = DotConfig::load(&tree.join(".config"))?;
    let verification = kconfig::verify(edits, kernel, short, &final_config);
    for line in verification.report().lines() {
        run.note(line);
    }
    for w in &verification.warnings {
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
    if !verification.is_ok() {
        bail!(
            "{}: the kernel config edits did not survive `make olddefconfig`\n{}",
            s.source,
            verification.report()
        );
    }
    crate::fsutil::write_atomic(&configured_marker, configured.as_bytes())?;
    let kept_config = stage_dir.join("config");
    std::fs::copy(tree.join(".config"), &kept_config)
        .with_context(|| format!("keeping the final config as {}", kept_config.display()))?;

    // 5. Build, 6. package.
    run.run(&make(env, tree, jobs))?;
    let release = run
        .capture(&make(env, tree, jobs).args(["-s", "kernelrelease"]))?
        .trim()
        .to_string();
    let format = env.package_format;
    let packages_dir = stage_dir.join("packages");
    clear_old_packages(&stage_dir, tree, &packages_dir, format)?;
    let target = match format {
        PackageFormat::Rpm => "binrpm-pkg",
        _ => "bindeb-pkg",
    };
    run.run(&make(env, tree, jobs).arg(target))?;
    let packages = collect_packages(&stage_dir, tree, &packages_dir, format)?;
    if packages.is_empty() {
        bail!("{}: `make {target}` produced no packages", s.source);
    }
    let image = image_package(&packages, format).with_context(|| {
        format!(
            "{}: no kernel image package among {:?}",
            s.source,
            file_names(&packages)
        )
    })?;
    for p in &packages {
        run.note(&format!("package: {}", p.display()));
    }
    let mut outputs = packages.clone();
    outputs.push(kept_config.clone());
    Ok(Built {
        outputs,
        summary: json!({
        "kernel": kernel,
        "release": release,
        "localversion": kconfig::localversion(edits, kernel, short)?,
        "package_format": format,
        "packages": packages,
        "image": image,
        "config": kept_config,
        "verification": verification,
        }),
    })
}

fn base_setting(config: &Config, kernel: Kernel) -> &BaseConfig {
    match kernel {
        Kernel::Host => &config.kernel.host_base_config,
        Kernel::Guest => &config.kernel.guest_base_config,
    }
}

/// Where this kernel's base config comes from on this host.
pub fn base_source(config: &Config, kernel: Kernel) -> BaseSource {
    kconfig::base_config_source(base_setting(config, kernel), &running_release())
}

/// Checks a base config file exists, before anything is fetched or built.
pub fn check_base(config: &Config, kernel: Kernel) -> anyhow::Result<()> {
    if let BaseSource::File(path) = base_source(config, kernel) {
        kconfig::check_base_file(
            &path,
            matches!(
                base_setting(config, kernel),
                crate::config::BaseConfig::Running
            ),
        )?;
    }
    Ok(())
}

/// `uname -r`, read without a subprocess.
fn running_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn make(env: &BuildEnv, tree: &Path, jobs: Jobs) -> Cmd {
    let mut cmd = jobs.make(tree).arg("ARCH=x86_64");
    if let Some(l) = &env.launcher {
        cmd = cmd.arg(format!("CC={l} gcc"));
    }
    cmd
}

fn is_package(path: &Path, format: PackageFormat) -> bool {
    let ext = if format == PackageFormat::Rpm {
        "rpm"
    } else {
        "deb"
    };
    path.extension().is_some_and(|e| e == ext)
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
                let name = entry.file_name().to_string_lossy().to_string();
                if p.is_file()
                    && (name.ends_with(".deb")
                        || name.ends_with(".buildinfo")
                        || name.ends_with(".changes"))
                {
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

/// The kernel image package: `linux-image-<rel>_...` but never its `-dbg`
/// sibling (build.sh's `linux-image-*.deb` matched both); for rpm,
/// `kernel-<ver>` but not `kernel-headers`/`kernel-devel`.
pub fn image_package(packages: &[PathBuf], format: PackageFormat) -> Option<PathBuf> {
    packages
        .iter()
        .find(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            match format {
                PackageFormat::Rpm => {
                    name.starts_with("kernel-")
                        && name[7..].starts_with(|c: char| c.is_ascii_digit())
                }
                _ => {
                    let package = name.split('_').next().unwrap_or("");
                    package.starts_with("linux-image-") && !package.ends_with("-dbg")
                }
            }
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_package_is_never_the_dbg_one() {
        let debs: Vec<PathBuf> = [
            "linux-headers-6.1.0-snp-host-abc_6.1.0-snp-host-abc-1_amd64.deb",
            "linux-image-6.1.0-snp-host-abc-dbg_6.1.0-snp-host-abc-1_amd64.deb",
            "linux-image-6.1.0-snp-host-abc_6.1.0-snp-host-abc-1_amd64.deb",
            "linux-libc-dev_6.1.0-snp-host-abc-1_amd64.deb",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(
            image_package(&debs, PackageFormat::Deb).unwrap(),
            PathBuf::from("linux-image-6.1.0-snp-host-abc_6.1.0-snp-host-abc-1_amd64.deb")
        );
        let rpms: Vec<PathBuf> = [
            "kernel-headers-6.1.0_snp_host_abc-1.x86_64.rpm",
            "kernel-6.1.0_snp_host_abc-1.x86_64.rpm",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(
            image_package(&rpms, PackageFormat::Rpm).unwrap(),
            PathBuf::from("kernel-6.1.0_snp_host_abc-1.x86_64.rpm")
        );
    }
}
