//! OVMF (edk2): submodules present, `make -C BaseTools`, `edksetup.sh
//! --reconfig` sourced, then edk2's `build` with the platform, arch,
//! target, toolchain, defines and arguments from the pin file, and the
//! configured firmware files copied into `<install>/share/qemu`.
//!
//! edksetup.sh must be sourced by bash: that is done by a fixed script
//! (below) that takes the tree and `build`'s arguments as positional
//! parameters, so no configuration value is ever parsed by a shell.
//! `build -n` is not a jobserver client: it gets the stage's fixed share.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

use super::{BuildEnv, Built, Jobs, SourceFacts};
use crate::config::Config;
use crate::exec::{Cmd, StageRun};
use crate::fingerprint::{Inputs, digest};
use crate::source::Synced;

/// Tools whose versions are part of the fingerprint.
pub const TOOLS: &[&str] = &["gcc", "make", "nasm", "iasl", "python3"];

/// OVMF's own inputs (see the table in `fingerprint.rs`).
pub fn inputs(config: &Config, env: &BuildEnv, facts: &SourceFacts) -> Inputs {
    let k = &config.ovmf;
    Inputs::from([
        ("submodules".into(), digest(&facts.submodules)),
        ("platform".into(), k.platform.clone()),
        ("arch".into(), k.arch.clone()),
        ("build-target".into(), k.build_target.clone()),
        (
            "toolchain".into(),
            k.toolchain.clone().unwrap_or_else(|| "auto".into()),
        ),
        ("defines".into(), k.defines.join(" ")),
        ("build-args".into(), k.build_args.join(" ")),
        ("outputs".into(), k.outputs.join(" ")),
        ("install".into(), env.install.display().to_string()),
    ])
}

/// `$1` is the tree; the rest are `build`'s arguments, passed verbatim.
const EDK2_BUILD: &str = r#"set -e
cd "$1"
shift
. ./edksetup.sh --reconfig
exec build "$@"
"#;

pub fn build(
    config: &Config,
    env: &BuildEnv,
    s: &Synced,
    run: &StageRun<'_>,
    jobs: Jobs,
) -> anyhow::Result<Built> {
    let tree = &s.tree;
    let knobs = &config.ovmf;
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
    let dsc = tree.join(&knobs.platform);
    let dsc_text = std::fs::read_to_string(&dsc).with_context(|| {
        format!(
            "ovmf: the platform {} is not in the tree (`platform` in [ovmf])",
            dsc.display()
        )
    })?;
    if knobs.platform.ends_with("AmdSev/AmdSevX64.dsc") {
        // AmdSevX64 embeds a grub.efi that build.sh users provide as an
        // empty file; an existing one is left alone.
        let grub = tree.join("OvmfPkg/AmdSev/Grub/grub.efi");
        if !grub.exists() {
            std::fs::create_dir_all(grub.parent().unwrap_or(tree))?;
            std::fs::write(&grub, b"").with_context(|| format!("creating {}", grub.display()))?;
            run.note(&format!("created empty {}", grub.display()));
        }
    }

    run.run(&jobs.make(tree).arg("-C").arg("BaseTools"))?;

    let toolchain = match &knobs.toolchain {
        Some(t) => t.clone(),
        None => {
            let v = run.capture(&Cmd::new("gcc", tree).arg("-dumpversion"))?;
            crate::host::edk2_toolchain(&v)
        }
    };
    let n = knobs.jobs.map(|j| j as usize).unwrap_or(jobs.fixed);
    let mut cmd = Cmd::new("bash", tree)
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
        knobs.platform.clone(),
        "-b".into(),
        knobs.build_target.clone(),
    ]);
    run.run(&cmd)?;

    let fv = tree
        .join(output_directory(&dsc_text, &dsc)?)
        .join(format!("{}_{toolchain}", knobs.build_target))
        .join("FV");
    let dest = env.install.join("share/qemu");
    std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut copied = Vec::new();
    for name in &knobs.outputs {
        let from = fv.join(name);
        if !from.is_file() {
            bail!(
                "ovmf: the build did not produce {}\n  help: check `outputs` in [ovmf] against what {} builds (log: {})",
                from.display(),
                knobs.platform,
                run.log_path.display()
            );
        }
        let to = dest.join(name);
        std::fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        run.note(&format!("installed {}", to.display()));
        copied.push(to);
    }
    Ok(Built {
        summary: json!({ "toolchain": toolchain, "firmware": copied }),
        outputs: copied,
    })
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
    fn reads_output_directory() {
        let dsc = "[Defines]\n  PLATFORM_NAME = Ovmf\n  # OUTPUT_DIRECTORY = nope\n  OUTPUT_DIRECTORY               = Build/OvmfX64\n";
        assert_eq!(
            output_directory(dsc, Path::new("x.dsc")).unwrap(),
            PathBuf::from("Build/OvmfX64")
        );
        assert!(output_directory("[Defines]\n", Path::new("x.dsc")).is_err());
    }
}
