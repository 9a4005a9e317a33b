//! The host tools snp-build knows how to check.
//!
//! The pin file only *names* the tools each stage needs (`tools =
//! ["gcc", "nasm >= 2.15.01"]`); this catalog is the one place that knows
//! what a name means: how to find the tool, how to read its version, and
//! which package provides it on Debian and on Fedora.
//!
//! Guarantees:
//! - A [`Requirement`] names a catalog tool and at most one minimum version
//!   (`>=` followed by dotted numbers). Anything else is refused when the
//!   pin file is loaded, with the list of known names.
//! - Probing is cheap. A program is looked up on `PATH` without running
//!   it; it is run (its version flag, stdin closed) only when the
//!   requirement has a minimum version. A library is found by its header
//!   under the usual include directories, and its version read from its
//!   pkg-config file, without running pkg-config. Python modules cost one
//!   `python3 -c "import ..."`.
//! - Versions compare numerically part by part, missing parts being 0
//!   (`2.15.01` > `2.14.02`, `1.16` = `1.16.0` < `1.16.1`).

use std::cmp::Ordering;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::exec::Cmd;

/// One tool a stage may need.
#[derive(Debug)]
pub struct Tool {
    /// The name the pin file uses.
    pub name: &'static str,
    pub probe: Probe,
    /// The Debian package that provides it.
    pub debian: &'static str,
    /// The Fedora package that provides it.
    pub fedora: &'static str,
}

/// How a tool is found.
#[derive(Debug)]
pub enum Probe {
    /// A program on `PATH`; `version_args` make it print its version.
    Program {
        program: &'static str,
        version_args: &'static [&'static str],
    },
    /// A C library: a header under the include directories, and the
    /// pkg-config module that carries its version.
    Library {
        header: &'static str,
        pkg_config: &'static str,
    },
    /// Modules the `python3` on `PATH` must import.
    PythonModules { modules: &'static [&'static str] },
}

const fn program(
    name: &'static str,
    program: &'static str,
    version_args: &'static [&'static str],
    debian: &'static str,
    fedora: &'static str,
) -> Tool {
    Tool {
        name,
        probe: Probe::Program {
            program,
            version_args,
        },
        debian,
        fedora,
    }
}

const fn library(
    name: &'static str,
    header: &'static str,
    pkg_config: &'static str,
    debian: &'static str,
    fedora: &'static str,
) -> Tool {
    Tool {
        name,
        probe: Probe::Library { header, pkg_config },
        debian,
        fedora,
    }
}

const V: &[&str] = &["--version"];

/// Every tool a pin file may name, sorted by name.
pub const CATALOG: &[Tool] = &[
    program("bash", "bash", V, "bash", "bash"),
    program("bc", "bc", V, "bc", "bc"),
    program("binutils", "ld", V, "binutils", "binutils"),
    program("bison", "bison", V, "bison", "bison"),
    program("cpio", "cpio", V, "cpio", "cpio"),
    program("debhelper", "dh", V, "debhelper", "debhelper"),
    // dpkg-deb alone (no dpkg-buildpackage): what the fixture kernel uses.
    program("dpkg-deb", "dpkg-deb", V, "dpkg", "dpkg"),
    program("dpkg-dev", "dpkg-buildpackage", V, "dpkg-dev", "dpkg-dev"),
    library("fdt", "libfdt.h", "libfdt", "libfdt-dev", "libfdt-devel"),
    program("flex", "flex", V, "flex", "flex"),
    program("g++", "g++", &["-dumpfullversion"], "g++", "gcc-c++"),
    program("gcc", "gcc", &["-dumpfullversion"], "gcc", "gcc"),
    program("git", "git", V, "git", "git"),
    library(
        "glib",
        "glib-2.0/glib.h",
        "glib-2.0",
        "libglib2.0-dev",
        "glib2-devel",
    ),
    // iasl prints its version (a date, 20220331) for -v.
    program("iasl", "iasl", &["-v"], "acpica-tools", "acpica-tools"),
    program("kmod", "kmod", V, "kmod", "kmod"),
    library(
        "libelf",
        "gelf.h",
        "libelf",
        "libelf-dev",
        "elfutils-libelf-devel",
    ),
    library(
        "libssl",
        "openssl/ssl.h",
        "openssl",
        "libssl-dev",
        "openssl-devel",
    ),
    program("make", "make", V, "make", "make"),
    program("meson", "meson", V, "meson", "meson"),
    program("nasm", "nasm", &["-v"], "nasm", "nasm"),
    program("ninja", "ninja", V, "ninja-build", "ninja-build"),
    program("pahole", "pahole", V, "dwarves", "dwarves"),
    program("perl", "perl", &["-e", "print $^V"], "perl", "perl"),
    library(
        "pixman",
        "pixman-1/pixman.h",
        "pixman-1",
        "libpixman-1-dev",
        "pixman-devel",
    ),
    program(
        "pkg-config",
        "pkg-config",
        V,
        "pkg-config",
        "pkgconf-pkg-config",
    ),
    program("python3", "python3", V, "python3", "python3"),
    // Debian splits ensurepip (which `python3 -m venv` needs) out of the
    // standard library; Fedora's python3 has it.
    Tool {
        name: "python3-venv",
        probe: Probe::PythonModules {
            modules: &["venv", "ensurepip"],
        },
        debian: "python3-venv",
        fedora: "python3",
    },
    program("rpm-build", "rpmbuild", V, "rpm", "rpm-build"),
    program("rsync", "rsync", V, "rsync", "rsync"),
    library(
        "slirp",
        "slirp/libslirp.h",
        "slirp",
        "libslirp-dev",
        "libslirp-devel",
    ),
    library("uuid", "uuid/uuid.h", "uuid", "uuid-dev", "libuuid-devel"),
    library("zlib", "zlib.h", "zlib", "zlib1g-dev", "zlib-devel"),
];

/// The catalog entry called `name`.
pub fn lookup(name: &str) -> Option<&'static Tool> {
    CATALOG.iter().find(|t| t.name == name)
}

/// Every known name, for help texts.
pub fn known_names() -> String {
    CATALOG
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// Requirements as the pin file writes them.

/// `"nasm >= 2.15.01"`: a catalog tool and an optional minimum version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    pub tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
}

/// Why a requirement string was refused (located by the caller).
#[derive(Debug)]
pub struct RequirementError {
    pub message: String,
    pub help: String,
}

impl Requirement {
    /// Parses `name` or `name >= VERSION`.
    pub fn parse(text: &str) -> Result<Requirement, RequirementError> {
        let (name, min) = match text.split_once(">=") {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (text.trim(), None),
        };
        if name.contains(['<', '>', '=']) || min.is_some_and(|v| v.contains(['<', '>', '='])) {
            return Err(RequirementError {
                message: format!("{text:?} is not a tool requirement"),
                help: "write a tool name, optionally with a minimum version: \"gcc\" or \"nasm >= 2.15.01\" (only `>=` is supported)".into(),
            });
        }
        if lookup(name).is_none() {
            return Err(RequirementError {
                message: format!("unknown tool `{name}`"),
                help: format!("known tools: {}", known_names()),
            });
        }
        if let Some(v) = min
            && !is_version(v)
        {
            return Err(RequirementError {
                message: format!("`{v}` is not a version (in {text:?})"),
                help: "a minimum version is dotted numbers, e.g. \"nasm >= 2.15.01\"".into(),
            });
        }
        Ok(Requirement {
            tool: name.to_string(),
            min_version: min.map(str::to_string),
        })
    }

    /// The catalog entry (always there: names are checked at load).
    pub fn spec(&self) -> Option<&'static Tool> {
        lookup(&self.tool)
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.min_version {
            Some(v) => write!(f, "{} >= {v}", self.tool),
            None => f.write_str(&self.tool),
        }
    }
}

fn is_version(v: &str) -> bool {
    !v.is_empty()
        && v.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

// ---------------------------------------------------------------------------
// Versions.

/// Compares dotted versions numerically; a part's trailing non-digits are
/// ignored (`5.2.15(1)` reads as 5.2.15).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<u64> {
        v.split('.')
            .map(|p| {
                let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().unwrap_or(0)
            })
            .collect()
    };
    let (a, b) = (parts(a), parts(b));
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        match x.cmp(&y) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    Ordering::Equal
}

/// The first version-looking word of a tool's `--version` output:
/// `NASM version 2.16.01 compiled on ...` gives 2.16.01, `v1.24` 1.24,
/// `GNU bash, version 5.2.15(1)-release` 5.2.15.
pub fn version_in(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || "(),".contains(c))
        .map(|w| w.strip_prefix('v').unwrap_or(w))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .map(|w| {
            let v: String = w
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            v.trim_end_matches('.').to_string()
        })
        .next()
}

// ---------------------------------------------------------------------------
// Probing.

/// Where tools are looked for. [`ProbeEnv::system`] is this process's
/// view; tests build their own.
#[derive(Debug, Clone)]
pub struct ProbeEnv {
    /// `PATH`, split.
    pub path: Vec<PathBuf>,
    pub include_dirs: Vec<PathBuf>,
    pub pkg_config_dirs: Vec<PathBuf>,
}

impl ProbeEnv {
    /// `PATH` and `PKG_CONFIG_PATH` from the environment, plus the
    /// compiler's and pkg-config's default directories on Debian
    /// (multiarch) and Fedora (lib64).
    pub fn system() -> ProbeEnv {
        let split = |var: &str| -> Vec<PathBuf> {
            std::env::var_os(var)
                .map(|v| std::env::split_paths(&v).collect())
                .unwrap_or_default()
        };
        let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
        let mut pkg_config_dirs = split("PKG_CONFIG_PATH");
        for dir in [
            "/usr/local/lib/pkgconfig".to_string(),
            "/usr/local/share/pkgconfig".to_string(),
            format!("/usr/lib/{multiarch}/pkgconfig"),
            "/usr/lib64/pkgconfig".to_string(),
            "/usr/lib/pkgconfig".to_string(),
            "/usr/share/pkgconfig".to_string(),
        ] {
            pkg_config_dirs.push(dir.into());
        }
        ProbeEnv {
            path: split("PATH"),
            include_dirs: vec![
                "/usr/local/include".into(),
                format!("/usr/include/{multiarch}").into(),
                "/usr/include".into(),
            ],
            pkg_config_dirs,
        }
    }

    /// The first executable `program` on `PATH`.
    pub fn find_program(&self, program: &str) -> Option<PathBuf> {
        self.path
            .iter()
            .map(|dir| dir.join(program))
            .find(|p| is_executable(p))
    }

    fn find_header(&self, header: &str) -> Option<PathBuf> {
        self.include_dirs
            .iter()
            .map(|d| d.join(header))
            .find(|p| p.is_file())
    }

    /// The `Version:` of the first `<module>.pc` on the search path.
    fn pkg_config_version(&self, module: &str) -> Option<String> {
        self.pkg_config_dirs.iter().find_map(|d| {
            let text = std::fs::read_to_string(d.join(format!("{module}.pc"))).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("Version:"))
                .map(|v| v.trim().to_string())
        })
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What probing one requirement found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probed {
    /// There, and new enough (or no minimum). `found` is the version when
    /// one was read, else where it is.
    Ok { found: String },
    /// There, but older than the minimum.
    TooOld { found: String },
    /// There, but its version could not be read to compare with the minimum.
    Unverified { found: String },
    /// Not there; `why` says what was looked for.
    Missing { why: String },
}

/// Looks for `req` as `env` sees the host.
pub fn probe(req: &Requirement, env: &ProbeEnv) -> Probed {
    let Some(tool) = req.spec() else {
        return Probed::Missing {
            why: format!("unknown tool `{}`", req.tool),
        };
    };
    match &tool.probe {
        Probe::Program {
            program,
            version_args,
        } => probe_program(req, env, program, version_args),
        Probe::Library { header, pkg_config } => probe_library(req, env, header, pkg_config),
        Probe::PythonModules { modules } => probe_python(env, modules),
    }
}

fn probe_program(req: &Requirement, env: &ProbeEnv, program: &str, args: &[&str]) -> Probed {
    let Some(path) = env.find_program(program) else {
        return Probed::Missing {
            why: format!("no `{program}` on PATH"),
        };
    };
    let Some(min) = &req.min_version else {
        // No minimum: not worth a subprocess.
        return Probed::Ok {
            found: path.display().to_string(),
        };
    };
    let version = run_quietly(&path, args.iter().map(OsString::from))
        .and_then(|out| version_in(&out).filter(|v| !v.is_empty()));
    judge(version, min, &path.display().to_string())
}

fn probe_library(req: &Requirement, env: &ProbeEnv, header: &str, module: &str) -> Probed {
    let Some(path) = env.find_header(header) else {
        return Probed::Missing {
            why: format!("no <{header}>"),
        };
    };
    let version = env.pkg_config_version(module);
    match (&req.min_version, version) {
        (Some(min), v) => judge(v, min, &path.display().to_string()),
        (None, Some(v)) => Probed::Ok { found: v },
        (None, None) => Probed::Ok {
            found: path.display().to_string(),
        },
    }
}

fn probe_python(env: &ProbeEnv, modules: &[&str]) -> Probed {
    let Some(python) = env.find_program("python3") else {
        return Probed::Missing {
            why: "no `python3` on PATH".into(),
        };
    };
    let import = format!("import {}", modules.join(", "));
    let out = crate::exec::capture(&Cmd::new(&python, Path::new("/")).args(["-c", &import]));
    match out {
        Ok(o) if o.success => Probed::Ok {
            found: format!("import {} ok", modules.join(", ")),
        },
        Ok(o) => {
            // The last line names the module: "ModuleNotFoundError: No module named 'ensurepip'".
            let last = o.stderr.lines().last().unwrap_or("import failed").trim();
            Probed::Missing {
                why: format!("python3: {last}"),
            }
        }
        Err(e) => Probed::Missing {
            why: format!("cannot run {}: {e}", python.display()),
        },
    }
}

fn judge(version: Option<String>, min: &str, location: &str) -> Probed {
    match version {
        None => Probed::Unverified {
            found: format!("{location} (version unreadable)"),
        },
        Some(v) if compare_versions(&v, min) == Ordering::Less => Probed::TooOld { found: v },
        Some(v) => Probed::Ok { found: v },
    }
}

/// Runs `program args` with stdin closed; stdout and stderr together.
pub fn run_quietly(program: &Path, args: impl IntoIterator<Item = OsString>) -> Option<String> {
    crate::exec::capture(&Cmd::new(program, Path::new("/")).args(args))
        .ok()
        .map(|o| o.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Requirement {
        Requirement::parse(text).unwrap()
    }

    #[test]
    fn catalog_is_sorted_and_unique() {
        let names: Vec<_> = CATALOG.iter().map(|t| t.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn requirements_parse() {
        assert_eq!(
            req("nasm >= 2.15.01"),
            Requirement {
                tool: "nasm".into(),
                min_version: Some("2.15.01".into())
            }
        );
        assert_eq!(req(" gcc ").to_string(), "gcc");
        assert_eq!(req("pahole>=1.16").to_string(), "pahole >= 1.16");
        let e = Requirement::parse("nasmm").unwrap_err();
        assert!(e.message.contains("unknown tool `nasmm`"), "{e:?}");
        assert!(e.help.contains("nasm") && e.help.contains("iasl"), "{e:?}");
        assert!(Requirement::parse("nasm > 2").is_err());
        assert!(Requirement::parse("nasm == 2").is_err());
        assert!(Requirement::parse("nasm >= 2.x").is_err());
        assert!(Requirement::parse("nasm >= ").is_err());
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("2.15.01", "2.14.02"), Ordering::Greater);
        assert_eq!(compare_versions("2.14.02", "2.15.01"), Ordering::Less);
        assert_eq!(compare_versions("1.16", "1.16.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.16", "1.16.1"), Ordering::Less);
        assert_eq!(compare_versions("10.0", "9.9"), Ordering::Greater);
        assert_eq!(compare_versions("20220331", "20200925"), Ordering::Greater);
    }

    #[test]
    fn versions_are_read_from_tool_output() {
        for (out, v) in [
            ("NASM version 2.16.01 compiled on Jan  1 2023", "2.16.01"),
            ("v1.24\n", "1.24"),
            (
                "GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)",
                "5.2.15",
            ),
            (
                "\nIntel ACPI Component Architecture\nASL+ Optimizing Compiler/Disassembler version 20220331\n",
                "20220331",
            ),
            ("QEMU emulator version 9.1.0 (v9.1.0-12-g1234)", "9.1.0"),
            ("Debian dpkg-buildpackage version 1.21.22.\n", "1.21.22"),
            ("GNU ld (GNU Binutils for Debian) 2.40", "2.40"),
        ] {
            assert_eq!(version_in(out).as_deref(), Some(v), "{out}");
        }
        assert_eq!(version_in("no digits here"), None);
    }

    fn env_in(dir: &Path) -> ProbeEnv {
        ProbeEnv {
            path: vec![dir.join("bin")],
            include_dirs: vec![dir.join("include")],
            pkg_config_dirs: vec![dir.join("pkgconfig")],
        }
    }

    fn script(dir: &Path, name: &str, body: &str) {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn programs_are_found_on_path_and_versioned_only_with_a_minimum() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        assert!(matches!(probe(&req("nasm"), &env), Probed::Missing { .. }));
        script(dir.path(), "nasm", "echo 'NASM version 2.14.02'");
        let found = probe(&req("nasm"), &env);
        assert!(
            matches!(&found, Probed::Ok { found } if found.ends_with("bin/nasm")),
            "{found:?}"
        );
        assert_eq!(
            probe(&req("nasm >= 2.15.01"), &env),
            Probed::TooOld {
                found: "2.14.02".into()
            }
        );
        assert_eq!(
            probe(&req("nasm >= 2.14"), &env),
            Probed::Ok {
                found: "2.14.02".into()
            }
        );
        script(dir.path(), "pahole", "echo garbage");
        assert!(matches!(
            probe(&req("pahole >= 1.16"), &env),
            Probed::Unverified { .. }
        ));
        // Not executable: not found.
        let bin = dir.path().join("bin/iasl");
        std::fs::write(&bin, "").unwrap();
        assert!(matches!(probe(&req("iasl"), &env), Probed::Missing { .. }));
    }

    #[test]
    fn libraries_need_their_header_and_read_the_pc_version() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        assert_eq!(
            probe(&req("glib"), &env),
            Probed::Missing {
                why: "no <glib-2.0/glib.h>".into()
            }
        );
        std::fs::create_dir_all(dir.path().join("include/glib-2.0")).unwrap();
        std::fs::write(dir.path().join("include/glib-2.0/glib.h"), "").unwrap();
        assert!(matches!(
            probe(&req("glib >= 2.66"), &env),
            Probed::Unverified { .. }
        ));
        std::fs::create_dir_all(dir.path().join("pkgconfig")).unwrap();
        std::fs::write(
            dir.path().join("pkgconfig/glib-2.0.pc"),
            "prefix=/usr\nName: GLib\nVersion: 2.64.6\n",
        )
        .unwrap();
        assert_eq!(
            probe(&req("glib >= 2.66"), &env),
            Probed::TooOld {
                found: "2.64.6".into()
            }
        );
        assert_eq!(
            probe(&req("glib"), &env),
            Probed::Ok {
                found: "2.64.6".into()
            }
        );
    }

    #[test]
    fn python_modules_are_imported_by_the_python3_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        assert!(matches!(
            probe(&req("python3-venv"), &env),
            Probed::Missing { .. }
        ));
        script(
            dir.path(),
            "python3",
            "echo \"ModuleNotFoundError: No module named 'ensurepip'\" >&2; exit 1",
        );
        assert_eq!(
            probe(&req("python3-venv"), &env),
            Probed::Missing {
                why: "python3: ModuleNotFoundError: No module named 'ensurepip'".into()
            }
        );
    }
}
