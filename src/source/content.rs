//! The tree's bytes against its commit, by hash.
//!
//! `git status`, libgit2's included, takes a file whose size, mtime, ctime
//! and inode match its index entry as unchanged without reading it. git
//! documents that stat data as a hint that can be fooled ("racy git"): a
//! same-size edit with its old mtime put back inside the index's second, an
//! entry marked `--assume-unchanged` or `--skip-worktree`, or an index
//! written by hand all pass it. That is enough for a no-op, which builds
//! nothing. But before bytes are built, pushed to the shared cache or
//! released, every tracked file of the tree and of its checked-out
//! submodules (recursively) is hashed as a git blob, one thread per core,
//! and compared with the commit.
//!
//! A file whose bytes differ is not judged here: its index entry is made
//! untrustworthy (stat data zeroed, `assume-unchanged` and `skip-worktree`
//! cleared), so that libgit2's own status, diff and reset read it. That way
//! checkout filters (line endings, `ident`) are applied exactly as git
//! applies them, and every later step (the dirty check, `--allow-dirty`'s
//! diff, `--discard-changes`) sees the edit.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use git2::{IndexTime, ObjectType, Oid, Repository};

use super::checkout::{EXECUTABLE, Entry, GITLINK, SYMLINK, bytes_path, entries};
use super::tree::submodules;

/// `assume-unchanged`, in an index entry's flags.
const ASSUME_UNCHANGED: u16 = 0x8000;
/// `skip-worktree`, in an index entry's extended flags.
const SKIP_WORKTREE: u16 = 0x4000;

/// One tracked file to hash: the repository it belongs to (the tree or a
/// submodule) and its entry in the commit that repository should be at.
struct Job {
    repo: usize,
    entry: Entry,
}

/// What one content check hashed, and how long it took (in the build's
/// `--json`, so its cost is seen beside the stage's own time).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Hashed {
    pub files: usize,
    pub seconds: f64,
}

/// Hashes every tracked file of the tree at `tree` and its submodules
/// against their commits, and makes the index entries of those that differ
/// untrustworthy so that git's status reads them. Returns their paths from
/// the top of the tree (empty: every byte is the commit's).
pub fn distrust_changed(tree: &Path) -> anyhow::Result<Vec<String>> {
    check(tree).map(|(files, _)| files)
}

/// [`distrust_changed`], with what it hashed.
pub fn check(tree: &Path) -> anyhow::Result<(Vec<String>, Hashed)> {
    let repo = Repository::open(tree).with_context(|| format!("opening {}", tree.display()))?;
    let mut repos = vec![(String::new(), repo_dir(&repo))];
    let mut jobs = Vec::new();
    let commit = repo.head()?.peel_to_commit()?.id();
    collect(&repo, commit, 0, &mut repos, &mut jobs)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = std::time::Instant::now();
    let changed = hash_all(&repos, &jobs, threads);
    // Its cost, beside the stage's own time (-v; BENCHMARKS.md).
    tracing::debug!(
        "content check: {} files of {} hashed on {threads} threads in {:.2} s, {} differ",
        jobs.len(),
        tree.display(),
        started.elapsed().as_secs_f64(),
        changed.len()
    );
    let mut shown = Vec::new();
    for (r, (prefix, dir)) in repos.iter().enumerate() {
        let mine: Vec<&Job> = changed
            .iter()
            .map(|i| &jobs[*i])
            .filter(|j| j.repo == r)
            .collect();
        if mine.is_empty() {
            continue;
        }
        distrust(dir, &mine).with_context(|| format!("updating the index of {}", dir.display()))?;
        shown.extend(
            mine.iter()
                .map(|j| format!("{prefix}{}", String::from_utf8_lossy(&j.entry.path))),
        );
    }
    shown.sort();
    let hashed = Hashed {
        files: jobs.len(),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((shown, hashed))
}

fn repo_dir(repo: &Repository) -> PathBuf {
    repo.workdir().unwrap_or(repo.path()).to_path_buf()
}

/// The files of `commit` in `repo` (repository number `index`), then those
/// of each checked-out submodule at the commit `commit` records for it. A
/// submodule whose recorded commit it does not hold is left to the status
/// check, which names it as moved.
fn collect(
    repo: &Repository,
    commit: Oid,
    index: usize,
    repos: &mut Vec<(String, PathBuf)>,
    jobs: &mut Vec<Job>,
) -> anyhow::Result<()> {
    let (files, _) = entries(&repo.find_commit(commit)?.tree()?)?;
    jobs.extend(
        files
            .into_iter()
            .filter(|e| e.mode != GITLINK)
            .map(|entry| Job { repo: index, entry }),
    );
    let prefix = repos[index].0.clone();
    for (path, sub, pinned) in submodules(repo, &prefix)? {
        if sub.find_commit(pinned).is_err() {
            continue;
        }
        repos.push((format!("{path}/"), repo_dir(&sub)));
        let n = repos.len() - 1;
        collect(&sub, pinned, n, repos, jobs)?;
    }
    Ok(())
}

/// The jobs whose file differs from its blob (or is missing, or has
/// another type or executable bit), hashed by `threads` threads.
fn hash_all(repos: &[(String, PathBuf)], jobs: &[Job], threads: usize) -> Vec<usize> {
    let threads = threads.clamp(1, 64);
    let mut changed: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                // Interleaved, so big and small files spread evenly.
                scope.spawn(move || {
                    jobs.iter()
                        .enumerate()
                        .skip(t)
                        .step_by(threads)
                        .filter(|(_, j)| !matches(&repos[j.repo].1, &j.entry))
                        .map(|(i, _)| i)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            // A thread that panicked proves nothing: all its files count
            // as changed, so libgit2 reads them.
            .enumerate()
            .flat_map(|(t, h)| {
                h.join()
                    .unwrap_or_else(|_| (0..jobs.len()).skip(t).step_by(threads).collect())
            })
            .collect()
    });
    changed.sort_unstable();
    changed
}

/// Whether the file at `dir`/`entry.path` is byte for byte the entry's blob,
/// with its type and executable bit.
fn matches(dir: &Path, entry: &Entry) -> bool {
    let path = dir.join(bytes_path(&entry.path));
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return false;
    };
    let oid = match entry.mode {
        SYMLINK if meta.file_type().is_symlink() => {
            std::fs::read_link(&path).ok().and_then(|target| {
                use std::os::unix::ffi::OsStrExt;
                Oid::hash_object(ObjectType::Blob, target.as_os_str().as_bytes()).ok()
            })
        }
        SYMLINK => None,
        mode if meta.is_file() && ((mode == EXECUTABLE) == (meta.mode() & 0o100 != 0)) => {
            Oid::hash_file(ObjectType::Blob, &path).ok()
        }
        _ => None,
    };
    oid == Some(entry.id)
}

/// Zeroes the stat data of `jobs`' index entries and clears their
/// `assume-unchanged` and `skip-worktree` bits, so git hashes them.
fn distrust(dir: &Path, jobs: &[&Job]) -> anyhow::Result<()> {
    let repo = Repository::open(dir)?;
    let mut index = repo.index()?;
    for job in jobs {
        let Some(mut entry) = index.get_path(bytes_path(&job.entry.path), 0) else {
            continue; // not in the index: the status check names it
        };
        entry.mtime = IndexTime::new(0, 0);
        entry.ctime = IndexTime::new(0, 0);
        entry.ino = 0;
        entry.flags &= !ASSUME_UNCHANGED;
        entry.flags_extended &= !SKIP_WORKTREE;
        index.add(&entry)?;
    }
    index.write()?;
    Ok(())
}
