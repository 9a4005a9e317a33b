//! `snp-build completions SHELL` and `snp-build man`: the shell completion
//! scripts (clap_complete) and the man page (clap_mangen), both generated
//! from [`args::command`], the very `clap::Command` the binary parses
//! with, the registry's component names included. There is no second
//! definition of the command line to keep in step: a new flag is in the
//! completions and the man page the moment it is in `args.rs`.
//!
//! The .deb (`cargo xtask dist`) runs the binary it ships to get both, so
//! a package never carries a page for another build.
//!
//! `snp-build schema [--dir DIR]` (hidden) writes the JSON Schema of every
//! document snp-build writes ([`schemas`]) into `DIR` (`docs/schemas`):
//! generated from the types the binary writes them with, and the
//! registry's stage sections, as the release's own `manifest.schema.json`
//! is. It is a subcommand, not an xtask, for that reason: the manifest's
//! schema depends on the registry (a fifth component adds its section),
//! and the binary must make it for every release anyway.

use std::path::{Path, PathBuf};

use anyhow::Context;

use schemars::{JsonSchema, Schema};

use super::args::{self, CompletionShell};
use super::render::{self, Outcome};
use crate::commands;
use crate::stage::Registry;

/// The name completions are registered under and the man page is titled
/// with: the installed binary's.
const BIN: &str = "snp-build";

/// The completion script for `shell`.
pub fn completions(registry: &Registry, shell: CompletionShell) -> String {
    let mut cmd = args::command(registry);
    let mut out = Vec::new();
    clap_complete::generate(clap_complete::Shell::from(shell), &mut cmd, BIN, &mut out);
    // clap_complete writes only what it formats from the Command's names
    // and help, all of it UTF-8.
    let script = String::from_utf8(out).expect("clap_complete writes UTF-8");
    match shell {
        CompletionShell::Bash => fix_hyphenated_bash_states(&script),
        CompletionShell::Zsh | CompletionShell::Fish => script,
    }
}

/// clap_complete's bash script (4.6.12) spells a subcommand's state two
/// ways when the binary's name has a hyphen: the loop over the words sets
/// `snp__build__subcmd__plan`, the `case` arms test
/// `snp__subcmd__build__subcmd__plan`, so nothing after a subcommand
/// (its flags, `completions`' shells) ever completes (clap-rs/clap#6421,
/// open). The arms are given the loop's spelling; once clap_complete is
/// fixed the wrong spelling is absent and this changes nothing.
/// tests/cli.rs completes past a subcommand in a real bash.
fn fix_hyphenated_bash_states(script: &str) -> String {
    let wrong = BIN.replace('-', "__subcmd__");
    let right = BIN.replace('-', "__");
    script.replace(&format!("{wrong}__subcmd__"), &format!("{right}__subcmd__"))
}

/// The command the pages describe: without clap's `help` subcommand,
/// which is `--help` again and would be a page of its own.
fn man_command(registry: &Registry) -> clap::Command {
    let mut cmd = args::command(registry).disable_help_subcommand(true);
    // Sets each subcommand's display name (`snp-build-plan`) and bin name
    // (`snp-build plan`), which its page's title and synopsis use.
    cmd.build();
    cmd
}

/// The man page snp-build(1), as roff.
pub fn man_page(registry: &Registry) -> std::io::Result<String> {
    render(&man_command(registry))
}

/// Every man page: snp-build(1) and, for each subcommand it lists under
/// SUBCOMMANDS as `snp-build-plan(1)` (git's convention, and
/// clap_mangen's), that page, so no reference in the main page dangles.
/// Written into `dir` (made when missing) as `NAME.1`; returns the files
/// in the order written, the main page first.
pub fn man_pages(registry: &Registry, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn collect(cmd: &clap::Command, pages: &mut Vec<clap::Command>) {
        pages.push(cmd.clone());
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            collect(sub, pages);
        }
    }
    let mut pages = Vec::new();
    collect(&man_command(registry), &mut pages);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for cmd in pages {
        let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
        let path = dir.join(format!("{name}.1"));
        // A plain write (mode 0644 under the umask snp-build sets), not
        // fsutil's temporary file, which would leave the page 0600.
        std::fs::write(&path, render(&cmd)?)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn render(cmd: &clap::Command) -> std::io::Result<String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    Ok(String::from_utf8(out).expect("clap_mangen writes UTF-8"))
}

/// Every document snp-build writes, by name, with its JSON Schema: the
/// release's files (`manifest`, `provenance`), the install record, the
/// launch measurement record, and each command's `--json` document (by
/// the command's name; `update`'s is `fetch`'s).
pub fn schemas(registry: &Registry) -> Vec<(&'static str, Schema)> {
    fn output<T: JsonSchema>(command: &str) -> Schema {
        titled::<Outcome<T>>(&format!("snp-build {command} --json"))
    }
    fn titled<T: JsonSchema>(title: &str) -> Schema {
        let mut schema = crate::schema::of::<T>();
        schema.insert("title".into(), title.into());
        schema
    }
    vec![
        ("manifest", registry.manifest_schema()),
        (
            "provenance",
            titled::<crate::release::provenance::Statement>("snp-build provenance.json"),
        ),
        (
            "install-record",
            titled::<commands::install::record::Record>(
                "snp-build installed.json (the install record)",
            ),
        ),
        (
            "measurement",
            titled::<crate::release::measure::MeasurementRecord>(
                "snp-build launch measurement (measure --json's and the manifest's measurement)",
            ),
        ),
        ("build", output::<commands::build::BuildResult>("build")),
        ("plan", output::<render::Plan>("plan")),
        ("fetch", output::<commands::fetch::Fetched>("fetch")),
        ("update", output::<commands::fetch::Fetched>("update")),
        ("doctor", output::<commands::doctor::Doctor>("doctor")),
        ("install", output::<commands::install::Installed>("install")),
        (
            "uninstall",
            output::<commands::install::Uninstalled>("uninstall"),
        ),
        ("verify", output::<commands::verify::Verified>("verify")),
        ("keygen", output::<render::Keys>("keygen")),
        ("clean", output::<commands::clean::Cleaned>("clean")),
        (
            "import-legacy",
            output::<commands::pins::Imported>("import-legacy"),
        ),
        ("init", output::<commands::pins::Initialized>("init")),
        ("config", output::<render::Config>("config")),
        ("measure", output::<render::Measured>("measure")),
        ("completions", output::<render::Completions>("completions")),
        ("man", output::<render::Man>("man")),
        ("schema", output::<render::Schemas>("schema")),
    ]
}

/// Writes every schema into `dir` (made when missing) as
/// `NAME.schema.json`; returns the files, in [`schemas`]' order.
pub fn write_schemas(registry: &Registry, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, schema) in schemas(registry) {
        let path = dir.join(format!("{name}.schema.json"));
        // A plain write, as the man pages (mode 0644).
        std::fs::write(&path, crate::schema::to_bytes(&schema))
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command has its document's schema.
    #[test]
    fn every_command_has_a_schema() {
        let registry = Registry::standard();
        let names: Vec<&str> = schemas(&registry).iter().map(|(n, _)| *n).collect();
        let cmd = args::command(&registry);
        for sub in cmd.get_subcommands() {
            assert!(names.contains(&sub.get_name()), "{}", sub.get_name());
        }
        assert!(names.contains(&"build"));
    }
}
