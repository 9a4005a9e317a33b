//! Build-path-free, build-time-free compiles without editing the tree.
//!
//! Two builders with the same pins must produce the same bytes, whatever
//! their work dir. Build systems record the directory they build in (gcc's
//! `__FILE__` and DWARF `DW_AT_comp_dir`, also for `.S` files, whose
//! assembler flags never see `KCFLAGS`) and the time they ran (Linux's
//! packaging dates every package's `changelog.Debian.gz` with `date -R`).
//! Rather than patching each build system, a stage puts small wrappers
//! first on its commands' `PATH`:
//!
//! - `gcc`: the real gcc (an absolute path, so it never finds itself) with
//!   `-ffile-prefix-map=<tree>=.`. Under a tool that is no jobserver client
//!   (`SNP_BUILD_JOB_TOKENS` set, see `exec::Budget::Tokens`) it first
//!   takes a token of the build's job budget, and gives it back after;
//!   a compiler launcher given to it (`SNP_BUILD_LAUNCHER`) runs inside
//!   that token. Every compile goes through it, host
//!   tools (objtool, edk2's BaseTools) included, and gcc passes the map on
//!   to the assembler. Being a flag of the compiler and not of the build
//!   system, it never lands in a command line the build records (kbuild's
//!   `.cmd` files, shipped in the headers package).
//! - `date`: `date -R` reads `SOURCE_DATE_EPOCH` when it is set (the stage
//!   sets it to the pinned commit's time); anything else is the real date.
//! - extra wrappers a stage needs (OVMF: `GenFw`).
//!
//! The wrappers read their settings from `SNP_BUILD_*` variables set on
//! each command, so their text is fixed and never holds a path.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exec::Cmd;
use crate::tools::probe::ProbeEnv;
use crate::workdir::StageDir;

/// Where a stage's wrappers live, under its stage dir.
pub const DIR: &str = "wrappers";

const GCC: &str = r#"#!/bin/sh
# snp-build: gcc with the tree's path mapped to `.` in __FILE__ and debug info.
if [ -n "${SNP_BUILD_JOB_TOKENS-}" ]; then
  # Run by a tool that is no jobserver client: one job token per compile,
  # given back when it ends, whatever its status.
  exec 9<>"$SNP_BUILD_JOB_TOKENS" || exit 1
  token=$(dd bs=1 count=1 <&9 2>/dev/null)
  # A stopped build (SIGTERM to the stage) still gets the token back.
  trap 'printf "%s" "$token" >&9; exit 143' TERM INT HUP
  ${SNP_BUILD_LAUNCHER:+"$SNP_BUILD_LAUNCHER"} "$SNP_BUILD_GCC" "$SNP_BUILD_PREFIX_MAP" "$@" 9>&-
  status=$?
  printf '%s' "$token" >&9
  exit $status
fi
exec ${SNP_BUILD_LAUNCHER:+"$SNP_BUILD_LAUNCHER"} "$SNP_BUILD_GCC" "$SNP_BUILD_PREFIX_MAP" "$@"
"#;

const DATE: &str = r#"#!/bin/sh
# snp-build: `date -R` (a package changelog's date) is SOURCE_DATE_EPOCH's time when that is set.
if [ $# -eq 1 ] && [ "$1" = -R ] && [ -n "${SOURCE_DATE_EPOCH-}" ]; then
  exec "$SNP_BUILD_DATE" -R --date="@$SOURCE_DATE_EPOCH"
fi
exec "$SNP_BUILD_DATE" "$@"
"#;

/// A stage's wrappers, written and ready to put on its commands.
#[derive(Debug, Clone)]
pub struct Wrappers {
    dir: PathBuf,
    vars: Vec<(&'static str, OsString)>,
}

impl Wrappers {
    /// Writes the standard wrappers plus `extra` (name, script) into the
    /// stage's `wrappers/`, for builds of `tree`.
    pub fn install(
        stage: &StageDir,
        tree: &Path,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Wrappers> {
        let dir = stage.product(DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let system = ProbeEnv::system();
        let real = |program: &str| {
            system
                .find_program(program)
                .with_context(|| format!("{program} is not on PATH"))
        };
        let gcc = real("gcc")?;
        // ccache knows the compiler by the wrapper's mtime: naming the real
        // gcc's identity in the text rewrites the wrapper (a new mtime) when
        // gcc changes, so no object of the old compiler is served.
        let gcc_text = format!("{GCC}# compiler: {}\n", identity(&gcc));
        for (name, text) in [("gcc", gcc_text.as_str()), ("date", DATE)]
            .iter()
            .chain(extra)
        {
            write_script(&dir.join(name), text)?;
        }
        let mut path = OsString::from(dir.as_os_str());
        if let Some(caller) = std::env::var_os("PATH") {
            path.push(":");
            path.push(caller);
        }
        Ok(Wrappers {
            vars: vec![
                ("PATH", path),
                ("SNP_BUILD_WRAPPERS", dir.clone().into_os_string()),
                ("SNP_BUILD_GCC", gcc.into_os_string()),
                ("SNP_BUILD_DATE", real("date")?.into_os_string()),
                ("SNP_BUILD_PREFIX_MAP", prefix_map(tree).into()),
            ],
            dir,
        })
    }

    /// The compiler launcher (ccache, distcc) run by the `gcc` wrapper,
    /// for a stage whose build tool is no jobserver client: there it must
    /// start only once the compile has its job token. (A make-driven stage
    /// passes `CC="<launcher> gcc"` instead: make's token covers both.)
    pub fn launcher(mut self, launcher: Option<&str>) -> Self {
        if let Some(l) = launcher {
            self.vars.push(("SNP_BUILD_LAUNCHER", l.into()));
        }
        self
    }

    /// `cmd` with the wrappers first on its `PATH`.
    pub fn apply(&self, cmd: Cmd) -> Cmd {
        self.vars
            .iter()
            .fold(cmd, |cmd, (k, v)| cmd.env(k, v.clone()))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The real file behind `program`, its size and mtime.
fn identity(program: &Path) -> String {
    let real = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
    let meta = std::fs::metadata(&real).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    format!("{} {} {mtime}", real.display(), meta.map_or(0, |m| m.len()))
}

/// The compiler flag that maps `tree` to `.` in everything a compiler
/// records (debug info, `__FILE__`), so no build path reaches an output.
pub fn prefix_map(tree: &Path) -> String {
    format!("-ffile-prefix-map={}=.", tree.display())
}

/// Writes an executable script, leaving an identical one untouched: ccache
/// (`compiler-launcher`) knows a compiler by its mtime, and a rewritten
/// `gcc` wrapper would miss its whole cache.
fn write_script(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read(path).ok().as_deref() != Some(text.as_bytes()) {
        crate::fsutil::write_atomic(path, text.as_bytes())?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(w: &Wrappers, program: &str, args: &[&str], epoch: Option<&str>) -> String {
        let mut cmd = std::process::Command::new(w.dir().join(program));
        cmd.args(args).env_clear();
        for (k, v) in &w.vars {
            cmd.env(k, v);
        }
        if let Some(e) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", e);
        }
        let out = cmd.env("TZ", "UTC").env("LC_ALL", "C").output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn date_r_reads_source_date_epoch_and_nothing_else_changes() {
        let work = tempfile::tempdir().unwrap();
        let stage = crate::workdir::WorkDir::new(work.path())
            .unwrap()
            .stage("kernel-host");
        let w = Wrappers::install(&stage, &work.path().join("tree"), &[]).unwrap();
        assert_eq!(
            run(&w, "date", &["-R"], Some("86400")),
            "Fri, 02 Jan 1970 00:00:00 +0000\n"
        );
        // Other formats and an unset epoch are the real date's.
        assert_eq!(
            run(&w, "date", &["-u", "-d", "@0", "+%Y"], Some("86400")),
            "1970\n"
        );
        assert!(!run(&w, "date", &["-R"], None).contains("1970"));
    }

    #[test]
    fn an_unchanged_wrapper_keeps_its_mtime_for_ccache() {
        let work = tempfile::tempdir().unwrap();
        let stage = crate::workdir::WorkDir::new(work.path())
            .unwrap()
            .stage("ovmf");
        let tree = work.path().join("tree");
        Wrappers::install(&stage, &tree, &[]).unwrap();
        let gcc = stage.product(DIR).join("gcc");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&gcc)
            .unwrap()
            .set_modified(old)
            .unwrap();
        Wrappers::install(&stage, &tree, &[]).unwrap();
        assert_eq!(std::fs::metadata(&gcc).unwrap().modified().unwrap(), old);
        assert!(
            std::fs::read_to_string(&gcc)
                .unwrap()
                .contains("# compiler: /")
        );
    }

    #[test]
    fn gcc_maps_the_tree_out_of_file() {
        let work = tempfile::tempdir().unwrap();
        let tree = work.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("f.c"), "const char *f = __FILE__;\n").unwrap();
        let stage = crate::workdir::WorkDir::new(work.path())
            .unwrap()
            .stage("qemu");
        let w = Wrappers::install(&stage, &tree, &[]).unwrap();
        let f = tree.join("f.c");
        let out = run(&w, "gcc", &["-E", "-P", f.to_str().unwrap()], None);
        assert!(out.contains("\"./f.c\""), "{out}");
        assert!(!out.contains(tree.to_str().unwrap()), "{out}");
    }
}
