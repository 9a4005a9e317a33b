//! The release's userland on the host: QEMU and its firmware (`usr/`),
//! `launch-qemu.sh`, `MEASUREMENTS`, the libvirt domains, `bin/snp-build`
//! and the documents that say what was built (manifest, SBOM, provenance,
//! pins), placed in `<root>/opt/snp-build/releases/<name>/`, with
//! `/opt/snp-build/current` a link to the one installed last.
//!
//! Why there: `/opt/<package>` is the FHS's place for an add-on package's
//! files, so nothing collides with the distribution's `/usr` or the
//! admin's `/usr/local`. A directory per release keeps the release that
//! runs guests now beside the next one (`launch-qemu.sh` of either works,
//! a digest in its `MEASUREMENTS` stays checkable), and `current` moves
//! from one to the other in one rename, never half way.
//!
//! Guarantees:
//! - Each file is copied from the verified private copy of the release,
//!   into a temporary directory beside the final one, renamed in place
//!   once whole; executables 0755, the rest 0644.
//! - The libvirt domains get the directory's path for `@RELEASE_DIR@`, so
//!   `virsh define` takes them as they are.
//! - Not placed: the kernel packages (the host's goes through the
//!   package manager; the guest's belong in guests), `kvm.conf` (placed in
//!   `/etc/modprobe.d`), `install.sh`, and `SHA256SUMS` with its signature
//!   (they list the packages, which are not here).

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::target::Target;
use crate::host::{RELEASES_REL, STACK_CURRENT_REL};

/// Release files that stay out of the placed stack (see the module doc).
fn placed(rel: &str) -> bool {
    !(rel.starts_with("linux/")
        || matches!(
            rel,
            "install.sh" | "kvm.conf" | "SHA256SUMS" | "SHA256SUMS.minisig"
        ))
}

/// Where a release's stack goes, and what.
#[derive(Debug, Clone)]
pub(super) struct StackPlan {
    /// The release's directory under the root (this machine's path).
    pub dir: PathBuf,
    /// The same as the target sees it (`/opt/snp-build/releases/<name>`).
    pub on_target: PathBuf,
    /// The files placed, as paths in the release.
    pub files: Vec<String>,
    /// The `current` link.
    pub current: PathBuf,
}

impl StackPlan {
    /// The stack of release `name`, whose files (as `SHA256SUMS` lists
    /// them) are `listed`.
    pub(super) fn new<'a>(
        target: &Target,
        name: &str,
        listed: impl Iterator<Item = &'a String>,
    ) -> StackPlan {
        StackPlan {
            dir: target.path(RELEASES_REL).join(name),
            on_target: Path::new("/").join(RELEASES_REL).join(name),
            files: listed.filter(|r| placed(r)).cloned().collect(),
            current: target.path(STACK_CURRENT_REL),
        }
    }

    /// Copies the files from `from` (the verified release) and points
    /// `current` at them.
    pub(super) fn place(&self, from: &Path) -> anyhow::Result<()> {
        let releases = self.dir.parent().context("the releases directory")?;
        std::fs::create_dir_all(releases)
            .with_context(|| format!("creating {}", releases.display()))?;
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        let partial = releases.join(format!(".{name}.partial-{}", std::process::id()));
        remove_dir_if_there(&partial)?;
        for rel in &self.files {
            let (src, dest) = (from.join(rel), partial.join(rel));
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let mut bytes =
                std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
            if rel.starts_with("libvirt-") && rel.ends_with(".xml") {
                let text = String::from_utf8_lossy(&bytes)
                    .replace("@RELEASE_DIR@", &self.on_target.to_string_lossy());
                bytes = text.into_bytes();
            }
            let mode = if is_executable(&src) { 0o755 } else { 0o644 };
            write_mode(&dest, &bytes, mode)?;
        }
        // The same release placed again: the old copy goes once the new
        // one is whole.
        let old = releases.join(format!(".{name}.old-{}", std::process::id()));
        if self.dir.exists() {
            std::fs::rename(&self.dir, &old)
                .with_context(|| format!("moving {} aside", self.dir.display()))?;
        }
        std::fs::rename(&partial, &self.dir)
            .with_context(|| format!("renaming {} to {}", partial.display(), self.dir.display()))?;
        remove_dir_if_there(&old)?;
        self.point_current()
    }

    /// `current` -> `releases/<name>`, relative (it stays right under a
    /// staging root), switched by a rename.
    fn point_current(&self) -> anyhow::Result<()> {
        let link = Path::new("releases").join(self.dir.file_name().unwrap_or_default());
        let tmp = self
            .current
            .with_file_name(format!(".current.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&link, &tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.current)
            .with_context(|| format!("pointing {} at {}", self.current.display(), link.display()))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    // The umask may have narrowed the mode given at creation.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn remove_dir_if_there(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Removes the stacks of `names` under the root, `current` when it points
/// at one of them, and `/opt/snp-build` itself once empty; returns what
/// went (as the target sees it). A stack another install placed and no
/// record names stays.
pub(super) fn remove(
    target: &Target,
    names: &[String],
    dry_run: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let releases = target.path(RELEASES_REL);
    let current = target.path(STACK_CURRENT_REL);
    let mut removed = Vec::new();
    let points_at = std::fs::read_link(&current).ok();
    for name in names {
        let dir = releases.join(name);
        if !dir.exists() {
            continue;
        }
        let shown = Path::new("/").join(RELEASES_REL).join(name);
        if dry_run {
            tracing::info!("[dry-run] would remove {}", shown.display());
        } else {
            remove_dir_if_there(&dir)?;
            tracing::info!("removed {}", shown.display());
        }
        removed.push(shown);
    }
    let ours = points_at
        .as_ref()
        .and_then(|p| p.file_name())
        .is_some_and(|n| names.iter().any(|name| n == name.as_str()));
    if ours && !dry_run {
        std::fs::remove_file(&current)
            .with_context(|| format!("removing {}", current.display()))?;
        // Empty now: nothing else was ever placed there.
        let _ = std::fs::remove_dir(&releases);
        if let Some(opt) = releases.parent() {
            let _ = std::fs::remove_dir(opt);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_sums_install_sh_and_kvm_conf_stay_out() {
        for out in [
            "linux/host/linux-image-6.1.0-snp-host_1_amd64.deb",
            "linux/guest/x.deb",
            "install.sh",
            "kvm.conf",
            "SHA256SUMS",
            "SHA256SUMS.minisig",
        ] {
            assert!(!placed(out), "{out}");
        }
        for kept in [
            "usr/local/bin/qemu-system-x86_64",
            "usr/local/share/qemu/OVMF.fd",
            "launch-qemu.sh",
            "MEASUREMENTS",
            "libvirt-snp.xml",
            "manifest.json",
            "bin/snp-build",
        ] {
            assert!(placed(kept), "{kept}");
        }
    }

    #[test]
    fn a_staging_root_gets_the_stack_and_current_and_removal_leaves_nothing() {
        let (src, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let files = [
            ("usr/local/bin/qemu-system-x86_64", "qemu", 0o755),
            (
                "libvirt-snp.xml",
                "<emulator>@RELEASE_DIR@/usr/local/bin/qemu-system-x86_64</emulator>",
                0o644,
            ),
            ("linux/host/k.deb", "deb", 0o644),
        ];
        for (rel, text, mode) in files {
            let p = src.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        }
        let target = Target::Staging(root.path().to_path_buf());
        let listed: Vec<String> = files.iter().map(|f| f.0.to_string()).collect();
        let plan = StackPlan::new(&target, "snp-release-2026-12-01", listed.iter());
        plan.place(src.path()).unwrap();
        plan.place(src.path()).unwrap(); // again: replaced, nothing left over
        let current = root.path().join("opt/snp-build/current");
        assert_eq!(
            std::fs::read_link(&current).unwrap(),
            Path::new("releases/snp-release-2026-12-01")
        );
        let xml = std::fs::read_to_string(current.join("libvirt-snp.xml")).unwrap();
        assert_eq!(
            xml,
            "<emulator>/opt/snp-build/releases/snp-release-2026-12-01/usr/local/bin/qemu-system-x86_64</emulator>"
        );
        assert!(is_executable(
            &current.join("usr/local/bin/qemu-system-x86_64")
        ));
        assert!(!current.join("linux").exists());
        let entries: Vec<_> = std::fs::read_dir(root.path().join("opt/snp-build/releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, ["snp-release-2026-12-01"]);
        let gone = remove(&target, &["snp-release-2026-12-01".into()], false).unwrap();
        assert_eq!(
            gone,
            [Path::new("/opt/snp-build/releases/snp-release-2026-12-01")]
        );
        assert!(!root.path().join("opt").join("snp-build").exists());
    }
}
