//! The host tools snp-build knows: a catalog, as data.
//!
//! The pin file only *names* the tools each stage needs (`tools =
//! ["gcc", "nasm >= 2.15.01"]`); this catalog is the one place that knows
//! what a name means: how to find the tool, how to ask its version, and
//! which package provides it on Debian and on Fedora. [`probe`] checks a
//! requirement on this host (doctor, preflight); [`versions`] reads the
//! versions that go into fingerprints, with the same version query.
//!
//! Guarantees:
//! - A [`Requirement`] names a catalog tool and at most one minimum version
//!   (`>=` followed by dotted numbers). Anything else is refused when the
//!   pin file is loaded, with the list of known names.
//! - One version query per tool (`version_args`), used by the preflight's
//!   minimum-version check, the fingerprint and the manifest alike.
//! - Never knows which stage needs what: the components' tool lists (pin
//!   file data) name catalog tools.
//! - Versions compare numerically part by part, missing parts being 0
//!   (`2.15.01` > `2.14.02`, `1.16` = `1.16.0` < `1.16.1`).

pub mod probe;
pub mod versions;

use std::cmp::Ordering;

use serde::Serialize;

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
    program("g++", "g++", V, "g++", "gcc-c++"),
    program("gcc", "gcc", V, "gcc", "gcc"),
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

/// How a program is asked its version: the catalog's arguments for it,
/// `--version` for a program it does not know.
pub fn version_args(program_tool: &str) -> &'static [&'static str] {
    match lookup(program_tool).map(|t| &t.probe) {
        Some(Probe::Program { version_args, .. }) => version_args,
        _ => V,
    }
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
}
