//! The reference for snp-build's launch digests: sev-snp-measure (PyPI),
//! one release per VMSA mode, from the venvs `.ci/install-deps` makes. The
//! test suite and `cargo xtask e2e-real` both compare against it.

use anyhow::{Result, ensure};
use std::path::PathBuf;

/// The sev-snp-measure that computes a VMSA mode's digests: the venvs
/// `.ci/install-deps` makes: 0.0.13 for `init2` at
/// `SNP_BUILD_TEST_VENV`, 0.0.9 for `legacy` at `SNP_BUILD_TEST_VENV_LEGACY`.
pub fn for_mode(mode: &str) -> Result<PathBuf> {
    let (var, default, version) = match mode {
        "init2" => ("SNP_BUILD_TEST_VENV", "/opt/snp-build-test/venv", "0.0.13"),
        "legacy" => (
            "SNP_BUILD_TEST_VENV_LEGACY",
            "/opt/snp-build-test/venv-legacy",
            "0.0.9",
        ),
        other => anyhow::bail!("MEASUREMENTS names the unknown VMSA mode {other:?}"),
    };
    let venv = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    let bin = venv.join("bin/sev-snp-measure");
    ensure!(
        bin.is_file(),
        "{} is missing: run `bash .ci/install-deps` (a venv with sev-snp-measure=={version} \
         from PyPI; {var} chooses another venv)",
        bin.display()
    );
    Ok(bin)
}
