//! Real trees: Debian's QEMU, edk2 and Linux sources as local git
//! repositories that look like AMD's (`cargo xtask real-sources DIR`), and
//! a whole snp-build run on them checked as a user would
//! (`cargo xtask e2e-real DIR`). See `docs/real-trees.md`.
//!
//! `real-sources` needs root (it adds deb-src entries under
//! `/etc/apt/sources.list.d/` and runs `apt-get update`) and a package
//! mirror; nothing else reaches the network. The deb-src entries are
//! derived from the machine's own apt sources, so no host name is written
//! into this repository.
//!
//! Layout of DIR:
//!
//! | path | what |
//! |---|---|
//! | `debian-src/` | what `apt-get source` / `apt-get download` fetched, and the unpacked trees (the repos' work trees) |
//! | `qemu.git`, `ovmf.git`, `linux.git` | bare repos: `master` and AMD's branch names |
//! | `stable-commits.toml` | pins naming them by `file://` URL, knobs sized for 2 cores |
//! | `e2e/` | `e2e-real`'s work dir, install dir and release |

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixtures;
use crate::report::{self, run_ok, run_visible, secs};

/// The deb-src entries this command writes (deb822 and one-line forms).
const APT_DEB822: &str = "/etc/apt/sources.list.d/snp-build-src.sources";
const APT_ONE_LINE: &str = "/etc/apt/sources.list.d/snp-build-src.list";

/// The kernel source package (its tarball is the tree).
const LINUX_PACKAGE: &str = "linux-source-6.1";

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

/// Why the default list's Mellanox options (every option starting with
/// `MLX`) may be dropped: tinyconfig really cannot have them.
const MLX_DROPPED_WHY: &str = "The Mellanox NIC drivers (every MLX* option of the \
default list) live under NET -> NETDEVICES -> ETHERNET -> NET_VENDOR_MELLANOX; \
tinyconfig has no networking at all (NET is off), and a network stack does not \
belong in a 2-core SEV test kernel. olddefconfig drops them; the build warns.";

// ------------------------------------------------------------ real-sources

/// `cargo xtask real-sources DIR`.
pub fn real_sources(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let src = dir.join("debian-src");
    fs::create_dir_all(&src)?;
    need_tools()?;
    enable_deb_src()?;
    eprintln!("real-sources: apt-get update");
    run_visible(Command::new("apt-get").args(["update", "-q"]))?;

    let qemu_tree = apt_source(&src, "qemu")?;
    let edk2_tree = apt_source(&src, "edk2")?;
    let linux_tree = linux_tarball(&src)?;

    let qemu = import(&qemu_tree, &dir.join("qemu.git"), "qemu", None)?;
    let ovmf = import(&edk2_tree, &dir.join("ovmf.git"), "edk2", None)?;
    let linux = import(
        &linux_tree,
        &dir.join("linux.git"),
        LINUX_PACKAGE,
        Some(fix_linux_gitignore),
    )?;
    // AMD's layout: one kernel repository with the host and guest
    // branches; the guest branch one commit further so their SHAs differ.
    let git = Git::bare(&dir.join("linux.git"));
    git.run(&["branch", "-f", "snp-host-latest", "master"])?;
    let guest = git.commit_tree_on("master", "snp-guest-latest: guest branch (real-sources)")?;
    git.run(&["update-ref", "refs/heads/snp-guest-latest", &guest])?;
    Git::bare(&dir.join("qemu.git")).run(&["branch", "-f", "snp-latest", "master"])?;
    Git::bare(&dir.join("ovmf.git")).run(&["branch", "-f", "snp-latest", "master"])?;

    let pins = pin_file(&dir, &qemu, &ovmf, &linux)?;
    let pin_path = dir.join("stable-commits.toml");
    fs::write(&pin_path, pins).with_context(|| format!("writing {}", pin_path.display()))?;
    println!("{}", pin_path.display());
    Ok(())
}

/// The host tools `real-sources` itself runs.
fn need_tools() -> Result<()> {
    let mut missing = Vec::new();
    for (program, package) in [
        ("dpkg-source", "dpkg-dev"),
        ("xz", "xz-utils"),
        ("git", "git"),
    ] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            missing.push(package);
        }
    }
    if !missing.is_empty() {
        eprintln!("real-sources: installing {}", missing.join(" "));
        run_visible(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(&missing),
        )?;
    }
    Ok(())
}

/// Writes deb-src twins of the machine's enabled `deb` entries (same URIs,
/// suites, components and keys), unless deb-src entries exist already.
fn enable_deb_src() -> Result<()> {
    let mut deb822 = String::new();
    let mut one_line = String::new();
    let mut have_src = false;
    let mut files: Vec<PathBuf> = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        if file == Path::new(APT_DEB822) || file == Path::new(APT_ONE_LINE) {
            continue;
        }
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => {
                let (twins, src) = deb822_twins(&text);
                have_src |= src;
                deb822.push_str(&twins);
            }
            _ if file.file_name().is_some_and(|n| n == "sources.list")
                || file.extension().is_some_and(|e| e == "list") =>
            {
                let (twins, src) = one_line_twins(&text);
                have_src |= src;
                one_line.push_str(&twins);
            }
            // apt ignores other names (e.g. *.disabled): so do we.
            _ => {}
        }
    }
    if have_src {
        eprintln!("real-sources: apt already has deb-src entries; not adding any");
        return Ok(());
    }
    ensure!(
        !deb822.is_empty() || !one_line.is_empty(),
        "no enabled `deb` entries in /etc/apt/sources.list or /etc/apt/sources.list.d/ \
         to derive deb-src entries from"
    );
    for (path, text) in [(APT_DEB822, deb822), (APT_ONE_LINE, one_line)] {
        if text.is_empty() {
            continue;
        }
        let text = format!(
            "# deb-src twins of this machine's deb entries, written by \
             `cargo xtask real-sources` (snp-build).\n{text}"
        );
        if fs::read_to_string(path).ok().as_deref() != Some(&text) {
            fs::write(path, &text).with_context(|| {
                format!("writing {path} (real-sources needs root to add deb-src entries)")
            })?;
            eprintln!("real-sources: wrote {path}");
        }
    }
    Ok(())
}

/// deb-src stanzas for the enabled deb stanzas of a deb822 `.sources`
/// file, and whether it already has deb-src entries.
fn deb822_twins(text: &str) -> (String, bool) {
    let mut out = String::new();
    let mut have_src = false;
    for stanza in text.split("\n\n") {
        let lines: Vec<&str> = stanza
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .collect();
        let field = |name: &str| {
            lines.iter().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let Some(types) = field("Types") else {
            continue;
        };
        if field("Enabled").is_some_and(|e| e.eq_ignore_ascii_case("no")) {
            continue;
        }
        let types: Vec<&str> = types.split_whitespace().collect();
        if types.contains(&"deb-src") {
            have_src = true;
            continue;
        }
        if !types.contains(&"deb") {
            continue;
        }
        out.push('\n');
        out.push_str("Types: deb-src\n");
        for l in &lines {
            let is_types = l.split_once(':').is_some_and(|(k, _)| {
                !l.starts_with(' ') && k.trim().eq_ignore_ascii_case("Types")
            });
            if !is_types {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    (out, have_src)
}

/// `deb-src` lines for the `deb` lines of a one-line sources list.
fn one_line_twins(text: &str) -> (String, bool) {
    let mut out = String::new();
    let mut have_src = false;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("deb ") {
            let _ = writeln!(out, "deb-src {rest}");
        } else if line.starts_with("deb-src ") {
            have_src = true;
        }
    }
    (out, have_src)
}

/// `apt-get source PACKAGE` in `src` (Debian's patches applied by
/// dpkg-source); returns the unpacked tree. Reuses an earlier download.
fn apt_source(src: &Path, package: &str) -> Result<PathBuf> {
    if let Some(tree) = unpacked(src, package)? {
        eprintln!("real-sources: {package}: reusing {}", tree.display());
        return Ok(tree);
    }
    eprintln!("real-sources: apt-get source {package}");
    run_visible(
        Command::new("apt-get")
            .args(["source", "-q", package])
            .current_dir(src),
    )?;
    unpacked(src, package)?
        .with_context(|| format!("apt-get source {package} unpacked no {package}-*/ directory"))
}

/// The directory `dpkg-source -x` made for `package` (`PACKAGE-VERSION/`).
fn unpacked(src: &Path, package: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}-");
    let mut found: Vec<PathBuf> = fs::read_dir(src)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix)
                && name[prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
                && e.path().join("debian/changelog").is_file()
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found.pop())
}

/// The Linux tree from the `linux-source-6.1` package's tarball.
fn linux_tarball(src: &Path) -> Result<PathBuf> {
    let tree = src.join(LINUX_PACKAGE);
    if tree.join("Makefile").is_file() {
        eprintln!("real-sources: linux: reusing {}", tree.display());
        return Ok(tree);
    }
    let debs = |src: &Path| -> Result<Vec<PathBuf>> {
        let mut d: Vec<PathBuf> = fs::read_dir(src)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with(&format!("{LINUX_PACKAGE}_")) && n.ends_with(".deb")
                })
            })
            .collect();
        d.sort();
        Ok(d)
    };
    if debs(src)?.is_empty() {
        eprintln!("real-sources: apt-get download {LINUX_PACKAGE}");
        run_visible(
            Command::new("apt-get")
                .args(["download", "-q", LINUX_PACKAGE])
                .current_dir(src),
        )?;
    }
    let deb = debs(src)?
        .pop()
        .with_context(|| format!("apt-get download {LINUX_PACKAGE} left no .deb"))?;
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

fn pin_file(dir: &Path, qemu: &Imported, ovmf: &Imported, linux: &Imported) -> Result<String> {
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
    let mut extra_why = String::new();
    for (o, why) in EXTRA_ENABLE {
        if !enable.iter().any(|e| e == o) {
            enable.push((*o).to_string());
        }
        let _ = writeln!(extra_why, "#   {o}: {why}");
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
    let _ = dir;
    Ok(format!(
        "# Debian's source packages as local git repositories, made by
# `cargo xtask real-sources`; not AMD's trees.
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
# What Linux 6.1's tinyconfig really cannot have, found by running it;
# everything else the edits ask for must survive.
allow-dropped = {allow}

[kernel.host]
url = \"{lurl}\"
branch = \"snp-host-latest\"

[kernel.guest]
url = \"{lurl}\"
branch = \"snp-guest-latest\"

[qemu]
url = \"{qurl}\"
branch = \"snp-latest\"

[ovmf]
url = \"{ourl}\"
branch = \"snp-latest\"
# Submodules stay on (the default, as for AMD's tree): Debian's edk2 lists
# them in .gitmodules but carries their contents as plain files, so there
# is nothing to fetch.
# Debian patches the UEFI Shell to need a library that exists only with
# secure boot: without this define the build fails.
defines = [\"DEBUG_ON_SERIAL_PORT=TRUE\", \"SECURE_BOOT_ENABLE=TRUE\"]
",
        qv = qemu.version,
        qsha = qemu.sha,
        ov = ovmf.version,
        osha = ovmf.sha,
        lp = LINUX_PACKAGE,
        lv = linux.version,
        lsha = linux.sha,
        enable = toml_list(&enable),
        disable = toml_list(&disable),
        module = toml_list(&module),
        lurl = url(linux),
        qurl = url(qemu),
        ourl = url(ovmf),
    ))
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
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

// ---------------------------------------------------------------- e2e-real

/// `cargo xtask e2e-real DIR`: see the module documentation and
/// `docs/real-trees.md`.
pub fn e2e_real(dir: &Path, jobs: usize, out_md: &Path, keep: bool) -> Result<()> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{} (run `cargo xtask real-sources` first)", dir.display()))?;
    let pins = dir.join("stable-commits.toml");
    ensure!(
        pins.is_file(),
        "{} is missing: run `cargo xtask real-sources {}` first",
        pins.display(),
        dir.display()
    );
    let machine = report::machine();
    let bin = report::release_binary()?;
    let e2e = dir.join("e2e");
    if !keep {
        remove(&e2e)?;
    }
    fs::create_dir_all(&e2e)?;
    let work = e2e.join("work");
    let install = e2e.join("usr/local");
    let output = e2e.join("out");
    fs::create_dir_all(&output)?;
    let snp = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("--config")
            .arg(&pins)
            .arg("--work-dir")
            .arg(&work)
            .arg("--install")
            .arg(&install)
            .arg("-j")
            .arg(jobs.to_string())
            .args(args)
            .current_dir(&e2e);
        c
    };
    let mut checks: Vec<String> = Vec::new();

    // 1. doctor --fix: what is missing installed by the doctor itself.
    eprintln!("e2e-real: snp-build doctor --fix");
    let doctor = snp(&["doctor", "--fix", "--json"])
        .stderr(Stdio::inherit())
        .output()
        .context("running snp-build doctor --fix")?;
    let report: Value = serde_json::from_slice(&doctor.stdout)
        .context("snp-build doctor --fix --json printed no JSON document")?;
    ensure!(
        doctor.status.success(),
        "snp-build doctor --fix: still not ready ({}): {}",
        doctor.status,
        report["error"]
    );
    let installed = report["fix"]["packages"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    checks.push(if installed.is_empty() {
        "doctor: ready".into()
    } else {
        format!("doctor --fix: ready after installing {installed}")
    });

    // 2. Fetching the kernels, against build.sh's clone + cp -r, shallow
    // over git:// as from AMD's https (the cold build below fetches from
    // file:// URLs, which libgit2 fetches whole).
    eprintln!("e2e-real: kernel fetch race (git daemon on loopback)");
    let race = crate::fetch::kernel_race(
        &bin,
        &fs::read_to_string(&pins)?,
        &fixtures::file_url(&dir.join("linux.git")),
        &dir,
        "linux.git",
        ("snp-host-latest", "snp-guest-latest"),
        &e2e.join("fetch-race"),
    )?;
    let race_rows = race.rows();
    remove(&e2e.join("fetch-race"))?;

    // 3. The cold build.
    eprintln!("e2e-real: snp-build --package (cold; this takes a while)");
    let out_s = output.to_string_lossy().into_owned();
    // One date for every build here, so a run across midnight stays a no-op.
    let date = run_ok(Command::new("date").args(["-u", "+%Y-%m-%d"]))?
        .trim()
        .to_string();
    let cold = report::measure(
        &mut snp(&["--package", "--json", "--date", &date, "--output", &out_s]),
        false,
    )?;
    let cold_json = cold.json().ok();
    ensure!(
        cold.status.success(),
        "snp-build --package failed ({}); its JSON summary:\n{}",
        cold.status,
        cold.stdout
    );
    let cold_json = cold_json.context("no JSON summary")?;
    eprintln!("e2e-real: cold build took {}", secs(cold.wall));

    // 4. Checks, as a user would.
    check_release(&cold_json, &work, &mut checks)?;

    // 5. The no-op rebuild.
    let noop = report::measure(
        &mut snp(&["--package", "--json", "--date", &date, "--output", &out_s]),
        true,
    )?;
    ensure!(
        noop.status.success(),
        "the no-op rebuild failed: {}",
        noop.stdout
    );
    let noop_json = noop.json()?;
    let ran = report::stages_ran(&noop_json);
    ensure!(ran.is_empty(), "the no-op rebuild ran {ran:?}");
    checks.push(format!(
        "no-op rebuild: nothing ran, {} wall, peak RSS {} MiB",
        secs(noop.wall),
        noop.tree_max_rss_kib / 1024
    ));

    // 6. A new commit on QEMU's branch that changes one C source file:
    // only qemu and the release rerun, and ninja rebuilds only what depends
    // on that file (configure is left alone).
    let source = QEMU_CHANGED_SOURCE;
    let current = run_ok(
        Command::new("git")
            .arg("-C")
            .arg(dir.join("qemu.git"))
            .args(["show", &format!("snp-latest:{source}")]),
    )?;
    let new_sha = fixtures::commit_file(
        &dir.join("qemu.git"),
        "snp-latest",
        source,
        format!(
            "{current}/* cargo xtask e2e-real: {:?} */\n",
            std::time::SystemTime::now()
        )
        .as_bytes(),
        "util: a new upstream commit changing one source file (cargo xtask e2e-real)",
    )?;
    run_ok(&mut snp(&["update", "qemu"]))?;
    let changed = report::measure(
        &mut snp(&["--package", "--json", "--date", &date, "--output", &out_s]),
        false,
    )?;
    ensure!(
        changed.status.success(),
        "the rebuild after the QEMU commit failed: {}",
        changed.stdout
    );
    let changed_json = changed.json()?;
    let ran = report::stages_ran(&changed_json);
    ensure!(
        ran == ["qemu", "release"],
        "after a new QEMU commit, expected only qemu and the release to rerun, got {ran:?}"
    );
    checks.push(format!(
        "new QEMU commit {} changing {source}: `snp-build update qemu`, rebuild reran {} in {}",
        &new_sha[..12],
        ran.join(" + "),
        secs(changed.wall)
    ));

    // 7. The kernels again, by a second builder: same pins, another work
    // dir, output dir and install prefix, umask 077, another TZ and locale.
    let first_release = PathBuf::from(
        cold_json["release"]["path"]
            .as_str()
            .context("the cold build's summary names no release")?,
    );
    let second = second_builder_kernels(&bin, &pins, &e2e, jobs, &date, &first_release)?;
    checks.push(second);

    // 8. The table.
    if keep {
        checks.push(
            "run with --keep: the first build reused the sources DIR/e2e had fetched in \
             an earlier run, so its wall time excludes fetching"
                .into(),
        );
    }
    let body = e2e_table(
        &machine,
        jobs,
        &cold,
        &cold_json,
        &noop,
        &changed,
        &changed_json,
        &race_rows,
        &checks,
    );
    println!("{body}");
    report::write_section(out_md, "e2e-real", &body)?;
    eprintln!("e2e-real: wrote its section of {}", out_md.display());
    Ok(())
}

/// Builds and packages OVMF and the two kernels in
/// `e2e/second-builder-...` with umask 077, `TZ=Asia/Tokyo` and
/// `LANG=de_DE.UTF-8`, and compares its firmware, kernel packages and
/// configs with `first_release`'s, byte for byte.
/// Returns the check line (saying DIFFERENT, with the files, when they are).
fn second_builder_kernels(
    bin: &Path,
    pins: &Path,
    e2e: &Path,
    jobs: usize,
    date: &str,
    first_release: &Path,
) -> Result<String> {
    let root = e2e.join("second-builder-with-a-longer-path");
    remove(&root)?;
    fs::create_dir_all(root.join("out"))?;
    eprintln!(
        "e2e-real: OVMF and the kernels again, by a second builder (umask 077, other dirs, TZ, LANG)"
    );
    // One component per run, as build.sh takes it; no release: the stages'
    // own outputs are compared with the first release's copies.
    let mut wall = std::time::Duration::ZERO;
    for component in ["ovmf", "kernel"] {
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(pins)
            .arg("--work-dir")
            .arg(root.join("work"))
            .arg("--install")
            .arg(root.join("prefix"))
            .arg("-j")
            .arg(jobs.to_string())
            .args([component, "--json", "--date", date])
            .current_dir(&root);
        let run = report::measure(report::as_second_builder(&mut cmd), false)?;
        ensure!(
            run.status.success(),
            "the second builder's `{component}` build failed: {}",
            run.stdout
        );
        wall += run.wall;
    }
    // Where the second builder's copy of a release file is.
    let second_copy = |name: &str| -> PathBuf {
        if let Some(fd) = name.strip_prefix("usr/local/") {
            return root.join("prefix").join(fd);
        }
        if let Some(kernel) = name.strip_prefix("kernel-config.") {
            return root
                .join("work")
                .join(format!("kernel-{kernel}"))
                .join("config");
        }
        let mut parts = name.splitn(3, '/');
        let (_, kernel, file) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        root.join("work")
            .join(format!("kernel-{kernel}"))
            .join("packages")
            .join(file)
    };
    let mut same = Vec::new();
    let mut different = Vec::new();
    let mut compare = |name: String| -> Result<()> {
        let a = fs::read(first_release.join(&name))?;
        let b = fs::read(second_copy(&name)).unwrap_or_default();
        if a == b {
            same.push(name);
        } else {
            different.push(name);
        }
        Ok(())
    };
    for name in ["OVMF_CODE.fd", "OVMF_VARS.fd", "OVMF.fd"] {
        let name = format!("usr/local/share/qemu/{name}");
        if first_release.join(&name).exists() {
            compare(name)?;
        }
    }
    for kernel in ["host", "guest"] {
        let mut names: Vec<String> = fs::read_dir(first_release.join("linux").join(kernel))?
            .flatten()
            .map(|e| format!("linux/{kernel}/{}", e.file_name().to_string_lossy()))
            .collect();
        names.push(format!("kernel-config.{kernel}"));
        names.sort();
        for name in names {
            compare(name)?;
        }
    }
    Ok(if different.is_empty() {
        format!(
            "{SECOND_BUILDER}: OVMF and kernels rebuilt in {}, all {} firmware and kernel files byte-identical ({})",
            secs(wall),
            same.len(),
            same.join(", ")
        )
    } else {
        format!(
            "{SECOND_BUILDER}: OVMF and kernels rebuilt in {}; DIFFERENT: {}; identical: {}",
            secs(wall),
            different.join(", "),
            same.join(", ")
        )
    })
}

/// The QEMU source file the "one pin moved" commit changes (a comment
/// appended): linked into every QEMU binary through libqemuutil.
const QEMU_CHANGED_SOURCE: &str = "util/cutils.c";

/// How the second builder differs from the first.
const SECOND_BUILDER: &str = "second builder (other work dir, output and install prefix, umask 077, TZ=Asia/Tokyo, LANG=de_DE.UTF-8)";

/// The checks of a finished release; each passed check is pushed.
fn check_release(summary: &Value, work: &Path, checks: &mut Vec<String>) -> Result<()> {
    let release = PathBuf::from(
        summary["release"]["path"]
            .as_str()
            .context("the summary names no release")?,
    );
    let local = release.join("usr/local");

    let qemu = local.join("bin/qemu-system-x86_64");
    let version = run_ok(Command::new(&qemu).arg("--version"))?;
    let first = version.lines().next().unwrap_or("").to_string();
    ensure!(
        first.contains("version 7.2"),
        "{} --version: {first}",
        qemu.display()
    );
    checks.push(format!("`qemu-system-x86_64 --version`: {first}"));

    let firmware = local.join("share/qemu");
    for name in ["OVMF_CODE.fd", "OVMF_VARS.fd", "OVMF.fd"] {
        let path = firmware.join(name);
        if name == "OVMF.fd" && !path.exists() {
            continue;
        }
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            data.len() > 44 && &data[40..44] == b"_FVH",
            "{} has no _FVH signature at offset 40",
            path.display()
        );
        checks.push(format!(
            "{name}: `_FVH` at offset 40 ({} KiB)",
            data.len() / 1024
        ));
    }

    let sha_of = |source: &str| -> Option<String> {
        summary["sources"].as_array()?.iter().find_map(|s| {
            let name = s["source"].as_str().or_else(|| s["name"].as_str())?;
            (name == source).then(|| s["sha"].as_str().map(|x| x[..12].to_string()))?
        })
    };
    for kernel in ["host", "guest"] {
        let sha = sha_of(&format!("kernel-{kernel}"))
            .with_context(|| format!("the summary has no kernel-{kernel} SHA"))?;
        let dir = release.join("linux").join(kernel);
        let want = format!("-snp-{kernel}-{sha}");
        let image = fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("linux-image-") && !n.contains("-dbg") && n.ends_with(".deb"))
            .with_context(|| format!("no linux-image-*.deb in {}", dir.display()))?;
        ensure!(image.contains(&want), "{image} does not carry {want}");
        let info = run_ok(Command::new("dpkg-deb").arg("--info").arg(dir.join(&image)))?;
        let version = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("Version: "))
            .unwrap_or("?")
            .to_string();
        ensure!(
            version.contains(&want),
            "{image}: Version {version} lacks {want}"
        );
        checks.push(format!(
            "{kernel}: {image} (dpkg-deb --info: Version {version})"
        ));
        let config = work.join(format!("kernel-{kernel}/config"));
        let text =
            fs::read_to_string(&config).with_context(|| format!("reading {}", config.display()))?;
        ensure!(
            text.lines().any(|l| l == "CONFIG_KVM_AMD_SEV=y"),
            "{} lacks CONFIG_KVM_AMD_SEV=y",
            config.display()
        );
        checks.push(format!(
            "{kernel}: verified .config has CONFIG_KVM_AMD_SEV=y"
        ));
    }

    run_ok(
        Command::new("sha256sum")
            .args(["--quiet", "-c", "SHA256SUMS"])
            .current_dir(&release),
    )?;
    checks.push("`sha256sum -c SHA256SUMS`: OK".into());

    let launch = run_ok(
        Command::new(release.join("launch-qemu.sh"))
            .args(["-dry-run", "-sev-snp", "-cbitpos", "51"])
            .current_dir(&release),
    )?;
    let args: Vec<&str> = launch.lines().collect();
    let binary = args.first().copied().unwrap_or("");
    ensure!(
        Path::new(binary).is_file(),
        "launch-qemu.sh -dry-run: QEMU {binary:?} does not exist"
    );
    let bios = args
        .iter()
        .position(|a| *a == "-bios")
        .and_then(|i| args.get(i + 1))
        .context("launch-qemu.sh -dry-run -sev-snp printed no -bios")?;
    ensure!(
        Path::new(bios).is_file(),
        "launch-qemu.sh -dry-run: firmware {bios} does not exist"
    );
    ensure!(
        launch.contains("sev-snp-guest") && launch.contains("cbitpos=51"),
        "launch-qemu.sh -dry-run -sev-snp printed no sev-snp-guest object with cbitpos=51"
    );
    checks.push(format!(
        "`launch-qemu.sh -dry-run -sev-snp -cbitpos 51`: {} args, QEMU and -bios {} exist",
        args.len(),
        Path::new(bios)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
    ));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn e2e_table(
    machine: &str,
    jobs: usize,
    cold: &report::Run,
    cold_json: &Value,
    noop: &report::Run,
    changed: &report::Run,
    changed_json: &Value,
    fetch: &[[String; 3]],
    checks: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Real trees (`cargo xtask e2e-real`)\n\n\
         Debian 12's QEMU 7.2, edk2 2022.11 and Linux 6.1 (`cargo xtask real-sources`), \
         built by `snp-build --package -j{jobs}`; kernels from `tinyconfig` plus SEV's \
         dependencies. Stage wall times from the build's `--json` summary \
         (`stages[].duration_s`); stages run side by side, so they overlap.\n\n{machine}"
    );
    let _ = writeln!(
        s,
        "| stage | cold build | after a new QEMU commit (one source file) |\n|---|---|---|"
    );
    let after: Vec<(String, String, f64)> = report::stage_times(changed_json);
    for (stage, status, d) in report::stage_times(cold_json) {
        let again = after
            .iter()
            .find(|(n, _, _)| *n == stage)
            .map(|(_, st, d2)| {
                if st == "ok" {
                    secs(Duration::from_secs_f64(*d2))
                } else {
                    st.clone()
                }
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {stage} | {} | {again} |",
            if status == "ok" {
                secs(Duration::from_secs_f64(d))
            } else {
                status
            }
        );
    }
    let _ = writeln!(
        s,
        "| **whole run** (wall: fetch, the stages side by side, release) | **{}** | **{}** |",
        secs(cold.wall),
        secs(changed.wall)
    );
    let _ = writeln!(
        s,
        "\nNo-op rebuild (`snp-build --package` again): **{}** wall, no stage and no \
         release rerun (JSON summary), peak RSS {:.1} MiB (wait4).",
        secs(noop.wall),
        noop.tree_max_rss_kib as f64 / 1024.0
    );
    let _ = writeln!(
        s,
        "\nAt the machine's limit (the limit is the CPU work of every child process \
         divided by the {jobs} cores; wall / limit = 1.00 means no core idled):\n\n{}\n{}\n{}\n{}\n",
        report::EFFICIENCY_HEADER,
        report::efficiency_row("cold", cold, jobs),
        report::efficiency_row("one pin moved (a new QEMU commit)", changed, jobs),
        report::efficiency_row("no-op", noop, jobs),
    );
    s.push_str(&content_check_table(cold_json, changed_json));
    let _ = writeln!(
        s,
        "Fetching (issue 14 item 9):\n\n| measure | result | notes |\n|---|---|---|"
    );
    for [a, b, c] in fetch {
        let _ = writeln!(s, "| {a} | {b} | {c} |");
    }
    let _ = writeln!(s, "\nChecks passed:\n");
    for c in checks {
        let _ = writeln!(s, "- {c}");
    }
    s
}

/// The cost of the check by hash (issue 25: before a stage runs and
/// after, every tracked file hashed) beside the stage's own time, in the
/// same build: `sources[].content_check` against `stages[].duration_s`.
fn content_check_table(cold_json: &Value, changed_json: &Value) -> String {
    let mut s = String::from(
        "Content check (issue 25: the trees hashed before each stage runs and again after it, \
         on every core; budget: 5% of a cold kernel stage, 20% of the one-file QEMU rebuild):\n\n\
         | build | tree | files | before | after | stage | (before + after) / stage |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (label, doc) in [
        ("cold", cold_json),
        ("after a new QEMU commit", changed_json),
    ] {
        let stages = report::stage_times(doc);
        for source in doc["sources"].as_array().into_iter().flatten() {
            let Some(check) = source.get("content_check") else {
                continue;
            };
            let name = source["source"].as_str().unwrap_or("?");
            let before = check["before_s"].as_f64().unwrap_or(0.0);
            let after = check["after_s"].as_f64().unwrap_or(0.0);
            let stage = stages
                .iter()
                .find(|(n, _, _)| n == name)
                .map_or(0.0, |(_, _, d)| *d);
            let ratio = if stage > 0.0 {
                format!("{:.1}%", 100.0 * (before + after) / stage)
            } else {
                "-".into()
            };
            let _ = writeln!(
                s,
                "| {label} | {name} | {} | {before:.2} s | {after:.2} s | {stage:.1} s | {ratio} |",
                check["files"]
            );
        }
    }
    s.push('\n');
    s
}
