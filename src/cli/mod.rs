//! The command line: parse (clap, into plain requests), set up logging,
//! dispatch to a command, render its result (`--json` or human output on
//! stdout), and map errors to exit codes. `main.rs` only calls [`main`].
//!
//! Guarantees:
//! - stdout carries only machine output (`--json`, `plan`, `config`,
//!   `import-legacy` without `-o`, `measure`'s digest, `completions`' script,
//!   `man`'s page); every human message
//!   is a tracing event on stderr.
//! - With `--json` exactly one document is printed, on success and on
//!   failure (a failed build still reports every stage and source).
//! - The layers below never import this one.

pub mod args;
pub mod exit;
pub mod generate;
pub mod log;
pub mod render;

use std::ffi::OsString;

use serde_json::Value;

use crate::commands::build::{BuildFailed, BuildResult};
use crate::commands::install::InstallInterrupted;
use crate::commands::{self, Globals};
use crate::error::UsageError;
use crate::exec::Interrupted;
use crate::host::doctor::PreflightFailed;
use crate::host::snp::HostNotReady;
use crate::stage::Registry;
use args::{Cli, Command, FetchArgs};
use render::{DocumentStatus, Fields, fields};

/// How a run ended: its exit code, and its JSON document with `--json`.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub json: Option<Value>,
}

/// The binary: runs the command line with `registry` and exits.
pub fn main(registry: &Registry) -> ! {
    crate::signing::take_password_from_env();
    let finished = run(registry, std::env::args_os());
    if let Some(doc) = &finished.json {
        println!("{doc}");
    }
    std::process::exit(finished.code)
}

/// Runs one command line (its first word is the program name) against
/// `registry`. Human output is printed; the JSON document is returned.
pub fn run<I, T>(registry: &Registry, args: I) -> Finished
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let parsed = args::command(registry)
        .try_get_matches_from(args)
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return Finished { code, json: None };
        }
    };
    log::init(cli.global.verbose);
    // What snp-build and its builds write gets the same modes under any
    // caller's umask (a release must not depend on it).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let json = cli.global.json;
    let command = cli.command_name();
    let result = dispatch(registry, cli).and_then(|fields| {
        // Rendered before the run counts as a success: a document that
        // cannot be made is an error like any other.
        Ok(match json {
            true => Some(render::document(command, fields, DocumentStatus::Ok)?),
            false => None,
        })
    });
    match result {
        Ok(json) => Finished {
            code: exit::OK,
            json,
        },
        Err(err) => {
            let code = exit::code_for(&err);
            let says_so = err
                .chain()
                .any(|c| c.is::<Interrupted>() || c.is::<InstallInterrupted>());
            let text = if code == exit::INTERRUPTED && !says_so {
                // What failed after Ctrl-C failed because of it: say so,
                // and what was going on, never the failure it caused
                // ("callback returned -1", network advice, dpkg's exit).
                format!("interrupted while: {err}\n  {}", Interrupted)
            } else {
                let mut text = err.to_string();
                for cause in err.chain().skip(1) {
                    text.push_str(&format!("\n  caused by: {cause}"));
                }
                text
            };
            tracing::error!("{text}");
            let failure = json.then(|| failure(command, &err, code));
            Finished {
                code,
                json: failure.map(|(fields, status)| {
                    render::document(command, fields, status)
                        .expect("a failure's fields are plain data")
                }),
            }
        }
    }
}

/// The JSON fields of a failed command: what it can still report, then
/// `exit_code` and `error`; and its status.
fn failure<'a>(
    command: &str,
    err: &'a anyhow::Error,
    code: i32,
) -> (render::Failure<'a>, DocumentStatus) {
    // A failed build still reports every stage and source.
    let summary = err.downcast_ref::<BuildFailed>().map(|f| &*f.summary);
    // A machine that is not ready: every check. The doctor answers with
    // one document shape whatever it found (the report's fields at the
    // top, as when it exits 0); a build keeps its own top level and gives
    // the report as `preflight`.
    let report = match (
        err.downcast_ref::<PreflightFailed>(),
        err.downcast_ref::<HostNotReady>(),
    ) {
        (Some(pf), _) => Some(render::Checks::Build(&pf.report)),
        (None, Some(host)) => Some(render::Checks::Host(&host.report)),
        (None, None) => None,
    };
    let (report, preflight) = match command {
        "doctor" => (report, None),
        _ => (None, report),
    };
    let status = match summary {
        Some(_) => DocumentStatus::Failed,
        None => DocumentStatus::Error,
    };
    (
        render::Failure {
            summary,
            report,
            preflight,
            exit_code: code,
            error: format!("{err:#}"),
        },
        status,
    )
}

/// Runs the parsed command; returns its JSON fields.
fn dispatch(registry: &Registry, cli: Cli) -> anyhow::Result<Fields> {
    let globals: Globals = cli.global.to_globals();
    let json = cli.global.json;
    let fetch = |update, locked, discard_changes, components| {
        fields(commands::fetch::fetch(
            registry,
            &globals,
            &commands::fetch::FetchRequest {
                update,
                locked,
                discard_changes,
                components,
            },
        )?)
    };
    match cli.command {
        None => match commands::build::build(registry, &globals, &cli.build.to_request())? {
            BuildResult::DryRun { stages } => {
                if !json {
                    print!("{}", render::plan_table(&stages));
                }
                fields(render::Plan { stages })
            }
            built => fields(built),
        },
        Some(Command::Plan {
            components,
            force,
            package,
        }) => {
            let stages = commands::plan::command(
                registry,
                &globals,
                &commands::plan::PlanRequest {
                    env: commands::EnvRequest {
                        force,
                        package_format: cli.build.package_format.map(Into::into),
                        cache: cli.build.cache(),
                        ..Default::default()
                    },
                    package,
                    output: cli.build.output.clone(),
                    date: cli.build.date.clone(),
                    components,
                },
            )?;
            if !json {
                print!("{}", render::plan_table(&stages));
            }
            fields(render::Plan { stages })
        }
        Some(Command::Fetch {
            fetch:
                FetchArgs {
                    locked,
                    discard_changes,
                },
            components,
        }) => fetch(false, locked, discard_changes, components),
        Some(Command::Update {
            discard_changes,
            components,
        }) => fetch(true, false, discard_changes, components),
        Some(Command::Doctor {
            host,
            sysroot,
            release,
            fix,
            components,
        }) => fields(commands::doctor::doctor(
            registry,
            &globals,
            &commands::doctor::DoctorRequest {
                host,
                sysroot,
                release,
                components,
                fix,
            },
        )?),
        Some(Command::Install {
            release,
            dry_run,
            root,
            yes,
            trusted_key,
            allow_downgrade,
        }) => fields(crate::commands::install::install(
            &crate::commands::install::InstallRequest {
                release: release.as_deref(),
                dry_run,
                root: root.as_deref(),
                yes,
                interactive: std::io::IsTerminal::is_terminal(&std::io::stdin()),
                ask: &ask,
                trusted_keys: &trusted_key,
                allow_downgrade,
            },
        )?),
        Some(Command::Verify {
            release,
            trusted_key,
        }) => {
            let v = crate::commands::verify::verify(&release, &trusted_key)?;
            tracing::info!(
                "verified {}: {} files match SHA256SUMS; {}; checked: {}",
                v.release.display(),
                v.files,
                v.signature,
                v.documents.join(", ")
            );
            fields(v)
        }
        Some(Command::Keygen {
            output,
            no_password,
        }) => {
            let public = crate::signing::keygen(&output, no_password)?;
            tracing::info!(
                "secret key: {} (keep it secret){}\npublic key: {} (give it to whoever installs your releases)",
                output.display(),
                if no_password { ", unencrypted" } else { "" },
                public.display()
            );
            fields(render::Keys {
                secret_key: output,
                public_key: public,
                encrypted: !no_password,
            })
        }
        Some(Command::Uninstall { root, dry_run, yes }) => fields(
            crate::commands::install::uninstall(&crate::commands::install::UninstallRequest {
                root: root.as_deref(),
                dry_run,
                yes,
                ask: &ask,
            })?,
        ),
        Some(Command::Clean { all, broken }) => fields(commands::clean::command(
            registry,
            &globals,
            &commands::clean::CleanRequest { all, broken },
        )?),
        Some(Command::ImportLegacy {
            file,
            output,
            force,
        }) => {
            let imported =
                commands::pins::import_legacy(registry, &file, output.as_deref(), force)?;
            if output.is_none() && !json {
                print!("{}", imported.toml);
            }
            fields(imported)
        }
        Some(Command::Init {
            output,
            force,
            stack,
        }) => fields(commands::pins::init(&output, force, &stack)?),
        Some(Command::Config) => {
            let stack = commands::load(registry, globals.config.as_deref())?;
            let origin = stack.file.origin.display_name();
            if !json {
                print!(
                    "# Effective configuration from {origin} (defaults filled in)\n{}",
                    toml::to_string_pretty(&stack.effective)?
                );
            }
            fields(render::Config {
                origin: origin.to_string(),
                config: stack.effective,
            })
        }
        Some(Command::Measure(ref args)) => {
            let m = crate::release::measure::command(&args.to_request())?;
            if !json {
                for line in crate::release::measure::describe(&m) {
                    tracing::info!("{line}");
                }
                println!("{}", m.digest);
            }
            fields(render::Measured {
                measurement: m.record(&m.firmware.path.display().to_string()),
            })
        }
        // With --json the text is a field of the one document (as
        // import-legacy's TOML), not printed beside it.
        Some(Command::Completions { shell }) => {
            let script = generate::completions(registry, shell);
            if !json {
                print!("{script}");
            }
            fields(render::Completions {
                shell: shell.name().into(),
                script,
            })
        }
        Some(Command::Man { dir: None }) => {
            let roff = generate::man_page(registry)?;
            if !json {
                print!("{roff}");
            }
            fields(render::Man::Page { roff })
        }
        Some(Command::Man { dir: Some(dir) }) => {
            let pages = generate::man_pages(registry, &dir)?;
            tracing::info!("wrote {} man pages into {}", pages.len(), dir.display());
            fields(render::Man::Pages { pages })
        }
        Some(Command::Schema { dir }) => {
            let files = generate::write_schemas(registry, &dir)?;
            tracing::info!("wrote {} JSON Schemas into {}", files.len(), dir.display());
            fields(render::Schemas { files })
        }
    }
}

/// Asks a yes/no question on the terminal (stderr, through the progress
/// bars' lock); refuses rather than wait when stdin is not a terminal.
fn ask(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(UsageError::new(
            "refusing to change this system without confirmation: standard input is not a terminal",
        )
        .help("pass --yes to install without asking, or --dry-run to see what would be done")
        .into());
    }
    crate::progress::suspend_bars(|| {
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "{question} [y/N] ");
        let _ = stderr.flush();
    });
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::doctor::{Check, Report, Status};
    use crate::host::packages::{Distro, Fix};
    use crate::host::snp::HostReport;

    /// The doctor's report is spread over the document's top level: none
    /// of its keys may be one the document itself sets.
    #[test]
    fn the_doctors_report_keys_leave_the_envelope_alone() {
        let envelope = ["schema_version", "command", "status", "exit_code", "error"];
        let check = Check::new("iasl", Status::Missing, "no `iasl` on PATH");
        let report = Report::new(
            vec![check.clone()],
            crate::host::PackageFormat::Deb,
            Distro::Debian,
        )
        .after_fix(Fix {
            packages: vec!["acpica-tools".into()],
            commands: vec![],
            error: Some("e".into()),
        });
        let host = HostReport {
            ready: false,
            checks: vec![check],
        };
        for fields in [
            serde_json::to_value(&report).unwrap(),
            serde_json::to_value(&host).unwrap(),
        ] {
            for key in fields.as_object().unwrap().keys() {
                assert!(!envelope.contains(&key.as_str()), "{key}");
            }
        }
        let failed: anyhow::Error = PreflightFailed { report }.into();
        let (fields, status) = failure("doctor", &failed, 4);
        let doc = render::document("doctor", fields, status).unwrap();
        assert_eq!(doc["exit_code"], 4);
        assert_eq!(doc["checks"][0]["check"], "iasl");
        assert!(doc["error"].as_str().unwrap().contains("iasl"));
    }
}
