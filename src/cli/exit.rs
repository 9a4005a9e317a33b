//! Exit codes (documented in README), mapped from the typed errors the
//! layers below raise.
//!
//! Errors travel as `anyhow::Error`; the exit code comes from the first
//! typed error found anywhere in the chain. Anything else is a failed
//! fetch or build step (exit 1).

use crate::config::ConfigError;
use crate::error::{NotImplemented, UsageError};
use crate::exec::Interrupted;
use crate::host::doctor::PreflightFailed;
use crate::source::lock::LockMismatch;
use crate::source::tree::LocalChanges;
use crate::workdir::WorkDirInUse;

pub const OK: i32 = 0;
pub const FAILED: i32 = 1;
pub const USAGE: i32 = 2;
pub const NOT_IMPLEMENTED: i32 = 3;
pub const PREFLIGHT: i32 = 4;
pub const LOCK_MISMATCH: i32 = 5;
pub const WORK_DIR_IN_USE: i32 = 6;
pub const LOCAL_CHANGES: i32 = 7;
pub const INTERRUPTED: i32 = 130;

/// The exit code for an error chain.
pub fn code_for(err: &anyhow::Error) -> i32 {
    // Whatever failed after Ctrl-C or SIGTERM failed because of it.
    if crate::exec::interrupted() {
        return INTERRUPTED;
    }
    for cause in err.chain() {
        if cause.is::<UsageError>() || cause.is::<ConfigError>() {
            return USAGE;
        }
        if cause.is::<NotImplemented>() {
            return NOT_IMPLEMENTED;
        }
        if cause.is::<Interrupted>() {
            return INTERRUPTED;
        }
        if cause.is::<WorkDirInUse>() {
            return WORK_DIR_IN_USE;
        }
        if cause.is::<LockMismatch>() {
            return LOCK_MISMATCH;
        }
        if cause.is::<LocalChanges>() {
            return LOCAL_CHANGES;
        }
        if cause.is::<PreflightFailed>() {
            return PREFLIGHT;
        }
    }
    FAILED
}
