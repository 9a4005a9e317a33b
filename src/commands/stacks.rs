//! The named stacks `snp-build init --stack NAME` writes: each a pin file
//! (`stacks/*.toml`; `amd` is the embedded default, `stable-commits.toml`)
//! and the kernel config fragments it names, all compiled in. README's
//! "Stacks" matrix lists the same.
//!
//! A stack's file is an ordinary pin file: what it leaves out takes the
//! default's values, so it holds only where it differs (sources, config
//! fragments, OVMF platform). The tests load each one against the registry.

use crate::config::EMBEDDED;
use crate::error::UsageError;
use crate::stage::kernel::base::EMBEDDED_FRAGMENTS;

/// One stack `init` can write.
pub struct NamedStack {
    pub name: &'static str,
    /// What it pins, in a line.
    pub summary: &'static str,
    /// Its pin file.
    pub pins: &'static str,
    /// The fragments (paths of [`EMBEDDED_FRAGMENTS`]) its `base-config`
    /// names, written beside the pin file.
    pub fragments: &'static [&'static str],
}

/// Every stack, the default first.
pub const STACKS: &[NamedStack] = &[
    NamedStack {
        name: "amd",
        summary: "AMD's SNP branches, as build.sh: AMDESE/linux snp-host-latest and snp-guest-latest, AMDESE/qemu and AMDESE/ovmf snp-latest (the default)",
        pins: EMBEDDED,
        fragments: &["configs/snp-host.config", "configs/snp-guest.config"],
    },
    NamedStack {
        name: "upstream",
        summary: "SNP as upstream ships it: kernel.org's linux-6.12.y for both kernels, QEMU's stable-10.0, edk2-stable202502",
        pins: include_str!("../../stacks/upstream.toml"),
        fragments: &[
            "configs/snp-host.config",
            "configs/snp-guest.config",
            "configs/upstream/snp-host.config",
            "configs/upstream/snp-guest.config",
        ],
    },
    NamedStack {
        name: "coco",
        summary: "the confidential-containers AMDSEV fork's amd-snp-upstream pins: Linux v6.12, QEMU v9.2.0, edk2-stable202411",
        pins: include_str!("../../stacks/coco.toml"),
        fragments: &[
            "configs/snp-host.config",
            "configs/snp-guest.config",
            "configs/upstream/snp-host.config",
            "configs/upstream/snp-guest.config",
        ],
    },
];

/// The names `--stack` takes.
pub fn names() -> Vec<&'static str> {
    STACKS.iter().map(|s| s.name).collect()
}

/// The stack called `name`.
pub fn named(name: &str) -> Result<&'static NamedStack, UsageError> {
    STACKS.iter().find(|s| s.name == name).ok_or_else(|| {
        UsageError::new(format!("--stack {name:?}: no such stack"))
            .help(format!("one of {}", names().join(", ")))
    })
}

impl NamedStack {
    /// Its fragments' paths and compiled-in texts.
    pub fn fragment_texts(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.fragments.iter().map(|p| {
            EMBEDDED_FRAGMENTS
                .iter()
                .find(|(path, _)| path == p)
                .copied()
                .unwrap_or_else(|| panic!("stack {}: {p} is not compiled in", self.name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Origin, PinFile};
    use crate::stage::Registry;
    use crate::stage::kernel::Kernel;
    use crate::stage::kernel::base::Fragment;
    use std::path::Path;

    #[test]
    fn every_stack_loads_and_names_exactly_its_fragments() {
        let dir = tempfile::tempdir().unwrap();
        for stack in STACKS {
            let path = dir.path().join(format!("{}.toml", stack.name));
            std::fs::write(&path, stack.pins).unwrap();
            let file = PinFile::new(
                stack.pins.to_string(),
                Origin::File(path.clone()),
                dir.path().to_path_buf(),
            );
            let loaded = Registry::standard()
                .configure(file)
                .unwrap_or_else(|e| panic!("{}: {e}", stack.name));
            let named: Vec<String> = loaded
                .effective
                .get("kernel")
                .and_then(|k| k.get("base-config"))
                .and_then(|b| b.as_array())
                .unwrap()
                .iter()
                .skip(1)
                .flat_map(|t| {
                    let t = t.as_str().unwrap();
                    [Kernel::Host, Kernel::Guest]
                        .map(|k| Fragment::new(t, k, Path::new("")).unwrap().written)
                })
                .collect();
            let mut want: Vec<&str> = stack.fragments.to_vec();
            let mut got: Vec<&str> = named.iter().map(String::as_str).collect();
            want.sort();
            got.sort();
            assert_eq!(got, want, "stack {}", stack.name);
            assert_eq!(stack.fragment_texts().count(), stack.fragments.len());
        }
        assert_eq!(STACKS[0].name, "amd", "the default comes first");
    }
}
