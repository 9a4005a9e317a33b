//! Real trees: Debian's QEMU, edk2 and Linux sources as local git
//! repositories (`cargo xtask real-sources [--stack amd|upstream] DIR`),
//! and a whole snp-build run on them checked as a user would
//! (`cargo xtask e2e-real [--stack amd|upstream] DIR`). See
//! `docs/real-trees.md`.
//!
//! Two stacks, one code path; what differs is data ([`Stack`]):
//!
//! | stack | trees | refs | pin file |
//! |---|---|---|---|
//! | `amd` (the default) | Debian 12's QEMU 7.2, edk2 2022.11, `linux-source-6.1` | AMD's branch names (`snp-latest`, `snp-host-latest`, `snp-guest-latest`) | `stable-commits.toml` |
//! | `upstream` | Debian 13 (trixie)'s QEMU 10.0 and edk2 2025.02, bookworm-security's `linux-source-6.12` | upstream's names: `v<qemu version>`, `edk2-stable<YYYYMM>`, `linux-6.12.y` and `v6.12.<n>` | `upstream.toml` |
//!
//! `real-sources` needs root and a Debian package mirror; nothing else
//! reaches the network (but PyPI for the upstream stack's one wheel, see
//! [`sources`]). Every apt entry is derived from the machine's own apt
//! sources, so no host name is written into this repository. The `amd`
//! stack adds deb-src twins of the machine's entries under
//! `/etc/apt/sources.list.d/`; the `upstream` stack leaves the machine's
//! apt alone and uses a private apt configuration under `DIR/apt/`
//! ([`apt::Apt::private`]).
//!
//! Layout of DIR (one stack per DIR):
//!
//! | path | what |
//! |---|---|
//! | `apt/` | (upstream) the private apt configuration, lists and cache |
//! | `debian-src/` | what `apt-get source` / `apt-get download` fetched, and the unpacked trees (the repos' work trees) |
//! | `qemu.git`, `ovmf.git`, `linux.git` | bare repos: `master` and the stack's branch and tag names |
//! | `stable-commits.toml` or `upstream.toml` | pins naming them by `file://` URL, knobs sized for 2 cores |
//! | `e2e/` | `e2e-real`'s work dir, install dir and release |

mod apt;
mod boot;
mod e2e;
mod sources;

pub use e2e::e2e_real;
pub use sources::real_sources;

use anyhow::{Context, Result};
use std::fs;
use std::path::Path;

/// Which stack `real-sources` makes and `e2e-real` builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// Debian 12's trees on AMD's branch names (the default).
    Amd,
    /// QEMU 10.0, edk2 2025.02 and Linux 6.12 on upstream's names.
    Upstream,
}

impl Stack {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Amd => "amd",
            Stack::Upstream => "upstream",
        }
    }

    /// The pin file `real-sources` writes into DIR.
    pub fn pin_file(self) -> &'static str {
        match self {
            Stack::Amd => "stable-commits.toml",
            Stack::Upstream => "upstream.toml",
        }
    }

    /// The other stack (a DIR holds one).
    fn other(self) -> Stack {
        match self {
            Stack::Amd => Stack::Upstream,
            Stack::Upstream => Stack::Amd,
        }
    }

    /// The kernel source package (a binary package whose tarball is the
    /// tree).
    fn linux_package(self) -> &'static str {
        match self {
            Stack::Amd => "linux-source-6.1",
            Stack::Upstream => "linux-source-6.12",
        }
    }

    /// The Debian release whose source packages hold QEMU and edk2, and
    /// the suite of the kernel package; `None`: the machine's own.
    fn source_suite(self) -> Option<&'static str> {
        match self {
            Stack::Amd => None,
            Stack::Upstream => Some("trixie"),
        }
    }

    /// The QEMU version its `qemu-system-x86_64 --version` must print.
    fn qemu_version(self) -> &'static str {
        match self {
            Stack::Amd => "version 7.2",
            Stack::Upstream => "version 10.0",
        }
    }

    /// The heading of its `BENCHMARKS.md` section.
    fn title(self) -> &'static str {
        match self {
            Stack::Amd => "Real trees",
            Stack::Upstream => "Real trees, upstream stack",
        }
    }

    /// Its trees, in words.
    fn trees(self) -> &'static str {
        match self {
            Stack::Amd => "Debian 12's QEMU 7.2, edk2 2022.11 and Linux 6.1",
            Stack::Upstream => {
                "QEMU 10.0 and edk2 2025.02 (Debian 13's source packages) and Linux 6.12 \
                 (Debian 12's `linux-source-6.12`), on upstream's tags and branch"
            }
        }
    }

    /// The SNP options both kernels' verified configs must carry, with
    /// the value.
    fn snp_options(self) -> &'static [&'static str] {
        match self {
            Stack::Amd => &["CONFIG_KVM_AMD_SEV=y"],
            // On 6.12 SNP also needs guest_memfd (KVM_GENERIC_PRIVATE_MEM,
            // selected by KVM_AMD_SEV), the PSP driver (CRYPTO_DEV_SP_PSP,
            // which needs AMD_IOMMU), the guest side (AMD_MEM_ENCRYPT) and
            // the guest's attestation driver and its configfs-tsm reports.
            Stack::Upstream => &[
                "CONFIG_KVM_AMD_SEV=y",
                "CONFIG_KVM_GENERIC_PRIVATE_MEM=y",
                "CONFIG_AMD_MEM_ENCRYPT=y",
                "CONFIG_CRYPTO_DEV_SP_PSP=y",
                "CONFIG_AMD_IOMMU=y",
                "CONFIG_SEV_GUEST=m",
                "CONFIG_TSM_REPORTS=m",
            ],
        }
    }

    /// What its run does not check yet, for its section.
    fn not_covered(self) -> &'static [&'static str] {
        match self {
            Stack::Amd => &[],
            Stack::Upstream => &[
                "a measured direct boot of OVMF.amdsev.fd to the kernel: without SEV \
                 hardware QEMU puts no kernel hashes table into the launch, so the boot \
                 stops at the blob verifier (the digest with --kernel is checked by the \
                 test suite against sev-snp-measure, on fixture firmware)",
                "one pin moved, the second builder and the fetch race: run on the amd stack \
                 only (they measure snp-build, not the trees)",
            ],
        }
    }

    /// The `BENCHMARKS.md` section `e2e-real` writes.
    fn section(self) -> &'static str {
        match self {
            Stack::Amd => "e2e-real",
            Stack::Upstream => "e2e-real-upstream",
        }
    }
}

/// Refuses a DIR that holds the other stack: their repos and unpacked
/// trees share names.
fn check_one_stack(dir: &Path, stack: Stack) -> Result<()> {
    let other = dir.join(stack.other().pin_file());
    anyhow::ensure!(
        !other.exists(),
        "{} holds the {} stack ({}); give the {} stack a directory of its own",
        dir.display(),
        stack.other().name(),
        other.display(),
        stack.name()
    );
    Ok(())
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}
