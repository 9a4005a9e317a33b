//! Subprocesses: every process snp-build starts runs here, and each is
//! echoed at debug level (`-v`) as it starts.
//!
//! Two kinds:
//! - **A stage's commands** ([`StageRun`]): the build itself.
//!   - Its working directory and environment are explicit: a small fixed
//!     base (PATH, HOME, LANG=C, TZ=UTC, ...) plus what the stage adds;
//!     nothing else leaks in from the caller (edk2, for one, obeys a stray
//!     WORKSPACE). Its umask is 022, whatever the caller's (snp-build sets
//!     its own at start, and children inherit it).
//!   - Each runs in its own process group, so stopping a stage signals make
//!     and every compiler under it, not just the direct child; Ctrl-C /
//!     SIGTERM stops every running group and the build exits 130.
//!   - Output goes to the stage's log (`logs/<stage>.log`), each line
//!     timestamped, after a line giving the command, its directory and its
//!     extra environment. On failure the error carries the stage, the
//!     command, the exit status, the log's last lines and its path.
//! - **One-off commands** about the host ([`capture`]: a tool's version, a
//!   Python import, `ldd`; [`run_to_stderr`], [`pipe_to_stderr`]: install's
//!   dpkg, apt-get, dnf, rpm2cpio | cpio). They see the caller's whole
//!   environment (a proxy, `LD_LIBRARY_PATH`, `DEBIAN_FRONTEND` count
//!   there); [`capture`] adds `LC_ALL=C` so what it reads is not
//!   translated. They stay in snp-build's process group, so Ctrl-C reaches
//!   them directly.
//!
//! In both, a command is an argument vector (`duct::cmd(program, args)`),
//! never a shell string built from configuration values.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::progress::Progress;

/// Lines of the log shown when a command fails.
pub const TAIL_LINES: usize = 30;

/// Environment variables passed through to builds, by prefix: the
/// compiler launchers' own settings.
const PASS_PREFIXES: &[&str] = &["CCACHE_", "SCCACHE_", "DISTCC_", "ICECC_"];

/// Process groups of running commands, and the cancellation flag: shared
/// with the signal handler.
#[derive(Default)]
pub struct Registry {
    groups: Mutex<HashSet<i32>>,
    cancelled: AtomicBool,
    interrupted: AtomicBool,
    /// Network operations in progress ([`Transfer`] guards).
    transfers: std::sync::atomic::AtomicUsize,
}

/// How long a network operation may take to notice Ctrl-C by itself
/// before the process ends from the signal handler.
const TRANSFER_GRACE: std::time::Duration = std::time::Duration::from_millis(600);

/// Held while libgit2 talks to a server. libgit2 can be stopped only from
/// its progress callbacks, and a server that stalls calls none: so when
/// Ctrl-C arrives during a transfer that does not return within
/// [`TRANSFER_GRACE`], the handler says `interrupted` and ends the
/// process (exit 130). That loses nothing: a fetch writes its pack to a
/// temporary file and moves refs only at the end, a new tree is made in a
/// temporary directory, and the work-dir lock names a dead pid.
pub struct Transfer(Arc<Registry>);

impl Transfer {
    pub fn start() -> Transfer {
        let reg = Registry::global();
        reg.transfers.fetch_add(1, Ordering::SeqCst);
        Transfer(reg)
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.0.transfers.fetch_sub(1, Ordering::SeqCst);
    }
}

static REG: OnceLock<Arc<Registry>> = OnceLock::new();

/// Whether Ctrl-C or SIGTERM arrived (false if no handler was installed).
pub fn interrupted() -> bool {
    REG.get().is_some_and(|r| r.was_interrupted())
}

/// Whether a failure that just happened was caused by Ctrl-C. The
/// terminal signals the whole process group at once, so a child can die of
/// the signal and be reaped before the handler (a thread of its own) has
/// set the flag: a failure waits a moment for it (only on the failure
/// path, so nothing that succeeds pays).
pub fn interrupted_after_failure() -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(250) {
        if interrupted() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    interrupted()
}

impl Registry {
    /// The process-wide registry; the first call installs the Ctrl-C and
    /// SIGTERM handler (commands that fetch or build call it first thing).
    pub fn global() -> Arc<Registry> {
        REG.get_or_init(|| {
            let reg = Arc::new(Registry::default());
            let for_handler = reg.clone();
            // Ctrl-C and SIGTERM: stop everything, let the build report.
            let _ = ctrlc::set_handler(move || {
                for_handler.interrupted.store(true, Ordering::SeqCst);
                for_handler.cancel_all();
                // This handler runs on a thread of its own: it may wait.
                let start = std::time::Instant::now();
                while for_handler.transfers.load(Ordering::SeqCst) > 0 {
                    if start.elapsed() >= TRANSFER_GRACE {
                        eprintln!("\nerror: interrupted during a fetch: {Interrupted}");
                        std::process::exit(130);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            });
            reg
        })
        .clone()
    }

    /// Stops every running command (SIGTERM to each process group).
    pub fn cancel_all(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        for pgid in self.groups.lock().unwrap().iter() {
            if let Some(pgid) = rustix::process::Pid::from_raw(*pgid) {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
            }
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    pub fn was_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}

/// The build was stopped by Ctrl-C or SIGTERM (exit 130).
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted: every running build command was stopped; finished stages are kept, run again to continue"
)]
pub struct Interrupted;

/// A stage stopped because another one failed.
#[derive(Debug, thiserror::Error)]
#[error("stopped because another stage failed")]
pub struct Cancelled;

/// One command of a stage.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub dir: PathBuf,
    pub env: BTreeMap<String, OsString>,
    /// How it shares the build's job budget.
    pub budget: Budget,
}

/// How a stage's command shares the build's job budget (`-j N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Budget {
    /// Its own `-j`/`-n`, or none: serial builds, and commands that
    /// compile nothing in parallel.
    #[default]
    Own,
    /// make and its children: the jobserver's file descriptors.
    Jobserver,
    /// A tool that is no jobserver client (edk2's `build -n`, QEMU's ninja
    /// before 1.13) runs at the build's full width, and each of its
    /// compiles takes a token first, in the stage's `gcc` wrapper (which
    /// finds the tokens at `SNP_BUILD_JOB_TOKENS`). The stage's own slot
    /// is lent to those compiles while the command runs, so compiles of
    /// all stages together never exceed the budget and none waits while a
    /// token is free.
    Tokens,
}

impl Cmd {
    pub fn new(program: impl Into<OsString>, dir: &Path) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            dir: dir.to_path_buf(),
            env: BTreeMap::new(),
            budget: Budget::Own,
        }
    }

    /// A one-off command's duct expression: its argument vector and
    /// directory, the caller's environment plus its own variables.
    fn one_off(&self) -> duct::Expression {
        tracing::trace!("  env added: {:?}", self.env);
        let expr = duct::cmd(&self.program, &self.args).dir(&self.dir);
        self.env.iter().fold(expr, |e, (k, v)| e.env(k, v))
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Cmd {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Cmd {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<OsString>) -> Cmd {
        self.env.insert(k.to_string(), v.into());
        self
    }

    pub fn budget(mut self, budget: Budget) -> Cmd {
        self.budget = budget;
        self
    }

    /// `program arg arg` for logs and messages, quoted as a POSIX shell
    /// would need (for reading and copying only: nothing is run by a shell).
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| {
                let s = a.to_string_lossy();
                // Words like `--target-list=x` stay as typed; shlex quotes
                // only what a shell would split or expand.
                let plain = !s.is_empty()
                    && !s.contains(|c: char| {
                        c.is_whitespace() || c.is_control() || "'\"$`\\;&|<>(){}*?[#~!".contains(c)
                    });
                if plain {
                    s.into_owned()
                } else {
                    shlex::try_quote(&s)
                        .map(|q| q.into_owned())
                        .unwrap_or_else(|_| s.replace('\0', "\\0"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a one-off command printed.
#[derive(Debug, Clone)]
pub struct Captured {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    /// stdout, then stderr (tools print versions on either).
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs a one-off command outside any stage (a tool's version, a host
/// check) with stdin closed and returns what it printed, whatever its
/// exit status. `Err` only when it cannot be started.
pub fn capture(cmd: &Cmd) -> std::io::Result<Captured> {
    tracing::debug!("$ {}", cmd.display());
    let out = cmd
        .one_off()
        .env("LC_ALL", "C")
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()?;
    Ok(Captured {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs a command in the foreground (host changes during `install`): its
/// output goes to our stderr, so stdout stays clean for `--json`. Fails
/// naming the command when it cannot start or exits non-zero.
pub fn run_to_stderr(cmd: &Cmd) -> anyhow::Result<()> {
    tracing::debug!("$ {}", cmd.display());
    let out = cmd
        .one_off()
        .stdout_to_stderr()
        .unchecked()
        .run()
        .with_context(|| format!("starting {}", cmd.display()))?;
    if !out.status.success() {
        bail!("`{}` failed ({})", cmd.display(), out.status);
    }
    Ok(())
}

/// What [`run_teeing`] saw: the exit status and everything printed.
#[derive(Debug, Clone)]
pub struct Teed {
    pub success: bool,
    pub status: String,
    /// stdout and stderr, interleaved as printed.
    pub output: String,
}

/// Runs a command in the foreground like [`run_to_stderr`], its output
/// going to our stderr as it comes, and also keeps that output, so the
/// caller can say which part failed (dpkg names the failed kernel hook
/// only in what it prints). `Err` only when it cannot be started.
pub fn run_teeing(cmd: &Cmd) -> anyhow::Result<Teed> {
    use std::io::{BufRead, Write};
    tracing::debug!("$ {}", cmd.display());
    let handle = cmd
        .one_off()
        .stderr_to_stdout()
        .unchecked()
        .reader()
        .with_context(|| format!("starting {}", cmd.display()))?;
    let mut output = String::new();
    let mut reader = std::io::BufReader::new(&handle);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading the output of {}", cmd.display()))?;
        if n == 0 {
            break;
        }
        let _ = std::io::stderr().write_all(&line);
        output.push_str(&String::from_utf8_lossy(&line));
    }
    let status = match handle.try_wait() {
        Ok(Some(out)) => out.status,
        _ => bail!("`{}` did not finish", cmd.display()),
    };
    Ok(Teed {
        success: status.success(),
        status: status.to_string(),
        output,
    })
}

/// `producer | consumer` without a shell (`rpm2cpio PKG | cpio -idm`),
/// the consumer's output on our stderr. As with `set -o pipefail`, a
/// failure of either side fails the whole (duct: a non-zero status wins,
/// the right side's when both fail).
pub fn pipe_to_stderr(producer: &Cmd, consumer: &Cmd) -> anyhow::Result<()> {
    let line = format!("{} | {}", producer.display(), consumer.display());
    tracing::debug!("$ {line}");
    let out = producer
        .one_off()
        .pipe(consumer.one_off().stdout_to_stderr())
        .unchecked()
        .run()
        .with_context(|| format!("starting {line}"))?;
    if !out.status.success() {
        bail!("`{line}` failed ({})", out.status);
    }
    Ok(())
}

/// The variable that tells a stage's `gcc` wrapper where the job tokens
/// are (set only on [`Budget::Tokens`] commands).
pub const TOKENS_VAR: &str = "SNP_BUILD_JOB_TOKENS";

/// The jobserver's pipe as a path another process can open:
/// `/proc/<our pid>/fd/<read end>`. Opening a pipe there gives the same
/// pipe, as a FIFO would (Linux), so a wrapper run by a tool that closes
/// inherited descriptors (edk2's Python) still reaches the tokens. The
/// crate tells its descriptors only through a child's `MAKEFLAGS`, which
/// is read back from a command it configured (never run).
pub fn token_path(client: &jobserver::Client) -> Option<OsString> {
    let mut probe = std::process::Command::new("true");
    client.configure_make(&mut probe);
    let flags = probe
        .get_envs()
        .find(|(k, _)| *k == "MAKEFLAGS")
        .and_then(|(_, v)| v)?
        .to_str()?
        .to_string();
    let auth = flags
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--jobserver-auth="))?;
    let read = auth.split(',').next()?.parse::<u32>().ok()?;
    let path = format!("/proc/{}/fd/{read}", std::process::id());
    Path::new(&path).exists().then(|| path.into())
}

/// The environment every command starts from.
fn base_env() -> BTreeMap<String, OsString> {
    let mut env = BTreeMap::new();
    for key in ["PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TERM"] {
        if let Some(v) = std::env::var_os(key) {
            env.insert(key.to_string(), v);
        }
    }
    for (k, v) in std::env::vars_os() {
        if let Some(k) = k.to_str()
            && PASS_PREFIXES.iter().any(|p| k.starts_with(p))
        {
            env.insert(k.to_string(), v);
        }
    }
    // Stable, parseable tool output, and no time zone or locale of the
    // build box in what is built.
    env.insert("LANG".into(), "C".into());
    env.insert("LC_ALL".into(), "C".into());
    env.insert("TZ".into(), "UTC".into());
    env
}

/// What a stage's commands share: its log, its progress line, the job
/// server and the registry of running process groups.
pub struct StageRun<'a> {
    pub stage: String,
    pub log_path: PathBuf,
    log: Mutex<File>,
    started: Instant,
    pub progress: &'a Progress,
    jobserver: Option<&'a jobserver::Client>,
    /// The jobserver's tokens as a path a child can open (see
    /// [`token_path`]), for [`Budget::Tokens`] commands.
    tokens: Option<OsString>,
    /// The stage's job slot (one token), lent to the compiles of a
    /// [`Budget::Tokens`] command while it runs.
    slot: Mutex<Option<jobserver::Acquired>>,
    registry: &'a Registry,
    /// Variables every command of the stage gets (e.g. reproducibility).
    stage_env: BTreeMap<String, OsString>,
}

impl<'a> StageRun<'a> {
    pub fn new(
        stage: &str,
        log_path: PathBuf,
        progress: &'a Progress,
        jobserver: Option<&'a jobserver::Client>,
        registry: &'a Registry,
    ) -> anyhow::Result<StageRun<'a>> {
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        Ok(StageRun {
            stage: stage.to_string(),
            log_path,
            log: Mutex::new(log),
            started: Instant::now(),
            progress,
            jobserver,
            tokens: jobserver.and_then(|client| {
                let path = token_path(client);
                if path.is_none() {
                    // /proc hidden (hidepid) or the crate's MAKEFLAGS changed:
                    // tools that are no jobserver client then run ungated.
                    tracing::warn!(
                        "{stage}: cannot reach the job tokens through /proc; QEMU's ninja and edk2's build -n run at -j without the shared budget"
                    );
                }
                path
            }),
            slot: Mutex::new(None),
            registry,
            stage_env: BTreeMap::new(),
        })
    }

    /// The stage holds `slot`, its job slot, while it runs.
    pub fn with_slot(self, slot: Option<jobserver::Acquired>) -> Self {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = slot;
        self
    }

    /// Gives every later command of this stage `vars` (logged once here).
    pub fn with_env(mut self, vars: BTreeMap<String, OsString>) -> Self {
        for (k, v) in &vars {
            self.note(&format!(
                "env for every command: {k}={}",
                v.to_string_lossy()
            ));
        }
        self.stage_env = vars;
        self
    }

    /// A line in the log (and a debug event: on stderr with -v).
    pub fn note(&self, line: &str) {
        let stamped = format!("[{:>9.3}s] {line}", self.started.elapsed().as_secs_f64());
        if let Ok(mut log) = self.log.lock() {
            let _ = writeln!(log, "{stamped}");
        }
        tracing::debug!(stage = %self.stage, "{line}");
    }

    /// The stage enters `phase` (configure, compile, package): noted in
    /// its log, and on `--timings`' time axis.
    pub fn phase(&self, phase: &str) {
        self.note(&format!("phase: {phase}"));
        crate::timings::phase(&self.stage, phase);
    }

    /// Runs `cmd` to completion, its output into the log.
    pub fn run(&self, cmd: &Cmd) -> anyhow::Result<()> {
        self.exec(cmd, false).map(|_| ())
    }

    /// Runs `cmd` and returns its output (also logged).
    pub fn capture(&self, cmd: &Cmd) -> anyhow::Result<String> {
        self.exec(cmd, true)
    }

    fn exec(&self, cmd: &Cmd, keep: bool) -> anyhow::Result<String> {
        if self.registry.is_cancelled() {
            return Err(self.stopped());
        }
        let extra: Vec<String> = cmd
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_string_lossy()))
            .collect();
        self.note(&format!(
            "$ {}    (in {}{}{})",
            cmd.display(),
            cmd.dir.display(),
            if extra.is_empty() { "" } else { "; " },
            extra.join(" ")
        ));
        self.progress.status(cmd.display());

        let mut env = base_env();
        env.extend(self.stage_env.clone());
        env.extend(cmd.env.clone());
        tracing::trace!(stage = %self.stage, "  environment: {env:?}");
        let jobserver = self
            .jobserver
            .filter(|_| cmd.budget == Budget::Jobserver)
            .cloned();
        // A tool that takes no jobserver: its compiles take the tokens,
        // this stage's slot included (given back when it ends).
        let lend = cmd.budget == Budget::Tokens && self.tokens.is_some();
        if let (true, Some(tokens)) = (lend, &self.tokens) {
            env.insert(TOKENS_VAR.into(), tokens.clone());
            drop(self.slot.lock().unwrap_or_else(|e| e.into_inner()).take());
        }
        let result = self.spawn_and_wait(cmd, env, jobserver, keep);
        if lend && let Some(client) = self.jobserver {
            let back = self.take_slot_back(client);
            // The command's own failure is the one to report.
            if result.is_ok() {
                back?;
            }
        }
        result
    }

    /// The stage's slot back before its next command, waiting in line with
    /// every other reader of the jobserver (a blocking read, on the crate's
    /// helper thread). Not when the build is stopping: compiles killed by
    /// the stop may have taken their tokens with them, and the stage runs
    /// nothing more; dropping the helper ends its wait.
    fn take_slot_back(&self, client: &jobserver::Client) -> anyhow::Result<()> {
        if self.registry.is_cancelled() {
            return Ok(());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let helper = client
            .clone()
            .into_helper_thread(move |token| {
                let _ = tx.send(token);
            })
            .context("waiting for the stage's job slot")?;
        helper.request_token();
        while !self.registry.is_cancelled() {
            match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(token) => {
                    let slot = token.context("taking the stage's job slot back")?;
                    *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(slot);
                    break;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(())
    }

    fn spawn_and_wait(
        &self,
        cmd: &Cmd,
        env: BTreeMap<String, OsString>,
        jobserver: Option<jobserver::Client>,
        keep: bool,
    ) -> anyhow::Result<String> {
        let expr = duct::cmd(&cmd.program, &cmd.args)
            .dir(&cmd.dir)
            .full_env(&env)
            .stdin_null()
            .stderr_to_stdout()
            .unchecked()
            .before_spawn(move |c| {
                c.process_group(0);
                if let Some(js) = &jobserver {
                    js.configure_make(c);
                }
                Ok(())
            });
        let reader = expr.reader().map_err(|e| {
            anyhow::anyhow!("{}: cannot start `{}`: {e}", self.stage, cmd.display())
        })?;
        let pids = reader.pids();
        self.registry
            .groups
            .lock()
            .unwrap()
            .extend(pids.iter().map(|p| *p as i32));
        let mut kept = String::new();
        let mut lines = BufReader::new(&reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match lines.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']);
                    self.note(line);
                    self.progress.status(line);
                    if keep {
                        kept.push_str(line);
                        kept.push('\n');
                    }
                }
                Err(e) => {
                    self.note(&format!("(reading output failed: {e})"));
                    break;
                }
            }
        }
        let status = reader.try_wait();
        {
            let mut groups = self.registry.groups.lock().unwrap();
            for p in &pids {
                groups.remove(&(*p as i32));
            }
        }
        let status = match status {
            Ok(Some(out)) => out.status,
            Ok(None) => bail!("{}: `{}` did not finish", self.stage, cmd.display()),
            Err(e) => bail!("{}: waiting for `{}`: {e}", self.stage, cmd.display()),
        };
        if self.registry.is_cancelled() && !status.success() {
            return Err(self.stopped());
        }
        if !status.success() {
            self.note(&format!("command failed: {status}"));
            return Err(StepFailed {
                stage: self.stage.clone(),
                command: cmd.display(),
                status: status.to_string(),
                tail: tail(&self.log_path, TAIL_LINES),
                log: self.log_path.clone(),
            }
            .into());
        }
        Ok(kept)
    }

    fn stopped(&self) -> anyhow::Error {
        if self.registry.was_interrupted() {
            Interrupted.into()
        } else {
            Cancelled.into()
        }
    }
}

/// A build command that failed: everything needed to see why.
#[derive(Debug)]
pub struct StepFailed {
    pub stage: String,
    pub command: String,
    pub status: String,
    pub tail: Vec<String>,
    pub log: PathBuf,
}

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "stage {} failed: `{}` ({})",
            self.stage, self.command, self.status
        )?;
        writeln!(
            f,
            "  last {} lines of {}:",
            self.tail.len(),
            self.log.display()
        )?;
        for line in &self.tail {
            writeln!(f, "  | {line}")?;
        }
        write!(f, "  full log: {}", self.log.display())
    }
}

impl std::error::Error for StepFailed {}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
