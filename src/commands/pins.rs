//! The pin file chores: `init` (write the default), `config` (the
//! effective configuration) and `import-legacy` (AMDSEV's bash
//! `stable-commits` to TOML, validated).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::config::{Origin, PinFile, legacy};
use crate::error::UsageError;
use crate::stage::Registry;

/// What `init` wrote.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Initialized {
    pub path: PathBuf,
    /// The stack it pins (`amd`, `upstream`, ...).
    pub stack: String,
    /// The kernel config fragments the default names, written beside it.
    pub fragments: Vec<PathBuf>,
    /// Fragments already there (yours: kept without --force).
    pub kept: Vec<PathBuf>,
}

/// `init`: writes a named stack's pin file for editing (the default `amd`:
/// the embedded default), and beside it the kernel config fragments it
/// names (`configs/snp-{host,guest}.config`, ...), so all of what a build
/// starts from is there to read and change.
pub fn init(output: &Path, force: bool, stack: &str) -> anyhow::Result<Initialized> {
    let stack = super::stacks::named(stack)?;
    if output.exists() && !force {
        return Err(
            UsageError::new(format!("{} already exists", output.display()))
                .help("edit it, or pass --force to replace it with the default")
                .into(),
        );
    }
    let dir = output.parent().unwrap_or(Path::new(""));
    let mut done = Initialized {
        path: output.to_path_buf(),
        stack: stack.name.to_string(),
        fragments: Vec::new(),
        kept: Vec::new(),
    };
    std::fs::write(output, stack.pins).with_context(|| format!("writing {}", output.display()))?;
    for (rel, text) in stack.fragment_texts() {
        let path = dir.join(rel);
        if path.exists() && !force {
            done.kept.push(path);
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        done.fragments.push(path);
    }
    tracing::info!(
        "wrote {} (the {} stack: {}){}; edit them, then run `snp-build --package`",
        output.display(),
        stack.name,
        stack.summary,
        if done.fragments.is_empty() {
            String::new()
        } else {
            format!(
                " and the kernel config fragments {}",
                done.fragments
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    for path in &done.kept {
        tracing::info!(
            "kept {} (already there; --force replaces it with the default)",
            path.display()
        );
    }
    Ok(done)
}

/// What `import-legacy` made (its JSON document).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Imported {
    pub toml: String,
    pub output: Option<PathBuf>,
    pub unknown: Vec<String>,
    pub notes: Vec<String>,
}

/// `import-legacy FILE [-o OUT]`: the converted file, validated; written
/// to OUT when given (the CLI prints it otherwise).
pub fn import_legacy(
    registry: &Registry,
    file: &Path,
    output: Option<&Path>,
    force: bool,
) -> anyhow::Result<Imported> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        UsageError::new(format!("cannot read {}: {e}", file.display()))
            .help("give the path of AMDSEV's bash `stable-commits` file")
    })?;
    let imported = legacy::import(&text, &file.display().to_string())
        .map_err(|e| UsageError::new(format!("{}: {e}", file.display())))?;
    // The result must be a pin file snp-build accepts.
    let base = output
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    registry
        .configure(PinFile::new(
            imported.toml.clone(),
            Origin::File("<converted>".into()),
            base,
        ))
        .context("the converted file does not validate (a bug in import-legacy)")?;
    for line in &imported.unknown {
        tracing::warn!("{}: {line}", file.display());
    }
    for note in &imported.notes {
        tracing::info!("note: {note}");
    }
    if let Some(path) = output {
        if path.exists() && !force {
            return Err(
                UsageError::new(format!("{} already exists", path.display()))
                    .help("choose another -o, or pass --force to overwrite it")
                    .into(),
            );
        }
        std::fs::write(path, &imported.toml)
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!("wrote {}", path.display());
    }
    Ok(Imported {
        toml: imported.toml,
        output: output.map(Path::to_path_buf),
        unknown: imported.unknown,
        notes: imported.notes,
    })
}
