//! The pin file (`stable-commits.toml`): finding and reading it, parsing
//! it with every error located, merging the embedded default's knobs, and
//! validating pins. What tables it holds is the stage registry's to say
//! ([`Layout`]); each component validates its own knobs through
//! [`Document`].
//!
//! Guarantees:
//! - A file is fully validated before any command does anything else:
//!   every error names the file, line and column, the key, and what is
//!   expected ([`ConfigError`], exit 2).
//! - Build knobs have no defaults in code. A knob a file leaves out takes
//!   the value from the embedded default file (the repository's own
//!   `stable-commits.toml`, compiled in), so the defaults are data and
//!   `snp-build config` prints a complete, valid pin file.
//! - Pins are never defaulted: a file names only the sources it builds.
//! - Never: fetches, writes, or knows a component by name (`legacy`
//!   converts AMDSEV's four fixed variables, which is that format's own
//!   vocabulary).

pub mod cache;
pub mod document;
pub mod error;
pub mod file;
pub mod legacy;
pub mod pin;
pub mod url;

pub use document::{BuildKnobs, Document, InstallerBinary, Layout};
pub use error::{ConfigError, Errors, both};
pub use file::{DEFAULT_FILE, EMBEDDED, Origin, PinFile};
pub use pin::{Rev, Source, SourceSpec};
pub use url::PinUrl;
