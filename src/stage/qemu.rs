//! QEMU: `configure --target-list=... --prefix=<install>` plus the pin
//! file's extra arguments, `make`, `make install`, then a check that the
//! installed `qemu-system-x86_64 --version` runs.
//!
//! QEMU's make drives ninja, which (before 1.13) ignores make's
//! jobserver: the stage passes its fixed share as `-jN`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

use super::{BuildEnv, Built, Jobs};
use crate::config::Config;
use crate::exec::{Cmd, StageRun};
use crate::fingerprint::{Inputs, digest};
use crate::source::Synced;

/// Tools whose versions are part of the fingerprint.
pub const TOOLS: &[&str] = &["gcc", "make", "python3", "ninja"];

/// QEMU's own inputs (see the table in `fingerprint.rs`).
pub fn inputs(config: &Config, env: &BuildEnv) -> Inputs {
    let k = &config.qemu;
    Inputs::from([
        ("target-list".into(), k.target_list.join(",")),
        ("configure-args".into(), digest(&k.configure_args)),
        (
            "compiler-launcher".into(),
            env.launcher.clone().unwrap_or_default(),
        ),
        ("install".into(), env.install.display().to_string()),
    ])
}

pub fn build(
    config: &Config,
    env: &BuildEnv,
    s: &Synced,
    run: &StageRun<'_>,
    jobs: Jobs,
) -> anyhow::Result<Built> {
    let tree = &s.tree;
    let knobs = &config.qemu;
    let mut configure = Cmd::new(tree.join("configure"), tree)
        .arg(format!("--target-list={}", knobs.target_list.join(",")))
        .arg(format!("--prefix={}", env.install.display()))
        .args(&knobs.configure_args);
    if let Some(launcher) = &env.launcher {
        // QEMU's configure reads $CC and splits it into meson's compiler list.
        configure = configure.env("CC", format!("{launcher} gcc"));
    }
    // QEMU's configure starts a fresh build directory, so it runs only when
    // its command changed (or --clean): a new SHA or patch then rebuilds
    // incrementally, and QEMU's own Makefile reruns configure when the
    // configure script itself changed.
    let marker = env.stage_dir(s.source).join("configured-with");
    let configured = format!("{}\n{:?}\n", configure.display(), configure.env);
    let previous = std::fs::read_to_string(&marker).unwrap_or_default();
    if env.clean || previous != configured || !tree.join("build/config-host.mak").exists() {
        let _ = std::fs::remove_file(&marker);
        run.run(&configure)?;
        crate::fsutil::write_atomic(&marker, configured.as_bytes())?;
    } else {
        run.note("configure: same command as the last build, not rerun (incremental build)");
    }
    // Not a jobserver client: always an explicit -j.
    let fixed = Jobs {
        jobserver: false,
        fixed: jobs.fixed,
    };
    run.run(&fixed.make(tree))?;
    // Installed through DESTDIR, then copied into the prefix: the stage
    // knows exactly which files are its outputs.
    let destdir = env.stage_dir(s.source).join("destdir");
    if destdir.exists() {
        std::fs::remove_dir_all(&destdir)
            .with_context(|| format!("removing {}", destdir.display()))?;
    }
    run.run(
        &Cmd::new("make", tree)
            .arg("install")
            .arg(format!("DESTDIR={}", destdir.display())),
    )?;
    let staged = destdir.join(env.install.strip_prefix("/").unwrap_or(&env.install));
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
        .map_err(|e| anyhow::anyhow!("the installed {} does not run: {e:#}", binary.display()))?;
    Ok(Built {
        summary: json!({
            "binary": binary,
            "version": version.lines().next().unwrap_or("").trim(),
            "install": env.install,
            "installed": installed,
        }),
        outputs: installed,
    })
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
