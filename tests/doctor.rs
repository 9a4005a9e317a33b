//! `snp-build doctor` (issue 8): the build host's tools, versions and the
//! one line that installs what is missing; `doctor --host` on fake sysroots.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Runs snp-build in `dir`; `path` replaces PATH when given.
fn snp(dir: &Path, path: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = snp_build_in(dir);
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    Run::from(cmd.args(args).output().unwrap())
}

/// A PATH directory holding only links to these programs of this machine.
fn narrow_path(dir: &Path, programs: &[&str]) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for p in programs {
        // /usr/bin first: python3 may be a pyenv shim that needs its PATH.
        let real = ["/usr/bin", "/bin", "/usr/local/bin"]
            .iter()
            .map(|d| Path::new(d).join(p))
            .find(|c| c.exists())
            .unwrap_or_else(|| panic!("{p} is not installed here"));
        std::os::unix::fs::symlink(real, bin.join(p)).unwrap();
    }
    bin
}

fn write_file(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn debian_like() -> bool {
    snp_build::host::is_debian_like(&snp_build::host::os_release(Path::new("/etc/os-release")))
}

#[test]
fn default_pins_without_nasm_and_iasl_name_both_with_one_install_line() {
    let dir = tempfile::tempdir().unwrap();
    let bin = narrow_path(dir.path(), &["gcc", "g++", "make", "python3"]);
    let r = snp(dir.path(), Some(&bin), &["doctor"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "human output goes to stderr");
    assert!(r.stderr.contains("embedded default"), "{}", r.stderr);
    assert!(r.row("nasm").contains("missing"), "{}", r.row("nasm"));
    assert!(r.row("nasm").contains(">= 2.15.01"), "{}", r.row("nasm"));
    assert!(r.row("iasl").contains("missing"), "{}", r.row("iasl"));
    assert!(r.row("gcc").contains(" ok "), "{}", r.row("gcc"));
    let install: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("install -y"))
        .collect();
    assert_eq!(install.len(), 1, "one install line:\n{}", r.stderr);
    let words: Vec<&str> = install[0].split_whitespace().collect();
    assert!(
        words.contains(&"nasm") && words.contains(&"acpica-tools"),
        "{}",
        install[0]
    );
    if debian_like() {
        assert!(
            install[0].trim_start().starts_with("apt-get install -y "),
            "{}",
            install[0]
        );
    }

    // The same as one JSON document on stdout.
    let r = snp(dir.path(), Some(&bin), &["doctor", "ovmf", "--json"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["exit_code"], 4);
    let error = doc["error"].as_str().unwrap();
    assert!(error.contains("nasm acpica-tools"), "{error}");
}

#[test]
fn an_old_nasm_is_too_old_with_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let bin = narrow_path(dir.path(), &["gcc", "g++", "make", "python3"]);
    script(
        &bin.join("nasm"),
        "echo 'NASM version 2.14.02 compiled on Jan  1 2020'",
    );
    script(
        &bin.join("iasl"),
        "echo 'ASL+ Optimizing Compiler/Disassembler version 20220331'",
    );
    let r = snp(dir.path(), Some(&bin), &["doctor", "ovmf"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let row = r.row("nasm");
    for needle in ["too old", "2.14.02", ">= 2.15.01"] {
        assert!(row.contains(needle), "{needle}: {row}");
    }
    assert!(r.row("iasl").contains(" ok "), "{}", r.stderr);

    // A new enough one passes.
    script(&bin.join("nasm"), "echo 'NASM version 2.16.01'");
    let r = snp(dir.path(), Some(&bin), &["doctor", "ovmf"]);
    if r.code != 0 {
        // Only libuuid's header may be missing on this machine.
        assert!(!r.stderr.contains("too old"), "{}", r.stderr);
        assert!(r.row("uuid").contains("missing"), "{}", r.stderr);
    }
}

/// A PATH with what OVMF's stage needs (nasm and iasl as scripts that
/// print their versions), and whether to leave iasl out.
fn ovmf_path(dir: &Path, with_iasl: bool) -> PathBuf {
    let bin = narrow_path(dir, &["gcc", "g++", "make", "python3"]);
    script(
        &bin.join("nasm"),
        "echo 'NASM version 2.16.01 compiled on Jan  1 2023'",
    );
    if with_iasl {
        script(
            &bin.join("iasl"),
            "echo 'ASL+ Optimizing Compiler/Disassembler version 20220331'",
        );
    }
    bin
}

/// The check called `name` in the document's top-level `checks`.
fn check<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == name))
        .unwrap_or_else(|| panic!("no {name} check at the top level: {doc}"))
}

/// The names of a document's top-level keys.
fn keys(doc: &Value) -> Vec<String> {
    doc.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn a_machine_missing_iasl_gets_the_same_json_shape_as_a_ready_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = snp(
        dir.path(),
        Some(&ovmf_path(&dir.path().join("a"), false)),
        &["doctor", "--json"],
    );
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    // One document, nothing else on stdout.
    assert_eq!(
        missing.stdout.trim().lines().count(),
        1,
        "{}",
        missing.stdout
    );
    let doc = missing.json();
    assert_eq!(doc["ready"], false, "{doc}");
    assert_eq!(doc["exit_code"], 4);
    assert!(doc["error"].as_str().unwrap().contains("iasl"), "{doc}");
    let iasl = check(&doc, "iasl");
    assert_eq!(iasl["status"], "missing", "{iasl}");
    assert_eq!(iasl["found"], "no `iasl` on PATH", "{iasl}");
    assert_eq!(iasl["needed"], "by ovmf", "{iasl}");
    let install = doc["install"].as_str().unwrap();
    assert!(
        install.split_whitespace().any(|w| w == "acpica-tools"),
        "{install}"
    );
    assert!(doc.get("preflight").is_none(), "one shape: {doc}");

    // Ready: the same keys, less the failure's.
    let ready = snp(
        dir.path(),
        Some(&ovmf_path(&dir.path().join("b"), true)),
        &["doctor", "ovmf", "--json"],
    );
    assert_eq!(ready.code, 0, "{}", ready.stderr);
    let ok = ready.json();
    assert_eq!(ok["ready"], true, "{ok}");
    assert!(ok["install"].is_null(), "{ok}");
    let mut expected = keys(&ok);
    expected.extend(["exit_code".to_string(), "error".to_string()]);
    expected.sort();
    let mut got = keys(&doc);
    got.sort();
    assert_eq!(got, expected);
    // The text output is unchanged by --json's shape.
    let text = snp(
        dir.path(),
        Some(&ovmf_path(&dir.path().join("c"), false)),
        &["doctor", "ovmf"],
    );
    assert_eq!(text.code, 4);
    assert!(text.stdout.is_empty());
    assert!(text.row("iasl").contains("missing"), "{}", text.stderr);
}

#[test]
fn fix_with_nothing_missing_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bin = ovmf_path(dir.path(), true);
    let r = snp(
        dir.path(),
        Some(&bin),
        &["doctor", "ovmf", "--fix", "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["fix"]["packages"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["fix"]["commands"], serde_json::json!([]), "{doc}");
    assert!(r.stderr.contains("no package is missing"), "{}", r.stderr);
}

#[test]
fn fix_that_cannot_install_says_why_and_still_exits_4() {
    // No package manager on this PATH (nor sudo): whoever runs the test,
    // nothing can be installed, and nothing is.
    let dir = tempfile::tempdir().unwrap();
    let bin = ovmf_path(dir.path(), false);
    let r = snp(
        dir.path(),
        Some(&bin),
        &["doctor", "ovmf", "--fix", "--json"],
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["ready"], false, "{doc}");
    assert_eq!(doc["fix"]["packages"], serde_json::json!(["acpica-tools"]));
    let error = doc["fix"]["error"].as_str().unwrap();
    assert!(error.contains("on PATH"), "{error}");
    assert!(error.contains("install -y acpica-tools"), "{error}");
    assert_eq!(doc["fix"]["commands"], serde_json::json!([]), "nothing ran");
    let iasl = check(&doc, "iasl");
    assert_eq!(iasl["status"], "missing");
}

#[test]
fn fix_is_for_the_build_checks_only() {
    let dir = tempfile::tempdir().unwrap();
    let r = snp(dir.path(), None, &["doctor", "--host", "--fix"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--fix"), "{}", r.stderr);
}

/// The fixture pins' tools are installed by `.ci/install-deps` on a fresh
/// machine: each one's Debian package is one the default pins' doctor
/// installs (`doctor --fix` in that script), one of Debian's essential
/// packages, or in the script's own list. A tool added to the fixtures
/// that none of these brings fails here, not on the next fresh machine.
#[test]
fn the_install_script_brings_every_tool_the_fixture_pins_name() {
    use snp_build::host::{Distro, PackageFormat};
    use snp_build::stage::Registry;

    let dir = tempfile::tempdir().unwrap();
    let fx = xtask::fixtures::create(&dir.path().join("upstream"), xtask::fixtures::Size::Small)
        .unwrap();
    let registry = Registry::standard();
    let packages = |pins: &Path, format: PackageFormat| -> Vec<String> {
        let stack = snp_build::commands::load(&registry, Some(pins)).unwrap();
        stack
            .components()
            .filter(|c| c.source().is_some())
            .flat_map(|c| c.needs(format).tools)
            .map(|r| Distro::Debian.package(r.spec().unwrap()).to_string())
            .collect()
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let default = packages(&root.join("stable-commits.toml"), PackageFormat::Deb);
    let script = std::fs::read_to_string(root.join(".ci/install-deps")).unwrap();
    assert!(
        script
            .lines()
            .any(|l| l.trim() == "cargo run --locked -- doctor --fix --config stable-commits.toml"),
        ".ci/install-deps runs the doctor's fix on the default pins"
    );
    let listed = script
        .split_once("packages=(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(list, _)| list.split_whitespace().collect::<Vec<_>>())
        .expect("a packages=(...) list in .ci/install-deps");
    // Debian's Essential packages are on every Debian system.
    let essential = ["bash", "dpkg"];
    for format in [PackageFormat::Deb, PackageFormat::Rpm] {
        for package in packages(&fx.pin_file, format) {
            assert!(
                default.contains(&package)
                    || essential.contains(&package.as_str())
                    || listed.contains(&package.as_str()),
                "the fixture pins need Debian's {package} ({format:?}), which neither the default pins' doctor --fix nor .ci/install-deps installs"
            );
        }
    }
}

#[test]
fn fixture_pins_pass_on_a_machine_with_the_ci_packages() {
    let dir = tempfile::tempdir().unwrap();
    let fx = xtask::fixtures::create(&dir.path().join("upstream"), xtask::fixtures::Size::Small)
        .unwrap();
    let pins = fx.pin_file.display().to_string();
    let r = snp(
        dir.path(),
        None,
        &["doctor", "--config", &pins, "--work-dir", "build", "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["command"], "doctor");
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["ready"], true);
    let checks: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    // (nasm is not among them: the fixture edk2, like edk2, needs it for
    // X64, and OVMF's one tool list is also its fingerprint's; nor meson and
    // ninja: the fixture QEMU is a meson project built by ninja.)
    for only_real in ["iasl", "flex", "pahole", "debhelper"] {
        assert!(!checks.contains(&only_real), "{only_real} in {checks:?}");
    }
    for name in [
        "gcc",
        "make",
        "meson",
        "ninja",
        "kernel-host base config",
        "cores",
        "memory",
    ] {
        assert!(checks.contains(&name), "{name} not in {checks:?}");
    }
    assert!(
        checks.iter().any(|c| c.starts_with("disk space")),
        "{checks:?}"
    );
    assert!(
        r.stderr
            .contains("everything the selected stages need is here")
    );
}

#[test]
fn an_unknown_tool_is_a_config_error_with_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[ovmf]\nurl = \"file:///u\"\nbranch = \"b\"\ntools = [\"gcc\", \"nasmm >= 2.15\"]\n",
    )
    .unwrap();
    let r = snp(dir.path(), None, &["doctor", "--config", "p.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for needle in [
        "p.toml:4:17",
        "`ovmf.tools`",
        "unknown tool `nasmm`",
        "help: known tools:",
        "iasl",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
}

// ---------------------------------------------------------------------------
// --host

/// A fake `/` with what `doctor --host` reads.
struct Sysroot {
    vendor: &'static str,
    flags: &'static str,
    /// sev, sev_es, sev_snp; `None`: kvm_amd not loaded.
    params: Option<[&'static str; 3]>,
    dev_sev: bool,
    osrelease: &'static str,
    /// `/var/log/kern.log` (where the ccp driver's firmware line is).
    kern_log: Option<&'static str>,
    /// SYSCFG (MSR 0xc0010010) in a sparse `/dev/cpu/0/msr`.
    syscfg: Option<u64>,
    /// The IOMMU units in `/sys/class/iommu`.
    iommu: &'static [&'static str],
    cmdline: &'static str,
}

/// The offset of SYSCFG in `/dev/cpu/N/msr` (one 8-byte MSR per offset).
const SYSCFG: u64 = 0xc001_0010;

impl Sysroot {
    fn write(&self, root: &Path) {
        let w = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        let cpu = |n: u32| {
            format!(
                "processor\t: {n}\nvendor_id\t: {}\nmodel name\t: Some CPU\nflags\t\t: fpu vme de pse {}\n\n",
                self.vendor, self.flags
            )
        };
        w("proc/cpuinfo", &format!("{}{}", cpu(0), cpu(1)));
        w(
            "proc/sys/kernel/osrelease",
            &format!("{}\n", self.osrelease),
        );
        if let Some(values) = self.params {
            for (name, v) in ["sev", "sev_es", "sev_snp"].iter().zip(values) {
                w(
                    &format!("sys/module/kvm_amd/parameters/{name}"),
                    &format!("{v}\n"),
                );
            }
        }
        if self.dev_sev {
            w("dev/sev", "");
        }
        if let Some(log) = self.kern_log {
            w("var/log/kern.log", log);
        }
        if let Some(value) = self.syscfg {
            write_msr(root, value);
        }
        for unit in self.iommu {
            std::fs::create_dir_all(root.join("sys/class/iommu").join(unit)).unwrap();
        }
        w("proc/cmdline", &format!("{}\n", self.cmdline));
    }
}

/// `/dev/cpu/0/msr` as the msr driver reads it: SYSCFG's 8 bytes at
/// offset 0xc0010010 (a sparse file).
fn write_msr(root: &Path, syscfg: u64) {
    use std::os::unix::fs::FileExt;
    let p = root.join("dev/cpu/0/msr");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&p).unwrap();
    f.write_all_at(&syscfg.to_le_bytes(), SYSCFG).unwrap();
}

const SNP_READY: Sysroot = Sysroot {
    vendor: "AuthenticAMD",
    flags: "svm sme sev sev_es sev_snp",
    params: Some(["Y", "Y", "Y"]),
    dev_sev: true,
    osrelease: "6.11.0-snp-host-1a2b3c4",
    kern_log: Some(
        "Jan  1 00:00:05 host kernel: [    5.2] ccp 0000:a9:00.5: SEV API:1.55 build:21\n\
         Jan  1 00:00:05 host kernel: [    5.3] ccp 0000:a9:00.5: SEV-SNP API:1.58 build:5\n",
    ),
    // What AMDSEV's README shows `rdmsr 0xc0010010` print: bit 23 set.
    syscfg: Some(0x3f4_0000),
    iommu: &["ivhd0", "ivhd1"],
    cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.11.0-snp-host-1a2b3c4 root=UUID=1 ro quiet",
};

const SEV_ONLY: Sysroot = Sysroot {
    vendor: "AuthenticAMD",
    flags: "svm sme sev sev_es",
    params: Some(["Y", "Y", "N"]),
    dev_sev: true,
    osrelease: "6.8.0-45-generic",
    kern_log: None,
    syscfg: None,
    iommu: &["ivhd0"],
    cmdline: "ro quiet",
};

const NO_AMD: Sysroot = Sysroot {
    vendor: "GenuineIntel",
    flags: "vmx",
    params: None,
    dev_sev: false,
    osrelease: "6.1.0-26-amd64",
    kern_log: None,
    syscfg: None,
    iommu: &[],
    cmdline: "ro quiet",
};

fn host(tree: &Sysroot, extra: &[&str]) -> Run {
    host_with(tree, extra, |_| {})
}

/// `host`, with more files written into the sysroot by `add`.
fn host_with(tree: &Sysroot, extra: &[&str], add: impl Fn(&Path)) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    tree.write(&root);
    add(&root);
    let root = root.display().to_string();
    let mut args = vec!["doctor", "--host", "--sysroot", &root];
    args.extend(extra);
    snp(dir.path(), None, &args)
}

#[test]
fn host_ready_for_snp() {
    let r = host(&SNP_READY, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("ready to run SEV-SNP guests"),
        "{}",
        r.stderr
    );
    assert!(
        r.row("/sys/module/kvm_amd/parameters")
            .contains("sev=Y sev_es=Y sev_snp=Y")
    );
    assert!(
        r.row("/proc/sys/kernel/osrelease")
            .contains("6.11.0-snp-host-1a2b3c4")
    );
    let doc = host(&SNP_READY, &["--json"]).json();
    assert_eq!(doc["ready"], true);
    // Every line ok, but those saying no release and no libvirt are
    // installed (which do not block: the host itself is ready).
    for c in doc["checks"].as_array().unwrap() {
        let expected = if c["check"] == "installed release" || c["check"] == "libvirt" {
            "info"
        } else {
            "ok"
        };
        assert_eq!(c["status"], expected, "{c}");
    }
    assert!(r.row("installed release").contains("none"), "{}", r.stderr);
}

#[test]
fn host_with_sev_only_is_told_bios_kvm_conf_and_kernel() {
    let r = host(&SEV_ONLY, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not ready"), "{}", r.stderr);
    assert!(
        r.row("/proc/cpuinfo flags").contains("no sev_snp"),
        "{}",
        r.stderr
    );
    assert!(
        r.row("/sys/module/kvm_amd/parameters")
            .contains("sev_snp=N")
    );
    assert!(r.row("/proc/sys/kernel/osrelease").contains("too old"));
    assert!(r.row("/dev/sev").contains(" ok "), "{}", r.stderr);
    for advice in [
        "BIOS",
        "SEV-SNP Support",
        "options kvm_amd sev-snp=1 sev=1 sev-es=1",
        "/etc/modprobe.d/",
        "modprobe kvm_amd",
        "6.11",
        "reboot",
    ] {
        assert!(r.stderr.contains(advice), "{advice}: {}", r.stderr);
    }
}

#[test]
fn host_without_an_amd_cpu_cannot_run_snp() {
    let r = host(&NO_AMD, &["--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("GenuineIntel"), "{}", r.stderr);
    assert!(r.stderr.contains("needs an AMD EPYC CPU"), "{}", r.stderr);
    // Nothing in the BIOS or kvm.conf helps: those checks are skipped.
    assert!(!r.stderr.contains("kvm_amd/parameters"), "{}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["exit_code"], 1);
    // The same top level as a ready host's document.
    assert_eq!(doc["ready"], false, "{doc}");
    let cpu = doc["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks at the top level: {doc}"))
        .iter()
        .find(|c| c["found"].as_str().unwrap_or("").contains("GenuineIntel"))
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(cpu["status"], "failed", "{cpu}");
    let ready = host(&SNP_READY, &["--json"]).json();
    for key in ["ready", "checks"] {
        assert!(ready.get(key).is_some() && doc.get(key).is_some(), "{key}");
    }
}

#[test]
fn host_release_qemu_and_ovmf_minimums() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("snp-release-2025-01-01");
    let qemu = release.join("usr/local/bin/qemu-system-x86_64");
    script(
        &qemu,
        "echo 'QEMU emulator version 9.0.2 (Debian 1:9.0.2+ds-1)'",
    );
    let rel = release.display().to_string();
    let r = host(&SNP_READY, &["--release", &rel]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let q = r.row(&format!("{} --version", qemu.display()));
    assert!(
        q.contains("too old") && q.contains("9.0.2") && q.contains("9.1"),
        "{q}"
    );
    assert!(
        r.stderr.contains("OVMF.fd") && r.stderr.contains("absent"),
        "{}",
        r.stderr
    );

    script(&qemu, "echo 'QEMU emulator version 9.1.0 (v9.1.0-snp)'");
    let fd = release.join("usr/local/share/qemu/OVMF.fd");
    std::fs::create_dir_all(fd.parent().unwrap()).unwrap();
    std::fs::write(&fd, "firmware").unwrap();
    let r = host(&SNP_READY, &["--release", &rel]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = r.row(&fd.display().to_string());
    assert!(o.contains("unverified"), "{o}");
    assert!(r.stderr.contains("could not be verified"), "{}", r.stderr);

    std::fs::write(
        release.join("manifest.json"),
        manifest(Some("tag edk2-stable202402"), None),
    )
    .unwrap();
    let r = host(&SNP_READY, &["--release", &rel]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.row(&fd.display().to_string())
            .contains("edk2-stable202402")
    );
}

/// A release's `manifest.json` (the published schema's shape) whose OVMF
/// source has the pin `ovmf_pin` and whose host kernel is `host_kernel`.
fn manifest(ovmf_pin: Option<&str>, host_kernel: Option<&str>) -> String {
    let source = |pin: &str| {
        serde_json::json!({
            "url": "file:///srv/x.git", "pin": pin, "sha": "a".repeat(40),
            "short_sha": "aaaaaaaaaaaa", "submodules": {}, "patched_head": null,
            "patch_series_sha256": null, "patches": []
        })
    };
    let mut sources = serde_json::Map::new();
    if let Some(pin) = ovmf_pin {
        sources.insert("ovmf".into(), source(pin));
    }
    let mut kernels = serde_json::Map::new();
    if let Some(kr) = host_kernel {
        kernels.insert(
            "host".into(),
            serde_json::json!({
                "release": kr, "localversion": null, "package_format": "deb",
                "base_config": { "setting": "defconfig", "fragments": [], "sha256": "b" },
                "config_edits": { "set_str": {}, "set_val": {}, "enable": [], "disable": [],
                                  "module": [], "allow_dropped": [] },
                "verification": { "checked": 0, "failures": [], "warnings": [] },
                "image": null
            }),
        );
    }
    serde_json::json!({
        "schema_version": 1, "snp_build_version": "0.1.0",
        "release": "snp-release-2025-01-01", "date": "2025-01-01", "source_date_epoch": 0,
        "build_host": { "distro": null, "id": null, "id_like": null, "gcc": "12",
                        "package_format": "deb" },
        "sources": sources, "measurement": null, "artifacts": [],
        "qemu": null, "ovmf": null, "kernels": kernels
    })
    .to_string()
}

/// The manifest's `measurement` in `mode` (only what the doctor reads is
/// meaningful).
fn measurement(mode: &str) -> serde_json::Value {
    serde_json::json!({
        "digest": "a".repeat(96), "algorithm": "SHA-384", "mode": "snp",
        "firmware": { "path": "usr/local/share/qemu/OVMF.fd", "sha256": "b".repeat(64),
                      "size": 4096, "sev_es_reset_eip": "0xffffe000",
                      "sev_metadata_sections": [], "kernel_hashes_table": null },
        "vcpus": 4, "vcpu_type": "EPYC-v4", "guest_features": "0x1", "vmm_type": "QEMU",
        "kernel_hashes": null, "vmsa_mode": mode, "calculator": "test",
        "sev_snp_measure_args": [], "sev_snp_measure": "test", "launch": "test",
        "vmsa_mode_reason": "test", "measurements_file": "MEASUREMENTS", "shapes": []
    })
}

/// The installed release's VMSA mode against the running kernel: 6.11
/// (SNP_READY) gives init2; a legacy release there fails with the fix.
#[test]
fn host_release_vmsa_mode_must_be_what_the_running_kernel_gives() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("snp-release-2025-01-01");
    script(
        &release.join("usr/local/bin/qemu-system-x86_64"),
        "echo 'QEMU emulator version 9.1.0 (v9.1.0-snp)'",
    );
    let rel = release.display().to_string();
    for (mode, ok) in [("init2", true), ("legacy", false)] {
        let mut m: serde_json::Value = serde_json::from_str(&manifest(None, None)).unwrap();
        m["measurement"] = measurement(mode);
        std::fs::write(release.join("manifest.json"), m.to_string()).unwrap();
        let r = host(&SNP_READY, &["--release", &rel]);
        let row = r.row("release VMSA mode");
        assert!(row.contains(&format!("{mode} (MEASUREMENTS)")), "{row}");
        assert!(row.contains("gives: init2"), "{row}");
        if ok {
            assert!(row.contains(" ok "), "{row}");
        } else {
            assert!(row.contains("failed"), "{row}");
            assert_eq!(r.code, 1, "{}", r.stderr);
            assert!(
                r.stderr.contains("--vmsa-mode init2") && r.stderr.contains("snp-build install"),
                "{}",
                r.stderr
            );
        }
    }
}

#[test]
fn host_check_takes_no_components() {
    let dir = tempfile::tempdir().unwrap();
    let r = snp(dir.path(), None, &["doctor", "--host", "qemu"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("takes no components"), "{}", r.stderr);
}

/// `doctor --host --release DIR` checks that the release's host kernel can
/// boot: installed, its initramfs there, a boot loader entry naming it;
/// each missing thing with the command that makes it.
#[test]
fn host_release_kernel_must_be_bootable() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("snp-release-2025-01-01");
    script(
        &release.join("usr/local/bin/qemu-system-x86_64"),
        "echo 'QEMU emulator version 9.1.0 (v9.1.0-snp)'",
    );
    let fd = release.join("usr/local/share/qemu/OVMF.fd");
    std::fs::create_dir_all(fd.parent().unwrap()).unwrap();
    std::fs::write(&fd, "firmware").unwrap();
    let kr = "6.11.0-snp-host-9f8e7d6";
    std::fs::write(release.join("manifest.json"), manifest(None, Some(kr))).unwrap();
    let rel = release.display().to_string();

    // Not installed: install it.
    let r = host(&SNP_READY, &["--release", &rel]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let row = r.row(&format!("SNP host kernel {kr}"));
    assert!(
        row.contains("missing") && row.contains("no /boot/vmlinuz-"),
        "{row}"
    );
    assert!(r.stderr.contains("snp-build install"), "{}", r.stderr);

    // Installed without initramfs or boot entry: both named, with fixes.
    // The kernel package's files, as dpkg -i leaves them.
    let installed = |root: &Path| {
        write_file(root, &format!("boot/vmlinuz-{kr}"), "kernel");
        write_file(
            root,
            &format!("boot/config-{kr}"),
            "CONFIG_BLK_DEV_INITRD=y\n",
        );
        write_file(root, "etc/os-release", "ID=debian\n");
    };
    let r = host_with(&SNP_READY, &["--release", &rel], |root| {
        installed(root);
        write_file(
            root,
            "boot/grub/grub.cfg",
            "menuentry 'Debian' { linux /boot/vmlinuz-6.1.0-26-amd64 }\n",
        );
    });
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.row(&format!("initramfs for {kr}")).contains("missing"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("update-initramfs -c -k {kr}")),
        "{}",
        r.stderr
    );
    assert!(
        r.row(&format!("boot loader entry for {kr}"))
            .contains("missing"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("update-grub"), "{}", r.stderr);

    // Both there: ready.
    let r = host_with(&SNP_READY, &["--release", &rel], |root| {
        installed(root);
        write_file(root, &format!("boot/initrd.img-{kr}"), "initrd");
        write_file(
            root,
            "boot/grub/grub.cfg",
            &format!("linux /boot/vmlinuz-{kr} root=UUID=1\n"),
        );
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// The check called `name` in a `doctor --host --json` run's document.
fn host_check(r: &Run, name: &str) -> Value {
    check(&r.json(), name).clone()
}

/// AMDSEV's minimum SEV firmware, 1.51, against the ccp driver's line in
/// the kernel log; without one, the line says how to see it and does not
/// block.
#[test]
fn host_sev_firmware_api_is_1_51_or_later() {
    let r = host(&SNP_READY, &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let fw = host_check(&r, "SEV firmware");
    assert_eq!(fw["status"], "ok", "{fw}");
    assert_eq!(
        fw["found"], "SEV-SNP API 1.58 build 5, in /var/log/kern.log",
        "{fw}"
    );
    assert_eq!(fw["needed"], "API 1.51 or later", "{fw}");

    let old = Sysroot {
        kern_log: Some("ccp 0000:a9:00.5: SEV API:1.49 build:6\n"),
        ..SNP_READY
    };
    let r = host(&old, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let row = r.row("SEV firmware");
    assert!(
        row.contains("too old") && row.contains("SEV API 1.49"),
        "{row}"
    );
    for fix in ["/lib/firmware/amd/", "modprobe ccp", "BIOS update"] {
        assert!(r.stderr.contains(fix), "{fix}: {}", r.stderr);
    }

    // No kernel log under the root: unknown, which does not block.
    let r = host(
        &Sysroot {
            kern_log: None,
            ..SNP_READY
        },
        &["--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let fw = host_check(&r, "SEV firmware");
    assert_eq!(fw["status"], "unverified", "{fw}");
    assert!(
        fw["help"].as_str().unwrap().contains("dmesg | grep"),
        "{fw}"
    );
}

/// SMEE is bit 23 of SYSCFG (MSR 0xc0010010), read where /dev/cpu/0/msr
/// is readable.
#[test]
fn host_smee_is_bit_23_of_syscfg() {
    let name = "/dev/cpu/0/msr 0xc0010010";
    let r = host(&SNP_READY, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.row(name).contains("0x3f40000: SMEE set"),
        "{}",
        r.row(name)
    );

    let r = host(
        &Sysroot {
            syscfg: Some(0x3f4_0000 & !(1 << 23)),
            ..SNP_READY
        },
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.row(name).contains("failed"), "{}", r.row(name));
    assert!(
        r.stderr.contains("CPU Common Options > SMEE: Enable"),
        "{}",
        r.stderr
    );

    // No msr module (no device file): unverified, with the fix.
    let r = host(
        &Sysroot {
            syscfg: None,
            ..SNP_READY
        },
        &["--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let smee = host_check(&r, name);
    assert_eq!(smee["status"], "unverified", "{smee}");
    assert!(
        smee["help"].as_str().unwrap().contains("modprobe msr"),
        "{smee}"
    );
}

/// SNP needs an IOMMU, translating: none, or `iommu=pt`, is named with the
/// fix (the BIOS, the kernel command line).
#[test]
fn host_iommu_is_on_and_not_passthrough() {
    let r = host(&SNP_READY, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.row("IOMMU").contains("ivhd0 ivhd1"), "{}", r.row("IOMMU"));

    let r = host(
        &Sysroot {
            iommu: &[],
            ..SNP_READY
        },
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.row("IOMMU").contains("none in /sys/class/iommu"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("enable it in the BIOS"), "{}", r.stderr);

    let r = host(
        &Sysroot {
            cmdline: "BOOT_IMAGE=/boot/vmlinuz root=UUID=1 ro iommu=pt",
            ..SNP_READY
        },
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.row("IOMMU").contains("iommu=pt"), "{}", r.row("IOMMU"));
    for fix in ["take `iommu=pt` off", "/etc/default/grub", "reboot"] {
        assert!(r.stderr.contains(fix), "{fix}: {}", r.stderr);
    }
}

/// A dpkg status file with libvirt's daemon package at `version`.
fn dpkg_status(version: &str) -> String {
    format!(
        "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\n\n\
         Package: libvirt-daemon\nStatus: install ok installed\nPriority: optional\nVersion: {version}\n"
    )
}

/// libvirt, when installed, is 10.5.0 or later (its version from dpkg
/// under a sysroot).
#[test]
fn host_libvirt_is_10_5_or_later_when_installed() {
    let r = host(&SNP_READY, &[]);
    assert!(r.row("libvirt").contains("not installed"), "{}", r.stderr);

    let installed = |version: &'static str| {
        move |root: &Path| {
            write_file(root, "usr/sbin/libvirtd", "");
            write_file(root, "var/lib/dpkg/status", &dpkg_status(version));
        }
    };
    let r = host_with(&SNP_READY, &[], installed("10.0.0-2ubuntu8"));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let row = r.row("libvirt");
    assert!(
        row.contains("too old") && row.contains("10.0.0") && row.contains("10.5.0 or later"),
        "{row}"
    );
    assert!(r.stderr.contains("install a newer one"), "{}", r.stderr);

    let r = host_with(&SNP_READY, &["--json"], installed("1:10.6.0-1"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let libvirt = host_check(&r, "libvirt");
    assert_eq!(libvirt["status"], "ok", "{libvirt}");
    assert_eq!(
        libvirt["found"], "10.6.0 (dpkg: libvirt-daemon 1:10.6.0-1)",
        "{libvirt}"
    );

    // Installed, its version nowhere to read: unverified, not blocking.
    let r = host_with(&SNP_READY, &["--json"], |root| {
        write_file(root, "usr/sbin/virtqemud", "");
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    let libvirt = host_check(&r, "libvirt");
    assert_eq!(libvirt["status"], "unverified", "{libvirt}");
    assert!(
        libvirt["help"]
            .as_str()
            .unwrap()
            .contains("/usr/sbin/virtqemud --version"),
        "{libvirt}"
    );
}
