//! `logs/timings.html`: one self-contained page (inline CSS and SVG, no
//! script, nothing fetched), laid out as `cargo build --timings` does: a
//! summary, one row per stage on a time axis with its phases, the compile
//! jobs running over time against the job budget, the machine's CPU use,
//! and a table of the same numbers.

use std::fmt::Write;

use super::Report;

const WIDTH: f64 = 960.0;
const LABEL: f64 = 130.0;
const ROW: f64 = 26.0;
const GRAPH: f64 = 160.0;

/// The colour of a phase (and of the legend).
fn colour(phase: &str) -> &'static str {
    match phase {
        "fetch" => "#7aa6d8",
        "configure" => "#f2c14e",
        "compile" => "#e07a5f",
        "package" => "#81b29a",
        "release" => "#9b72cf",
        _ => "#b0b0b0",
    }
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page.
pub fn render(r: &Report) -> String {
    let span = r.wall_s.max(0.001);
    let x = |t: f64| LABEL + (t / span) * (WIDTH - LABEL - 10.0);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>snp-build timings {started}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
th {{ background: #f0f0f0; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.skipped td {{ color: #888; }}
tr.failed td, tr.cancelled td {{ color: #b00; }}
svg text {{ font-size: 12px; }}
.legend span {{ display: inline-block; margin-right: 1em; }}
.legend i {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }}
</style></head><body>
<h1>snp-build timings</h1>
<table id="summary">
<tr><th>started</th><td>{started}</td></tr>
<tr><th>wall time</th><td class="num">{wall:.1} s</td></tr>
<tr><th>job budget</th><td>{budget}</td></tr>
<tr><th>cores</th><td class="num">{cores}</td></tr>
<tr><th>snp-build</th><td>{version}</td></tr>
</table>
"#,
        started = esc(&r.started_at),
        wall = r.wall_s,
        budget = if r.serial {
            format!("--serial (-j{} each)", r.jobs)
        } else {
            format!("-j{} (one jobserver)", r.jobs)
        },
        cores = r.cores,
        version = esc(&r.snp_build_version),
    );

    // The legend.
    out.push_str(r#"<p class="legend">"#);
    for phase in ["fetch", "configure", "compile", "package", "release"] {
        let _ = write!(
            out,
            r#"<span><i style="background:{}"></i>{phase}</span>"#,
            colour(phase)
        );
    }
    out.push_str(r#"<span><i style="background:#e8e8e8"></i>waiting for a job slot</span></p>"#);

    // One row per stage on the time axis.
    let height = ROW * r.stages.len() as f64 + 30.0;
    let _ = write!(
        out,
        r#"<svg id="stages-chart" width="{WIDTH}" height="{height}" role="img" aria-label="stages on a time axis">"#
    );
    axis(&mut out, span, height - 20.0, &x);
    for (i, s) in r.stages.iter().enumerate() {
        let y = ROW * i as f64 + 4.0;
        let _ = write!(
            out,
            r#"<g class="stage-row" data-stage="{name}" data-status="{status}"><text x="4" y="{ty}">{name}</text>"#,
            name = esc(&s.stage),
            status = esc(&s.status),
            ty = y + 15.0
        );
        if let (Some(q), Some(st)) = (s.queued_s, s.start_s)
            && st > q
        {
            let _ = write!(
                out,
                r##"<rect class="wait" x="{:.1}" y="{y:.1}" width="{:.1}" height="20" fill="#e8e8e8"><title>{}: waited {:.1}s for a job slot</title></rect>"##,
                x(q),
                (x(st) - x(q)).max(0.5),
                esc(&s.stage),
                st - q
            );
        }
        for p in &s.phases {
            let _ = write!(
                out,
                r#"<rect class="phase" data-phase="{name}" x="{:.1}" y="{y:.1}" width="{:.1}" height="20" fill="{}"><title>{stage} {name}: {:.1}s</title></rect>"#,
                x(p.start_s),
                (x(p.end_s) - x(p.start_s)).max(0.5),
                colour(&p.name),
                p.end_s - p.start_s,
                name = esc(&p.name),
                stage = esc(&s.stage),
            );
        }
        if s.status == "skipped" {
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" fill="#888">skipped: {}</text>"##,
                LABEL + 4.0,
                y + 15.0,
                esc(&s.reasons.join("; "))
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>\n");

    // Jobs and CPU over time.
    let peak = r
        .samples
        .iter()
        .map(|s| s.jobs as usize)
        .max()
        .unwrap_or(0)
        .max(r.jobs)
        .max(1) as f64;
    let gy = |v: f64, max: f64| 10.0 + GRAPH - (v / max) * GRAPH;
    let _ = write!(
        out,
        r#"<h2>Compile jobs and CPU over time</h2><p>Compile jobs running (compilers, assemblers and linkers under snp-build) against the job budget of {}; the machine's CPU use (all {} cores = 100%).</p>"#,
        r.jobs, r.cores
    );
    let gh = GRAPH + 40.0;
    let _ = write!(
        out,
        r#"<svg id="jobs-chart" width="{WIDTH}" height="{gh}" role="img" aria-label="jobs and CPU over time">"#
    );
    axis(&mut out, span, GRAPH + 20.0, &x);
    let _ = write!(
        out,
        r##"<line class="budget" x1="{LABEL}" x2="{:.1}" y1="{b:.1}" y2="{b:.1}" stroke="#444" stroke-dasharray="4 3"/><text x="4" y="{by:.1}">budget {}</text>"##,
        WIDTH - 10.0,
        r.jobs,
        b = gy(r.jobs as f64, peak),
        by = gy(r.jobs as f64, peak) + 4.0,
    );
    if peak > r.jobs as f64 {
        let _ = write!(
            out,
            r#"<text x="4" y="{:.1}">{peak} jobs</text>"#,
            gy(peak, peak) + 4.0
        );
    }
    let jobs: Vec<String> = r
        .samples
        .iter()
        .map(|s| format!("{:.1},{:.1}", x(s.t_s), gy(s.jobs as f64, peak)))
        .collect();
    let cpu: Vec<String> = r
        .samples
        .iter()
        .map(|s| format!("{:.1},{:.1}", x(s.t_s), gy(s.cpu, 1.0)))
        .collect();
    let _ = write!(
        out,
        r##"<polyline class="jobs" fill="none" stroke="#e07a5f" stroke-width="2" points="{}"/><polyline class="cpu" fill="none" stroke="#3d7edb" stroke-width="1.5" points="{}"/>"##,
        jobs.join(" "),
        cpu.join(" ")
    );
    out.push_str("</svg>\n");
    out.push_str(
        r##"<p class="legend"><span><i style="background:#e07a5f"></i>compile jobs</span><span><i style="background:#3d7edb"></i>CPU use</span></p>"##,
    );

    // The table.
    out.push_str(
        r#"<h2>Stages</h2><table id="stages"><tr><th>stage</th><th>status</th><th>waited (s)</th><th>start (s)</th><th>duration (s)</th><th>phases (s)</th></tr>"#,
    );
    for s in &r.stages {
        let num = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
        let duration = match (s.start_s, s.end_s) {
            (Some(a), Some(b)) => Some(b - a),
            _ => s
                .phases
                .first()
                .zip(s.phases.last())
                .map(|(a, b)| b.end_s - a.start_s),
        };
        let waited = s.queued_s.zip(s.start_s).map(|(q, st)| st - q);
        let phases: Vec<String> = s
            .phases
            .iter()
            .map(|p| format!("{} {:.1}", esc(&p.name), p.end_s - p.start_s))
            .collect();
        let _ = write!(
            out,
            r#"<tr class="stage {status}" data-stage="{name}" data-status="{status}"><td>{name}</td><td>{status}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            num(waited),
            num(s.start_s.or(s.phases.first().map(|p| p.start_s))),
            num(duration),
            if s.status == "skipped" {
                format!("skipped: {}", esc(&s.reasons.join("; ")))
            } else {
                phases.join(", ")
            },
            name = esc(&s.stage),
            status = esc(&s.status),
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

/// A time axis at `y`, with ticks at round seconds.
fn axis(out: &mut String, span: f64, y: f64, x: &dyn Fn(f64) -> f64) {
    let step = [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]
        .into_iter()
        .find(|s| span / s <= 12.0)
        .unwrap_or(3600.0);
    let _ = write!(
        out,
        r##"<line x1="{LABEL}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#999"/>"##,
        x(span)
    );
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let _ = write!(
            out,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{y:.1}" y2="{:.1}" stroke="#999"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{t}s</text>"##,
            y + 4.0,
            y + 16.0,
            px = x(t),
        );
        t += step;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Phase, Report, Sample, StageTiming};

    #[test]
    fn every_stage_gets_a_row_and_skipped_ones_say_so() {
        let r = Report {
            wall_s: 10.0,
            jobs: 2,
            cores: 2,
            stages: vec![
                StageTiming {
                    stage: "qemu".into(),
                    status: "ok".into(),
                    queued_s: Some(1.0),
                    start_s: Some(2.0),
                    end_s: Some(9.0),
                    phases: vec![Phase {
                        name: "compile".into(),
                        start_s: 2.0,
                        end_s: 9.0,
                    }],
                    ..StageTiming::default()
                },
                StageTiming {
                    stage: "ovmf".into(),
                    status: "skipped".into(),
                    reasons: vec!["up to date".into()],
                    ..StageTiming::default()
                },
            ],
            samples: vec![Sample {
                t_s: 5.0,
                jobs: 2,
                cpu: 0.9,
            }],
            ..Report::default()
        };
        let html = super::render(&r);
        assert!(html.contains(r#"<tr class="stage ok" data-stage="qemu""#));
        assert!(html.contains(r#"data-stage="ovmf" data-status="skipped""#));
        assert!(html.contains("skipped: up to date"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("http"));
    }
}
