use clap::Parser;
use serde_json::json;

use snp_build::cli::Cli;
use snp_build::exit;
use snp_build::output::Output;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    snp_build::logging::init(cli.global.verbose);
    let out = Output {
        json: cli.global.json,
    };
    let command = cli.command_name();
    match snp_build::commands::run(cli, out) {
        Ok(mut fields) => {
            if out.json {
                if let serde_json::Value::Object(map) = &mut fields {
                    map.insert("status".into(), json!("ok"));
                }
                out.document(command, fields);
            }
        }
        Err(err) => {
            let code = exit::code_for(&err);
            let mut text = err.to_string();
            for cause in err.chain().skip(1) {
                text.push_str(&format!("\n  caused by: {cause}"));
            }
            tracing::error!("{text}");
            if out.json {
                let mut doc =
                    json!({ "status": "error", "exit_code": code, "error": format!("{err:#}") });
                // A failed build still reports every stage and source.
                if let Some(failed) = err.downcast_ref::<snp_build::commands::BuildFailed>()
                    && let (Some(d), Some(extra)) =
                        (doc.as_object_mut(), failed.summary.as_object())
                {
                    for (k, v) in extra {
                        d.insert(k.clone(), v.clone());
                    }
                    d.insert("status".into(), json!("failed"));
                }
                // A failed preflight reports every check.
                if let Some(pf) = err.downcast_ref::<snp_build::doctor::PreflightFailed>()
                    && let (Some(d), Ok(report)) =
                        (doc.as_object_mut(), serde_json::to_value(&pf.report))
                {
                    d.insert("preflight".into(), report);
                }
                out.document(command, doc);
            }
            std::process::exit(code);
        }
    }
}
