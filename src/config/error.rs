//! A pin file error, located to the character: file, line, column, key,
//! what is wrong, the offending line with a caret, and what to do.

use std::fmt;
use std::ops::Range;

/// A pin file that cannot be used, located to the character: one error,
/// or several found in one run (so a file with three mistakes takes one
/// edit, not three runs). Derefs to the first. (Boxed: it travels in every
/// `Result` of this module.)
#[derive(Debug)]
pub struct ConfigError(Box<Found>);

#[derive(Debug)]
pub struct Found {
    first: ConfigErrorDetails,
    more: Vec<ConfigErrorDetails>,
}

impl std::ops::Deref for ConfigError {
    type Target = ConfigErrorDetails;
    fn deref(&self) -> &ConfigErrorDetails {
        &self.0.first
    }
}

impl From<ConfigErrorDetails> for ConfigError {
    fn from(details: ConfigErrorDetails) -> Self {
        ConfigError(Box::new(Found {
            first: details,
            more: Vec::new(),
        }))
    }
}

#[derive(Debug)]
pub struct ConfigErrorDetails {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `qemu.branch`; empty for syntax errors.
    pub key: String,
    pub message: String,
    pub help: Option<String>,
    /// The offending source line, shown under the message.
    pub source_line: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.more.is_empty() {
            return self.0.first.fmt(f);
        }
        write!(
            f,
            "{}: {} errors (fix them all, then `snp-build config` checks again)",
            self.file,
            self.0.more.len() + 1
        )?;
        for e in self.errors() {
            write!(f, "\n{e}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ConfigErrorDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = &self.source_line {
            let number = self.line.to_string();
            write!(f, "\n  {number} | {line}")?;
            write!(
                f,
                "\n  {} | {}^",
                " ".repeat(number.len()),
                " ".repeat(self.column.saturating_sub(1))
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Gathers the errors of checks that do not depend on each other, so one
/// run names every one of them.
#[derive(Default)]
pub struct Errors(Vec<ConfigErrorDetails>);

impl Errors {
    /// `result`'s value, or `None` with its error(s) kept.
    pub fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let found = *e.0;
                for d in std::iter::once(found.first).chain(found.more) {
                    // A table read by two components (`[kernel]`) fails
                    // twice the same way: said once.
                    if !self.0.iter().any(|o| o.same_as(&d)) {
                        self.0.push(d);
                    }
                }
                None
            }
        }
    }

    /// `Ok` when nothing was found; else every error, in file order.
    pub fn finish(mut self) -> Result<(), ConfigError> {
        // Stable: errors on one spot keep the order they were found in.
        self.0.sort_by_key(|d| (d.line, d.column));
        let mut all = self.0.into_iter();
        match all.next() {
            None => Ok(()),
            Some(first) => Err(ConfigError(Box::new(Found {
                first,
                more: all.collect(),
            }))),
        }
    }
}

/// Both values, or the errors of either or both: for two checks of one
/// table that do not depend on each other (its pin and its knobs).
pub fn both<A, B>(
    a: Result<A, ConfigError>,
    b: Result<B, ConfigError>,
) -> Result<(A, B), ConfigError> {
    let mut errors = Errors::default();
    let (a, b) = (errors.take(a), errors.take(b));
    errors.finish()?;
    match (a, b) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => unreachable!("no error was kept, so both are values"),
    }
}

impl ConfigErrorDetails {
    fn same_as(&self, other: &ConfigErrorDetails) -> bool {
        (&self.file, self.line, self.column, &self.key, &self.message)
            == (
                &other.file,
                other.line,
                other.column,
                &other.key,
                &other.message,
            )
    }
}

/// Builds located errors for one file's text.
pub struct Locator<'a> {
    pub file: String,
    pub text: &'a str,
}

impl Locator<'_> {
    pub fn error(
        &self,
        span: Option<Range<usize>>,
        key: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
        let offset = span.map(|s| s.start).unwrap_or(0).min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        let source_line = self.text[line_start..]
            .lines()
            .next()
            .map(|l| redact_urls(l.trim_end()));
        ConfigErrorDetails {
            file: self.file.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
            help,
            source_line,
        }
        .into()
    }
}

impl ConfigError {
    /// The (first) error's parts, to reword it.
    pub fn into_details(self) -> ConfigErrorDetails {
        self.0.first
    }

    /// Every error found, in file order.
    pub fn errors(&self) -> impl Iterator<Item = &ConfigErrorDetails> {
        std::iter::once(&self.0.first).chain(&self.0.more)
    }

    /// An error about the file as a whole (it cannot be read, it lacks a
    /// table): no line or column.
    pub fn whole_file(
        file: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> ConfigError {
        ConfigErrorDetails {
            file: file.into(),
            line: 0,
            column: 0,
            key: key.into(),
            message: message.into(),
            help: Some(help.into()),
            source_line: None,
        }
        .into()
    }
}

/// A pin file line as shown under an error: every quoted URL redacted
/// (a password in it never reaches stderr).
fn redact_urls(line: &str) -> String {
    let mut out = String::new();
    for (i, part) in line.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        if i % 2 == 1 && part.contains("://") {
            out.push_str(&super::url::PinUrl::new(part).redacted());
        } else {
            out.push_str(part);
        }
    }
    out
}
