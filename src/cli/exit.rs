//! Exit codes (documented in README), mapped from the typed errors the
//! layers below raise.
//!
//! Errors travel as `anyhow::Error`; the exit code comes from the first
//! typed error found anywhere in the chain. Anything else is a failed
//! fetch or build step (exit 1).

use crate::commands::install::{Downgrade, StepFailed};
use crate::commands::verify::{
    ChecksumMismatch, DocumentMismatch, SignatureRefused, TarballRefused,
};
use crate::config::ConfigError;
use crate::error::{NotImplemented, UsageError};
use crate::exec::Interrupted;
use crate::host::doctor::PreflightFailed;
use crate::source::lock::{LockMismatch, TagMoved};
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
/// `install`, `install.sh` and `verify`: the release's checksums,
/// signature, SBOM or provenance do not hold, or its tarball holds what
/// no release does (`..`, an absolute path, a link); nothing was changed.
pub const NOT_VERIFIED: i32 = 8;
/// `install` and `install.sh`: a step failed after the system was
/// changed; the install record says what was done.
pub const INSTALL_INCOMPLETE: i32 = 9;
/// `install` and `install.sh`: the release is older than the installed
/// one and `--allow-downgrade` was not given; nothing was changed.
pub const DOWNGRADE: i32 = 10;
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
        if cause.is::<LockMismatch>() || cause.is::<TagMoved>() {
            return LOCK_MISMATCH;
        }
        if cause.is::<LocalChanges>() {
            return LOCAL_CHANGES;
        }
        if cause.is::<PreflightFailed>() {
            return PREFLIGHT;
        }
        if cause.is::<ChecksumMismatch>()
            || cause.is::<SignatureRefused>()
            || cause.is::<DocumentMismatch>()
            || cause.is::<TarballRefused>()
        {
            return NOT_VERIFIED;
        }
        if cause.is::<StepFailed>() {
            return INSTALL_INCOMPLETE;
        }
        if cause.is::<Downgrade>() {
            return DOWNGRADE;
        }
    }
    FAILED
}
