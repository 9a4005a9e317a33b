//! Submodules: `git submodule sync` then `update --init --recursive`, with
//! git2 (which updates one level per call, so this recurses by hand).
//!
//! Sync first means a submodule whose URL changed upstream (as edk2's
//! subhook did) is fetched from its new URL. A submodule that is missing,
//! unreadable or at the wrong commit is repaired on its own; its git
//! directory is re-made only when it holds no work of the user's.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use git2::{Repository, Submodule, SubmoduleUpdateOptions};

use super::remote::{ownership_help, submodule_fetch_options};
use super::tree::{LocalChanges, diff_text, has_user_work, local_changes};
use crate::progress::Progress;

/// What a submodule update does with hand edits in a submodule it must
/// move: stop (exit 7), or save their diff to `discard` first.
#[derive(Clone, Copy)]
pub struct Edits<'a> {
    pub source: &'a str,
    pub discard: Option<&'a Path>,
}

/// Brings every submodule of `repo` (recursively) to the commit its
/// superproject records. Returns path -> SHA for all of them, nested paths
/// joined with `/`, and the diff saved when `edits` discarded some.
pub fn update(
    repo: &Repository,
    progress: &Progress,
    edits: Edits<'_>,
) -> anyhow::Result<(BTreeMap<String, String>, Option<std::path::PathBuf>)> {
    let mut shas = BTreeMap::new();
    let mut saved = None;
    update_into(repo, "", progress, edits, &mut saved, &mut shas)?;
    Ok((shas, saved))
}

fn update_into(
    repo: &Repository,
    prefix: &str,
    progress: &Progress,
    edits: Edits<'_>,
    saved: &mut Option<std::path::PathBuf>,
    shas: &mut BTreeMap<String, String>,
) -> anyhow::Result<()> {
    for mut sm in repo.submodules().context("reading .gitmodules")? {
        let path = format!("{prefix}{}", sm.path().display());
        let Some(want) = sm.head_id() else {
            continue; // listed in .gitmodules but not in the tree
        };
        sm.sync()
            .with_context(|| format!("syncing the URL of submodule {path}"))?;
        if !is_current(repo, &sm) {
            keep_edits(repo, &sm, &path, edits, saved)?;
            progress.step(format!("submodule {path}"));
            if let Err(first) = update_one(repo, &mut sm, progress) {
                // A half-made or damaged submodule git dir: re-make it when
                // that cannot lose work, then try once more.
                reset_submodule(repo, &sm, &path).with_context(|| {
                    format!(
                        "updating submodule {path} failed ({first:#}) and it could not be reset"
                    )
                })?;
                let mut sm = repo.find_submodule(&sm.path().to_string_lossy())?;
                update_one(repo, &mut sm, progress).with_context(|| {
                    format!(
                        "updating submodule {path} from {}",
                        sm.url().ok().flatten().unwrap_or("?")
                    )
                })?;
            }
        }
        let sub = sm
            .open()
            .with_context(|| format!("opening submodule {path}"))?;
        shas.insert(path.clone(), want.to_string());
        update_into(&sub, &format!("{path}/"), progress, edits, saved, shas)?;
    }
    Ok(())
}

/// A submodule about to be checked out over: its hand edits (tracked or
/// not, its own submodules' included) stop the sync (exit 7), or with
/// `--discard-changes` their diff is saved first, as for the top tree.
fn keep_edits(
    repo: &Repository,
    sm: &Submodule<'_>,
    path: &str,
    edits: Edits<'_>,
    saved: &mut Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let Some(workdir) = repo.workdir() else {
        return Ok(());
    };
    let Ok(sub) = Repository::open(workdir.join(sm.path())) else {
        return Ok(()); // nothing checked out yet
    };
    let files: Vec<String> = local_changes(&sub)
        .unwrap_or_default()
        .into_iter()
        .map(|f| format!("{path}/{f}"))
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    let Some(diff_path) = edits.discard else {
        return Err(LocalChanges::new(edits.source, workdir.to_path_buf(), files).into());
    };
    // One saved diff per submodule moved (the first keeps the given name).
    let target = match saved {
        None => diff_path.to_path_buf(),
        Some(_) => diff_path.with_extension(format!(
            "{}.diff",
            sm.name().unwrap_or("sub").replace('/', "_")
        )),
    };
    crate::fsutil::write_atomic(&target, &diff_text(&sub)?)?;
    saved.get_or_insert(target);
    Ok(())
}

/// Checked out, readable and at the recorded commit (cheap: no scan).
fn is_current(repo: &Repository, sm: &Submodule<'_>) -> bool {
    let Some(workdir) = repo.workdir() else {
        return false;
    };
    let Ok(sub) = Repository::open(workdir.join(sm.path())) else {
        return false;
    };
    let at_commit = sub
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .map(|c| Some(c.id()) == sm.head_id())
        .unwrap_or(false);
    at_commit && sub.index().is_ok_and(|i| !i.is_empty())
}

fn update_one(
    repo: &Repository,
    sm: &mut Submodule<'_>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let mut opts = SubmoduleUpdateOptions::new();
    opts.fetch(submodule_fetch_options(repo, progress));
    opts.allow_fetch(true);
    let mut checkout = git2::build::CheckoutBuilder::new();
    checkout.force();
    opts.checkout(checkout);
    sm.update(true, Some(&mut opts))
        .map_err(|e| match ownership_help(&e) {
            Some(help) => anyhow::anyhow!("{}\n  help: {help}", e.message()),
            None => e.into(),
        })
}

/// Removes a submodule's git dir and (when clean or absent) its work tree,
/// so `update` clones it afresh. A work tree holding user changes is left
/// in place and reported.
fn reset_submodule(repo: &Repository, sm: &Submodule<'_>, path: &str) -> anyhow::Result<()> {
    let workdir = repo.workdir().context("superproject has no work tree")?;
    let sub_path = workdir.join(sm.path());
    if let Ok(sub) = Repository::open(&sub_path)
        && has_user_work(&sub).unwrap_or(true)
    {
        anyhow::bail!("submodule {path} holds local changes; commit or move them, then run again");
    }
    remove_if_exists(&sub_path)?;
    remove_if_exists(&repo.path().join("modules").join(sm.name().unwrap_or(path)))?;
    // libgit2 clones a submodule only into an existing, empty directory.
    std::fs::create_dir_all(&sub_path)
        .with_context(|| format!("creating {}", sub_path.display()))?;
    Ok(())
}

fn remove_if_exists(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
        }
        Ok(_) => std::fs::remove_file(path).with_context(|| format!("removing {}", path.display())),
        Err(_) => Ok(()),
    }
}

/// The URL of every submodule of the tree at `tree` (recursively, nested
/// paths joined with `/`), credentials redacted: what the SBOM names.
/// Submodules that cannot be read are left out.
pub fn urls(tree: &Path) -> BTreeMap<String, String> {
    fn walk(repo: &Repository, prefix: &str, out: &mut BTreeMap<String, String>) {
        for sm in repo.submodules().unwrap_or_default() {
            let path = format!("{prefix}{}", sm.path().to_string_lossy());
            if let Some(url) = sm.url().ok().flatten() {
                out.insert(path.clone(), crate::config::PinUrl::new(url).redacted());
            }
            if let Ok(sub) = sm.open() {
                walk(&sub, &format!("{path}/"), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(repo) = Repository::open(tree) {
        walk(&repo, "", &mut out);
    }
    out
}

/// The licence a tree declares in its top-level licence file (`COPYING*`,
/// `LICENSE*`, `License*`): the first `SPDX-License-Identifier:` line, as
/// Linux's COPYING and edk2's License.txt carry one; else `MIT` when the
/// file is the MIT licence's text word for word after its copyright lines,
/// as brotli's LICENSE is. Nothing is guessed from a text that is only
/// close to one: a licence is named only where the file states it.
pub fn declared_license(tree: &Path) -> Option<String> {
    let mut files: Vec<_> = std::fs::read_dir(tree)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_ascii_uppercase();
            p.is_file() && (name.starts_with("COPYING") || name.starts_with("LICENSE"))
        })
        .collect();
    files.sort();
    let texts: Vec<String> = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect();
    let spdx = texts.iter().find_map(|text| {
        text.lines().find_map(|l| {
            let (_, id) = l.split_once("SPDX-License-Identifier:")?;
            let id = id.trim().trim_end_matches("*/").trim();
            (!id.is_empty()).then(|| id.to_string())
        })
    });
    spdx.or_else(|| texts.iter().any(|t| is_mit(t)).then(|| "MIT".to_string()))
}

/// The MIT licence's text (SPDX's `MIT`), after its copyright lines.
const MIT: &str = "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated documentation files (the \"Software\"), to deal in the Software without restriction, including without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the following conditions: The above copyright notice and this permission notice shall be included in all copies or substantial portions of the Software. THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.";

/// Whether `text` is copyright lines (and an optional `MIT License`
/// title) followed by exactly the MIT text, line breaks aside.
fn is_mit(text: &str) -> bool {
    let Some(start) = text.find("Permission is hereby granted") else {
        return false;
    };
    let head_ok = text[..start].lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with("Copyright") || l == "MIT License"
    });
    let words = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    head_ok && words(&text[start..]) == MIT
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_whole_mit_text_is_mit() {
        let body = super::MIT.replace(". ", ".\n");
        assert!(super::is_mit(&format!(
            "Copyright (c) 2016 by the Brotli Authors.\n\n{body}\n"
        )));
        assert!(super::is_mit(&format!(
            "MIT License\n\nCopyright (c) X\n\n{body}"
        )));
        // An extra clause, a missing one, or other words first: not MIT.
        assert!(!super::is_mit(&format!(
            "Copyright X\n{body}\nAlso: no use for evil."
        )));
        assert!(!super::is_mit(&super::MIT.replace(" and/or sell", "")));
        assert!(!super::is_mit(&format!("Except for foo/:\n{body}")));
    }
}
