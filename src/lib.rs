//! snp-build: builds the AMD SEV-SNP stack from pinned git trees.
//!
//! The pipeline is pins -> sources -> patches -> stages -> release; see
//! ARCHITECTURE.md for where each part lives and the invariants it keeps.

pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod exec;
pub mod fingerprint;
pub mod fsutil;
pub mod hash;
pub mod host;
pub mod progress;
pub mod release;
pub mod release_name;
pub mod schema;
pub mod signing;
pub mod snp_support;
pub mod source;
pub mod stage;
pub mod timings;
pub mod tools;
pub mod workdir;
