//! Patch series: the changes we carry on top of a pinned commit.
//!
//! `patches/<source>/NNNN-*.patch`, applied in name order. A file holds a
//! plain unified diff or one or several `git format-patch` mails. Each
//! patch becomes one commit whose author, date and message come from its
//! mail (for a plain diff: a fixed author, the pinned commit's date and a
//! message naming the file), committed by a fixed committer, so the
//! patched commit is the same on every run and on every machine.
//!
//! Guarantees:
//! - The series is read and checked (only `NNNN-*.patch` files, none
//!   empty) before anything is applied.
//! - Patches are applied in memory, into the object store, with libgit2
//!   (no `patch` or `git am`): a patch that does not apply fails naming the
//!   file, the patch within it, the target file and the hunk, and the work
//!   tree has not been touched.
//! - The pinned upstream SHA remains the source's name everywhere; the
//!   patched commit and the series hash are recorded beside it.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use git2::{ApplyOptions, Diff, Oid, Repository, Signature, Time};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::hash::hex;

/// The committer of every patch commit (fixed, for reproducible SHAs).
const COMMITTER_NAME: &str = "snp-build";
const COMMITTER_EMAIL: &str = "snp-build@localhost";

/// One patch: a mail, or a whole plain diff file.
#[derive(Debug, Clone)]
pub struct Patch {
    pub file: String,
    /// 1-based position within its file.
    pub index: usize,
    pub subject: String,
    pub message: String,
    /// `Name <email>` and date from the mail, if it had them.
    pub author: Option<(String, String)>,
    pub date: Option<(i64, i32)>,
    pub diff: Vec<u8>,
}

/// A source's series, read and checked.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub dir: PathBuf,
    pub patches: Vec<Patch>,
    /// SHA-256 over every file's name and bytes, in order ("" when empty).
    pub hash: String,
    pub files: Vec<PatchFile>,
}

/// A patch file as recorded in manifests.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct PatchFile {
    pub file: String,
    pub sha256: String,
    pub patches: Vec<String>,
}

impl Series {
    pub fn is_empty(&self) -> bool {
        self.patches.is_empty()
    }
}

/// Reads `dir` (absent: an empty series). Refuses anything that is not a
/// non-empty `NNNN-*.patch` file; hidden files (`.gitkeep`) are ignored.
pub fn read_series(dir: &Path) -> anyhow::Result<Series> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Series {
                dir: dir.to_path_buf(),
                ..Series::default()
            });
        }
        Err(e) => {
            return Err(e).with_context(|| format!("reading patch directory {}", dir.display()));
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        if !entry.file_type()?.is_file() || !is_patch_name(&name) {
            bail!(
                "{}: `{name}` is not a patch file\n  help: a patch directory holds only files named NNNN-description.patch (4 digits), applied in name order; move other files elsewhere",
                dir.display()
            );
        }
        names.push(name);
    }
    names.sort();

    let mut series = Series {
        dir: dir.to_path_buf(),
        ..Series::default()
    };
    let mut hasher = Sha256::new();
    for name in names {
        let path = dir.join(&name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let patches = parse_file(&name, &bytes).with_context(|| format!("{}", path.display()))?;
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(&bytes);
        hasher.update([0]);
        series.files.push(PatchFile {
            file: name.clone(),
            sha256: hex(&Sha256::digest(&bytes)),
            patches: patches.iter().map(|p| p.subject.clone()).collect(),
        });
        series.patches.extend(patches);
    }
    if !series.patches.is_empty() {
        series.hash = hex(&hasher.finalize());
    }
    Ok(series)
}

fn is_patch_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 11
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && name.ends_with(".patch")
}

/// Splits a file into patches: `git format-patch` mails (each starting
/// with a `From <sha> <date>` line) or one plain unified diff.
fn parse_file(name: &str, bytes: &[u8]) -> anyhow::Result<Vec<Patch>> {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_mbox_separator(l))
        .map(|(i, _)| i)
        .collect();
    let chunks: Vec<&[&str]> = if starts.is_empty() {
        vec![&lines[..]]
    } else {
        starts
            .iter()
            .enumerate()
            .map(|(k, &s)| &lines[s..starts.get(k + 1).copied().unwrap_or(lines.len())])
            .collect()
    };
    let mut patches = Vec::new();
    for (k, chunk) in chunks.into_iter().enumerate() {
        let patch = if starts.is_empty() {
            plain_patch(name, chunk)
        } else {
            mail_patch(name, k + 1, chunk)
        }?;
        patches.push(patch);
    }
    Ok(patches)
}

/// `From 0123...abcd Mon Sep 17 00:00:00 2001`
fn is_mbox_separator(line: &str) -> bool {
    let mut words = line.split_whitespace();
    words.next() == Some("From")
        && words
            .next()
            .is_some_and(|w| w.len() == 40 && w.chars().all(|c| c.is_ascii_hexdigit()))
}

fn diff_start(lines: &[&str]) -> Option<usize> {
    lines
        .iter()
        .position(|l| l.starts_with("diff --git ") || l.starts_with("--- "))
}

fn plain_patch(name: &str, lines: &[&str]) -> anyhow::Result<Patch> {
    let start = diff_start(lines).ok_or_else(|| empty(name, 1))?;
    let diff = to_git_diff(&lines[start..]);
    if diff.is_empty() {
        return Err(empty(name, 1));
    }
    let subject = format!("Apply {name}");
    Ok(Patch {
        file: name.to_string(),
        index: 1,
        message: format!("{subject}\n"),
        subject,
        author: None,
        date: None,
        diff,
    })
}

fn empty(name: &str, index: usize) -> anyhow::Error {
    anyhow!(
        "patch {index} in {name} is empty: it has no diff\n  help: regenerate it with `git format-patch`, or delete the file"
    )
}

fn mail_patch(name: &str, index: usize, lines: &[&str]) -> anyhow::Result<Patch> {
    // Headers, with continuation lines folded.
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut i = 1;
    while i < lines.len() && !lines[i].trim_end().is_empty() {
        let line = lines[i].trim_end();
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        i += 1;
    }
    let header = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
    let subject = strip_patch_prefix(&header("subject").unwrap_or_default());
    let start = diff_start(&lines[i..])
        .map(|s| s + i)
        .ok_or_else(|| empty(name, index))?;
    // The body runs to the `---` line that precedes the diffstat.
    let body_end = lines[i..start]
        .iter()
        .position(|l| l.trim_end() == "---")
        .map(|p| p + i)
        .unwrap_or(start);
    let body = lines[i..body_end].concat();
    let body = body.trim();
    let message = if body.is_empty() {
        format!("{subject}\n")
    } else {
        format!("{subject}\n\n{body}\n")
    };
    let diff = to_git_diff(&lines[start..]);
    if diff.is_empty() {
        return Err(empty(name, index));
    }
    Ok(Patch {
        file: name.to_string(),
        index,
        subject,
        message,
        author: header("from").and_then(|f| parse_author(&f)),
        date: header("date").and_then(|d| parse_date(&d)),
        diff,
    })
}

/// The diff part, without the mail signature (`-- ` and the git version),
/// and with a `diff --git` header before plain `--- a/x` / `+++ b/x` pairs
/// (libgit2 parses only git-style diffs).
fn to_git_diff(lines: &[&str]) -> Vec<u8> {
    let end = lines
        .iter()
        .rposition(|l| *l == "-- \n" || *l == "-- ")
        .unwrap_or(lines.len());
    let lines = &lines[..end];
    let mut out = String::new();
    let mut in_git_header = false;
    let mut skip_next = false;
    for (k, line) in lines.iter().enumerate() {
        if skip_next {
            skip_next = false;
            continue;
        }
        if line.starts_with("diff --git ") {
            in_git_header = true;
        } else if line.starts_with("@@") {
            in_git_header = false;
        } else if !in_git_header
            && line.starts_with("--- ")
            && lines.get(k + 1).is_some_and(|n| n.starts_with("+++ "))
        {
            // A plain diff (`diff -u`): one path for both sides (libgit2
            // wants them equal) and no timestamps.
            let new = path_of(lines[k + 1]);
            let path = if new == "/dev/null" {
                path_of(line)
            } else {
                new
            };
            out.push_str(&format!(
                "diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
            ));
            skip_next = true;
            continue;
        }
        out.push_str(line);
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if out.lines().any(|l| {
        l.starts_with("@@")
            || l.starts_with("Binary files")
            || l.starts_with("GIT binary patch")
            || l.starts_with("rename from")
            || l.starts_with("deleted file mode")
            || l.starts_with("new file mode")
    }) {
        out.into_bytes()
    } else {
        Vec::new()
    }
}

/// `--- a/dir/file\t2024-...` -> `dir/file`
fn path_of(line: &str) -> String {
    let p = line[4..].trim_end().split('\t').next().unwrap_or("");
    let p = p
        .strip_prefix("a/")
        .or_else(|| p.strip_prefix("b/"))
        .unwrap_or(p);
    p.to_string()
}

fn strip_patch_prefix(subject: &str) -> String {
    let s = subject.trim();
    match s.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((tag, rest)) if tag.to_ascii_uppercase().contains("PATCH") => rest.trim().to_string(),
        _ => s.to_string(),
    }
}

/// `Jane Doe <jane@example.com>` (quotes around the name removed).
fn parse_author(from: &str) -> Option<(String, String)> {
    let (name, rest) = from.rsplit_once('<')?;
    let email = rest.strip_suffix('>')?.trim();
    let name = name.trim().trim_matches('"').trim();
    Some((
        if name.is_empty() {
            email.to_string()
        } else {
            name.to_string()
        },
        email.to_string(),
    ))
}

/// RFC 2822 dates as format-patch writes them:
/// `Tue, 1 Aug 2023 10:00:00 +0200` -> (unix seconds, offset minutes).
fn parse_date(date: &str) -> Option<(i64, i32)> {
    // The weekday says nothing the date does not; a wrong one is ignored
    // (as git does) rather than losing the mail's date.
    let date = date.trim();
    let date = match date.split_once(',') {
        Some((day, rest)) if day.trim().chars().all(|c| c.is_ascii_alphabetic()) => rest,
        _ => date,
    };
    let zoned = jiff::fmt::rfc2822::parse(date.trim()).ok()?;
    let offset = zoned.offset().seconds() / 60;
    Some((zoned.timestamp().as_second(), offset))
}

/// The patched commit: `series` applied on top of `base` in `repo`'s object
/// database (no work tree involved). Returns `base` for an empty series.
pub fn apply_series(repo: &Repository, base: Oid, series: &Series) -> anyhow::Result<Oid> {
    let mut head = repo.find_commit(base)?;
    let committer_time = head.time();
    for patch in &series.patches {
        let diff = Diff::from_buffer(&patch.diff).map_err(|e| {
            anyhow!(
                "{}: patch {} ({}) cannot be parsed: {}",
                patch.file,
                patch.index,
                patch.subject,
                e.message()
            )
        })?;
        let tree = head.tree()?;
        let current = std::cell::RefCell::new((String::new(), String::new()));
        let mut opts = ApplyOptions::new();
        opts.delta_callback(|delta| {
            if let Some(d) = delta {
                let path = d
                    .new_file()
                    .path()
                    .or_else(|| d.old_file().path())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                current.borrow_mut().0 = path;
            }
            true
        });
        opts.hunk_callback(|hunk| {
            if let Some(h) = hunk {
                current.borrow_mut().1 = String::from_utf8_lossy(h.header()).trim_end().to_string();
            }
            true
        });
        let index = repo.apply_to_tree(&tree, &diff, Some(&mut opts));
        drop(opts);
        let mut index = match index {
            Ok(i) => i,
            Err(e) => {
                let (file, hunk) = current.into_inner();
                bail!(
                    "patch {} of {} ({}) does not apply to {file}: {}\n  failing hunk: {hunk}\n  help: refresh the patch against the pinned commit (e.g. `git rebase` your change and `git format-patch` it again) or change the pin",
                    patch.index,
                    series.dir.join(&patch.file).display(),
                    patch.subject,
                    e.message()
                );
            }
        };
        let new_tree = repo.find_tree(index.write_tree_to(repo)?)?;
        let time = patch
            .date
            .map(|(t, o)| Time::new(t, o))
            .unwrap_or(committer_time);
        let (name, email) = patch
            .author
            .clone()
            .unwrap_or_else(|| (COMMITTER_NAME.to_string(), COMMITTER_EMAIL.to_string()));
        let author = Signature::new(&name, &email, &time)?;
        let committer = Signature::new(COMMITTER_NAME, COMMITTER_EMAIL, &time)?;
        let oid = repo.commit(
            None,
            &author,
            &committer,
            &patch.message,
            &new_tree,
            &[&head],
        )?;
        head = repo.find_commit(oid)?;
    }
    Ok(head.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_patch_name("0001-fix-build.patch"));
        assert!(!is_patch_name("fix.patch"));
        assert!(!is_patch_name("0001-fix.diff"));
        assert!(!is_patch_name("001-x.patch"));
    }

    #[test]
    fn dates() {
        // 2023-08-01 08:00:00 UTC
        assert_eq!(
            parse_date("Tue, 1 Aug 2023 10:00:00 +0200"),
            Some((1_690_876_800, 120))
        );
        assert_eq!(
            parse_date("1 Aug 2023 08:00:00 -0000"),
            Some((1_690_876_800, 0))
        );
        // A weekday that does not match the date is ignored.
        assert_eq!(
            parse_date("Mon, 1 Aug 2023 10:00:00 +0200"),
            Some((1_690_876_800, 120))
        );
    }

    #[test]
    fn subjects_and_authors() {
        assert_eq!(strip_patch_prefix("[PATCH v2 3/7] kvm: fix"), "kvm: fix");
        assert_eq!(strip_patch_prefix("[RFC] x"), "[RFC] x");
        assert_eq!(
            parse_author("\"Doe, Jane\" <jane@example.com>"),
            Some(("Doe, Jane".into(), "jane@example.com".into()))
        );
    }

    #[test]
    fn plain_diffs_get_a_git_header() {
        let d = to_git_diff(&[
            "--- a/f\t2024\n",
            "+++ b/f\n",
            "@@ -1 +1 @@\n",
            "-a\n",
            "+b\n",
        ]);
        assert!(
            String::from_utf8(d)
                .unwrap()
                .starts_with("diff --git a/f b/f\n--- a/f")
        );
        assert!(to_git_diff(&["just text\n"]).is_empty());
    }
}
