//! A commit's files written into a new, empty tree with every core.
//!
//! libgit2's checkout writes a kernel tree's ~80,000 files from one
//! thread, and a cold fetch writes two such trees. Into an empty directory
//! each file is just its blob's bytes, so the files are inflated and
//! written by one thread per core, and the index is written from what was
//! written (each file's stat data and known blob id), as `git checkout`
//! records it, so no later status check hashes the tree. The kernel fetch
//! race in BENCHMARKS.md measures it against `git clone` + `cp -r`.
//!
//! Used only where it gives exactly what libgit2 would: no checkout
//! filter can apply (no `text`/`eol`/`crlf`/`filter`/`ident`/
//! `working-tree-encoding` attribute in any `.gitattributes`, no
//! `/etc/gitattributes` or `~/.config/git/attributes`, and no
//! `core.autocrlf`, `core.eol` or `core.attributesFile` in the config), and
//! every path is one libgit2 would write (no `..` or `.git` component).
//! Otherwise [`fresh`] returns `false` and the caller uses libgit2.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use anyhow::Context;
use git2::{IndexEntry, IndexTime, ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

pub(super) const GITLINK: i32 = 0o160000;
pub(super) const SYMLINK: i32 = 0o120000;
pub(super) const EXECUTABLE: i32 = 0o100755;
const REGULAR: i32 = 0o100644;

/// One path of the commit: its blob (or submodule commit) and git mode.
pub(super) struct Entry {
    pub path: Vec<u8>,
    pub id: Oid,
    pub mode: i32,
}

/// Every file, symlink and submodule of `tree` (paths from its root), and
/// the blobs of its `.gitattributes` files.
pub(super) fn entries(tree: &git2::Tree<'_>) -> Result<(Vec<Entry>, Vec<Oid>), git2::Error> {
    let mut entries = Vec::new();
    let mut attributes = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |root, e| {
        let mut path = root.as_bytes().to_vec();
        path.extend_from_slice(e.name_bytes());
        match e.kind() {
            Some(ObjectType::Blob) | Some(ObjectType::Commit) => {
                if e.name_bytes() == b".gitattributes" {
                    attributes.push(e.id());
                }
                entries.push(Entry {
                    path,
                    id: e.id(),
                    mode: e.filemode(),
                });
            }
            _ => {}
        }
        TreeWalkResult::Ok
    })?;
    Ok((entries, attributes))
}

/// Writes `commit`'s files into `repo`'s empty work tree and its index.
/// `Ok(false)`: a checkout filter could apply, nothing was written.
pub fn fresh(repo: &Repository, commit: Oid, threads: usize) -> anyhow::Result<bool> {
    let workdir = repo
        .workdir()
        .context("the tree has no work directory")?
        .to_path_buf();
    let tree = repo.find_commit(commit)?.tree()?;
    let (entries, attributes) = entries(&tree)?;
    if filters_may_apply(repo, &attributes)? || entries.iter().any(|e| !safe_path(&e.path)) {
        return Ok(false);
    }
    // Directories first (one thread: a few thousand mkdir), then the files.
    let mut dirs: Vec<&Path> = entries
        .iter()
        .filter_map(|e| bytes_path(&e.path).parent())
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        let dir = workdir.join(d);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let threads = threads.clamp(1, 64);
    let git_dir = repo.path().to_path_buf();
    let written: Vec<anyhow::Result<Vec<(usize, std::fs::Metadata)>>> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (entries, workdir, git_dir) = (&entries, &workdir, &git_dir);
                    // Interleaved, so big and small files spread evenly.
                    scope.spawn(move || {
                        // A handle per thread: git2's Repository is not Sync.
                        let repo = Repository::open(git_dir)?;
                        let mut done = Vec::new();
                        for (i, e) in entries.iter().enumerate().skip(t).step_by(threads) {
                            let file = workdir.join(bytes_path(&e.path));
                            write_entry(&repo, e, &file)
                                .with_context(|| format!("writing {}", file.display()))?;
                            let meta = std::fs::symlink_metadata(&file)
                                .with_context(|| format!("reading {}", file.display()))?;
                            done.push((i, meta));
                        }
                        Ok(done)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a checkout thread panicked")))
                })
                .collect()
        });
    let mut stats: Vec<Option<std::fs::Metadata>> = vec![None; entries.len()];
    for part in written {
        for (i, meta) in part? {
            stats[i] = Some(meta);
        }
    }
    // The index in its order (bytewise by path), so each add appends.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|a, b| entries[*a].path.cmp(&entries[*b].path));
    let mut index = repo.index()?;
    index.clear()?;
    for i in order {
        let e = &entries[i];
        let meta = stats[i].as_ref().context("a file was not written")?;
        index.add(&index_entry(e, meta))?;
    }
    index.write().context("writing the tree's index")?;
    Ok(true)
}

/// Whether libgit2's checkout could write something other than the blob's
/// bytes: line-ending, `ident` or filter attributes, or config that
/// converts line endings or names an attributes file of its own.
fn filters_may_apply(repo: &Repository, attributes: &[Oid]) -> anyhow::Result<bool> {
    let config = repo.config()?;
    if config.get_bool("core.autocrlf").unwrap_or(false)
        || config
            .get_string("core.autocrlf")
            .is_ok_and(|v| v == "input")
        || config.get_string("core.eol").is_ok()
        || config.get_path("core.attributesfile").is_ok()
    {
        return Ok(true);
    }
    // Attribute files libgit2 reads without any config naming them.
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
    let global = [
        Some(std::path::PathBuf::from("/etc/gitattributes")),
        xdg.map(|d| d.join("git/attributes")),
    ];
    if global.iter().flatten().any(|p| p.exists()) {
        return Ok(true);
    }
    for id in attributes {
        let blob = repo.find_blob(*id)?;
        let text = String::from_utf8_lossy(blob.content());
        let filtering = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.split_whitespace().skip(1))
            .map(|attr| attr.trim_start_matches(['-', '!']))
            .map(|attr| attr.split('=').next().unwrap_or(""))
            .any(|name| {
                matches!(
                    name,
                    "text" | "eol" | "crlf" | "filter" | "ident" | "working-tree-encoding"
                )
            });
        if filtering {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether libgit2's checkout would write `path` too: no empty, `.` or
/// `..` component and no `.git` (any case) component. Anything else is
/// left to libgit2, which refuses it.
fn safe_path(path: &[u8]) -> bool {
    path.split(|b| *b == b'/').all(|part| {
        !part.is_empty() && part != b"." && part != b".." && !part.eq_ignore_ascii_case(b".git")
    })
}

/// Writes one entry as libgit2's checkout would: a file (mode 0644 or
/// 0755 less the umask), a symlink to the blob's text, or an empty
/// directory for a submodule.
fn write_entry(repo: &Repository, e: &Entry, file: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    match e.mode {
        GITLINK => std::fs::create_dir_all(file)?,
        SYMLINK => {
            let blob = repo.find_blob(e.id)?;
            std::os::unix::fs::symlink(bytes_path(blob.content()), file)?;
        }
        mode => {
            let blob = repo.find_blob(e.id)?;
            let perm = if mode == EXECUTABLE { 0o755 } else { 0o644 };
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(perm)
                .open(file)?;
            f.write_all(blob.content())?;
        }
    }
    Ok(())
}

/// The index entry git records for a file it just wrote.
fn index_entry(e: &Entry, meta: &std::fs::Metadata) -> IndexEntry {
    let mode = match e.mode {
        GITLINK | SYMLINK | EXECUTABLE => e.mode as u32,
        _ => REGULAR as u32,
    };
    IndexEntry {
        ctime: IndexTime::new(meta.ctime() as i32, meta.ctime_nsec() as u32),
        mtime: IndexTime::new(meta.mtime() as i32, meta.mtime_nsec() as u32),
        dev: meta.dev() as u32,
        ino: meta.ino() as u32,
        mode,
        uid: meta.uid(),
        gid: meta.gid(),
        file_size: if e.mode == GITLINK {
            0
        } else {
            meta.size() as u32
        },
        id: e.id,
        flags: e.path.len().min(0xfff) as u16,
        flags_extended: 0,
        path: e.path.clone(),
    }
}

pub(super) fn bytes_path(b: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::safe_path;

    #[test]
    fn paths_libgit2_refuses_are_left_to_it() {
        assert!(safe_path(b"arch/x86/Makefile"));
        assert!(safe_path(b".gitignore"));
        assert!(!safe_path(b"../escape"));
        assert!(!safe_path(b"a/./b"));
        assert!(!safe_path(b".git/hooks/post-checkout"));
        assert!(!safe_path(b"sub/.GIT/config"));
        assert!(!safe_path(b"a//b"));
    }
}
