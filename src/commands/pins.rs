//! The pin file chores: `init` (write the default), `config` (the
//! effective configuration) and `import-legacy` (AMDSEV's bash
//! `stable-commits` to TOML, validated).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::config::{EMBEDDED, Origin, PinFile, legacy};
use crate::error::UsageError;
use crate::stage::Registry;

/// `init`: writes the embedded default for editing.
pub fn init(output: &Path, force: bool) -> anyhow::Result<PathBuf> {
    if output.exists() && !force {
        return Err(
            UsageError::new(format!("{} already exists", output.display()))
                .help("edit it, or pass --force to replace it with the default")
                .into(),
        );
    }
    std::fs::write(output, EMBEDDED).with_context(|| format!("writing {}", output.display()))?;
    tracing::info!(
        "wrote {} (AMD's default pins and build.sh's knobs); edit it, then run `snp-build --package`",
        output.display()
    );
    Ok(output.to_path_buf())
}

/// What `import-legacy` made (its JSON document).
#[derive(Debug, Serialize)]
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
