//! `[cache]`: where this machine shares stage outputs (an OCI registry).
//!
//! It is machine policy, not part of what is built: it may sit in the pin
//! file, in a per-machine file (`/etc/snp-build/config.toml`, then
//! `$XDG_CONFIG_HOME/snp-build/config.toml` or
//! `~/.config/snp-build/config.toml`) or on the command line, and later
//! ones win key by key: the pin file (a team's default, from its
//! repository), the machine's file, the user's file, the command line. So
//! a pin file someone else wrote cannot override what this machine says
//! (e.g. `insecure = false`).
//! It never reaches `source-config`, the manifest, the pin file's digest
//! or a fingerprint, so two boxes with different cache settings build
//! byte-identical releases.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::UsageError;

/// `[cache]` as written (every key optional; the layers are merged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheTable {
    /// `oci://HOST[:PORT]/NAMESPACE`; `""` turns a lower layer's off.
    pub remote: Option<String>,
    pub mode: Option<CacheMode>,
    /// Plain HTTP (a test's loopback registry); TLS otherwise.
    pub insecure: Option<bool>,
    /// Seconds to wait for the registry to connect or answer a read.
    pub timeout: Option<u64>,
}

/// Whether this machine pushes what it builds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    /// Pull only (an engineer's box): the default once a remote is set.
    #[default]
    ReadOnly,
    /// Pull, and push every stage built here (the nightly).
    ReadWrite,
}

impl CacheTable {
    /// `self` with `over`'s keys put on top.
    pub fn overlay(self, over: &CacheTable) -> CacheTable {
        CacheTable {
            remote: over.remote.clone().or(self.remote),
            mode: over.mode.or(self.mode),
            insecure: over.insecure.or(self.insecure),
            timeout: over.timeout.or(self.timeout),
        }
    }
}

/// A parsed `oci://` remote: the registry (`host[:port]`) and the
/// namespace each stage's repository goes under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub registry: String,
    pub namespace: String,
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.namespace)
    }
}

/// The settled policy: whether and where to share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    pub remote: Remote,
    pub mode: CacheMode,
    pub insecure: bool,
    pub timeout: std::time::Duration,
    /// `--cache-remote-required`: a registry that cannot be used fails
    /// the run instead of warning.
    pub required: bool,
}

/// How long a registry may take to connect or answer, unless `timeout`
/// says otherwise: long enough for a loaded registry, short enough that a
/// dead one costs a build little.
pub const DEFAULT_TIMEOUT_S: u64 = 20;

/// Parses `oci://HOST[:PORT]/NAMESPACE`. `what` names where it came from.
pub fn parse_remote(text: &str, what: &str) -> Result<Remote, UsageError> {
    // Anything that may be a credential (user-info, a query) is refused
    // before the text is ever shown.
    let authority = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or("");
    if authority.contains('@') || text.contains('?') || text.contains('#') {
        return Err(UsageError::new(format!(
            "{what}: the remote carries user-info or a query (a credential?); it is not shown, and never read from here"
        ))
        .help("write it as oci://HOST[:PORT]/NAMESPACE, and log in with `docker login HOST` (~/.docker/config.json) or set SNP_BUILD_CACHE_USER and SNP_BUILD_CACHE_PASSWORD"));
    }
    let bad = |why: &str| {
        UsageError::new(format!("{what}: `{text}` is not a registry remote: {why}"))
            .help("write it as oci://HOST[:PORT]/NAMESPACE, e.g. oci://registry.example.com:5000/snp-build")
    };
    let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "oci" {
        return Err(bad("the scheme must be oci://"));
    }
    let host = url.host_str().ok_or_else(|| bad("it names no host"))?;
    let registry = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let namespace = url.path().trim_matches('/').to_string();
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
    if namespace.is_empty() || !namespace.chars().all(valid) {
        return Err(bad(
            "the namespace must be lowercase letters, digits, '.', '_', '-' and '/'",
        ));
    }
    Ok(Remote {
        registry,
        namespace,
    })
}

/// What the command line says about the cache.
#[derive(Debug, Clone, Default)]
pub struct CacheRequest {
    /// `--cache-remote URL`.
    pub remote: Option<String>,
    /// `--no-cache-remote`.
    pub off: bool,
    /// `--cache-remote-required`.
    pub required: bool,
}

/// The per-machine files, lowest first: the system's, then the user's.
pub fn machine_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/snp-build/config.toml")];
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = user {
        files.push(dir.join("snp-build/config.toml"));
    }
    files
}

/// A per-machine file: only `[cache]` (an absent file is an empty table).
pub fn read_machine_file(path: &Path) -> Result<CacheTable, UsageError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CacheTable::default()),
        Err(e) => {
            return Err(UsageError::new(format!("reading {}: {e}", path.display()))
                .help("make it readable, or remove it"));
        }
    };
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct MachineFile {
        #[serde(default)]
        cache: CacheTable,
    }
    toml::from_str::<MachineFile>(&text)
        .map(|f| f.cache)
        .map_err(|e| {
            UsageError::new(format!("{}: {}", path.display(), e.message().trim())).help(format!(
                "a machine config holds only [cache] with remote, mode, insecure and timeout{}",
                e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default()
            ))
        })
}

/// The policy from the layers (machine files, the pin file's table, the
/// command line), or `None` when no remote is set.
pub fn settle(
    layers: &[(String, CacheTable)],
    req: &CacheRequest,
) -> Result<Option<CachePolicy>, UsageError> {
    if req.off {
        return Ok(None);
    }
    let mut merged = CacheTable::default();
    let mut remote_from = String::new();
    for (origin, table) in layers {
        if table.remote.is_some() {
            remote_from = format!("{origin}: [cache] remote");
        }
        merged = merged.overlay(table);
    }
    if let Some(r) = &req.remote {
        merged.remote = Some(r.clone());
        remote_from = "--cache-remote".to_string();
    }
    let remote = match merged.remote.as_deref() {
        None | Some("") => {
            if req.required {
                return Err(
                    UsageError::new("--cache-remote-required, but no cache remote is set").help(
                        "give --cache-remote oci://HOST[:PORT]/NAMESPACE or set [cache] remote",
                    ),
                );
            }
            return Ok(None);
        }
        Some(text) => parse_remote(text, &remote_from)?,
    };
    Ok(Some(CachePolicy {
        remote,
        mode: merged.mode.unwrap_or_default(),
        insecure: merged.insecure.unwrap_or(false),
        timeout: std::time::Duration::from_secs(merged.timeout.unwrap_or(DEFAULT_TIMEOUT_S)),
        required: req.required,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_parse_or_say_how_to_write_them() {
        let r = parse_remote("oci://127.0.0.1:5000/team/snp", "x").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.namespace, "team/snp");
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/team/snp");
        for bad in [
            "https://h/x",
            "oci://h",
            "oci://h/UPPER",
            "oci://u:p@h/x",
            "https://u:p@h/x",
            "oci://u:p@h:99999/x",
            "oci://h/x?token=t0ps3cret",
            "h/x",
        ] {
            let e = parse_remote(bad, "--cache-remote").unwrap_err().to_string();
            assert!(e.starts_with("--cache-remote: "), "{bad}: {e}");
            assert!(!e.contains("u:p") && !e.contains("t0ps3cret"), "{bad}: {e}");
        }
    }

    #[test]
    fn later_layers_win_key_by_key_and_the_command_line_last() {
        let machine = CacheTable {
            remote: Some("oci://a/x".into()),
            mode: Some(CacheMode::ReadWrite),
            insecure: Some(true),
            timeout: None,
        };
        let pin = CacheTable {
            remote: Some("oci://b/y".into()),
            ..Default::default()
        };
        let layers = vec![("m".to_string(), machine), ("p".to_string(), pin)];
        let p = settle(&layers, &CacheRequest::default()).unwrap().unwrap();
        assert_eq!(p.remote.registry, "b");
        assert_eq!(p.mode, CacheMode::ReadWrite);
        assert!(p.insecure);
        let req = CacheRequest {
            remote: Some("oci://c/z".into()),
            ..Default::default()
        };
        assert_eq!(settle(&layers, &req).unwrap().unwrap().remote.registry, "c");
        let off = CacheRequest {
            off: true,
            ..Default::default()
        };
        assert_eq!(settle(&layers, &off).unwrap(), None);
        let required = CacheRequest {
            required: true,
            ..Default::default()
        };
        assert!(settle(&[], &required).is_err());
    }
}
