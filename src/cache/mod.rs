//! The shared stage cache: stage outputs kept in an OCI registry, so a
//! fleet of build boxes builds each input once.
//!
//! This layer knows registries and artifacts, not components: `artifact`
//! is the layout (ORAS conventions, tags from fingerprints, every check a
//! pulled artifact must pass), `oci` the transport (`oci-client`, TLS,
//! credentials, timeouts). `stage::share` decides what of a stage goes in
//! and comes out.
//!
//! Guarantees:
//! - Nothing pulled is trusted: the manifest's annotations must carry the
//!   wanted stage and fingerprint, every file of the record must have its
//!   layer, and every blob's digest and size are checked as it arrives.
//! - A registry that is down, slow or refusing is a warning, never a
//!   failed run (unless `--cache-remote-required`).
//! - The cache is machine policy: it never enters a fingerprint, the
//!   manifest or `source-config`.

pub mod artifact;
pub mod oci;

/// Something wrong with an artifact itself (a check it fails, a blob
/// whose digest or size is wrong): refused, and the stage built here.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Damaged(pub String);

/// The registry could not be used (unreachable, timed out, refused us):
/// one warning and local builds, or an error under
/// `--cache-remote-required`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);
