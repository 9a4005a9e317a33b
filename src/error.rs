//! The error every layer may raise for a request that cannot be satisfied
//! as asked. Errors specific to one part live beside it (a pin file's
//! [`crate::config::ConfigError`], a tree's local changes, a failed
//! preflight...); the CLI maps each to its exit code.

use std::fmt;

/// A bad command line, or a request the configuration or this host cannot
/// satisfy (exit 2): what is wrong, and what to do about it.
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

/// A command whose issue has not landed yet (exit 3). It never pretends
/// to work. (No command is in this state today.)
#[derive(Debug, thiserror::Error)]
#[error("`{command}` is not implemented yet (see README, \"Status\")")]
pub struct NotImplemented {
    pub command: &'static str,
}
