//! Putting a release in place: its directory and its tarball are written
//! under temporary names beside the final ones, then swapped in together.
//!
//! - Every temporary name is guarded ([`TempDir`], [`NamedTempFile`],
//!   [`Swap`]): a failed write (a full disk, say) removes it at once, and a
//!   failed swap puts the previous release back, so the output dir holds
//!   the previous directory and tarball or the new ones, never a directory
//!   without its tarball.
//! - A run killed mid-write cannot clean up; its names carry its pid
//!   (`.<release>.tmp-<pid>-XXXXXX`, `.<release>.tar.gz.tmp-<pid>-XXXXXX`,
//!   `.<release>.old-<pid>`, `.<release>.tar.gz.old-<pid>`), and the next
//!   run sweeps them under the release lock ([`sweep`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tempfile::{NamedTempFile, TempDir};

use crate::release_name::{PREFIX, TARBALL_SUFFIX};

/// Marks a temporary name: a new directory or tarball being written.
const TMP: &str = ".tmp-";
/// Marks a previous directory or tarball, moved aside while swapping.
const OLD: &str = ".old-";

/// The directory release `name` is assembled in, under `output`
/// (mode 0755, as the release's own directories: `TempDir` makes 0700).
pub fn temp_dir(output: &Path, name: &str) -> anyhow::Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(&temp_prefix(name))
        .tempdir_in(output)
        .with_context(|| format!("creating a temporary directory in {}", output.display()))?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// The file release `name`'s tarball is written to, under `output`
/// (mode 0644: `NamedTempFile` makes 0600).
pub fn temp_tarball(output: &Path, name: &str) -> anyhow::Result<NamedTempFile> {
    let file = tempfile::Builder::new()
        .prefix(&temp_prefix(&format!("{name}{TARBALL_SUFFIX}")))
        .tempfile_in(output)
        .with_context(|| format!("creating a temporary file in {}", output.display()))?;
    fs::set_permissions(file.path(), fs::Permissions::from_mode(0o644))?;
    Ok(file)
}

fn temp_prefix(final_name: &str) -> String {
    format!(".{final_name}{TMP}{}-", std::process::id())
}

/// Where `path` waits while its replacement is put in place.
fn aside(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}{OLD}{}", std::process::id()))
}

/// Puts the assembled directory and its tarball at `final_dir` and
/// `final_tarball`, replacing the previous ones together: they are moved
/// aside first and put back if anything fails.
pub fn swap_in(
    dir: TempDir,
    tarball: NamedTempFile,
    final_dir: &Path,
    final_tarball: &Path,
) -> anyhow::Result<()> {
    for (path, is_dir) in [(final_dir, true), (final_tarball, false)] {
        if let Ok(meta) = fs::symlink_metadata(path)
            && meta.is_dir() != is_dir
        {
            bail!(
                "{} is in the way of the release: it is a {}, where the release puts its {}\n  help: move it away (or choose another --output) and run again",
                path.display(),
                if meta.is_dir() { "directory" } else { "file" },
                if is_dir { "directory" } else { "tarball" },
            );
        }
    }
    let mut swap = Swap::default();
    swap.move_aside(final_dir)?;
    swap.move_aside(final_tarball)?;
    tarball
        .persist(final_tarball)
        .with_context(|| format!("renaming the new tarball to {}", final_tarball.display()))?;
    swap.placed.push(final_tarball.to_path_buf());
    fs::rename(dir.path(), final_dir).with_context(|| {
        format!(
            "renaming {} to {}",
            dir.path().display(),
            final_dir.display()
        )
    })?;
    swap.placed.push(final_dir.to_path_buf());
    // Renamed: nothing is left under the temporary name to remove.
    let _ = dir.keep();
    swap.commit();
    Ok(())
}

/// A swap under way: what was moved aside and what was put in place. Put
/// back on drop unless committed.
#[derive(Default)]
struct Swap {
    /// (final path, where it waits).
    aside: Vec<(PathBuf, PathBuf)>,
    placed: Vec<PathBuf>,
    committed: bool,
}

impl Swap {
    fn move_aside(&mut self, path: &Path) -> anyhow::Result<()> {
        if fs::symlink_metadata(path).is_err() {
            return Ok(());
        }
        let to = aside(path);
        remove_path(&to)?;
        fs::rename(path, &to)
            .with_context(|| format!("moving the previous {} aside", path.display()))?;
        self.aside.push((path.to_path_buf(), to));
        Ok(())
    }

    /// The new release stands: the previous one goes.
    fn commit(mut self) {
        self.committed = true;
        for (_, old) in &self.aside {
            if let Err(e) = remove_path(old) {
                // The next run's sweep removes it.
                tracing::warn!("release: {e:#}");
            }
        }
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for path in self.placed.iter().rev() {
            if let Err(e) = remove_path(path) {
                tracing::error!("release: taking back the new {}: {e:#}", path.display());
            }
        }
        for (path, old) in self.aside.iter().rev() {
            if let Err(e) = fs::rename(old, path) {
                tracing::error!(
                    "release: putting the previous {} back from {}: {e}",
                    path.display(),
                    old.display()
                );
            }
        }
    }
}

/// A temporary name of ours, as [`sweep`] reads it back.
#[derive(Debug, PartialEq, Eq)]
struct Leftover<'a> {
    /// The final name it stands for: `snp-release-<date>` or its tarball.
    of: &'a str,
    pid: u32,
    /// A previous release moved aside (else a new one being written).
    old: bool,
}

impl Leftover<'_> {
    fn parse(file_name: &str) -> Option<Leftover<'_>> {
        let name = file_name.strip_prefix('.')?;
        if !name.starts_with(PREFIX) {
            return None;
        }
        let (at, old) = [(name.rfind(TMP), false), (name.rfind(OLD), true)]
            .into_iter()
            .filter_map(|(at, old)| Some((at?, old)))
            .max()?;
        let rest = &name[at + TMP.len()..];
        let digits = rest.split('-').next()?;
        let pid = digits.parse().ok()?;
        Some(Leftover {
            of: &name[..at],
            pid,
            old,
        })
    }
}

/// Whether process `pid` runs on this machine.
fn alive(pid: u32) -> bool {
    pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes what runs that died left in `output` (called with the release
/// lock held, so no live run here is writing): a new directory or tarball
/// half written goes; a previous one moved aside goes back where it was
/// if nothing took its place (the run died mid-swap; its stamp was
/// removed first, so this release is made again), else it goes. A name
/// whose pid still runs is left alone.
pub fn sweep(output: &Path) -> anyhow::Result<()> {
    let Ok(entries) = fs::read_dir(output) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(left) = file_name.to_str().and_then(Leftover::parse) else {
            continue;
        };
        if alive(left.pid) {
            continue;
        }
        let path = entry.path();
        let final_path = output.join(left.of);
        if left.old && fs::symlink_metadata(&final_path).is_err() {
            fs::rename(&path, &final_path).with_context(|| {
                format!(
                    "putting {} back from {}",
                    final_path.display(),
                    path.display()
                )
            })?;
            tracing::warn!(
                "release: put {} back from {}, where a run (pid {}) that stopped while replacing it left it",
                final_path.display(),
                path.display(),
                left.pid
            );
        } else {
            remove_path(&path)?;
            tracing::warn!(
                "release: removed {}, left by a run (pid {}) that stopped while writing",
                path.display(),
                left.pid
            );
        }
    }
    Ok(())
}

/// Removes a file or a directory tree; nothing there is fine.
fn remove_path(path: &Path) -> anyhow::Result<()> {
    let removed = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => return Ok(()),
    };
    removed.with_context(|| format!("removing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_read_back_from_their_names() {
        let parse = Leftover::parse;
        assert_eq!(
            parse(".snp-release-2026-11-29.tmp-4242-AbC123"),
            Some(Leftover {
                of: "snp-release-2026-11-29",
                pid: 4242,
                old: false
            })
        );
        assert_eq!(
            parse(".snp-release-2026-11-29.tar.gz.tmp-7-x1y2z3"),
            Some(Leftover {
                of: "snp-release-2026-11-29.tar.gz",
                pid: 7,
                old: false
            })
        );
        // The names of the runs before the guards: no random suffix.
        assert_eq!(
            parse(".snp-release-2026-11-29.tar.gz.tmp-7"),
            Some(Leftover {
                of: "snp-release-2026-11-29.tar.gz",
                pid: 7,
                old: false
            })
        );
        assert_eq!(
            parse(".snp-release-2026-11-29.old-99"),
            Some(Leftover {
                of: "snp-release-2026-11-29",
                pid: 99,
                old: true
            })
        );
        for other in [
            "snp-release-2026-11-29",
            "snp-release-2026-11-29.tar.gz",
            ".snp-release-2026-11-29",
            ".snp-release-2026-11-29.tmp-",
            ".snp-release-2026-11-29.tmp-abc",
            ".other.tmp-12",
            ".tmpAbC123",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn a_failed_swap_puts_the_previous_release_back() {
        let out = tempfile::tempdir().unwrap();
        let (dir, tar) = (out.path().join("r"), out.path().join("r.tar.gz"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("old"), "old").unwrap();
        fs::write(&tar, "old tarball").unwrap();
        let mut swap = Swap::default();
        swap.move_aside(&dir).unwrap();
        swap.move_aside(&tar).unwrap();
        fs::write(&tar, "new tarball").unwrap();
        swap.placed.push(tar.clone());
        drop(swap);
        assert_eq!(fs::read_to_string(dir.join("old")).unwrap(), "old");
        assert_eq!(fs::read_to_string(&tar).unwrap(), "old tarball");
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 2);
    }
}
