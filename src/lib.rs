//! snp-build: builds the AMD SEV-SNP stack from pinned git trees.
//!
//! The pipeline is pins -> sources -> patches -> stages -> release; see
//! ARCHITECTURE.md for where each part lives and the invariants it keeps.

pub mod clean;
pub mod cli;
pub mod commands;
pub mod component;
pub mod config;
pub mod doctor;
pub mod exec;
pub mod exit;
pub mod fingerprint;
pub mod fsutil;
pub mod host;
pub mod install;
pub mod kconfig;
pub mod legacy;
pub mod lock;
pub mod logging;
pub mod measure;
pub mod output;
pub mod patch;
pub mod plan;
pub mod release;
pub mod source;
pub mod stage;
pub mod toolversion;
pub mod workdir;
