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
    let out = Output {
        json: cli.global.json,
        verbose: cli.global.verbose,
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
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if out.json {
                out.document(
                    command,
                    json!({ "status": "error", "exit_code": code, "error": format!("{err:#}") }),
                );
            }
            std::process::exit(code);
        }
    }
}
