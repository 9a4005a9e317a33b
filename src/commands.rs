//! One function per command. Each takes plain values, validates the pin
//! file first (so a bad file is reported before anything else happens), and
//! returns the JSON fields of its summary.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use crate::cli::{Cli, Command, FetchArgs, PackageFormatArg};
use crate::component::Selection;
use crate::config::{self, Config, Origin, PackageFormat};
use crate::exit::{NotImplemented, UsageError};
use crate::host;
use crate::kconfig::Kernel;
use crate::legacy;
use crate::lock::Lock;
use crate::output::Output;
use crate::source::{self, Layout, Mode, Synced};
use crate::stage::{self, BuildEnv, short_sha};

/// Runs the parsed command line; returns its JSON summary fields.
pub fn run(cli: Cli, out: Output) -> anyhow::Result<Value> {
    let config_path = cli.global.config.as_deref();
    match cli.command {
        None => build(&cli, out),
        Some(Command::Plan) => not_yet(config_path, out, "plan", &[]),
        Some(Command::Fetch {
            fetch: args,
            components,
        }) => {
            let selection = Selection::parse(&components)?;
            let config = load(config_path, out)?;
            fetch(
                &config,
                &cli.global.work_dir,
                &selection,
                Mode::UseLock,
                args,
                out,
            )
        }
        Some(Command::Update {
            discard_changes,
            components,
        }) => {
            let selection = Selection::parse(&components)?;
            let config = load(config_path, out)?;
            let args = FetchArgs {
                locked: false,
                discard_changes,
            };
            fetch(
                &config,
                &cli.global.work_dir,
                &selection,
                Mode::Update,
                args,
                out,
            )
        }
        Some(Command::Doctor { components }) => not_yet(config_path, out, "doctor", &components),
        Some(Command::Install { .. }) => Err(NotImplemented { command: "install" }.into()),
        Some(Command::Clean { .. }) => not_yet(config_path, out, "clean", &[]),
        Some(Command::ImportLegacy {
            file,
            output,
            force,
        }) => import_legacy(&file, output.as_deref(), force, out),
        Some(Command::Init { output, force }) => init(&output, force, out),
        Some(Command::Config) => show_config(config_path, out),
    }
}

/// The build: fetch, then the stages side by side.
fn build(cli: &Cli, out: Output) -> anyhow::Result<Value> {
    let args = &cli.build;
    let selection = Selection::parse(&args.components)?;
    let config = load(cli.global.config.as_deref(), out)?;
    for id in selection.ids() {
        config.source(*id)?;
        if let Some(kernel) = Kernel::from_source(*id) {
            stage::kernel::check_base(&config, kernel)?;
        }
    }
    if args.dry_run {
        return Err(NotImplemented {
            command: "--dry-run",
        }
        .into());
    }
    let (layout, lock, synced) = sync_sources(
        &config,
        &cli.global.work_dir,
        &selection,
        Mode::UseLock,
        args.fetch,
    )?;
    let install = std::path::absolute(&cli.global.install)
        .with_context(|| format!("resolving --install {}", cli.global.install.display()))?;
    let knob = match args.package_format {
        Some(PackageFormatArg::Deb) => PackageFormat::Deb,
        Some(PackageFormatArg::Rpm) => PackageFormat::Rpm,
        None => config.build.package_format,
    };
    let env = BuildEnv {
        work_dir: layout.root.clone(),
        install,
        jobs: cli.global.jobs.map(|j| j.get()).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        serial: args.serial,
        keep_going: args.keep_going,
        package_format: host::package_format(knob, Path::new("/etc/os-release")),
        launcher: config.build.compiler_launcher.clone(),
        verbose: cli.global.verbose > 0,
    };
    let outcomes = stage::run_all(&config, &env, &synced)?;
    let summary = json!({
        "lock": lock.path,
        "sources": synced,
        "stages": outcomes,
        "work_dir": env.work_dir,
        "install": env.install,
    });
    let failed: Vec<_> = outcomes.iter().filter(|o| o.status == "failed").collect();
    if !failed.is_empty() {
        let text = failed
            .iter()
            .map(|o| o.error.clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        return Err(BuildFailed { text, summary }.into());
    }
    out.info(format!(
        "built {} stage(s); logs in {}",
        outcomes.len(),
        env.logs().display()
    ));
    if args.package {
        return Err(NotImplemented {
            command: "--package (the release)",
        }
        .into());
    }
    Ok(summary)
}

/// One or more stages failed; their reports are the message, and the
/// build's JSON summary travels with it for `--json`.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
pub struct BuildFailed {
    pub text: String,
    pub summary: Value,
}

/// `fetch` and `update`: bring the selected trees to their pins and
/// report what moved.
fn fetch(
    config: &Config,
    work_dir: &Path,
    selection: &Selection,
    mode: Mode,
    args: FetchArgs,
    out: Output,
) -> anyhow::Result<Value> {
    let (_, lock, synced) = sync_sources(config, work_dir, selection, mode, args)?;
    if mode == Mode::Update {
        for s in &synced {
            match &s.previous_sha {
                Some(old) => out.info(format!(
                    "{}: {} -> {}",
                    s.source,
                    short_sha(old),
                    short_sha(&s.sha)
                )),
                None => out.info(format!("{}: {} (unchanged)", s.source, short_sha(&s.sha))),
            }
        }
    }
    Ok(json!({ "lock": lock.path, "sources": synced }))
}

/// The build's first step, and all of `fetch`/`update`.
fn sync_sources(
    config: &Config,
    work_dir: &Path,
    selection: &Selection,
    mode: Mode,
    args: FetchArgs,
) -> anyhow::Result<(Layout, Lock, Vec<Synced>)> {
    // Sources the file does not pin are skipped when nothing was named.
    let ids: Vec<_> = if selection == &Selection::all() {
        selection
            .ids()
            .iter()
            .copied()
            .filter(|id| config.sources.contains_key(id))
            .collect()
    } else {
        selection.ids().to_vec()
    };
    let layout = Layout::new(work_dir)?;
    let mut lock = Lock::load(&Lock::path_for(config, &layout.root))?;
    let opts = source::Options {
        mode,
        locked: args.locked,
        discard_changes: args.discard_changes,
    };
    let synced = source::sync(config, &layout, &mut lock, &ids, opts)?;
    Ok((layout, lock, synced))
}

/// Loads the pin file, saying so when the embedded default is used.
pub fn load(path: Option<&Path>, out: Output) -> anyhow::Result<Config> {
    let config = Config::load(path)?;
    if config.origin == Origin::Embedded {
        out.info(format!(
            "note: no ./{} and no --config: using the embedded default pins (AMD's trees); `snp-build init` writes them to ./{} for editing",
            config::DEFAULT_FILE,
            config::DEFAULT_FILE
        ));
    }
    Ok(config)
}

/// A command whose issue has not landed: validate what it would read, then
/// say so honestly.
fn not_yet(
    config_path: Option<&Path>,
    out: Output,
    command: &'static str,
    components: &[String],
) -> anyhow::Result<Value> {
    let selection = Selection::parse(components)?;
    let config = load(config_path, out)?;
    if !components.is_empty() {
        for id in selection.ids() {
            config.source(*id)?;
        }
    }
    Err(NotImplemented { command }.into())
}

fn show_config(path: Option<&Path>, out: Output) -> anyhow::Result<Value> {
    let config = load(path, out)?;
    if out.json {
        return Ok(json!({
            "origin": config.origin.display_name(),
            "config": serde_json::to_value(&config.effective)?,
        }));
    }
    print!(
        "# Effective configuration from {} (defaults filled in)\n{}",
        config.origin.display_name(),
        config.to_toml()?
    );
    Ok(json!({}))
}

fn init(output: &Path, force: bool, out: Output) -> anyhow::Result<Value> {
    if output.exists() && !force {
        return Err(
            UsageError::new(format!("{} already exists", output.display()))
                .help("edit it, or pass --force to replace it with the default")
                .into(),
        );
    }
    std::fs::write(output, config::EMBEDDED)
        .with_context(|| format!("writing {}", output.display()))?;
    out.info(format!(
        "wrote {} (AMD's default pins and build.sh's knobs); edit it, then run `snp-build --package`",
        output.display()
    ));
    Ok(json!({ "path": output }))
}

fn import_legacy(
    file: &Path,
    output: Option<&Path>,
    force: bool,
    out: Output,
) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        UsageError::new(format!("cannot read {}: {e}", file.display()))
            .help("give the path of AMDSEV's bash `stable-commits` file")
    })?;
    let imported = legacy::import(&text, &file.display().to_string())
        .map_err(|e| UsageError::new(format!("{}: {e}", file.display())))?;
    // The result must be a pin file snp-build accepts.
    let base = output
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Config::parse(&imported.toml, Origin::File("<converted>".into()), &base)
        .context("the converted file does not validate (a bug in import-legacy)")?;
    for line in &imported.unknown {
        out.warn(format!("{}: {line}", file.display()));
    }
    for note in &imported.notes {
        out.info(format!("note: {note}"));
    }
    match output {
        Some(path) => {
            if path.exists() && !force {
                return Err(
                    UsageError::new(format!("{} already exists", path.display()))
                        .help("choose another -o, or pass --force to overwrite it")
                        .into(),
                );
            }
            std::fs::write(path, &imported.toml)
                .with_context(|| format!("writing {}", path.display()))?;
            out.info(format!("wrote {}", path.display()));
        }
        None if !out.json => print!("{}", imported.toml),
        None => {}
    }
    Ok(json!({
        "toml": imported.toml,
        "output": output,
        "unknown": imported.unknown,
        "notes": imported.notes,
    }))
}
