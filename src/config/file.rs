//! Finding and reading the pin file: `--config FILE`, else
//! `./stable-commits.toml`, else the embedded default (said once, as a
//! note, so nobody builds AMD's trees by surprise).

use std::path::{Path, PathBuf};

use super::error::ConfigError;

/// The repository's `stable-commits.toml`: AMD's pins and build.sh's knobs.
pub const EMBEDDED: &str = include_str!("../../stable-commits.toml");

/// The pin file name looked up in the current directory.
pub const DEFAULT_FILE: &str = "stable-commits.toml";

/// Where the pin file text came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Embedded,
}

impl Origin {
    pub fn display_name(&self) -> String {
        match self {
            Origin::File(p) => p.display().to_string(),
            Origin::Embedded => "<embedded stable-commits.toml>".to_string(),
        }
    }
}

/// A pin file as read, not yet validated.
#[derive(Debug, Clone)]
pub struct PinFile {
    pub origin: Origin,
    /// The text as read (it goes into the release as `source-config`).
    pub text: String,
    /// Relative paths in the file (`patches`, `base-config`) start here.
    pub base_dir: PathBuf,
}

impl PinFile {
    /// `explicit` if given, else `./stable-commits.toml` if present, else
    /// the embedded default (with a note saying so).
    pub fn load(explicit: Option<&Path>) -> Result<PinFile, ConfigError> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => {
                let p = PathBuf::from(DEFAULT_FILE);
                p.is_file().then_some(p)
            }
        };
        let Some(path) = path else {
            tracing::info!(
                "note: no ./{DEFAULT_FILE} and no --config: using the embedded default pins (AMD's trees); `snp-build init` writes them to ./{DEFAULT_FILE} for editing"
            );
            return Ok(PinFile::embedded());
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::whole_file(
                path.display().to_string(),
                "",
                format!("cannot read the pin file: {e}"),
                "pass an existing file to --config, or run `snp-build init` to write the default one",
            )
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(PinFile::new(text, Origin::File(path), base_dir))
    }

    /// The compiled-in default; its patch directory is `./patches/`.
    pub fn embedded() -> PinFile {
        PinFile::new(EMBEDDED.to_string(), Origin::Embedded, PathBuf::new())
    }

    pub fn new(text: String, origin: Origin, base_dir: PathBuf) -> PinFile {
        PinFile {
            origin,
            text,
            base_dir,
        }
    }
}
