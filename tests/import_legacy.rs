//! `snp-build import-legacy` converts both AMDSEV `stable-commits` forms.

use assert_cmd::Command;
use serde_json::Value;

const OLD_FORM: &str = r#"# hypervisor commit
KERNEL_GIT_URL="https://github.com/AMDESE/linux.git"
KERNEL_HOST_BRANCH="snp-host-latest"
KERNEL_GUEST_BRANCH="snp-guest-latest"

# qemu commit
QEMU_GIT_URL="https://github.com/AMDESE/qemu.git"
QEMU_BRANCH="snp-latest"

# guest bios
OVMF_GIT_URL="https://github.com/AMDESE/ovmf.git"
OVMF_BRANCH="snp-latest"
"#;

const NEW_FORM: &str = r#"# host kernel
KERNEL_HOST_GIT_URL='https://github.com/AMDESE/linux.git'
KERNEL_HOST_BRANCH=snp-host-v15   # tested on Genoa

# guest kernel
export KERNEL_GUEST_GIT_URL="https://github.com/example/linux-guest.git"
KERNEL_GUEST_BRANCH="refs/tags/v6.9-snp-guest"

QEMU_GIT_URL="https://github.com/AMDESE/qemu.git"
QEMU_BRANCH="3b6e3a1c9d"

OVMF_GIT_URL="https://github.com/AMDESE/ovmf.git"
OVMF_BRANCH="snp-latest"
SEV_SNP_MEASURE_VERSION="0.0.13"
"#;

/// Converts `legacy` with -o and reads the result back through `config --json`.
fn convert(legacy: &str) -> (Value, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stable-commits"), legacy).unwrap();
    let out = Command::cargo_bin("snp-build")
        .unwrap()
        .current_dir(dir.path())
        .args(["import-legacy", "stable-commits", "-o", "converted.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let out = Command::cargo_bin("snp-build")
        .unwrap()
        .current_dir(dir.path())
        .args(["config", "--json", "--config", "converted.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    (doc["config"].clone(), stderr)
}

#[test]
fn old_form_round_trips() {
    let (c, stderr) = convert(OLD_FORM);
    assert_eq!(
        c["kernel"]["host"]["url"],
        "https://github.com/AMDESE/linux.git"
    );
    assert_eq!(c["kernel"]["host"]["branch"], "snp-host-latest");
    assert_eq!(
        c["kernel"]["guest"]["url"],
        "https://github.com/AMDESE/linux.git"
    );
    assert_eq!(c["kernel"]["guest"]["branch"], "snp-guest-latest");
    assert_eq!(c["qemu"]["url"], "https://github.com/AMDESE/qemu.git");
    assert_eq!(c["qemu"]["branch"], "snp-latest");
    assert_eq!(c["ovmf"]["url"], "https://github.com/AMDESE/ovmf.git");
    assert_eq!(c["ovmf"]["branch"], "snp-latest");
    assert_eq!(c["ovmf"]["submodules"], true);
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn new_form_round_trips_and_reports_unknown_variables() {
    let (c, stderr) = convert(NEW_FORM);
    assert_eq!(
        c["kernel"]["host"]["url"],
        "https://github.com/AMDESE/linux.git"
    );
    assert_eq!(c["kernel"]["host"]["branch"], "snp-host-v15");
    assert_eq!(
        c["kernel"]["guest"]["url"],
        "https://github.com/example/linux-guest.git"
    );
    assert_eq!(c["kernel"]["guest"]["tag"], "v6.9-snp-guest");
    assert_eq!(c["qemu"]["commit"], "3b6e3a1c9d");
    assert_eq!(c["ovmf"]["branch"], "snp-latest");
    assert!(
        stderr.contains("SEV_SNP_MEASURE_VERSION") && stderr.contains("line 14"),
        "unknown variables must be reported: {stderr}"
    );
}

#[test]
fn stdout_without_output_flag_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sc"), OLD_FORM).unwrap();
    let out = Command::cargo_bin("snp-build")
        .unwrap()
        .current_dir(dir.path())
        .args(["import-legacy", "sc"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table: toml::Table = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(table["qemu"]["branch"].as_str(), Some("snp-latest"));

    // An existing output is not overwritten without --force.
    std::fs::write(dir.path().join("out.toml"), "keep me").unwrap();
    let out = Command::cargo_bin("snp-build")
        .unwrap()
        .current_dir(dir.path())
        .args(["import-legacy", "sc", "-o", "out.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.toml")).unwrap(),
        "keep me"
    );

    // Shell code is not run or converted.
    std::fs::write(
        dir.path().join("evil"),
        "QEMU_GIT_URL=\"$(id)\"\nQEMU_BRANCH=x\n",
    )
    .unwrap();
    let out = Command::cargo_bin("snp-build")
        .unwrap()
        .current_dir(dir.path())
        .args(["import-legacy", "evil"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}
