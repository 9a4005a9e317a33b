//! `snp-build import-legacy`: converts AMDSEV's bash `stable-commits` into a
//! `stable-commits.toml`.
//!
//! Both forms are understood: the old one with one `KERNEL_GIT_URL` for both
//! kernels, and the newer one with `KERNEL_HOST_GIT_URL` /
//! `KERNEL_GUEST_GIT_URL`. The file is read as data, never run: only plain
//! `NAME=value` assignments (optionally `export`ed, quoted or not, with
//! comments) are accepted; anything else is reported with its line number.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The result of reading a legacy file.
#[derive(Debug, Default)]
pub struct Imported {
    /// The converted pin file.
    pub toml: String,
    /// Lines that were not converted, each with its line number and why.
    pub unknown: Vec<String>,
    /// Advice about values that may need a look (e.g. a tag in *_BRANCH).
    pub notes: Vec<String>,
}

/// AMDSEV's variables and the tables they become (source name, table),
/// in the order the sources appear in the output. This is the legacy
/// format's own vocabulary: it never had more than these four.
const SOURCES: [((&str, &str), &[&str], &str); 4] = [
    (
        ("kernel-host", "kernel.host"),
        &["KERNEL_HOST_GIT_URL", "KERNEL_GIT_URL"],
        "KERNEL_HOST_BRANCH",
    ),
    (
        ("kernel-guest", "kernel.guest"),
        &["KERNEL_GUEST_GIT_URL", "KERNEL_GIT_URL"],
        "KERNEL_GUEST_BRANCH",
    ),
    (("qemu", "qemu"), &["QEMU_GIT_URL"], "QEMU_BRANCH"),
    (("ovmf", "ovmf"), &["OVMF_GIT_URL"], "OVMF_BRANCH"),
];

fn known(name: &str) -> bool {
    SOURCES
        .iter()
        .any(|(_, urls, branch)| urls.contains(&name) || *branch == name)
}

/// Converts the text of a legacy `stable-commits` file. `origin` names it
/// in the generated header.
pub fn import(text: &str, origin: &str) -> Result<Imported, String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Imported::default();

    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let assignment = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((name, value)) = assignment.split_once('=') else {
            out.unknown.push(format!(
                "line {n}: not an assignment, not converted: {line}"
            ));
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.unknown.push(format!(
                "line {n}: not an assignment, not converted: {line}"
            ));
            continue;
        }
        let value = shell_value(value).map_err(|e| format!("line {n}: {e}: {line}"))?;
        if !known(name) {
            out.unknown.push(format!(
                "line {n}: unknown variable {name}={value:?}, not converted"
            ));
            continue;
        }
        vars.insert(name.to_string(), value);
    }

    let mut toml = String::new();
    let _ = writeln!(
        toml,
        "# Converted by `snp-build import-legacy` from {origin}.\n\
         # Knobs left out take snp-build's defaults (see `snp-build config`)."
    );
    let mut any = false;
    for ((name, table), url_vars, branch_var) in SOURCES {
        let url = url_vars.iter().find_map(|v| vars.get(*v));
        let branch = vars.get(branch_var);
        match (url, branch) {
            (Some(url), Some(branch)) => {
                any = true;
                let _ = write!(toml, "\n[{table}]\nurl = {}\n", quote(url));
                let _ = writeln!(toml, "{}", rev_line(branch, branch_var, &mut out.notes));
            }
            (Some(_), None) => out.notes.push(format!(
                "{name} has a URL but no {branch_var}: [{table}] left out"
            )),
            (None, Some(_)) => out.notes.push(format!(
                "{branch_var} is set but no {} is: [{table}] left out",
                url_vars.join(" or ")
            )),
            (None, None) => {}
        }
    }
    if !any {
        return Err(format!(
            "no source could be converted: expected variables such as KERNEL_GIT_URL and KERNEL_HOST_BRANCH, QEMU_GIT_URL and QEMU_BRANCH, OVMF_GIT_URL and OVMF_BRANCH{}",
            if out.unknown.is_empty() {
                String::new()
            } else {
                format!(" ({})", out.unknown.join("; "))
            }
        ));
    }
    out.toml = toml;
    Ok(out)
}

/// `branch`, `tag` or `commit` for a legacy *_BRANCH value.
fn rev_line(value: &str, var: &str, notes: &mut Vec<String>) -> String {
    if let Some(tag) = value.strip_prefix("refs/tags/") {
        return format!("tag = {}", quote(tag));
    }
    if let Some(branch) = value.strip_prefix("refs/heads/") {
        return format!("branch = {}", quote(branch));
    }
    if (7..=40).contains(&value.len()) && value.chars().all(|c| c.is_ascii_hexdigit()) {
        return format!("commit = {}", quote(value));
    }
    if value.starts_with('v') && value[1..].starts_with(|c: char| c.is_ascii_digit()) {
        notes.push(format!(
            "{var}={value} looks like a tag: written as `branch`; change it to `tag = {}` if it is one",
            quote(value)
        ));
    }
    format!("branch = {}", quote(value))
}

/// The value of a shell assignment: unquoted (a trailing comment allowed),
/// single- or double-quoted. Expansions are refused: the file is data.
fn shell_value(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let (value, rest) = if let Some(body) = raw.strip_prefix('"') {
        let end = body.find('"').ok_or("unterminated double quote")?;
        (&body[..end], &body[end + 1..])
    } else if let Some(body) = raw.strip_prefix('\'') {
        let end = body.find('\'').ok_or("unterminated single quote")?;
        (&body[..end], &body[end + 1..])
    } else {
        let end = raw.find(char::is_whitespace).unwrap_or(raw.len());
        (&raw[..end], &raw[end..])
    };
    let rest = rest.trim();
    if !rest.is_empty() && !rest.starts_with('#') && !rest.starts_with(';') {
        return Err("unexpected text after the value".into());
    }
    if value.contains('$') || value.contains('`') {
        return Err("the value uses shell expansion, which is not converted".into());
    }
    Ok(value.to_string())
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(shell_value("\"a b\"").unwrap(), "a b");
        assert_eq!(shell_value("'x'  # c").unwrap(), "x");
        assert_eq!(shell_value("plain # c").unwrap(), "plain");
        assert!(shell_value("\"$HOME\"").is_err());
        assert!(shell_value("\"open").is_err());
    }

    #[test]
    fn revs() {
        let mut notes = vec![];
        assert_eq!(rev_line("refs/tags/v1", "X", &mut notes), "tag = \"v1\"");
        assert_eq!(
            rev_line("deadbeef", "X", &mut notes),
            "commit = \"deadbeef\""
        );
        assert_eq!(rev_line("v6.9", "X", &mut notes), "branch = \"v6.9\"");
        assert_eq!(notes.len(), 1);
    }
}
