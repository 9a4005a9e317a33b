//! Where an install goes: the live system, or a staging root (`--root`).

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::InstallMode;
use crate::error::UsageError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    Live,
    Staging(PathBuf),
}

impl Target {
    pub(super) fn new(root: Option<&Path>) -> anyhow::Result<Target> {
        let Some(dir) = root else {
            return Ok(Target::Live);
        };
        // As `cargo install --root`: a staging root that does not exist yet
        // is made, but only once the release is verified and the install
        // goes ahead (a file in the way is refused now).
        if dir.exists() && !dir.is_dir() {
            return Err(
                UsageError::new(format!("--root {}: not a directory", dir.display()))
                    .help("give a directory to unpack into (it is made when missing)")
                    .into(),
            );
        }
        let abs = if dir.exists() {
            dir.canonicalize()
        } else {
            std::path::absolute(dir)
        }
        .with_context(|| format!("resolving --root {}", dir.display()))?;
        if abs == Path::new("/") {
            return Err(UsageError::new("--root / is the live system")
                .help("drop --root for a live install (as root, with its checks and confirmation)")
                .into());
        }
        Ok(Target::Staging(abs))
    }

    pub(super) fn root(&self) -> &Path {
        match self {
            Target::Live => Path::new("/"),
            Target::Staging(dir) => dir,
        }
    }

    pub(super) fn is_live(&self) -> bool {
        *self == Target::Live
    }

    pub(super) fn mode(&self) -> InstallMode {
        if self.is_live() {
            InstallMode::Live
        } else {
            InstallMode::Staging
        }
    }

    /// `rel` (relative, or absolute as seen on the target) under the root.
    pub(super) fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        self.root().join(rel.strip_prefix("/").unwrap_or(rel))
    }

    /// The os-release that decides the package format.
    pub(super) fn os_release(&self) -> PathBuf {
        let staged = self.path("etc/os-release");
        if !self.is_live() && staged.is_file() {
            return staged;
        }
        [
            Path::new("/etc/os-release"),
            Path::new("/usr/lib/os-release"),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or(Path::new("/etc/os-release"))
        .to_path_buf()
    }
}

/// Live changes need root; dry runs and staging installs do not.
pub(super) fn check_privileges(
    target: &Target,
    dry_run: bool,
    command: &'static str,
) -> anyhow::Result<()> {
    if target.is_live() && !dry_run && !rustix::process::geteuid().is_root() {
        return Err(super::NotRoot { command }.into());
    }
    Ok(())
}
