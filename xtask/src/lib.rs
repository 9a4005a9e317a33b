//! Project chores for snp-build, run as `cargo xtask NAME` (see `main.rs`).
//!
//! The library part is what the test suite of the main crate uses:
//! [`fixtures::create`] makes fake but working upstream git repositories
//! (kernel, QEMU, edk2) so that snp-build can be tested without GitHub.
//! [`bench`] and [`real`] are the benchmark and the real-tree end-to-end
//! run; [`report`] is what they share (measuring, `BENCHMARKS.md`);
//! [`dist`] checks the release binary and [`deb`] packages it.

pub mod bench;
pub mod build_dir;
pub mod deb;
pub mod dist;
pub mod elf;
pub mod fetch;
pub mod fixtures;
pub mod real;
pub mod registry;
pub mod report;
pub mod sev_snp_measure;
pub mod share;
