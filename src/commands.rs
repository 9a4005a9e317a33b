//! One function per command. Each takes plain values, validates the pin
//! file first (so a bad file is reported before anything else happens), and
//! returns the JSON fields of its summary.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

use crate::cli::{Cli, Command, FetchArgs, PackageFormatArg};
use crate::component::Selection;
use crate::component::SourceId;
use crate::config::{self, Config, Origin, PackageFormat};
use crate::doctor;
use crate::exec::Registry;
use crate::exit::UsageError;
use crate::fingerprint;
use crate::host;
use crate::kconfig::Kernel;
use crate::legacy;
use crate::lock::Lock;
use crate::output::Output;
use crate::plan;
use crate::release::{self, Release};
use crate::source::{self, Layout, Mode, Synced};
use crate::stage::{self, BuildEnv, short_sha};
use crate::stage::{SourceFacts, Work};
use crate::toolversion::ToolVersions;
use crate::workdir;

/// Runs the parsed command line; returns its JSON summary fields.
pub fn run(cli: Cli, out: Output) -> anyhow::Result<Value> {
    let config_path = cli.global.config.as_deref();
    match cli.command {
        None => build(&cli, out),
        Some(Command::Plan {
            ref components,
            ref force,
            package,
        }) => {
            let selection = Selection::parse(components)?;
            let config = load(config_path, out)?;
            let ids = config.select(&selection)?;
            let env = build_env(&cli, &config, force.clone(), false)?;
            let release = package.then(|| release_target(&cli)).transpose()?;
            show_plan(&config, &env, &ids, release, out)
        }
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
        Some(Command::Doctor {
            host,
            sysroot,
            release,
            components,
        }) => crate::doctor::command(
            &crate::doctor::Request {
                config: config_path,
                work_dir: &cli.global.work_dir,
                host,
                sysroot: sysroot.as_deref(),
                release: release.as_deref(),
                components: &components,
            },
            out,
        ),
        Some(Command::Install {
            release,
            dry_run,
            root,
            yes,
        }) => crate::install::install(
            &crate::install::InstallRequest {
                release: release.as_deref(),
                dry_run,
                root: root.as_deref(),
                yes,
            },
            out,
        ),
        Some(Command::Uninstall { root, dry_run }) => crate::install::uninstall(
            &crate::install::UninstallRequest {
                root: root.as_deref(),
                dry_run,
            },
            out,
        ),
        Some(Command::Clean { all, broken }) => {
            // Nothing here reads the pins, but a --config given is checked.
            if config_path.is_some() {
                load(config_path, out)?;
            }
            clean(&cli.global.work_dir, all, broken, out)
        }
        Some(Command::ImportLegacy {
            file,
            output,
            force,
        }) => import_legacy(&file, output.as_deref(), force, out),
        Some(Command::Init { output, force }) => init(&output, force, out),
        Some(Command::Config) => show_config(config_path, out),
        Some(Command::Measure(ref args)) => crate::measure::command(args, out),
    }
}

/// The build: fetch, then the stages side by side.
fn build(cli: &Cli, out: Output) -> anyhow::Result<Value> {
    let args = &cli.build;
    let selection = Selection::parse(&args.components)?;
    let config = load(cli.global.config.as_deref(), out)?;
    let ids = config.select(&selection)?;
    for id in &ids {
        if let Some(kernel) = Kernel::from_source(*id) {
            stage::kernel::check_base(&config, kernel)?;
        }
    }
    let env = build_env(cli, &config, args.force.clone(), args.clean)?;
    let release_to = args.package.then(|| release_target(cli)).transpose()?;
    if args.dry_run {
        return show_plan(&config, &env, &ids, release_to, out);
    }
    let _signals = Registry::global();
    let _lock = workdir::lock(&env.work_dir)?;
    // Preflight, before anything is fetched: the tools of the stages the
    // lock says will run (none on a no-op run, so no checks at all).
    let mut checked: Vec<SourceId> = Vec::new();
    if !args.no_preflight {
        let lock = Lock::load(&Lock::path_for(&config, &env.work_dir))?;
        checked = plan::plan(&config, &env, &lock, &ids)?
            .iter()
            .filter(|p| p.action == "run")
            .filter_map(|p| SourceId::from_name(&p.stage))
            .collect();
        if !checked.is_empty() {
            doctor::preflight(&config, &checked, env.package_format, &env.work_dir)?;
        }
    }
    let (_, lock, synced) = sync_sources(
        &config,
        &cli.global.work_dir,
        &selection,
        Mode::UseLock,
        args.fetch,
    )?;

    // Decide from the SHAs actually resolved, with the plan's functions.
    let mut tools = ToolVersions::load(&env.work_dir);
    let work: Vec<Work> = synced
        .iter()
        .map(|s| {
            let inputs = stage::inputs(&config, &env, s.source, &SourceFacts::from(s), &mut tools);
            let decision = plan::decide(&env, s.source.name(), &inputs);
            Work {
                synced: s.clone(),
                inputs,
                decision,
            }
        })
        .collect();
    tools.save()?;
    // A stage the lock did not predict (e.g. a pin it did not cover) is
    // checked now, still before any build command.
    let unchecked: Vec<SourceId> = work
        .iter()
        .filter(|w| w.decision.run && !checked.contains(&w.synced.source))
        .map(|w| w.synced.source)
        .collect();
    if !args.no_preflight && !unchecked.is_empty() {
        doctor::preflight(&config, &unchecked, env.package_format, &env.work_dir)?;
    }
    let outcomes = stage::run_all(&config, &env, &work)?;
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
    let ran = outcomes.iter().filter(|o| o.status == "ok").count();
    out.info(format!(
        "{ran} stage(s) built, {} up to date; logs in {}",
        outcomes.len() - ran,
        env.logs().display()
    ));
    let Some((output, date)) = release_to else {
        return Ok(summary);
    };
    let release = Release {
        config: &config,
        env: &env,
        synced: &synced,
        outcomes: &outcomes,
        lock_path: &lock.path,
        output,
        date,
    };
    let decision = release.decide()?;
    let made = match (decision.run, release.recorded()) {
        (false, Some(recorded)) => {
            out.info(format!(
                "release: up to date: {}",
                recorded.tarball.display()
            ));
            recorded
        }
        _ => release.make()?,
    };
    out.info(format!(
        "release: {}\ntarball: {} (sha256 {})",
        made.release.display(),
        made.tarball.display(),
        made.tarball_sha256
    ));
    if let Some(d) = &made.snp_launch_digest {
        out.info(format!(
            "expected SEV-SNP launch digest (launch-qemu.sh -sev-snp: {} vCPUs {}; others in {}): {d}",
            crate::measure::DEFAULT_VCPUS,
            crate::measure::DEFAULT_VCPU_TYPE,
            crate::measure::MEASUREMENTS_FILE
        ));
    }
    let mut summary = summary;
    summary["release"] = json!({
        "status": if decision.run { "ok" } else { "skipped" },
        "reasons": decision.reasons,
        "path": made.release,
        "tarball": made.tarball,
        "tarball_sha256": made.tarball_sha256,
        "snp_launch_digest": made.snp_launch_digest,
    });
    Ok(summary)
}

/// `--output` (made absolute) and `--date` (checked; default today).
fn release_target(cli: &Cli) -> anyhow::Result<(PathBuf, String)> {
    let output = std::path::absolute(&cli.build.output)
        .with_context(|| format!("resolving --output {}", cli.build.output.display()))?;
    let date = match &cli.build.date {
        Some(d) => {
            release::check_date(d)?;
            d.clone()
        }
        None => release::today(),
    };
    Ok((output, date))
}

/// Everything the stages share, from the command line and the pin file.
fn build_env(
    cli: &Cli,
    config: &Config,
    force: Option<Vec<String>>,
    clean: bool,
) -> anyhow::Result<BuildEnv> {
    let args = &cli.build;
    // A bare --force arrives as one empty name: it means every stage.
    let force: Option<Vec<String>> =
        force.map(|v| v.into_iter().filter(|n| !n.is_empty()).collect());
    if let Some(names) = &force {
        for n in names {
            if SourceId::from_name(n).is_none() && n != "release" {
                return Err(UsageError::new(format!("--force: unknown stage `{n}`"))
                    .help("stages are kernel-host, kernel-guest, qemu, ovmf and release")
                    .into());
            }
        }
    }
    let layout = Layout::new(&cli.global.work_dir)?;
    let install = std::path::absolute(&cli.global.install)
        .with_context(|| format!("resolving --install {}", cli.global.install.display()))?;
    let knob = match args.package_format {
        Some(PackageFormatArg::Deb) => PackageFormat::Deb,
        Some(PackageFormatArg::Rpm) => PackageFormat::Rpm,
        None => config.build.package_format,
    };
    Ok(BuildEnv {
        work_dir: layout.root,
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
        force,
        clean,
    })
}

/// `plan` and `--dry-run`: the decisions, from the lock, changing nothing.
fn show_plan(
    config: &Config,
    env: &BuildEnv,
    ids: &[SourceId],
    release: Option<(PathBuf, String)>,
    out: Output,
) -> anyhow::Result<Value> {
    let lock_path = Lock::path_for(config, &env.work_dir);
    let lock = Lock::load(&lock_path)?;
    let mut planned = plan::plan(config, env, &lock, ids)?;
    if let Some((output, date)) = release {
        let decision = if planned.iter().any(|p| p.action == "run") {
            fingerprint::Decision {
                run: true,
                reasons: vec!["a stage it packages runs".into()],
            }
        } else {
            // Every stage is up to date: judge from their stamps.
            let outcomes = stage::recorded_outcomes(env, ids);
            Release {
                config,
                env,
                synced: &[],
                outcomes: &outcomes,
                lock_path: &lock_path,
                output,
                date,
            }
            .decide()?
        };
        planned.push(plan::Planned::new(release::STAGE, &decision));
    }
    if !out.json {
        print!("{}", plan::render(&planned));
    }
    Ok(json!({ "stages": planned }))
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
    let _signals = Registry::global();
    let _lock = workdir::lock(work_dir)?;
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
    let ids = config.select(selection)?;
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

/// `clean`: under the work dir only, with the work dir locked.
fn clean(work_dir: &Path, all: bool, broken: bool, out: Output) -> anyhow::Result<Value> {
    let work_dir = &Layout::new(work_dir)?.root;
    if !work_dir.exists() {
        out.info(format!(
            "{} does not exist: nothing to clean",
            work_dir.display()
        ));
        return Ok(json!({ "removed": [], "bytes": 0 }));
    }
    let _lock = workdir::lock(work_dir)?;
    let cleaned = crate::clean::clean(work_dir, all, broken)?;
    out.info(format!(
        "removed {} path(s), {}",
        cleaned.removed.len(),
        crate::output::human_bytes(cleaned.bytes)
    ));
    if !broken {
        let kept = crate::clean::broken_paths(work_dir);
        if !kept.is_empty() {
            out.info(format!(
                "kept {} moved-aside tree(s) or saved diff(s) (they may hold your work); `snp-build clean --broken` lists and removes them",
                kept.len()
            ));
        }
    }
    Ok(serde_json::to_value(&cleaned)?)
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
