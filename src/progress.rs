//! Progress of long steps (fetches, stages): an indicatif line per step on
//! a terminal, plain lines (tracing events) otherwise.
//!
//! Guarantees:
//! - One `MultiProgress` for the process, so stages draw side by side;
//!   every log line is written through [`suspend_bars`], so bars and lines
//!   never tear each other.
//! - Without a terminal nothing here draws: each step is an `info` event
//!   (`<stage>: <message>`) and transient detail is left to the logs.

/// Progress of one long step (a fetch, a stage). On a terminal: an
/// indicatif line on stderr. Otherwise: plain lines, no escape codes.
pub struct Progress {
    label: String,
    bar: Option<indicatif::ProgressBar>,
}

/// One MultiProgress for the process: stages draw side by side.
static MULTI: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();

/// Runs `write` with the progress bars cleared, then redraws them, so a
/// log line never tears a bar (every log line goes through here).
pub fn suspend_bars<R>(write: impl FnOnce() -> R) -> R {
    match MULTI.get() {
        Some(multi) => multi.suspend(write),
        None => write(),
    }
}

impl Progress {
    pub fn new(label: impl Into<String>) -> Progress {
        use std::io::IsTerminal;
        let label = label.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = MULTI
                .get_or_init(indicatif::MultiProgress::new)
                .add(indicatif::ProgressBar::new_spinner());
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {prefix:.bold} [{elapsed}] {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Progress { label, bar }
    }

    /// A new phase of the step.
    pub fn step(&self, message: impl AsRef<str>) {
        match &self.bar {
            Some(bar) => bar.set_message(message.as_ref().to_string()),
            None => tracing::info!(stage = %self.label, "{}", message.as_ref()),
        }
    }

    /// The latest detail (a command, a log line): shown on a terminal
    /// only; without one, the log file has it.
    pub fn status(&self, message: impl AsRef<str>) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.as_ref().to_string());
        }
    }

    /// Objects and bytes received so far (terminal only: too chatty for logs).
    pub fn transfer(&self, received: usize, total: usize, bytes: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "receiving objects {received}/{total}, {}",
                human_bytes(bytes as u64)
            ));
        }
    }

    /// The step is over; `message` stays on screen.
    pub fn finish(&self, message: impl AsRef<str>) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(message.as_ref().to_string()),
            None => tracing::info!(stage = %self.label, "{}", message.as_ref()),
        }
    }

    /// A warning that must be seen even while the bar is drawn.
    pub fn warn(&self, message: impl AsRef<str>) {
        tracing::warn!(stage = %self.label, "{}", message.as_ref());
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.abandon();
        }
    }
}

/// `1.5 MiB`-style sizes for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
