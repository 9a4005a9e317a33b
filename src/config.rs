//! The pin file (`stable-commits.toml`): schema, defaults, validation.
//!
//! Guarantees:
//! - A file is fully validated before any command does anything else: every
//!   error names the file, line and column, the key, and what is expected.
//! - Build knobs have no defaults in code. A knob a file leaves out takes the
//!   value from the embedded default file (the repository's own
//!   `stable-commits.toml`, compiled in), so the defaults are data and
//!   `snp-build config` prints a complete, valid pin file.
//! - Pins are never defaulted: a file names only the sources it builds, and
//!   asking for a source it lacks is an error naming the table to add.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::component::{Selection, SourceId};
use crate::doctor::catalog::Requirement;

/// The repository's `stable-commits.toml`: AMD's pins and build.sh's knobs.
pub const EMBEDDED: &str = include_str!("../stable-commits.toml");

/// The pin file name looked up in the current directory.
pub const DEFAULT_FILE: &str = "stable-commits.toml";

// ---------------------------------------------------------------------------
// The file as written. Every field is optional so that a file may leave
// knobs out; `merge_knobs` fills them from the embedded default.

/// Declares a source table: the pin fields every source has, plus its own
/// knobs. (serde's `flatten` cannot be combined with `deny_unknown_fields`.)
macro_rules! source_table {
    ($name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        #[derive(Debug, Clone, Deserialize, Serialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct $name {
            pub url: Spanned<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub branch: Option<Spanned<String>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub tag: Option<Spanned<String>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub commit: Option<Spanned<String>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub submodules: Option<bool>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub patches: Option<Spanned<String>>,
            $(
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: $ty,
            )*
        }

        impl PinFields for $name {
            fn pin_fields(&self) -> RawPin<'_> {
                RawPin {
                    url: &self.url,
                    branch: self.branch.as_ref(),
                    tag: self.tag.as_ref(),
                    commit: self.commit.as_ref(),
                    patches: self.patches.as_ref(),
                }
            }
            fn submodules(&self) -> Option<bool> {
                self.submodules
            }
            fn submodules_mut(&mut self) -> &mut Option<bool> {
                &mut self.submodules
            }
        }
    };
}

source_table!(KernelTable {
    base_config: Option<Spanned<String>>,
});
source_table!(QemuTable {
    target_list: Option<Spanned<Vec<String>>>,
    configure_args: Option<Vec<String>>,
    tools: Option<Vec<Spanned<String>>>,
});
source_table!(OvmfTable {
    platform: Option<Spanned<String>>,
    arch: Option<Spanned<String>>,
    build_target: Option<Spanned<String>>,
    toolchain: Option<Spanned<String>>,
    defines: Option<Spanned<Vec<String>>>,
    build_args: Option<Vec<String>>,
    jobs: Option<u32>,
    outputs: Option<Spanned<Vec<String>>>,
    tools: Option<Vec<Spanned<String>>>,
});

/// The pin fields of any source table, borrowed for validation.
pub struct RawPin<'a> {
    url: &'a Spanned<String>,
    branch: Option<&'a Spanned<String>>,
    tag: Option<&'a Spanned<String>>,
    commit: Option<&'a Spanned<String>>,
    patches: Option<&'a Spanned<String>>,
}

trait PinFields {
    fn pin_fields(&self) -> RawPin<'_>;
    fn submodules(&self) -> Option<bool>;
    fn submodules_mut(&mut self) -> &mut Option<bool>;
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BuildTable {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_format: Option<PackageFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compiler_launcher: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelKnobsTable {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_config: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_str: Option<BTreeMap<Spanned<String>, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_val: Option<BTreeMap<Spanned<String>, ConfigInt>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_dropped: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deb_tools: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm_tools: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub btf_tools: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<KernelTable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest: Option<KernelTable>,
}

/// The whole pin file as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PinFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildTable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelKnobsTable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qemu: Option<QemuTable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ovmf: Option<OvmfTable>,
}

/// A Kconfig int or hex value for `set-val`: a TOML integer, or a string
/// such as "0x1000".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ConfigInt {
    Int(i64),
    Text(String),
}

impl fmt::Display for ConfigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigInt::Int(n) => write!(f, "{n}"),
            ConfigInt::Text(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageFormat {
    Auto,
    Deb,
    Rpm,
}

// ---------------------------------------------------------------------------
// Errors.

/// A pin file that cannot be used, located to the character. (Boxed: it
/// travels in every `Result` of this module.)
#[derive(Debug)]
pub struct ConfigError(Box<ConfigErrorDetails>);

impl std::ops::Deref for ConfigError {
    type Target = ConfigErrorDetails;
    fn deref(&self) -> &ConfigErrorDetails {
        &self.0
    }
}

impl From<ConfigErrorDetails> for ConfigError {
    fn from(details: ConfigErrorDetails) -> Self {
        ConfigError(Box::new(details))
    }
}

#[derive(Debug)]
pub struct ConfigErrorDetails {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `qemu.branch`; empty for syntax errors.
    pub key: String,
    pub message: String,
    pub help: Option<String>,
    /// The offending source line, shown under the message.
    pub source_line: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = &self.source_line {
            let number = self.line.to_string();
            write!(f, "\n  {number} | {line}")?;
            write!(
                f,
                "\n  {} | {}^",
                " ".repeat(number.len()),
                " ".repeat(self.column.saturating_sub(1))
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where the pin file text came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Embedded,
}

impl Origin {
    pub fn display_name(&self) -> String {
        match self {
            Origin::File(p) => p.display().to_string(),
            Origin::Embedded => "<embedded stable-commits.toml>".to_string(),
        }
    }
}

/// Builds located errors for one file's text.
struct Locator<'a> {
    file: String,
    text: &'a str,
}

impl Locator<'_> {
    fn error(
        &self,
        span: Option<Range<usize>>,
        key: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
        let offset = span.map(|s| s.start).unwrap_or(0).min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        let source_line = self.text[line_start..]
            .lines()
            .next()
            .map(|l| l.trim_end().to_string());
        ConfigErrorDetails {
            file: self.file.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
            help,
            source_line,
        }
        .into()
    }
}

// ---------------------------------------------------------------------------
// The validated configuration.

/// What a pin asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Rev {
    Branch {
        name: String,
    },
    Tag {
        name: String,
    },
    /// A commit, optionally required to be on a branch.
    Commit {
        sha: String,
        branch: Option<String>,
    },
}

impl fmt::Display for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rev::Branch { name } => write!(f, "branch {name}"),
            Rev::Tag { name } => write!(f, "tag {name}"),
            Rev::Commit { sha, branch: None } => write!(f, "commit {sha}"),
            Rev::Commit {
                sha,
                branch: Some(b),
            } => write!(f, "commit {sha} on branch {b}"),
        }
    }
}

/// One pinned source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub id: SourceId,
    pub url: String,
    pub rev: Rev,
    pub submodules: bool,
    /// The patch series directory (it may not exist: no patches).
    pub patches: PathBuf,
}

/// How a kernel's starting `.config` is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "path")]
pub enum BaseConfig {
    /// `/boot/config-$(uname -r)`, as build.sh.
    Running,
    Defconfig,
    Tinyconfig,
    File(PathBuf),
}

/// The `scripts/config` edits, in the order they are applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelEdits {
    pub set_str: BTreeMap<String, String>,
    pub set_val: BTreeMap<String, String>,
    pub enable: Vec<String>,
    pub disable: Vec<String>,
    pub module: Vec<String>,
    pub allow_dropped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelKnobs {
    pub host_base_config: BaseConfig,
    pub guest_base_config: BaseConfig,
    pub edits: KernelEdits,
    pub tools: KernelTools,
}

/// The host tools a kernel build needs (checked by `doctor` and the
/// build's preflight; the catalog of names is `doctor::catalog`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelTools {
    /// Always.
    pub common: Vec<Requirement>,
    /// With the deb package format (`make bindeb-pkg`).
    pub deb: Vec<Requirement>,
    /// With the rpm package format (`make binrpm-pkg`).
    pub rpm: Vec<Requirement>,
    /// Only when the kernel config enables `DEBUG_INFO_BTF`.
    pub btf: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QemuKnobs {
    pub target_list: Vec<String>,
    pub configure_args: Vec<String>,
    pub tools: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OvmfKnobs {
    pub platform: String,
    pub arch: String,
    pub build_target: String,
    /// `None` means "auto": GCC5, or GCC4x with gcc 4.
    pub toolchain: Option<String>,
    pub defines: Vec<String>,
    pub build_args: Vec<String>,
    /// `None` means a share of the job budget.
    pub jobs: Option<u32>,
    pub outputs: Vec<String>,
    pub tools: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildKnobs {
    pub package_format: PackageFormat,
    pub compiler_launcher: Option<String>,
}

/// A loaded, validated pin file with every knob filled in.
#[derive(Debug, Clone)]
pub struct Config {
    pub origin: Origin,
    /// The text as read (goes into the release as `source-config`).
    pub text: String,
    /// The file as written, with knobs merged from the embedded default.
    pub effective: PinFile,
    pub sources: BTreeMap<SourceId, Source>,
    pub build: BuildKnobs,
    pub kernel: KernelKnobs,
    pub qemu: QemuKnobs,
    pub ovmf: OvmfKnobs,
}

impl Config {
    /// Loads `explicit` if given, else `./stable-commits.toml` if present,
    /// else the embedded default.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Config> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => {
                let p = PathBuf::from(DEFAULT_FILE);
                p.is_file().then_some(p)
            }
        };
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ConfigError::from(ConfigErrorDetails {
                        file: path.display().to_string(),
                        line: 0,
                        column: 0,
                        key: String::new(),
                        message: format!("cannot read the pin file: {e}"),
                        help: Some(
                            "pass an existing file to --config, or run `snp-build init` to write the default one"
                                .into(),
                        ),
                        source_line: None,
                    })
                })?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                Ok(Config::parse(&text, Origin::File(path), &base)?)
            }
            None => Ok(Config::embedded()?),
        }
    }

    /// The compiled-in default; its patch directory is `./patches/`.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED, Origin::Embedded, Path::new(""))
    }

    /// Parses and validates `text`. Relative paths in it (`patches`,
    /// `base-config`) are taken relative to `base_dir`.
    pub fn parse(text: &str, origin: Origin, base_dir: &Path) -> Result<Config, ConfigError> {
        let loc = Locator {
            file: origin.display_name(),
            text,
        };
        let mut file = parse_pin_file(&loc)?;
        if origin != Origin::Embedded {
            let defaults = parse_pin_file(&Locator {
                file: Origin::Embedded.display_name(),
                text: EMBEDDED,
            })?;
            merge_knobs(&mut file, defaults);
        }
        Validator {
            loc: &loc,
            base_dir,
        }
        .build(origin.clone(), text, file)
    }

    /// The pin of `id`, or an error naming the table the file lacks.
    pub fn source(&self, id: SourceId) -> Result<&Source, ConfigError> {
        self.sources.get(&id).ok_or_else(|| {
            ConfigErrorDetails {
            file: self.origin.display_name(),
            line: 0,
            column: 0,
            key: id.table().to_string(),
            message: format!("no [{}] table: the {} source is not pinned", id.table(), id),
            help: Some(format!(
                "add a [{}] table with `url` and one of `branch`, `tag` or `commit`, or build only the sources this file pins",
                id.table()
            )),
            source_line: None,
        }
            .into()
        })
    }

    /// The sources a command works on: those `selection` names (each must
    /// be pinned here), or, when it names none, every source this file pins.
    pub fn select(&self, selection: &Selection) -> Result<Vec<SourceId>, ConfigError> {
        if selection == &Selection::all() {
            return Ok(selection
                .ids()
                .iter()
                .copied()
                .filter(|id| self.sources.contains_key(id))
                .collect());
        }
        for id in selection.ids() {
            self.source(*id)?;
        }
        Ok(selection.ids().to_vec())
    }

    /// The effective configuration as a pin file (defaults filled in).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string_pretty(&self.effective).context("serializing the effective configuration")
    }
}

fn parse_pin_file(loc: &Locator<'_>) -> Result<PinFile, ConfigError> {
    let de = toml::Deserializer::parse(loc.text).map_err(|e| {
        loc.error(
            e.span(),
            "",
            format!("invalid TOML: {}", e.message().trim_end()),
            Some("fix the syntax; `snp-build init` writes a valid example".into()),
        )
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        // Spanned<T> adds a private segment to the path; users never wrote it.
        let path = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
        let inner = e.into_inner();
        let message = inner.message().trim_end().to_string();
        let help = if message.starts_with("unknown field") {
            Some(
                "remove the key or fix its spelling; `snp-build config` prints every valid key"
                    .into(),
            )
        } else if message.starts_with("missing field `url`") {
            Some(
                "every source table needs `url = \"...\"` and one of `branch`, `tag` or `commit`"
                    .into(),
            )
        } else {
            Some("`snp-build config` prints every key with a valid value".into())
        };
        loc.error(inner.span(), &path, message, help)
    })
}

/// Fills every knob `file` leaves out from `defaults`. Pins are not merged.
fn merge_knobs(file: &mut PinFile, defaults: PinFile) {
    let d_build = defaults.build.unwrap_or_default();
    let build = file.build.get_or_insert_with(Default::default);
    fill(&mut build.package_format, d_build.package_format);
    fill(&mut build.compiler_launcher, d_build.compiler_launcher);

    let d_kernel = defaults.kernel.unwrap_or_default();
    let kernel = file.kernel.get_or_insert_with(Default::default);
    fill(&mut kernel.base_config, d_kernel.base_config);
    fill(&mut kernel.set_str, d_kernel.set_str);
    fill(&mut kernel.set_val, d_kernel.set_val);
    fill(&mut kernel.enable, d_kernel.enable);
    fill(&mut kernel.disable, d_kernel.disable);
    fill(&mut kernel.module, d_kernel.module);
    fill(&mut kernel.allow_dropped, d_kernel.allow_dropped);
    fill(&mut kernel.tools, d_kernel.tools);
    fill(&mut kernel.deb_tools, d_kernel.deb_tools);
    fill(&mut kernel.rpm_tools, d_kernel.rpm_tools);
    fill(&mut kernel.btf_tools, d_kernel.btf_tools);
    for (table, default) in [
        (&mut kernel.host, d_kernel.host),
        (&mut kernel.guest, d_kernel.guest),
    ] {
        if let (Some(t), Some(d)) = (table.as_mut(), default) {
            fill(t.submodules_mut(), d.submodules);
        }
    }

    if let (Some(q), Some(d)) = (file.qemu.as_mut(), defaults.qemu) {
        fill(&mut q.submodules, d.submodules);
        fill(&mut q.target_list, d.target_list);
        fill(&mut q.configure_args, d.configure_args);
        fill(&mut q.tools, d.tools);
    }
    if let (Some(o), Some(d)) = (file.ovmf.as_mut(), defaults.ovmf) {
        fill(&mut o.submodules, d.submodules);
        fill(&mut o.platform, d.platform);
        fill(&mut o.arch, d.arch);
        fill(&mut o.build_target, d.build_target);
        fill(&mut o.toolchain, d.toolchain);
        fill(&mut o.defines, d.defines);
        fill(&mut o.build_args, d.build_args);
        fill(&mut o.jobs, d.jobs);
        fill(&mut o.outputs, d.outputs);
        fill(&mut o.tools, d.tools);
    }
}

fn fill<T>(slot: &mut Option<T>, default: Option<T>) {
    if slot.is_none() {
        *slot = default;
    }
}

// ---------------------------------------------------------------------------
// Validation: from the file as written to the typed configuration.

struct Validator<'a> {
    loc: &'a Locator<'a>,
    base_dir: &'a Path,
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

impl Validator<'_> {
    fn err(
        &self,
        span: Option<Range<usize>>,
        key: &str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> ConfigError {
        self.loc.error(span, key, message, Some(help.into()))
    }

    /// An error about a knob the embedded default should have set.
    fn missing_knob(&self, key: &str) -> ConfigError {
        self.loc.error(
            None,
            key,
            "no value, and the embedded default has none either",
            Some("set it explicitly (this is a bug in snp-build's embedded default)".into()),
        )
    }

    fn knob<'v, T>(&self, value: &'v Option<T>, key: &str) -> Result<&'v T> {
        value.as_ref().ok_or_else(|| self.missing_knob(key))
    }

    fn build(&self, origin: Origin, text: &str, file: PinFile) -> Result<Config> {
        let mut sources = BTreeMap::new();
        let build_t = file.build.clone().unwrap_or_default();
        let kernel_t = file.kernel.clone().unwrap_or_default();

        if let Some(t) = &kernel_t.host {
            sources.insert(SourceId::KernelHost, self.source(SourceId::KernelHost, t)?);
        }
        if let Some(t) = &kernel_t.guest {
            sources.insert(
                SourceId::KernelGuest,
                self.source(SourceId::KernelGuest, t)?,
            );
        }
        if let Some(t) = &file.qemu {
            sources.insert(SourceId::Qemu, self.source(SourceId::Qemu, t)?);
        }
        if let Some(t) = &file.ovmf {
            sources.insert(SourceId::Ovmf, self.source(SourceId::Ovmf, t)?);
        }

        let build = BuildKnobs {
            package_format: *self.knob(&build_t.package_format, "build.package-format")?,
            compiler_launcher: {
                let l = self.knob(&build_t.compiler_launcher, "build.compiler-launcher")?;
                if l.get_ref().chars().any(char::is_whitespace) {
                    return Err(self.err(
                        Some(l.span()),
                        "build.compiler-launcher",
                        format!("`{}` is not a single command name", l.get_ref()),
                        "give one program such as \"ccache\", \"sccache\", \"distcc\" or \"icecc\"; its arguments belong in its own config",
                    ));
                }
                (!l.get_ref().is_empty()).then(|| l.get_ref().clone())
            },
        };

        let kernel = self.kernel(&kernel_t)?;
        let qemu = match &file.qemu {
            Some(q) => self.qemu(q)?,
            None => self.qemu(&default_table(|f| f.qemu)?)?,
        };
        let ovmf = match &file.ovmf {
            Some(o) => self.ovmf(o)?,
            None => self.ovmf(&default_table(|f| f.ovmf)?)?,
        };

        Ok(Config {
            origin,
            text: text.to_string(),
            effective: file,
            sources,
            build,
            kernel,
            qemu,
            ovmf,
        })
    }

    fn source<T: PinFields>(&self, id: SourceId, table: &T) -> Result<Source> {
        let pin = table.pin_fields();
        let key = |k: &str| format!("{}.{k}", id.table());

        let url = pin.url.get_ref();
        if url.trim().is_empty() {
            return Err(self.err(
                Some(pin.url.span()),
                &key("url"),
                "the URL is empty",
                "give the git URL of the tree, e.g. \"https://github.com/AMDESE/linux.git\"",
            ));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.err(
                Some(pin.url.span()),
                &key("url"),
                format!("the URL {url:?} contains whitespace"),
                "give the git URL of the tree without spaces",
            ));
        }

        for (name, value) in [("branch", pin.branch), ("tag", pin.tag)] {
            if let Some(v) = value {
                self.ref_name(v, &key(name))?;
            }
        }
        if let Some(c) = pin.commit {
            let sha = c.get_ref();
            if !(7..=40).contains(&sha.len()) || !sha.chars().all(|ch| ch.is_ascii_hexdigit()) {
                return Err(self.err(
                    Some(c.span()),
                    &key("commit"),
                    format!("`{sha}` is not a commit id"),
                    "a commit is 7 to 40 hex digits, e.g. \"3f2a9c1\"; use `branch` or `tag` for names",
                ));
            }
        }

        let owned = |s: &Spanned<String>| s.get_ref().clone();
        let rev = match (pin.branch, pin.tag, pin.commit) {
            (Some(b), None, None) => Rev::Branch { name: owned(b) },
            (None, Some(t), None) => Rev::Tag { name: owned(t) },
            (b, None, Some(c)) => Rev::Commit {
                sha: c.get_ref().to_ascii_lowercase(),
                branch: b.map(owned),
            },
            (None, None, None) => {
                return Err(self.err(
                    Some(pin.url.span()),
                    id.table(),
                    format!(
                        "[{}] pins nothing: it has a `url` but no `branch`, `tag` or `commit`",
                        id.table()
                    ),
                    "add one of `branch = \"...\"`, `tag = \"...\"` or `commit = \"...\"`",
                ));
            }
            (_, Some(t), _) => {
                let other = if pin.branch.is_some() {
                    "branch"
                } else {
                    "commit"
                };
                return Err(self.err(
                    Some(t.span()),
                    &key("tag"),
                    format!("`tag` and `{other}` are both set"),
                    "a pin takes one of `branch`, `tag` or `commit` (only `commit` may be combined with `branch`, meaning the commit must be on that branch)",
                ));
            }
        };

        let patches = match pin.patches {
            Some(p) if p.get_ref().trim().is_empty() => {
                return Err(self.err(
                    Some(p.span()),
                    &key("patches"),
                    "the patch directory is empty",
                    format!("name a directory, or leave `patches` out to use patches/{id}/"),
                ));
            }
            Some(p) => self.base_dir.join(p.get_ref()),
            None => self.base_dir.join("patches").join(id.name()),
        };

        Ok(Source {
            id,
            url: url.clone(),
            rev,
            submodules: table.submodules().unwrap_or(false),
            patches,
        })
    }

    /// git's ref name rules (git-check-ref-format, as libgit2 applies
    /// them), which also keep whitespace and most shell metacharacters out
    /// of every command line; and no leading `-`, which a command would
    /// read as an option.
    fn ref_name(&self, value: &Spanned<String>, key: &str) -> Result<()> {
        let name = value.get_ref();
        let problem = if name.is_empty() {
            Some("it is empty")
        } else if name.starts_with('-') {
            Some("it starts with `-`")
        } else if !git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
            Some(
                "git refuses it (no whitespace, control characters, `~^:?*[\\`, `..`, `@{`, `//`, a trailing `/`, `.` or `.lock`, or a component starting with `.`)",
            )
        } else {
            None
        };
        match problem {
            Some(p) => Err(self.err(
                Some(value.span()),
                key,
                format!("{name:?} is not a valid git ref name: {p}"),
                "use the branch or tag name exactly as git shows it, e.g. \"snp-latest\"",
            )),
            None => Ok(()),
        }
    }

    fn kernel(&self, t: &KernelKnobsTable) -> Result<KernelKnobs> {
        let base = self.knob(&t.base_config, "kernel.base-config")?;
        let base_config = self.base_config(base, "kernel.base-config")?;
        let per_kernel = |table: &Option<KernelTable>, key: &str| -> Result<BaseConfig> {
            match table.as_ref().and_then(|t| t.base_config.as_ref()) {
                Some(b) => self.base_config(b, key),
                None => Ok(base_config.clone()),
            }
        };

        let mut seen: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut option = |s: &Spanned<String>, list: &'static str| -> Result<String> {
            let key = format!("kernel.{list}");
            let name = s.get_ref();
            if let Some(stripped) = name.strip_prefix("CONFIG_") {
                return Err(self.err(
                    Some(s.span()),
                    &key,
                    format!("`{name}` has the CONFIG_ prefix"),
                    format!("write the option as scripts/config takes it: \"{stripped}\""),
                ));
            }
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(self.err(
                    Some(s.span()),
                    &key,
                    format!("{name:?} is not a kernel config option name"),
                    "option names are upper case letters, digits and `_`, e.g. \"KVM_AMD_SEV\"",
                ));
            }
            if let Some(prev) = seen.insert(name.clone(), list) {
                return Err(self.err(
                    Some(s.span()),
                    &key,
                    format!("`{name}` is edited twice (in `{prev}` and `{list}`)"),
                    "keep each option in one list",
                ));
            }
            Ok(name.clone())
        };

        let mut set_str = BTreeMap::new();
        for (k, v) in self.knob(&t.set_str, "kernel.set-str")? {
            let name = option(k, "set-str")?;
            // Placeholders are checked now, not when a kernel stage starts.
            if let Err(e) = crate::kconfig::check_template(&name, v) {
                return Err(self
                    .loc
                    .error(Some(k.span()), "kernel.set-str", e.message, e.help));
            }
            set_str.insert(name, v.clone());
        }
        let mut set_val = BTreeMap::new();
        for (k, v) in self.knob(&t.set_val, "kernel.set-val")? {
            let name = option(k, "set-val")?;
            let text = v.to_string();
            let ok = match v {
                ConfigInt::Int(_) => true,
                ConfigInt::Text(s) => s
                    .strip_prefix("0x")
                    .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit())),
            };
            if !ok {
                return Err(self.err(
                    Some(k.span()),
                    "kernel.set-val",
                    format!("`{name}` = {text:?} is not an int or hex value"),
                    "give an integer (1000) or a hex string (\"0x1000\"); strings go in `set-str`",
                ));
            }
            set_val.insert(name, text);
        }
        let mut list =
            |v: &Option<Vec<Spanned<String>>>, name: &'static str| -> Result<Vec<String>> {
                self.knob(v, &format!("kernel.{name}"))?
                    .iter()
                    .map(|s| option(s, name))
                    .collect()
            };
        let enable = list(&t.enable, "enable")?;
        let disable = list(&t.disable, "disable")?;
        let module = list(&t.module, "module")?;
        let mut allow_dropped = Vec::new();
        for s in self.knob(&t.allow_dropped, "kernel.allow-dropped")? {
            let name = s.get_ref();
            if !seen.contains_key(name) {
                return Err(self.err(
                    Some(s.span()),
                    "kernel.allow-dropped",
                    format!("`{name}` is not edited by any list"),
                    "allow-dropped names options from enable, disable, module, set-str or set-val",
                ));
            }
            allow_dropped.push(name.clone());
        }

        Ok(KernelKnobs {
            host_base_config: per_kernel(&t.host, "kernel.host.base-config")?,
            guest_base_config: per_kernel(&t.guest, "kernel.guest.base-config")?,
            edits: KernelEdits {
                set_str,
                set_val,
                enable,
                disable,
                module,
                allow_dropped,
            },
            tools: KernelTools {
                common: self.tools(&t.tools, "kernel.tools")?,
                deb: self.tools(&t.deb_tools, "kernel.deb-tools")?,
                rpm: self.tools(&t.rpm_tools, "kernel.rpm-tools")?,
                btf: self.tools(&t.btf_tools, "kernel.btf-tools")?,
            },
        })
    }

    /// A list of tool requirements (`"gcc"`, `"nasm >= 2.15.01"`): each
    /// names a tool of `doctor`'s catalog, once.
    fn tools(&self, value: &Option<Vec<Spanned<String>>>, key: &str) -> Result<Vec<Requirement>> {
        let mut out: Vec<Requirement> = Vec::new();
        for s in self.knob(value, key)? {
            let req = Requirement::parse(s.get_ref())
                .map_err(|e| self.err(Some(s.span()), key, e.message, e.help))?;
            if out.iter().any(|r| r.tool == req.tool) {
                return Err(self.err(
                    Some(s.span()),
                    key,
                    format!("`{}` is listed twice", req.tool),
                    "keep one entry per tool (with the highest minimum version)",
                ));
            }
            out.push(req);
        }
        Ok(out)
    }

    fn base_config(&self, value: &Spanned<String>, key: &str) -> Result<BaseConfig> {
        Ok(match value.get_ref().as_str() {
            "running" => BaseConfig::Running,
            "defconfig" => BaseConfig::Defconfig,
            "tinyconfig" => BaseConfig::Tinyconfig,
            "" => {
                return Err(self.err(
                    Some(value.span()),
                    key,
                    "the base config is empty",
                    "use \"running\", \"defconfig\", \"tinyconfig\" or a path to a .config file",
                ));
            }
            path => BaseConfig::File(self.base_dir.join(path)),
        })
    }

    fn qemu(&self, t: &QemuTable) -> Result<QemuKnobs> {
        let targets = self.knob(&t.target_list, "qemu.target-list")?;
        if targets.get_ref().is_empty() || targets.get_ref().iter().any(|s| s.trim().is_empty()) {
            return Err(self.err(
                Some(targets.span()),
                "qemu.target-list",
                "the target list is empty or has an empty entry",
                "build.sh builds [\"x86_64-softmmu\"]",
            ));
        }
        Ok(QemuKnobs {
            target_list: targets.get_ref().clone(),
            configure_args: self.knob(&t.configure_args, "qemu.configure-args")?.clone(),
            tools: self.tools(&t.tools, "qemu.tools")?,
        })
    }

    fn ovmf(&self, t: &OvmfTable) -> Result<OvmfKnobs> {
        let word = |v: &Option<Spanned<String>>, key: &str, help: &str| -> Result<String> {
            let s = self.knob(v, key)?;
            let value = s.get_ref();
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(self.err(
                    Some(s.span()),
                    key,
                    format!("{value:?} is not a valid value"),
                    help,
                ));
            }
            Ok(value.clone())
        };

        let platform = self.knob(&t.platform, "ovmf.platform")?;
        let p = platform.get_ref();
        if !p.ends_with(".dsc") || p.starts_with('/') || p.split('/').any(|c| c == "..") {
            return Err(self.err(
                Some(platform.span()),
                "ovmf.platform",
                format!("{p:?} is not a platform description inside the tree"),
                "give a .dsc path relative to the edk2 tree, e.g. \"OvmfPkg/OvmfPkgX64.dsc\" or \"OvmfPkg/AmdSev/AmdSevX64.dsc\"",
            ));
        }
        let toolchain = word(
            &t.toolchain,
            "ovmf.toolchain",
            "use \"auto\" or an edk2 toolchain tag such as \"GCC5\"",
        )?;
        let defines = self.knob(&t.defines, "ovmf.defines")?;
        for d in defines.get_ref() {
            let name = d.split_once('=').map(|(n, _)| n).unwrap_or("");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(self.err(
                    Some(defines.span()),
                    "ovmf.defines",
                    format!("{d:?} is not a NAME=VALUE define"),
                    "write each define as \"NAME=VALUE\", e.g. \"DEBUG_ON_SERIAL_PORT=TRUE\"",
                ));
            }
        }
        let outputs = self.knob(&t.outputs, "ovmf.outputs")?;
        if outputs.get_ref().is_empty()
            || outputs
                .get_ref()
                .iter()
                .any(|o| o.is_empty() || o.contains('/') || o == "." || o == "..")
        {
            return Err(self.err(
                Some(outputs.span()),
                "ovmf.outputs",
                "the output list is empty or names something that is not a file name",
                "list file names from the FV directory, e.g. [\"OVMF_CODE.fd\", \"OVMF_VARS.fd\", \"OVMF.fd\"]",
            ));
        }
        let jobs = *self.knob(&t.jobs, "ovmf.jobs")?;
        Ok(OvmfKnobs {
            platform: p.clone(),
            arch: word(&t.arch, "ovmf.arch", "build.sh uses \"X64\"")?,
            build_target: word(
                &t.build_target,
                "ovmf.build-target",
                "use \"DEBUG\", \"RELEASE\" or \"NOOPT\"",
            )?,
            toolchain: (toolchain != "auto").then_some(toolchain),
            defines: defines.get_ref().clone(),
            build_args: self.knob(&t.build_args, "ovmf.build-args")?.clone(),
            jobs: (jobs != 0).then_some(jobs),
            outputs: outputs.get_ref().clone(),
            tools: self.tools(&t.tools, "ovmf.tools")?,
        })
    }
}

/// A source table from the embedded default, for knobs of a source the
/// user's file does not pin (so the typed knobs are always complete).
fn default_table<T>(pick: impl FnOnce(PinFile) -> Option<T>) -> Result<T> {
    let loc = Locator {
        file: Origin::Embedded.display_name(),
        text: EMBEDDED,
    };
    let file = parse_pin_file(&loc)?;
    pick(file).ok_or_else(|| loc.error(None, "", "the embedded default lacks a source table", None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_pins_amds_trees_with_build_sh_knobs() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.sources.len(), 4);
        let host = c.source(SourceId::KernelHost).unwrap();
        assert_eq!(host.url, "https://github.com/AMDESE/linux.git");
        assert_eq!(
            host.rev,
            Rev::Branch {
                name: "snp-host-latest".into()
            }
        );
        assert!(c.source(SourceId::Ovmf).unwrap().submodules);
        assert!(!c.source(SourceId::Qemu).unwrap().submodules);
        assert_eq!(c.qemu.target_list, ["x86_64-softmmu"]);
        assert_eq!(c.ovmf.platform, "OvmfPkg/OvmfPkgX64.dsc");
        assert_eq!(c.kernel.host_base_config, BaseConfig::Running);
        assert!(c.kernel.edits.enable.contains(&"KVM_AMD_SEV".to_string()));
        assert!(
            c.kernel
                .edits
                .module
                .contains(&"CRYPTO_DEV_CCP_DD".to_string())
        );
        assert_eq!(c.kernel.edits.set_val["RCU_EXP_CPU_STALL_TIMEOUT"], "1000");
        assert_eq!(
            c.source(SourceId::Qemu).unwrap().patches,
            Path::new("patches/qemu")
        );
    }

    #[test]
    fn effective_config_round_trips() {
        let partial = "[qemu]\nurl = \"file:///x/qemu.git\"\ntag = \"v9.1.0\"\n";
        let c = Config::parse(partial, Origin::File("p.toml".into()), Path::new("/d")).unwrap();
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.qemu.target_list, ["x86_64-softmmu"]);
        let again = Config::parse(
            &c.to_toml().unwrap(),
            Origin::File("q.toml".into()),
            Path::new("/d"),
        )
        .unwrap();
        assert_eq!(again.sources, c.sources);
        assert_eq!(again.kernel, c.kernel);
        assert_eq!(again.ovmf, c.ovmf);
        assert_eq!(again.build, c.build);
    }

    #[test]
    fn embedded_default_lists_the_real_trees_tools() {
        let c = Config::embedded().unwrap();
        let names = |reqs: &[Requirement]| -> Vec<String> {
            reqs.iter().map(ToString::to_string).collect()
        };
        let ovmf = names(&c.ovmf.tools);
        assert!(ovmf.contains(&"nasm >= 2.15.01".to_string()), "{ovmf:?}");
        assert!(ovmf.contains(&"iasl".to_string()), "{ovmf:?}");
        let qemu = names(&c.qemu.tools);
        for t in ["ninja", "meson", "python3-venv", "slirp", "fdt"] {
            assert!(qemu.contains(&t.to_string()), "{t} not in {qemu:?}");
        }
        let kernel = names(&c.kernel.tools.common);
        for t in ["flex", "bison", "bc", "libelf", "libssl"] {
            assert!(kernel.contains(&t.to_string()), "{t} not in {kernel:?}");
        }
        assert_eq!(names(&c.kernel.tools.deb), ["dpkg-dev", "debhelper"]);
        assert_eq!(names(&c.kernel.tools.rpm), ["rpm-build"]);
        assert_eq!(names(&c.kernel.tools.btf), ["pahole >= 1.16"]);
    }

    #[test]
    fn tool_lists_default_from_the_embedded_file_and_refuse_unknown_names() {
        let c = Config::parse(
            "[ovmf]\nurl = \"u\"\nbranch = \"b\"\ntools = [\"make\"]\n",
            Origin::File("p.toml".into()),
            Path::new(""),
        )
        .unwrap();
        assert_eq!(c.ovmf.tools.len(), 1);
        assert_eq!(c.qemu.tools, Config::embedded().unwrap().qemu.tools);
        let e = Config::parse(
            "[kernel]\ntools = [\"gcc\",\n  \"iasll\"]\n",
            Origin::File("p.toml".into()),
            Path::new(""),
        )
        .unwrap_err();
        assert_eq!((e.line, e.column, e.key.as_str()), (3, 3, "kernel.tools"));
        assert!(e.message.contains("unknown tool `iasll`"), "{e}");
        assert!(e.help.as_deref().unwrap().contains("iasl"), "{e}");
        let e = Config::parse(
            "[kernel]\nbtf-tools = [\"pahole\", \"pahole >= 1.16\"]\n",
            Origin::File("p.toml".into()),
            Path::new(""),
        )
        .unwrap_err();
        assert!(e.message.contains("listed twice"), "{e}");
    }

    #[test]
    fn missing_source_names_the_table() {
        let c = Config::parse(
            "[qemu]\nurl = \"u\"\nbranch = \"b\"\n",
            Origin::File("p.toml".into()),
            Path::new(""),
        )
        .unwrap();
        let e = c.source(SourceId::Ovmf).unwrap_err().to_string();
        assert!(e.contains("[ovmf]"), "{e}");
    }
}
