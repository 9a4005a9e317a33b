//! A pin file parsed, with every knob it leaves out filled from the
//! embedded default, and typed views of its tables with located errors.
//!
//! Which tables exist is not known here: the stage registry says it with a
//! [`Layout`] (source tables such as `qemu` or `kernel.host`, and tables of
//! knobs shared by several sources such as `kernel`). `[build]` belongs to
//! this module.
//!
//! Merging, table by table:
//! - `[build]` and shared knob tables: every key the file lacks comes from
//!   the embedded default (the whole table when the file lacks it).
//! - A source table the file has: every knob it lacks comes from the
//!   default's same table, and so does `submodules`; the pin keys never do.
//! - A source table the file lacks stays out (pins are never defaulted);
//!   its component still validates its knobs from the default's table.
//!
//! Errors name the file, line and column, the dotted key, what is expected
//! and what to do ([`ConfigError`]).

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue, ValueDeserializer};

use super::error::{ConfigError, Errors, Locator};
use super::file::{EMBEDDED, Origin, PinFile};
use super::pin::{self, PIN_KEYS, PinFields, Source, SourceSpec};
use super::url::PinUrl;
use crate::host::PackageFormat;
use crate::tools::Requirement;

/// The tables a pin file may hold, as the stage registry declares them.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Tables that pin a source (and hold that source's knobs).
    pub sources: Vec<&'static str>,
    /// Tables of knobs shared by several sources.
    pub shared: Vec<&'static str>,
}

/// The `[build]` table: knobs of the whole build.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct BuildTable {
    package_format: Option<PackageFormat>,
    compiler_launcher: Option<Spanned<String>>,
}

/// `[build]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildKnobs {
    pub package_format: PackageFormat,
    pub compiler_launcher: Option<String>,
    /// `[release] signing-key`, relative to the pin file's directory:
    /// machine policy, kept out of `source-config`.
    pub signing_key: Option<PathBuf>,
    /// `[release] installer`: which snp-build binary a release carries as
    /// `bin/snp-build` (machine policy too: it says how this machine ships
    /// releases, not what is built from the pins).
    pub installer: InstallerBinary,
    /// `[cache]`: machine policy too, kept out of `source-config` and of
    /// every fingerprint (settled with the machine files in `commands`).
    pub cache: super::cache::CacheTable,
}

/// Which snp-build binary a release carries as `bin/snp-build`, the one
/// installer that `install.sh` launches: `[release] installer`, or
/// `SNP_BUILD_INSTALLER` (`self`, `none` or a path).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InstallerBinary {
    /// The snp-build that builds the release (`self`, the default).
    #[default]
    Running,
    /// None (`none`): the release installs only through an snp-build the
    /// host already has; its `install.sh` says so.
    Omitted,
    /// This file, such as the portable binary `cargo xtask dist` makes
    /// (relative to the pin file's directory, or to the current one when
    /// it comes from the environment).
    File(PathBuf),
}

impl InstallerBinary {
    /// Reads `self`, `none` or a path (relative ones joined to `base`).
    pub fn parse(text: &str, base: &std::path::Path) -> InstallerBinary {
        match text {
            "" | "self" => InstallerBinary::Running,
            "none" => InstallerBinary::Omitted,
            path => InstallerBinary::File(base.join(path)),
        }
    }
}

/// Tables of machine policy (how this machine signs and shares), never
/// part of what is built: cut from `source-config`.
const MACHINE_POLICY: [&str; 2] = ["release", "cache"];

/// Whether a line is the header of a machine-policy table: `[cache]`,
/// `[ cache ]`, `["cache"]`, with or without a trailing comment.
fn is_policy_header(line: &str) -> bool {
    let code = line.split('#').next().unwrap_or("").trim();
    let Some(inner) = code.strip_prefix('[').and_then(|c| c.strip_suffix(']')) else {
        return false;
    };
    let name = inner.trim().trim_matches(|c| c == '"' || c == '\'');
    !inner.starts_with('[') && MACHINE_POLICY.contains(&name)
}

/// The `[release]` table: how this machine signs releases.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ReleaseTable {
    signing_key: Option<String>,
    installer: Option<String>,
}

/// A parsed pin file, knobs merged.
pub struct Document<'a> {
    file: &'a PinFile,
    loc: Locator<'a>,
    layout: &'a Layout,
    /// The file with every knob filled in (what `snp-build config` shows).
    merged: DeTable<'a>,
    /// The embedded default, for the knobs of sources the file lacks.
    defaults: DeTable<'static>,
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

impl<'a> Document<'a> {
    /// Parses `file`, refuses tables `layout` does not know, and merges
    /// the embedded default's knobs in.
    pub fn parse(file: &'a PinFile, layout: &'a Layout) -> Result<Document<'a>> {
        let loc = Locator {
            file: file.origin.display_name(),
            text: &file.text,
        };
        let user = parse_text(&loc, &file.text)?;
        let defaults = parse_text(
            &Locator {
                file: Origin::Embedded.display_name(),
                text: EMBEDDED,
            },
            EMBEDDED,
        )?;
        let mut doc = Document {
            file,
            loc,
            layout,
            merged: DeTable::new(),
            defaults,
        };
        doc.check_top_level(&user)?;
        doc.merged = doc.merge(&user);
        Ok(doc)
    }

    /// A located error about the value at `span`.
    pub fn error(
        &self,
        span: Option<Range<usize>>,
        key: &str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> ConfigError {
        self.loc.error(span, key, message, Some(help.into()))
    }

    /// A knob the file and the embedded default both lack.
    pub fn knob<'v, T>(&self, value: &'v Option<T>, key: &str) -> Result<&'v T> {
        value.as_ref().ok_or_else(|| {
            self.loc.error(
                None,
                key,
                "no value, and the embedded default has none either",
                Some("set it explicitly (this is a bug in snp-build's embedded default)".into()),
            )
        })
    }

    /// A list of tool requirements (`"gcc"`, `"nasm >= 2.15.01"`): each
    /// names a tool of the catalog, once.
    pub fn requirements(
        &self,
        value: &Option<Vec<Spanned<String>>>,
        key: &str,
    ) -> Result<Vec<Requirement>> {
        let mut out: Vec<Requirement> = Vec::new();
        for s in self.knob(value, key)? {
            let req = Requirement::parse(s.get_ref())
                .map_err(|e| self.error(Some(s.span()), key, e.message, e.help))?;
            if out.iter().any(|r| r.tool == req.tool) {
                return Err(self.error(
                    Some(s.span()),
                    key,
                    format!("`{}` is listed twice", req.tool),
                    "keep one entry per tool (with the highest minimum version)",
                ));
            }
            out.push(req);
        }
        Ok(out)
    }

    /// The directory relative paths in the file start from.
    pub fn base_dir(&self) -> &std::path::Path {
        &self.file.base_dir
    }

    /// The knobs of table `path` as `T` (whose fields are the knob keys,
    /// `deny_unknown_fields`): the file's table merged with the default's,
    /// or the default's when the file lacks it. Pin keys and tables of
    /// other sources inside it are not knobs and are left out.
    pub fn knobs<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let found = lookup(&self.merged, path).or_else(|| lookup(&self.defaults, path));
        let (span, table) = match found.map(|v| (v.span(), v.get_ref())) {
            Some((span, DeValue::Table(t))) => (span, t.clone()),
            Some((span, _)) => {
                return Err(self.error(
                    Some(span),
                    path,
                    "expected a table",
                    format!("write it as [{path}]"),
                ));
            }
            None => (0..0, DeTable::new()),
        };
        let is_source = self.layout.sources.contains(&path);
        // Keys valid here besides the knobs, for "expected one of" lists.
        let mut others: Vec<String> = Vec::new();
        if is_source {
            others.extend(PIN_KEYS.map(String::from));
        }
        let subtables: Vec<String> = self
            .layout
            .sources
            .iter()
            .filter_map(|s| s.strip_prefix(&format!("{path}.")))
            .map(String::from)
            .collect();
        let knobs: DeTable<'_> = table
            .into_iter()
            .filter(|(k, _)| !(is_source && PIN_KEYS.contains(&k.get_ref().as_ref())))
            .filter(|(k, _)| !self.is_source(&format!("{path}.{}", k.get_ref())))
            .collect();
        self.deserialize(path, span, knobs).map_err(|e| {
            if others.is_empty() && subtables.is_empty() {
                return e;
            }
            let mut details = e.into_details();
            details.message = widen_expected(&details.message, &others, &subtables);
            details.into()
        })
    }

    /// The pin of `spec`, when the file pins it.
    pub fn source(&self, spec: SourceSpec) -> Result<Option<Source>> {
        let Some(value) = lookup(&self.merged, spec.table) else {
            return Ok(None);
        };
        let (span, table) = match value.get_ref() {
            DeValue::Table(t) => (value.span(), t.clone()),
            _ => {
                return Err(self.error(
                    Some(value.span()),
                    spec.table,
                    "expected a table",
                    format!("write it as [{}]", spec.table),
                ));
            }
        };
        let pin_only: DeTable<'_> = table
            .into_iter()
            .filter(|(k, _)| PIN_KEYS.contains(&k.get_ref().as_ref()))
            .collect();
        let fields: PinFields = self.deserialize(spec.table, span, pin_only)?;
        pin::validate(spec, &fields, &self.loc, &self.file.base_dir).map(Some)
    }

    /// `[build]`, validated.
    pub fn build_knobs(&self) -> Result<BuildKnobs> {
        let t: BuildTable = self.knobs("build")?;
        let launcher = self.knob(&t.compiler_launcher, "build.compiler-launcher")?;
        if launcher.get_ref().chars().any(char::is_whitespace) {
            return Err(self.error(
                Some(launcher.span()),
                "build.compiler-launcher",
                format!("`{}` is not a single command name", launcher.get_ref()),
                "give one program such as \"ccache\", \"sccache\", \"distcc\" or \"icecc\"; its arguments belong in its own config",
            ));
        }
        let release: ReleaseTable = self.knobs("release")?;
        let cache: super::cache::CacheTable = self.knobs("cache")?;
        Ok(BuildKnobs {
            cache,
            package_format: *self.knob(&t.package_format, "build.package-format")?,
            compiler_launcher: (!launcher.get_ref().is_empty()).then(|| launcher.get_ref().clone()),
            signing_key: release
                .signing_key
                .filter(|k| !k.is_empty())
                .map(|k| self.file.base_dir.join(k)),
            installer: release
                .installer
                .map(|i| InstallerBinary::parse(&i, &self.file.base_dir))
                .unwrap_or_default(),
        })
    }

    /// The file with every knob filled in, as a pin file (itself valid).
    /// (Credentials in URLs shown as `***`.)
    pub fn effective(&self) -> toml::Table {
        let value = Spanned::new(0..0, DeValue::Table(self.merged.clone()));
        let mut table =
            toml::Table::deserialize(ValueDeserializer::from(value)).unwrap_or_default();
        for path in &self.layout.sources {
            let mut at = Some(&mut table);
            let mut parts = path.split('.').peekable();
            while let Some(part) = parts.next() {
                let Some(t) = at.take() else { break };
                if parts.peek().is_none() {
                    if let Some(toml::Value::Table(src)) = t.get_mut(part)
                        && let Some(toml::Value::String(url)) = src.get_mut("url")
                    {
                        *url = PinUrl::new(url.clone()).redacted();
                    }
                } else if let Some(toml::Value::Table(next)) = t.get_mut(part) {
                    at = Some(next);
                }
            }
        }
        table
    }

    /// The file's text with the credentials of every source URL replaced
    /// by `***` (what the release keeps as `source-config`).
    pub fn redacted_text(&self) -> String {
        let mut spans: Vec<(Range<usize>, String)> = Vec::new();
        for table in &self.layout.sources {
            let url = lookup(&self.merged, &format!("{table}.url"));
            if let Some(v) = url
                && let DeValue::String(raw) = v.get_ref()
            {
                let pin = PinUrl::new(raw.to_string());
                if pin.has_secret() {
                    spans.push((v.span(), pin.redacted()));
                }
            }
        }
        // `[release]` (signing) and `[cache]` (sharing) are this machine's
        // policy, not what is built: the lines of their keys are left out. Whole lines, as TOML has one key per
        // line: a dotted `release.signing-key = ...`, an inline
        // `cache = { ... }`, a trailing comment and a CRLF leave nothing
        // behind.
        for policy in MACHINE_POLICY {
            if let Some(DeValue::Table(table)) = lookup(&self.merged, policy).map(|v| v.get_ref()) {
                let text = &self.file.text;
                let lines: std::collections::BTreeSet<(usize, usize)> = table
                    .iter()
                    .map(|(key, value)| {
                        let start = text[..key.span().start].rfind('\n').map_or(0, |i| i + 1);
                        let end = text[value.span().end..]
                            .find('\n')
                            .map_or(text.len(), |i| value.span().end + i + 1);
                        (start, end)
                    })
                    .collect();
                spans.extend(lines.into_iter().map(|(a, b)| (a..b, String::new())));
            }
        }
        // The headers go too (`[cache]`, `[release]`), with the blank
        // lines before them, so a file with a policy table and one without
        // carry the same `source-config`.
        let text = &self.file.text;
        let mut at = 0;
        let mut blank_from = None;
        for line in text.split_inclusive('\n') {
            let bare = line.trim();
            if is_policy_header(bare) {
                spans.push((blank_from.unwrap_or(at)..at + line.len(), String::new()));
            }
            blank_from = match (bare.is_empty(), blank_from) {
                (true, None) => Some(at),
                (true, kept) => kept,
                (false, _) => None,
            };
            at += line.len();
        }
        let mut text = self.file.text.clone();
        spans.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
        for (span, redacted) in spans {
            let quoted = if redacted.is_empty() {
                redacted
            } else {
                toml::Value::String(redacted).to_string()
            };
            if span.end <= text.len() {
                text.replace_range(span, &quoted);
            }
        }
        text
    }

    fn is_source(&self, path: &str) -> bool {
        self.layout.sources.contains(&path)
    }

    /// Refuses top-level tables and keys the layout does not know.
    fn check_top_level(&self, user: &DeTable<'_>) -> Result<()> {
        let mut known: Vec<&str> = Vec::new();
        for table in ["build"]
            .into_iter()
            .chain(MACHINE_POLICY)
            .chain(self.layout.shared.iter().copied())
            .chain(self.layout.sources.iter().copied())
        {
            let top = table.split('.').next().unwrap_or(table);
            if !known.contains(&top) {
                known.push(top);
            }
        }
        let mut errors = Errors::default();
        for key in user.keys() {
            let name = key.get_ref();
            if !known.contains(&name.as_ref()) {
                let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                errors.take::<()>(Err(self.error(
                    Some(key.span()),
                    name,
                    format!(
                        "unknown field `{name}`, expected one of {}",
                        expected.join(", ")
                    ),
                    "remove the key or fix its spelling; `snp-build config` prints every valid key",
                )));
            }
        }
        errors.finish()
    }

    /// The file with the default's knobs filled in (see the module doc),
    /// in the default's order (the file's own order for what the default
    /// does not have).
    fn merge(&self, user: &DeTable<'a>) -> DeTable<'a> {
        self.merge_table("", user, Some(&self.defaults))
    }

    fn merge_table(
        &self,
        path: &str,
        user: &DeTable<'a>,
        default: Option<&DeTable<'static>>,
    ) -> DeTable<'a> {
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        let in_source = self.is_source(path);
        // Key order: pin keys, then the default's keys, then the file's
        // (each key keeps its own span, so errors point where it was written).
        let mut keys: Vec<Spanned<DeString<'a>>> = Vec::new();
        let mut add = |k: &Spanned<DeString<'a>>| {
            if !keys.iter().any(|o| o.get_ref() == k.get_ref()) {
                keys.push(k.clone());
            }
        };
        if in_source {
            for name in PIN_KEYS {
                if let Some((k, _)) = user.get_key_value(name) {
                    add(k);
                }
            }
        }
        for k in default.into_iter().flat_map(|d| d.keys()) {
            match user.get_key_value(k.get_ref().as_ref()) {
                Some((mine, _)) => add(mine),
                None => add(k),
            }
        }
        for k in user.keys() {
            add(k);
        }
        let mut out = DeTable::new();
        for key in keys {
            let name: &str = key.get_ref().as_ref();
            let full = join(name);
            let mine = user.get(name);
            let theirs = default.and_then(|d| d.get(name));
            let value = match (mine, theirs) {
                (Some(m), Some(t)) => match (m.get_ref(), t.get_ref()) {
                    (DeValue::Table(mt), DeValue::Table(tt)) => Some(Spanned::new(
                        m.span(),
                        DeValue::Table(self.merge_table(&full, mt, Some(tt))),
                    )),
                    _ => Some(m.clone()),
                },
                (Some(m), None) => Some(m.clone()),
                (None, Some(t)) => self.fill(
                    &full,
                    in_source && PIN_KEYS.contains(&name) && !pin::defaulted(name),
                    t,
                ),
                (None, None) => None,
            };
            if let Some(v) = value {
                out.insert(key, v);
            }
        }
        out
    }

    /// What the default's value at `full` contributes where the file has
    /// nothing: knobs yes; pins and the tables of sources the file does not
    /// pin, no.
    fn fill(
        &self,
        full: &str,
        is_pin_key: bool,
        default: &Spanned<DeValue<'static>>,
    ) -> Option<Spanned<DeValue<'a>>> {
        if is_pin_key || self.is_source(full) {
            return None;
        }
        match default.get_ref() {
            DeValue::Table(t) => Some(Spanned::new(
                default.span(),
                DeValue::Table(self.merge_table(full, &DeTable::new(), Some(t))),
            )),
            _ => Some(default.clone()),
        }
    }

    /// Deserializes `table` (found at `path`, spanning `span`) as `T`,
    /// with errors located in the file and keyed `path.<field>`.
    fn deserialize<T: DeserializeOwned>(
        &self,
        path: &str,
        span: Range<usize>,
        table: DeTable<'_>,
    ) -> Result<T> {
        let value = Spanned::new(span, DeValue::Table(table));
        serde_path_to_error::deserialize(ValueDeserializer::from(value)).map_err(|e| {
            // Spanned<T> adds a private segment to the path; users never wrote it.
            let inner_path = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let key = match inner_path.as_str() {
                "." | "" => path.to_string(),
                p => format!("{path}.{p}"),
            };
            let inner = e.into_inner();
            let message = inner.message().trim_end().to_string();
            self.loc.error(
                inner.span(),
                &key,
                message.clone(),
                Some(help_for(&message)),
            )
        })
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" names only the
/// knobs; the table also takes `before` (pin keys) and `after` (its
/// sources' tables).
fn widen_expected(message: &str, before: &[String], after: &[String]) -> String {
    let Some((head, expected)) = message
        .split_once(", expected ")
        .filter(|_| message.starts_with("unknown field"))
    else {
        return message.to_string();
    };
    let listed = expected.strip_prefix("one of ").unwrap_or(expected);
    let knobs: Vec<&str> = listed.split(", ").filter(|k| k.starts_with('`')).collect();
    let all: Vec<String> = before
        .iter()
        .map(|k| format!("`{k}`"))
        .chain(knobs.iter().map(|k| k.to_string()))
        .chain(after.iter().map(|k| format!("`{k}`")))
        .collect();
    format!("{head}, expected one of {}", all.join(", "))
}

/// The `help:` for a serde error message.
fn help_for(message: &str) -> String {
    if message.starts_with("unknown field") {
        "remove the key or fix its spelling; `snp-build config` prints every valid key".into()
    } else if message.starts_with("missing field `url`") {
        "every source table needs `url = \"...\"` and one of `branch`, `tag` or `commit`".into()
    } else {
        "`snp-build config` prints every key with a valid value".into()
    }
}

/// Parses a pin file's text (owned, so defaults and the file can mix).
fn parse_text<'t>(loc: &Locator<'_>, text: &'t str) -> Result<DeTable<'t>> {
    let doc = DeTable::parse(text).map_err(|e| {
        loc.error(
            e.span(),
            "",
            format!("invalid TOML: {}", e.message().trim_end()),
            Some("fix the syntax; `snp-build init` writes a valid example".into()),
        )
    })?;
    Ok(doc.into_inner())
}

/// The value at dotted `path`.
fn lookup<'t, 'v>(root: &'t DeTable<'v>, path: &str) -> Option<&'t Spanned<DeValue<'v>>> {
    let mut parts = path.split('.');
    let mut value = root.get(parts.next()?)?;
    for part in parts {
        match value.get_ref() {
            DeValue::Table(t) => value = t.get(part)?,
            _ => return None,
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn policy_headers_are_recognised_as_written() {
        for yes in [
            "[cache]",
            "[ cache ]",
            "[\"cache\"]",
            "[cache] # note",
            "[release]",
        ] {
            assert!(super::is_policy_header(yes), "{yes}");
        }
        for no in ["[[cache]]", "[qemu]", "cache = 1", "[cache.x]", "# [cache]"] {
            assert!(!super::is_policy_header(no), "{no}");
        }
    }
}
