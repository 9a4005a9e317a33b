//! Fixture upstreams: fake kernel, QEMU and edk2 git repositories that
//! behave like AMD's trees through the interface snp-build uses.
//!
//! [`create`] makes, under one directory:
//!
//! | path                | stands for                  | branches (and tags)                                |
//! |---------------------|-----------------------------|----------------------------------------------------|
//! | `linux.git`         | AMDESE/linux                | `master`, `snp-host-latest`, `snp-guest-latest`, tag `v6.1` |
//! | `qemu.git`          | AMDESE/qemu                 | `master`, `snp-latest`, tag `v9.1.0`               |
//! | `ovmf.git`          | AMDESE/ovmf (edk2)          | `master`, `snp-latest`, tag `edk2-stable202408`    |
//! | `ovmf-brotli.git`   | google/brotli, edk2's submodule | `master`                                       |
//! | `stable-commits.toml` | a pin file naming the above by absolute `file://` URL |                       |
//!
//! The trees' files live in `xtask/fixture-trees/` and are copied in; what
//! each fake tree does (make targets, `scripts/config`, `configure`,
//! `edksetup.sh`, `build`) is described in the files themselves.
//!
//! Guarantees:
//! - The repositories are bare, and each allows fetching any SHA
//!   (`uploadpack.allowAnySHA1InWant`, `allowReachableSHA1InWant`), so a
//!   test can serve them with `git daemon` and fetch shallow by SHA.
//! - Authors, committers and dates are fixed and git's user/system config
//!   is ignored: the same [`Size`] gives the same commit SHAs for linux and
//!   qemu on every run. (ovmf's SHAs depend on `dir`, because its
//!   `.gitmodules` names the submodule by absolute URL.)
//! - The kernel's history carries incompressible blobs (a firmware file
//!   rewritten in every base commit): ~5 MB for [`Size::Small`], ~40 MB for
//!   [`Size::Bench`], so a shallow fetch is measurably cheaper than a full one.
//! - Nothing is printed; errors carry the failing command and its output.

use anyhow::{Context, Result, bail, ensure};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How big the fixtures are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// For the test suite: ~5 MB of kernel history, a kernel build of a
    /// few dozen small C files (well under a second on 2 cores).
    Small,
    /// For `cargo xtask bench`: ~40 MB of kernel history and ~150 C files
    /// that take real compile time.
    Bench,
}

impl Size {
    /// Base commits of the kernel history (each rewrites the firmware blob).
    fn base_commits(self) -> usize {
        match self {
            Size::Small => 30,
            Size::Bench => 40,
        }
    }

    /// Bytes of the incompressible firmware blob in each base commit.
    fn blob_bytes(self) -> usize {
        match self {
            Size::Small => 160 * 1024,
            Size::Bench => 1024 * 1024,
        }
    }

    /// Generated filler C files in the kernel (`drivers/fixture/`).
    fn filler_files(self) -> usize {
        match self {
            Size::Small => 1,
            Size::Bench => 150,
        }
    }

    /// Functions per filler C file.
    fn filler_functions(self) -> usize {
        match self {
            Size::Small => 4,
            Size::Bench => 30,
        }
    }

    /// Generated C files in the QEMU tree (`generated/`) and functions in
    /// each: at bench size QEMU is the longest stage, as on real trees
    /// (Debian's QEMU took 401 s of a 755 s cold build), so the bench
    /// measures scheduling on the real tree's shape.
    fn qemu_files(self) -> (usize, usize) {
        match self {
            Size::Small => (0, 0),
            Size::Bench => (160, 30),
        }
    }

    /// qtest programs in the QEMU tree (`tests/qtest/`) and functions in
    /// each: QEMU's default target builds them and no release ships them
    /// (on Debian's QEMU 7.2 they are 978 of `make`'s 2,561 steps).
    fn qemu_tests(self) -> (usize, usize) {
        match self {
            Size::Small => (2, 4),
            Size::Bench => (60, 30),
        }
    }

    /// Feature probes QEMU's configure compiles one after another (meson's
    /// configure-time checks): the serial start of a QEMU build.
    fn qemu_probes(self) -> usize {
        match self {
            Size::Small => 0,
            Size::Bench => 150,
        }
    }
}

impl std::str::FromStr for Size {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "small" => Ok(Size::Small),
            "bench" => Ok(Size::Bench),
            _ => bail!("unknown fixture size {s:?} (expected small or bench)"),
        }
    }
}

/// Where [`create`] put things. All paths are absolute.
#[derive(Clone, Debug)]
pub struct Fixtures {
    /// The directory given to [`create`], canonicalized.
    pub dir: PathBuf,
    /// Bare kernel repository (`snp-host-latest`, `snp-guest-latest`, `master`).
    pub linux: PathBuf,
    /// Bare QEMU repository (`snp-latest`, `master`).
    pub qemu: PathBuf,
    /// Bare edk2 repository (`snp-latest`, `master`), with one submodule.
    pub ovmf: PathBuf,
    /// Bare repository of the edk2 submodule (Brotli).
    pub ovmf_submodule: PathBuf,
    /// `stable-commits.toml` naming the repositories above.
    pub pin_file: PathBuf,
}

impl Fixtures {
    /// The `file://` URL of one of the repositories.
    pub fn url(&self, repo: &Path) -> String {
        file_url(repo)
    }
}

/// Path inside the edk2 tree where the Brotli submodule is checked out.
pub const OVMF_SUBMODULE_PATH: &str = "MdeModulePkg/Library/BrotliCustomDecompressLib/brotli";

/// The first line of the pin file written by [`create`].
pub const PIN_FILE_HEADER: &str =
    "# Fixture upstreams made by `cargo xtask fixtures`; not AMD's trees.";

/// Create the fixture repositories and pin file in `dir` (created if
/// missing; existing fixture repositories in it are replaced).
pub fn create(dir: &Path, size: Size) -> Result<Fixtures> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let fx = Fixtures {
        linux: dir.join("linux.git"),
        qemu: dir.join("qemu.git"),
        ovmf: dir.join("ovmf.git"),
        ovmf_submodule: dir.join("ovmf-brotli.git"),
        pin_file: dir.join("stable-commits.toml"),
        dir: dir.clone(),
    };
    let work = dir.join(".fixture-work");
    remove_if_exists(&work)?;
    fs::create_dir_all(&work)?;

    make_linux(&work.join("linux"), &fx.linux, size).context("making the fixture kernel")?;
    make_qemu(&work.join("qemu"), &fx.qemu, size).context("making the fixture QEMU")?;
    make_brotli(&work.join("brotli"), &fx.ovmf_submodule)
        .context("making the fixture edk2 submodule")?;
    make_edk2(&work.join("edk2"), &fx.ovmf, &fx.ovmf_submodule)
        .context("making the fixture edk2")?;
    remove_if_exists(&work)?;

    fs::write(&fx.pin_file, pin_file(&fx))
        .with_context(|| format!("writing {}", fx.pin_file.display()))?;
    Ok(fx)
}

/// The `file://` URL of a local path (which should be absolute).
pub fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Full SHA of `rev` in `repo` (a bare or non-bare repository).
pub fn rev_parse(repo: &Path, rev: &str) -> Result<String> {
    let out = Git::new(repo).run(&["rev-parse", "--verify", &format!("{rev}^{{commit}}")])?;
    Ok(out.trim().to_string())
}

/// Simulate upstream moving: commit `contents` to `rel_path` on `branch`
/// of the bare repository `repo` (on top of the branch's head) and return
/// the new commit's SHA. The date is one day after the branch head's.
pub fn commit_file(
    repo: &Path,
    branch: &str,
    rel_path: &str,
    contents: &[u8],
    message: &str,
) -> Result<String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let scratch = repo.with_extension(format!("commit-{}-{nanos}", std::process::id()));
    remove_if_exists(&scratch)?;
    let result = (|| {
        let git = Git::new(repo);
        git.run(&[
            "clone",
            "-q",
            "--branch",
            branch,
            &file_url(repo),
            path_str(&scratch)?,
        ])?;
        let head_time: i64 = Git::new(&scratch)
            .run(&["log", "-1", "--format=%ct"])?
            .trim()
            .parse()
            .context("reading the branch head's date")?;
        let dest = scratch.join(rel_path);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&dest, contents)?;
        let mut work = Git::new(&scratch);
        work.time = head_time + 86_400;
        work.run(&["add", "-A", "."])?;
        work.run(&["commit", "-q", "-m", message])?;
        work.run(&["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")])?;
        rev_parse(&scratch, "HEAD")
    })();
    remove_if_exists(&scratch)?;
    result.with_context(|| format!("committing {rel_path} to {branch} of {}", repo.display()))
}

fn pin_file(fx: &Fixtures) -> String {
    let linux = file_url(&fx.linux);
    let qemu = file_url(&fx.qemu);
    let ovmf = file_url(&fx.ovmf);
    format!(
        "{PIN_FILE_HEADER}
[kernel]
base-config = [\"defconfig\", \"configs/snp-{{kernel}}.config\"]
# Only what the fake trees use (real trees need more: see snp-build's
# embedded stable-commits.toml). The kernel's Makefile runs gcc, ld and
# objcopy, scripts/config is bash, Kconfig is a Python script; builddeb
# calls dpkg-deb and binrpm-pkg rpmbuild.
tools = [\"gcc\", \"binutils\", \"make\", \"bash\", \"python3\"]
deb-tools = [\"dpkg-deb\"]
rpm-tools = [\"rpm-build\"]
btf-tools = []

[kernel.host]
url = \"{linux}\"
branch = \"snp-host-latest\"

[kernel.guest]
url = \"{linux}\"
branch = \"snp-guest-latest\"

[qemu]
url = \"{qemu}\"
branch = \"snp-latest\"
# configure is sh and runs meson; make hands the build to ninja.
tools = [\"gcc\", \"make\", \"meson\", \"ninja\"]

[ovmf]
url = \"{ovmf}\"
branch = \"snp-latest\"
# BaseTools are C; `build` is a bash wrapper around Python; like edk2's,
# it needs nasm for X64.
tools = [\"gcc\", \"make\", \"bash\", \"python3\", \"nasm\"]
"
    )
}

// ---------------------------------------------------------------- trees

/// Where the fixture trees' files are kept (`xtask/fixture-trees/NAME`).
fn tree_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixture-trees")
        .join(name)
}

fn make_linux(work: &Path, bare: &Path, size: Size) -> Result<()> {
    let mut git = Git::init(work)?;
    copy_tree(&tree_source("linux"), work)?;
    write_fillers(
        &work.join("drivers/fixture"),
        "drivers/fixture",
        "#include <linux/fixture.h>",
        size.filler_files(),
        size.filler_functions(),
    )?;
    // A symlink, as real kernels have (scripts/dtc/include-prefixes/*):
    // checkouts must recreate it as a link.
    let link = work.join("scripts/include-prefixes/x86");
    fs::create_dir_all(link.parent().unwrap())?;
    std::os::unix::fs::symlink("../../arch/x86", &link)?;
    let blob = work.join("firmware/amd/fixture-psp.bin");
    fs::create_dir_all(blob.parent().unwrap())?;
    let log = work.join("Documentation/fixture-history.rst");
    fs::create_dir_all(log.parent().unwrap())?;
    let mut history = String::from("Fixture history\n===============\n\n");

    for i in 0..size.base_commits() {
        fs::write(&blob, pseudo_random(i as u64, size.blob_bytes()))?;
        let message = if i == 0 {
            "Linux 6.1-rc1 (snp-build fixture import)".to_string()
        } else {
            writeln!(history, "- base change {i}")?;
            format!("firmware: amd: update fixture PSP blob ({i})")
        };
        fs::write(&log, &history)?;
        git.commit_all(&message)?;
    }
    git.run(&["tag", "-a", "v6.1", "-m", "Linux 6.1 (fixture)"])?;

    let host = [
        (
            "arch/x86/kvm/svm/sev.c",
            "KVM: SEV: Add SNP_LAUNCH_START (fixture)",
        ),
        (
            "drivers/crypto/ccp/sev-dev.c",
            "crypto: ccp: Add SNP platform init (fixture)",
        ),
        (
            "arch/x86/kvm/svm/sev.c",
            "KVM: SEV: Add SNP_LAUNCH_FINISH (fixture)",
        ),
    ];
    let guest = [
        (
            "drivers/virt/coco/sev-guest/sev-guest.c",
            "virt: sev-guest: Add extended report (fixture)",
        ),
        (
            "arch/x86/kernel/setup.c",
            "x86/sev: Detect SNP guest early (fixture)",
        ),
        (
            "drivers/virt/coco/sev-guest/sev-guest.c",
            "virt: sev-guest: Add derived key (fixture)",
        ),
    ];
    for (branch, changes) in [("snp-host-latest", &host), ("snp-guest-latest", &guest)] {
        git.run(&["checkout", "-q", "-b", branch, "master"])?;
        for (n, (file, message)) in changes.iter().enumerate() {
            append_function(
                &work.join(file),
                &format!("{}_change_{n}", branch.replace('-', "_")),
            )?;
            git.commit_all(message)?;
        }
    }
    git.run(&["checkout", "-q", "master"])?;
    publish(work, bare)
}

fn make_qemu(work: &Path, bare: &Path, size: Size) -> Result<()> {
    let mut git = Git::init(work)?;
    copy_tree(&tree_source("qemu"), work)?;
    let (files, functions) = size.qemu_files();
    write_fillers(
        &work.join("generated"),
        "qemu",
        "#include \"qemu/fixture.h\"",
        files,
        functions,
    )?;
    // Meson lists its sources (no globbing): the emulator's generated ones,
    // and one qtest program per test file (built by default, never
    // installed, as QEMU's tests/qtest).
    fs::write(
        work.join("generated/meson.build"),
        format!("generated_srcs = files({})\n", quoted_list("gen_", files)),
    )?;
    let (tests, test_functions) = size.qemu_tests();
    let qtest = work.join("tests/qtest");
    write_fillers(
        &qtest,
        "tests/qtest",
        "#include \"qemu/fixture.h\"",
        tests,
        test_functions,
    )?;
    fs::write(
        qtest.join("meson.build"),
        format!(
            "# qtest programs: built by `make`, installed by nothing.\n\
             foreach t : [{}]\n  \
             executable(t.replace('gen_', 'test-').replace('.c', ''), files('libqtest.c', t),\n             \
             include_directories: inc)\nendforeach\n",
            quoted_list("gen_", tests)
        ),
    )?;
    let probes = work.join("scripts/probes");
    fs::create_dir_all(&probes)?;
    for p in 0..size.qemu_probes() {
        fs::write(
            probes.join(format!("probe_{p:03}.c")),
            format!(
                "/* A configure-time feature probe (fixture). */\n\
                 #include <stdio.h>\n#include <string.h>\n\
                 int main(void) {{ char b[64]; snprintf(b, sizeof b, \"probe {p}\"); return (int)strlen(b) == 0; }}\n"
            ),
        )?;
    }
    fs::write(
        work.join("pc-bios/bios-256k.bin"),
        pseudo_random(0xb105, 64 * 1024),
    )?;
    // As in QEMU, roms/* are submodules on other hosts; build.sh never
    // initialises them and neither should snp-build (fetching them fails
    // offline). The gitlink points at a commit that only exists there.
    fs::write(
        work.join(".gitmodules"),
        "[submodule \"roms/seabios\"]\n\tpath = roms/seabios\n\turl = https://gitlab.com/qemu-project/seabios.git/\n",
    )?;
    git.run(&["add", "-A", "."])?;
    git.run(&[
        "update-index",
        "--add",
        "--cacheinfo",
        "160000,a6ed6b701f0a57db0569ab98b0661c12a6ec3ff8,roms/seabios",
    ])?;
    git.commit_all("Update version for v9.1.0 release (snp-build fixture import)")?;
    append_function(&work.join("hw/i386/pc.c"), "pc_fixture_master")?;
    git.commit_all("hw/i386: tidy up pc machine init (fixture)")?;
    git.run(&["tag", "-a", "v9.1.0", "-m", "v9.1.0 (fixture)"])?;
    git.run(&["checkout", "-q", "-b", "snp-latest", "master"])?;
    append_function(&work.join("target/i386/sev.c"), "sev_snp_launch_start")?;
    git.commit_all("i386/sev: Add SEV-SNP launch start (fixture)")?;
    append_function(&work.join("target/i386/sev.c"), "sev_snp_launch_finish")?;
    git.commit_all("i386/sev: Add SEV-SNP launch finish (fixture)")?;
    git.run(&["checkout", "-q", "master"])?;
    publish(work, bare)
}

fn make_brotli(work: &Path, bare: &Path) -> Result<()> {
    let mut git = Git::init(work)?;
    copy_tree(&tree_source("edk2-brotli"), work)?;
    git.commit_all("Brotli 1.0.9 (snp-build fixture import)")?;
    append_function(&work.join("c/dec/decode.c"), "BrotliFixtureFix")?;
    git.commit_all("dec: fix a corner case (fixture)")?;
    publish(work, bare)
}

fn make_edk2(work: &Path, bare: &Path, submodule: &Path) -> Result<()> {
    let mut git = Git::init(work)?;
    copy_tree(&tree_source("edk2"), work)?;
    git.run(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        &file_url(submodule),
        OVMF_SUBMODULE_PATH,
    ])?;
    git.commit_all("edk2-stable202408 (snp-build fixture import)")?;
    append_function(
        &work.join("MdeModulePkg/Core/Dxe/DxeMain.c"),
        "DxeFixtureMaster",
    )?;
    git.commit_all("MdeModulePkg/Core/Dxe: tidy up (fixture)")?;
    git.run(&[
        "tag",
        "-a",
        "edk2-stable202408",
        "-m",
        "edk2-stable202408 (fixture)",
    ])?;
    git.run(&["checkout", "-q", "-b", "snp-latest", "master"])?;
    append_function(
        &work.join("OvmfPkg/PlatformPei/AmdSev.c"),
        "AmdSevSnpInitialize",
    )?;
    git.commit_all("OvmfPkg/PlatformPei: SEV-SNP setup (fixture)")?;
    append_function(
        &work.join("OvmfPkg/AmdSev/SecretDxe/SecretDxe.c"),
        "SecretDxeSnp",
    )?;
    git.commit_all("OvmfPkg/AmdSev: SNP secrets page (fixture)")?;
    git.run(&["checkout", "-q", "master"])?;
    publish(work, bare)
}

/// Bare copy of `work` at `bare` (one pack), serving any SHA.
fn publish(work: &Path, bare: &Path) -> Result<()> {
    remove_if_exists(bare)?;
    let git = Git::new(work);
    git.run(&[
        "clone",
        "-q",
        "--bare",
        "--no-local",
        path_str(work)?,
        path_str(bare)?,
    ])?;
    let bare_git = Git::new(bare);
    bare_git.run(&["remote", "remove", "origin"])?;
    bare_git.run(&["config", "uploadpack.allowAnySHA1InWant", "true"])?;
    bare_git.run(&["config", "uploadpack.allowReachableSHA1InWant", "true"])?;
    bare_git.run(&["config", "uploadpack.allowFilter", "true"])?;
    // What `git daemon` needs to serve a repository without --export-all.
    fs::write(bare.join("git-daemon-export-ok"), "")?;
    Ok(())
}

// ------------------------------------------------------- generated files

/// Deterministic incompressible bytes (splitmix64 of `seed`).
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef_cafe_f00d;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `'gen_000.c', 'gen_001.c', ...`: the first `n` filler files, as a
/// meson list's items.
fn quoted_list(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|f| format!("'{prefix}{f:03}.c'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `<dir>/gen_NNN.c`: filler sources that give a build its size (compile
/// time grows with the number of functions); `include` brings
/// `fixture_mix`. The kernel's are `drivers/fixture/`, QEMU's `generated/`.
fn write_fillers(
    dir: &Path,
    shown: &str,
    include: &str,
    files: usize,
    functions: usize,
) -> Result<()> {
    fs::create_dir_all(dir)?;
    for f in 0..files {
        let mut src = format!(
            "// SPDX-License-Identifier: GPL-2.0\n\
             /* {shown}/gen_{f:03}.c: generated by cargo xtask fixtures. */\n\
             {include}\n\n"
        );
        for n in 0..functions {
            write!(
                src,
                "unsigned long fixture_{f}_{n}(const unsigned long *v, unsigned long len)\n\
                 {{\n\
                 \tunsigned long i, acc = {seed}UL;\n\
                 \tunsigned long tab[32];\n\n\
                 \tfor (i = 0; i < 32; i++)\n\
                 \t\ttab[i] = fixture_mix(i * {seed}UL, {n});\n\
                 \tfor (i = 0; i < len; i++) {{\n\
                 \t\tswitch ((v[i] ^ acc) & 7) {{\n\
                 \t\tcase 0: acc += tab[v[i] & 31]; break;\n\
                 \t\tcase 1: acc ^= fixture_mix(v[i], {f}); break;\n\
                 \t\tcase 2: acc = (acc << 7) | (acc >> 57); break;\n\
                 \t\tcase 3: acc -= tab[(acc >> 3) & 31] * v[i]; break;\n\
                 \t\tcase 4: acc *= 0x2545f4914f6cdd1dUL; break;\n\
                 \t\tcase 5: tab[i & 31] ^= acc; break;\n\
                 \t\tdefault: acc += v[i] / (tab[i & 31] | 1); break;\n\
                 \t\t}}\n\
                 \t}}\n\
                 \treturn acc;\n\
                 }}\n\n",
                seed = (f * 1000 + n) as u64 * 2_654_435_761 % 1_000_000_007,
            )?;
        }
        fs::write(dir.join(format!("gen_{f:03}.c")), src)?;
    }
    Ok(())
}

/// Append a small C function named `name` to a source file.
fn append_function(path: &Path, name: &str) -> Result<()> {
    let mut text =
        fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    write!(
        text,
        "\nunsigned long {name}(unsigned long x)\n{{\n\treturn x * 2862933555777941757UL + 3037000493UL;\n}}\n"
    )?;
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Copy a fixture tree into a work tree. Modes are set from content, not
/// taken from the checkout: files starting with `#!` are executable.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = fs::read_dir(from)
        .with_context(|| format!("reading {}", from.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let src = entry.path();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            fs::create_dir_all(&dest)?;
            copy_tree(&src, &dest)?;
        } else if kind.is_file() {
            let data = fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
            fs::write(&dest, &data).with_context(|| format!("writing {}", dest.display()))?;
            let mode = if data.starts_with(b"#!") {
                0o755
            } else {
                0o644
            };
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path is not UTF-8: {}", path.display()))
}

// ------------------------------------------------------------------ git

/// The git CLI in one directory, isolated from the user's configuration,
/// with a fixed identity and a clock that advances one hour per commit.
struct Git {
    dir: PathBuf,
    /// Unix time of the next commit.
    time: i64,
}

/// 2024-01-01T00:00:00Z: the first fixture commit.
const EPOCH: i64 = 1_704_067_200;

impl Git {
    fn new(dir: &Path) -> Git {
        Git {
            dir: dir.to_path_buf(),
            time: EPOCH,
        }
    }

    fn init(dir: &Path) -> Result<Git> {
        fs::create_dir_all(dir)?;
        let git = Git::new(dir);
        git.run(&["init", "-q", "--initial-branch=master", "."])?;
        Ok(git)
    }

    fn commit_all(&mut self, message: &str) -> Result<()> {
        self.run(&["add", "-A", "."])?;
        self.run(&["commit", "-q", "--no-verify", "-m", message])?;
        self.time += 3600;
        Ok(())
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let date = format!("{} +0000", self.time);
        let out = Command::new("git")
            .args(["-c", "core.autocrlf=false", "-c", "commit.gpgsign=false"])
            .args(["-c", "tag.gpgsign=false", "-c", "core.fileMode=true"])
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Fixture Author")
            .env("GIT_AUTHOR_EMAIL", "fixture@snp-build.invalid")
            .env("GIT_COMMITTER_NAME", "Fixture Committer")
            .env("GIT_COMMITTER_EMAIL", "fixture@snp-build.invalid")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .context("running git (is it installed?)")?;
        ensure!(
            out.status.success(),
            "git {} (in {}) failed with {}:\n{}{}",
            args.join(" "),
            self.dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_is_deterministic_and_sized() {
        assert_eq!(pseudo_random(3, 1000), pseudo_random(3, 1000));
        assert_ne!(pseudo_random(3, 64), pseudo_random(4, 64));
        assert_eq!(pseudo_random(1, 13).len(), 13);
    }

    #[test]
    fn size_parses() {
        assert_eq!("small".parse::<Size>().unwrap(), Size::Small);
        assert_eq!("bench".parse::<Size>().unwrap(), Size::Bench);
        assert!("huge".parse::<Size>().is_err());
    }
}
