//! A pin: which tree, and which commit of it.
//!
//! Every source table has the same pin keys (`url`, one of `branch`, `tag`
//! or `commit`, optionally `submodules` and `patches`); whatever else a
//! table holds are its component's knobs. Validation here refuses a pin
//! that could not be fetched safely: an empty URL, one with whitespace or
//! a relative path (relative to what?), a patch directory outside the pin
//! file's directory tree, a ref name git would refuse (which also keeps
//! shell metacharacters out of every command line), a commit that is not
//! 7 to 40 hex digits, and pins that say two things at once.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::{ConfigError, Errors, Locator};
use super::url::PinUrl;

/// The keys of a source table that make its pin, in the order they are
/// shown. Only `submodules` is ever filled from the embedded default
/// (pins are never defaulted).
pub const PIN_KEYS: [&str; 6] = ["url", "branch", "tag", "commit", "submodules", "patches"];

/// Whether a pin key may come from the embedded default.
pub fn defaulted(key: &str) -> bool {
    key == "submodules"
}

/// The pin keys as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinFields {
    pub url: Spanned<String>,
    pub branch: Option<Spanned<String>>,
    pub tag: Option<Spanned<String>>,
    pub commit: Option<Spanned<String>>,
    pub submodules: Option<bool>,
    pub patches: Option<Spanned<String>>,
}

/// What a pin asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Rev {
    Branch {
        name: String,
    },
    Tag {
        name: String,
    },
    /// A commit, optionally required to be on a branch.
    Commit {
        sha: String,
        branch: Option<String>,
    },
}

impl fmt::Display for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rev::Branch { name } => write!(f, "branch {name}"),
            Rev::Tag { name } => write!(f, "tag {name}"),
            Rev::Commit { sha, branch: None } => write!(f, "commit {sha}"),
            Rev::Commit {
                sha,
                branch: Some(b),
            } => write!(f, "commit {sha} on branch {b}"),
        }
    }
}

/// Where a source's tree and objects go, as its component says.
#[derive(Debug, Clone, Copy)]
pub struct SourceSpec {
    /// The source's (and its stage's) name: `kernel-host`.
    pub name: &'static str,
    /// Its pin file table: `kernel.host`.
    pub table: &'static str,
    /// The object store it shares with sources of the same upstream
    /// family: `linux`.
    pub store: &'static str,
}

/// One pinned source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub name: &'static str,
    pub table: &'static str,
    pub store: &'static str,
    /// Shown and stored only redacted (see [`PinUrl`]).
    pub url: PinUrl,
    pub rev: Rev,
    pub submodules: bool,
    /// The patch series directory (it may not exist: no patches).
    pub patches: PathBuf,
}

/// Validates the pin of `spec` (its table's pin keys), relative paths
/// taken from `base_dir`. Every key is checked, so one run names each
/// mistake of the table.
pub fn validate(
    spec: SourceSpec,
    pin: &PinFields,
    loc: &Locator<'_>,
    base_dir: &Path,
) -> Result<Source, ConfigError> {
    let table = spec.table;
    let key = |k: &str| format!("{table}.{k}");
    let err = |span, key: &str, message: String, help: &str| {
        loc.error(Some(span), key, message, Some(help.to_string()))
    };
    let mut errors = Errors::default();

    let url = pin.url.get_ref();
    let shown = PinUrl::new(url.clone()).redacted();
    let url_problem = if url.trim().is_empty() {
        Some((
            "the URL is empty".to_string(),
            "give the git URL of the tree, e.g. \"https://github.com/AMDESE/linux.git\"",
        ))
    } else if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some((
            format!("the URL {shown:?} contains whitespace"),
            "give the git URL of the tree without spaces",
        ))
    } else if PinUrl::new(url.clone()).is_relative_path() {
        Some((
            format!("the URL {shown:?} is a relative path"),
            "give an absolute path (\"/srv/git/qemu.git\") or a URL (file://, https://, ssh://, git://, or git@host:path); a relative one would be read from wherever snp-build runs",
        ))
    } else {
        None
    };
    if let Some((message, help)) = url_problem {
        errors.take::<()>(Err(err(pin.url.span(), &key("url"), message, help)));
    }

    for (name, value) in [("branch", &pin.branch), ("tag", &pin.tag)] {
        if let Some(v) = value {
            errors.take(ref_name(v, &key(name), loc));
        }
    }
    if let Some(c) = &pin.commit {
        let sha = c.get_ref();
        if !(7..=40).contains(&sha.len()) || !sha.chars().all(|ch| ch.is_ascii_hexdigit()) {
            errors.take::<()>(Err(err(
                c.span(),
                &key("commit"),
                format!("`{sha}` is not a commit id"),
                "a commit is 7 to 40 hex digits, e.g. \"3f2a9c1\"; use `branch` or `tag` for names",
            )));
        }
    }

    let owned = |s: &Spanned<String>| s.get_ref().clone();
    let rev = match (&pin.branch, &pin.tag, &pin.commit) {
        (Some(b), None, None) => Some(Rev::Branch { name: owned(b) }),
        (None, Some(t), None) => Some(Rev::Tag { name: owned(t) }),
        (b, None, Some(c)) => Some(Rev::Commit {
            sha: c.get_ref().to_ascii_lowercase(),
            branch: b.as_ref().map(owned),
        }),
        (None, None, None) => errors.take(Err(err(
            pin.url.span(),
            table,
            format!("[{table}] pins nothing: it has a `url` but no `branch`, `tag` or `commit`"),
            "add one of `branch = \"...\"`, `tag = \"...\"` or `commit = \"...\"`",
        ))),
        (_, Some(t), _) => {
            let other = if pin.branch.is_some() {
                "branch"
            } else {
                "commit"
            };
            errors.take(Err(err(
                t.span(),
                &key("tag"),
                format!("`tag` and `{other}` are both set"),
                "a pin takes one of `branch`, `tag` or `commit` (only `commit` may be combined with `branch`, meaning the commit must be on that branch)",
            )))
        }
    };

    let patches = match &pin.patches {
        Some(p) => errors.take(patch_dir(p, &key("patches"), spec.name, loc, base_dir)),
        None => Some(base_dir.join("patches").join(spec.name)),
    };

    errors.finish()?;
    let (Some(rev), Some(patches)) = (rev, patches) else {
        unreachable!("no error was found, so every part was read");
    };
    Ok(Source {
        name: spec.name,
        table: spec.table,
        store: spec.store,
        url: PinUrl::new(url.clone()),
        rev,
        submodules: pin.submodules.unwrap_or(false),
        patches,
    })
}

/// The patch directory `value` names, which must lie in the pin file's
/// own directory tree: a pin file is something one is handed, and its
/// `patches` must not make a build read (and apply) files from elsewhere
/// on the machine (`"../../../../etc"`). Symlinks are resolved before
/// judging (as far as the path exists; a directory that does not exist
/// yet means no patches), because reading follows them: a link inside the
/// tree that leads out is refused, one that leads back in is fine.
fn patch_dir(
    value: &Spanned<String>,
    key: &str,
    source: &str,
    loc: &Locator<'_>,
    base_dir: &Path,
) -> Result<PathBuf, ConfigError> {
    let raw = value.get_ref();
    if raw.trim().is_empty() {
        return Err(loc.error(
            Some(value.span()),
            key,
            "the patch directory is empty",
            Some(format!(
                "name a directory, or leave `patches` out to use patches/{source}/"
            )),
        ));
    }
    let dir = base_dir.join(raw);
    let root = resolve(base_dir);
    let real = resolve(&dir);
    if real.starts_with(&root) {
        return Ok(dir);
    }
    Err(loc.error(
        Some(value.span()),
        key,
        format!(
            "the patch directory {raw:?} is {}, outside the pin file's directory {}",
            real.display(),
            root.display()
        ),
        Some(format!(
            "keep the patch series next to the pin file (e.g. patches/{source}/) and name it relative to it"
        )),
    ))
}

/// `path` with its symlinks resolved as far as it exists, the rest taken
/// as written (`..` dropping the part before it).
fn resolve(path: &Path) -> PathBuf {
    let parts: Vec<Component<'_>> = path.components().collect();
    for exists in (0..=parts.len()).rev() {
        let head: PathBuf = parts[..exists].iter().collect();
        let head = if head.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            head
        };
        let Ok(mut out) = head.canonicalize() else {
            continue;
        };
        for part in &parts[exists..] {
            match part {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(name) => out.push(name),
                _ => {}
            }
        }
        return out;
    }
    path.to_path_buf()
}

/// git's ref name rules (git-check-ref-format, as libgit2 applies them),
/// which also keep whitespace and most shell metacharacters out of every
/// command line; and no leading `-`, which a command would read as an
/// option.
fn ref_name(value: &Spanned<String>, key: &str, loc: &Locator<'_>) -> Result<(), ConfigError> {
    let name = value.get_ref();
    let problem = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.starts_with('-') {
        Some("it starts with `-`".to_string())
    } else if !git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
        Some(why_git_refuses(name))
    } else {
        None
    };
    match problem {
        Some(p) => Err(loc.error(
            Some(value.span()),
            key,
            format!("{name:?} is not a valid git ref name: {p}"),
            Some("use the branch or tag name exactly as git shows it, e.g. \"snp-latest\"".into()),
        )),
        None => Ok(()),
    }
}

/// Which of git's ref name rules `name` breaks, for the message (git2
/// decides; this only points at the culprit).
fn why_git_refuses(name: &str) -> String {
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(*c))
    {
        return format!("it contains {c:?}");
    }
    for (part, says) in [("..", "`..`"), ("@{", "`@{`"), ("//", "`//`")] {
        if name.contains(part) {
            return format!("it contains {says}");
        }
    }
    if name.ends_with('/') || name.ends_with('.') || name.ends_with(".lock") {
        return "it ends with `/`, `.` or `.lock`".into();
    }
    if name.split('/').any(|part| part.starts_with('.')) {
        return "a component starts with `.`".into();
    }
    "git refuses it".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_ref_names_say_why() {
        for (name, why) in [
            ("x;rm -rf /", "it contains ' '"),
            ("a..b", "it contains `..`"),
            ("a@{1}", "it contains `@{`"),
            ("topic.lock", "it ends with `/`, `.` or `.lock`"),
            (".hidden", "a component starts with `.`"),
            ("a/.b", "a component starts with `.`"),
        ] {
            assert!(!git2::Reference::is_valid_name(&format!(
                "refs/heads/{name}"
            )));
            assert_eq!(why_git_refuses(name), why, "{name}");
        }
        assert!(git2::Reference::is_valid_name("refs/heads/snp-latest"));
    }
}
