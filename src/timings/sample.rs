//! The `--timings` sampler: every [`super::SAMPLE_EVERY`], the compile
//! jobs running under this process and the machine's CPU use, from
//! `/proc` (no subprocess).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::Sample;

/// The programs that are one compile job each (a `gcc` driver runs `cc1`,
/// then `as`: the driver itself is not counted, so one compile is one job).
const JOB_PROGRAMS: &[&str] = &[
    "cc1", "cc1plus", "as", "ld", "ld.bfd", "ld.gold", "ld.lld", "nasm", "iasl", "rustc",
];

/// A running sampler; [`Sampler::stop`] returns what it saw.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Sample>>>,
}

impl Sampler {
    pub fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("timings".into())
            .spawn(move || {
                let me = std::process::id();
                let mut samples = Vec::new();
                let mut last = cpu_times();
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(super::SAMPLE_EVERY);
                    let now = cpu_times();
                    let cpu = match (last, now) {
                        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                            (b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64
                        }
                        _ => 0.0,
                    };
                    last = now;
                    samples.push(Sample {
                        t_s: super::now(),
                        jobs: jobs_under(me),
                        cpu: cpu.clamp(0.0, 1.0),
                    });
                }
                samples
            })
            .ok();
        Sampler { stop, thread }
    }

    pub fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

/// (busy, total) jiffies of all CPUs, from `/proc/stat`'s `cpu` line.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait are not work.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// The compile jobs running among `root`'s descendants.
fn jobs_under(root: u32) -> u32 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut parent: HashMap<u32, u32> = HashMap::new();
    let mut jobs: Vec<u32> = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((comm, ppid)) = parse_stat(&stat) else {
            continue;
        };
        parent.insert(pid, ppid);
        if JOB_PROGRAMS.contains(&comm) {
            jobs.push(pid);
        }
    }
    jobs.iter()
        .filter(|pid| {
            let mut at = **pid;
            for _ in 0..64 {
                match parent.get(&at) {
                    Some(&p) if p == root => return true,
                    Some(&p) if p > 1 => at = p,
                    _ => return false,
                }
            }
            false
        })
        .count() as u32
}

/// `(comm, ppid)` from a `/proc/PID/stat` line: `pid (comm) state ppid ...`
/// (the name may hold spaces and parentheses: it ends at the last `)`).
fn parse_stat(stat: &str) -> Option<(&str, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = &stat[open + 1..close];
    let mut rest = stat[close + 1..].split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        assert_eq!(
            parse_stat("1234 (cc1) R 1200 1234 1 0 -1"),
            Some(("cc1", 1200))
        );
        assert_eq!(parse_stat("77 (a (b) c) S 5 77 1"), Some(("a (b) c", 5)));
    }

    #[test]
    fn a_child_compiler_is_counted() {
        // A real cc1-named child of this test process.
        let dir = tempfile::tempdir().unwrap();
        let cc1 = dir.path().join("cc1");
        std::os::unix::fs::symlink("/bin/sleep", &cc1).unwrap();
        let mut child = std::process::Command::new(&cc1).arg("5").spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let n = jobs_under(std::process::id());
        child.kill().unwrap();
        let _ = child.wait();
        assert!(n >= 1, "{n}");
        assert!(cpu_times().is_some());
    }
}
