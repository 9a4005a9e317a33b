//! QEMU: `configure --target-list=... --prefix=<install>` plus the pin
//! file's extra arguments, `make`, `make install`, then a check that the
//! installed `qemu-system-x86_64 --version` runs.
//!
//! QEMU's make drives ninja, which (before 1.13) ignores make's
//! jobserver: the stage passes its fixed share as `-jN`.

use serde_json::{Value, json};

use super::{BuildEnv, Jobs};
use crate::config::Config;
use crate::exec::{Cmd, StageRun};
use crate::source::Synced;

pub fn build(
    config: &Config,
    env: &BuildEnv,
    s: &Synced,
    run: &StageRun<'_>,
    jobs: Jobs,
) -> anyhow::Result<Value> {
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
    run.run(&configure)?;
    // Not a jobserver client: always an explicit -j.
    let fixed = Jobs {
        jobserver: false,
        fixed: jobs.fixed,
    };
    run.run(&fixed.make(tree))?;
    run.run(&Cmd::new("make", tree).arg("install"))?;

    let binary = env.install.join("bin/qemu-system-x86_64");
    let version = run
        .capture(&Cmd::new(&binary, tree).arg("--version"))
        .map_err(|e| anyhow::anyhow!("the installed {} does not run: {e:#}", binary.display()))?;
    Ok(json!({
        "binary": binary,
        "version": version.lines().next().unwrap_or("").trim(),
        "install": env.install,
    }))
}
