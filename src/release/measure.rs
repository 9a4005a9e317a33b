//! Expected SEV-SNP launch measurements: the SHA-384 launch digest that an
//! SNP guest's attestation report carries, computed from the firmware and
//! the guest's shape (vCPU count and type, guest features, VMM type, and
//! the kernel hashes of a direct kernel boot).
//!
//! The pieces come from the `sev` crate (virtee): its OVMF parser, its
//! VMSA page for a QEMU vCPU and its kernel hashes page. The digest chain
//! (the SNP firmware ABI's PAGE_INFO hash) is kept here, in
//! [`LaunchDigest`], because the crate builds only the `KVM_SEV_INIT2`
//! VMSA and does not hand out the digest of a chain it did not finish: the
//! legacy layout (MXCSR and FCW zero, see [`crate::snp_support`]) is that
//! page with two fields cleared. The test suite compares every digest with
//! `sev-snp-measure --mode snp`: 0.0.13 for `init2`, 0.0.9 for `legacy`.
//!
//! Guarantees:
//! - A firmware file is checked here before the crate sees it: a file that
//!   is not an OVMF image with an OVMF footer table, SEV metadata and an
//!   SEV-ES reset block (or, for a direct kernel boot, a kernel hashes
//!   table and an `SNP_KERNEL_HASHES` section) gives a [`FirmwareError`]
//!   naming the file and what is missing, never a panic. (The crate slices
//!   and asserts on what it reads; every bound it relies on is checked
//!   first.)
//! - Every digest names the VMSA mode it assumes ([`VmsaMode`]); the
//!   same shape gives different digests in the two modes.
//! - The VMM type is always QEMU (what `launch-qemu.sh` and the libvirt
//!   domain run), and the kernel command line is hashed as QEMU hashes it:
//!   the bytes given plus a NUL. A command line with leading or trailing
//!   whitespace is refused (the crate would trim it, QEMU does not).
//! - [`Measurement`] records every input that went into a digest: the
//!   firmware's path, SHA-256 and SEV layout, the shape, and the SHA-256 of
//!   kernel, initrd and command line.
//! - `MEASUREMENTS` (see [`ReleaseMeasurements::file_text`]) holds one line
//!   per shape, `DIGEST  ARGS`, where ARGS are exactly the
//!   `snp-build measure` arguments that recompute DIGEST against the
//!   release's firmware; its first data line is the default shape of
//!   `launch-qemu.sh -sev-snp`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::UsageError;
use crate::hash::hex;

use sev::launch::PageType;
use sev::measurement::ovmf::{OVMF, SectionType};
use sev::measurement::sev_hashes::SevHashes;
use sev::measurement::vcpu_types::CpuType;
use sev::measurement::vmsa::{GuestFeatures, VMMType, VMSA};
use sev::parser::ByteParser;
use sha2::Sha384;

pub use crate::snp_support::VmsaMode;

/// vCPUs of `launch-qemu.sh -sev-snp` (its `-smp` default).
pub const DEFAULT_VCPUS: u32 = 4;
/// vCPU type of `launch-qemu.sh -sev-snp` (its `-cpu` default).
pub const DEFAULT_VCPU_TYPE: &str = "EPYC-v4";
/// SEV features QEMU sets in an SNP guest's VMSA (bit 0, SNPActive); also
/// sev-snp-measure's default.
pub const DEFAULT_GUEST_FEATURES: u64 = 0x1;
/// The only VMM type measured: QEMU.
pub const VMM_TYPE: &str = "QEMU";
/// The release's file of expected digests.
pub const MEASUREMENTS_FILE: &str = "MEASUREMENTS";
/// The firmware `launch-qemu.sh -sev-snp` boots, relative to a release.
pub const RELEASE_OVMF: &str = "usr/local/share/qemu/OVMF.fd";
/// vCPU counts listed in a release's `MEASUREMENTS` (for each of
/// [`MATRIX_VCPU_TYPES`]).
pub const MATRIX_VCPUS: &[u32] = &[1, 2, 4, 8, 16, 32, 64];
/// vCPU types listed in a release's `MEASUREMENTS`.
pub const MATRIX_VCPU_TYPES: &[&str] = &["EPYC-v4", "EPYC-Milan", "EPYC-Genoa"];
/// Most vCPUs `snp-build measure` accepts (one VMSA page each).
pub const MAX_VCPUS: u32 = 4096;

/// OVMF's GUIDed footer table, its entries and the SEV metadata (the
/// layout of edk2's `OvmfPkg/ResetVector`), as the crate parses them.
mod layout {
    /// Bytes of a footer table entry header: u16 size, then the GUID.
    pub const ENTRY_HEADER: usize = 18;
    /// The table ends this many bytes before the end of the image.
    pub const TABLE_END_FROM_IMAGE_END: usize = 32;
    /// 96b582de-1fb2-45f7-baea-a366c55a082d, little-endian.
    pub const FOOTER_GUID: [u8; 16] = le_guid(
        0x96b582de,
        0x1fb2,
        0x45f7,
        [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
    );
    /// dc886566-984a-4798-a75e-5585a7bf67cc
    pub const SEV_METADATA_GUID: [u8; 16] = le_guid(
        0xdc886566,
        0x984a,
        0x4798,
        [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
    );
    /// 00f771de-1a7e-4fcb-890e-68c77e2fb44e
    pub const SEV_ES_RESET_GUID: [u8; 16] = le_guid(
        0x00f771de,
        0x1a7e,
        0x4fcb,
        [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
    );
    /// 7255371f-3a3b-4b04-927b-1da6efa8d454
    pub const SEV_HASH_TABLE_GUID: [u8; 16] = le_guid(
        0x7255371f,
        0x3a3b,
        0x4b04,
        [0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54],
    );
    /// "ASEV" header: signature, size, version, number of sections.
    pub const METADATA_HEADER: usize = 16;
    /// One section: GPA, size, type (u32 each).
    pub const METADATA_SECTION: usize = 12;
    /// QEMU's padded SEV hash table (header and three entries).
    pub const HASH_TABLE_BYTES: usize = 176;
    pub const PAGE: u64 = 4096;

    const fn le_guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        [
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ]
    }
}

/// A firmware file that cannot be measured, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct FirmwareError {
    pub path: PathBuf,
    pub problem: String,
}

impl FirmwareError {
    fn new(path: &Path, problem: impl Into<String>) -> Self {
        FirmwareError {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// One SEV metadata section of a firmware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "SevMetadataSection")]
pub struct Section {
    /// Hex.
    pub gpa: String,
    /// Hex.
    pub size: String,
    /// `SNP_SEC_MEM`, `SNP_SECRETS`, `CPUID`, `SVSM_CAA`, `SNP_KERNEL_HASHES`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// What a firmware file is, as far as the measurement goes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Firmware {
    /// As given (`measure --ovmf`), or its path in the release.
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// Where the APs start (the SEV-ES reset block), hex.
    pub sev_es_reset_eip: String,
    pub sev_metadata_sections: Vec<Section>,
    /// GPA of QEMU's kernel hashes table, hex, when the firmware has one
    /// (and an `SNP_KERNEL_HASHES` section for it): direct kernel boot
    /// with `kernel-hashes=on` can be measured only then.
    pub kernel_hashes_table: Option<String>,
}

impl Firmware {
    pub fn supports_kernel_hashes(&self) -> bool {
        self.kernel_hashes_table.is_some()
    }
}

fn u16_at(d: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([d[at], d[at + 1]])
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

const HELP_NO_SEV: &str = "\n  help: an SNP guest needs OVMF built with SEV support (edk2's OvmfPkg/OvmfPkgX64.dsc since 2022, or OvmfPkg/AmdSev/AmdSevX64.dsc); give the whole OVMF.fd, not OVMF_CODE.fd or OVMF_VARS.fd";

/// Reads and checks a firmware file: everything the digest computation
/// relies on is there and in bounds.
pub fn inspect(path: &Path) -> Result<Firmware, FirmwareError> {
    use layout::*;
    let data = std::fs::read(path)
        .map_err(|e| FirmwareError::new(path, format!("cannot read the firmware: {e}")))?;
    let len = data.len();
    if len as u64 >= 1 << 32 {
        return Err(FirmwareError::new(
            path,
            format!("{len} bytes is too big for a firmware image below 4 GiB"),
        ));
    }
    if len < TABLE_END_FROM_IMAGE_END + ENTRY_HEADER || len % PAGE as usize != 0 {
        return Err(FirmwareError::new(
            path,
            format!(
                "not an OVMF image: {len} bytes is not a whole number of 4 KiB pages with an OVMF footer table{HELP_NO_SEV}"
            ),
        ));
    }
    // The footer entry: the table's total size and its GUID.
    let footer = len - TABLE_END_FROM_IMAGE_END - ENTRY_HEADER;
    if data[footer + 2..footer + ENTRY_HEADER] != FOOTER_GUID {
        return Err(FirmwareError::new(
            path,
            format!(
                "no OVMF footer table (GUID 96b582de-1fb2-45f7-baea-a366c55a082d, {} bytes before the end), so no SEV metadata: this firmware cannot launch an SEV-SNP guest{HELP_NO_SEV}",
                TABLE_END_FROM_IMAGE_END + ENTRY_HEADER
            ),
        ));
    }
    let total = u16_at(&data, footer) as usize;
    if total < ENTRY_HEADER || total - ENTRY_HEADER > footer {
        return Err(FirmwareError::new(
            path,
            format!("corrupt OVMF footer table: its size {total} does not fit the image"),
        ));
    }
    // Entries, walked backwards from the footer as the crate does.
    let table = &data[footer - (total - ENTRY_HEADER)..footer];
    let mut entries: Vec<([u8; 16], &[u8])> = Vec::new();
    let mut offset = table.len();
    while offset >= ENTRY_HEADER {
        let head = &table[offset - ENTRY_HEADER..offset];
        let size = u16_at(head, 0) as usize;
        if size < ENTRY_HEADER {
            return Err(FirmwareError::new(
                path,
                format!("corrupt OVMF footer table: an entry of {size} bytes"),
            ));
        }
        if offset < size {
            break;
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&head[2..]);
        entries.push((guid, &table[offset - size..offset - ENTRY_HEADER]));
        offset -= size;
    }
    // The crate keeps the last entry of a GUID it reads (the lowest one).
    let entry = |guid: [u8; 16]| {
        entries
            .iter()
            .rev()
            .find(|(g, _)| *g == guid)
            .map(|(_, d)| *d)
    };

    let Some(meta) = entry(SEV_METADATA_GUID) else {
        return Err(FirmwareError::new(
            path,
            format!(
                "no SEV metadata: its OVMF footer table has no OVMF_SEV_METADATA_GUID (dc886566-984a-4798-a75e-5585a7bf67cc) entry, so it cannot launch an SEV-SNP guest{HELP_NO_SEV}"
            ),
        ));
    };
    if meta.len() < 4 {
        return Err(FirmwareError::new(
            path,
            "corrupt SEV metadata entry: shorter than its 4-byte offset",
        ));
    }
    let from_end = i32::from_le_bytes([meta[0], meta[1], meta[2], meta[3]]);
    if from_end <= 0 || from_end as usize > len || (from_end as usize) < METADATA_HEADER {
        return Err(FirmwareError::new(
            path,
            format!(
                "corrupt SEV metadata entry: offset {from_end} from the end is outside the image"
            ),
        ));
    }
    let start = len - from_end as usize;
    if &data[start..start + 4] != b"ASEV" {
        return Err(FirmwareError::new(
            path,
            format!(
                "no SEV metadata header (signature \"ASEV\") where the footer table points ({from_end} bytes before the end)"
            ),
        ));
    }
    let (size, version, count) = (
        u32_at(&data, start + 4) as usize,
        u32_at(&data, start + 8),
        u32_at(&data, start + 12) as usize,
    );
    if version != 1 {
        return Err(FirmwareError::new(
            path,
            format!("SEV metadata version {version}: only version 1 is known"),
        ));
    }
    if size < METADATA_HEADER
        || start + size > len
        || count.saturating_mul(METADATA_SECTION) > size - METADATA_HEADER
    {
        return Err(FirmwareError::new(
            path,
            format!("corrupt SEV metadata: {count} sections in {size} bytes do not fit"),
        ));
    }
    let mut sections = Vec::new();
    let mut hashes_section = None;
    for i in 0..count {
        let at = start + METADATA_HEADER + i * METADATA_SECTION;
        let (gpa, size, kind) = (
            u32_at(&data, at),
            u32_at(&data, at + 4),
            u32_at(&data, at + 8),
        );
        let kind = match kind {
            1 => "SNP_SEC_MEM",
            2 => "SNP_SECRETS",
            3 => "CPUID",
            4 => "SVSM_CAA",
            0x10 => {
                hashes_section = Some(size);
                "SNP_KERNEL_HASHES"
            }
            other => {
                return Err(FirmwareError::new(
                    path,
                    format!("SEV metadata section {i} has the unknown type {other:#x}"),
                ));
            }
        };
        sections.push(Section {
            gpa: format!("{gpa:#x}"),
            size: format!("{size:#x}"),
            kind: kind.into(),
        });
    }
    let Some(reset) = entry(SEV_ES_RESET_GUID).filter(|d| d.len() >= 4) else {
        return Err(FirmwareError::new(
            path,
            "no SEV-ES reset block (SEV_ES_RESET_BLOCK_GUID 00f771de-1a7e-4fcb-890e-68c77e2fb44e) in its OVMF footer table: the AP start address an SNP launch measures is missing",
        ));
    };
    // Kernel hashes: a table entry with a GPA whose page holds the table,
    // and a 4 KiB SNP_KERNEL_HASHES section.
    let kernel_hashes_table = entry(SEV_HASH_TABLE_GUID)
        .filter(|d| d.len() >= 4)
        .map(|d| u32_at(d, 0) as u64)
        .filter(|gpa| *gpa != 0 && gpa % PAGE + HASH_TABLE_BYTES as u64 <= PAGE)
        .filter(|_| hashes_section == Some(PAGE as u32))
        .map(|gpa| format!("{gpa:#x}"));
    Ok(Firmware {
        path: path.to_path_buf(),
        sha256: hex(&Sha256::digest(&data)),
        size: len as u64,
        sev_es_reset_eip: format!("{:#x}", u32_at(reset, 0)),
        sev_metadata_sections: sections,
        kernel_hashes_table,
    })
}

/// A direct kernel boot (QEMU `-kernel`, `kernel-hashes=on`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// The kernel command line; `None` is QEMU's empty one.
    pub append: Option<String>,
}

/// The guest shape a digest depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub vcpus: u32,
    /// Canonical QEMU CPU model name (e.g. `EPYC-v4`).
    pub vcpu_type: String,
    pub guest_features: u64,
    pub boot: Option<DirectBoot>,
    /// The initial VMSA the host gives the vCPUs.
    pub vmsa_mode: VmsaMode,
}

impl Shape {
    /// The shape `launch-qemu.sh -sev-snp` launches by default, on a host
    /// that starts guests in `mode`.
    pub fn launch_default(mode: VmsaMode) -> Shape {
        Shape {
            vcpus: DEFAULT_VCPUS,
            vcpu_type: DEFAULT_VCPU_TYPE.into(),
            guest_features: DEFAULT_GUEST_FEATURES,
            boot: None,
            vmsa_mode: mode,
        }
    }

    /// The `snp-build measure` arguments of this shape (firmware aside).
    pub fn args(&self) -> Vec<String> {
        let mut v = vec![
            "--vcpus".to_string(),
            self.vcpus.to_string(),
            "--vcpu-type".into(),
            self.vcpu_type.clone(),
            "--guest-features".into(),
            format!("{:#x}", self.guest_features),
            "--vmsa-mode".into(),
            self.vmsa_mode.to_string(),
        ];
        if let Some(b) = &self.boot {
            v.extend(["--kernel".into(), b.kernel.display().to_string()]);
            if let Some(i) = &b.initrd {
                v.extend(["--initrd".into(), i.display().to_string()]);
            }
            if let Some(a) = &b.append {
                v.extend(["--append".into(), a.clone()]);
            }
        }
        v
    }

    /// The equivalent `sev-snp-measure` arguments (firmware aside): the
    /// same flags but the mode, in its `--mode snp`. Which release of it
    /// computes the same layout is [`VmsaMode::sev_snp_measure_versions`].
    pub fn sev_snp_measure_args(&self) -> Vec<String> {
        let mut v = vec!["--mode".to_string(), "snp".into()];
        let args = self.args();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            if a == "--vmsa-mode" {
                it.next();
            } else {
                v.push(a);
            }
        }
        v
    }
}

/// QEMU CPU models whose CPUID signature the measurement knows.
const KNOWN_VCPU_TYPES: &[&str] = &[
    "EPYC",
    "EPYC-v1",
    "EPYC-v2",
    "EPYC-IBPB",
    "EPYC-v3",
    "EPYC-v4",
    "EPYC-Rome",
    "EPYC-Rome-v1",
    "EPYC-Rome-v2",
    "EPYC-Rome-v3",
    "EPYC-Milan",
    "EPYC-Milan-v1",
    "EPYC-Milan-v2",
    "EPYC-Genoa",
    "EPYC-Genoa-v1",
    "EPYC-Turin",
    "EPYC-Turin-v1",
    "EPYC-Turin-v2",
];

/// The canonical name of a QEMU CPU model the measurement knows (any case).
pub fn parse_vcpu_type(name: &str) -> Result<String, UsageError> {
    CpuType::try_from(name).map(|t| t.to_string()).map_err(|_| {
        UsageError::new(format!(
            "--vcpu-type {name:?} is not a CPU model the SNP measurement knows"
        ))
        .help(format!("one of {}", KNOWN_VCPU_TYPES.join(", ")))
    })
}

/// A guest features value: hex with `0x`, or decimal.
pub fn parse_guest_features(value: &str) -> Result<u64, UsageError> {
    let v = value.trim();
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    parsed.map_err(|_| {
        UsageError::new(format!("--guest-features {value:?} is not a number"))
            .help("give the SEV features bit mask, e.g. 0x1 (SNPActive, QEMU's default)")
    })
}

/// The SHA-256s a direct kernel boot puts into the measured hashes page.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct KernelHashes {
    pub kernel: PathBuf,
    pub kernel_sha256: String,
    pub initrd: Option<PathBuf>,
    /// Of the initrd, or of nothing without one (as QEMU hashes it).
    pub initrd_sha256: String,
    pub append: Option<String>,
    /// Of the command line plus its NUL (an empty one without `--append`).
    pub cmdline_sha256: String,
}

/// A digest and everything that went into it.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// SHA-384, lowercase hex.
    pub digest: String,
    pub firmware: Firmware,
    pub shape: Shape,
    pub kernel_hashes: Option<KernelHashes>,
}

/// A digest and what went into it, as JSON: the manifest's
/// `measurement` (with [`ReleaseMeasurement`]'s fields) and `measure
/// --json`'s.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MeasurementRecord {
    /// SHA-384, lowercase hex.
    pub digest: String,
    /// `SHA-384`.
    pub algorithm: String,
    /// `snp`.
    pub mode: String,
    pub firmware: Firmware,
    pub vcpus: u32,
    /// The QEMU CPU model (`EPYC-v4`).
    pub vcpu_type: String,
    /// The SEV features bit mask, hex.
    pub guest_features: String,
    /// `QEMU`.
    pub vmm_type: String,
    /// The measured hashes of a direct kernel boot; null without one.
    pub kernel_hashes: Option<KernelHashes>,
    /// The initial VMSA the digest assumes: `init2` (`KVM_SEV_INIT2`) or
    /// `legacy`. (Releases made before it was recorded were computed in
    /// the init2 layout.)
    #[serde(default = "VmsaMode::init2")]
    pub vmsa_mode: VmsaMode,
    /// What computed the digest.
    pub calculator: String,
    /// The `sev-snp-measure` arguments that compute the same digest.
    pub sev_snp_measure_args: Vec<String>,
    /// The sev-snp-measure releases those arguments give it with
    /// (`sev-snp-measure >= 0.0.10` for `init2`, `<= 0.0.9` for `legacy`).
    #[serde(default)]
    pub sev_snp_measure: String,
}

/// The manifest's `measurement`: the default shape's record, then every
/// shape `MEASUREMENTS` lists.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ReleaseMeasurement {
    #[serde(flatten)]
    pub default: MeasurementRecord,
    /// What launches the default shape.
    pub launch: String,
    /// Why the release assumes its VMSA mode: its host kernel and QEMU.
    #[serde(default)]
    pub vmsa_mode_reason: String,
    /// `MEASUREMENTS`.
    pub measurements_file: String,
    /// Every listed shape, the default first.
    pub shapes: Vec<ShapeDigest>,
    /// The release's other firmwares (`OVMF.amdsev.fd`), each with its
    /// default shape's record and every listed shape.
    #[serde(default)]
    pub other_firmware: Vec<OtherFirmwareRecord>,
}

/// Another firmware's measurements in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OtherFirmwareRecord {
    /// Its file name (`OVMF.amdsev.fd`): `measure --firmware NAME`.
    pub name: String,
    /// The launch default shape's record.
    pub default: MeasurementRecord,
    pub shapes: Vec<ShapeDigest>,
}

/// One line of `MEASUREMENTS`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ShapeDigest {
    pub vcpus: u32,
    pub vcpu_type: String,
    /// Hex.
    pub guest_features: String,
    #[serde(default = "VmsaMode::init2")]
    pub vmsa_mode: VmsaMode,
    /// SHA-384, lowercase hex.
    pub digest: String,
}

impl Measurement {
    /// Its JSON record; `firmware_path` is how the firmware is named there.
    pub fn record(&self, firmware_path: &str) -> MeasurementRecord {
        let mut smm = self.shape.sev_snp_measure_args();
        smm.extend(["--ovmf".into(), firmware_path.into()]);
        MeasurementRecord {
            digest: self.digest.clone(),
            algorithm: "SHA-384".into(),
            mode: "snp".into(),
            firmware: Firmware {
                path: firmware_path.into(),
                ..self.firmware.clone()
            },
            vcpus: self.shape.vcpus,
            vcpu_type: self.shape.vcpu_type.clone(),
            guest_features: format!("{:#x}", self.shape.guest_features),
            vmm_type: VMM_TYPE.into(),
            kernel_hashes: self.kernel_hashes.clone(),
            vmsa_mode: self.shape.vmsa_mode,
            calculator: calculator(),
            sev_snp_measure_args: smm,
            sev_snp_measure: self.shape.vmsa_mode.sev_snp_measure_versions().into(),
        }
    }
}

/// What computed the digests: the `sev` crate and the version Cargo.lock
/// pins.
pub fn calculator() -> String {
    let lock = include_str!("../../Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"sev\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "?".into());
    format!(
        "sev {version} pages (OVMF, VMSA, kernel hashes) in snp-build's launch digest chain (as sev-snp-measure --mode snp)"
    )
}

fn sha256_of_file(path: &Path, what: &str) -> anyhow::Result<String> {
    crate::hash::sha256_file(path).map_err(|e| UsageError::new(format!("{what}: {e:#}")).into())
}

fn crate_error(path: &Path, e: sev::error::MeasurementError) -> anyhow::Error {
    FirmwareError::new(path, format!("the SNP measurement failed: {e}")).into()
}

/// Where the SNP firmware ABI records every VMSA page: GPA (u64)-1,
/// page-aligned, with the bits above 51 cleared.
const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;
/// Offsets in the VMSA page of MXCSR (u32) and the x87 FCW (u16): AMD
/// APM vol. 2, table B-4, the SEV-ES save area, as sev-snp-measure's
/// `SevEsSaveArea` lays it out.
const VMSA_MXCSR: usize = 0x408;
const VMSA_X87_FCW: usize = 0x410;

/// The launch digest as the SNP firmware builds it: for every page added
/// to the guest, SHA-384 over PAGE_INFO (the digest so far, the page's
/// contents hash, its length, type, IMI flag, VMPL permissions and GPA).
#[derive(Clone)]
struct LaunchDigest([u8; 48]);

impl LaunchDigest {
    fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8]) {
        // PAGE_INFO: SNP firmware ABI, SNP_LAUNCH_UPDATE (0x70 bytes).
        let mut info = Vec::with_capacity(0x70);
        info.extend_from_slice(&self.0);
        info.extend_from_slice(contents);
        info.extend_from_slice(&0x70u16.to_le_bytes());
        info.push(page_type as u8);
        info.push(0); // IMI_PAGE
        info.extend_from_slice(&[0, 0, 0]); // VMPL3, VMPL2, VMPL1 permissions
        info.push(0); // reserved
        info.extend_from_slice(&gpa.to_le_bytes());
        debug_assert_eq!(info.len(), 0x70);
        self.0.copy_from_slice(&Sha384::digest(&info));
    }

    /// Measured pages of data, 4 KiB each, from `gpa`.
    fn data(&mut self, gpa: u64, data: &[u8]) {
        for (i, page) in data.chunks(layout::PAGE as usize).enumerate() {
            self.update(
                PageType::Normal,
                gpa + i as u64 * layout::PAGE,
                &Sha384::digest(page),
            );
        }
    }

    /// Zero pages, 4 KiB each, from `gpa`: recorded with a zero contents
    /// hash.
    fn zero_pages(&mut self, path: &Path, gpa: u64, len: u64) -> Result<(), FirmwareError> {
        if !len.is_multiple_of(layout::PAGE) {
            return Err(FirmwareError::new(
                path,
                format!(
                    "an SEV metadata section at {gpa:#x} is {len:#x} bytes, not whole 4 KiB pages"
                ),
            ));
        }
        for i in 0..len / layout::PAGE {
            self.update(PageType::Zero, gpa + i * layout::PAGE, &[0; 48]);
        }
        Ok(())
    }

    fn hex(&self) -> String {
        hex(&self.0)
    }
}

/// The digest of the firmware's own pages: where every shape starts.
fn firmware_digest(ovmf: &OVMF) -> LaunchDigest {
    let mut ld = LaunchDigest([0; 48]);
    ld.data(ovmf.gpa(), ovmf.data());
    ld
}

/// The VMSA page of a QEMU vCPU in `mode`: the crate's page (the
/// `KVM_SEV_INIT2` layout) with MXCSR and FCW set to what the mode leaves.
fn vmsa_page(page: &[u8], mode: VmsaMode) -> Vec<u8> {
    let mut page = page.to_vec();
    let (mxcsr, fcw) = mode.fpu_reset();
    page[VMSA_MXCSR..VMSA_MXCSR + 4].copy_from_slice(&mxcsr.to_le_bytes());
    page[VMSA_X87_FCW..VMSA_X87_FCW + 2].copy_from_slice(&fcw.to_le_bytes());
    page
}

/// The launch digest of `shape` from the firmware's digest `seed`: the SEV
/// metadata sections (a direct boot's kernel hashes page among them), then
/// one VMSA page per vCPU, as QEMU adds them.
fn launch_digest(
    path: &Path,
    ovmf: &OVMF,
    seed: &LaunchDigest,
    shape: &Shape,
) -> anyhow::Result<String> {
    let vcpu_type = CpuType::try_from(shape.vcpu_type.as_str()).map_err(|_| {
        UsageError::new(format!("unknown vCPU type {:?}", shape.vcpu_type))
            .help(format!("one of {}", KNOWN_VCPU_TYPES.join(", ")))
    })?;
    let features = GuestFeatures::from_bytes_with(&shape.guest_features.to_le_bytes(), ())
        .context("encoding the guest features")?;
    let hashes = match &shape.boot {
        Some(b) => Some(
            SevHashes::new(b.kernel.clone(), b.initrd.clone(), b.append.as_deref())
                .map_err(|e| crate_error(path, e))?,
        ),
        None => None,
    };
    let mut ld = seed.clone();
    for desc in ovmf.metadata_items() {
        let (gpa, size) = (u64::from(desc.gpa), u64::from(desc.size));
        match desc.section_type {
            SectionType::SnpSecMemory | SectionType::SvsmCaa => ld.zero_pages(path, gpa, size)?,
            SectionType::SnpSecrets => ld.update(PageType::Secrets, gpa, &[0; 48]),
            SectionType::Cpuid => ld.update(PageType::Cpuid, gpa, &[0; 48]),
            SectionType::SnpKernelHashes => match &hashes {
                Some(h) => {
                    let table = ovmf.sev_hashes_table_gpa().map_err(|e| {
                        FirmwareError::new(path, format!("the kernel hashes table: {e}"))
                    })?;
                    let page = h
                        .construct_page((table & (layout::PAGE - 1)) as usize)
                        .map_err(|e| crate_error(path, e))?;
                    ld.data(gpa, &page);
                }
                None => ld.zero_pages(path, gpa, size)?,
            },
        }
    }
    let reset_eip = ovmf
        .sev_es_reset_eip()
        .map_err(|e| FirmwareError::new(path, format!("the SEV-ES reset block: {e}")))?;
    let vmsa = VMSA::new(
        reset_eip.into(),
        vcpu_type,
        VMMType::QEMU,
        Some(u64::from(shape.vcpus)),
        features,
    );
    for page in vmsa
        .pages(shape.vcpus as usize)
        .map_err(|e| crate_error(path, e))?
    {
        ld.update(
            PageType::Vmsa,
            VMSA_GPA,
            &Sha384::digest(vmsa_page(&page, shape.vmsa_mode)),
        );
    }
    Ok(ld.hex())
}

fn check_shape(shape: &Shape) -> anyhow::Result<()> {
    if shape.vcpus == 0 || shape.vcpus > MAX_VCPUS {
        return Err(
            UsageError::new(format!("--vcpus {}: give 1 to {MAX_VCPUS}", shape.vcpus)).into(),
        );
    }
    if let Some(a) = shape.boot.as_ref().and_then(|b| b.append.as_deref())
        && a.trim() != a
    {
        return Err(UsageError::new(format!(
            "--append {a:?} has leading or trailing whitespace"
        ))
        .help("QEMU hashes the command line as given, but the measurement library trims it, so the digest would be wrong: remove the whitespace (from launch-qemu.sh's -append too)")
        .into());
    }
    Ok(())
}

/// The firmware checked ([`inspect`]), then parsed by the crate.
fn open_firmware(path: &Path) -> anyhow::Result<(Firmware, OVMF)> {
    let firmware = inspect(path)?;
    let ovmf = OVMF::new(path.to_path_buf()).map_err(|e| crate_error(path, e))?;
    Ok((firmware, ovmf))
}

/// The expected launch digest of `ovmf` for `shape`.
pub fn measure(ovmf: &Path, shape: &Shape) -> anyhow::Result<Measurement> {
    check_shape(shape)?;
    let (firmware, parsed) = open_firmware(ovmf)?;
    let kernel_hashes = match &shape.boot {
        None => None,
        Some(b) => {
            if !firmware.supports_kernel_hashes() {
                return Err(FirmwareError::new(
                    ovmf,
                    "no kernel hashes table: a direct kernel boot (--kernel, QEMU's kernel-hashes=on) needs a firmware whose OVMF footer table has SEV_HASH_TABLE_RV_GUID (7255371f-3a3b-4b04-927b-1da6efa8d454) and whose SEV metadata has a 4 KiB SNP_KERNEL_HASHES section (edk2's OvmfPkg/AmdSev/AmdSevX64.dsc builds one)",
                )
                .into());
            }
            let cmdline = format!("{}\0", b.append.as_deref().unwrap_or(""));
            Some(KernelHashes {
                kernel: b.kernel.clone(),
                kernel_sha256: sha256_of_file(&b.kernel, "--kernel")?,
                initrd: b.initrd.clone(),
                initrd_sha256: match &b.initrd {
                    Some(i) => sha256_of_file(i, "--initrd")?,
                    None => hex(&Sha256::digest(b"")),
                },
                append: b.append.clone(),
                cmdline_sha256: hex(&Sha256::digest(cmdline.as_bytes())),
            })
        }
    };
    let digest = launch_digest(ovmf, &parsed, &firmware_digest(&parsed), shape)?;
    Ok(Measurement {
        digest,
        firmware,
        shape: shape.clone(),
        kernel_hashes,
    })
}

/// The digests of a release's firmware for the shapes `MEASUREMENTS`
/// lists (no direct kernel boot: the kernel is the guest owner's).
#[derive(Debug, Clone)]
pub struct ReleaseMeasurements {
    /// The default shape of `launch-qemu.sh -sev-snp`.
    pub default: Measurement,
    /// Why the release assumes its mode (the host kernel and QEMU it has).
    pub mode_reason: String,
    /// Every listed shape and its digest, the default first.
    pub shapes: Vec<(Shape, String)>,
    /// The release's other firmwares (`OVMF.<name>.fd`), measured the same
    /// way.
    pub others: Vec<OtherFirmware>,
}

/// Another firmware of a release (`OVMF.amdsev.fd`) and its digests.
#[derive(Debug, Clone)]
pub struct OtherFirmware {
    /// Its file name in the release's firmware directory: what `measure
    /// --firmware` and `launch-qemu.sh -firmware` take.
    pub name: String,
    pub default: Measurement,
    pub shapes: Vec<(Shape, String)>,
}

/// The measured direct boot firmware (AmdSevX64) as the stacks install
/// it; `libvirt-snp-direct.xml` boots it.
pub const RELEASE_AMDSEV_OVMF: &str = "usr/local/share/qemu/OVMF.amdsev.fd";

/// The directory of a release's firmwares.
pub const RELEASE_FIRMWARE_DIR: &str = "usr/local/share/qemu";

/// Whether a release path is a firmware it measures besides
/// [`RELEASE_OVMF`]: `usr/local/share/qemu/OVMF.<name>.fd`.
pub fn is_other_firmware(rel: &str) -> bool {
    rel.strip_prefix(RELEASE_FIRMWARE_DIR)
        .and_then(|r| r.strip_prefix("/OVMF."))
        .and_then(|r| r.strip_suffix(".fd"))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// Guest features with DEBUG_SWAP (bit 5) besides SNPActive: what a host
/// of the legacy init with `kvm_amd debug_swap=Y` gives a guest (and
/// sev-snp-measure 0.0.9's default).
pub const LEGACY_DEBUG_SWAP_FEATURES: u64 = 0x21;

/// The shapes a release's `MEASUREMENTS` lists in `mode`: the launch
/// default first, then every vCPU type of [`MATRIX_VCPU_TYPES`] with every
/// count of [`MATRIX_VCPUS`]; in `legacy` mode each again with
/// [`LEGACY_DEBUG_SWAP_FEATURES`].
pub fn release_shapes(mode: VmsaMode) -> Vec<Shape> {
    let mut features = vec![DEFAULT_GUEST_FEATURES];
    if mode == VmsaMode::Legacy {
        features.push(LEGACY_DEBUG_SWAP_FEATURES);
    }
    let mut shapes = vec![Shape::launch_default(mode)];
    for f in features {
        for t in MATRIX_VCPU_TYPES {
            for n in MATRIX_VCPUS {
                let s = Shape {
                    vcpus: *n,
                    vcpu_type: t.to_string(),
                    guest_features: f,
                    ..Shape::launch_default(mode)
                };
                if !shapes.contains(&s) {
                    shapes.push(s);
                }
            }
        }
    }
    shapes
}

/// A firmware's default measurement and its digest for every one of
/// [`release_shapes`] in `mode`. The file is read and its pages hashed
/// once; that digest seeds every shape.
fn measure_shapes(
    ovmf: &Path,
    mode: VmsaMode,
) -> anyhow::Result<(Measurement, Vec<(Shape, String)>)> {
    let (firmware, parsed) = open_firmware(ovmf)?;
    let seed = firmware_digest(&parsed);
    let mut shapes = Vec::new();
    for shape in release_shapes(mode) {
        let digest = launch_digest(ovmf, &parsed, &seed, &shape)?;
        shapes.push((shape, digest));
    }
    // The first shape is the launch default (release_shapes says so).
    let default = Measurement {
        digest: shapes[0].1.clone(),
        firmware,
        shape: shapes[0].0.clone(),
        kernel_hashes: None,
    };
    Ok((default, shapes))
}

/// Measures a release's firmware `ovmf` ([`RELEASE_OVMF`]) and its
/// `others` (name, path) for [`release_shapes`] in `mode`.
pub fn release_measurements(
    ovmf: &Path,
    others: &[(String, PathBuf)],
    mode: &crate::snp_support::Choice,
) -> anyhow::Result<ReleaseMeasurements> {
    let (default, shapes) = measure_shapes(ovmf, mode.mode)?;
    let mut measured = Vec::new();
    for (name, path) in others {
        let (default, shapes) = measure_shapes(path, mode.mode)
            .with_context(|| format!("measuring the release's {name}"))?;
        measured.push(OtherFirmware {
            name: name.clone(),
            default,
            shapes,
        });
    }
    Ok(ReleaseMeasurements {
        default,
        others: measured,
        mode_reason: mode.reason.clone(),
        shapes,
    })
}

impl ReleaseMeasurements {
    /// The `MEASUREMENTS` file: `#` comment lines, then one line per shape,
    /// `DIGEST  ARGS` (two spaces, as `sha256sum`), ARGS being the
    /// `snp-build measure` arguments of the shape. The comment line
    /// `# firmware-sha256: HEX` names the firmware every line is for.
    pub fn file_text(&self) -> String {
        let fw = &self.default.firmware;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Expected SEV-SNP launch digests (SHA-384, hex) of this release's firmware,\n\
             # one line per guest shape: DIGEST, two spaces, then the `snp-build measure`\n\
             # arguments of the shape. The first line is what `launch-qemu.sh -sev-snp`\n\
             # launches by default ({DEFAULT_VCPUS} vCPUs, {DEFAULT_VCPU_TYPE}).\n\
             # VMM type {VMM_TYPE}; no direct kernel boot (with -kernel, run snp-build measure).\n\
             # Every line assumes the VMSA mode it names (--vmsa-mode): {mode}, because\n\
             # {reason}.\n\
             # sev-snp-measure computes the same digests without --vmsa-mode: {smm}.\n\
             # Recompute a line: snp-build measure --release <this directory> ARGS\n\
             # Computed by snp-build {} with {}.\n\
             # firmware: {RELEASE_OVMF}\n\
             # firmware-sha256: {}\n\
             # vmsa-mode: {mode}{}",
            env!("CARGO_PKG_VERSION"),
            calculator(),
            fw.sha256,
            self.others
                .iter()
                .map(|o| format!(
                    "\n# firmware {RELEASE_FIRMWARE_DIR}/{0} (the lines with --firmware {0}):\n\
                     # firmware-sha256: {1} {0}",
                    o.name, o.default.firmware.sha256
                ))
                .collect::<String>(),
            mode = self.default.shape.vmsa_mode,
            reason = self.mode_reason,
            smm = self.default.shape.vmsa_mode.sev_snp_measure_versions(),
        );
        for (shape, digest) in &self.shapes {
            let _ = writeln!(s, "{digest}  {}", shape.args().join(" "));
        }
        for o in &self.others {
            for (shape, digest) in &o.shapes {
                let _ = writeln!(
                    s,
                    "{digest}  {} --firmware {}",
                    shape.args().join(" "),
                    o.name
                );
            }
        }
        s
    }

    /// The manifest's `measurement` section.
    pub fn manifest(&self) -> ReleaseMeasurement {
        ReleaseMeasurement {
            default: self.default.record(RELEASE_OVMF),
            launch: format!(
                "launch-qemu.sh -sev-snp (defaults -smp {DEFAULT_VCPUS} -cpu {DEFAULT_VCPU_TYPE})"
            ),
            vmsa_mode_reason: self.mode_reason.clone(),
            measurements_file: MEASUREMENTS_FILE.into(),
            shapes: shape_digests(&self.shapes),
            other_firmware: self
                .others
                .iter()
                .map(|o| OtherFirmwareRecord {
                    name: o.name.clone(),
                    default: o
                        .default
                        .record(&format!("{RELEASE_FIRMWARE_DIR}/{}", o.name)),
                    shapes: shape_digests(&o.shapes),
                })
                .collect(),
        }
    }
}

fn shape_digests(shapes: &[(Shape, String)]) -> Vec<ShapeDigest> {
    shapes
        .iter()
        .map(|(s, d)| ShapeDigest {
            vcpus: s.vcpus,
            vcpu_type: s.vcpu_type.clone(),
            guest_features: format!("{:#x}", s.guest_features),
            vmsa_mode: s.vmsa_mode,
            digest: d.clone(),
        })
        .collect()
}

/// Parses a `MEASUREMENTS` file: (ARGS, DIGEST) of every data line.
pub fn parse_measurements(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once("  "))
        .map(|(d, a)| (a.to_string(), d.to_string()))
        .collect()
}

/// The VMSA mode a `MEASUREMENTS` file names (`# vmsa-mode: init2`).
/// Files written before the mode was recorded have none.
pub fn recorded_mode(text: &str) -> Option<VmsaMode> {
    text.lines()
        .find_map(|l| l.strip_prefix("# vmsa-mode:"))
        .and_then(|m| m.trim().parse().ok())
}

/// What `snp-build measure` was asked: the firmware and the guest shape.
#[derive(Debug, Clone)]
pub struct MeasureRequest {
    /// A release directory: its `usr/local/share/qemu/OVMF.fd`.
    pub release: Option<PathBuf>,
    /// The firmware image itself.
    pub ovmf: Option<PathBuf>,
    /// With `release`: which of its firmwares (`OVMF.amdsev.fd`); none:
    /// `OVMF.fd`.
    pub firmware: Option<String>,
    pub vcpus: u32,
    pub vcpu_type: String,
    pub guest_features: String,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    /// `--vmsa-mode`; unset: the release's own (its `MEASUREMENTS`), else
    /// `init2`.
    pub vmsa_mode: Option<VmsaMode>,
}

/// `snp-build measure`: the expected launch digest of a firmware for a
/// shape.
pub fn command(args: &MeasureRequest) -> anyhow::Result<Measurement> {
    let ovmf = match (&args.release, &args.ovmf) {
        (_, Some(f)) => f.clone(),
        (Some(dir), None) => {
            let rel = match &args.firmware {
                Some(name) if name.contains('/') || name.is_empty() => {
                    return Err(UsageError::new(format!(
                        "--firmware {name:?} is not a file name"
                    ))
                    .help(format!("name a firmware of the release's {RELEASE_FIRMWARE_DIR}, e.g. OVMF.amdsev.fd"))
                    .into());
                }
                Some(name) => format!("{RELEASE_FIRMWARE_DIR}/{name}"),
                None => RELEASE_OVMF.to_string(),
            };
            let f = dir.join(&rel);
            if !f.is_file() {
                return Err(UsageError::new(format!(
                    "--release {}: no {rel} in it",
                    dir.display()
                ))
                .help("give the directory of an unpacked snp-release-<date>, or the firmware itself with --ovmf")
                .into());
            }
            f
        }
        (None, None) => {
            return Err(UsageError::new("which firmware? give --release DIR or --ovmf FILE")
                .help(format!("--release DIR measures DIR/{RELEASE_OVMF}, what launch-qemu.sh -sev-snp boots"))
                .into());
        }
    };
    // The mode the release's digests assume, so that its MEASUREMENTS
    // lines recompute as written; releases older than the mode line were
    // computed in the init2 layout.
    let vmsa_mode = args.vmsa_mode.unwrap_or_else(|| {
        args.release
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join(MEASUREMENTS_FILE)).ok())
            .and_then(|t| recorded_mode(&t))
            .unwrap_or(VmsaMode::Init2)
    });
    let shape = Shape {
        vcpus: args.vcpus,
        vcpu_type: parse_vcpu_type(&args.vcpu_type)?,
        guest_features: parse_guest_features(&args.guest_features)?,
        boot: args.kernel.as_ref().map(|k| DirectBoot {
            kernel: k.clone(),
            initrd: args.initrd.clone(),
            append: args.append.clone(),
        }),
        vmsa_mode,
    };
    measure(&ovmf, &shape).map_err(|e| match e.downcast::<FirmwareError>() {
        // A firmware that cannot be measured is bad input: exit 2.
        Ok(fe) => UsageError::new(fe.to_string()).into(),
        Err(e) => e,
    })
}

/// What a person reads about a measurement (stderr); the digest itself
/// goes to stdout.
pub fn describe(m: &Measurement) -> Vec<String> {
    let boot = match &m.kernel_hashes {
        None => "no direct kernel boot".to_string(),
        Some(k) => format!(
            "kernel hashes of {} (initrd {}, command line {:?})",
            k.kernel.display(),
            k.initrd
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none".into()),
            k.append.as_deref().unwrap_or("")
        ),
    };
    vec![
        format!(
            "firmware: {} (sha256 {})",
            m.firmware.path.display(),
            m.firmware.sha256
        ),
        format!(
            "shape: {} vCPU(s) {}, guest features {:#x}, VMM {VMM_TYPE}, {boot}",
            m.shape.vcpus, m.shape.vcpu_type, m.shape.guest_features
        ),
        format!(
            "VMSA mode: {} (as {})",
            m.shape.vmsa_mode,
            m.shape.vmsa_mode.sev_snp_measure_versions()
        ),
        "expected SEV-SNP launch digest (SHA-384):".to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_vmsa_page_holds_init2_fpu_state_where_legacy_clears_it() {
        let features = GuestFeatures::from_bytes_with(&1u64.to_le_bytes(), ()).unwrap();
        let vmsa = VMSA::new(
            0xffff_f000,
            CpuType::try_from("EPYC-v4").unwrap(),
            VMMType::QEMU,
            Some(1),
            features,
        );
        let page = &vmsa.pages(1).unwrap()[0];
        // The crate's page is the init2 layout: if its offsets moved, the
        // legacy page below would clear the wrong bytes.
        assert_eq!(u32_at(page, VMSA_MXCSR), 0x1f80);
        assert_eq!(u16_at(page, VMSA_X87_FCW), 0x37f);
        assert_eq!(vmsa_page(page, VmsaMode::Init2), *page);
        let legacy = vmsa_page(page, VmsaMode::Legacy);
        assert_eq!(u32_at(&legacy, VMSA_MXCSR), 0);
        assert_eq!(u16_at(&legacy, VMSA_X87_FCW), 0);
        let changed = legacy.iter().zip(page).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 4, "only MXCSR's and FCW's set bytes differ");
    }

    #[test]
    fn measurements_name_their_mode() {
        assert_eq!(
            recorded_mode("# x\n# vmsa-mode: legacy\nabc  --vcpus 1"),
            Some(VmsaMode::Legacy)
        );
        assert_eq!(recorded_mode("# firmware-sha256: 00\n"), None);
    }

    #[test]
    fn guids_are_the_little_endian_forms_ovmf_stores() {
        assert_eq!(
            layout::FOOTER_GUID,
            [
                0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a,
                0x08, 0x2d
            ]
        );
        assert_eq!(&layout::SEV_HASH_TABLE_GUID[..4], &[0x1f, 0x37, 0x55, 0x72]);
    }

    #[test]
    fn guest_features_and_vcpu_types_parse() {
        assert_eq!(parse_guest_features("0x1").unwrap(), 1);
        assert_eq!(parse_guest_features("33").unwrap(), 33);
        assert!(parse_guest_features("x").is_err());
        assert_eq!(parse_vcpu_type("epyc-milan").unwrap(), "EPYC-Milan");
        let e = parse_vcpu_type("Pentium").unwrap_err().to_string();
        assert!(e.contains("EPYC-v4") && e.contains("Pentium"), "{e}");
    }

    #[test]
    fn short_garbage_and_empty_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("empty.fd", vec![]),
            ("tiny.fd", vec![0u8; 10]),
            ("zeros.fd", vec![0u8; 8192]),
            ("ff.fd", vec![0xffu8; 8192]),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = inspect(&p).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn release_shapes_start_with_the_launch_default_and_are_distinct() {
        for mode in VmsaMode::ALL {
            let s = release_shapes(mode);
            assert_eq!(s[0], Shape::launch_default(mode));
            for (i, a) in s.iter().enumerate() {
                assert!(!s[i + 1..].contains(a));
            }
            assert_eq!(
                s[0].args().join(" "),
                format!("--vcpus 4 --vcpu-type EPYC-v4 --guest-features 0x1 --vmsa-mode {mode}")
            );
            assert!(
                !s[0]
                    .sev_snp_measure_args()
                    .contains(&"--vmsa-mode".to_string())
            );
        }
        assert!(release_shapes(VmsaMode::Legacy).len() > release_shapes(VmsaMode::Init2).len());
    }
}
