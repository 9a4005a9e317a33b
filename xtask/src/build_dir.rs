//! One bench build directory (work dir, install prefix, release output)
//! and the snp-build commands run in it: shared by `bench.rs` and its
//! shared-cache rows (`share.rs`), so neither imports the other.

use anyhow::{Result, ensure};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{self, Run};

/// The job budget of every bench build.
pub(crate) const JOBS: &str = "2";

/// One build directory: work dir, install prefix and release output.
pub(crate) struct Build<'a> {
    pub(crate) bin: &'a Path,
    pub(crate) pins: PathBuf,
    pub(crate) root: PathBuf,
}

impl Build<'_> {
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin);
        c.arg("--config")
            .arg(&self.pins)
            .arg("--work-dir")
            .arg(self.root.join("work"))
            .arg("--install")
            .arg(self.root.join("usr/local"))
            .args(["-j", JOBS])
            .args(args)
            .current_dir(&self.root);
        c
    }

    /// The release this build's `--package --date 2024-01-01` writes.
    pub(crate) fn tarball(&self) -> PathBuf {
        self.root.join("out/snp-release-2024-01-01.tar.gz")
    }

    pub(crate) fn build_command(&self, extra: &[&str]) -> Command {
        let out = self.root.join("out");
        let mut c = self.command(&["--package", "--json", "--date", "2024-01-01", "--output"]);
        c.arg(out).args(extra);
        c
    }

    /// A build; fails when snp-build fails.
    pub(crate) fn build(&self, extra: &[&str]) -> Result<(Run, Value)> {
        fs::create_dir_all(self.root.join("out"))?;
        let run = report::measure(&mut self.build_command(extra), true)?;
        ensure!(
            run.status.success(),
            "snp-build {extra:?} in {} failed ({}): {}",
            self.root.display(),
            run.status,
            run.stdout
        );
        let json = run.json()?;
        Ok((run, json))
    }
}
