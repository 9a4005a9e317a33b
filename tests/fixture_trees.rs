//! The fixture upstreams (`xtask::fixtures`) behave like the real trees
//! through the interface snp-build uses: each fake tree is driven here by
//! hand, with the same commands the tool runs (the ones AMD's build.sh
//! runs: clone, configure, make, the kernel's scripts/config and bindeb-pkg).
//!
//! Needs git, make, gcc, python3, dpkg-deb and rpmbuild (Debian package
//! `rpm`): a missing tool fails the test with a message, never skips it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run_fails, run_succeeds};
use xtask::fixtures::{self, Fixtures, Size};

#[test]
fn fixture_trees_behave_like_the_real_ones() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let fx = fixtures::create(&tmp.path().join("upstream"), Size::Small).expect("fixtures");
    check_pin_file(&fx);
    // The three trees are independent: drive them side by side.
    std::thread::scope(|s| {
        let kernel = s.spawn(|| kernel(&fx, &tmp.path().join("kernel")));
        let qemu = s.spawn(|| qemu(&fx, &tmp.path().join("qemu")));
        let ovmf = s.spawn(|| edk2(&fx, &tmp.path().join("ovmf")));
        for (name, handle) in [("kernel", kernel), ("qemu", qemu), ("ovmf", ovmf)] {
            if let Err(panic) = handle.join() {
                eprintln!("{name} checks failed");
                std::panic::resume_unwind(panic);
            }
        }
    });
}

#[test]
fn commit_file_moves_a_branch() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let fx = fixtures::create(tmp.path(), Size::Small).expect("fixtures");
    let before = fixtures::rev_parse(&fx.qemu, "snp-latest").unwrap();
    let after = fixtures::commit_file(&fx.qemu, "snp-latest", "NEWS", b"moved\n", "upstream moved")
        .unwrap();
    assert_ne!(before, after);
    assert_eq!(fixtures::rev_parse(&fx.qemu, "snp-latest").unwrap(), after);
    let parent = fixtures::rev_parse(&fx.qemu, &format!("{after}^")).unwrap();
    assert_eq!(parent, before, "the new commit sits on top of the old head");
}

fn check_pin_file(fx: &Fixtures) {
    let text = fs::read_to_string(&fx.pin_file).unwrap();
    assert!(text.starts_with(fixtures::PIN_FILE_HEADER), "{text}");
    let pins: toml::Table = toml::from_str(&text).expect("pin file is TOML");
    assert_eq!(
        pins["kernel"]["base-config"],
        toml::Value::from(vec!["defconfig", "configs/snp-{kernel}.config"])
    );
    for (table, repo, branch) in [
        (&pins["kernel"]["host"], &fx.linux, "snp-host-latest"),
        (&pins["kernel"]["guest"], &fx.linux, "snp-guest-latest"),
        (&pins["qemu"], &fx.qemu, "snp-latest"),
        (&pins["ovmf"], &fx.ovmf, "snp-latest"),
    ] {
        let url = table["url"].as_str().unwrap();
        assert_eq!(url, format!("file://{}", repo.display()));
        assert!(repo.is_absolute() && repo.join("HEAD").is_file(), "{url}");
        assert_eq!(table["branch"].as_str(), Some(branch));
        fixtures::rev_parse(repo, branch).expect("branch exists");
        let config = git_out(&["config", "uploadpack.allowAnySHA1InWant"], repo);
        assert_eq!(config.trim(), "true");
    }
    // The branches share a base history that carries megabytes of blobs.
    let base = git_out(
        &["merge-base", "snp-host-latest", "snp-guest-latest"],
        &fx.linux,
    );
    let count = git_out(&["rev-list", "--count", base.trim()], &fx.linux);
    assert!(
        count.trim().parse::<u32>().unwrap() >= 24,
        "base commits: {count}"
    );
    let size = dir_size(&fx.linux.join("objects"));
    assert!(
        (4_000_000..8_000_000).contains(&size),
        "linux.git objects: {size} bytes"
    );
}

// ------------------------------------------------------------------ kernel

fn kernel(fx: &Fixtures, work: &Path) {
    fs::create_dir_all(work).unwrap();
    let tree = work.join("linux");
    run_succeeds(
        git(&[
            "clone",
            "-q",
            "--single-branch",
            "--branch",
            "snp-host-latest",
        ])
        .arg(fx.url(&fx.linux))
        .arg(&tree),
    );
    let sha = git_out(&["rev-parse", "--short=7", "HEAD"], &tree)
        .trim()
        .to_string();
    assert_eq!(
        run_succeeds(make(&tree, &["kernelversion"])).trim(),
        "6.1.0"
    );

    // Like Linux: no .config, no build.
    let out = run_fails(make(&tree, &["-j2"]));
    assert!(
        out.contains("*** Configuration file \".config\" not found!"),
        "{out}"
    );

    // `--enable DEBUG_INFO` alone is silently undone (Linux 5.18+).
    run_succeeds(make(&tree, &["defconfig"]));
    run_succeeds(config(
        &tree,
        &["--enable", "DEBUG_INFO", "--enable", "NOT_A_SYMBOL"],
    ));
    run_succeeds(make(&tree, &["olddefconfig"]));
    assert_eq!(state(&tree, "DEBUG_INFO"), "undef");
    assert_eq!(
        state(&tree, "NOT_A_SYMBOL"),
        "undef",
        "unknown symbols are dropped"
    );

    // The real trap: KVM_AMD=y with CRYPTO_DEV_CCP_DD=m loses SEV.
    run_succeeds(make(&tree, &["defconfig"]));
    assert_eq!(state(&tree, "KVM_AMD_SEV"), "undef", "defconfig has no KVM");
    run_succeeds(config(&tree, &["-m", "KVM", "-m", "KVM_AMD"]));
    run_succeeds(make(&tree, &["olddefconfig"]));
    assert_eq!(state(&tree, "KVM_AMD_SEV"), "y");
    run_succeeds(config(
        &tree,
        &["-e", "KVM", "-e", "KVM_AMD", "-m", "CRYPTO_DEV_CCP_DD"],
    ));
    run_succeeds(make(&tree, &["olddefconfig"]));
    assert_ne!(state(&tree, "KVM_AMD_SEV"), "y");

    // From tinyconfig the default edits lose SEV; KVM_AMD_SEV's dependency
    // set (64BIT ... KVM_AMD as modules, xtask/src/real.rs) brings it back.
    let edits = default_edits(&sha);
    run_succeeds(make(&tree, &["tinyconfig"]));
    assert_eq!(
        state(&tree, "64BIT"),
        "n",
        "tinyconfig on ARCH=x86 is 32-bit"
    );
    run_succeeds(config(&tree, &edits.args));
    run_succeeds(make(&tree, &["olddefconfig"]));
    assert_ne!(state(&tree, "KVM_AMD_SEV"), "y");
    run_succeeds(config(
        &tree,
        &[
            "-e",
            "64BIT",
            "-e",
            "HIGH_RES_TIMERS",
            "-e",
            "VIRTUALIZATION",
            "-e",
            "PCI",
            "-e",
            "MODULES",
            "-e",
            "CRYPTO",
            "-e",
            "CRYPTO_DEV_CCP",
            "-e",
            "CRYPTO_DEV_SP_PSP",
            "-m",
            "KVM",
            "-m",
            "KVM_AMD",
        ],
    ));
    run_succeeds(make(&tree, &["olddefconfig"]));
    assert_eq!(state(&tree, "KVM_AMD_SEV"), "y");

    // defconfig + every default edit: as on Linux 6.1, SEV and the
    // switchdev/DCB options are dropped (defconfig has no KVM, DCB or
    // switchdev)...
    run_succeeds(make(&tree, &["defconfig"]));
    run_succeeds(config(&tree, &edits.args));
    run_succeeds(make(&tree, &["olddefconfig"]));
    for option in ["KVM_AMD_SEV", "SEV_GUEST", "MLX5_ESWITCH", "MLX4_EN_DCB"] {
        assert_eq!(state(&tree, option), "undef", "{option}");
    }
    // ...and with snp-build's fragment merged first, all survive.
    run_succeeds(make(&tree, &["defconfig"]));
    let fragment =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/snp-host.config"))
            .unwrap();
    let mut merged = fs::read_to_string(tree.join(".config")).unwrap();
    merged.push_str(&fragment);
    fs::write(tree.join(".config"), merged).unwrap();
    run_succeeds(make(&tree, &["olddefconfig"]));
    run_succeeds(config(&tree, &edits.args));
    run_succeeds(make(&tree, &["olddefconfig"]));
    let cfg = read_config(&tree.join(".config"));
    for (name, want) in &edits.expect {
        let got = cfg.get(name).map(String::as_str);
        let ok = match want.as_str() {
            "n" => matches!(got, None | Some("n") | Some("\"\"")),
            want => got == Some(want),
        };
        assert!(ok, "CONFIG_{name}: wanted {want}, .config has {got:?}");
    }
    assert_eq!(cfg.get("DEBUG_INFO").map(String::as_str), Some("y"));
    // Linux 6.1 in an untagged git tree, LOCALVERSION unset: a "+" follows.
    let release = format!("6.1.0-snp-host-{sha}+");
    assert_eq!(state(&tree, "LOCALVERSION"), format!("-snp-host-{sha}"));

    // Build with a compiler launcher, as CC="ccache gcc" would be.
    let launcher = work.join("launcher");
    let launcher_log = work.join("launcher.log");
    fs::write(
        &launcher,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec \"$@\"\n",
            launcher_log.display()
        ),
    )
    .unwrap();
    chmod_x(&launcher);
    let cc = format!("CC={} gcc", launcher.display());
    run_succeeds(make(&tree, &["-j2", &cc]));
    assert!(tree.join("vmlinux").is_file() && tree.join("arch/x86/boot/bzImage").is_file());
    assert!(tree.join("arch/x86/kvm/kvm-amd.ko").is_file());
    let launched = fs::read_to_string(&launcher_log).unwrap();
    assert!(
        launched.lines().count() > 10,
        "launcher used for every compile: {launched}"
    );
    assert_eq!(read_trimmed(&tree.join(".version")), "1");
    assert_eq!(
        read_trimmed(&tree.join("include/config/kernel.release")),
        release
    );
    run_succeeds(make(&tree, &["-j2", &cc]));
    assert_eq!(
        read_trimmed(&tree.join(".version")),
        "1",
        "nothing changed: no relink"
    );

    // bindeb-pkg: four packages in the parent directory, Linux 6.1 names.
    run_succeeds(make(&tree, &["-j2", &cc, "bindeb-pkg"]));
    let debs = [
        format!("linux-image-{release}_{release}-1_amd64.deb"),
        format!("linux-image-{release}-dbg_{release}-1_amd64.deb"),
        format!("linux-headers-{release}_{release}-1_amd64.deb"),
        format!("linux-libc-dev_{release}-1_amd64.deb"),
    ];
    for deb in &debs {
        let path = work.join(deb);
        assert!(path.is_file(), "{deb} missing; parent has {:?}", list(work));
        let info = run_succeeds(Command::new("dpkg-deb").arg("--info").arg(&path));
        assert!(info.contains(&format!("Version: {release}-1")), "{info}");
    }
    let contents = run_succeeds(
        Command::new("dpkg-deb")
            .arg("--contents")
            .arg(work.join(&debs[0])),
    );
    assert!(
        contents.contains(&format!("./boot/vmlinuz-{release}")),
        "{contents}"
    );
    assert!(
        contents.contains(&format!(
            "./lib/modules/{release}/kernel/arch/x86/kvm/kvm-amd.ko"
        )),
        "{contents}"
    );

    // A second build counts one more in .version, and the packages say so.
    let sched = tree.join("kernel/sched.c");
    let mut src = fs::read_to_string(&sched).unwrap();
    src.push_str("/* second build */\n");
    fs::write(&sched, src).unwrap();
    run_succeeds(make(&tree, &["-j2", &cc]));
    assert_eq!(read_trimmed(&tree.join(".version")), "2");
    run_succeeds(make(&tree, &["-j2", &cc, "bindeb-pkg"]));
    assert!(
        work.join(format!("linux-image-{release}_{release}-2_amd64.deb"))
            .is_file()
    );

    // binrpm-pkg: rpms under rpmbuild/RPMS/x86_64/ in the tree (Linux 6.3+).
    let rpmbuild = Command::new("rpmbuild").arg("--version").output();
    assert!(
        rpmbuild.is_ok_and(|o| o.status.success()),
        "rpmbuild not found: install the Debian package `rpm` (apt-get install rpm)"
    );
    run_succeeds(make(&tree, &["-j2", &cc, "binrpm-pkg"]));
    let rpm_release = release.replace('-', "_");
    let rpms = tree.join("rpmbuild/RPMS/x86_64");
    let image_rpm = rpms.join(format!("kernel-{rpm_release}-2.x86_64.rpm"));
    assert!(image_rpm.is_file(), "rpms: {:?}", list(&rpms));
    assert!(
        rpms.join(format!("kernel-headers-{rpm_release}-2.x86_64.rpm"))
            .is_file()
    );
    let files = run_succeeds(Command::new("rpm").arg("-qpl").arg(&image_rpm));
    assert!(
        files.contains(&format!("/boot/vmlinuz-{release}")),
        "{files}"
    );

    // A config knob breaks the build, with make's usual error.
    run_succeeds(config(&tree, &["--enable", "FIXTURE_BROKEN"]));
    run_succeeds(make(&tree, &["olddefconfig"]));
    let out = run_fails(make(&tree, &["-j2", &cc]));
    assert!(
        out.contains("#error") && out.contains("kernel/fixture.o] Error 1"),
        "{out}"
    );

    run_succeeds(make(&tree, &["distclean"]));
    for gone in [".config", ".version", "vmlinux", "include/generated"] {
        assert!(!tree.join(gone).exists(), "distclean left {gone}");
    }
}

struct Edits {
    /// One scripts/config call.
    args: Vec<String>,
    /// What .config must say afterwards ("n": not set, absent or "").
    expect: Vec<(String, String)>,
}

/// The `[kernel]` edit list of the default stable-commits.toml.
fn default_edits(sha: &str) -> Edits {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("stable-commits.toml");
    let pins: toml::Table = toml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let kernel = pins["kernel"].as_table().unwrap();
    let mut edits = Edits {
        args: vec![],
        expect: vec![],
    };
    for (key, flag, value) in [
        ("enable", "--enable", "y"),
        ("disable", "--disable", "n"),
        ("module", "--module", "m"),
    ] {
        for name in kernel[key].as_array().unwrap() {
            let name = name.as_str().unwrap();
            edits.args.extend([flag.to_string(), name.to_string()]);
            edits.expect.push((name.to_string(), value.to_string()));
        }
    }
    for (name, value) in kernel["set-str"].as_table().unwrap() {
        let value = value
            .as_str()
            .unwrap()
            .replace("{kernel}", "host")
            .replace("{sha}", sha);
        edits
            .args
            .extend(["--set-str".to_string(), name.clone(), value.clone()]);
        edits.expect.push((name.clone(), format!("\"{value}\"")));
    }
    for (name, value) in kernel["set-val"].as_table().unwrap() {
        let value = value.to_string();
        edits
            .args
            .extend(["--set-val".to_string(), name.clone(), value.clone()]);
        edits.expect.push((name.clone(), value));
    }
    assert!(edits.expect.len() > 40, "edit list: {:?}", edits.expect);
    edits
}

fn read_config(path: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in fs::read_to_string(path).unwrap().lines() {
        if let Some(rest) = line.strip_prefix("# CONFIG_") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                out.insert(name.to_string(), "n".to_string());
            }
        } else if let Some((name, value)) =
            line.strip_prefix("CONFIG_").and_then(|l| l.split_once('='))
        {
            out.insert(name.to_string(), value.to_string());
        }
    }
    out
}

fn config(tree: &Path, args: &[impl AsRef<std::ffi::OsStr>]) -> Command {
    let mut c = Command::new(tree.join("scripts/config"));
    c.current_dir(tree).arg("--file").arg(".config").args(args);
    c
}

fn state(tree: &Path, name: &str) -> String {
    run_succeeds(config(tree, &["--state", name]))
        .trim()
        .to_string()
}

// -------------------------------------------------------------------- qemu

fn qemu(fx: &Fixtures, work: &Path) {
    fs::create_dir_all(work).unwrap();
    let tree = work.join("qemu");
    let prefix = work.join("usr/local");
    run_succeeds(
        git(&["clone", "-q", "--branch", "snp-latest"])
            .arg(fx.url(&fx.qemu))
            .arg(&tree),
    );
    // roms/* submodules stay uninitialised, as build.sh leaves them.
    assert!(
        fs::read_to_string(tree.join(".gitmodules"))
            .unwrap()
            .contains("roms/seabios")
    );

    let out = run_fails(make(&tree, &["-j2"]));
    assert!(
        out.contains("Please call configure before running make"),
        "{out}"
    );
    let out = run_fails(configure(&tree, &["--foo"]));
    assert!(out.contains("ERROR: unknown option --foo"), "{out}");
    let out = run_fails(configure(&tree, &["--target-list=aarch64-softmmu"]));
    assert!(
        out.contains("ERROR: Unknown target name 'aarch64-softmmu'"),
        "{out}"
    );

    let prefix_arg = format!("--prefix={}", prefix.display());
    run_succeeds(configure(
        &tree,
        &[
            prefix_arg.as_str(),
            "--target-list=x86_64-softmmu",
            "--enable-fixture-broken",
        ],
    ));
    let out = run_fails(make(&tree, &["-j2"]));
    assert!(out.contains("#error"), "{out}");

    run_succeeds(configure(
        &tree,
        &[
            prefix_arg.as_str(),
            "--target-list=x86_64-softmmu",
            "--disable-docs",
        ],
    ));
    run_succeeds(make(&tree, &["-j2"]));
    run_succeeds(make(&tree, &["install"]));
    let version =
        run_succeeds(Command::new(prefix.join("bin/qemu-system-x86_64")).arg("--version"));
    let mut lines = version.lines();
    assert_eq!(
        lines.next(),
        Some("QEMU emulator version 9.1.0 (snp-build fixture)")
    );
    assert!(
        lines.next().unwrap().starts_with("Copyright (c) 2003-"),
        "{version}"
    );
    assert!(prefix.join("share/qemu/keymaps/en-us").is_file());
    assert!(prefix.join("share/qemu/bios-256k.bin").is_file());
}

fn configure(tree: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(tree.join("configure"));
    c.current_dir(tree).args(args).env_remove("CC");
    c
}

// -------------------------------------------------------------------- edk2

const OVMF_BUILD: &[&str] = &[
    "-q",
    "--cmd-len=64436",
    "-DDEBUG_ON_SERIAL_PORT=TRUE",
    "-n",
    "2",
    "-t",
    "GCC5",
    "-a",
    "X64",
    "-p",
    "OvmfPkg/OvmfPkgX64.dsc",
    "-b",
    "DEBUG",
];

fn edk2(fx: &Fixtures, work: &Path) {
    fs::create_dir_all(work).unwrap();
    let tree = work.join("ovmf");
    run_succeeds(
        git(&[
            "-c",
            "protocol.file.allow=always",
            "clone",
            "-q",
            "--recurse-submodules",
            "--branch",
            "snp-latest",
        ])
        .arg(fx.url(&fx.ovmf))
        .arg(&tree),
    );
    assert!(
        tree.join(fixtures::OVMF_SUBMODULE_PATH)
            .join("c/dec/decode.c")
            .is_file()
    );

    // edksetup.sh must be sourced.
    let out = run_fails(Command::new("bash").arg("edksetup.sh").current_dir(&tree));
    assert!(out.contains("must be sourced"), "{out}");

    // BaseTools not built yet: the build fails as edk2's does.
    let out = run_fails(edk2_build(&tree, OVMF_BUILD));
    assert!(
        out.contains("error 7000: Failed to execute command"),
        "{out}"
    );

    run_succeeds(make(&tree, &["-C", "BaseTools"]));
    run_succeeds(edk2_build(&tree, OVMF_BUILD));
    let fv = tree.join("Build/OvmfX64/DEBUG_GCC5/FV");
    let mut images = vec![];
    for name in ["OVMF_CODE.fd", "OVMF_VARS.fd", "OVMF.fd"] {
        let data = fs::read(fv.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&data[40..44], b"_FVH", "{name}");
        assert!(
            (64 * 1024..4 * 1024 * 1024).contains(&data.len()),
            "{name}: {}",
            data.len()
        );
        images.push(data);
    }
    assert_eq!(
        images[2],
        [images[1].clone(), images[0].clone()].concat(),
        "OVMF = VARS + CODE"
    );

    // Same inputs, same bytes; another define, other bytes.
    run_succeeds(edk2_build(&tree, OVMF_BUILD));
    assert_eq!(fs::read(fv.join("OVMF.fd")).unwrap(), images[2]);
    let mut other = OVMF_BUILD.to_vec();
    other.push("-DSECURE_BOOT_ENABLE=FALSE");
    run_succeeds(edk2_build(&tree, &other));
    assert_ne!(fs::read(fv.join("OVMF.fd")).unwrap(), images[2]);

    let mut broken = OVMF_BUILD.to_vec();
    broken.extend(["-D", "FIXTURE_BROKEN=TRUE"]);
    let out = run_fails(edk2_build(&tree, &broken));
    assert!(
        out.contains("#error") && out.contains("error 7000"),
        "{out}"
    );

    // AmdSevX64 needs OvmfPkg/AmdSev/Grub/grub.efi, which is not in the tree.
    let mut amd = OVMF_BUILD.to_vec();
    amd[10] = "OvmfPkg/AmdSev/AmdSevX64.dsc";
    let out = run_fails(edk2_build(&tree, &amd));
    assert!(
        out.contains("error 000E") && out.contains("Grub/grub.efi"),
        "{out}"
    );
    fs::write(tree.join("OvmfPkg/AmdSev/Grub/grub.efi"), b"").unwrap();
    run_succeeds(edk2_build(&tree, &amd));
    let amd_fd = fs::read(tree.join("Build/AmdSev/DEBUG_GCC5/FV/OVMF.fd")).unwrap();
    assert_eq!(&amd_fd[40..44], b"_FVH");

    let out = run_fails(edk2_build(
        &tree,
        &["-t", "GCC5", "-a", "X64", "-p", "OvmfPkg/Nope.dsc"],
    ));
    assert!(
        out.contains("error 000E") && out.contains("OvmfPkg/Nope.dsc"),
        "{out}"
    );

    // Without the submodule checked out: edk2's "not found in workspace".
    let bare = work.join("no-submodule");
    run_succeeds(
        git(&["clone", "-q", "--branch", "snp-latest"])
            .arg(fx.url(&fx.ovmf))
            .arg(&bare),
    );
    run_succeeds(make(&bare, &["-C", "BaseTools"]));
    let out = run_fails(edk2_build(&bare, OVMF_BUILD));
    assert!(
        out.contains(": error 000E: File/directory not found in workspace"),
        "{out}"
    );
    assert!(out.contains("BrotliCustomDecompressLib/brotli/c/"), "{out}");
}

/// `source edksetup.sh --reconfig && build ARGS`, the arguments passed as
/// positional parameters of a fixed script, as snp-build does.
fn edk2_build(tree: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("bash");
    c.current_dir(tree)
        .arg("-c")
        .arg("source edksetup.sh --reconfig && build \"$@\"")
        .arg("edk2-build")
        .args(args)
        .env_remove("WORKSPACE")
        .env_remove("EDK_TOOLS_PATH")
        .env_remove("CONF_PATH")
        .env_remove("PACKAGES_PATH");
    c
}

// ----------------------------------------------------------------- helpers

fn git(args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    c
}

fn git_out(args: &[&str], dir: &Path) -> String {
    run_succeeds(git(args).current_dir(dir))
}

fn make(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("make");
    c.current_dir(dir)
        .args(args)
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .env_remove("CC")
        .env_remove("ARCH");
    c
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn chmod_x(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}
