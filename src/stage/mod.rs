//! The stages: one typed component per file (`kernel/`, `qemu.rs`,
//! `ovmf.rs`), the registry that lists them once in build order
//! (`registry.rs`), what a component is (`component.rs`), and the executor
//! that runs them under one job budget (`run.rs`), and the compiler and
//! `date` wrappers that keep build paths and times out of the outputs
//! (`wrappers.rs`).
//!
//! Guarantees:
//! - A component owns everything about itself: its pin and knob table and
//!   their validation, its one tool list (preflight, fingerprint and
//!   version queries alike), its typed inputs (what the stamp records), a
//!   `build()` returning typed outputs, its release entries, its manifest
//!   section and its work-dir products.
//! - Nothing outside this folder matches on a component: plan, fetch,
//!   preflight, release, clean and the JSON summary loop over a
//!   [`registry::Stack`].
//! - Never: prints JSON or parses command lines (the CLI does), or builds
//!   a path under the work dir by hand ([`crate::workdir`] does).

pub mod component;
pub mod kernel;
pub mod ovmf;
pub mod qemu;
pub mod registry;
pub mod run;
pub mod share;
pub mod wrappers;

pub use component::{BuildEnv, Component, Entry, Force, SourceFacts, Spec, Stage};
pub use registry::{Registry, Selection, Stack};
pub use run::{Outcome, Status, Work};
