//! `cargo xtask`: project chores for snp-build (see `.cargo/config.toml`).
//!
//! ```text
//! cargo xtask fixtures DIR [--size small|bench]
//! ```
//!
//! Unknown subcommands and bad arguments are usage errors (exit 2).

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use xtask::fixtures;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project chores for snp-build"
)]
struct Cli {
    #[command(subcommand)]
    command: Chore,
}

#[derive(Subcommand)]
enum Chore {
    /// Create fixture upstream repositories (fake kernel, QEMU and edk2
    /// trees) and a stable-commits.toml naming them, in DIR.
    Fixtures {
        /// Directory to create them in (made if missing).
        dir: PathBuf,
        /// small: for tests; bench: ~40 MB kernel history, ~150 C files.
        #[arg(long, value_enum, default_value_t = SizeArg::Small)]
        size: SizeArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SizeArg {
    Small,
    Bench,
}

fn main() -> ExitCode {
    // clap exits with status 2 on usage errors.
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Chore::Fixtures { dir, size } => {
            let size = match size {
                SizeArg::Small => fixtures::Size::Small,
                SizeArg::Bench => fixtures::Size::Bench,
            };
            let fx = fixtures::create(&dir, size)?;
            println!("{}", fx.pin_file.display());
            Ok(())
        }
    }
}
