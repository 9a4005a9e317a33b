//! Exit codes (documented in README) and the error types that carry them.
//!
//! Errors travel as `anyhow::Error`; `main` finds the exit code by looking
//! for one of the typed errors below anywhere in the chain. Anything else
//! is a failed fetch or build step (exit 1).

use std::fmt;

pub const OK: i32 = 0;
pub const FAILED: i32 = 1;
pub const USAGE: i32 = 2;
pub const NOT_IMPLEMENTED: i32 = 3;
pub const PREFLIGHT: i32 = 4;
pub const LOCK_MISMATCH: i32 = 5;
pub const WORK_DIR_IN_USE: i32 = 6;
pub const LOCAL_CHANGES: i32 = 7;
pub const INTERRUPTED: i32 = 130;

/// A bad command line or a request the configuration cannot satisfy.
#[derive(Debug)]
pub struct UsageError {
    pub message: String,
    pub help: Option<String>,
}

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError {
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UsageError {}

/// A command whose issue has not landed yet. It never pretends to work.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` is not implemented yet (see README, \"Status\")")]
pub struct NotImplemented {
    pub command: &'static str,
}

/// A tree's hand-edited tracked files stand in the way of a checkout.
#[derive(Debug)]
pub struct LocalChanges {
    pub source: String,
    pub tree: std::path::PathBuf,
    pub files: Vec<String>,
}

impl LocalChanges {
    pub fn new(source: &str, tree: std::path::PathBuf, files: Vec<String>) -> Self {
        LocalChanges {
            source: source.to_string(),
            tree,
            files,
        }
    }
}

impl fmt::Display for LocalChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} has local changes to tracked files; checking out the pinned commit would overwrite them:",
            self.source,
            self.tree.display()
        )?;
        for file in &self.files {
            writeln!(f, "    {file}")?;
        }
        write!(
            f,
            "  help: keep the change as a patch: `git -C {} diff > patches/{}/0001-my-change.patch`\n  help: or drop it: pass --discard-changes (its diff is saved under the work dir first)",
            self.tree.display(),
            self.source
        )
    }
}

impl std::error::Error for LocalChanges {}

/// `--locked`, and the lock does not cover a pin.
#[derive(Debug, thiserror::Error)]
#[error(
    "{source_name}: {reason}\n  help: run `snp-build update` to resolve the pins and rewrite {lock}"
)]
pub struct LockMismatch {
    pub source_name: String,
    pub reason: String,
    pub lock: String,
}

/// The exit code for an error chain.
pub fn code_for(err: &anyhow::Error) -> i32 {
    // Whatever failed after Ctrl-C or SIGTERM failed because of it.
    if crate::exec::interrupted() {
        return INTERRUPTED;
    }
    for cause in err.chain() {
        if cause.is::<UsageError>() || cause.is::<crate::config::ConfigError>() {
            return USAGE;
        }
        if cause.is::<NotImplemented>() {
            return NOT_IMPLEMENTED;
        }
        if cause.is::<crate::exec::Interrupted>() {
            return INTERRUPTED;
        }
        if cause.is::<crate::workdir::WorkDirInUse>() {
            return WORK_DIR_IN_USE;
        }
        if cause.is::<LockMismatch>() {
            return LOCK_MISMATCH;
        }
        if cause.is::<LocalChanges>() {
            return LOCAL_CHANGES;
        }
        if cause.is::<crate::doctor::PreflightFailed>() {
            return PREFLIGHT;
        }
    }
    FAILED
}
