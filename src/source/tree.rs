//! A source's checkout: inspect it cheaply, check out a commit without
//! overwriting hand edits, and recover a broken one without losing work.
//!
//! A tree is a plain git repository whose objects come from its store
//! through `objects/info/alternates`, so the two kernel trees share one
//! object store. Its remote `current` always carries the pinned URL, as in
//! build.sh. HEAD is detached at the commit being built.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use git2::{Oid, Repository, Status, StatusOptions, build::CheckoutBuilder};

use crate::fsutil::utc_stamp;
use crate::workdir::StageDir;

/// Written while a checkout moves files; found at startup it means the
/// last checkout was interrupted half-way.
const CHECKOUT_MARKER: &str = "snp-build-checkout";

/// What a cheap look at a tree found.
#[derive(Debug)]
pub enum State {
    Missing,
    /// Readable, HEAD at `head`.
    Healthy {
        head: Oid,
    },
    /// Unusable; `user_work` is whether it holds uncommitted changes or
    /// untracked files (`None`: too broken to tell).
    Broken {
        reason: String,
        user_work: Option<bool>,
    },
}

/// Looks at `path` without scanning the work tree: the repository opens,
/// HEAD and its commit and tree are readable, the index is readable and not
/// locked or emptied, and no checkout was interrupted. `store_objects` is
/// the alternates target the tree must point at.
pub fn inspect(path: &Path, store_objects: &Path) -> State {
    if !path.exists() {
        return State::Missing;
    }
    let repo = match Repository::open(path) {
        Ok(r) => r,
        Err(e) => {
            return broken(
                None,
                format!("not a readable git repository ({})", e.message()),
            );
        }
    };
    let git_dir = repo.path().to_path_buf();
    if git_dir.join(CHECKOUT_MARKER).exists() {
        // The work tree is half old, half new: local edits cannot be told
        // apart from the interrupted checkout, so the tree is moved aside.
        return State::Broken {
            reason: "a checkout was interrupted half-way".into(),
            user_work: None,
        };
    }
    let alternates =
        std::fs::read_to_string(git_dir.join("objects/info/alternates")).unwrap_or_default();
    if alternates.trim() != store_objects.display().to_string() {
        return broken(
            Some(&repo),
            "its object store link (objects/info/alternates) is missing or points elsewhere".into(),
        );
    }
    let head = match repo.head() {
        Ok(h) => h,
        Err(e) => return broken(Some(&repo), format!("HEAD is unreadable ({})", e.message())),
    };
    let commit = match head.peel_to_commit() {
        Ok(c) => c,
        Err(e) => {
            return broken(
                Some(&repo),
                format!("the HEAD commit is missing ({})", e.message()),
            );
        }
    };
    let tree = match commit.tree() {
        Ok(t) => t,
        Err(e) => {
            return broken(
                Some(&repo),
                format!("the HEAD tree is missing ({})", e.message()),
            );
        }
    };
    if git_dir.join("index.lock").exists() {
        return broken(
            Some(&repo),
            "a leftover index.lock from an interrupted git operation".into(),
        );
    }
    let index = match repo.index() {
        Err(e) => {
            return broken(
                Some(&repo),
                format!("the index is corrupt ({})", e.message()),
            );
        }
        Ok(index) if index.is_empty() && !tree.is_empty() => {
            return broken(Some(&repo), "the index is missing or empty".into());
        }
        Ok(index) => index,
    };
    if let Some(sub) = lost_submodule(path, &index) {
        // Without its git dir nothing can tell a submodule's own edits
        // from its commit: the tree is moved aside, not repaired in place.
        return State::Broken {
            reason: format!("submodule {sub} has lost its git dir"),
            user_work: None,
        };
    }
    State::Healthy { head: commit.id() }
}

/// A checked-out submodule (a gitlink whose directory has a `.git` file)
/// whose git dir is gone or unreadable (`rm -rf .git/modules`).
fn lost_submodule(workdir: &Path, index: &git2::Index) -> Option<String> {
    index
        .iter()
        .filter(|e| e.mode == 0o160000)
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .find(|sub| {
            let dir = workdir.join(sub);
            dir.join(".git").exists() && Repository::open(&dir).is_err()
        })
}

fn broken(repo: Option<&Repository>, reason: String) -> State {
    State::Broken {
        reason,
        user_work: repo.and_then(|r| has_user_work(r).ok()),
    }
}

/// Whether the tree holds modified tracked files, staged changes or
/// untracked (not ignored) files, in it or in any submodule. This scans the
/// work tree: only called when something already looks wrong.
pub fn has_user_work(repo: &Repository) -> Result<bool, git2::Error> {
    Ok(!local_changes(repo)?.is_empty())
}

/// Moves a stage's broken tree aside to `src.broken-<UTC timestamp>` and
/// returns the new path. Never deletes.
pub fn move_aside(dir: &StageDir) -> anyhow::Result<PathBuf> {
    let path = dir.tree();
    let stamp = utc_stamp(SystemTime::now());
    let mut aside = dir.broken_tree(&stamp);
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = dir.broken_tree(&format!("{stamp}-{n}"));
    }
    let path = path.as_path();
    std::fs::rename(path, &aside)
        .with_context(|| format!("moving {} aside to {}", path.display(), aside.display()))?;
    Ok(aside)
}

/// A new tree at `path` checked out at `commit`, linked to the store. Made
/// in a temporary directory and renamed into place, so an interrupted
/// clone leaves nothing half-made under the tree's name.
pub fn create(
    path: &Path,
    store_objects: &Path,
    url: &str,
    commit: Oid,
) -> anyhow::Result<Repository> {
    let parent = path.parent().context("tree path has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    remove_leftover_temps(path)?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let repo = Repository::init(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    std::fs::write(
        repo.path().join("objects/info/alternates"),
        format!("{}\n", store_objects.display()),
    )
    .context("linking the tree to its object store")?;
    drop(repo);
    let repo = Repository::open(&tmp)?;
    set_remote(&repo, url)?;
    repo.set_head_detached(commit)?;
    // Every core writes files (libgit2's own checkout is one thread),
    // unless a checkout filter could apply: then libgit2 does it.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let written = super::checkout::fresh(&repo, commit, threads)
        .with_context(|| format!("checking out {commit} in {}", tmp.display()))?;
    if !written {
        repo.checkout_head(Some(CheckoutBuilder::new().force()))
            .with_context(|| format!("checking out {commit} in {}", tmp.display()))?;
    }
    drop(repo);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(Repository::open(path)?)
}

/// Temporary clones left by an interrupted run (ours, never user work).
fn remove_leftover_temps(path: &Path) -> anyhow::Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let prefix = format!(
        ".{}.tmp-",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    for entry in std::fs::read_dir(parent)?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The remote `current` carries the pinned URL on every run (build.sh).
pub fn set_remote(repo: &Repository, url: &str) -> anyhow::Result<()> {
    match repo.find_remote("current") {
        Ok(r) if r.url().ok() == Some(url) => {}
        Ok(_) => repo.remote_set_url("current", url)?,
        Err(_) => {
            repo.remote("current", url)?;
        }
    }
    Ok(())
}

/// Moves an existing healthy tree from its HEAD to `commit`. Hand-edited
/// tracked files that the checkout would overwrite stop it (exit 7) unless
/// `discard` is set, in which case their diff is saved to `diff_path` first.
pub fn checkout(
    repo: &Repository,
    commit: Oid,
    source: &str,
    discard: Option<&Path>,
) -> anyhow::Result<Option<PathBuf>> {
    let target = repo.find_commit(commit)?;
    let mut saved = None;
    let modified = modified_tracked_files(repo)?;
    if !modified.is_empty() {
        match discard {
            None => return Err(LocalChanges::new(source, repo_workdir(repo), modified).into()),
            Some(diff_path) => {
                save_diff(repo, diff_path)?;
                saved = Some(diff_path.to_path_buf());
            }
        }
    }
    let marker = repo.path().join(CHECKOUT_MARKER);
    std::fs::write(&marker, commit.to_string()).context("marking the checkout")?;
    let mut builder = CheckoutBuilder::new();
    if saved.is_some() {
        builder.force();
    } else {
        builder.safe();
    }
    repo.checkout_tree(target.as_object(), Some(&mut builder))
        .with_context(|| format!("checking out {commit}"))?;
    repo.set_head_detached(commit)?;
    std::fs::remove_file(&marker).context("clearing the checkout marker")?;
    Ok(saved)
}

fn repo_workdir(repo: &Repository) -> PathBuf {
    repo.workdir().unwrap_or(repo.path()).to_path_buf()
}

/// Submodules are trees too: each checked-out submodule of `repo` (one
/// level; callers recurse), with its path under `prefix`, its repository and
/// the commit the superproject's HEAD records for it. A submodule that is not
/// checked out (no git dir: QEMU's `roms/*`, which build.sh never fetches)
/// holds nothing that is built, and is left out.
pub(super) fn submodules(
    repo: &Repository,
    prefix: &str,
) -> Result<Vec<(String, Repository, Oid)>, git2::Error> {
    let workdir = repo_workdir(repo);
    let mut out = Vec::new();
    for sm in repo.submodules()? {
        let Some(pinned) = sm.head_id() else {
            continue; // in .gitmodules but not in the commit
        };
        if let Ok(sub) = Repository::open(workdir.join(sm.path())) {
            out.push((
                format!("{prefix}{}", sm.path().to_string_lossy()),
                sub,
                pinned,
            ));
        }
    }
    Ok(out)
}

/// The commit a repository's HEAD is at, if it has one.
fn head_commit(repo: &Repository) -> Option<Oid> {
    repo.head().ok()?.peel_to_commit().ok().map(|c| c.id())
}

/// A submodule whose HEAD is not the commit its superproject records.
fn moved_submodule(path: &str, head: Option<Oid>, pinned: Oid) -> String {
    let at = head.map_or_else(|| "no commit".to_string(), short);
    format!("{path} (submodule at {at}, pinned {})", short(pinned))
}

fn short(oid: Oid) -> String {
    super::short_sha(&oid.to_string()).to_string()
}

/// Tracked files whose content differs from HEAD (staged or not), and
/// submodules moved off or edited, recursively: what a checkout or a
/// submodule update would overwrite.
fn modified_tracked_files(repo: &Repository) -> Result<Vec<String>, git2::Error> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(false).exclude_submodules(true);
    let changed = Status::WT_MODIFIED
        | Status::WT_DELETED
        | Status::WT_TYPECHANGE
        | Status::WT_RENAMED
        | Status::INDEX_MODIFIED
        | Status::INDEX_DELETED
        | Status::INDEX_NEW
        | Status::INDEX_RENAMED
        | Status::INDEX_TYPECHANGE;
    let files = repo
        .statuses(Some(&mut opts))?
        .iter()
        .filter(|e| e.status().intersects(changed))
        .filter_map(|e| e.path().ok().map(String::from))
        .collect();
    with_submodules(repo, files, modified_tracked_files)
}

/// `files` of `repo`, then for each checked-out submodule whether it moved
/// off its recorded commit and what `of` finds in it, named from the top.
fn with_submodules(
    repo: &Repository,
    mut files: Vec<String>,
    of: fn(&Repository) -> Result<Vec<String>, git2::Error>,
) -> Result<Vec<String>, git2::Error> {
    for (path, sub, pinned) in submodules(repo, "")? {
        let head = head_commit(&sub);
        if head != Some(pinned) {
            files.push(moved_submodule(&path, head, pinned));
        }
        files.extend(of(&sub)?.into_iter().map(|f| format!("{path}/{f}")));
    }
    Ok(files)
}

/// Everything that makes the tree differ from its HEAD commit: tracked
/// files changed (staged or not), and untracked files its own ignore rules
/// do not cover (an untracked directory is named once), and the same in
/// every checked-out submodule, recursively (a file there is named by its
/// path from the top), plus any submodule whose HEAD is not the commit the
/// superproject records. Uses the index's stat cache: cheap when nothing
/// changed (see `content` for the check by hash).
pub fn local_changes(repo: &Repository) -> Result<Vec<String>, git2::Error> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false)
        .exclude_submodules(true);
    let files = repo
        .statuses(Some(&mut opts))?
        .iter()
        .filter(|e| !e.status().is_ignored() && e.status() != Status::CURRENT)
        .filter_map(|e| e.path().ok().map(String::from))
        .collect();
    with_submodules(repo, files, local_changes)
}

/// `git diff HEAD --submodule=diff` of the tree, untracked files included
/// as new ones (what `--allow-dirty` builds and `--discard-changes` drops):
/// each submodule's own changes against the commit its superproject
/// records, with paths from the top, never just `Subproject commit ...`.
pub fn diff_text(repo: &Repository) -> anyhow::Result<Vec<u8>> {
    let mut text = Vec::new();
    diff_into(repo, &repo.head()?.peel_to_tree()?, "", true, &mut text)?;
    Ok(text)
}

/// Appends the diff of `repo`'s work tree against `base`, paths prefixed
/// with `prefix`, then each submodule's against the commit `repo`'s HEAD
/// records for it.
fn diff_into(
    repo: &Repository,
    base: &git2::Tree<'_>,
    prefix: &str,
    untracked: bool,
    text: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let (old, new) = (format!("a/{prefix}"), format!("b/{prefix}"));
    let mut opts = git2::DiffOptions::new();
    opts.ignore_submodules(true)
        .old_prefix(old.as_str())
        .new_prefix(new.as_str());
    if untracked {
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .show_untracked_content(true);
    }
    let diff = repo.diff_tree_to_workdir_with_index(Some(base), Some(&mut opts))?;
    text.extend(patch_bytes(&diff)?);
    for (path, sub, pinned) in submodules(repo, prefix)? {
        // The recorded commit may be missing from a submodule the user
        // moved: then its diff is from its HEAD (the move itself is named
        // by `local_changes`).
        let base = match sub.find_commit(pinned) {
            Ok(c) => c.tree()?,
            Err(_) => sub.head()?.peel_to_tree()?,
        };
        diff_into(&sub, &base, &format!("{path}/"), untracked, text)?;
    }
    Ok(())
}

/// A diff as `git diff` prints it (the patch text, bytes as they are).
fn patch_bytes(diff: &git2::Diff<'_>) -> anyhow::Result<Vec<u8>> {
    let mut text = Vec::new();
    diff.print(git2::DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            text.push(line.origin() as u8);
        }
        text.extend_from_slice(line.content());
        true
    })?;
    Ok(text)
}

/// Puts the tree back at its HEAD, and every checked-out submodule at the
/// commit its superproject records, recursively: tracked files reset,
/// untracked files their ignore rules do not cover removed (call
/// [`diff_text`] first).
pub fn reset_to_head(repo: &Repository) -> anyhow::Result<()> {
    let head = repo.head()?.peel_to_commit()?.id();
    reset_to(repo, head)
}

fn reset_to(repo: &Repository, commit: Oid) -> anyhow::Result<()> {
    let workdir = repo_workdir(repo);
    let target = repo.find_commit(commit).with_context(|| {
        format!(
            "{}: the recorded commit {commit} is not there; run `snp-build fetch` to restore it",
            workdir.display()
        )
    })?;
    repo.set_head_detached(commit)?;
    repo.reset(target.as_object(), git2::ResetType::Hard, None)
        .with_context(|| format!("resetting {} to its commit", workdir.display()))?;
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false)
        .exclude_submodules(true);
    for e in repo.statuses(Some(&mut opts))?.iter() {
        if e.status().contains(Status::WT_NEW)
            && let Ok(p) = e.path()
        {
            let path = workdir.join(p.trim_end_matches('/'));
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("removing {}", path.display()))?;
        }
    }
    for (_, sub, pinned) in submodules(repo, "")? {
        reset_to(&sub, pinned)?;
    }
    Ok(())
}

/// `git diff HEAD` of the tree and its submodules' tracked files, written
/// to `path`.
fn save_diff(repo: &Repository, path: &Path) -> anyhow::Result<()> {
    let mut text = Vec::new();
    diff_into(repo, &repo.head()?.peel_to_tree()?, "", false, &mut text)?;
    crate::fsutil::write_atomic(path, &text)
        .with_context(|| format!("saving the local changes to {}", path.display()))
}

/// A tree differs from its pinned commit (exit 7): a checkout would
/// overwrite hand edits, or a build would build what was not pinned.
#[derive(Debug)]
pub struct LocalChanges {
    pub source: String,
    pub tree: PathBuf,
    pub files: Vec<String>,
    /// A build (which `--allow-dirty` may let through), not a checkout.
    pub building: bool,
    /// The tree changed while its stage was building.
    pub during_build: bool,
}

impl LocalChanges {
    pub fn new(source: &str, tree: PathBuf, files: Vec<String>) -> Self {
        LocalChanges {
            source: source.to_string(),
            tree,
            files,
            building: false,
            during_build: false,
        }
    }
}

impl std::fmt::Display for LocalChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.during_build {
            writeln!(
                f,
                "{}: {} changed while its stage was building; what it built is not pushed or released, and the stage runs again next time:",
                self.source,
                self.tree.display()
            )?;
        } else if self.building {
            writeln!(
                f,
                "{}: {} differs from its pinned commit; building it would build what was not pinned:",
                self.source,
                self.tree.display()
            )?;
        } else {
            writeln!(
                f,
                "{}: {} has local changes; checking out the pinned commit would overwrite them:",
                self.source,
                self.tree.display()
            )?;
        }
        for file in &self.files {
            writeln!(f, "    {file}")?;
        }
        write!(
            f,
            "  help: keep the change as a patch: `git -C {} diff > patches/{}/0001-my-change.patch`\n  help: or drop it: pass --discard-changes (its diff is saved under the work dir first)",
            self.tree.display(),
            self.source
        )?;
        if self.building {
            write!(
                f,
                "\n  help: or build it anyway with --allow-dirty (the release then says it is dirty, with the diff)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for LocalChanges {}
