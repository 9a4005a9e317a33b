//! The SEV-SNP stack's minimum versions, as data.
//!
//! Guarantees:
//! - This table is the SNP column ("SEV 3.0 (SNP)") of the AMDSEV README's
//!   "Upstream Version Reference" (AMDESE/AMDSEV, `main`), one row per
//!   entry, each citing its row.
//! - Every `doctor --host` check that compares a version against a minimum
//!   takes it from here ([`super::snp`], [`super::platform`]), its help
//!   text included; no other file spells these numbers. A new AMDSEV
//!   minimum is an edit to one line.

use std::cmp::Ordering;

use crate::tools::compare_versions;

/// One row of the table: the oldest version of something that runs SNP
/// guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minimum {
    /// What it is the minimum of.
    pub what: &'static str,
    /// The oldest version that works, as AMDSEV writes it.
    pub version: &'static str,
}

/// AMDSEV README, "Upstream Version Reference", row "Kernel (host)": 6.11.
pub const HOST_KERNEL: Minimum = Minimum {
    what: "host kernel",
    // The build's refusal of older upstream host kernels uses it too.
    version: crate::snp_support::SNP_HOST_KERNEL,
};

/// AMDSEV README, "Upstream Version Reference", row "Kernel (guest)": 5.19
/// ("6.11 recommended; full attestation and guest_memfd"). The guest's
/// kernel is the guest's: no host check compares it.
pub const GUEST_KERNEL: Minimum = Minimum {
    what: "guest kernel",
    version: "5.19",
};

/// AMDSEV README, "Upstream Version Reference", row "QEMU": 9.1.
pub const QEMU: Minimum = Minimum {
    what: "QEMU",
    version: crate::snp_support::SNP_QEMU,
};

/// AMDSEV README, "Upstream Version Reference", row "OVMF":
/// edk2-stable202405 (an edk2 tag: compared by its `YYYYMM`).
pub const OVMF: Minimum = Minimum {
    what: "OVMF",
    version: "edk2-stable202405",
};

/// AMDSEV README, "Upstream Version Reference", row "libvirt": 10.5.0.
pub const LIBVIRT: Minimum = Minimum {
    what: "libvirt",
    version: "10.5.0",
};

/// AMDSEV README, "Upstream Version Reference", row "SEV FW": 1.51 (0x33),
/// the firmware's API version `major.minor` (the kernel prints it as
/// `SEV-SNP API:1.58 build:5`; 0x33 is the minor, 51).
pub const SEV_FIRMWARE: Minimum = Minimum {
    what: "SEV firmware",
    version: "1.51",
};

/// The whole table, in the README's order.
pub const ALL: [Minimum; 6] = [HOST_KERNEL, GUEST_KERNEL, QEMU, OVMF, LIBVIRT, SEV_FIRMWARE];

/// The prefix of an edk2 release tag; what follows is its `YYYYMM`.
const EDK2_STABLE: &str = "edk2-stable";

impl Minimum {
    /// `6.11 or later`: a check's `needed`.
    pub fn or_later(&self) -> String {
        format!("{} or later", self.version)
    }

    /// Whether `version` (`6.11.0`, `1.58`, `edk2-stable202408`) is this
    /// minimum or later: numbers compared dot by dot (so 1.9 is older
    /// than 1.51, as the firmware counts), an edk2 tag by its date.
    pub fn met_by(&self, version: &str) -> bool {
        let number = |v: &'static str| v.strip_prefix(EDK2_STABLE).unwrap_or(v);
        let version = version.strip_prefix(EDK2_STABLE).unwrap_or(version);
        compare_versions(version, number(self.version)) != Ordering::Less
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers_dot_by_dot() {
        assert!(SEV_FIRMWARE.met_by("1.58"));
        assert!(SEV_FIRMWARE.met_by("1.51"));
        assert!(!SEV_FIRMWARE.met_by("1.49"));
        // The API minor is a number: 1.9 is older than 1.51.
        assert!(!SEV_FIRMWARE.met_by("1.9"));
        assert!(HOST_KERNEL.met_by("6.11.0"));
        assert!(HOST_KERNEL.met_by("6.12"));
        assert!(!HOST_KERNEL.met_by("6.8.0"));
        assert!(LIBVIRT.met_by("10.6.0"));
        assert!(!LIBVIRT.met_by("10.0.0"));
        assert!(OVMF.met_by("edk2-stable202408"));
        assert!(!OVMF.met_by("edk2-stable202402"));
        assert!(OVMF.met_by("202405"));
        assert_eq!(QEMU.or_later(), "9.1 or later");
    }

    #[test]
    fn the_table_is_the_snp_column() {
        let rows: Vec<(&str, &str)> = ALL.iter().map(|m| (m.what, m.version)).collect();
        assert_eq!(
            rows,
            [
                ("host kernel", "6.11"),
                ("guest kernel", "5.19"),
                ("QEMU", "9.1"),
                ("OVMF", "edk2-stable202405"),
                ("libvirt", "10.5.0"),
                ("SEV firmware", "1.51"),
            ]
        );
    }
}
