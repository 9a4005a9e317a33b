//! Where messages go: human text to stderr, machine output (`--json`) to
//! stdout as exactly one JSON document carrying `schema_version`.

use serde_json::{Map, Value, json};

/// Version of every JSON document snp-build prints.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// A message for the person at the terminal (always stderr).
    pub fn info(&self, message: impl AsRef<str>) {
        tracing::info!("{}", message.as_ref());
    }

    pub fn warn(&self, message: impl AsRef<str>) {
        tracing::warn!("{}", message.as_ref());
    }

    /// Prints the command's JSON document: `fields` plus `schema_version`
    /// and `command`.
    pub fn document(&self, command: &str, fields: Value) {
        let mut doc = Map::new();
        doc.insert("schema_version".into(), json!(SCHEMA_VERSION));
        doc.insert("command".into(), json!(command));
        if let Value::Object(map) = fields {
            doc.extend(map);
        }
        println!("{}", Value::Object(doc));
    }
}

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
