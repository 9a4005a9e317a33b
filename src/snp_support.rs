//! Which host kernel and QEMU can launch an SEV-SNP guest, and which
//! initial VMSA (so which launch digest) the pair gives. The rules are data
//! (the tables below), each citing the source it was read from, so that
//! the build's refusal, the release's `--vmsa-mode`, `launch-qemu.sh` and
//! `doctor --host` all answer from one place.
//!
//! The VMSA question in one paragraph: since Linux 6.10, a VM created with
//! `KVM_SEV_INIT2` (any VM type but `KVM_X86_DEFAULT_VM`) gets the vCPU's
//! reset FPU state copied into its VMSA at `LAUNCH_UPDATE_VMSA`, so the
//! measured page carries MXCSR 0x1f80 and FCW 0x37f; a VM made the legacy
//! way (`KVM_SEV_INIT`/`KVM_SEV_ES_INIT`, or the pre-upstream
//! `KVM_SEV_SNP_INIT` of AMD's old branches) keeps them zero.
//! sev-snp-measure switched to the first layout in 0.0.10 and marked it
//! breaking for kernels older than 6.10. An SNP guest of upstream QEMU
//! (>= 9.1, the `sev-snp-guest` object) is always a `KVM_X86_SNP_VM` made
//! with `KVM_SEV_INIT2`, its `vmsa_features` zero (no DEBUG_SWAP): QEMU's
//! `legacy-vm-type` property belongs to the `sev-guest` object (SEV and
//! SEV-ES), where `auto`, its default, still means the legacy VM type.
//!
//! Read in linux-source-6.12 (6.12.118), `arch/x86/kvm/svm/sev.c`:
//! `sev_guest_init()` (the legacy `KVM_SEV_INIT`/`KVM_SEV_ES_INIT`) passes
//! `vmsa_features = 0`; `sev_guest_init2()` takes them from userspace;
//! `sev_es_sync_vmsa()` copies the FPU state only when `vm_type !=
//! KVM_X86_DEFAULT_VM` ("Skip FPU and AVX setup with KVM_SEV_ES_INIT to
//! avoid breaking older measurements"). And in QEMU 10.0.13,
//! `target/i386/sev.c`: `sev_snp_kvm_type()` returns `KVM_X86_SNP_VM`,
//! which `sev_common_kvm_init()` creates with `KVM_SEV_INIT2` and zeroed
//! `struct kvm_sev_init`; `sev_kvm_type()` keeps `KVM_X86_DEFAULT_VM` for
//! `legacy-vm-type=on`, or `auto` with no INIT2-only option (none exists);
//! `hw/i386/pc.c` sets `legacy-vm-type=on` for machine types up to 9.0.
//! Not read here: kernels 6.5 to 6.9 and AMD's SNP branches of that time
//! set DEBUG_SWAP from `kvm_amd`'s `debug_swap` on the legacy path, which
//! is why sev-snp-measure <= 0.0.9 defaults to guest features 0x21.
//!
//! Guarantees:
//! - A pin of upstream lineage (see [`lineage`]) that names a version below
//!   the one SNP needs is refused with the reason ([`Side::unsupported`]);
//!   AMD's branches are SNP-capable forks whatever their version files say,
//!   so a fork is never refused for its version.
//! - [`choose`] gives `init2` exactly when both the host kernel and QEMU are
//!   new enough to use `KVM_SEV_INIT2`, else `legacy`, and says why.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The initial VMSA layout a launch digest assumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VmsaMode {
    /// MXCSR and FCW zero: the legacy KVM init (sev-snp-measure <= 0.0.9).
    Legacy,
    /// MXCSR 0x1f80, FCW 0x37f: `KVM_SEV_INIT2` (sev-snp-measure >= 0.0.10).
    Init2,
}

impl VmsaMode {
    pub const ALL: [VmsaMode; 2] = [VmsaMode::Legacy, VmsaMode::Init2];

    /// The mode of digests that do not name one: snp-build computed the
    /// init2 layout before it recorded modes.
    pub fn init2() -> VmsaMode {
        VmsaMode::Init2
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VmsaMode::Legacy => "legacy",
            VmsaMode::Init2 => "init2",
        }
    }

    /// The sev-snp-measure releases that compute this layout (for QEMU).
    pub fn sev_snp_measure_versions(self) -> &'static str {
        match self {
            VmsaMode::Legacy => "sev-snp-measure <= 0.0.9",
            VmsaMode::Init2 => "sev-snp-measure >= 0.0.10",
        }
    }

    /// The (MXCSR, x87 FCW) a QEMU guest's initial VMSA holds.
    pub fn fpu_reset(self) -> (u32, u16) {
        match self {
            // KVM copies nothing: the fields stay as allocated, zero.
            VmsaMode::Legacy => (0, 0),
            // fpu_reset_fpregs()/fx_init() values KVM copies from the
            // vCPU's guest_fpu (arch/x86/kvm/svm/sev.c, sev_es_sync_vmsa,
            // linux-source-6.12).
            VmsaMode::Init2 => (0x1f80, 0x37f),
        }
    }
}

impl fmt::Display for VmsaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VmsaMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "legacy" => Ok(VmsaMode::Legacy),
            "init2" => Ok(VmsaMode::Init2),
            _ => Err(format!(
                "{s:?} is not a VMSA mode: give legacy (MXCSR/FCW zero, the legacy KVM init) or init2 (KVM_SEV_INIT2, Linux >= 6.10 with QEMU >= 9.1)"
            )),
        }
    }
}

/// What a part of the stack does in an SNP launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The kernel the host runs (KVM).
    HostKernel,
    /// QEMU, the VMM.
    Qemu,
}

impl Role {
    pub fn noun(self) -> &'static str {
        match self {
            Role::HostKernel => "host kernel",
            Role::Qemu => "QEMU",
        }
    }
}

/// A `major.minor.patch` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Version {
    /// The first `N.N[.N]` in `text` (`6.1.0-snp-host-1a2b`, `QEMU emulator
    /// version 9.1.0 (...)`, `v10.0.2`, `linux-6.12.y`).
    pub fn find_in(text: &str) -> Option<Version> {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            // A number that starts a word, or follows a word's `v`
            // (`v10.0.2`), not one inside another (`x86`, `.0.2`).
            let starts = |at: usize| {
                at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'.')
            };
            let word_start = starts(i) || (bytes[i - 1] == b'v' && starts(i - 1));
            if bytes[i].is_ascii_digit() && word_start {
                let rest = &text[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(rest.len());
                let nums: Vec<u32> = rest[..end]
                    .split('.')
                    .take(3)
                    .map_while(|n| n.parse().ok())
                    .collect();
                if nums.len() >= 2 {
                    return Some(Version(nums[0], nums[1], nums.get(2).copied().unwrap_or(0)));
                }
            }
            i += 1;
        }
        None
    }
}

/// Where a tree comes from, as far as SNP support goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lineage {
    /// kernel.org / qemu-project releases: their version says what they
    /// support.
    Upstream,
    /// AMD's SNP branches (or any other tree): SNP-capable whatever the
    /// version files say.
    Fork,
}

/// Repositories whose releases are upstream's (host and path, lowercase,
/// without `.git`).
const UPSTREAM_REPOS: &[&str] = &[
    "git.kernel.org/pub/scm/linux/kernel/git/stable/linux",
    "git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux",
    "github.com/torvalds/linux",
    "github.com/gregkh/linux",
    "gitlab.com/qemu-project/qemu",
    "github.com/qemu/qemu",
    "git.qemu.org/qemu",
];

/// The lineage of a pin: upstream when its URL is an upstream repository,
/// or when it names an upstream release (a `vX.Y[.Z]` tag, a kernel stable
/// branch `linux-X.Y.y`, a QEMU stable branch `stable-X.Y`) outside
/// AMD's repositories; a fork otherwise.
pub fn lineage(url: &str, rev: Option<&str>) -> Lineage {
    let lower = url.to_ascii_lowercase();
    if lower.contains("/amdese/") {
        return Lineage::Fork;
    }
    let path = lower
        .split_once("://")
        .map(|(_, p)| p)
        .unwrap_or(&lower)
        .trim_end_matches('/')
        .trim_end_matches(".git");
    let path = path.split_once('@').map(|(_, p)| p).unwrap_or(path);
    if UPSTREAM_REPOS.contains(&path) {
        return Lineage::Upstream;
    }
    match rev {
        Some(r) if upstream_release_name(r) => Lineage::Upstream,
        _ => Lineage::Fork,
    }
}

fn upstream_release_name(rev: &str) -> bool {
    let version_like = |s: &str| {
        let parts: Vec<&str> = s.split('.').collect();
        (2..=3).contains(&parts.len())
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    if let Some(v) = rev.strip_prefix('v') {
        // v6.12, v6.12.3, v10.0.2, v9.1.0-rc1
        let v = v.split_once("-rc").map(|(v, _)| v).unwrap_or(v);
        return version_like(v);
    }
    if let Some(v) = rev
        .strip_prefix("linux-")
        .and_then(|v| v.strip_suffix(".y"))
    {
        return version_like(v);
    }
    if let Some(v) = rev.strip_prefix("stable-") {
        return version_like(v);
    }
    false
}

/// The first upstream Linux that hosts SNP guests; also AMDSEV README's
/// "Upstream Version Reference" row "Kernel (host)" (`doctor --host`'s
/// minimum, `host::minimums`).
pub const SNP_HOST_KERNEL: &str = "6.11";
/// The first upstream QEMU that launches SNP guests; also AMDSEV's row
/// "QEMU".
pub const SNP_QEMU: &str = "9.1";

/// The upstream release each role needs for SNP at all.
struct Minimum {
    role: Role,
    version: &'static str,
    why: &'static str,
}

const SNP_MINIMUMS: &[Minimum] = &[
    Minimum {
        role: Role::HostKernel,
        version: SNP_HOST_KERNEL,
        // The kvm-6.11-sev-snp merge: arch/x86/kvm/svm/sev.c gained
        // KVM_X86_SNP_VM and the SNP launch commands in 6.11.
        why: "KVM's SNP host support came in Linux 6.11 (the kvm-6.11-sev-snp merge)",
    },
    Minimum {
        role: Role::Qemu,
        version: SNP_QEMU,
        // target/i386/sev.c: the sev-snp-guest object is new in 9.1.
        why: "QEMU launches SNP guests from 9.1 (the sev-snp-guest object, target/i386/sev.c)",
    },
];

/// The releases from which each side uses `KVM_SEV_INIT2`.
const INIT2_SINCE: &[(Role, Version, &str)] = &[
    // arch/x86/kvm/svm/sev.c (linux-source-6.12): sev_guest_init2() and
    // the VM types (KVM 6.10's "SEV VM types" series); sev_es_sync_vmsa()
    // copies the FPU state only when vm_type != KVM_X86_DEFAULT_VM ("Skip
    // FPU and AVX setup with KVM_SEV_ES_INIT to avoid breaking older
    // measurements").
    (
        Role::HostKernel,
        Version(6, 10, 0),
        "KVM_SEV_INIT2 exists from Linux 6.10",
    ),
    // target/i386/sev.c (QEMU 10.0.13): sev_common_kvm_init() issues
    // KVM_SEV_INIT2 for KVM_X86_SNP_VM, the type sev_snp_kvm_type() always
    // gives sev-snp-guest (new in 9.1); sev-guest only with
    // legacy-vm-type=off.
    (
        Role::Qemu,
        Version(9, 1, 0),
        "QEMU uses KVM_SEV_INIT2 from 9.1",
    ),
];

/// One side of the launch, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub role: Role,
    pub lineage: Lineage,
    /// The version its pin names, or its tree or build reports.
    pub version: Option<Version>,
    /// What the version was read from (`tag v8.2.0`, `VERSION`).
    pub from: String,
}

impl Side {
    /// Why this side cannot launch an SNP guest, if it cannot: an upstream
    /// release below the one that brought SNP.
    pub fn unsupported(&self) -> Option<String> {
        let v = self.version?;
        if self.lineage != Lineage::Upstream {
            return None;
        }
        let min = SNP_MINIMUMS.iter().find(|m| m.role == self.role)?;
        (v < snp_minimum(self.role)).then(|| {
            format!(
                "{} {v} ({}) cannot launch SEV-SNP guests: {}; pin {} >= {}",
                self.role.noun(),
                self.from,
                min.why,
                self.role.noun(),
                min.version
            )
        })
    }

    fn uses_init2(&self) -> Option<bool> {
        Some(self.version? >= init2_since(self.role)?)
    }
}

/// Whether a host running Linux `kernel` creates SNP guests with
/// `KVM_SEV_INIT2` (given a QEMU that asks for it): `doctor --host`'s
/// judgment of an installed release's mode.
pub fn kernel_uses_init2(kernel: Version) -> bool {
    init2_since(Role::HostKernel).is_none_or(|since| kernel >= since)
}

/// The first release of `role` that uses `KVM_SEV_INIT2` ([`INIT2_SINCE`]).
fn init2_since(role: Role) -> Option<Version> {
    INIT2_SINCE
        .iter()
        .find(|(r, ..)| *r == role)
        .map(|(_, v, _)| *v)
}

/// The minimum upstream version of a role for SNP (`doctor --host`).
pub fn snp_minimum(role: Role) -> Version {
    SNP_MINIMUMS
        .iter()
        .find(|m| m.role == role)
        .and_then(|m| Version::find_in(m.version))
        .unwrap_or(Version(0, 0, 0))
}

/// The VMSA mode a release assumes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub mode: VmsaMode,
    pub reason: String,
}

/// The mode of a host kernel and QEMU: `init2` when both use
/// `KVM_SEV_INIT2`, `legacy` when either does not. A side that is unknown
/// (not in the release) counts as new: the upstream layout.
pub fn choose(host: Option<&Side>, qemu: Option<&Side>) -> Choice {
    let describe = |s: Option<&Side>, role: Role| match s.and_then(|s| s.version.map(|v| (s, v))) {
        Some((s, v)) => format!("{} {v} ({})", role.noun(), s.from),
        None => format!("{} unknown", role.noun()),
    };
    let old: Vec<&str> = [host, qemu]
        .into_iter()
        .flatten()
        .filter(|s| s.uses_init2() == Some(false))
        .filter_map(|s| INIT2_SINCE.iter().find(|(r, ..)| *r == s.role))
        .map(|(.., why)| *why)
        .collect();
    let pair = format!(
        "{}, {}",
        describe(host, Role::HostKernel),
        describe(qemu, Role::Qemu)
    );
    if old.is_empty() {
        Choice {
            mode: VmsaMode::Init2,
            reason: format!(
                "{pair}: the SNP VM is created with KVM_SEV_INIT2, so KVM puts the reset FPU state (MXCSR 0x1f80, FCW 0x37f) in the VMSA"
            ),
        }
    } else {
        Choice {
            mode: VmsaMode::Legacy,
            reason: format!(
                "{pair}: {}; without it the VMSA's MXCSR and FCW stay zero",
                old.join(", ")
            ),
        }
    }
}

/// The version a fetched tree says it is: QEMU's `VERSION`, Linux's
/// top-level `Makefile` (`VERSION`, `PATCHLEVEL`, `SUBLEVEL`).
pub fn tree_version(role: Role, tree: &Path) -> Option<Version> {
    match role {
        Role::Qemu => {
            let text = std::fs::read_to_string(tree.join("VERSION")).ok()?;
            Version::find_in(text.trim())
        }
        Role::HostKernel => {
            let text = std::fs::read_to_string(tree.join("Makefile")).ok()?;
            let field = |name: &str| {
                text.lines()
                    .take(20)
                    .find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix('='))
                    .and_then(|v| v.trim().parse::<u32>().ok())
            };
            Some(Version(
                field("VERSION")?,
                field("PATCHLEVEL")?,
                field("SUBLEVEL").unwrap_or(0),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(role: Role, lineage: Lineage, v: Option<Version>) -> Side {
        Side {
            role,
            lineage,
            version: v,
            from: "test".into(),
        }
    }

    #[test]
    fn versions_are_found_in_what_trees_and_pins_say() {
        assert_eq!(
            Version::find_in("6.1.0-snp-host-1a2b"),
            Some(Version(6, 1, 0))
        );
        assert_eq!(
            Version::find_in("QEMU emulator version 9.1.0 (v9.1.0-dirty)"),
            Some(Version(9, 1, 0))
        );
        assert_eq!(Version::find_in("v10.0.2"), Some(Version(10, 0, 2)));
        assert_eq!(Version::find_in("linux-6.12.y"), Some(Version(6, 12, 0)));
        assert_eq!(Version::find_in("snp-latest"), None);
        assert_eq!(Version::find_in("edk2"), None);
    }

    #[test]
    fn lineage_follows_the_url_then_the_release_name() {
        let qemu = "https://gitlab.com/qemu-project/qemu.git";
        assert_eq!(lineage(qemu, Some("master")), Lineage::Upstream);
        assert_eq!(
            lineage("https://github.com/AMDESE/qemu.git", Some("v9.1.0")),
            Lineage::Fork
        );
        assert_eq!(
            lineage("file:///x/qemu.git", Some("v8.2.0")),
            Lineage::Upstream
        );
        assert_eq!(
            lineage("file:///x/qemu.git", Some("snp-latest")),
            Lineage::Fork
        );
        assert_eq!(
            lineage("file:///x/linux.git", Some("linux-6.12.y")),
            Lineage::Upstream
        );
        assert_eq!(lineage("file:///x/linux.git", None), Lineage::Fork);
        assert_eq!(
            lineage("file:///x/linux.git", Some("v6.12-snp")),
            Lineage::Fork
        );
    }

    #[test]
    fn upstream_below_the_snp_releases_is_refused_and_forks_never_are() {
        let q = |v| side(Role::Qemu, Lineage::Upstream, Some(v));
        let e = q(Version(8, 2, 0)).unsupported().unwrap();
        assert!(e.contains("QEMU 8.2.0") && e.contains("9.1"), "{e}");
        assert_eq!(q(Version(9, 1, 0)).unsupported(), None);
        let k = side(Role::HostKernel, Lineage::Upstream, Some(Version(6, 10, 3)));
        assert!(k.unsupported().unwrap().contains("6.11"));
        let fork = side(Role::HostKernel, Lineage::Fork, Some(Version(6, 1, 0)));
        assert_eq!(fork.unsupported(), None);
    }

    #[test]
    fn init2_needs_both_sides_new_enough() {
        let k = |v| side(Role::HostKernel, Lineage::Fork, Some(v));
        let q = |v| side(Role::Qemu, Lineage::Fork, Some(v));
        let c = |a, b| choose(Some(&k(a)), Some(&q(b))).mode;
        assert_eq!(c(Version(6, 12, 0), Version(10, 0, 2)), VmsaMode::Init2);
        assert_eq!(c(Version(6, 10, 0), Version(9, 1, 0)), VmsaMode::Init2);
        assert_eq!(c(Version(6, 9, 0), Version(10, 0, 0)), VmsaMode::Legacy);
        assert_eq!(c(Version(6, 12, 0), Version(8, 2, 0)), VmsaMode::Legacy);
        let why = choose(Some(&k(Version(6, 1, 0))), Some(&q(Version(9, 1, 0)))).reason;
        assert!(why.contains("6.10") && why.contains("zero"), "{why}");
        assert_eq!(choose(None, None).mode, VmsaMode::Init2);
    }

    #[test]
    fn tree_versions_come_from_version_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("VERSION"), "10.0.2\n").unwrap();
        std::fs::write(
            d.path().join("Makefile"),
            "# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 41\nEXTRAVERSION =\n",
        )
        .unwrap();
        assert_eq!(tree_version(Role::Qemu, d.path()), Some(Version(10, 0, 2)));
        assert_eq!(
            tree_version(Role::HostKernel, d.path()),
            Some(Version(6, 12, 41))
        );
    }
}
