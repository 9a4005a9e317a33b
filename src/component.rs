//! The four sources snp-build knows, and build.sh's component selection
//! (`qemu | ovmf | kernel [host|guest]`, none meaning all).

use std::fmt;

use serde::Serialize;

use crate::exit::UsageError;

/// One pinned source tree, and the build stage named after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceId {
    KernelHost,
    KernelGuest,
    Qemu,
    Ovmf,
}

impl SourceId {
    /// build.sh's order: qemu, ovmf, then the guest kernel and the host kernel.
    pub const BUILD_ORDER: [SourceId; 4] = [
        SourceId::Qemu,
        SourceId::Ovmf,
        SourceId::KernelGuest,
        SourceId::KernelHost,
    ];

    /// The stage/source name used in logs, JSON, `patches/<name>/` and messages.
    pub fn name(self) -> &'static str {
        match self {
            SourceId::KernelHost => "kernel-host",
            SourceId::KernelGuest => "kernel-guest",
            SourceId::Qemu => "qemu",
            SourceId::Ovmf => "ovmf",
        }
    }

    /// The source named `name` (as printed by [`SourceId::name`]).
    pub fn from_name(name: &str) -> Option<SourceId> {
        SourceId::BUILD_ORDER
            .into_iter()
            .find(|id| id.name() == name)
    }

    /// The pin file table that pins this source.
    pub fn table(self) -> &'static str {
        match self {
            SourceId::KernelHost => "kernel.host",
            SourceId::KernelGuest => "kernel.guest",
            SourceId::Qemu => "qemu",
            SourceId::Ovmf => "ovmf",
        }
    }

    /// build.sh's `source-commit.<suffix>` file name suffix.
    pub fn commit_file_suffix(self) -> &'static str {
        match self {
            SourceId::KernelHost => "kernel.host",
            SourceId::KernelGuest => "kernel.guest",
            SourceId::Qemu => "qemu",
            SourceId::Ovmf => "ovmf",
        }
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which sources a command works on, in build order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection(Vec<SourceId>);

impl Selection {
    pub fn all() -> Self {
        Selection(SourceId::BUILD_ORDER.to_vec())
    }

    /// Parses build.sh's positional words: none, `qemu`, `ovmf`, `kernel`,
    /// `kernel host` or `kernel guest`.
    pub fn parse(words: &[String]) -> Result<Self, UsageError> {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let ids = match words.as_slice() {
            [] => return Ok(Self::all()),
            ["qemu"] => vec![SourceId::Qemu],
            ["ovmf"] => vec![SourceId::Ovmf],
            ["kernel"] => vec![SourceId::KernelGuest, SourceId::KernelHost],
            ["kernel", "host"] => vec![SourceId::KernelHost],
            ["kernel", "guest"] => vec![SourceId::KernelGuest],
            _ => {
                return Err(UsageError::new(format!(
                    "unknown component `{}`",
                    words.join(" ")
                ))
                .help("choose one of: qemu, ovmf, kernel, kernel host, kernel guest (none means all)"));
            }
        };
        Ok(Selection(ids))
    }

    pub fn ids(&self) -> &[SourceId] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn selection_matches_build_sh() {
        assert_eq!(Selection::parse(&[]).unwrap(), Selection::all());
        assert_eq!(
            Selection::parse(&words("kernel")).unwrap().ids(),
            &[SourceId::KernelGuest, SourceId::KernelHost]
        );
        assert_eq!(
            Selection::parse(&words("kernel host")).unwrap().ids(),
            &[SourceId::KernelHost]
        );
        assert_eq!(
            Selection::parse(&words("qemu")).unwrap().ids(),
            &[SourceId::Qemu]
        );
        assert!(Selection::parse(&words("kernel qemu")).is_err());
        assert!(Selection::parse(&words("firmware")).is_err());
    }
}
