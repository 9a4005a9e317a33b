//! Progress of long steps (fetches, stages): an indicatif line per step on
//! a terminal, plain lines (tracing events) otherwise.
//!
//! Guarantees:
//! - One `MultiProgress` for the process, so stages draw side by side;
//!   every log line is written through [`suspend_bars`], so bars and lines
//!   never tear each other.
//! - A finished step leaves a plain `<label>: <message>` line above the
//!   live bars (fetch results, `done in`, a failure), which stays on the
//!   terminal after the run, as cargo's lines do.
//! - Without a terminal nothing here draws: each step is an `info` event
//!   (`<stage>: <message>`) and transient detail is left to the logs.
//! - **How far a stage is**: ninja's `[N/M]` in its output (QEMU), else
//!   the time since it started over the duration its last build recorded
//!   (make-based stages; at most 99% until it ends). On a terminal the
//!   line becomes a bar with a percentage and an ETA; without one, a plain
//!   `<stage>: NN% (about Ns left)` line at most every
//!   [`plain_every`] (30 s; `SNP_BUILD_PROGRESS_EVERY` seconds).

/// Progress of one long step (a fetch, a stage). On a terminal: an
/// indicatif line on stderr. Otherwise: plain lines, no escape codes.
pub struct Progress {
    label: String,
    bar: Option<indicatif::ProgressBar>,
    /// When the step started running (reset by [`Progress::expect`]).
    started: std::sync::Mutex<std::time::Instant>,
    /// How long the last build of this stage ran, if it recorded it.
    expected: std::sync::Mutex<Option<f64>>,
    /// When the last plain percentage line was printed (no terminal).
    last_plain: std::sync::Mutex<Option<std::time::Instant>>,
    /// The bar shows a fraction (its style switched from the spinner).
    measured: std::sync::atomic::AtomicBool,
    /// The first and latest ninja `[N/M]` seen: (when, fraction). Once
    /// ninja counts, the clock no longer says how far the stage is.
    ninja: std::sync::Mutex<Option<(std::time::Instant, f64, f64)>>,
}

/// How often a plain percentage line may be printed per stage without a
/// terminal: 30 s, or `SNP_BUILD_PROGRESS_EVERY` seconds.
pub fn plain_every() -> std::time::Duration {
    std::env::var("SNP_BUILD_PROGRESS_EVERY")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map_or(
            std::time::Duration::from_secs(30),
            std::time::Duration::from_secs_f64,
        )
}

/// ninja's `[N/M]` at the start of a line, as a fraction (a one-step
/// count, such as `ninja install`'s `[0/1]`, says nothing).
fn ninja_fraction(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (n, rest) = rest.split_once('/')?;
    let (m, _) = rest.split_once(']')?;
    let (n, m): (u64, u64) = (n.trim().parse().ok()?, m.trim().parse().ok()?);
    (m > 1 && n <= m).then(|| n as f64 / m as f64)
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
        Progress {
            label,
            bar,
            started: std::sync::Mutex::new(std::time::Instant::now()),
            expected: std::sync::Mutex::new(None),
            last_plain: std::sync::Mutex::new(None),
            measured: std::sync::atomic::AtomicBool::new(false),
            ninja: std::sync::Mutex::new(None),
        }
    }

    /// The stage starts running now, and its last build ran `secs`: how
    /// far it is follows the clock.
    pub fn expect(&self, secs: Option<f64>) {
        if let Ok(mut e) = self.expected.lock() {
            *e = secs.filter(|s| *s > 0.0);
        }
        if let Ok(mut started) = self.started.lock() {
            *started = std::time::Instant::now();
        }
    }

    fn elapsed(&self) -> std::time::Duration {
        self.started.lock().map(|s| s.elapsed()).unwrap_or_default()
    }

    /// How far along the stage is, and the seconds left if that can be
    /// told: ninja's `[N/M]` once it counts (never backwards; the time
    /// left from its pace since its first count), else the clock against
    /// the expected duration (at most 99%, and then no time left).
    fn fraction(&self, line: &str) -> Option<(f64, Option<f64>)> {
        let mut ninja = self.ninja.lock().ok()?;
        if let Some(f) = ninja_fraction(line) {
            let now = std::time::Instant::now();
            match *ninja {
                None => *ninja = Some((now, f, f)),
                Some((t0, f0, last)) if f >= last => *ninja = Some((t0, f0, f)),
                Some(_) => return None,
            }
        }
        if let Some((t0, f0, f)) = *ninja {
            let left = (f > f0).then(|| t0.elapsed().as_secs_f64() * (1.0 - f) / (f - f0));
            return Some((f, left));
        }
        let expected = (*self.expected.lock().ok()?)?;
        let elapsed = self.elapsed().as_secs_f64();
        let f = (elapsed / expected).min(0.99);
        Some((f, (f < 0.99).then_some(expected - elapsed)))
    }

    /// Shows the fraction: a bar with percentage and ETA on a terminal, a
    /// plain line at most every [`plain_every`] otherwise.
    fn show_fraction(&self, fraction: f64, left: Option<f64>) {
        use std::sync::atomic::Ordering;
        match &self.bar {
            Some(bar) => {
                if !self.measured.swap(true, Ordering::Relaxed) {
                    bar.set_length(1000);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{spinner} {prefix:.bold} [{elapsed}] {bar:20} {percent:>3}% ETA {eta} {wide_msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                }
                bar.set_position((fraction * 1000.0) as u64);
            }
            None => {
                let Ok(mut last) = self.last_plain.lock() else {
                    return;
                };
                let since = last.map_or_else(|| self.elapsed(), |t| t.elapsed());
                if since < plain_every() {
                    return;
                }
                *last = Some(std::time::Instant::now());
                match left {
                    Some(left) => tracing::info!(
                        stage = %self.label,
                        "{:.0}% (about {left:.0}s left)",
                        fraction * 100.0
                    ),
                    None => tracing::info!(stage = %self.label, "{:.0}%", fraction * 100.0),
                }
            }
        }
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
        let message = message.as_ref();
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        }
        if let Some((fraction, left)) = self.fraction(message) {
            self.show_fraction(fraction, left);
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

    /// The step failed or was stopped; `message` stays on screen.
    pub fn fail(&self, message: impl AsRef<str>) {
        self.leave(message.as_ref());
    }

    /// The step is over; `message` stays on screen.
    pub fn finish(&self, message: impl AsRef<str>) {
        self.leave(message.as_ref());
    }

    /// Ends the step with a line that stays. On a terminal the live bar
    /// goes and `<label>: <message>` is printed above the bars still
    /// running, as cargo's `Compiling` lines are: indicatif redraws its
    /// bars in place (and finished ones vanish with the last redraw), but
    /// what `MultiProgress::println` writes is ordinary scrollback, so
    /// the fetch results and `done in` times outlive the run. Without a
    /// terminal it is the same line as a log event.
    fn leave(&self, message: &str) {
        let Some(bar) = &self.bar else {
            tracing::info!(stage = %self.label, "{message}");
            return;
        };
        bar.finish_and_clear();
        if let Some(multi) = MULTI.get() {
            // A write error means the terminal is gone: nothing to keep.
            let _ = multi.println(format!("{}: {message}", self.label));
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

#[cfg(test)]
mod tests {
    #[test]
    fn ninja_steps_are_fractions() {
        assert_eq!(
            super::ninja_fraction("[10/40] Compiling C object x.o"),
            Some(0.25)
        );
        assert_eq!(super::ninja_fraction("  CC      kernel/fork.o"), None);
        assert_eq!(super::ninja_fraction("[x/40] no"), None);
        assert_eq!(super::ninja_fraction("[0/1] Installing files."), None);
        assert_eq!(super::ninja_fraction("[-1/5] no"), None);
    }
}
