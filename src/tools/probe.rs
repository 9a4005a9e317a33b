//! Whether a host has what a requirement asks, cheaply.
//!
//! A program is looked up on `PATH` without running it; it is run (its
//! version query, stdin closed) only when the requirement has a minimum
//! version. A library is found by its header under the usual include
//! directories, and its version read from its pkg-config file, without
//! running pkg-config. Python modules cost one `python3 -c "import ..."`.

use std::cmp::Ordering;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{Probe, Requirement, compare_versions, version_in};
use crate::exec::Cmd;

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

    pub fn find_header(&self, header: &str) -> Option<PathBuf> {
        self.include_dirs
            .iter()
            .map(|d| d.join(header))
            .find(|p| p.is_file())
    }

    /// The `Version:` of the first `<module>.pc` on the search path.
    pub fn pkg_config_version(&self, module: &str) -> Option<String> {
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
    let version =
        version_output(&path, args).and_then(|out| version_in(&out).filter(|v| !v.is_empty()));
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

/// A program's answer to its version query (the catalog's
/// `version_args`): stdout and stderr together, stdin closed. The one way
/// snp-build asks a tool its version.
pub fn version_output(program: &Path, args: &[&str]) -> Option<String> {
    crate::exec::capture(&Cmd::new(program, Path::new("/")).args(args.iter().map(OsString::from)))
        .ok()
        .map(|o| o.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Requirement {
        Requirement::parse(text).unwrap()
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
