//! The build checks as a report: each check's status, what was found and
//! what is needed, and one command that installs everything missing.
//!
//! build.sh checks nothing first: a missing `iasl`, an old `nasm`, no
//! `flex` shows up an hour in as `build.py error 7000`. `snp-build doctor`
//! and the build's preflight ([`super::preflight`]) look before anything
//! is fetched, and report here.
//!
//! Guarantees:
//! - Statuses: `ok`; `missing`, `too old` and `failed` block (exit 4,
//!   [`PreflightFailed`]); `low` (disk below the estimate, which is rough),
//!   `unverified` (a version that could not be read) and `info` do not.
//! - The report ends with one command that installs the package of every
//!   missing or too-old tool: `apt-get install -y ...` on Debian-like hosts,
//!   `dnf install -y ...` elsewhere; `doctor --fix` runs it
//!   ([`super::packages::fix`]). What no package fixes (a base config)
//!   gets a `help:`.
//! - One JSON shape: `ready`, `checks` and `install` are the document's
//!   top level whether the doctor exits 0 or 4 (`cli` puts them there).
//! - The same table serves `doctor --host` ([`super::snp`]).

use std::fmt;

use serde::Serialize;

use super::packages::Fix;
use super::{Distro, PackageFormat};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(rename = "CheckStatus")]
pub enum Status {
    Ok,
    Missing,
    TooOld,
    Failed,
    /// Below an estimate: shown, does not block.
    Low,
    /// Present, but its version could not be checked: does not block.
    Unverified,
    Info,
}

impl Status {
    /// Whether this status makes the machine not ready.
    pub fn blocks(self) -> bool {
        matches!(self, Status::Missing | Status::TooOld | Status::Failed)
    }

    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::TooOld => "too old",
            Status::Failed => "failed",
            Status::Low => "low",
            Status::Unverified => "unverified",
            Status::Info => "info",
        }
    }
}

/// One line of a report.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Check {
    pub check: String,
    pub status: Status,
    /// What was found or read (a version, a path, a value).
    pub found: String,
    /// What is needed, and by which stage.
    pub needed: String,
    /// The package that provides it on this host's distro family.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// What to do when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Check {
    pub fn new(check: impl Into<String>, status: Status, found: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            status,
            found: found.into(),
            needed: String::new(),
            package: None,
            help: None,
        }
    }

    pub fn needed(mut self, needed: impl Into<String>) -> Check {
        self.needed = needed.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Check {
        self.help = Some(help.into());
        self
    }
}

/// The build checks of some stages, as `doctor` shows them and the build's
/// preflight refuses them.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub ready: bool,
    pub package_format: PackageFormat,
    pub distro: Distro,
    pub checks: Vec<Check>,
    /// Installs every missing or too-old tool; `None` when nothing is.
    pub install: Option<String>,
    /// What `doctor --fix` installed before these checks ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

impl Report {
    pub fn new(checks: Vec<Check>, package_format: PackageFormat, distro: Distro) -> Report {
        let packages = missing_packages(&checks);
        let install = (!packages.is_empty()).then(|| distro.install_command(&packages));
        Report {
            ready: !checks.iter().any(|c| c.status.blocks()),
            package_format,
            distro,
            checks,
            install,
            fix: None,
        }
    }

    /// The packages of every missing or too-old tool, each once, in the
    /// table's order: what [`Self::install`] installs.
    pub fn packages(&self) -> Vec<String> {
        missing_packages(&self.checks)
    }

    /// This report, the checks run after `fix`: a check its package did
    /// not fix says why that may be.
    pub fn after_fix(mut self, fix: Fix) -> Report {
        if fix.error.is_none() {
            for c in self.checks.iter_mut().filter(|c| c.status.blocks()) {
                if let Some(p) = c.package.as_ref().filter(|p| fix.packages.contains(p)) {
                    c.help = Some(format!(
                        "still {} after installing {p}: this distribution's package may be older than needed, or another copy comes first on PATH; install a newer one by hand",
                        c.status.word()
                    ));
                }
            }
        }
        self.fix = Some(fix);
        self
    }

    /// The checks that block.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status.blocks())
    }

    /// The table, then the install line and the help of what no package
    /// fixes.
    pub fn render(&self) -> String {
        let mut text = render_checks(&self.checks, "found");
        if let Some(line) = &self.install {
            text.push_str(&format!("\nto install what is missing:\n  {line}\n"));
        }
        text
    }
}

fn missing_packages(checks: &[Check]) -> Vec<String> {
    let mut packages: Vec<String> = Vec::new();
    for c in checks.iter().filter(|c| c.status.blocks()) {
        if let Some(p) = &c.package
            && !packages.contains(p)
        {
            packages.push(p.clone());
        }
    }
    packages
}

/// `check status found needed` columns, then `help:` for every check that
/// is not ok and has one.
pub fn render_checks(checks: &[Check], found_header: &str) -> String {
    let rows: Vec<[&str; 4]> = checks
        .iter()
        .map(|c| {
            [
                c.check.as_str(),
                c.status.word(),
                c.found.as_str(),
                c.needed.as_str(),
            ]
        })
        .collect();
    let mut text = table(["check", "status", found_header, "needed"], &rows);
    // One help per distinct text (both kernels share a base config).
    let mut helps: Vec<(Vec<&str>, &str)> = Vec::new();
    for c in checks.iter().filter(|c| c.status != Status::Ok) {
        let Some(help) = c.help.as_deref() else {
            continue;
        };
        match helps.iter_mut().find(|(_, h)| *h == help) {
            Some((names, _)) => names.push(&c.check),
            None => helps.push((vec![&c.check], help)),
        }
    }
    for (names, help) in helps {
        text.push_str(&format!("help: {}: {help}\n", names.join(", ")));
    }
    text
}

/// Left-aligned columns, two spaces apart, no trailing blanks.
fn table<const N: usize>(headers: [&str; N], rows: &[[&str; N]]) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&headers).chain(rows) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:w$}  "));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// The build checks failed: what the selected stages need is not all here
/// (exit 4). Its message is the whole report.
#[derive(Debug)]
pub struct PreflightFailed {
    pub report: Report,
}

impl fmt::Display for PreflightFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.report.failures().map(|c| c.check.as_str()).collect();
        write!(
            f,
            "this host lacks what the build needs ({}):\n{}",
            names.join(", "),
            self.report.render().trim_end()
        )
    }
}

impl std::error::Error for PreflightFailed {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_the_fix_did_not_mend_says_why_that_may_be() {
        let nasm = Check {
            package: Some("nasm".into()),
            ..Check::new("nasm", Status::TooOld, "2.14.02")
        };
        let fix = |error: Option<&str>| Fix {
            packages: vec!["nasm".into()],
            commands: vec!["apt-get update".into(), "apt-get install -y nasm".into()],
            error: error.map(str::to_string),
        };
        let report = || Report::new(vec![nasm.clone()], PackageFormat::Deb, Distro::Debian);
        let after = report().after_fix(fix(None));
        let help = after.checks[0].help.as_deref().unwrap();
        assert!(
            help.starts_with("still too old after installing nasm"),
            "{help}"
        );
        assert_eq!(after.fix.unwrap().packages, ["nasm"]);
        // A failed install is the reason itself: no guess added.
        assert!(
            report().after_fix(fix(Some("apt failed"))).checks[0]
                .help
                .is_none()
        );
    }

    #[test]
    fn table_aligns_columns_without_trailing_blanks() {
        let t = table(["a", "bb"], &[["xxx", "y"], ["", ""]]);
        assert_eq!(t, "a    bb\nxxx  y\n\n");
    }

    #[test]
    fn install_line_lists_each_blocking_package_once() {
        let tool = |name: &str, status: Status, pkg: &str| Check {
            package: Some(pkg.into()),
            ..Check::new(name, status, "")
        };
        let checks = vec![
            tool("gcc", Status::Ok, "gcc"),
            tool("nasm", Status::TooOld, "nasm"),
            tool("iasl", Status::Missing, "acpica-tools"),
            tool("iasl", Status::Missing, "acpica-tools"),
            tool("glib", Status::Unverified, "libglib2.0-dev"),
        ];
        let r = Report::new(checks.clone(), PackageFormat::Deb, Distro::Debian);
        assert!(!r.ready);
        assert_eq!(
            r.install.as_deref(),
            Some("apt-get install -y nasm acpica-tools")
        );
        let r = Report::new(checks[..1].to_vec(), PackageFormat::Rpm, Distro::Fedora);
        assert!(r.ready && r.install.is_none());
        assert_eq!(
            Distro::Fedora.install_command(&["nasm".into(), "acpica-tools".into()]),
            "dnf install -y nasm acpica-tools"
        );
    }
}
