//! `cargo xtask real-sources [--stack amd|upstream] DIR`: Debian's source
//! packages as local git repositories, and a pin file naming them.
//!
//! Each tree is committed (`git add -A -f`: the trees' own `.gitignore`
//! files would drop files the build needs; quilt's `.pc/` removed) as the
//! one commit of `master` of a bare repository, which then gets the
//! stack's names ([`Names`]): AMD's branches, or upstream's tags and
//! branch. What a tree needs beyond Debian's source, with why:
//! - Linux (both stacks): Debian's top-level `.gitignore` ignores the whole
//!   tree; upstream's `/debian/` rule is put back ([`fix_linux_gitignore`]).
//! - QEMU 10 (upstream): its `configure` installs meson (>= 1.5; Debian 12
//!   has 1.0) into its venv only from the wheel upstream's tree carries in
//!   `python/wheels/`, offline; Debian's `+ds` source drops that wheel.
//!   [`restore_qemu_wheels`] puts the version `pythondeps.toml` names back,
//!   from PyPI with pip.

use anyhow::{Context, Result, ensure};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::apt::{Apt, need_tools};
use super::{Stack, check_one_stack, remove};
use crate::fixtures;
use crate::report::{self, run_ok, run_visible, secs};

/// Where the upstream stack's kernel package comes from: Debian 12's
/// security suite carries `linux-source-6.12` (a backport of trixie's).
const UPSTREAM_KERNEL_SUITE: &str = "bookworm-security";

/// What SEV needs to survive `olddefconfig` on a `tinyconfig` base:
/// switched on, and as modules. On Linux 6.1 `KVM_AMD_SEV` depends on
/// `KVM_AMD && CRYPTO_DEV_SP_PSP`, and from tinyconfig those need this
/// whole set, or `olddefconfig` silently drops SEV.
const SEV_DEPS_ENABLE: &[&str] = &[
    "64BIT",
    "HIGH_RES_TIMERS",
    "VIRTUALIZATION",
    "PCI",
    "MODULES",
    "CRYPTO",
    "CRYPTO_DEV_CCP",
    "CRYPTO_DEV_SP_PSP",
];
const SEV_DEPS_MODULE: &[&str] = &["KVM", "KVM_AMD"];

/// Beyond that set: options a tinyconfig base lacks that the default
/// edits need, found by running `make tinyconfig`, the edits and
/// `make olddefconfig` on linux-source-6.1, with why.
const EXTRA_ENABLE: &[(&str, &str)] = &[
    (
        "VIRT_DRIVERS",
        "SEV_GUEST (/dev/sev-guest, attestation) sits in this menu, off in tinyconfig",
    ),
    (
        "CGROUPS",
        "CGROUP_MISC (SEV ASID accounting on the host) depends on it, off in tinyconfig",
    ),
    (
        "SMP",
        "RCU_EXP_CPU_STALL_TIMEOUT (set-val) needs TREE_RCU, which needs SMP; tinyconfig is UP",
    ),
];

/// What Linux 6.12 needs beyond [`EXTRA_ENABLE`], found the same way on
/// linux-source-6.12 (6.12.118): without them `olddefconfig` drops
/// AMD_MEM_ENCRYPT, KVM_AMD_SEV, CRYPTO_DEV_SP_PSP and SEV_GUEST.
const EXTRA_ENABLE_6_12: &[(&str, &str)] = &[
    (
        "ACPI",
        "EFI depends on it (and AMD_IOMMU), off in tinyconfig",
    ),
    ("EFI", "EFI_STUB depends on it"),
    (
        "EFI_STUB",
        "AMD_MEM_ENCRYPT depends on it since 6.2 (SEV-SNP guests boot through the EFI stub); \
         SEV_GUEST and TSM_REPORTS follow AMD_MEM_ENCRYPT",
    ),
    ("IOMMU_SUPPORT", "the menu AMD_IOMMU sits in"),
    (
        "AMD_IOMMU",
        "CRYPTO_DEV_SP_PSP depends on it since 6.9 (SNP's RMP set-up goes through the IOMMU \
         driver), and KVM_AMD_SEV on CRYPTO_DEV_SP_PSP",
    ),
    (
        "PRINTK",
        "a console for the boot check: tinyconfig has no printk",
    ),
    ("TTY", "a console for the boot check"),
    ("SERIAL_8250", "a console for the boot check (ttyS0)"),
    (
        "SERIAL_8250_CONSOLE",
        "a console for the boot check (console=ttyS0)",
    ),
];

/// Why the default list's Mellanox options (every option starting with
/// `MLX`) may be dropped: tinyconfig really cannot have them.
const MLX_DROPPED_WHY: &str = "The Mellanox NIC drivers (every MLX* option of the \
default list) live under NET -> NETDEVICES -> ETHERNET -> NET_VENDOR_MELLANOX; \
tinyconfig has no networking at all (NET is off), and a network stack does not \
belong in a 2-core SEV test kernel. olddefconfig drops them; the build warns.";

/// `cargo xtask real-sources [--stack STACK] DIR`.
pub fn real_sources(dir: &Path, stack: Stack) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    check_one_stack(&dir, stack)?;
    let src = dir.join("debian-src");
    fs::create_dir_all(&src)?;
    need_tools()?;
    let apt = match stack.source_suite() {
        None => Apt::machine()?,
        Some(suite) => Apt::private(&dir.join("apt"), suite, UPSTREAM_KERNEL_SUITE)?,
    };

    let qemu_tree = apt.source(&src, "qemu")?;
    let edk2_tree = apt.source(&src, "edk2")?;
    let linux_tree = linux_tarball(&apt, &src, stack.linux_package())?;

    let qemu_prepare: Option<fn(&Path) -> Result<()>> = match stack {
        Stack::Amd => None,
        Stack::Upstream => Some(restore_qemu_wheels),
    };
    let qemu = import(&qemu_tree, &dir.join("qemu.git"), "qemu", qemu_prepare)?;
    let ovmf = import(&edk2_tree, &dir.join("ovmf.git"), "edk2", None)?;
    let linux = import(
        &linux_tree,
        &dir.join("linux.git"),
        stack.linux_package(),
        Some(fix_linux_gitignore),
    )?;
    let names = Names::of(stack, &qemu, &ovmf, &linux);
    names.apply(&qemu, &ovmf, &linux)?;

    let pins = pin_file(stack, &names, &qemu, &ovmf, &linux)?;
    let pin_path = dir.join(stack.pin_file());
    fs::write(&pin_path, pins).with_context(|| format!("writing {}", pin_path.display()))?;
    println!("{}", pin_path.display());
    Ok(())
}

/// A pin: a branch or a tag.
#[derive(Clone, Debug)]
enum Ref {
    Branch(String),
    Tag(String),
}

impl Ref {
    /// Its line in a pin file.
    fn pin_line(&self) -> String {
        match self {
            Ref::Branch(b) => format!("branch = \"{b}\""),
            Ref::Tag(t) => format!("tag = \"{t}\""),
        }
    }
}

/// The names each repository gets, and what each source pins.
struct Names {
    qemu: Ref,
    ovmf: Ref,
    host: Ref,
    guest: Ref,
    /// The upstream stack's stable branch beside its tag (`linux-6.12.y`).
    linux_branch: Option<String>,
}

impl Names {
    fn of(stack: Stack, qemu: &Imported, ovmf: &Imported, linux: &Imported) -> Names {
        match stack {
            // AMD's layout: one kernel repository with the host and guest
            // branches (the guest branch one commit further, so the two
            // SHAs differ), `snp-latest` for QEMU and OVMF.
            Stack::Amd => Names {
                qemu: Ref::Branch("snp-latest".into()),
                ovmf: Ref::Branch("snp-latest".into()),
                host: Ref::Branch("snp-host-latest".into()),
                guest: Ref::Branch("snp-guest-latest".into()),
                linux_branch: None,
            },
            // Upstream's: QEMU's release tag (`v10.0.13`), edk2's stable
            // tag (`edk2-stable202502`), Linux's stable branch and its
            // release tag; the host kernel pins the branch, the guest the
            // tag (the same commit), so both kinds of pin are built.
            Stack::Upstream => {
                let kernel = upstream_version(&linux.version);
                let series: Vec<&str> = kernel.split('.').take(2).collect();
                let branch = format!("linux-{}.y", series.join("."));
                Names {
                    qemu: Ref::Tag(format!("v{}", upstream_version(&qemu.version))),
                    ovmf: Ref::Tag(format!(
                        "edk2-stable{}",
                        upstream_version(&ovmf.version).replace('.', "")
                    )),
                    host: Ref::Branch(branch.clone()),
                    guest: Ref::Tag(format!("v{kernel}")),
                    linux_branch: Some(branch),
                }
            }
        }
    }

    /// Makes the names in the repositories (again: a rerun moves them to
    /// the current `master`).
    fn apply(&self, qemu: &Imported, ovmf: &Imported, linux: &Imported) -> Result<()> {
        let git = Git::bare(&linux.repo);
        if let Some(branch) = &self.linux_branch {
            git.run(&["branch", "-f", branch, "master"])?;
        }
        for (repo, r) in [
            (&qemu.repo, &self.qemu),
            (&ovmf.repo, &self.ovmf),
            (&linux.repo, &self.host),
        ] {
            name_master(&Git::bare(repo), r)?;
        }
        match &self.guest {
            // The guest branch one commit further, so its SHA differs.
            Ref::Branch(b) => {
                let guest =
                    git.commit_tree_on("master", &format!("{b}: guest branch (real-sources)"))?;
                git.run(&["update-ref", &format!("refs/heads/{b}"), &guest])?;
            }
            r @ Ref::Tag(_) => name_master(&git, r)?,
        }
        Ok(())
    }
}

/// Points a branch (or an annotated tag, as upstream's are) at `master`.
fn name_master(git: &Git, r: &Ref) -> Result<()> {
    match r {
        Ref::Branch(b) => git.run(&["branch", "-f", b, "master"])?,
        Ref::Tag(t) => git.run(&[
            "tag",
            "-f",
            "-a",
            "-m",
            &format!("{t} (Debian's source package, made by real-sources)"),
            t,
            "master",
        ])?,
    };
    Ok(())
}

/// The upstream version in a Debian version: no epoch, no Debian
/// revision, no repack suffix (`1:10.0.13+ds-0+deb13u1` -> `10.0.13`).
fn upstream_version(debian: &str) -> String {
    let v = debian.split_once(':').map_or(debian, |(_, v)| v);
    let v = v.rsplit_once('-').map_or(v, |(v, _)| v);
    v.split(['+', '~']).next().unwrap_or(v).to_string()
}

/// Puts the meson wheel upstream QEMU carries in `python/wheels/` back
/// (Debian's `+ds` source drops it): the version `pythondeps.toml`
/// installs, fetched from PyPI by pip.
fn restore_qemu_wheels(tree: &Path) -> Result<()> {
    let deps = fs::read_to_string(tree.join("pythondeps.toml"))
        .context("reading QEMU's pythondeps.toml")?;
    let version = deps
        .lines()
        .filter(|l| l.trim_start().starts_with("meson ="))
        .find_map(|l| l.split("installed = \"").nth(1)?.split('"').next())
        .context("pythondeps.toml names no meson version to install")?
        .to_string();
    let wheels = tree.join("python/wheels");
    fs::create_dir_all(&wheels)?;
    eprintln!("real-sources: qemu: meson {version} wheel into python/wheels (pip download)");
    run_visible(
        Command::new("python3")
            .args(["-m", "pip", "download", "-q", "--disable-pip-version-check"])
            .args(["--no-deps", "--only-binary=:all:", "--dest"])
            .arg(&wheels)
            .arg(format!("meson=={version}")),
    )
    .context("pip download meson (needs python3-pip and PyPI)")?;
    Ok(())
}

/// The Linux tree from the `package` (`linux-source-6.x`) package's
/// tarball, unpacked into `src/package/`.
fn linux_tarball(apt: &Apt, src: &Path, package: &str) -> Result<PathBuf> {
    let tree = src.join(package);
    if tree.join("Makefile").is_file() {
        eprintln!("real-sources: linux: reusing {}", tree.display());
        return Ok(tree);
    }
    let deb = apt.download(src, package)?;
    let extracted = src.join("linux-source-deb");
    remove(&extracted)?;
    eprintln!("real-sources: unpacking {}", deb.display());
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&extracted))?;
    let tarball = fs::read_dir(extracted.join("usr/src"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.xz"))
        .context("no usr/src/*.tar.xz in the linux-source package")?;
    run_ok(
        Command::new("tar")
            .arg("-xJf")
            .arg(&tarball)
            .current_dir(src),
    )?;
    remove(&extracted)?;
    ensure!(
        tree.join("Makefile").is_file(),
        "{} did not unpack into {}",
        tarball.display(),
        tree.display()
    );
    Ok(tree)
}

/// Debian's top-level `.gitignore` in linux-source ignores the whole tree
/// (its "Debian packaging" block: `/*` then `!/debian/`, in place of
/// upstream's `/debian/` rule): put upstream's rule back, so the tree looks
/// like AMD's and `bindeb-pkg`'s `debian/` stays ignored.
fn fix_linux_gitignore(tree: &Path) -> Result<()> {
    let path = tree.join(".gitignore");
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(());
    };
    let mut kept: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line == "/*" || line == "!/debian/" {
            continue;
        }
        kept.push(line);
    }
    // Drop the block's comment, which now heads nothing.
    if let Some(i) = kept
        .iter()
        .position(|l| l.starts_with("# Debian packaging: ignore everything"))
    {
        let start = if i > 0 && kept[i - 1] == "#" {
            i - 1
        } else {
            i
        };
        let mut end = i + 1;
        while end < kept.len() && kept[end].starts_with('#') {
            end += 1;
        }
        kept.drain(start..end);
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    let mut out = kept.join("\n");
    if !kept.contains(&"/debian/") {
        out.push_str("\n\n#\n# Debian directory (make deb-pkg)\n#\n/debian/");
    }
    out.push('\n');
    fs::write(&path, out)?;
    Ok(())
}

/// What [`import`] made.
struct Imported {
    repo: PathBuf,
    sha: String,
    version: String,
}

/// Commits `tree` as the one commit of `master` in the bare repository
/// `repo` (made if missing; an existing `master` is kept). Everything is
/// added (`add -A -f`: the trees' own `.gitignore` files would drop
/// files the build needs). The repo serves any SHA, like the fixtures.
fn import(
    tree: &Path,
    repo: &Path,
    what: &str,
    prepare: Option<fn(&Path) -> Result<()>>,
) -> Result<Imported> {
    let version = fs::read_to_string(tree.join("debian/changelog"))
        .ok()
        .and_then(|c| {
            let first = c.lines().next()?;
            Some(first.split(['(', ')']).nth(1)?.to_string())
        })
        .or_else(|| kernel_version(tree))
        .unwrap_or_else(|| "unknown".into());
    let git = Git::bare(repo).with_work_tree(tree);
    if repo.join("refs/heads/master").is_file() || has_ref(repo, "refs/heads/master") {
        eprintln!("real-sources: {what}: reusing {}", repo.display());
    } else {
        remove(repo)?;
        run_ok(
            Command::new("git")
                .args(["init", "-q", "--bare", "--initial-branch=master"])
                .arg(repo),
        )?;
        if let Some(prepare) = prepare {
            prepare(tree)?;
        }
        // quilt's bookkeeping (the patches are applied in the tree).
        remove(&tree.join(".pc"))?;
        eprintln!("real-sources: {what}: committing {} ...", tree.display());
        let started = Instant::now();
        git.run(&["add", "-A", "-f", "."])?;
        git.run(&[
            "commit",
            "-q",
            "--no-verify",
            "-m",
            &format!(
                "{what} {version}: Debian's source package, Debian patches applied\n\n\
                 Imported by `cargo xtask real-sources` (snp-build)."
            ),
        ])?;
        git.run(&["repack", "-a", "-d", "-q", "--window=0"])?;
        git.run(&["prune-packed"])?;
        for (k, v) in [
            ("uploadpack.allowAnySHA1InWant", "true"),
            ("uploadpack.allowReachableSHA1InWant", "true"),
            ("uploadpack.allowFilter", "true"),
        ] {
            git.run(&["config", k, v])?;
        }
        fs::write(repo.join("git-daemon-export-ok"), "")?;
        eprintln!(
            "real-sources: {what}: committed in {}",
            secs(started.elapsed())
        );
    }
    let sha = git.run(&["rev-parse", "master"])?.trim().to_string();
    Ok(Imported {
        repo: repo.to_path_buf(),
        sha,
        version,
    })
}

/// `VERSION.PATCHLEVEL.SUBLEVEL` from a Linux tree's Makefile.
fn kernel_version(tree: &Path) -> Option<String> {
    let text = fs::read_to_string(tree.join("Makefile")).ok()?;
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().strip_prefix('=').map(str::trim))
    };
    Some(format!(
        "{}.{}.{}",
        get("VERSION")?,
        get("PATCHLEVEL")?,
        get("SUBLEVEL")?
    ))
}

fn has_ref(repo: &Path, name: &str) -> bool {
    Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["rev-parse", "--verify", "-q", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The default edit lists (the root `stable-commits.toml`, which snp-build
/// embeds as its default).
fn default_lists() -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
    let path = report::workspace_root().join("stable-commits.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let list = |key: &str| -> Result<Vec<String>> {
        doc.get("kernel")
            .and_then(|k| k.get(key))
            .and_then(|v| v.as_array())
            .with_context(|| format!("{}: no [kernel] {key} list", path.display()))?
            .iter()
            .map(|v| v.as_str().map(str::to_string).context("not a string"))
            .collect()
    };
    Ok((list("enable")?, list("disable")?, list("module")?))
}

/// Words of `text` in lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("never empty");
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

fn toml_list(items: &[String]) -> String {
    let mut s = String::from("[\n");
    for i in items {
        let _ = writeln!(s, "    \"{i}\",");
    }
    s.push(']');
    s
}

fn pin_file(
    stack: Stack,
    names: &Names,
    qemu: &Imported,
    ovmf: &Imported,
    linux: &Imported,
) -> Result<String> {
    let (mut enable, disable, mut module) = default_lists()?;
    for o in SEV_DEPS_ENABLE {
        if !enable.iter().any(|e| e == o) {
            enable.push((*o).to_string());
        }
    }
    for o in SEV_DEPS_MODULE {
        if !module.iter().any(|e| e == o) {
            module.push((*o).to_string());
        }
    }
    let extra: Vec<&(&str, &str)> = match stack {
        Stack::Amd => EXTRA_ENABLE.iter().collect(),
        Stack::Upstream => EXTRA_ENABLE.iter().chain(EXTRA_ENABLE_6_12).collect(),
    };
    let mut extra_why = String::new();
    for (o, why) in extra {
        if !enable.iter().any(|e| e == o) {
            enable.push((*o).to_string());
        }
        let mut lines = wrap(&format!("{o}: {why}"), 68).into_iter();
        let _ = writeln!(extra_why, "#   {}", lines.next().unwrap_or_default());
        for l in lines {
            let _ = writeln!(extra_why, "#     {l}");
        }
    }
    let mut allow = String::from("[\n");
    for line in wrap(MLX_DROPPED_WHY, 72) {
        let _ = writeln!(allow, "    # {line}");
    }
    for o in enable
        .iter()
        .chain(&module)
        .filter(|o| o.starts_with("MLX"))
    {
        let _ = writeln!(allow, "    \"{o}\",");
    }
    allow.push(']');
    let url = |i: &Imported| fixtures::file_url(&i.repo);
    let (what, qemu_notes, ovmf_notes) = match stack {
        Stack::Amd => (
            "not AMD's trees",
            "",
            "# Submodules stay on (the default, as for AMD's tree): Debian's edk2 lists
# them in .gitmodules but carries their contents as plain files, so there
# is nothing to fetch.
# Debian patches the UEFI Shell to need a library that exists only with
# secure boot: without this define the build fails.
defines = [\"DEBUG_ON_SERIAL_PORT=TRUE\", \"SECURE_BOOT_ENABLE=TRUE\"]",
        ),
        Stack::Upstream => (
            "upstream's versions and names, Debian's patches",
            "# QEMU 10's meson installs pc-bios/'s binary blobs (SeaBIOS' bios.bin,
# the NIC ROMs...) unless told not to, and fails when one is missing;
# Debian's `+ds` source strips them (they are built from their own
# sources), and Debian's own build passes this flag too.
configure-args = [\"--disable-install-blobs\"]
",
            "# Submodules stay on (the default, as upstream's tree needs them): Debian's
# edk2 2025.02 lists 12 in .gitmodules and has no gitlink; it carries the
# ones OVMF builds (openssl, mbedtls, brotli, libfdt, mipisyst, libspdm) as
# plain files and leaves the test-only ones empty (cmocka, googletest,
# subhook, oniguruma, jansson, BaseTools' brotli), so there is nothing to
# fetch. Debian 12's secure-boot patch to the Shell is gone: no define.
# Both firmwares of the upstream stack (`snp-build init --stack upstream`):
# AmdSevX64, the measured direct boot, beside OVMF.fd.
extra-platforms = [
    { platform = \"OvmfPkg/AmdSev/AmdSevX64.dsc\", outputs = { \"OVMF.fd\" = \"OVMF.amdsev.fd\" } },
]",
        ),
    };
    Ok(format!(
        "# Debian's source packages as local git repositories, made by
# `cargo xtask real-sources --stack {stack}` ({what}).
#   qemu {qv} -> {qsha}
#   edk2 {ov} -> {osha}
#   {lp} {lv} -> {lsha}

[kernel]
# Sized for a 2-core box: tinyconfig (a full distro config takes hours)
# plus what SEV needs to survive `olddefconfig` (KVM_AMD_SEV's dependencies).
base-config = \"tinyconfig\"
# The default list, then SEV's dependencies on a tinyconfig base,
# then what tinyconfig lacks for the default list's SEV options:
{extra_why}enable = {enable}
disable = {disable}
# The default list, then KVM and KVM_AMD as modules (KVM_AMD_SEV needs
# !(KVM_AMD=y && CRYPTO_DEV_CCP_DD=m)).
module = {module}
# What Linux {series}'s tinyconfig really cannot have, found by running it;
# everything else the edits ask for must survive.
allow-dropped = {allow}

[kernel.host]
url = \"{lurl}\"
{host}

[kernel.guest]
url = \"{lurl}\"
{guest}

[qemu]
url = \"{qurl}\"
{qref}
{qemu_notes}
[ovmf]
url = \"{ourl}\"
{oref}
{ovmf_notes}
",
        stack = stack.name(),
        qv = qemu.version,
        qsha = qemu.sha,
        ov = ovmf.version,
        osha = ovmf.sha,
        lp = stack.linux_package(),
        lv = linux.version,
        lsha = linux.sha,
        series = stack
            .linux_package()
            .strip_prefix("linux-source-")
            .unwrap_or("?"),
        enable = toml_list(&enable),
        disable = toml_list(&disable),
        module = toml_list(&module),
        lurl = url(linux),
        qurl = url(qemu),
        ourl = url(ovmf),
        host = names.host.pin_line(),
        guest = names.guest.pin_line(),
        qref = names.qemu.pin_line(),
        oref = names.ovmf.pin_line(),
    ))
}

/// The git CLI on a bare repository (optionally with a work tree),
/// isolated from the user's configuration, with a fixed identity.
struct Git {
    git_dir: PathBuf,
    work_tree: Option<PathBuf>,
}

impl Git {
    fn bare(repo: &Path) -> Git {
        Git {
            git_dir: repo.to_path_buf(),
            work_tree: None,
        }
    }

    fn with_work_tree(mut self, tree: &Path) -> Git {
        self.work_tree = Some(tree.to_path_buf());
        self
    }

    /// A new commit with `parent`'s tree and `message`; returns its SHA.
    fn commit_tree_on(&self, parent: &str, message: &str) -> Result<String> {
        let tree = self.run(&["rev-parse", &format!("{parent}^{{tree}}")])?;
        let parent_sha = self.run(&["rev-parse", parent])?;
        Ok(self
            .run(&[
                "commit-tree",
                tree.trim(),
                "-p",
                parent_sha.trim(),
                "-m",
                message,
            ])?
            .trim()
            .to_string())
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir").arg(&self.git_dir);
        if let Some(t) = &self.work_tree {
            cmd.arg("--work-tree").arg(t).current_dir(t);
        }
        cmd.args(["-c", "core.autocrlf=false", "-c", "commit.gpgsign=false"])
            .args(["-c", "core.fileMode=true", "-c", "gc.auto=0"])
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "snp-build real-sources")
            .env("GIT_AUTHOR_EMAIL", "real-sources@snp-build.invalid")
            .env("GIT_COMMITTER_NAME", "snp-build real-sources")
            .env("GIT_COMMITTER_EMAIL", "real-sources@snp-build.invalid")
            .env("GIT_AUTHOR_DATE", "1704067200 +0000")
            .env("GIT_COMMITTER_DATE", "1704067200 +0000")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE");
        run_ok(&mut cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_versions_drop_epoch_revision_and_repack() {
        assert_eq!(upstream_version("1:10.0.13+ds-0+deb13u1"), "10.0.13");
        assert_eq!(upstream_version("2025.02-8+deb13u1"), "2025.02");
        assert_eq!(upstream_version("1:7.2+dfsg-7+deb12u7"), "7.2");
        assert_eq!(upstream_version("6.12.118"), "6.12.118");
    }

    #[test]
    fn refs_become_pin_lines() {
        assert_eq!(Ref::Tag("v10.0.13".into()).pin_line(), "tag = \"v10.0.13\"");
        assert_eq!(
            Ref::Branch("linux-6.12.y".into()).pin_line(),
            "branch = \"linux-6.12.y\""
        );
    }
}
