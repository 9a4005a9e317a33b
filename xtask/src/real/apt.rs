//! apt, as `real-sources` uses it: where source packages come from (the
//! machine's own apt sources with deb-src twins, or a private
//! configuration under DIR that leaves the machine's apt alone), and
//! fetching a source package's tree or a binary package.
//!
//! Guarantees:
//! - No host name is written into this repository: every URI comes from
//!   the machine's own apt sources.
//! - A private configuration ([`Apt::private`]) changes nothing outside
//!   its directory: its own sources list, lists and cache
//!   (`Dir::Etc::sourcelist`, `Dir::Etc::sourceparts=/nonexistent`,
//!   `Dir::State::Lists`, `Dir::Cache`); nothing is installed from it.
//! - A source package's files are checked against the SHA-256 sums of the
//!   signed index (`apt-cache showsrc`) before they are unpacked, also
//!   when the mirror serves no `.dsc` and the tree is put together by hand
//!   (as `dpkg-source -x` would: the upstream tarball, the `debian/`
//!   tarball, then every patch of `debian/patches/series` with no fuzz).

use anyhow::{Context, Result, ensure};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{run_ok, run_visible};

/// The deb-src entries the `amd` stack writes (deb822 and one-line forms).
const APT_DEB822: &str = "/etc/apt/sources.list.d/snp-build-src.sources";
const APT_ONE_LINE: &str = "/etc/apt/sources.list.d/snp-build-src.list";

/// The key Debian's archives are signed with (package
/// `debian-archive-keyring`; it carries the keys of the next release too).
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// How apt is run: with the machine's configuration, or with `-o`
/// options that point it at a private one.
pub(super) struct Apt {
    options: Vec<String>,
}

impl Apt {
    /// The machine's apt, with deb-src twins of its `deb` entries (added
    /// under `/etc/apt/sources.list.d/` unless deb-src entries exist), then
    /// `apt-get update`.
    pub(super) fn machine() -> Result<Apt> {
        enable_deb_src()?;
        let apt = Apt {
            options: Vec::new(),
        };
        apt.update()?;
        Ok(apt)
    }

    /// A private apt under `dir` (made if missing): `deb-src` entries for
    /// `src_suite` of the machine's Debian mirror and a `deb` entry for
    /// `deb_suite` (e.g. `bookworm-security`) of the machine's security
    /// mirror, then `apt-get update` of that configuration alone.
    pub(super) fn private(dir: &Path, src_suite: &str, deb_suite: &str) -> Result<Apt> {
        let (main, security) = machine_mirrors()?;
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let list = dir.join("sources.list");
        let mirror = if deb_suite.ends_with("-security") {
            &security
        } else {
            &main
        };
        let text = format!(
            "# A private apt configuration of `cargo xtask real-sources` (snp-build); the\n\
             # URIs are the machine's own mirrors. The machine's apt sources are untouched.\n\
             deb-src [signed-by={DEBIAN_KEYRING}] {main} {src_suite} main\n\
             deb [signed-by={DEBIAN_KEYRING}] {mirror} {deb_suite} main\n"
        );
        fs::write(&list, text).with_context(|| format!("writing {}", list.display()))?;
        let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
        let apt = Apt {
            options: vec![
                opt("Dir::Etc::sourcelist", &list),
                "Dir::Etc::sourceparts=/nonexistent".into(),
                opt("Dir::State::Lists", &dir.join("lists")),
                opt("Dir::Cache", &dir.join("cache")),
                // Downloads land in DIR, which the `_apt` user may not
                // reach: fetch as root without the warning.
                "APT::Sandbox::User=root".into(),
            ],
        };
        eprintln!(
            "real-sources: private apt configuration in {}",
            dir.display()
        );
        apt.update()?;
        Ok(apt)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        for o in &self.options {
            cmd.arg("-o").arg(o);
        }
        cmd
    }

    fn update(&self) -> Result<()> {
        eprintln!("real-sources: apt-get update");
        run_visible(self.command("apt-get").args(["update", "-q"]))
    }

    /// The tree of source package `package` in `src` (Debian's patches
    /// applied), fetched if no unpacked tree is there yet.
    pub(super) fn source(&self, src: &Path, package: &str) -> Result<PathBuf> {
        if let Some(tree) = unpacked(src, package)? {
            eprintln!("real-sources: {package}: reusing {}", tree.display());
            return Ok(tree);
        }
        eprintln!("real-sources: apt-get source --download-only {package}");
        // A mirror may miss one file (seen here: trixie's edk2 `.dsc`
        // answered 404 while its tarballs were served); apt then fails
        // but keeps what it fetched, each file checked against the index.
        let fetched = self
            .command("apt-get")
            .args(["source", "--download-only", "-q", package])
            .current_dir(src)
            .status()
            .with_context(|| format!("running apt-get source {package}"))?;
        let sums = self.source_sums(package)?;
        if let Some(dsc) = newest(src, &format!("{package}_"), ".dsc")? {
            check_sum(&dsc, &sums)?;
            run_visible(
                Command::new("dpkg-source")
                    .arg("-x")
                    .arg(&dsc)
                    .current_dir(src),
            )?;
        } else {
            ensure!(
                newest(src, &format!("{package}_"), ".debian.tar.xz")?.is_some(),
                "apt-get source {package} failed ({fetched}) and fetched no debian tarball"
            );
            eprintln!(
                "real-sources: {package}: the mirror served no .dsc; unpacking the tarballs \
                 and applying debian/patches/series as dpkg-source would"
            );
            unpack_without_dsc(src, package, &sums)?;
        }
        unpacked(src, package)?
            .with_context(|| format!("{package} unpacked no {package}-*/ directory"))
    }

    /// The SHA-256 of every file of `package`'s source records (every
    /// version the index lists), by file name.
    fn source_sums(&self, package: &str) -> Result<BTreeMap<String, String>> {
        let text = run_ok(self.command("apt-cache").args(["showsrc", package]))?;
        let mut sums = BTreeMap::new();
        let mut in_sums = false;
        for line in text.lines() {
            if !line.starts_with(' ') {
                in_sums = line.starts_with("Checksums-Sha256:");
                continue;
            }
            if in_sums {
                let f: Vec<&str> = line.split_whitespace().collect();
                if let [sha, _size, name] = f[..] {
                    sums.insert(name.to_string(), sha.to_string());
                }
            }
        }
        ensure!(
            !sums.is_empty(),
            "apt-cache showsrc {package}: no Checksums-Sha256"
        );
        Ok(sums)
    }

    /// The binary package `package`'s `.deb` in `src`, downloaded unless
    /// one is there (`apt-get download`: fetched, not installed).
    pub(super) fn download(&self, src: &Path, package: &str) -> Result<PathBuf> {
        let prefix = format!("{package}_");
        if let Some(deb) = newest(src, &prefix, ".deb")? {
            return Ok(deb);
        }
        eprintln!("real-sources: apt-get download {package}");
        run_visible(
            self.command("apt-get")
                .args(["download", "-q", package])
                .current_dir(src),
        )?;
        newest(src, &prefix, ".deb")?
            .with_context(|| format!("apt-get download {package} left no .deb"))
    }
}

/// The last (by name) file in `dir` named `PREFIX...SUFFIX`.
fn newest(dir: &Path, prefix: &str, suffix: &str) -> Result<Option<PathBuf>> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(prefix) && n.ends_with(suffix)
            })
        })
        .collect();
    found.sort();
    Ok(found.pop())
}

fn check_sum(file: &Path, sums: &BTreeMap<String, String>) -> Result<()> {
    let name = file
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let want = sums
        .get(&name)
        .with_context(|| format!("{name} is not in the index's Checksums-Sha256"))?;
    let out = run_ok(Command::new("sha256sum").arg(file))?;
    let got = out.split_whitespace().next().unwrap_or("");
    ensure!(
        got == want,
        "{}: SHA-256 {got}, the index says {want}",
        file.display()
    );
    Ok(())
}

/// What `dpkg-source -x` does for a `3.0 (quilt)` package, from the files
/// apt fetched: `PACKAGE_V.debian.tar.xz` and `PACKAGE_U.orig.tar.*`
/// (each checked against `sums`) into `PACKAGE-U/`, then the series.
fn unpack_without_dsc(src: &Path, package: &str, sums: &BTreeMap<String, String>) -> Result<()> {
    let debian =
        newest(src, &format!("{package}_"), ".debian.tar.xz")?.context("no debian tarball")?;
    let name = debian.file_name().unwrap_or_default().to_string_lossy();
    let version = name
        .strip_prefix(&format!("{package}_"))
        .and_then(|v| v.strip_suffix(".debian.tar.xz"))
        .unwrap_or_default()
        .to_string();
    let upstream = version
        .rsplit_once('-')
        .map_or(version.as_str(), |(u, _)| u)
        .to_string();
    let orig = newest(src, &format!("{package}_{upstream}.orig.tar."), "")?
        .with_context(|| format!("no {package}_{upstream}.orig.tar.* beside {name}"))?;
    check_sum(&debian, sums)?;
    check_sum(&orig, sums)?;
    let tree = src.join(format!("{package}-{upstream}"));
    super::remove(&tree)?;
    fs::create_dir_all(&tree)?;
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&orig)
            .arg("--strip-components=1")
            .arg("-C")
            .arg(&tree),
    )?;
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&debian)
            .arg("-C")
            .arg(&tree),
    )?;
    let series = fs::read_to_string(tree.join("debian/patches/series")).unwrap_or_default();
    let mut applied = 0;
    for patch in series
        .lines()
        .filter_map(|l| l.split('#').next()?.split_whitespace().next())
    {
        // dpkg-source's own flags: no fuzz, no backups, no reject files.
        run_ok(
            Command::new("patch")
                .args([
                    "-s", "-t", "-F", "0", "-N", "-p1", "-u", "-V", "never", "-E",
                ])
                .args(["--no-backup-if-mismatch", "--reject-file=-", "-i"])
                .arg(Path::new("debian/patches").join(patch))
                .current_dir(&tree),
        )
        .with_context(|| format!("{package}: applying debian/patches/{patch}"))?;
        applied += 1;
    }
    eprintln!(
        "real-sources: {package}: unpacked {} with {applied} patches",
        tree.display()
    );
    Ok(())
}

/// The host tools `real-sources` itself runs.
pub(super) fn need_tools() -> Result<()> {
    let mut missing = Vec::new();
    for (program, package) in [
        ("dpkg-source", "dpkg-dev"),
        ("xz", "xz-utils"),
        ("git", "git"),
        ("patch", "patch"),
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

/// The machine's apt source files apt reads (`sources.list`, `*.list`,
/// `*.sources`), with their text; the deb-src twins this module writes
/// are left out.
fn machine_source_files() -> Vec<(PathBuf, String)> {
    let mut files: Vec<PathBuf> = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files
        .into_iter()
        .filter(|f| f != Path::new(APT_DEB822) && f != Path::new(APT_ONE_LINE))
        .filter(|f| {
            // apt ignores other names (e.g. *.disabled): so do we.
            f.file_name().is_some_and(|n| n == "sources.list")
                || f.extension().is_some_and(|e| e == "list" || e == "sources")
        })
        .filter_map(|f| Some((f.clone(), fs::read_to_string(&f).ok()?)))
        .collect()
}

/// The machine's enabled `deb` entries as (URI, suites).
fn machine_deb_entries() -> Vec<(String, Vec<String>)> {
    let mut entries = Vec::new();
    for (file, text) in machine_source_files() {
        if file.extension().is_some_and(|e| e == "sources") {
            for stanza in deb822_stanzas(&text) {
                let field = |name: &str| {
                    stanza
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                if field("Enabled").eq_ignore_ascii_case("no")
                    || !field("Types").split_whitespace().any(|t| t == "deb")
                {
                    continue;
                }
                let suites: Vec<String> = field("Suites")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                for uri in field("URIs").split_whitespace() {
                    entries.push((uri.to_string(), suites.clone()));
                }
            }
        } else {
            for line in text.lines().map(str::trim) {
                let Some(rest) = line.strip_prefix("deb ") else {
                    continue;
                };
                // Drop an `[option=value ...]` block.
                let rest = match rest.trim_start().strip_prefix('[') {
                    Some(r) => r.split_once(']').map_or("", |(_, r)| r),
                    None => rest,
                };
                let mut words = rest.split_whitespace();
                if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
                    entries.push((uri.to_string(), vec![suite.to_string()]));
                }
            }
        }
    }
    entries
}

/// The machine's Debian mirror and its security mirror: the URI of an
/// entry with a plain release suite (`bookworm`), and of one with a
/// `-security` suite (or, without one, the mirror's `/debian` path with
/// `/debian-security`).
fn machine_mirrors() -> Result<(String, String)> {
    let entries = machine_deb_entries();
    let main = entries
        .iter()
        .find(|(uri, suites)| {
            uri.trim_end_matches('/').ends_with("/debian")
                && suites.iter().any(|s| !s.contains('-'))
        })
        .map(|(uri, _)| uri.trim_end_matches('/').to_string())
        .context(
            "no enabled Debian `deb` entry (a `/debian` URI with a release suite) in \
             /etc/apt/sources.list or /etc/apt/sources.list.d/ to take the mirror from",
        )?;
    let security = entries
        .iter()
        .find(|(_, suites)| suites.iter().any(|s| s.ends_with("-security")))
        .map(|(uri, _)| uri.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("{main}-security"));
    Ok((main, security))
}

/// The stanzas of a deb822 file as (field, value) lists, comments
/// dropped, continuation lines joined.
fn deb822_stanzas(text: &str) -> Vec<Vec<(String, String)>> {
    let mut stanzas = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = fields.last_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if !fields.is_empty() {
            stanzas.push(fields);
        }
    }
    stanzas
}

/// Writes deb-src twins of the machine's enabled `deb` entries (same URIs,
/// suites, components and keys), unless deb-src entries exist already.
fn enable_deb_src() -> Result<()> {
    let mut deb822 = String::new();
    let mut one_line = String::new();
    let mut have_src = false;
    for (file, text) in machine_source_files() {
        if file.extension().is_some_and(|e| e == "sources") {
            let (twins, src) = deb822_twins(&text);
            have_src |= src;
            deb822.push_str(&twins);
        } else {
            let (twins, src) = one_line_twins(&text);
            have_src |= src;
            one_line.push_str(&twins);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_stanzas_join_continuations_and_drop_comments() {
        let text = "# a comment\nTypes: deb\nURIs: http://mirror.invalid/debian\n\
                    Suites: bookworm\n bookworm-updates\nComponents: main\n\n\
                    Types: deb-src\nURIs: http://mirror.invalid/debian\nSuites: bookworm\n";
        let stanzas = deb822_stanzas(text);
        assert_eq!(stanzas.len(), 2);
        assert!(stanzas[0].contains(&("Suites".into(), "bookworm bookworm-updates".into())));
        assert_eq!(stanzas[1][0], ("Types".into(), "deb-src".into()));
    }

    #[test]
    fn twins_copy_deb_entries_as_deb_src() {
        let (twins, have_src) =
            one_line_twins("deb [signed-by=/k.gpg] http://mirror.invalid/debian bookworm main\n");
        assert!(!have_src);
        assert_eq!(
            twins,
            "deb-src [signed-by=/k.gpg] http://mirror.invalid/debian bookworm main\n"
        );
    }
}
