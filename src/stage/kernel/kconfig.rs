//! Kernel `.config` edits, and the proof that they survived.
//!
//! build.sh edits `.config` with `scripts/config` and trusts the result, but
//! `scripts/config` accepts any option and `make olddefconfig` then silently
//! drops whatever lacks its dependencies: a host kernel without `KVM_AMD_SEV`
//! is found out at boot. This module is the pure half of the kernel config
//! step (no subprocesses): it builds the `scripts/config` arguments and
//! reads the final `.config` back. (The base config is [`super::base`].)
//!
//! Guarantees:
//! - [`scripts_config_args`] gives the edits of one `scripts/config` call,
//!   in a fixed order (set-str, set-val, enable, disable, module), each value
//!   its own argv element (no shell, no quoting). In set-str values
//!   `{kernel}` becomes `host`/`guest` and `{sha}` the pinned short SHA; any
//!   other `{placeholder}` is an error naming it.
//! - [`verify`] reads every option the edits name back from the final
//!   `.config` (after `make olddefconfig`) and judges it:
//!
//!   | edit    | passes when the final `.config` has     | otherwise |
//!   |---------|-----------------------------------------|-----------|
//!   | enable  | `=y`                                    | failure (`=m` too) |
//!   | module  | `=m`                                    | failure (`=y` too) |
//!   | disable | `is not set`, `=n`, nothing, or `=""`   | failure for `y`/`m`; a warning naming the value for a non-empty string or a number (Kconfig restored its default, e.g. `MODULE_SIG_KEY`) |
//!   | set-str | exactly the rendered string             | failure |
//!   | set-val | the same number (`0x10` equals `16`)    | failure |
//!
//!   An option in `allow-dropped` never fails the stage: its failure becomes
//!   a warning, still reported. `enable = ["DEBUG_INFO"]` that ended up
//!   unset fails with an explanation of the Linux 5.18 choice and the option
//!   to use instead. Nothing is checked that the edits did not ask for.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use serde::Deserialize;

use crate::error::UsageError;

// ---------------------------------------------------------------------------
// Which kernel.

/// One of the two kernels snp-build builds from the same edit list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    Host,
    Guest,
}

impl Kernel {
    /// `host` or `guest`: the `{kernel}` placeholder and build.sh's
    /// LOCALVERSION word.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Host => "host",
            Kernel::Guest => "guest",
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------
// The base config and the edits, as the pin file gives them.

/// The `scripts/config` edits, in the order they are applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KernelEdits {
    pub set_str: BTreeMap<String, String>,
    pub set_val: BTreeMap<String, String>,
    pub enable: Vec<String>,
    pub disable: Vec<String>,
    pub module: Vec<String>,
    pub allow_dropped: Vec<String>,
}

// ---------------------------------------------------------------------------
// Rendering the edits.

/// The arguments of one `scripts/config` call that applies all `edits`, to
/// follow `scripts/config --file <path-to-.config>` (the caller knows where
/// the `.config` lives, e.g. under an `O=` directory).
///
/// The order is fixed so that the call, and the stage's fingerprint, are the
/// same on every run: set-str, set-val, enable, disable, module; within a
/// list, the pin file's order (set-str and set-val are sorted by name).
pub fn scripts_config_args(
    edits: &KernelEdits,
    kernel: Kernel,
    short_sha: &str,
) -> Result<Vec<String>, UsageError> {
    let mut args = Vec::new();
    for (option, template) in &edits.set_str {
        let value = render(option, template, kernel, short_sha)?;
        args.extend(["--set-str".to_string(), option.clone(), value]);
    }
    for (option, value) in &edits.set_val {
        args.extend(["--set-val".to_string(), option.clone(), value.clone()]);
    }
    let flags = [
        ("--enable", &edits.enable),
        ("--disable", &edits.disable),
        ("--module", &edits.module),
    ];
    for (flag, options) in flags {
        for option in options {
            args.extend([flag.to_string(), option.clone()]);
        }
    }
    Ok(args)
}

/// The rendered `LOCALVERSION` of `kernel`, if the edits set one (for the
/// package name and the manifest).
pub fn localversion(
    edits: &KernelEdits,
    kernel: Kernel,
    short_sha: &str,
) -> Result<Option<String>, UsageError> {
    edits
        .set_str
        .get("LOCALVERSION")
        .map(|template| render("LOCALVERSION", template, kernel, short_sha))
        .transpose()
}

/// Checks a set-str template without a kernel or SHA at hand, so a pin file
/// can be refused when it is loaded rather than when a kernel stage starts.
pub fn check_template(option: &str, template: &str) -> Result<(), UsageError> {
    render(option, template, Kernel::Host, "0000000").map(drop)
}

/// Replaces `{kernel}` and `{sha}` in a set-str value.
fn render(option: &str, template: &str, kernel: Kernel, sha: &str) -> Result<String, UsageError> {
    let help = "set-str values know two placeholders: {kernel} (host or guest) and {sha} \
                (the pinned short SHA); fix `set-str` in [kernel] of the pin file";
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(UsageError::new(format!(
                "set-str `{option}` = {template:?} has a `{{` without a closing `}}`"
            ))
            .help(help));
        };
        match &after[..close] {
            "kernel" => out.push_str(kernel.name()),
            "sha" => out.push_str(sha),
            other => {
                return Err(UsageError::new(format!(
                    "set-str `{option}` = {template:?} has an unknown placeholder `{{{other}}}`"
                ))
                .help(help));
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    refuse_unwritable(option, &out)?;
    Ok(out)
}

/// `scripts/config` edits `.config` with sed: a backslash is eaten, a quote
/// is escaped only by newer versions, and a newline would split the line.
/// Such a value cannot arrive intact, so it is refused instead of failing
/// verification after a long wait.
fn refuse_unwritable(option: &str, value: &str) -> Result<(), UsageError> {
    if value
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return Err(UsageError::new(format!(
            "set-str `{option}` = {value:?} contains a quote, a backslash or a control character"
        ))
        .help("scripts/config cannot write such a value faithfully; change it in [kernel] of the pin file"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Reading a `.config`.

/// An option's value in a `.config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `=y`
    Yes,
    /// `=m`
    Module,
    /// `# CONFIG_X is not set` or `=n`.
    No,
    /// `="..."`, unescaped (also an unquoted value that is not a number).
    Str(String),
    /// `=123`, `=-1` or `=0x1f`, as written.
    Num(String),
    /// Not in the file: its dependencies are unmet, or the tree has no such
    /// option. Kconfig means "not set" by this too.
    Absent,
}

impl Value {
    /// Disabled in Kconfig's sense: `n`, unset, or (for a string) empty.
    fn is_disabled(&self) -> bool {
        match self {
            Value::No | Value::Absent => true,
            Value::Str(s) => s.is_empty(),
            Value::Yes | Value::Module | Value::Num(_) => false,
        }
    }
}

/// How the value reads in messages and the manifest: `y`, `m`, `not set`,
/// `"a string"` (escaped as in `.config`), or the number as written.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Yes => f.write_str("y"),
            Value::Module => f.write_str("m"),
            Value::No | Value::Absent => f.write_str("not set"),
            Value::Str(s) => f.write_str(&quote(s)),
            Value::Num(n) => f.write_str(n),
        }
    }
}

/// A `.config` line that is not one Kconfig writes.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// A parsed kernel `.config`: option name (without `CONFIG_`) to value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DotConfig {
    options: BTreeMap<String, Value>,
}

static ABSENT: Value = Value::Absent;

impl DotConfig {
    /// Parses `.config` text. Blank lines and comments are skipped; any
    /// other line must be `CONFIG_X=value` or `# CONFIG_X is not set`, since
    /// a file Kconfig wrote has nothing else and verifying a file we cannot
    /// read would prove nothing. A later line for the same option wins, as
    /// in Kconfig.
    pub fn parse(text: &str) -> Result<DotConfig, ParseError> {
        let mut options = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let error = |message: String| ParseError {
                line: index + 1,
                message,
            };
            if let Some((name, value)) = parse_line(line.trim_end()).map_err(error)? {
                options.insert(name.to_string(), value);
            }
        }
        Ok(DotConfig { options })
    }

    /// Reads and parses the `.config` at `path`.
    pub fn load(path: &Path) -> anyhow::Result<DotConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading kernel config {}", path.display()))?;
        DotConfig::parse(&text).with_context(|| format!("parsing kernel config {}", path.display()))
    }

    /// The value of `option` (with or without the `CONFIG_` prefix).
    pub fn get(&self, option: &str) -> &Value {
        let name = option.strip_prefix("CONFIG_").unwrap_or(option);
        self.options.get(name).unwrap_or(&ABSENT)
    }

    /// The value of `option` as messages and the manifest show it.
    pub fn describe(&self, option: &str) -> String {
        self.get(option).to_string()
    }

    /// Every option the file mentions, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.options.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// One line: `Ok(None)` for blank lines and comments.
fn parse_line(line: &str) -> Result<Option<(&str, Value)>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    if let Some(comment) = line.strip_prefix('#') {
        // Kconfig's own form, exactly: "# CONFIG_X is not set".
        let unset = comment
            .strip_prefix(" CONFIG_")
            .and_then(|rest| rest.strip_suffix(" is not set"))
            .filter(|name| is_option_name(name));
        return Ok(unset.map(|name| (name, Value::No)));
    }
    let Some((name, raw)) = line
        .strip_prefix("CONFIG_")
        .and_then(|rest| rest.split_once('='))
        .filter(|(name, _)| is_option_name(name))
    else {
        return Err(format!(
            "expected `CONFIG_NAME=value`, `# CONFIG_NAME is not set` or a comment, found {line:?}"
        ));
    };
    Ok(Some((name, parse_value(raw)?)))
}

fn is_option_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(raw: &str) -> Result<Value, String> {
    Ok(match raw {
        "y" => Value::Yes,
        "m" => Value::Module,
        "n" => Value::No,
        _ if raw.starts_with('"') => Value::Str(unquote(raw)?),
        _ if parse_int(raw).is_some() => Value::Num(raw.to_string()),
        // Kconfig reads an unquoted string too; it never writes one.
        _ => Value::Str(raw.to_string()),
    })
}

/// `"..."` with Kconfig's escapes (`\"` and `\\`; a backslash takes the next
/// character literally, as Kconfig's reader does).
fn unquote(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = raw.chars().skip(1);
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let trailing: String = chars.collect();
                if !trailing.is_empty() {
                    return Err(format!("text after the closing quote: {trailing:?}"));
                }
                return Ok(out);
            }
            '\\' => out.push(chars.next().ok_or("a string ends in a lone backslash")?),
            c => out.push(c),
        }
    }
    Err(format!("unterminated string {raw:?}"))
}

/// The inverse of [`unquote`]: how Kconfig writes a string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A Kconfig int (`-12`) or hex (`0x1f`) value.
fn parse_int(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let (digits, radix) = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => (hex, 16),
        None => (digits, 10),
    };
    // from_str_radix alone would accept a sign here.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let n = i128::from_str_radix(digits, radix).ok()?;
    Some(if negative { -n } else { n })
}

// ---------------------------------------------------------------------------
// Verification.

/// One edited option whose final value is not what the edit asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Mismatch {
    pub option: String,
    /// `y`, `m`, `not set`, `"string"` or the number asked for.
    pub wanted: String,
    /// The final value, shown the same way.
    pub got: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The verdict on one kernel's final `.config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Verification {
    /// How many edited options were read back.
    pub checked: usize,
    /// Options that did not end up as asked: the stage fails.
    pub failures: Vec<Mismatch>,
    /// Differences Kconfig makes by design, and accepted drops.
    pub warnings: Vec<Mismatch>,
}

impl Verification {
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The report for a person: failures as an `option wanted got` table
    /// with a `help:` line, then warnings.
    pub fn report(&self) -> String {
        let mut out = String::new();
        if self.is_ok() {
            out.push_str(&format!(
                "all {} edited kernel config options verified in the final .config\n",
                self.checked
            ));
        } else {
            out.push_str(&format!(
                "{} of {} edited kernel config options did not survive `make olddefconfig`:\n",
                self.failures.len(),
                self.checked
            ));
            out.push_str(&table(&self.failures));
        }
        for w in &self.warnings {
            out.push_str(&format!(
                "warning: {}: wanted {}, got {}",
                w.option, w.wanted, w.got
            ));
            if let Some(note) = &w.note {
                out.push_str(&format!(" ({note})"));
            }
            out.push('\n');
        }
        if !self.is_ok() {
            out.push_str(
                "help: an option that did not end up as asked usually lacks a dependency (its \
                 `depends on` in Kconfig): enable the missing dependencies in the base config or \
                 in the edits; if the drop is known and acceptable, list the option in \
                 `allow-dropped` in [kernel] of the pin file\n",
            );
        }
        out
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.report().trim_end())
    }
}

/// Failures as an aligned table, each note on its own line below its row.
fn table(rows: &[Mismatch]) -> String {
    let width = |header: &str, cell: fn(&Mismatch) -> &str| {
        rows.iter()
            .map(|r| cell(r).len())
            .chain([header.len()])
            .max()
            .unwrap_or(0)
    };
    let option_w = width("option", |r| &r.option);
    let wanted_w = width("wanted", |r| &r.wanted);
    let mut out = format!("  {:option_w$}  {:wanted_w$}  got\n", "option", "wanted");
    for r in rows {
        out.push_str(&format!(
            "  {:option_w$}  {:wanted_w$}  {}\n",
            r.option, r.wanted, r.got
        ));
        if let Some(note) = &r.note {
            out.push_str(&format!("      note: {note}\n"));
        }
    }
    out
}

/// What an edit asks the final value to be.
#[derive(Clone)]
enum Want {
    Yes,
    Module,
    Disabled,
    Str(String),
    Num(String),
}

impl Want {
    fn describe(&self) -> String {
        match self {
            Want::Yes => "y".into(),
            Want::Module => "m".into(),
            Want::Disabled => "not set".into(),
            Want::Str(s) => quote(s),
            Want::Num(n) => n.clone(),
        }
    }
}

/// The judgement on one option.
enum Verdict {
    Pass,
    Fail(Option<String>),
    Warn(String),
}

/// Reads back every option `edits` names from `final_config` and judges it
/// by the rules in the module documentation.
pub fn verify(
    edits: &KernelEdits,
    kernel: Kernel,
    short_sha: &str,
    final_config: &DotConfig,
) -> Verification {
    let mut v = Verification::default();
    for (option, want) in wants(edits, kernel, short_sha) {
        v.checked += 1;
        let got = final_config.get(&option);
        let (wanted, verdict) = match want {
            Ok(want) => (want.describe(), judge(&option, &want, got)),
            // Only reachable if the caller skipped scripts_config_args.
            Err((template, error)) => (quote(&template), Verdict::Fail(Some(error))),
        };
        let mismatch = |note| Mismatch {
            option: option.clone(),
            wanted: wanted.clone(),
            got: got.to_string(),
            note,
        };
        match verdict {
            Verdict::Pass => {}
            Verdict::Warn(note) => v.warnings.push(mismatch(Some(note))),
            Verdict::Fail(note) if edits.allow_dropped.contains(&option) => {
                let accepted = "allowed to be dropped: listed in allow-dropped in [kernel]";
                let note = match note {
                    Some(n) => format!("{accepted}; {n}"),
                    None => accepted.to_string(),
                };
                v.warnings.push(mismatch(Some(note)));
            }
            Verdict::Fail(note) => v.failures.push(mismatch(note)),
        }
    }
    v
}

/// A set-str value that could not be rendered: the template and the error.
type RenderFailure = (String, String);

/// Every edited option with what it should be, in `scripts_config_args`
/// order so the report reads like the edit list.
fn wants(
    edits: &KernelEdits,
    kernel: Kernel,
    short_sha: &str,
) -> Vec<(String, Result<Want, RenderFailure>)> {
    let mut out = Vec::new();
    for (option, template) in &edits.set_str {
        let want = render(option, template, kernel, short_sha)
            .map(Want::Str)
            .map_err(|e| (template.clone(), e.to_string()));
        out.push((option.clone(), want));
    }
    for (option, value) in &edits.set_val {
        out.push((option.clone(), Ok(Want::Num(value.clone()))));
    }
    let lists = [
        (&edits.enable, Want::Yes),
        (&edits.disable, Want::Disabled),
        (&edits.module, Want::Module),
    ];
    for (options, want) in lists {
        out.extend(options.iter().map(|o| (o.clone(), Ok(want.clone()))));
    }
    out
}

fn judge(option: &str, want: &Want, got: &Value) -> Verdict {
    match want {
        Want::Yes if *got == Value::Yes => Verdict::Pass,
        Want::Yes => Verdict::Fail(debug_info_note(option)),
        Want::Module if *got == Value::Module => Verdict::Pass,
        Want::Module => Verdict::Fail(None),
        Want::Disabled => judge_disabled(got),
        Want::Str(s) => match got {
            Value::Str(g) if g == s => Verdict::Pass,
            _ => Verdict::Fail(None),
        },
        Want::Num(n) => match got {
            Value::Num(g) | Value::Str(g) if same_number(n, g) => Verdict::Pass,
            _ => Verdict::Fail(None),
        },
    }
}

/// `disable` of a string or int means "empty or unset", but Kconfig gives a
/// string or int with a default its default back on `olddefconfig` (the
/// edit cannot stick): worth a warning, not a failed build.
fn judge_disabled(got: &Value) -> Verdict {
    match got {
        _ if got.is_disabled() => Verdict::Pass,
        Value::Str(_) | Value::Num(_) => Verdict::Warn(
            "Kconfig restored this option's default after olddefconfig; a disable cannot \
             unset it"
                .to_string(),
        ),
        _ => Verdict::Fail(None),
    }
}

/// Same value: numerically when both parse (`0x10` == `16`), else as text.
fn same_number(wanted: &str, got: &str) -> bool {
    match (parse_int(wanted), parse_int(got)) {
        (Some(w), Some(g)) => w == g,
        _ => wanted == got,
    }
}

/// build.sh's `--enable DEBUG_INFO` does nothing since Linux 5.18; say why
/// and what to write instead.
fn debug_info_note(option: &str) -> Option<String> {
    (option == "DEBUG_INFO").then(|| {
        "since Linux 5.18 DEBUG_INFO is set through a choice and `--enable DEBUG_INFO` is \
         undone by olddefconfig; enable DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT (or \
         DEBUG_INFO_DWARF4 / DEBUG_INFO_DWARF5) instead"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn edits() -> KernelEdits {
        KernelEdits {
            set_str: BTreeMap::from([("LOCALVERSION".into(), "-snp-{kernel}-{sha}".into())]),
            set_val: BTreeMap::from([("RCU_EXP_CPU_STALL_TIMEOUT".into(), "1000".into())]),
            enable: strings(&["EXPERT", "KVM_AMD_SEV"]),
            disable: strings(&["LOCALVERSION_AUTO", "SYSTEM_TRUSTED_KEYS"]),
            module: strings(&["CRYPTO_DEV_CCP_DD"]),
            allow_dropped: Vec::new(),
        }
    }

    /// A final `.config` where every edit of `edits()` took.
    const GOOD: &str = "\
#
# Automatically generated file; DO NOT EDIT.
#
CONFIG_LOCALVERSION=\"-snp-host-1a2b3c4\"
# CONFIG_LOCALVERSION_AUTO is not set
CONFIG_RCU_EXP_CPU_STALL_TIMEOUT=1000
CONFIG_EXPERT=y
CONFIG_KVM_AMD_SEV=y
CONFIG_SYSTEM_TRUSTED_KEYS=\"\"
CONFIG_CRYPTO_DEV_CCP_DD=m
";

    fn config(text: &str) -> DotConfig {
        DotConfig::parse(text).unwrap()
    }

    /// `GOOD` with one line replaced (or removed when `new` is empty).
    fn good_with(old: &str, new: &str) -> DotConfig {
        assert!(GOOD.contains(old), "{old}");
        config(&GOOD.replace(old, new))
    }

    fn check(edits: &KernelEdits, c: &DotConfig) -> Verification {
        verify(edits, Kernel::Host, "1a2b3c4", c)
    }

    fn row(option: &str, wanted: &str, got: &str) -> (String, String, String) {
        (option.into(), wanted.into(), got.into())
    }

    fn rows(list: &[Mismatch]) -> Vec<(String, String, String)> {
        list.iter()
            .map(|m| row(&m.option, &m.wanted, &m.got))
            .collect()
    }

    // --- parsing

    #[test]
    fn parses_every_form_kconfig_writes() {
        let c = config(
            "# comment\n\nCONFIG_A=y\nCONFIG_B=m\nCONFIG_C=n\n# CONFIG_D is not set\n\
             CONFIG_E=\"text\"\nCONFIG_F=\"\"\nCONFIG_G=123\nCONFIG_H=0x1f\nCONFIG_I=-1\n\
             CONFIG_64BIT=y\n",
        );
        assert_eq!(*c.get("A"), Value::Yes);
        assert_eq!(*c.get("B"), Value::Module);
        assert_eq!(*c.get("C"), Value::No);
        assert_eq!(*c.get("D"), Value::No);
        assert_eq!(*c.get("E"), Value::Str("text".into()));
        assert_eq!(*c.get("F"), Value::Str(String::new()));
        assert_eq!(*c.get("G"), Value::Num("123".into()));
        assert_eq!(*c.get("H"), Value::Num("0x1f".into()));
        assert_eq!(*c.get("I"), Value::Num("-1".into()));
        assert_eq!(*c.get("CONFIG_64BIT"), Value::Yes);
        assert_eq!(*c.get("NOPE"), Value::Absent);
        assert_eq!(c.iter().count(), 10);
    }

    #[test]
    fn parses_kconfig_string_escapes_and_shows_them_again() {
        let c = config(r#"CONFIG_CMDLINE="a \"quoted\" c:\\path""#);
        assert_eq!(
            *c.get("CMDLINE"),
            Value::Str(r#"a "quoted" c:\path"#.into())
        );
        assert_eq!(c.describe("CMDLINE"), r#""a \"quoted\" c:\\path""#);
    }

    #[test]
    fn later_assignment_wins_as_in_kconfig() {
        let c = config("CONFIG_A=y\n# CONFIG_A is not set\n");
        assert_eq!(*c.get("A"), Value::No);
    }

    #[test]
    fn refuses_lines_kconfig_does_not_write() {
        let e = DotConfig::parse("CONFIG_A=y\nCONFIG_B=\"open\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unterminated"), "{e}");
        let e = DotConfig::parse("CONFIG_A=\"x\" y\n").unwrap_err();
        assert!(e.message.contains("after the closing quote"), "{e}");
        let e = DotConfig::parse("\nKVM=y\n").unwrap_err();
        assert_eq!(e.to_string().split(':').next(), Some("line 2"));
    }

    #[test]
    fn value_text_for_messages() {
        let c = config("CONFIG_A=y\nCONFIG_K=\"certs/signing_key.pem\"\nCONFIG_N=0x10\n");
        assert_eq!(c.describe("A"), "y");
        assert_eq!(c.describe("K"), "\"certs/signing_key.pem\"");
        assert_eq!(c.describe("N"), "0x10");
        assert_eq!(c.describe("MISSING"), "not set");
    }

    // --- rendering

    #[test]
    fn args_are_in_fixed_order_with_values_as_separate_elements() {
        let mut e = edits();
        e.set_str
            .insert("CMDLINE".into(), "console=ttyS0 {kernel}".into());
        let args = scripts_config_args(&e, Kernel::Guest, "1a2b3c4").unwrap();
        assert_eq!(
            args,
            strings(&[
                "--set-str",
                "CMDLINE",
                "console=ttyS0 guest",
                "--set-str",
                "LOCALVERSION",
                "-snp-guest-1a2b3c4",
                "--set-val",
                "RCU_EXP_CPU_STALL_TIMEOUT",
                "1000",
                "--enable",
                "EXPERT",
                "--enable",
                "KVM_AMD_SEV",
                "--disable",
                "LOCALVERSION_AUTO",
                "--disable",
                "SYSTEM_TRUSTED_KEYS",
                "--module",
                "CRYPTO_DEV_CCP_DD",
            ])
        );
    }

    #[test]
    fn localversion_is_rendered_per_kernel() {
        let e = edits();
        assert_eq!(
            localversion(&e, Kernel::Host, "1a2b3c4")
                .unwrap()
                .as_deref(),
            Some("-snp-host-1a2b3c4")
        );
        let mut none = edits();
        none.set_str.clear();
        assert_eq!(localversion(&none, Kernel::Host, "1a2b3c4").unwrap(), None);
    }

    #[test]
    fn unknown_placeholder_is_an_error_naming_it() {
        let mut e = edits();
        e.set_str
            .insert("LOCALVERSION".into(), "-snp-{kernl}-{sha}".into());
        let err = scripts_config_args(&e, Kernel::Host, "1a2b3c4")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`{kernl}`"), "{err}");
        assert!(err.contains("LOCALVERSION"), "{err}");
        assert!(err.contains("help:") && err.contains("{sha}"), "{err}");
        let err = check_template("LOCALVERSION", "-snp-{sha").unwrap_err();
        assert!(err.to_string().contains("without a closing"), "{err}");
        assert!(check_template("LOCALVERSION", "-snp-{kernel}-{sha}").is_ok());
    }

    #[test]
    fn values_scripts_config_cannot_write_are_refused() {
        for bad in ["a\"b", "a\\b", "a\nb"] {
            let err = check_template("LOCALVERSION", bad).unwrap_err();
            assert!(err.to_string().contains("LOCALVERSION"), "{err}");
        }
    }

    // --- verification

    #[test]
    fn all_edits_applied_pass() {
        let v = check(&edits(), &config(GOOD));
        assert!(v.is_ok(), "{v}");
        assert!(v.warnings.is_empty(), "{v}");
        assert_eq!(v.checked, 7);
        assert!(v.report().contains("all 7 edited"), "{v}");
    }

    #[test]
    fn dropped_kvm_amd_sev_fails_with_wanted_and_got() {
        for dropped in [
            "",
            "# CONFIG_KVM_AMD_SEV is not set\n",
            "CONFIG_KVM_AMD_SEV=n\n",
        ] {
            let v = check(&edits(), &good_with("CONFIG_KVM_AMD_SEV=y\n", dropped));
            assert!(!v.is_ok());
            assert_eq!(rows(&v.failures), [row("KVM_AMD_SEV", "y", "not set")]);
            let report = v.report();
            assert!(report.contains("KVM_AMD_SEV  y       not set"), "{report}");
            assert!(report.contains("help:"), "{report}");
            assert!(report.contains("allow-dropped"), "{report}");
        }
    }

    #[test]
    fn allow_dropped_turns_the_failure_into_a_warning() {
        let mut e = edits();
        e.allow_dropped = strings(&["KVM_AMD_SEV"]);
        let v = check(&e, &good_with("CONFIG_KVM_AMD_SEV=y\n", ""));
        assert!(v.is_ok(), "{v}");
        assert_eq!(rows(&v.warnings), [row("KVM_AMD_SEV", "y", "not set")]);
        assert!(
            v.warnings[0]
                .note
                .as_deref()
                .unwrap()
                .contains("allowed to be dropped")
        );
        assert!(v.report().contains("warning: KVM_AMD_SEV"), "{v}");
    }

    #[test]
    fn enable_that_became_module_fails() {
        let v = check(
            &edits(),
            &good_with("CONFIG_KVM_AMD_SEV=y", "CONFIG_KVM_AMD_SEV=m"),
        );
        assert_eq!(rows(&v.failures), [row("KVM_AMD_SEV", "y", "m")]);
    }

    #[test]
    fn module_that_became_builtin_fails() {
        let v = check(
            &edits(),
            &good_with("CONFIG_CRYPTO_DEV_CCP_DD=m", "CONFIG_CRYPTO_DEV_CCP_DD=y"),
        );
        assert_eq!(rows(&v.failures), [row("CRYPTO_DEV_CCP_DD", "m", "y")]);
    }

    #[test]
    fn disable_passes_for_not_set_n_absent_and_empty_string() {
        let mut e = edits();
        e.disable = strings(&["A", "B", "C", "SYSTEM_TRUSTED_KEYS"]);
        let c = good_with(
            "CONFIG_EXPERT=y\n",
            "CONFIG_EXPERT=y\n# CONFIG_A is not set\nCONFIG_B=n\n",
        );
        let v = check(&e, &c);
        assert!(v.is_ok() && v.warnings.is_empty(), "{v}");
    }

    #[test]
    fn disable_that_stayed_on_fails() {
        let v = check(
            &edits(),
            &good_with(
                "# CONFIG_LOCALVERSION_AUTO is not set",
                "CONFIG_LOCALVERSION_AUTO=y",
            ),
        );
        assert_eq!(
            rows(&v.failures),
            [row("LOCALVERSION_AUTO", "not set", "y")]
        );
    }

    #[test]
    fn disable_restored_to_a_default_string_or_number_is_a_warning_naming_the_value() {
        let mut e = edits();
        e.disable.extend(strings(&["MODULE_SIG_KEY", "SOME_INT"]));
        let c = good_with(
            "CONFIG_EXPERT=y\n",
            "CONFIG_EXPERT=y\nCONFIG_MODULE_SIG_KEY=\"certs/signing_key.pem\"\nCONFIG_SOME_INT=64\n",
        );
        let v = check(&e, &c);
        assert!(v.is_ok(), "{v}");
        assert_eq!(
            rows(&v.warnings),
            [
                row("MODULE_SIG_KEY", "not set", "\"certs/signing_key.pem\""),
                row("SOME_INT", "not set", "64"),
            ]
        );
        let report = v.report();
        assert!(
            report
                .contains("warning: MODULE_SIG_KEY: wanted not set, got \"certs/signing_key.pem\""),
            "{report}"
        );
    }

    #[test]
    fn set_val_compares_numbers() {
        let same = check(&edits(), &config(GOOD));
        assert!(same.is_ok(), "{same}");
        let other = check(
            &edits(),
            &good_with("STALL_TIMEOUT=1000", "STALL_TIMEOUT=500"),
        );
        assert_eq!(
            rows(&other.failures),
            [row("RCU_EXP_CPU_STALL_TIMEOUT", "1000", "500")]
        );
        let dropped = check(
            &edits(),
            &good_with("CONFIG_RCU_EXP_CPU_STALL_TIMEOUT=1000\n", ""),
        );
        assert_eq!(
            rows(&dropped.failures),
            [row("RCU_EXP_CPU_STALL_TIMEOUT", "1000", "not set")]
        );
    }

    #[test]
    fn set_val_compares_hex_numerically() {
        let mut e = edits();
        e.set_val = BTreeMap::from([("PHYS_ALIGN".into(), "0x10".into())]);
        let text = format!("{GOOD}CONFIG_PHYS_ALIGN=16\n");
        assert!(check(&e, &config(&text)).is_ok());
        let text = format!("{GOOD}CONFIG_PHYS_ALIGN=0x11\n");
        assert_eq!(
            rows(&check(&e, &config(&text)).failures),
            [row("PHYS_ALIGN", "0x10", "0x11")]
        );
        assert!(same_number("0x1F", "31") && same_number("-1", "-1"));
        assert!(!same_number("0x10", "10"));
    }

    #[test]
    fn set_str_must_match_exactly() {
        let v = check(
            &edits(),
            &good_with("-snp-host-1a2b3c4", "-snp-host-1a2b3c4-dirty"),
        );
        assert_eq!(
            rows(&v.failures),
            [row(
                "LOCALVERSION",
                "\"-snp-host-1a2b3c4\"",
                "\"-snp-host-1a2b3c4-dirty\""
            )]
        );
        // The guest kernel wants its own name.
        let v = verify(&edits(), Kernel::Guest, "1a2b3c4", &config(GOOD));
        assert_eq!(v.failures[0].wanted, "\"-snp-guest-1a2b3c4\"");
    }

    #[test]
    fn plain_debug_info_explains_the_linux_5_18_choice() {
        let mut e = edits();
        e.enable.push("DEBUG_INFO".into());
        let v = check(&e, &config(GOOD));
        assert_eq!(rows(&v.failures), [row("DEBUG_INFO", "y", "not set")]);
        let note = v.failures[0].note.as_deref().unwrap();
        assert!(note.contains("5.18") && note.contains("choice"), "{note}");
        assert!(
            note.contains("DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT"),
            "{note}"
        );
        assert!(v.report().contains("note: since Linux 5.18"), "{v}");
    }

    #[test]
    fn debug_info_through_the_choice_passes() {
        let mut e = edits();
        e.enable.push("DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT".into());
        let text =
            format!("{GOOD}CONFIG_DEBUG_INFO=y\nCONFIG_DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT=y\n");
        let v = check(&e, &config(&text));
        assert!(v.is_ok() && v.warnings.is_empty(), "{v}");
    }

    #[test]
    fn report_is_a_table_of_failures() {
        let text = GOOD
            .replace("CONFIG_KVM_AMD_SEV=y\n", "")
            .replace("CONFIG_EXPERT=y\n", "");
        let c = config(&text);
        let v = check(&edits(), &c);
        let report = v.report();
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "2 of 7 edited kernel config options did not survive `make olddefconfig`:",
                "  option       wanted  got",
                "  EXPERT       y       not set",
                "  KVM_AMD_SEV  y       not set",
            ]
        );
        assert!(lines[4].starts_with("help: "), "{report}");
    }

    #[test]
    fn verification_serializes_for_the_manifest() {
        let v = check(
            &edits(),
            &good_with("CONFIG_KVM_AMD_SEV=y", "CONFIG_KVM_AMD_SEV=m"),
        );
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"checked":7,"failures":[{"option":"KVM_AMD_SEV","wanted":"y","got":"m"}],"warnings":[]}"#
        );
    }

    #[test]
    fn kernel_names() {
        assert_eq!(Kernel::Host.name(), "host");
        assert_eq!(Kernel::Guest.to_string(), "guest");
    }
}
