//! A kernel's starting `.config`: a base (`running`, `defconfig`,
//! `tinyconfig` or a file) and the config fragments merged on top of it,
//! before the pin file's edits.
//!
//! `base-config` is a string (the base alone) or a list: the base, then
//! fragment files, each relative to the pin file and with `{kernel}` for
//! `host`/`guest`. The default, `["defconfig", "configs/snp-{kernel}.config"]`,
//! gives the same kernel on any build host (build.sh's `running` copied the
//! build host's own `/boot/config-$(uname -r)`, so two machines built two
//! kernels from the same pins, and a container none at all).
//!
//! Guarantees:
//! - The two default fragments are compiled in ([`EMBEDDED_FRAGMENTS`]): a
//!   fragment written as one of their paths that is not on disk beside the
//!   pin file is the compiled-in copy (so the embedded default pins, and
//!   pin files written before `snp-build init` wrote the fragments, need no
//!   file). Any other fragment must exist; [`BaseSpec::check`] refuses a
//!   missing one before anything is fetched, naming it.
//! - What a kernel starts from is an input of its fingerprint
//!   ([`BaseSpec::input`]: the base and each fragment's content hash), and
//!   the release records it ([`BaseRecord`]: each fragment's SHA-256 and
//!   that of the merged base config).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::kconfig::Kernel;
use crate::error::UsageError;
use crate::hash::sha256_hex;

/// The fragments kept in the repository's `configs/` and compiled in, by
/// the path the stacks' pin files name them with: the default ones, then
/// what the upstream stacks add (`stacks/*.toml`).
pub const EMBEDDED_FRAGMENTS: [(&str, &str); 4] = [
    (
        "configs/snp-host.config",
        include_str!("../../../configs/snp-host.config"),
    ),
    (
        "configs/snp-guest.config",
        include_str!("../../../configs/snp-guest.config"),
    ),
    (
        "configs/upstream/snp-host.config",
        include_str!("../../../configs/upstream/snp-host.config"),
    ),
    (
        "configs/upstream/snp-guest.config",
        include_str!("../../../configs/upstream/snp-guest.config"),
    ),
];

/// How a kernel's base `.config` is made (the first item of `base-config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "path")]
pub enum BaseConfig {
    /// `/boot/config-$(uname -r)`, as build.sh.
    Running,
    Defconfig,
    Tinyconfig,
    File(PathBuf),
}

impl BaseConfig {
    /// As the pin file spells it.
    pub fn setting(&self) -> String {
        match self {
            BaseConfig::Running => "running".into(),
            BaseConfig::Defconfig => "defconfig".into(),
            BaseConfig::Tinyconfig => "tinyconfig".into(),
            BaseConfig::File(p) => p.display().to_string(),
        }
    }
}

/// Where a kernel's base `.config` comes from on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum BaseSource {
    /// `make <target>` writes it: `defconfig` or `tinyconfig`. (Run it with
    /// `ARCH=x86_64`: on some hosts plain `tinyconfig` gives a 32-bit config.)
    MakeTarget(&'static str),
    /// Copied from this file.
    File(PathBuf),
}

/// The base config for `base` on a host running kernel `running_release`
/// (`uname -r`; passed in so that nothing here depends on the host).
pub fn base_config_source(base: &BaseConfig, running_release: &str) -> BaseSource {
    match base {
        BaseConfig::Running => BaseSource::File(running_config_path(running_release)),
        BaseConfig::Defconfig => BaseSource::MakeTarget("defconfig"),
        BaseConfig::Tinyconfig => BaseSource::MakeTarget("tinyconfig"),
        BaseConfig::File(path) => BaseSource::File(path.clone()),
    }
}

/// build.sh's base config: the running kernel's, as distros install it.
fn running_config_path(release: &str) -> PathBuf {
    PathBuf::from(format!("/boot/config-{release}"))
}

const ALTERNATIVES: &str = "set `base-config = \"defconfig\"`, `base-config = \"tinyconfig\"` or \
                            `base-config = \"path/to/a/.config\"` in [kernel] (or in [kernel.host] / \
                            [kernel.guest]) of the pin file";

/// Refuses a base config file that is not there, before anything is built.
/// `is_running` says the path came from `base-config = "running"`, so the
/// error can explain why it is missing and what to use instead. (A pin file
/// asking for what the host cannot give is a usage error: exit code 2.)
pub fn check_base_file(path: &Path, is_running: bool) -> Result<(), UsageError> {
    if path.is_file() {
        return Ok(());
    }
    let what = if path.exists() {
        "is not a file"
    } else {
        "does not exist"
    };
    let err = if is_running {
        UsageError::new(format!(
            "the base kernel config {} {what} (base-config = \"running\" copies the running \
             kernel's config, as build.sh does)",
            path.display()
        ))
        .help(format!(
            "containers and CI machines usually have no /boot/config-*: {ALTERNATIVES}"
        ))
    } else {
        UsageError::new(format!("the base kernel config {} {what}", path.display())).help(format!(
            "fix the path (a relative path is taken from the pin file's directory), or \
                 {ALTERNATIVES}"
        ))
    };
    Err(err)
}

/// One fragment of `base-config`, for one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// As written, `{kernel}` rendered: how messages and the manifest name it.
    pub written: String,
    /// Where it is looked for: `written` from the pin file's directory.
    pub path: PathBuf,
}

/// Where a fragment's text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FragmentOrigin {
    File,
    /// The compiled-in copy (no such file beside the pin file).
    Embedded,
}

impl Fragment {
    /// `written` (with `{kernel}`) for `kernel`, from the pin file's
    /// directory `base_dir`.
    pub fn new(template: &str, kernel: Kernel, base_dir: &Path) -> Result<Fragment, UsageError> {
        let written = render(template, kernel)?;
        Ok(Fragment {
            path: base_dir.join(&written),
            written,
        })
    }

    /// The compiled-in copy this fragment falls back to, if its path is one
    /// of [`EMBEDDED_FRAGMENTS`].
    fn embedded(&self) -> Option<&'static str> {
        let written = self.written.trim_start_matches("./");
        EMBEDDED_FRAGMENTS
            .iter()
            .find(|(path, _)| *path == written)
            .map(|(_, text)| *text)
    }

    /// Its text: the file, else the compiled-in copy of the same path.
    pub fn text(&self) -> Result<(Cow<'static, str>, FragmentOrigin), UsageError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok((Cow::Owned(text), FragmentOrigin::File)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match self.embedded() {
                Some(text) => Ok((Cow::Borrowed(text), FragmentOrigin::Embedded)),
                None => Err(UsageError::new(format!(
                    "the kernel config fragment {} does not exist",
                    self.path.display()
                ))
                .help(format!(
                    "fix `base-config` in [kernel] of the pin file (fragment paths are taken \
                     from the pin file's directory; snp-build's own are {}; `snp-build init` \
                     writes those its stack names)",
                    EMBEDDED_FRAGMENTS.map(|(p, _)| p).join(", ")
                ))),
            },
            Err(e) => Err(UsageError::new(format!(
                "cannot read the kernel config fragment {}: {e}",
                self.path.display()
            ))
            .help("fix `base-config` in [kernel] of the pin file")),
        }
    }
}

/// `{kernel}` in a fragment path; no other placeholder.
fn render(template: &str, kernel: Kernel) -> Result<String, UsageError> {
    let out = template.replace("{kernel}", kernel.name());
    if out.contains('{') || out.contains('}') {
        return Err(UsageError::new(format!(
            "base-config fragment {template:?} has a placeholder other than {{kernel}}"
        ))
        .help("fragment paths know one placeholder: {kernel} (host or guest)"));
    }
    Ok(out)
}

/// `config` with `fragment` (named `name`) merged in, as the kernel's
/// `merge_config.sh` does: every option the fragment sets (`CONFIG_X=...`
/// or `# CONFIG_X is not set`) loses its earlier line, and the fragment is
/// appended. (Kconfig would let the last line win anyway, but warns about
/// every reassignment.)
pub fn merge_fragment(config: &str, fragment: &str, name: &str) -> String {
    fn option(line: &str) -> Option<&str> {
        let line = line.trim();
        let rest = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
            .unwrap_or(line);
        let name = rest.strip_prefix("CONFIG_")?;
        Some(name.split('=').next().unwrap_or(name))
    }
    let set: std::collections::BTreeSet<&str> = fragment.lines().filter_map(option).collect();
    let mut out: String = config
        .lines()
        .filter(|l| option(l).is_none_or(|o| !set.contains(o)))
        .flat_map(|l| [l, "\n"])
        .collect();
    out.push_str(&format!("# snp-build: config fragment {name}\n"));
    out.push_str(fragment);
    if !fragment.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// One kernel's `base-config`: the base and its fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseSpec {
    pub base: BaseConfig,
    pub fragments: Vec<Fragment>,
}

impl BaseSpec {
    /// As the pin file spells it (`{kernel}` rendered).
    pub fn setting(&self) -> String {
        std::iter::once(self.base.setting())
            .chain(self.fragments.iter().map(|f| f.written.clone()))
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// As a pin file value (`{kernel}` rendered): `"defconfig"`, or
    /// `["defconfig", "configs/snp-host.config"]`.
    pub fn pin_value(&self) -> String {
        let base = self.base.setting();
        if self.fragments.is_empty() {
            return format!("{base:?}");
        }
        let items: Vec<String> = std::iter::once(base)
            .chain(self.fragments.iter().map(|f| f.written.clone()))
            .map(|s| format!("{s:?}"))
            .collect();
        format!("[{}]", items.join(", "))
    }

    /// Refuses a missing base file or fragment (before anything is fetched).
    pub fn check(&self, running_release: &str) -> Result<(), UsageError> {
        if let BaseSource::File(path) = base_config_source(&self.base, running_release) {
            check_base_file(&path, self.base == BaseConfig::Running)?;
        }
        for f in &self.fragments {
            f.text()?;
        }
        Ok(())
    }

    /// The base as a fingerprint input: its setting and the content hash of
    /// each file it reads (so an edited fragment rebuilds the kernel).
    pub fn input(&self, running_release: &str) -> String {
        let short = |text: &str| sha256_hex(text.as_bytes())[..16].to_string();
        let mut parts = vec![match base_config_source(&self.base, running_release) {
            BaseSource::MakeTarget(t) => t.to_string(),
            // The file's name and content, not where this box keeps it: a
            // fingerprint means the same on every machine.
            BaseSource::File(p) => format!(
                "{} ({})",
                p.file_name().map_or_else(
                    || p.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                ),
                std::fs::read(&p)
                    .map(|b| sha256_hex(&b)[..16].to_string())
                    .unwrap_or_else(|_| "missing".into())
            ),
        }];
        for f in &self.fragments {
            let hash = f
                .text()
                .map_or_else(|_| "missing".into(), |(t, _)| short(&t));
            parts.push(format!("{} ({hash})", f.written));
        }
        parts.join(" + ")
    }

    /// Whether the base file or a fragment turns `option` on (`=y`).
    pub fn sets(&self, option: &str, running_release: &str) -> bool {
        let line = format!("CONFIG_{option}=y");
        let has = |text: &str| text.lines().any(|l| l.trim() == line);
        let in_base = match base_config_source(&self.base, running_release) {
            BaseSource::File(path) => std::fs::read_to_string(path).is_ok_and(|t| has(&t)),
            BaseSource::MakeTarget(_) => false,
        };
        in_base
            || self
                .fragments
                .iter()
                .any(|f| f.text().is_ok_and(|(t, _)| has(&t)))
    }
}

/// What a kernel started from, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BaseRecord {
    /// `base-config` as written (`{kernel}` rendered).
    pub setting: String,
    pub fragments: Vec<FragmentRecord>,
    /// SHA-256 of the base config with the fragments merged (after `make
    /// olddefconfig` when there are fragments), before the edits.
    pub sha256: String,
}

/// One merged fragment, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FragmentRecord {
    pub path: String,
    pub origin: FragmentOrigin,
    pub sha256: String,
}

impl FragmentRecord {
    pub fn new(fragment: &Fragment, text: &str, origin: FragmentOrigin) -> FragmentRecord {
        FragmentRecord {
            path: fragment.written.clone(),
            origin,
            sha256: sha256_hex(text.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_config_maps_to_make_target_or_file() {
        assert_eq!(
            base_config_source(&BaseConfig::Running, "6.8.0-45-generic"),
            BaseSource::File("/boot/config-6.8.0-45-generic".into())
        );
        assert_eq!(
            base_config_source(&BaseConfig::Defconfig, "x"),
            BaseSource::MakeTarget("defconfig")
        );
        assert_eq!(
            base_config_source(&BaseConfig::Tinyconfig, "x"),
            BaseSource::MakeTarget("tinyconfig")
        );
        assert_eq!(
            base_config_source(&BaseConfig::File("/d/host.config".into()), "x"),
            BaseSource::File("/d/host.config".into())
        );
    }

    #[test]
    fn missing_running_config_names_path_and_alternatives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config-6.8.0-snp");
        let err = check_base_file(&path, true).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        for needle in [
            "\"running\"",
            "base-config = \"defconfig\"",
            "\"tinyconfig\"",
            "path",
            "[kernel]",
            "[kernel.host]",
            "[kernel.guest]",
            "containers and CI",
        ] {
            assert!(err.contains(needle), "{needle} missing: {err}");
        }
        std::fs::write(&path, "CONFIG_64BIT=y\n").unwrap();
        assert!(check_base_file(&path, true).is_ok());
    }

    #[test]
    fn missing_config_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_base_file(&dir.path().join("nope.config"), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope.config") && err.contains("does not exist"),
            "{err}"
        );
        assert!(!err.contains("containers"), "{err}");
        let err = check_base_file(dir.path(), false).unwrap_err().to_string();
        assert!(err.contains("is not a file"), "{err}");
    }

    #[test]
    fn a_default_fragment_falls_back_to_its_compiled_in_copy_and_a_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fragment::new("configs/snp-{kernel}.config", Kernel::Guest, dir.path()).unwrap();
        assert_eq!(f.written, "configs/snp-guest.config");
        let (text, origin) = f.text().unwrap();
        assert_eq!(origin, FragmentOrigin::Embedded);
        assert!(text.contains("CONFIG_SEV_GUEST=m"), "{text}");
        std::fs::create_dir_all(dir.path().join("configs")).unwrap();
        std::fs::write(&f.path, "CONFIG_X=y\n").unwrap();
        assert_eq!(
            f.text().unwrap(),
            (Cow::Owned("CONFIG_X=y\n".into()), FragmentOrigin::File)
        );
    }

    #[test]
    fn any_other_missing_fragment_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fragment::new("configs/mine-{kernel}.config", Kernel::Host, dir.path()).unwrap();
        let err = f.text().unwrap_err().to_string();
        assert!(
            err.contains("configs/mine-host.config")
                && err.contains("does not exist")
                && err.contains("configs/snp-host.config"),
            "{err}"
        );
        let err = Fragment::new("configs/{sha}.config", Kernel::Host, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("{kernel}"), "{err}");
    }

    #[test]
    fn a_fragment_replaces_the_lines_of_the_options_it_sets() {
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\nCONFIG_AB=m\n";
        let fragment = "# comment\nCONFIG_B=m\n# CONFIG_A is not set\nCONFIG_D=1";
        assert_eq!(
            merge_fragment(config, fragment, "f.config"),
            "CONFIG_C=\"x\"\nCONFIG_AB=m\n# snp-build: config fragment f.config\n\
             # comment\nCONFIG_B=m\n# CONFIG_A is not set\nCONFIG_D=1\n"
        );
    }

    #[test]
    fn the_input_changes_with_a_fragment_s_content() {
        let dir = tempfile::tempdir().unwrap();
        let spec = BaseSpec {
            base: BaseConfig::Defconfig,
            fragments: vec![Fragment::new("my.config", Kernel::Host, dir.path()).unwrap()],
        };
        assert_eq!(spec.input("x"), "defconfig + my.config (missing)");
        std::fs::write(dir.path().join("my.config"), "CONFIG_A=y\n").unwrap();
        let one = spec.input("x");
        std::fs::write(dir.path().join("my.config"), "CONFIG_A=m\n").unwrap();
        assert_ne!(one, spec.input("x"));
        assert!(spec.check("x").is_ok());
        assert_eq!(spec.setting(), "defconfig + my.config");
        assert_eq!(spec.pin_value(), r#"["defconfig", "my.config"]"#);
        assert!(!spec.sets("A", "x"));
        std::fs::write(dir.path().join("my.config"), "CONFIG_A=y\n").unwrap();
        assert!(spec.sets("A", "x"));
    }
}
