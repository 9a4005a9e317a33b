//! Sources: bring each tree under the work dir to its pinned commit with
//! git2 (no `git` subprocess), lock every pin to a full SHA, share one
//! object store between the two kernels, and recover broken checkouts.
//!
//! Where things go under the work dir ([`WorkDir`]):
//!
//! | path | what |
//! |---|---|
//! | `git/<store>.git` | bare object store per upstream family (`linux`, shared by both kernels; `qemu`; `ovmf`). Holds no user work: re-made when damaged. |
//! | `<source>/src` | the tree: its objects come from the store (`objects/info/alternates`), HEAD detached at the pinned commit, remote `current` = the pinned URL |
//! | `<source>/src.broken-<UTC>` | a broken tree that held (or may have held) user work, moved aside |
//! | `saved-diffs/<source>-<UTC>.diff` | hand edits dropped by `--discard-changes` |
//!
//! Never: runs a `git` subprocess, or knows which components exist (it
//! syncs whatever [`Source`]s it is given).
//!
//! Guarantees:
//! - A matching lock entry is used as is: a no-op fetch opens the store and
//!   the tree, checks HEAD and the pinned objects, and transfers nothing.
//! - Only what the pin needs is fetched: one branch, one tag or one commit,
//!   at depth 1 where the transport allows it (libgit2's local transport
//!   does not), deeper only when a commit must be found below a branch tip.
//! - Nothing the user had is lost: hand edits stop a checkout (exit 7); a
//!   broken tree with (possibly) uncommitted work is moved aside, never
//!   deleted; a failed fetch leaves existing trees untouched.

mod checkout;
pub mod content;
pub mod lock;
pub mod patch;
pub mod remote;
pub mod submodule;
pub mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, anyhow, bail};
use git2::{Oid, Repository};
use serde::Serialize;

use crate::config::{PinUrl, Rev, Source};
use crate::fingerprint::SourceRecord;
use crate::fsutil::utc_stamp;
use crate::progress::{Progress, human_bytes};
use crate::workdir::WorkDir;
use lock::{Entry, Lock, LockMismatch, TagMoved};
use patch::{PatchFile, Series};
use remote::{RemoteRef, Transfer};
use tree::LocalChanges;

/// Use the lock, or re-resolve branches and tags (`snp-build update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    UseLock,
    Update,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mode: Mode,
    /// Fail instead of resolving anything the lock does not cover.
    pub locked: bool,
    /// Save hand edits as a diff, then check out over them.
    pub discard_changes: bool,
}

/// What a sync did to a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SyncAction {
    /// A new tree.
    Cloned,
    /// An existing tree moved to another commit.
    CheckedOut,
    Unchanged,
    /// A broken tree, cloned again (moved aside first if it held work).
    Recovered,
    /// Not fetched: its stage's outputs stand without the tree (up to
    /// date, or pulled from the shared cache), and the stamp recorded what
    /// the release says of it.
    Recorded,
}

impl std::fmt::Display for SyncAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncAction::Cloned => "cloned",
            SyncAction::Recorded => "recorded",
            SyncAction::CheckedOut => "checked-out",
            SyncAction::Unchanged => "unchanged",
            SyncAction::Recovered => "recovered",
        })
    }
}

/// A tree built with local changes (`--allow-dirty`).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Dirty {
    /// What differs from the pinned (and patched) commit.
    pub files: Vec<String>,
    /// The diff of it, kept beside the tree until the tree is clean again.
    pub diff: PathBuf,
    pub diff_sha256: String,
}

/// The files in which the tree at `tree` differs from its HEAD (tracked
/// changes and untracked files its ignore rules do not cover), read only;
/// empty when it does not, or when there is no tree yet.
pub fn tree_changes(tree: &Path) -> anyhow::Result<Vec<String>> {
    if !tree.join(".git").exists() {
        return Ok(Vec::new());
    }
    let repo = Repository::open(tree).with_context(|| format!("opening {}", tree.display()))?;
    tree::local_changes(&repo).with_context(|| format!("reading the status of {}", tree.display()))
}

/// What a build does with a tree that differs from its pinned commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirtyPolicy {
    /// Stop (exit 7), naming the files.
    Refuse,
    /// `--discard-changes`: save the diff, then reset the tree.
    Discard,
    /// `--allow-dirty`: build it as it is, and say so.
    Allow,
}

/// Compares a synced tree with its pinned (and patched) commit before a
/// build, its submodules' trees included: tracked changes and untracked
/// files its ignore rules do not cover. With `hash` (bytes are about to be
/// built) the index's stat cache is not trusted: every tracked file is
/// hashed first ([`content`]); without it (a stage that will not run) the
/// stat cache stands, as for `git status`. A differing tree is refused,
/// discarded or recorded as `policy` says.
pub fn check_clean(
    synced: &mut Synced,
    work: &WorkDir,
    policy: DirtyPolicy,
    hash: bool,
) -> anyhow::Result<()> {
    let reading = || {
        format!(
            "{}: reading the status of {}",
            synced.source,
            synced.tree.display()
        )
    };
    if hash {
        let (_, hashed) = content::check(&synced.tree).with_context(reading)?;
        synced.content_check = Some(ContentCheck {
            files: hashed.files,
            before_s: hashed.seconds,
            after_s: None,
        });
    }
    let repo = Repository::open(&synced.tree)
        .with_context(|| format!("opening {}", synced.tree.display()))?;
    let files = tree::local_changes(&repo).with_context(reading)?;
    let kept = work.stage(synced.source).dirty_diff();
    if files.is_empty() {
        synced.dirty = None;
        if kept.exists() {
            std::fs::remove_file(&kept).with_context(|| format!("removing {}", kept.display()))?;
        }
        return Ok(());
    }
    let progress = Progress::new(synced.source);
    match policy {
        DirtyPolicy::Refuse => Err(LocalChanges {
            building: true,
            ..LocalChanges::new(synced.source, synced.tree.clone(), files)
        }
        .into()),
        DirtyPolicy::Discard => {
            let diff = work.saved_diff(synced.source, &utc_stamp(SystemTime::now()));
            crate::fsutil::write_atomic(&diff, &tree::diff_text(&repo)?)?;
            tree::reset_to_head(&repo)?;
            // Proof, not hope: the reset is checked by hash as well.
            let left = content::distrust_changed(&synced.tree).with_context(reading)?;
            let left = if left.is_empty() {
                tree::local_changes(&repo)?
            } else {
                left
            };
            if !left.is_empty() {
                anyhow::bail!(
                    "{}: --discard-changes could not put {} back at its commit: {} still differ(s); the diff is saved in {}\n  help: move the tree aside and run again (it is checked out afresh)",
                    synced.source,
                    synced.tree.display(),
                    left.join(", "),
                    diff.display()
                );
            }
            progress.warn(format!(
                "local changes discarded; their diff is saved in {}",
                diff.display()
            ));
            synced.saved_diff = Some(diff);
            synced.dirty = None;
            Ok(())
        }
        DirtyPolicy::Allow => {
            let text = tree::diff_text(&repo)?;
            crate::fsutil::write_atomic(&kept, &text)?;
            let diff_sha256 = crate::hash::sha256_hex(&text);
            progress.warn(format!(
                "building {} changed file(s) as they are (--allow-dirty): the release says it is dirty, with the diff (sha256 {}) kept in {}",
                files.len(),
                &diff_sha256[..16],
                kept.display()
            ));
            synced.dirty = Some(Dirty {
                files,
                diff: kept,
                diff_sha256,
            });
            Ok(())
        }
    }
}

/// After a stage built from a clean tree, and before what it built is
/// pushed or released: the tree is hashed again. A file that changed
/// while the stage ran means its outputs may hold bytes that were never
/// pinned, so its stamp is removed (the next build runs it again) and the
/// build stops (exit 7).
pub fn check_unchanged(synced: &mut Synced, stamp: &Path) -> anyhow::Result<()> {
    if synced.dirty.is_some() || !synced.tree.join(".git").exists() {
        return Ok(());
    }
    let (files, hashed) = content::check(&synced.tree).with_context(|| {
        format!(
            "{}: hashing {} after the build",
            synced.source,
            synced.tree.display()
        )
    })?;
    if let Some(c) = synced.content_check.as_mut() {
        c.after_s = Some(hashed.seconds);
    }
    if files.is_empty() {
        return Ok(());
    }
    crate::fingerprint::remove_stamp(stamp)?;
    Err(LocalChanges {
        building: true,
        during_build: true,
        ..LocalChanges::new(synced.source, synced.tree.clone(), files)
    }
    .into())
}

/// What happened to one source.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Synced {
    /// The source's name (`kernel-host`).
    pub source: &'static str,
    pub url: String,
    pub pin: String,
    pub sha: String,
    /// The SHA the lock had before, when it differs.
    pub previous_sha: Option<String>,
    pub submodules: BTreeMap<String, String>,
    pub received_objects: usize,
    pub received_bytes: usize,
    pub action: SyncAction,
    pub tree: PathBuf,
    pub moved_aside: Option<PathBuf>,
    pub saved_diff: Option<PathBuf>,
    /// HEAD of the tree when patches are carried (the pinned `sha` stays
    /// the source's name).
    pub patched_head: Option<String>,
    pub series_hash: Option<String>,
    /// Set when a build goes ahead with local changes (`--allow-dirty`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirty: Option<Dirty>,
    /// Committer time of the pinned commit (Unix seconds): the release's
    /// timestamps default to the newest of these.
    pub commit_time: i64,
    pub patches: Vec<PatchFile>,
    /// The tree's facts as a stamp recorded them, for a source that was
    /// not fetched ([`SyncAction::Recorded`]).
    #[serde(skip)]
    pub recorded: Option<SourceRecord>,
    /// The check by hash of a tree whose stage ran (its cost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_check: Option<ContentCheck>,
}

/// What the check by hash cost for one tree: before its stage ran and
/// after (seconds).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ContentCheck {
    pub files: usize,
    pub before_s: f64,
    pub after_s: Option<f64>,
}

/// Where a [`Synced`] comes from.
pub enum Origin {
    /// Fetched now.
    Fetched(Fetched),
    /// Not fetched ([`SyncAction::Recorded`]): its stage's stamp recorded
    /// what the release says of the tree.
    Recorded(SourceRecord),
}

/// What a fetch did and read of a tree.
pub struct Fetched {
    pub action: SyncAction,
    pub transfer: Transfer,
    pub moved_aside: Option<PathBuf>,
    pub saved_diff: Option<PathBuf>,
    /// The patched commit, when patches are carried.
    pub patched_head: Option<String>,
    /// Committer time of the pinned commit (Unix seconds).
    pub commit_time: i64,
}

/// A commit's short name: 12 hex digits, the kernel's own abbreviation
/// length.
pub fn short_sha(sha: &str) -> &str {
    &sha[..12.min(sha.len())]
}

impl Synced {
    /// The one way a `Synced` is made: `source` at `sha` with its
    /// `submodules` (as resolved, or as the lock has them) and its patch
    /// series (read from the pin file's side); `tree` is where its tree is
    /// (or would be); `origin` says whether it was fetched now or stands
    /// for a tree that was not fetched, as its stamp recorded it.
    pub fn new(
        source: &Source,
        series: &Series,
        sha: String,
        submodules: BTreeMap<String, String>,
        tree: PathBuf,
        origin: Origin,
    ) -> Synced {
        let (fetched, recorded) = match origin {
            Origin::Fetched(f) => (f, None),
            // Nothing received or moved: the tree's facts as recorded.
            Origin::Recorded(r) => (
                Fetched {
                    action: SyncAction::Recorded,
                    transfer: Transfer::default(),
                    moved_aside: None,
                    saved_diff: None,
                    patched_head: r.patched_head.clone(),
                    commit_time: r.commit_time,
                },
                Some(r),
            ),
        };
        Synced {
            source: source.name,
            url: source.url.redacted(),
            pin: source.rev.to_string(),
            sha,
            previous_sha: None,
            submodules,
            received_objects: fetched.transfer.objects,
            received_bytes: fetched.transfer.bytes,
            action: fetched.action,
            tree,
            moved_aside: fetched.moved_aside,
            saved_diff: fetched.saved_diff,
            patched_head: fetched.patched_head,
            series_hash: (!series.is_empty()).then(|| series.hash.clone()),
            dirty: None,
            commit_time: fetched.commit_time,
            patches: series.files.clone(),
            recorded,
            content_check: None,
        }
    }

    /// What a release says of the tree that only the tree can tell: as
    /// recorded, or read from the tree now.
    pub fn record(&self) -> SourceRecord {
        if let Some(r) = &self.recorded {
            return r.clone();
        }
        let submodule_urls = submodule::urls(&self.tree);
        let submodule_licenses = submodule_urls
            .keys()
            .filter_map(|path| {
                let license = submodule::declared_license(&self.tree.join(path))?;
                Some((path.clone(), license))
            })
            .collect();
        SourceRecord {
            commit_time: self.commit_time,
            patched_head: self.patched_head.clone(),
            submodule_urls,
            license: submodule::declared_license(&self.tree),
            submodule_licenses,
        }
    }

    /// What was built, in short: [`short_sha`], with `-dirty` when the
    /// tree was built with local changes: a dirty build never names the
    /// pinned SHA alone (`source-commit.*`, the manifest's `short_sha`, the
    /// kernels' LOCALVERSION).
    pub fn built_name(&self) -> String {
        let short = short_sha(&self.sha);
        match self.dirty {
            Some(_) => format!("{short}-dirty"),
            None => short.to_string(),
        }
    }
}

/// Brings the trees of `ids` to their pins, updating and saving `lock`
/// after each source.
pub fn sync(
    sources: &[&Source],
    work: &WorkDir,
    lock: &mut Lock,
    opts: Options,
) -> anyhow::Result<Vec<Synced>> {
    limit_pack_windows();
    // Every series is read and checked before anything is fetched.
    let series = sources
        .iter()
        .map(|s| {
            patch::read_series(&s.patches).with_context(|| format!("{}: patch series", s.name))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // --locked is checked for every source before anything is fetched.
    if opts.locked {
        check_locked(sources, lock, opts.mode, work)?;
    }
    let mut done = Vec::new();
    for (source, series) in sources.iter().zip(&series) {
        let locked = match opts.mode {
            Mode::UseLock => lock.decide(source).cloned(),
            Mode::Update => {
                tracing::debug!(
                    stage = source.name,
                    "fetch decision: update: resolving [{}] ({}) at {}",
                    source.table,
                    source.rev,
                    source.url
                );
                None
            }
        };
        let previous = lock.previous(source.name).map(|e| e.sha.clone());
        crate::timings::phase(source.name, "fetch");
        let synced = sync_one(source, series, work, locked.as_ref(), opts);
        crate::timings::pause(source.name);
        let synced = synced?;
        lock.set(
            source.name,
            Entry::new(source, synced.sha.clone(), synced.submodules.clone()),
        );
        lock.save()?;
        done.push(Synced {
            previous_sha: previous.filter(|p| *p != synced.sha),
            ..synced
        });
    }
    Ok(done)
}

/// How much of a pack libgit2 keeps mapped. By default it maps packs in
/// 1 GiB windows and keeps up to 8 GiB mapped, so indexing a kernel's pack
/// (~240 MiB) and checking out two trees from it kept the whole pack
/// resident: 355 MiB at peak against `git clone --depth 1`'s 283 MiB on
/// Debian's kernel. 32 MiB windows under a 96 MiB limit let it unmap what
/// it no longer reads: 199 MiB, in the same time (side by side, three
/// runs each). Process-wide settings, set once before any fetch.
fn limit_pack_windows() {
    const WINDOW: usize = 32 << 20;
    const MAPPED: usize = 96 << 20;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: libgit2's global options, written once, from the thread
        // that syncs the sources, while no other thread uses libgit2 (the
        // stages start after the sync).
        unsafe {
            let _ = git2::opts::set_mwindow_size(WINDOW);
            let _ = git2::opts::set_mwindow_mapped_limit(MAPPED);
        }
    });
}

/// `--locked`: every source must have its lock entry (and `update`
/// may not move any), checked before anything is fetched or pulled; then
/// every tag pin is asked upstream ([`check_tags`]).
pub fn check_locked(
    sources: &[&Source],
    lock: &Lock,
    mode: Mode,
    work: &WorkDir,
) -> anyhow::Result<()> {
    for s in sources {
        if mode == Mode::Update || lock.get(s).is_none() {
            return Err(LockMismatch {
                source_name: s.name.to_string(),
                reason: match lock.previous(s.name) {
                    Some(_) => format!(
                        "the lock entry was resolved from another pin than [{}] now has",
                        s.table
                    ),
                    None => "the lock has no entry for it".into(),
                },
                lock: lock.path.display().to_string(),
            }
            .into());
        }
    }
    check_tags(sources, lock, work)
}

/// A tag is meant never to move, so `--locked` asks upstream where each
/// pinned tag is (one listing, no objects) and refuses one that moved
/// away from the locked commit. Branches are expected to move and commits
/// cannot, so they are not asked; a build without `--locked` asks nothing
/// while the lock covers the pin (it stays fast and offline).
fn check_tags(sources: &[&Source], lock: &Lock, work: &WorkDir) -> anyhow::Result<()> {
    for source in sources {
        let (Rev::Tag { name }, Some(entry)) = (&source.rev, lock.get(source)) else {
            continue;
        };
        let progress = Progress::new(source.name);
        let store = open_store(&work.store(source.store), &progress)?;
        let fetcher = Fetcher {
            store: &store,
            source,
            progress: &progress,
        };
        let upstream = fetcher.tag(&fetcher.list()?, name)?.commit.to_string();
        if upstream != entry.sha {
            return Err(TagMoved {
                source_name: source.name.to_string(),
                tag: name.clone(),
                url: source.url.redacted(),
                locked: short_sha(&entry.sha).to_string(),
                upstream: short_sha(&upstream).to_string(),
                lock: lock.path.display().to_string(),
            }
            .into());
        }
    }
    Ok(())
}

/// Brings one source's tree to its pin: the store, the pin, the patches,
/// the tree, its refs and submodules, each a step below, and one line of
/// progress that says what was done.
fn sync_one(
    source: &Source,
    series: &Series,
    work: &WorkDir,
    locked: Option<&Entry>,
    opts: Options,
) -> anyhow::Result<Synced> {
    let progress = Progress::new(source.name);
    if source.url.has_secret() {
        progress.warn(format!(
            "the URL of [{}] carries a password or a token: snp-build keeps it out of every file and message, but git's credential helper (`git config --global credential.helper`) or ssh-agent would keep it out of the pin file too",
            source.table
        ));
    }
    let store = trusted_store(source, work, locked, &progress)?;
    let (oid, transfer) = pin(&store, source, locked, &progress)?;
    // A series that does not apply leaves the tree at the pinned commit.
    let patched = patched_commit(&store, source.name, oid, series);
    let target = *patched.as_ref().unwrap_or(&oid);
    let placed = place_tree(source, work, &store, target, opts, &progress)?;
    set_refs(&store, &placed, source, oid, series, target)?;
    let patched = patched?;
    let (submodules, discarded) = sync_submodules(source, work, &placed.repo, opts, &progress)?;
    progress.finish(synced_line(
        source,
        series,
        oid,
        patched,
        placed.action,
        transfer,
    ));
    let fetched = Fetched {
        action: placed.action,
        transfer,
        moved_aside: placed.moved_aside,
        saved_diff: placed.saved_diff.or(discarded),
        patched_head: (!series.is_empty()).then(|| patched.to_string()),
        commit_time: store.find_commit(oid)?.time().seconds(),
    };
    Ok(Synced::new(
        source,
        series,
        oid.to_string(),
        submodules,
        placed.path,
        Origin::Fetched(fetched),
    ))
}

/// The source's object store, opened (re-made when unreadable) and,
/// when something must be fetched into it, checked first: a fetch would
/// trust refs whose objects are gone.
fn trusted_store(
    source: &Source,
    work: &WorkDir,
    locked: Option<&Entry>,
    progress: &Progress,
) -> anyhow::Result<Repository> {
    let store_path = work.store(source.store);
    let store = open_store(&store_path, progress)?;
    let have_locked = locked
        .and_then(|e| Oid::from_str(&e.sha).ok())
        .is_some_and(|oid| has_commit(&store, oid));
    if have_locked {
        return Ok(store);
    }
    tracing::debug!(
        stage = source.name,
        "fetch decision: the locked commit is not in {}: checking the store, then fetching",
        store_path.display()
    );
    repair_store(store, progress)
}

/// The pinned commit, in the store (fetched if missing) and named there
/// by `refs/snp/<source>/pinned`; and what its fetch transferred.
fn pin(
    store: &Repository,
    source: &Source,
    locked: Option<&Entry>,
    progress: &Progress,
) -> anyhow::Result<(Oid, Transfer)> {
    let (oid, transfer) = resolve(store, source, locked, progress)?;
    store.reference(
        &format!("refs/snp/{}/pinned", source.name),
        oid,
        true,
        "pinned",
    )?;
    Ok((oid, transfer))
}

/// The source's tree, brought to `target`.
struct Placed {
    repo: Repository,
    path: PathBuf,
    action: SyncAction,
    /// A broken tree that held (or may have held) work, moved here.
    moved_aside: Option<PathBuf>,
    /// Hand edits dropped by `--discard-changes`, saved here.
    saved_diff: Option<PathBuf>,
}

/// The tree's state machine: a missing tree is created, a healthy one
/// checked out at `target` (hand edits stop it, or with
/// `--discard-changes` are saved and dropped), a broken one removed (no
/// work in it) or moved aside, and created again.
fn place_tree(
    source: &Source,
    work: &WorkDir,
    store: &Repository,
    target: Oid,
    opts: Options,
    progress: &Progress,
) -> anyhow::Result<Placed> {
    let store_objects = store.path().join("objects");
    let stage_dir = work.stage(source.name);
    let path = stage_dir.tree();
    let placed = |repo, action, moved_aside, saved_diff| Placed {
        repo,
        path: path.clone(),
        action,
        moved_aside,
        saved_diff,
    };
    match tree::inspect(&path, &store_objects) {
        tree::State::Missing => {
            progress.step(format!("checking out {}", short(target)));
            let repo = tree::create(&path, &store_objects, &source.url.for_remote(), target)?;
            Ok(placed(repo, SyncAction::Cloned, None, None))
        }
        tree::State::Healthy { head } => {
            let repo = Repository::open(&path)?;
            if head == target {
                return Ok(placed(repo, SyncAction::Unchanged, None, None));
            }
            progress.step(format!("checking out {}", short(target)));
            let diff_path = work.saved_diff(source.name, &utc_stamp(SystemTime::now()));
            let saved_diff = tree::checkout(
                &repo,
                target,
                source.name,
                opts.discard_changes.then_some(diff_path.as_path()),
            )?;
            if let Some(p) = &saved_diff {
                progress.warn(format!(
                    "local changes discarded; their diff is saved in {}",
                    p.display()
                ));
            }
            Ok(placed(repo, SyncAction::CheckedOut, None, saved_diff))
        }
        tree::State::Broken { reason, user_work } => {
            let mut moved_aside = None;
            if user_work == Some(false) {
                progress.warn(format!(
                    "{} is broken ({reason}) and holds no local changes: cloning it again",
                    path.display()
                ));
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            } else {
                let aside = tree::move_aside(&stage_dir)?;
                progress.warn(format!(
                    "{} is broken ({reason}); it {} local changes, so it was moved aside to {} and is cloned again",
                    path.display(),
                    if user_work.is_some() { "holds" } else { "may hold" },
                    aside.display()
                ));
                moved_aside = Some(aside);
            }
            let repo = tree::create(&path, &store_objects, &source.url.for_remote(), target)
                .with_context(|| {
                    format!(
                        "{}: the fresh clone of {} failed too",
                        source.name, source.url
                    )
                })?;
            Ok(placed(repo, SyncAction::Recovered, moved_aside, None))
        }
    }
}

/// The tree's refs: its remote (the pinned URL, redacted), the store's
/// shallow list, the pin's branch or tag at `oid`, and
/// `snp-build/patched` at `target` when patches are carried.
fn set_refs(
    store: &Repository,
    placed: &Placed,
    source: &Source,
    oid: Oid,
    series: &Series,
    target: Oid,
) -> anyhow::Result<()> {
    tree::set_remote(&placed.repo, &source.url.for_remote())?;
    sync_shallow(store, &placed.path)?;
    set_tree_refs(&placed.repo, &source.rev, oid)?;
    set_patched_branch(&placed.repo, (!series.is_empty()).then_some(target))
}

/// The tree's submodules at the commits it records (when the pin asks
/// for them): their SHAs, and where hand edits dropped from them
/// (`--discard-changes`) were saved.
fn sync_submodules(
    source: &Source,
    work: &WorkDir,
    repo: &Repository,
    opts: Options,
    progress: &Progress,
) -> anyhow::Result<(BTreeMap<String, String>, Option<PathBuf>)> {
    if !source.submodules {
        return Ok((BTreeMap::new(), None));
    }
    let diff_path = work.saved_diff(
        &format!("{}-submodules", source.name),
        &utc_stamp(SystemTime::now()),
    );
    let edits = submodule::Edits {
        source: source.name,
        discard: opts.discard_changes.then_some(diff_path.as_path()),
    };
    let (shas, discarded) = submodule::update(repo, progress, edits)
        .with_context(|| format!("{}: submodules", source.name))?;
    if let Some(p) = &discarded {
        progress.warn(format!(
            "local changes in submodules discarded; their diff is saved in {}",
            p.display()
        ));
    }
    Ok((shas, discarded))
}

/// The progress line of a synced source: pin, commit, patches, what was
/// done to the tree and what was received.
fn synced_line(
    source: &Source,
    series: &Series,
    oid: Oid,
    patched: Oid,
    action: SyncAction,
    transfer: Transfer,
) -> String {
    format!(
        "{} at {}{} ({}{})",
        source.rev,
        short(oid),
        if series.is_empty() {
            String::new()
        } else {
            format!(" + {} patches = {}", series.patches.len(), short(patched))
        },
        action,
        if transfer.objects > 0 {
            format!(
                ", received {} objects, {}",
                transfer.objects,
                human_bytes(transfer.bytes as u64)
            )
        } else {
            String::new()
        }
    )
}

/// The pinned commit with `series` applied, made once per (commit, series)
/// and remembered under `refs/snp/<source>/patched/...` in the store.
fn patched_commit(
    store: &Repository,
    id: &str,
    pinned: Oid,
    series: &Series,
) -> anyhow::Result<Oid> {
    if series.is_empty() {
        return Ok(pinned);
    }
    let name = format!("refs/snp/{id}/patched/{pinned}/{}", series.hash);
    if let Ok(oid) = store.refname_to_id(&name)
        && has_commit(store, oid)
    {
        return Ok(oid);
    }
    let oid = patch::apply_series(store, pinned, series)
        .with_context(|| format!("{id}: applying patches"))?;
    store.reference(&name, oid, true, "patched")?;
    Ok(oid)
}

/// `snp-build/patched` names the patched commit in the tree (so
/// `git log snp-build/patched` shows what we carry); removed when the
/// series is empty.
fn set_patched_branch(repo: &Repository, target: Option<Oid>) -> anyhow::Result<()> {
    const BRANCH: &str = "refs/heads/snp-build/patched";
    match target {
        Some(oid) => {
            repo.reference(BRANCH, oid, true, "snp-build patches")?;
        }
        None => {
            if let Ok(mut r) = repo.find_reference(BRANCH) {
                r.delete()?;
            }
        }
    }
    Ok(())
}

fn short(oid: Oid) -> String {
    oid.to_string()[..12].to_string()
}

/// Opens the bare store, re-making it when it is unreadable (it holds no
/// user work: everything in it can be fetched again).
fn open_store(path: &Path, progress: &Progress) -> anyhow::Result<Repository> {
    if path.exists() {
        match Repository::open_bare(path) {
            Ok(r) => return Ok(r),
            Err(e) => {
                progress.warn(format!(
                    "object store {} is unreadable ({}): re-making it",
                    path.display(),
                    e.message()
                ));
                std::fs::remove_dir_all(path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    std::fs::create_dir_all(path.parent().unwrap_or(path))?;
    Repository::init_bare(path)
        .with_context(|| format!("creating the object store {}", path.display()))
}

/// Whether `oid` is a commit whose tree the store can read.
fn has_commit(repo: &Repository, oid: Oid) -> bool {
    repo.find_commit(oid).and_then(|c| c.tree()).is_ok()
}

/// The store's refs all point at readable objects. A deleted or cut pack
/// breaks this, and a fetch would then trust refs whose objects are gone.
fn store_is_sound(store: &Repository) -> Result<(), String> {
    let refs = store.references().map_err(|e| e.message().to_string())?;
    for r in refs {
        let r = r.map_err(|e| e.message().to_string())?;
        let name = r.name().unwrap_or("?").to_string();
        r.peel_to_commit()
            .and_then(|c| c.tree())
            .map_err(|e| format!("{name}: {}", e.message()))?;
    }
    Ok(())
}

/// Re-makes the store when it lost objects its refs name.
fn repair_store(store: Repository, progress: &Progress) -> anyhow::Result<Repository> {
    match store_is_sound(&store) {
        Ok(()) => Ok(store),
        Err(why) => {
            let path = store.path().to_path_buf();
            progress.warn(format!(
                "object store {} lost objects ({why}): fetching it again",
                path.display()
            ));
            drop(store);
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
            Repository::init_bare(&path).with_context(|| format!("creating {}", path.display()))
        }
    }
}

/// Resolves the pin to a commit present in the store, fetching only what
/// is missing. With a matching lock entry, that SHA is the answer.
fn resolve(
    store: &Repository,
    source: &Source,
    locked: Option<&Entry>,
    progress: &Progress,
) -> anyhow::Result<(Oid, Transfer)> {
    if let Some(entry) = locked {
        let oid = Oid::from_str(&entry.sha)
            .with_context(|| format!("{}: bad SHA {:?} in the lock", source.name, entry.sha))?;
        if has_commit(store, oid) {
            return Ok((oid, Transfer::default()));
        }
    }
    let fetcher = Fetcher {
        store,
        source,
        progress,
    };
    let what = || format!("{}: fetching {} ({})", source.name, source.url, source.rev);
    match locked {
        Some(entry) => fetcher
            .fetch_locked(Oid::from_str(&entry.sha)?)
            .with_context(what),
        None => fetcher.resolve_fresh().with_context(what),
    }
}

/// A tag as upstream advertises it.
struct AdvertisedTag {
    /// What the tag ref points at: an annotated tag's object, or a commit.
    target: Oid,
    /// The commit it names.
    commit: Oid,
}

struct Fetcher<'a> {
    store: &'a Repository,
    source: &'a Source,
    progress: &'a Progress,
}

/// Depth for a fetch that only needs the tip.
const SHALLOW: Option<i32> = Some(1);

impl Fetcher<'_> {
    fn id(&self) -> &str {
        self.source.name
    }

    fn table(&self) -> &str {
        self.source.table
    }

    /// The URL as shown (secrets redacted).
    fn url(&self) -> String {
        self.source.url.redacted()
    }

    /// A depth that gets the whole history (unshallowing a shallow store).
    fn full(&self) -> Option<i32> {
        self.store.is_shallow().then_some(i32::MAX)
    }

    fn branch_refspec(&self, branch: &str) -> String {
        format!("+refs/heads/{branch}:refs/snp/{}/heads/{branch}", self.id())
    }

    fn fetch(&self, refspecs: &[String], depth: Option<i32>) -> anyhow::Result<Transfer> {
        self.progress.step(format!("fetching from {}", self.url()));
        remote::fetch(self.store, &self.source.url, refspecs, depth, self.progress)
            .map_err(|e| network_error(&self.source.url, e))
    }

    fn list(&self) -> anyhow::Result<Vec<RemoteRef>> {
        self.progress.step(format!("listing {}", self.url()));
        remote::list(self.store, &self.source.url, self.progress)
            .map_err(|e| network_error(&self.source.url, e))
    }

    /// The tip of `branch` as upstream advertises it.
    fn branch_tip(&self, refs: &[RemoteRef], branch: &str) -> anyhow::Result<Oid> {
        let name = format!("refs/heads/{branch}");
        refs.iter().find(|r| r.name == name).map(|r| r.oid).ok_or_else(|| {
            let mut known: Vec<&str> = refs
                .iter()
                .filter_map(|r| r.name.strip_prefix("refs/heads/"))
                .collect();
            known.truncate(10);
            anyhow!(
                "branch `{branch}` does not exist at {}\n  help: check `branch` in [{}]; branches there include: {}",
                self.url(),
                self.table(),
                if known.is_empty() { "(none)".to_string() } else { known.join(", ") }
            )
        })
    }

    /// Where the store keeps a tag of this source.
    fn tag_ref(&self, tag: &str) -> String {
        format!("refs/snp/{}/tags/{tag}", self.id())
    }

    /// Forced: a tag that moved upstream moves here too.
    fn tag_refspec(&self, tag: &str) -> String {
        format!("+refs/tags/{tag}:{}", self.tag_ref(tag))
    }

    /// `tag` as upstream advertises it.
    fn tag(&self, refs: &[RemoteRef], tag: &str) -> anyhow::Result<AdvertisedTag> {
        let tag_ref = format!("refs/tags/{tag}");
        let peeled_ref = format!("{tag_ref}^{{}}");
        let target = refs.iter().find(|r| r.name == tag_ref).ok_or_else(|| {
            anyhow!(
                "tag `{tag}` does not exist at {}\n  help: check `tag` in [{}]",
                self.url(),
                self.table()
            )
        })?;
        // An annotated tag is advertised twice: its object, then (`^{}`)
        // the commit it names; a lightweight one names the commit itself.
        let commit = refs.iter().find(|r| r.name == peeled_ref).unwrap_or(target);
        Ok(AdvertisedTag {
            target: target.oid,
            commit: commit.oid,
        })
    }

    fn resolve_fresh(&self) -> anyhow::Result<(Oid, Transfer)> {
        let refs = self.list()?;
        match &self.source.rev {
            Rev::Branch { name } => {
                let tip = self.branch_tip(&refs, name)?;
                let mut t = Transfer::default();
                if !has_commit(self.store, tip) {
                    t = self.fetch(&[self.branch_refspec(name)], SHALLOW)?;
                }
                self.require(tip)?;
                Ok((tip, t))
            }
            Rev::Tag { name } => {
                let tag = self.tag(&refs, name)?;
                let local = self.store.find_reference(&self.tag_ref(name)).ok();
                let had = local.as_ref().and_then(|r| r.target());
                let had_commit = local.and_then(|r| r.peel_to_commit().ok()).map(|c| c.id());
                let mut t = Transfer::default();
                if had != Some(tag.target) || !has_commit(self.store, tag.commit) {
                    t = self.fetch(&[self.tag_refspec(name)], SHALLOW)?;
                }
                self.require(tag.commit)?;
                // Upstream's word is the answer, not the store's old ref: a
                // tag force-moved to a commit the store already had fetches
                // nothing, and its ref must follow all the same.
                self.store
                    .reference(&self.tag_ref(name), tag.target, true, "upstream's tag")?;
                if let Some(old) = had_commit.filter(|old| *old != tag.commit) {
                    self.progress.warn(format!(
                        "tag {name} moved upstream: {} -> {}",
                        short(old),
                        short(tag.commit)
                    ));
                }
                Ok((tag.commit, t))
            }
            Rev::Commit {
                sha,
                branch: Some(branch),
            } => {
                let tip = self.branch_tip(&refs, branch)?;
                let mut t = Transfer::default();
                if tip.to_string().starts_with(sha.as_str()) {
                    if !has_commit(self.store, tip) {
                        t = self.fetch(&[self.branch_refspec(branch)], SHALLOW)?;
                    }
                    self.require(tip)?;
                    return Ok((tip, t));
                }
                // Below the tip: the branch's history is needed.
                t += self.fetch(&[self.branch_refspec(branch)], self.full())?;
                let oid = self.find_prefix(sha)?;
                if !self.store.graph_descendant_of(tip, oid)? {
                    bail!(
                        "commit {sha} is not on branch `{branch}` at {} (its tip is {})\n  help: check `commit` and `branch` in [{}]",
                        self.url(),
                        short(tip),
                        self.table()
                    );
                }
                Ok((oid, t))
            }
            Rev::Commit { sha, branch: None } => {
                if let Ok(oid) = self.find_prefix(sha) {
                    return Ok((oid, Transfer::default()));
                }
                let t = self.fetch_commit_anywhere(sha)?;
                Ok((self.find_prefix(sha)?, t))
            }
        }
    }

    /// A commit with no branch to look under: by SHA when the server allows
    /// it, else every branch and tag.
    fn fetch_commit_anywhere(&self, sha: &str) -> anyhow::Result<Transfer> {
        if sha.len() == 40
            && let Ok(t) = self.fetch(&[format!("+{sha}:refs/snp/{}/commit", self.id())], SHALLOW)
            && self.find_prefix(sha).is_ok()
        {
            return Ok(t);
        }
        self.fetch(
            &[
                format!("+refs/heads/*:refs/snp/{}/heads/*", self.id()),
                format!("+refs/tags/*:refs/snp/{}/tags/*", self.id()),
            ],
            self.full(),
        )
    }

    /// The locked commit is not in the store (new work dir, or a damaged
    /// store): fetch exactly it, whatever upstream's branch says now.
    fn fetch_locked(&self, oid: Oid) -> anyhow::Result<(Oid, Transfer)> {
        let sha = oid.to_string();
        let mut t = Transfer::default();
        // By SHA first (git daemon and smart HTTP allow it when configured).
        if let Ok(got) = self.fetch(&[format!("+{sha}:refs/snp/{}/commit", self.id())], SHALLOW) {
            t += got;
            if has_commit(self.store, oid) {
                return Ok((oid, t));
            }
        }
        match &self.source.rev {
            Rev::Branch { name }
            | Rev::Commit {
                branch: Some(name), ..
            } => {
                t += self.fetch(&[self.branch_refspec(name)], self.full())?;
            }
            Rev::Tag { name } => {
                t += self.fetch(&[self.tag_refspec(name)], SHALLOW)?;
            }
            Rev::Commit { branch: None, .. } => t += self.fetch_commit_anywhere(&sha)?,
        }
        if !has_commit(self.store, oid) {
            bail!(
                "the locked commit {sha} is no longer at {} ({}: upstream was rewritten?)\n  help: run `snp-build update {}` to resolve the pin again",
                self.url(),
                self.source.rev,
                self.id()
            );
        }
        Ok((oid, t))
    }

    fn require(&self, oid: Oid) -> anyhow::Result<()> {
        if has_commit(self.store, oid) {
            Ok(())
        } else {
            bail!("{} did not send commit {oid}", self.url())
        }
    }

    fn find_prefix(&self, sha: &str) -> anyhow::Result<Oid> {
        let obj = self.store.revparse_single(sha).map_err(|_| {
            anyhow!(
                "commit {sha} does not exist at {}\n  help: check `commit` in [{}]",
                self.url(),
                self.table()
            )
        })?;
        Ok(obj
            .peel_to_commit()
            .map_err(|_| anyhow!("{sha} at {} is not a commit", self.url()))?
            .id())
    }
}

/// An upstream that cannot be reached: name the URL and what to check.
fn network_error(url: &PinUrl, e: git2::Error) -> anyhow::Error {
    if let Some(help) = remote::ownership_help(&e) {
        return anyhow!(
            "cannot fetch from {url}: {}\n  help: {help}",
            url.scrub(e.message())
        );
    }
    anyhow!(
        "cannot fetch from {url}: {}\n  help: check the URL, your network and proxy settings (https_proxy, git's http.proxy), and for private forks your ssh-agent or git credential helper",
        url.scrub(e.message())
    )
}

/// Keeps the tree's `shallow` file equal to the store's, so history walks
/// in the tree stop where the store's history does.
fn sync_shallow(store: &Repository, tree: &Path) -> anyhow::Result<()> {
    let git_dir = tree.join(".git");
    if !git_dir.is_dir() {
        return Ok(());
    }
    let store_file = store.path().join("shallow");
    let tree_file = git_dir.join("shallow");
    match std::fs::read(&store_file) {
        Ok(bytes) => crate::fsutil::write_atomic(&tree_file, &bytes),
        Err(_) => {
            let _ = std::fs::remove_file(&tree_file);
            Ok(())
        }
    }
}

/// Refs a user of the tree expects: `current/<branch>` or the tag.
fn set_tree_refs(repo: &Repository, rev: &Rev, oid: Oid) -> anyhow::Result<()> {
    match rev {
        Rev::Branch { name }
        | Rev::Commit {
            branch: Some(name), ..
        } => {
            repo.reference(
                &format!("refs/remotes/current/{name}"),
                oid,
                true,
                "snp-build fetch",
            )?;
        }
        Rev::Tag { name } => {
            repo.reference(&format!("refs/tags/{name}"), oid, true, "snp-build fetch")?;
        }
        Rev::Commit { branch: None, .. } => {}
    }
    Ok(())
}
