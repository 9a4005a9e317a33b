//! The Debian package `cargo xtask dist` builds beside the release binary:
//! `snp-build_<version>_amd64.deb` with the binary, its bash, zsh and fish
//! completions, its man pages and its copyright file, at Debian's paths.
//!
//! Built with Debian's own `dpkg-deb --root-owner-group --build` from a
//! staged tree, not cargo-deb: dpkg-deb is on every Debian and Ubuntu
//! (CI needs no new install and no network), and the control file is a
//! dozen lines. The completions and man pages come from the binary being
//! packaged (`snp-build completions SHELL`, `snp-build man --dir`), so
//! the package cannot describe another command line than the one it ships.
//!
//! Reproducible: the same binary and `SOURCE_DATE_EPOCH` give the same
//! bytes, whatever the directory, umask or time of the build. Every
//! staged file gets a fixed mode and the epoch as its mtime, the man
//! pages are `gzip -n` (no name, no time), and dpkg-deb takes the epoch
//! for its ar members (its tar members are sorted, owned by root). xz's
//! output does not depend on its thread count (checked: 1 and 2 threads
//! give the same bytes), so no `--threads-max` (dpkg 1.21.9+) is needed.

use anyhow::{Context, Result, bail, ensure};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Where each shell looks for a package's completions on Debian (the
/// bash-completion, zsh and fish packages' vendor directories), and the
/// file name it expects there.
pub const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "usr/share/bash-completion/completions/snp-build"),
    ("zsh", "usr/share/zsh/vendor-completions/_snp-build"),
    ("fish", "usr/share/fish/vendor_completions.d/snp-build.fish"),
];

/// Where the binary, the man pages and the copyright file go.
pub const BINARY: &str = "usr/bin/snp-build";
pub const MAN_DIR: &str = "usr/share/man/man1";
pub const COPYRIGHT: &str = "usr/share/doc/snp-build/copyright";

/// The package's licence and copyright, in Debian's machine-readable
/// format (what `/usr/share/doc/<package>/copyright` must be).
const COPYRIGHT_TEXT: &str = include_str!("../debian/copyright");

/// What the package says of itself, from the root Cargo.toml.
#[derive(Debug)]
pub struct Meta {
    pub version: String,
    pub maintainer: String,
    pub section: String,
    pub synopsis: String,
    pub description: String,
}

impl Meta {
    /// `[package]` and `[package.metadata.deb]` of the workspace root's
    /// Cargo.toml.
    pub fn read() -> Result<Meta> {
        let path = crate::report::workspace_root().join("Cargo.toml");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Meta::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    fn parse(text: &str) -> Result<Meta> {
        let doc: toml::Table = text.parse()?;
        let package = doc
            .get("package")
            .and_then(|p| p.as_table())
            .context("no [package]")?;
        let field = |table: &toml::Table, key: &str, name: &str| -> Result<String> {
            table
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .with_context(|| format!("no `{key}` in {name}"))
        };
        let deb = package
            .get("metadata")
            .and_then(|m| m.get("deb"))
            .and_then(|d| d.as_table())
            .context("no [package.metadata.deb]")?;
        let meta = Meta {
            version: field(package, "version", "[package]")?,
            description: field(package, "description", "[package]")?,
            maintainer: field(deb, "maintainer", "[package.metadata.deb]")?,
            section: field(deb, "section", "[package.metadata.deb]")?,
            synopsis: field(deb, "synopsis", "[package.metadata.deb]")?,
        };
        ensure!(
            meta.synopsis.len() <= 80,
            "synopsis is {} characters, Debian's limit is 80",
            meta.synopsis.len()
        );
        Ok(meta)
    }
}

/// The package a shared library the binary needs comes from, on Debian
/// and Ubuntu: the whole of [`crate::elf::ALLOWED`].
fn package_of(soname: &str) -> Option<&'static str> {
    match soname {
        "libgcc_s.so.1" => Some("libgcc-s1"),
        s if crate::elf::ALLOWED.contains(&s) => Some("libc6"),
        _ => None,
    }
}

/// `Depends:` for a binary that needs `needed` (its `NEEDED` entries):
/// libc6 at the oldest glibc `dist` supports, and libgcc-s1 when the
/// unwinder is needed. A library outside the allow-list is an error
/// (`dist` refuses such a binary first).
pub fn depends(needed: &[String]) -> Result<String> {
    let mut packages: Vec<&str> = Vec::new();
    for soname in needed {
        let package = package_of(soname).with_context(|| {
            format!("{soname} is not in xtask::elf::ALLOWED: no Debian package for it")
        })?;
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    packages.sort();
    let (major, minor) = crate::elf::OLDEST_GLIBC;
    Ok(packages
        .iter()
        .map(|p| match *p {
            "libc6" => format!("libc6 (>= {major}.{minor})"),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", "))
}

/// `SOURCE_DATE_EPOCH` when set (a distribution's builder sets it), else
/// the time of the checked-out commit: the same for everyone who builds
/// that commit.
pub fn source_date_epoch() -> Result<u64> {
    if let Some(v) = std::env::var_os("SOURCE_DATE_EPOCH") {
        let v = v.to_string_lossy();
        return v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v} is not a number of seconds"));
    }
    let out = Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(crate::report::workspace_root())
        .output()
        .context("running git log (for the package's timestamps)")?;
    ensure!(
        out.status.success(),
        "git log -1 failed (set SOURCE_DATE_EPOCH outside a git checkout): {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("git log -1 --format=%ct said {text:?}"))
}

/// Debian's architecture name for the machine cargo built for (the
/// binary is built for the host).
fn architecture() -> Result<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        other => bail!("the .deb is amd64 only; this machine is {other}"),
    }
}

/// Builds `<out_dir>/snp-build_<version>_amd64.deb` from the binary `bin`
/// (which must say it is `version`) and returns its path. The file
/// appears whole or not at all (built under a temporary name, renamed).
pub fn build(bin: &Path, out_dir: &Path) -> Result<PathBuf> {
    let meta = Meta::read()?;
    let epoch = source_date_epoch()?;
    let arch = architecture()?;
    let said = run_stdout(Command::new(bin).arg("--version"))?;
    ensure!(
        said.trim() == format!("snp-build {}", meta.version),
        "{} says {:?}, Cargo.toml says version {}: rebuild it",
        bin.display(),
        said.trim(),
        meta.version
    );
    let depends = depends(&crate::elf::needed_libraries(bin)?)?;

    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let name = format!("snp-build_{}_{arch}", meta.version);
    let stage = out_dir.join(format!(".{name}.staging"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let result = stage_and_pack(bin, &stage, out_dir, &name, &meta, arch, &depends, epoch);
    let _ = fs::remove_dir_all(&stage);
    result
}

#[allow(clippy::too_many_arguments)]
fn stage_and_pack(
    bin: &Path,
    stage: &Path,
    out_dir: &Path,
    name: &str,
    meta: &Meta,
    arch: &str,
    depends: &str,
    epoch: u64,
) -> Result<PathBuf> {
    // The binary, stripped as Debian's dh_strip does: a smaller package
    // and what Debian's own binaries are. A panic still says where (its
    // location is compiled in); only a backtrace loses function names.
    fs::create_dir(stage).with_context(|| format!("creating {}", stage.display()))?;
    set_mode(stage, 0o755)?;
    let shipped = mkdir(stage, Path::new(BINARY).parent().unwrap())?.join("snp-build");
    run(Command::new("strip")
        .args([
            "--remove-section=.comment",
            "--remove-section=.note",
            "--strip-unneeded",
            "-o",
        ])
        .arg(&shipped)
        .arg(bin))
    .context("(Debian: binutils)")?;
    set_mode(&shipped, 0o755)?;

    // Completions and man pages, from the stripped binary itself.
    for (shell, path) in COMPLETIONS {
        let script = run_stdout(Command::new(&shipped).args(["completions", shell]))?;
        ensure!(
            script.contains("snp-build"),
            "{shell} completion names no snp-build"
        );
        write(stage, path, script.as_bytes())?;
    }
    let man = mkdir(stage, Path::new(MAN_DIR))?;
    run(Command::new(&shipped).arg("man").arg("--dir").arg(&man))?;
    let mut pages: Vec<PathBuf> = fs::read_dir(&man)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    pages.sort();
    ensure!(
        pages.iter().any(|p| p.ends_with("snp-build.1")),
        "snp-build man --dir wrote no snp-build.1"
    );
    for page in &pages {
        set_mode(page, 0o644)?;
        // -n: no file name or time in the header; -9 as dh_compress.
        run(Command::new("gzip").arg("-9n").arg(page))?;
    }
    write(stage, COPYRIGHT, COPYRIGHT_TEXT.as_bytes())?;

    // DEBIAN/: md5sums of every shipped file (what `dpkg --verify`
    // checks), then control, whose Installed-Size counts what is staged.
    let files = shipped_files(stage)?;
    let mut md5sums = run_stdout(Command::new("md5sum").args(&files).current_dir(stage))?;
    if !md5sums.ends_with('\n') {
        md5sums.push('\n');
    }
    let control = control(meta, arch, depends, installed_size_kib(stage)?);
    write(stage, "DEBIAN/md5sums", md5sums.as_bytes())?;
    write(stage, "DEBIAN/control", control.as_bytes())?;

    // Every mtime the epoch, files first, then directories deepest first
    // (writing into a directory moves its mtime).
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch);
    let mut all: Vec<PathBuf> = vec![stage.to_path_buf()];
    collect(stage, &mut all)?;
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for path in &all {
        fs::File::open(path)
            .and_then(|f| f.set_times(fs::FileTimes::new().set_accessed(when).set_modified(when)))
            .with_context(|| format!("setting the mtime of {}", path.display()))?;
    }

    let deb = out_dir.join(format!("{name}.deb"));
    let tmp = out_dir.join(format!(".{name}.deb.tmp"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(stage)
        .arg(&tmp)
        .env("SOURCE_DATE_EPOCH", epoch.to_string()))
    .context("(Debian: dpkg)")?;
    fs::rename(&tmp, &deb).with_context(|| format!("renaming into {}", deb.display()))?;
    Ok(deb)
}

/// DEBIAN/control.
fn control(meta: &Meta, arch: &str, depends: &str, installed_kib: u64) -> String {
    let long = format!(
        "{}. Includes bash, zsh and fish completions and the man pages.",
        meta.description.trim_end_matches('.')
    );
    format!(
        "Package: snp-build\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {maintainer}\n\
         Installed-Size: {installed_kib}\n\
         Depends: {depends}\n\
         Section: {section}\n\
         Priority: optional\n\
         Description: {synopsis}\n{long}",
        version = meta.version,
        maintainer = meta.maintainer,
        section = meta.section,
        synopsis = meta.synopsis,
        long = continuation_lines(&long),
    )
}

/// `text` as a field's continuation lines: each begins with a space and
/// keeps within 80 columns (lintian's limit for a description), words
/// unbroken.
fn continuation_lines(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 79 {
            out.push_str(&format!(" {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!(" {line}\n"));
    }
    out
}

/// What dpkg-gencontrol writes as Installed-Size: each file's size in KiB
/// rounded up, and 1 KiB for each directory, DEBIAN/ left out.
fn installed_size_kib(stage: &Path) -> Result<u64> {
    let mut all = Vec::new();
    collect(stage, &mut all)?;
    let mut kib = 0;
    for path in all {
        if path.strip_prefix(stage)?.starts_with("DEBIAN") {
            continue;
        }
        let meta = fs::symlink_metadata(&path)?;
        kib += if meta.is_file() {
            meta.len().div_ceil(1024)
        } else {
            1
        };
    }
    Ok(kib)
}

/// Every path under `dir` (not `dir` itself), depth first.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        out.push(path.clone());
        if path.is_dir() {
            collect(&path, out)?;
        }
    }
    Ok(())
}

/// The regular files under `stage` but DEBIAN/, relative to it, sorted.
fn shipped_files(stage: &Path) -> Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    collect(stage, &mut all)?;
    let mut files: Vec<PathBuf> = all
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| p.strip_prefix(stage).unwrap().to_path_buf())
        .filter(|p| !p.starts_with("DEBIAN"))
        .collect();
    files.sort();
    Ok(files)
}

/// Makes `stage/rel` and every directory between, each 0755 whatever the
/// umask.
fn mkdir(stage: &Path, rel: &Path) -> Result<PathBuf> {
    let mut dir = stage.to_path_buf();
    for part in rel.components() {
        dir.push(part);
        if !dir.is_dir() {
            fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        set_mode(&dir, 0o755)?;
    }
    Ok(dir)
}

/// Writes the 0644 file `stage/rel` (its directories 0755).
fn write(stage: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    let rel = Path::new(rel);
    let path = mkdir(stage, rel.parent().unwrap())?.join(rel.file_name().unwrap());
    fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    set_mode(&path, 0o644)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

fn run(cmd: &mut Command) -> Result<()> {
    run_stdout(cmd).map(drop)
}

fn run_stdout(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{cmd:?} printed no UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_names_the_package_of_every_allowed_library() {
        let all: Vec<String> = crate::elf::ALLOWED.iter().map(|s| s.to_string()).collect();
        assert_eq!(depends(&all).unwrap(), "libc6 (>= 2.35), libgcc-s1");
        assert_eq!(
            depends(&["libc.so.6".into(), "libm.so.6".into()]).unwrap(),
            "libc6 (>= 2.35)"
        );
        assert!(depends(&["libssl.so.3".into()]).is_err());
    }

    #[test]
    fn the_workspace_cargo_toml_describes_the_package() {
        let meta = Meta::read().unwrap();
        assert!(!meta.version.is_empty());
        assert!(meta.maintainer.contains('<') && meta.maintainer.ends_with('>'));
        let control = control(&meta, "amd64", "libc6 (>= 2.35)", 42);
        assert!(control.contains("\nInstalled-Size: 42\n"), "{control}");
        // Every continuation line of the description starts with a space
        // and fits in 80 columns; no word is lost.
        let desc = control.split("Description: ").nth(1).unwrap();
        let long: Vec<&str> = desc.lines().skip(1).collect();
        assert!(long.len() >= 2, "{control}");
        for line in &long {
            assert!(line.starts_with(' ') && line.len() > 1, "{control}");
            assert!(line.len() <= 80, "{line}");
        }
        assert_eq!(
            long.concat().split_whitespace().collect::<Vec<_>>(),
            format!(
                "{}. Includes bash, zsh and fish completions and the man pages.",
                meta.description.trim_end_matches('.')
            )
            .split_whitespace()
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_long_synopsis_is_refused() {
        let text = format!(
            "[package]\nversion = \"1\"\ndescription = \"d\"\n[package.metadata.deb]\nmaintainer = \"m <m@x>\"\nsection = \"devel\"\nsynopsis = \"{}\"\n",
            "x".repeat(81)
        );
        assert!(Meta::parse(&text).is_err());
    }
}
