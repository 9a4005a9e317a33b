//! The command line: clap's definitions, and their conversion into the
//! plain requests the commands take (clap's types never leave `cli/`).
//! build.sh's interface where the two overlap:
//! `snp-build [--install PATH] [--package] [qemu | ovmf | kernel [host|guest]]`.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::commands::build::BuildRequest;
use crate::commands::fetch::FetchRequest;
use crate::commands::{EnvRequest, Globals};
use crate::host::PackageFormat;
use crate::release::measure::MeasureRequest;
use crate::snp_support::VmsaMode;
use crate::stage::Registry;
use crate::stage::registry::choices;

/// The exit codes, for `--help` (README has the table).
pub const EXIT_CODES: &str = "Exit codes: 0 ok, 1 step failed, 2 usage/config error, 3 not implemented, 4 preflight, 5 lock mismatch, 6 work dir in use, 7 local changes, 130 interrupted.";

/// The command line's definition, with the components of `registry` in
/// its help (the words are the registry's, not clap's).
pub fn command(registry: &Registry) -> clap::Command {
    let choices = choices(registry);
    <Cli as clap::CommandFactory>::command()
        .after_help(format!(
            "Components: {} (none means all).\n{EXIT_CODES}",
            choices.join(", ")
        ))
        .mut_arg("components", |a| {
            a.help(format!("Components to build: {}", choices.join(" | ")))
        })
}

#[derive(Debug, Parser)]
#[command(
    name = "snp-build",
    version,
    about = "Build the AMD SEV-SNP stack (host and guest kernels, QEMU, OVMF) from pinned git trees",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(flatten)]
    pub build: BuildArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options accepted before or after any subcommand.
#[derive(Debug, Args)]
pub struct Global {
    /// Pin file [default: ./stable-commits.toml, else the embedded default]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where sources, logs and build state live
    #[arg(long, global = true, value_name = "DIR", default_value = "build")]
    pub work_dir: PathBuf,

    /// Install prefix for QEMU and OVMF (made absolute, as build.sh)
    #[arg(long, global = true, value_name = "PATH", default_value = "usr/local")]
    pub install: PathBuf,

    /// Job budget shared by all running stages [default: number of cores]
    #[arg(short = 'j', long = "jobs", global = true, value_name = "N")]
    pub jobs: Option<NonZeroUsize>,

    /// Print one JSON document on stdout (human messages stay on stderr)
    #[arg(long, global = true)]
    pub json: bool,

    /// More detail (-v streams build logs)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

/// The build itself (no subcommand).
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Assemble snp-release-<date>/ and its .tar.gz after building
    #[arg(long)]
    pub package: bool,

    /// Where the release goes
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub output: PathBuf,

    /// The release's date [default: today, UTC]
    #[arg(long, global = true, value_name = "YYYY-MM-DD")]
    pub date: Option<String>,

    /// Print what would run and why; change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Sign the release's SHA256SUMS with this minisign secret key (also
    /// SNP_BUILD_SIGNING_KEY, or `[release] signing-key`); an encrypted
    /// key's password comes from SNP_BUILD_SIGNING_PASSWORD or a prompt
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,

    #[command(flatten)]
    pub fetch: FetchArgs,

    /// Build trees that differ from their pinned commit as they are; the
    /// release says so, with the diff
    #[arg(long, conflicts_with = "discard_changes")]
    pub allow_dirty: bool,

    /// Build a host kernel and QEMU that cannot launch SEV-SNP guests (an
    /// upstream release older than SNP support) instead of refusing them
    #[arg(long)]
    pub allow_unsupported: bool,

    /// Run one stage at a time (each with -jN) instead of side by side
    #[arg(long)]
    pub serial: bool,

    /// Let the other stages finish when one fails
    #[arg(long)]
    pub keep_going: bool,

    /// Write logs/timings.html and logs/timings.json: each stage's phases
    /// on a time axis, the compile jobs running and the CPU use over time
    #[arg(long)]
    pub timings: bool,

    /// Run these stages even if up to date (all without a list):
    /// --force or --force=qemu,kernel-host
    #[arg(long, value_name = "STAGES", num_args = 0..=1, require_equals = true, value_delimiter = ',', default_missing_value = "")]
    pub force: Option<Vec<String>>,

    /// Kernels start from `make distclean`, QEMU from a fresh configure
    #[arg(long)]
    pub clean: bool,

    /// Skip the check of host tools before building
    #[arg(long)]
    pub no_preflight: bool,

    /// Kernel package format [default: deb on Debian-like hosts, else rpm]
    #[arg(long, value_name = "deb|rpm")]
    pub package_format: Option<PackageFormatArg>,

    /// Share stage outputs through this OCI registry,
    /// oci://HOST[:PORT]/NAMESPACE (overrides `[cache] remote`)
    #[arg(long, global = true, value_name = "URL")]
    pub cache_remote: Option<String>,

    /// Use no shared cache, whatever the config says
    #[arg(long, global = true, conflicts_with = "cache_remote")]
    pub no_cache_remote: bool,

    /// Fail when the shared cache cannot be used, instead of warning and
    /// building locally
    #[arg(long, global = true)]
    pub cache_remote_required: bool,

    /// Components to build (see below)
    #[arg(value_name = "COMPONENT")]
    pub components: Vec<String>,
}

impl BuildArgs {
    /// The cache flags, as a plain request.
    pub fn cache(&self) -> crate::config::cache::CacheRequest {
        crate::config::cache::CacheRequest {
            remote: self.cache_remote.clone(),
            off: self.no_cache_remote,
            required: self.cache_remote_required,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PackageFormatArg {
    Deb,
    Rpm,
}

/// How sources are brought to their pins.
#[derive(Debug, Args, Clone, Copy)]
pub struct FetchArgs {
    /// Fail instead of resolving any pin the lock file does not cover (CI)
    #[arg(long)]
    pub locked: bool,

    /// Overwrite hand edits in a tree (their diff is saved first)
    #[arg(long)]
    pub discard_changes: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show which stages would run, and why (reads only)
    Plan {
        /// Include the release (as a build with --package)
        #[arg(long)]
        package: bool,
        /// As a build's --force
        #[arg(long, value_name = "STAGES", num_args = 0..=1, require_equals = true, value_delimiter = ',', default_missing_value = "")]
        force: Option<Vec<String>>,
        #[arg(value_name = "COMPONENT")]
        components: Vec<String>,
    },
    /// Bring source trees to their pinned commits
    Fetch {
        #[command(flatten)]
        fetch: FetchArgs,
        #[arg(value_name = "COMPONENT")]
        components: Vec<String>,
    },
    /// Re-resolve branches and tags and rewrite the lock file
    Update {
        /// Overwrite hand edits in a tree (their diff is saved first)
        #[arg(long)]
        discard_changes: bool,
        #[arg(value_name = "COMPONENT")]
        components: Vec<String>,
    },
    /// Check the host tools the build needs (or, with --host, whether this
    /// machine can run SNP guests)
    Doctor {
        /// Check this machine as an SNP host instead of as a build box
        #[arg(long)]
        host: bool,
        /// Read /proc, /sys, /dev and /etc under DIR instead of / (tests)
        #[arg(long, value_name = "DIR", requires = "host")]
        sysroot: Option<PathBuf>,
        /// With --host: also check this release's QEMU and OVMF
        #[arg(long, value_name = "DIR", requires = "host")]
        release: Option<PathBuf>,
        /// Install the packages of what is missing (apt-get or dnf, through
        /// sudo when not root), then check again
        #[arg(long, conflicts_with = "host")]
        fix: bool,
        #[arg(value_name = "COMPONENT")]
        components: Vec<String>,
    },
    /// Install a release on this host: verify SHA256SUMS, then the host
    /// kernel package and kvm.conf (as the release's install.sh)
    Install {
        /// Release directory or tarball [default: the newest snp-release-*
        /// directory here]
        release: Option<PathBuf>,
        /// Print every action instead of doing it; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Staging install into DIR (made when missing): unpack the
        /// package, no maintainer scripts, no dependency installs
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Do not ask for confirmation before a live install
        #[arg(long, short = 'y')]
        yes: bool,
        /// Install only a release signed by this minisign public key
        /// (repeatable) [default: the host's policy, /etc/snp-build]
        #[arg(long, value_name = "PUB")]
        trusted_key: Vec<PathBuf>,
        /// Install a release dated before the installed one (otherwise
        /// refused, exit 10)
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Check a release directory or tarball (without unpacking it):
    /// checksums, signature, SBOM and provenance digests
    Verify {
        /// Release directory or tarball
        release: PathBuf,
        /// Require a signature by this minisign public key (repeatable)
        #[arg(long, value_name = "PUB")]
        trusted_key: Vec<PathBuf>,
    },
    /// Make a minisign key pair for signing releases: the secret key at
    /// PATH, the public key at PATH.pub
    Keygen {
        /// Where the secret key goes
        #[arg(short, long, value_name = "PATH")]
        output: PathBuf,
        /// An unencrypted secret key (for CI secrets and tests); otherwise
        /// the password comes from SNP_BUILD_SIGNING_PASSWORD or a prompt
        #[arg(long)]
        no_password: bool,
    },
    /// Undo `install` (or install.sh) as its record says: put back
    /// kvm.conf, remove the kernel package and the dependency packages it
    /// added, remove the install record
    Uninstall {
        /// The root the release was installed into (as install's --root)
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Print every action instead of doing it; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation (needed without a terminal)
        #[arg(short, long)]
        yes: bool,
    },
    /// Convert AMDSEV's bash stable-commits into stable-commits.toml
    ImportLegacy {
        /// The bash `stable-commits` file
        file: PathBuf,
        /// Write here instead of stdout
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// Overwrite OUT if it exists
        #[arg(long)]
        force: bool,
    },
    /// Remove build outputs under the work dir
    Clean {
        /// Remove the source trees too
        #[arg(long)]
        all: bool,
        /// Remove moved-aside broken trees and saved diffs
        #[arg(long)]
        broken: bool,
    },
    /// Write the default stable-commits.toml, and the kernel config fragments it names, for editing
    Init {
        /// Where to write it
        #[arg(
            short,
            long,
            value_name = "FILE",
            default_value = "stable-commits.toml"
        )]
        output: PathBuf,
        /// Overwrite an existing pin file and fragments
        #[arg(long)]
        force: bool,
        /// Which stack to pin: amd (AMD's SNP branches, as build.sh; the
        /// default), upstream (Linux 6.12.y, QEMU 10.0, edk2-stable202502)
        /// or coco (the confidential-containers pins: v6.12, v9.2.0,
        /// edk2-stable202411)
        #[arg(long, value_name = "NAME", default_value = "amd", value_parser = clap::builder::PossibleValuesParser::new(crate::commands::stacks::names()))]
        stack: String,
    },
    /// Print the effective configuration (defaults filled in)
    Config,
    /// Expected SEV-SNP launch digest of a firmware for a guest shape
    /// (defaults: the shape `launch-qemu.sh -sev-snp` launches)
    Measure(MeasureArgs),
    /// Print the shell completion script for SHELL (e.g.
    /// `snp-build completions bash > /etc/bash_completion.d/snp-build`)
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page snp-build(1) (roff), or write every page into
    /// DIR. Hidden: it is for the .deb build (`cargo xtask dist`), which
    /// takes the pages from the binary it ships, so they cannot describe
    /// another command line.
    #[command(hide = true)]
    Man {
        /// Write snp-build.1 and a page per subcommand
        /// (snp-build-plan.1, ...) into DIR instead
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Write the JSON Schema of every document snp-build writes (the
    /// manifest, the provenance, the install record, each command's
    /// --json) into DIR as NAME.schema.json. Hidden: it is for the
    /// repository's docs/schemas/ (held there by tests/schemas.rs)
    #[command(hide = true)]
    Schema {
        /// Where to write them
        #[arg(long, value_name = "DIR", default_value = "docs/schemas")]
        dir: PathBuf,
    },
}

/// The shells `completions` writes for: the three whose completion
/// directories Debian has (and the .deb fills). clap_complete knows
/// elvish and PowerShell too; no EPYC host we support runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl CompletionShell {
    /// The name on the command line (`bash`).
    pub fn name(self) -> &'static str {
        match self {
            CompletionShell::Bash => "bash",
            CompletionShell::Zsh => "zsh",
            CompletionShell::Fish => "fish",
        }
    }
}

impl From<CompletionShell> for clap_complete::Shell {
    fn from(shell: CompletionShell) -> clap_complete::Shell {
        match shell {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// `snp-build measure`: the firmware and the guest shape.
#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// A release directory: measures its usr/local/share/qemu/OVMF.fd
    #[arg(long, value_name = "DIR", conflicts_with = "ovmf")]
    pub release: Option<PathBuf>,
    /// The firmware image (OVMF.fd) to measure
    #[arg(long, value_name = "FILE")]
    pub ovmf: Option<PathBuf>,
    /// With --release: which of its firmwares (default OVMF.fd; e.g.
    /// OVMF.amdsev.fd, the measured direct boot one)
    #[arg(long, value_name = "NAME", requires = "release")]
    pub firmware: Option<String>,
    /// Number of guest vCPUs (launch-qemu.sh -smp)
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub vcpus: u32,
    /// QEMU CPU model of the vCPUs (launch-qemu.sh -cpu, without flags)
    #[arg(long, value_name = "T", default_value = "EPYC-v4")]
    pub vcpu_type: String,
    /// SEV features of the guest's VMSA (QEMU's default 0x1, SNPActive)
    #[arg(long, value_name = "X", default_value = "0x1")]
    pub guest_features: String,
    /// Direct kernel boot with kernel hashes (QEMU -kernel, kernel-hashes=on)
    #[arg(long, value_name = "F")]
    pub kernel: Option<PathBuf>,
    /// The initrd of the direct kernel boot
    #[arg(long, value_name = "F", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// The kernel command line of the direct kernel boot, exactly as QEMU gets it
    #[arg(
        long,
        value_name = "S",
        requires = "kernel",
        allow_hyphen_values = true
    )]
    pub append: Option<String>,
    /// The initial VMSA the host gives the guest: init2 (KVM_SEV_INIT2,
    /// Linux >= 6.10 with QEMU >= 9.1) or legacy (default: the release's
    /// own, from its MEASUREMENTS; else init2)
    #[arg(long, value_name = "MODE", value_parser = parse_vmsa_mode)]
    pub vmsa_mode: Option<VmsaMode>,
}

fn parse_vmsa_mode(s: &str) -> Result<VmsaMode, String> {
    s.parse()
}

impl Cli {
    /// The command's name, as used in JSON documents.
    pub fn command_name(&self) -> &'static str {
        match &self.command {
            None => "build",
            Some(Command::Plan { .. }) => "plan",
            Some(Command::Fetch { .. }) => "fetch",
            Some(Command::Update { .. }) => "update",
            Some(Command::Doctor { .. }) => "doctor",
            Some(Command::Install { .. }) => "install",
            Some(Command::Verify { .. }) => "verify",
            Some(Command::Keygen { .. }) => "keygen",
            Some(Command::Uninstall { .. }) => "uninstall",
            Some(Command::ImportLegacy { .. }) => "import-legacy",
            Some(Command::Clean { .. }) => "clean",
            Some(Command::Init { .. }) => "init",
            Some(Command::Config) => "config",
            Some(Command::Measure(_)) => "measure",
            Some(Command::Completions { .. }) => "completions",
            Some(Command::Man { .. }) => "man",
            Some(Command::Schema { .. }) => "schema",
        }
    }
}

impl Global {
    /// The options every command shares, as a plain request.
    pub fn to_globals(&self) -> Globals {
        Globals {
            config: self.config.clone(),
            work_dir: self.work_dir.clone(),
            install: self.install.clone(),
            jobs: self.jobs.map(NonZeroUsize::get),
        }
    }
}

impl From<PackageFormatArg> for PackageFormat {
    fn from(arg: PackageFormatArg) -> PackageFormat {
        match arg {
            PackageFormatArg::Deb => PackageFormat::Deb,
            PackageFormatArg::Rpm => PackageFormat::Rpm,
        }
    }
}

impl BuildArgs {
    /// The build, as a plain request.
    pub fn to_request(&self) -> BuildRequest {
        BuildRequest {
            env: EnvRequest {
                force: self.force.clone(),
                clean: self.clean,
                serial: self.serial,
                keep_going: self.keep_going,
                package_format: self.package_format.map(PackageFormat::from),
                cache: self.cache(),
            },
            fetch: FetchRequest {
                update: false,
                locked: self.fetch.locked,
                discard_changes: self.fetch.discard_changes,
                components: self.components.clone(),
            },
            allow_dirty: self.allow_dirty,
            allow_unsupported: self.allow_unsupported,
            package: self.package,
            output: self.output.clone(),
            date: self.date.clone(),
            dry_run: self.dry_run,
            timings: self.timings,
            no_preflight: self.no_preflight,
            sign: self.sign.clone(),
        }
    }
}

impl MeasureArgs {
    pub fn to_request(&self) -> MeasureRequest {
        MeasureRequest {
            release: self.release.clone(),
            ovmf: self.ovmf.clone(),
            firmware: self.firmware.clone(),
            vcpus: self.vcpus,
            vcpu_type: self.vcpu_type.clone(),
            guest_features: self.guest_features.clone(),
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            append: self.append.clone(),
            vmsa_mode: self.vmsa_mode,
        }
    }
}
