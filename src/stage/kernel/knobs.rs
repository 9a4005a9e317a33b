//! The kernels' knobs: the shared `[kernel]` table (base config, the
//! `scripts/config` edits, tool lists) and each kernel's own
//! `base-config`, validated where they are written.
//!
//! | `[kernel]` knob | meaning |
//! |---|---|
//! | `base-config` | the base: `running` (`/boot/config-$(uname -r)`, build.sh's), `defconfig`, `tinyconfig`, or a path; or a list: the base, then config fragments merged on top (paths, `{kernel}` for host/guest; see [`super::base`]). `[kernel.host]` / `[kernel.guest]` may override it |
//! | `set-str`, `set-val`, `enable`, `disable`, `module` | the `scripts/config` edits (`{kernel}` and `{sha}` in set-str values) |
//! | `allow-dropped` | edited options that may end up otherwise (a warning, not a failure) |
//! | `tools`, `deb-tools`, `rpm-tools`, `btf-tools` | host tools: always, by package format, and when the config enables `DEBUG_INFO_BTF` |

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::base::{BaseConfig, BaseSpec, Fragment};
use super::kconfig::{Kernel, KernelEdits, check_template};
use crate::config::{ConfigError, Document};
use crate::tools::Requirement;

type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// `[kernel]` as written (its `host` and `guest` tables are the kernels'
/// pins, read separately).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Shared {
    base_config: Option<Spanned<toml::Value>>,
    set_str: Option<BTreeMap<Spanned<String>, String>>,
    set_val: Option<BTreeMap<Spanned<String>, ConfigInt>>,
    enable: Option<Vec<Spanned<String>>>,
    disable: Option<Vec<Spanned<String>>>,
    module: Option<Vec<Spanned<String>>>,
    allow_dropped: Option<Vec<Spanned<String>>>,
    tools: Option<Vec<Spanned<String>>>,
    deb_tools: Option<Vec<Spanned<String>>>,
    rpm_tools: Option<Vec<Spanned<String>>>,
    btf_tools: Option<Vec<Spanned<String>>>,
}

/// `[kernel.host]` / `[kernel.guest]` beyond the pin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PerKernel {
    base_config: Option<Spanned<toml::Value>>,
}

/// A Kconfig int or hex value for `set-val`: a TOML integer, or a string
/// such as "0x1000".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
enum ConfigInt {
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

/// One kernel's knobs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knobs {
    pub base_config: BaseSpec,
    pub edits: KernelEdits,
    pub tools: Tools,
}

/// The host tools a kernel build needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tools {
    /// Always.
    pub common: Vec<Requirement>,
    /// With the deb package format (`make bindeb-pkg`).
    pub deb: Vec<Requirement>,
    /// With the rpm package format (`make binrpm-pkg`).
    pub rpm: Vec<Requirement>,
    /// Only when the kernel config enables `DEBUG_INFO_BTF`.
    pub btf: Vec<Requirement>,
}

/// Validates the shared `[kernel]` table, and this kernel's own
/// `base-config` from `[kernel.host]` / `[kernel.guest]`.
pub fn validate(doc: &Document<'_>, t: &Shared, own: &PerKernel, kernel: Kernel) -> Result<Knobs> {
    let mut seen: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut option = |s: &Spanned<String>, list: &'static str| -> Result<String> {
        let key = format!("kernel.{list}");
        let name = s.get_ref();
        if let Some(stripped) = name.strip_prefix("CONFIG_") {
            return Err(doc.error(
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
            return Err(doc.error(
                Some(s.span()),
                &key,
                format!("{name:?} is not a kernel config option name"),
                "option names are upper case letters, digits and `_`, e.g. \"KVM_AMD_SEV\"",
            ));
        }
        if let Some(prev) = seen.insert(name.clone(), list) {
            return Err(doc.error(
                Some(s.span()),
                &key,
                format!("`{name}` is edited twice (in `{prev}` and `{list}`)"),
                "keep each option in one list",
            ));
        }
        Ok(name.clone())
    };

    let mut set_str = BTreeMap::new();
    for (k, v) in doc.knob(&t.set_str, "kernel.set-str")? {
        let name = option(k, "set-str")?;
        // Placeholders are checked now, not when a kernel stage starts.
        if let Err(e) = check_template(&name, v) {
            return Err(doc.error(
                Some(k.span()),
                "kernel.set-str",
                e.message,
                e.help.unwrap_or_default(),
            ));
        }
        set_str.insert(name, v.clone());
    }
    let mut set_val = BTreeMap::new();
    for (k, v) in doc.knob(&t.set_val, "kernel.set-val")? {
        let name = option(k, "set-val")?;
        let text = v.to_string();
        let ok = match v {
            ConfigInt::Int(_) => true,
            ConfigInt::Text(s) => s
                .strip_prefix("0x")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit())),
        };
        if !ok {
            return Err(doc.error(
                Some(k.span()),
                "kernel.set-val",
                format!("`{name}` = {text:?} is not an int or hex value"),
                "give an integer (1000) or a hex string (\"0x1000\"); strings go in `set-str`",
            ));
        }
        set_val.insert(name, text);
    }
    let mut list = |v: &Option<Vec<Spanned<String>>>, name: &'static str| -> Result<Vec<String>> {
        doc.knob(v, &format!("kernel.{name}"))?
            .iter()
            .map(|s| option(s, name))
            .collect()
    };
    let enable = list(&t.enable, "enable")?;
    let disable = list(&t.disable, "disable")?;
    let module = list(&t.module, "module")?;
    let mut allow_dropped = Vec::new();
    for s in doc.knob(&t.allow_dropped, "kernel.allow-dropped")? {
        let name = s.get_ref();
        if !seen.contains_key(name) {
            return Err(doc.error(
                Some(s.span()),
                "kernel.allow-dropped",
                format!("`{name}` is not edited by any list"),
                "allow-dropped names options from enable, disable, module, set-str or set-val",
            ));
        }
        allow_dropped.push(name.clone());
    }

    let base_config = match &own.base_config {
        Some(b) => base_spec(
            doc,
            b,
            &format!("kernel.{}.base-config", kernel.name()),
            kernel,
        )?,
        None => base_spec(
            doc,
            doc.knob(&t.base_config, "kernel.base-config")?,
            "kernel.base-config",
            kernel,
        )?,
    };
    Ok(Knobs {
        base_config,
        edits: KernelEdits {
            set_str,
            set_val,
            enable,
            disable,
            module,
            allow_dropped,
        },
        tools: Tools {
            common: doc.requirements(&t.tools, "kernel.tools")?,
            deb: doc.requirements(&t.deb_tools, "kernel.deb-tools")?,
            rpm: doc.requirements(&t.rpm_tools, "kernel.rpm-tools")?,
            btf: doc.requirements(&t.btf_tools, "kernel.btf-tools")?,
        },
    })
}

/// `base-config`: a string (the base) or a list (the base, then fragments).
fn base_spec(
    doc: &Document<'_>,
    value: &Spanned<toml::Value>,
    key: &str,
    kernel: Kernel,
) -> Result<BaseSpec> {
    let shape = "a string (\"running\", \"defconfig\", \"tinyconfig\" or a path) or a list: the \
                 base, then config fragment files, e.g. [\"defconfig\", \"configs/snp-{kernel}.config\"]";
    let wrong = |what: String| doc.error(Some(value.span()), key, what, shape);
    let items: Vec<&str> = match value.get_ref() {
        toml::Value::String(s) => vec![s.as_str()],
        toml::Value::Array(list) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| wrong(format!("{v} in the list is not a string")))
            })
            .collect::<Result<_>>()?,
        other => return Err(wrong(format!("{other} is not a base config"))),
    };
    let Some((base, fragments)) = items.split_first() else {
        return Err(wrong("the list is empty".into()));
    };
    let base = match *base {
        "running" => BaseConfig::Running,
        "defconfig" => BaseConfig::Defconfig,
        "tinyconfig" => BaseConfig::Tinyconfig,
        "" => return Err(wrong("the base config is empty".into())),
        path => BaseConfig::File(doc.base_dir().join(path)),
    };
    let fragments = fragments
        .iter()
        .map(|f| {
            if ["", "running", "defconfig", "tinyconfig"].contains(f) {
                return Err(wrong(format!(
                    "{f:?} is not a fragment file: only the first item is the base"
                )));
            }
            Fragment::new(f, kernel, doc.base_dir()).map_err(|e| {
                doc.error(
                    Some(value.span()),
                    key,
                    e.message,
                    e.help.unwrap_or_default(),
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok(BaseSpec { base, fragments })
}

#[cfg(test)]
mod tests {
    use super::super::kconfig::{DotConfig, localversion, scripts_config_args, verify};
    use super::*;
    use crate::config::{Layout, PinFile};

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn config(text: &str) -> DotConfig {
        DotConfig::parse(text).unwrap()
    }

    /// The embedded default's kernel knobs.
    fn embedded() -> Knobs {
        let file = PinFile::embedded();
        let layout = Layout {
            sources: vec!["qemu", "ovmf", "kernel.guest", "kernel.host"],
            shared: vec!["kernel"],
        };
        let doc = Document::parse(&file, &layout).unwrap();
        let shared: Shared = doc.knobs("kernel").unwrap();
        let own: PerKernel = doc.knobs("kernel.host").unwrap();
        validate(&doc, &shared, &own, Kernel::Host).unwrap()
    }

    #[test]
    fn embedded_default_keeps_build_sh_edits() {
        let k = embedded();
        assert_eq!(k.base_config.base, BaseConfig::Defconfig);
        assert_eq!(
            k.base_config.setting(),
            "defconfig + configs/snp-host.config"
        );
        assert!(k.edits.enable.contains(&"KVM_AMD_SEV".to_string()));
        assert!(k.edits.module.contains(&"CRYPTO_DEV_CCP_DD".to_string()));
        assert_eq!(k.edits.set_val["RCU_EXP_CPU_STALL_TIMEOUT"], "1000");
        let names = |reqs: &[Requirement]| -> Vec<String> {
            reqs.iter().map(ToString::to_string).collect()
        };
        let kernel = names(&k.tools.common);
        for t in ["flex", "bison", "bc", "libelf", "libssl"] {
            assert!(kernel.contains(&t.to_string()), "{t} not in {kernel:?}");
        }
        assert_eq!(names(&k.tools.deb), ["dpkg-dev", "debhelper"]);
        assert_eq!(names(&k.tools.rpm), ["rpm-build"]);
        assert_eq!(names(&k.tools.btf), ["pahole >= 1.16"]);
    }

    #[test]
    fn embedded_edit_list_renders_build_sh_localversion() {
        let args = scripts_config_args(&embedded().edits, Kernel::Host, "1a2b3c4").unwrap();
        assert_eq!(
            args[..3],
            strings(&["--set-str", "LOCALVERSION", "-snp-host-1a2b3c4"])
        );
    }

    #[test]
    fn embedded_edit_list_passes_when_every_edit_took() {
        let e = embedded().edits;
        let mut text = String::new();
        for option in e.set_str.keys() {
            let value = localversion(&e, Kernel::Guest, "1a2b3c4").unwrap().unwrap();
            assert_eq!(option, "LOCALVERSION");
            text.push_str(&format!("CONFIG_{option}=\"{value}\"\n"));
        }
        for (option, value) in &e.set_val {
            text.push_str(&format!("CONFIG_{option}={value}\n"));
        }
        for o in &e.enable {
            text.push_str(&format!("CONFIG_{o}=y\n"));
        }
        for o in &e.module {
            text.push_str(&format!("CONFIG_{o}=m\n"));
        }
        let v = verify(&e, Kernel::Guest, "1a2b3c4", &config(&text));
        assert!(v.is_ok() && v.warnings.is_empty(), "{v}");
    }
}
