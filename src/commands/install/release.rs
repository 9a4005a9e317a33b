//! Finding the release and making it private: a directory is copied, a
//! tarball unpacked, into a new 0700 temporary directory, so what is
//! verified is what is installed.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

use crate::commands::verify::{check_end, check_entry, one_top, open_tarball};
use crate::error::UsageError;

/// A release ready to read: a directory, possibly unpacked from a tarball.
pub(super) struct Opened {
    /// The release's files.
    pub(super) dir: PathBuf,
    /// What the user named (made absolute): the directory or the tarball.
    pub(super) given: PathBuf,
    /// `snp-release-<date>`.
    pub(super) name: String,
    /// Holds the unpacked tarball until the install is done.
    _unpacked: Option<tempfile::TempDir>,
}

pub(super) fn open_release(release: Option<&Path>) -> anyhow::Result<Opened> {
    let given = match release {
        Some(p) => p.to_path_buf(),
        None => newest_release(Path::new("."))?,
    };
    let given =
        std::path::absolute(&given).with_context(|| format!("resolving {}", given.display()))?;
    if given.is_dir() {
        // A private copy is verified and installed: a file swapped in the
        // release directory after the check (while we ask, say) never
        // reaches the system.
        let (tmp, dir) = private_copy(&given)?;
        return Ok(Opened {
            name: file_name(&given),
            dir,
            given,
            _unpacked: Some(tmp),
        });
    }
    if !given.is_file() {
        return Err(
            UsageError::new(format!("{}: no such release", given.display()))
                .help("give an snp-release-<date> directory or its .tar.gz")
                .into(),
        );
    }
    tracing::info!("unpacking {}", given.display());
    let (tmp, dir) = unpack(&given)?;
    Ok(Opened {
        name: file_name(&dir),
        dir,
        given,
        _unpacked: Some(tmp),
    })
}

impl Opened {
    /// The names it is found under, which a trusted signature must name.
    /// `text` (a command naming files of the private copy) as the user
    /// knows the release: the directory they gave, or, for a tarball, the
    /// paths in it and the tarball's name. The private copy is gone once
    /// the install ends, so nothing kept or printed names it.
    pub(super) fn shown(&self, text: &str) -> String {
        let private = self.dir.to_string_lossy();
        if self.given.is_dir() {
            return text.replace(&*private, &self.given.to_string_lossy());
        }
        format!(
            "{} (unpacked from {})",
            text.replace(&format!("{private}/"), ""),
            self.given.display()
        )
    }

    pub(super) fn found_as(&self) -> Vec<crate::commands::verify::FoundAs> {
        let top = self.given.is_file().then_some(self.name.as_str());
        crate::commands::verify::found_as(&self.given, top)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// The newest `snp-release-*` directory in `dir` (names carry the date,
/// so the greatest name is the newest).
fn newest_release(dir: &Path) -> anyhow::Result<PathBuf> {
    let newest = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(crate::release_name::PREFIX))
        .max();
    match newest {
        Some(name) => Ok(dir.join(name)),
        None => Err(UsageError::new(format!(
            "no snp-release-* directory in {}",
            std::path::absolute(dir).unwrap_or_default().display()
        ))
        .help("give the release: `snp-build install DIR` or `snp-build install snp-release-<date>.tar.gz`")
        .into()),
    }
}

/// Copies a release directory into a new private (0700) temporary
/// directory, symlinks as symlinks (so verification still sees and refuses
/// them); returns it and the copy.
fn private_copy(release: &Path) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::Builder::new()
        .prefix("snp-build-install-")
        .tempdir()
        .context("creating a temporary directory to copy the release into")?;
    let dir = tmp.path().join(file_name(release));
    for entry in walkdir::WalkDir::new(release) {
        let entry = entry.with_context(|| format!("reading {}", release.display()))?;
        let to = dir.join(entry.path().strip_prefix(release)?);
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&to)
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &to)
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to).map(drop)
        } else {
            bail!(
                "{}: a release holds only files and directories",
                entry.path().display()
            );
        }
        .with_context(|| format!("copying {} to {}", entry.path().display(), to.display()))?;
    }
    Ok((tmp, dir))
}

/// Unpacks a release tarball into a new temporary directory; returns it
/// and the release directory inside (the tarball's one top directory).
fn unpack(tarball: &Path) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let mut archive = open_tarball(tarball)?;
    let tmp = tempfile::Builder::new()
        .prefix("snp-build-install-")
        .tempdir()
        .context("creating a temporary directory to unpack the release in")?;
    let mut tops = BTreeSet::new();
    let entries = archive
        .entries()
        .with_context(|| format!("reading {}", tarball.display()))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("reading {}", tarball.display()))?;
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue; // pax metadata, not a file
        }
        let path = entry.path()?.into_owned();
        check_entry(tarball, &path, entry.header())?;
        if let Some(Component::Normal(top)) = path.components().find(|c| *c != Component::CurDir) {
            tops.insert(top.to_os_string());
        }
        entry
            .unpack_in(tmp.path())
            .with_context(|| format!("unpacking {} from {}", path.display(), tarball.display()))?;
    }
    check_end(tarball, archive.into_inner())?;
    let dir = tmp.path().join(one_top(tarball, tops)?);
    Ok((tmp, dir))
}
