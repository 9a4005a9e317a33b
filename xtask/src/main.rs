//! `cargo xtask`: project chores for snp-build (see `.cargo/config.toml`).
//!
//! ```text
//! cargo xtask fixtures DIR [--size small|bench]
//! cargo xtask bench [--out BENCHMARKS.md] [--dir DIR]
//! cargo xtask real-sources [--stack amd|upstream] DIR
//! cargo xtask e2e-real [--stack amd|upstream] DIR [--out BENCHMARKS.md] [-j N] [--keep]
//! cargo xtask dist
//! ```
//!
//! Unknown subcommands and bad arguments are usage errors (exit 2).

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use xtask::{bench, dist, fixtures, real};

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
    /// Benchmark snp-build on `--size bench` fixtures (cold, no-op and
    /// one-source-changed builds, parallel vs serial, kernel disk use,
    /// peak RSS) and write the results into their section of BENCHMARKS.md.
    Bench {
        /// The Markdown file to write the section into [default:
        /// BENCHMARKS.md at the workspace root].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Scratch directory (default: a new temporary directory, removed
        /// afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Make local git repos from Debian's QEMU, edk2 and Linux source
    /// packages and a pin file naming them: `amd`, Debian 12's trees on
    /// AMD's branch names (DIR/stable-commits.toml); `upstream`, QEMU 10.0
    /// and edk2 2025.02 (trixie) and Linux 6.12 (bookworm-security) on
    /// upstream's tag and branch names (DIR/upstream.toml). Needs root and
    /// the apt mirrors.
    RealSources {
        /// Directory to create them in (one stack per directory).
        dir: PathBuf,
        /// Which stack.
        #[arg(long, value_enum, default_value_t = StackArg::Amd)]
        stack: StackArg,
    },
    /// Build the repos made by `real-sources` with snp-build end to end,
    /// check the release as a user would, and write the stage times into
    /// their section of BENCHMARKS.md.
    E2eReal {
        /// The directory given to `real-sources`.
        dir: PathBuf,
        /// The Markdown file to write the section into [default:
        /// BENCHMARKS.md at the workspace root].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Job budget for snp-build.
        #[arg(short = 'j', long = "jobs", default_value_t = 2)]
        jobs: usize,
        /// Keep DIR/e2e from an earlier run (the first build may then be
        /// a no-op) instead of starting cold.
        #[arg(long)]
        keep: bool,
        /// Which stack `real-sources` made in DIR.
        #[arg(long, value_enum, default_value_t = StackArg::Amd)]
        stack: StackArg,
    },
    /// Build the release binary, check that it needs no shared library
    /// beyond the C library's family (readelf -d against an allow-list),
    /// and package it as target/debian/snp-build_<version>_amd64.deb
    /// (with completions and man pages).
    Dist,
}

#[derive(Clone, Copy, ValueEnum)]
enum StackArg {
    /// Debian 12's QEMU 7.2, edk2 2022.11 and Linux 6.1 on AMD's branch names.
    Amd,
    /// QEMU 10.0, edk2 2025.02 and Linux 6.12 on upstream's names.
    Upstream,
}

impl From<StackArg> for real::Stack {
    fn from(s: StackArg) -> real::Stack {
        match s {
            StackArg::Amd => real::Stack::Amd,
            StackArg::Upstream => real::Stack::Upstream,
        }
    }
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
        Chore::Bench { out, dir } => bench::run(&benchmarks_md(out), dir.as_deref()),
        Chore::RealSources { dir, stack } => real::real_sources(&dir, stack.into()),
        Chore::E2eReal {
            dir,
            out,
            jobs,
            keep,
            stack,
        } => real::e2e_real(&dir, stack.into(), jobs, &benchmarks_md(out), keep),
        Chore::Dist => dist::run(),
    }
}

fn benchmarks_md(out: Option<PathBuf>) -> PathBuf {
    out.unwrap_or_else(|| xtask::report::workspace_root().join("BENCHMARKS.md"))
}
