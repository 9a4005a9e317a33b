//! Versions of the host tools a stage runs (gcc, make, nasm, ...), for
//! fingerprints. A version is queried once per binary and remembered under
//! `<work>/state/tool-versions.json`, keyed by the binary's path, size and
//! mtime, so a no-op build runs no `--version` subprocess at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

#[derive(Debug, Default)]
pub struct ToolVersions {
    path: Option<PathBuf>,
    cache: BTreeMap<String, String>,
    dirty: bool,
}

impl ToolVersions {
    /// Reads the cache of `work_dir` (absent or unreadable: empty).
    pub fn load(work_dir: &Path) -> ToolVersions {
        let path = work_dir.join("state/tool-versions.json");
        let cache = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        ToolVersions {
            path: Some(path),
            cache,
            dirty: false,
        }
    }

    /// The version line of `tool` as found on PATH, or `missing`.
    pub fn version(&mut self, tool: &str) -> String {
        let Some(bin) = which(tool) else {
            return "missing".into();
        };
        let key = match std::fs::metadata(&bin) {
            Ok(m) => format!(
                "{}|{}|{}",
                bin.display(),
                m.len(),
                m.modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            ),
            Err(_) => return "missing".into(),
        };
        if let Some(v) = self.cache.get(&key) {
            return v.clone();
        }
        let v = query(&bin, tool);
        self.cache.insert(key, v.clone());
        self.dirty = true;
        v
    }

    /// Saves new entries (the build does; `plan` never writes).
    pub fn save(&self) -> anyhow::Result<()> {
        match (&self.path, self.dirty) {
            (Some(p), true) => {
                crate::fsutil::write_atomic(p, &serde_json::to_vec_pretty(&self.cache)?)
            }
            _ => Ok(()),
        }
    }
}

/// The first line that carries a version (nasm and iasl take `-v`).
fn query(bin: &Path, tool: &str) -> String {
    let flag = if matches!(tool, "nasm" | "iasl") {
        "-v"
    } else {
        "--version"
    };
    let out = crate::exec::capture(&crate::exec::Cmd::new(bin, Path::new("/")).arg(flag));
    let text = match out {
        Ok(o) => format!("{}{}", o.stdout, o.stderr),
        Err(_) => return "unrunnable".into(),
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| l.to_ascii_lowercase().contains("version"))
        .or(lines.first())
        .map(|l| l.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `tool` on PATH, like `which`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
