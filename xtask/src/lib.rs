//! Project chores for snp-build, run as `cargo xtask NAME` (see `main.rs`).
//!
//! The library part is what the test suite of the main crate uses:
//! [`fixtures::create`] makes fake but working upstream git repositories
//! (kernel, QEMU, edk2) so that snp-build can be tested without GitHub.

pub mod fixtures;
