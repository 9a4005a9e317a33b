//! Every human message is a `tracing` event; this sets up how they print.
//!
//! Guarantees:
//! - Levels: the default shows `info` and above (what a person always
//!   saw); `-v` adds `debug` (each command line as it starts, the stages'
//!   notes and their output, and the decisions: fetch, fingerprints, tool
//!   versions); `-vv` adds `trace` (every output check of a stamp, every
//!   command's whole environment). `RUST_LOG`, when set, replaces all of
//!   that (`RUST_LOG=debug`, `RUST_LOG=snp_build::source=debug`); what its
//!   directives do not name stays at `info`.
//! - Lines look as they always did: `warning: ` and `error: ` before
//!   warnings and errors, `<stage>: ` before an event that carries a
//!   `stage` field, nothing else (no timestamps, levels or targets, and no
//!   escape codes: a log file or CI log reads as plain text).
//! - Everything goes to stderr, through the progress bars' own lock
//!   ([`crate::progress::suspend_bars`]), so a line and a bar never tear each
//!   other. stdout is left to machine output (`--json`, `plan`, `config`).

use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Installs the subscriber for `verbose` (the count of `-v`), unless
/// `RUST_LOG` says otherwise. A second call (tests running the CLI in
/// process) keeps the first subscriber.
pub fn init(verbose: u8) {
    let level = match verbose {
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    // RUST_LOG's directives win; whatever they do not name keeps the
    // default level (so `RUST_LOG=other_crate=debug`, or a typo, never
    // hides snp-build's own messages and errors).
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            let sets_level = spec
                .split(',')
                .any(|d| d.trim().parse::<LevelFilter>().is_ok());
            let spec = if sets_level {
                spec
            } else {
                format!("info,{spec}")
            };
            EnvFilter::builder().parse_lossy(spec)
        }
        _ => EnvFilter::builder()
            .with_default_directive(level.into())
            .parse_lossy(""),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .event_format(Plain)
        .with_writer(StderrThroughBars)
        .try_init();
}

/// The line format described in the module documentation.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        match *event.metadata().level() {
            Level::ERROR => writer.write_str("error: ")?,
            Level::WARN => writer.write_str("warning: ")?,
            _ => {}
        }
        if let Some(stage) = &fields.stage {
            write!(writer, "{stage}: ")?;
        }
        writer.write_str(&fields.message)?;
        for (name, value) in &fields.extra {
            write!(writer, " {name}={value}")?;
        }
        writeln!(writer)
    }
}

/// The fields of one event: its message, its stage, and any others.
#[derive(Default)]
struct Fields {
    message: String,
    stage: Option<String>,
    extra: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "stage" => self.stage = Some(value.to_string()),
            name => self.extra.push((name, value.to_string())),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "stage" => self.stage = Some(format!("{value:?}")),
            name => self.extra.push((name, format!("{value:?}"))),
        }
    }
}

/// Hands each formatted event to stderr in one write, with the progress
/// bars cleared around it.
struct StderrThroughBars;

impl<'a> MakeWriter<'a> for StderrThroughBars {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}

/// One event's text, written when the formatter is done with it.
struct Line(Vec<u8>);

impl std::io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        crate::progress::suspend_bars(|| {
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(&self.0);
            let _ = stderr.flush();
        });
    }
}
