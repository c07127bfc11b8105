//! The table, the CSV and the SVG chart of ratios.

use crate::{Kind, Workload};
use std::fmt::Write;

/// One side's figures: median, min, max (`None`: it printed none).
pub struct Figure {
    pub kind: Kind,
    pub name: &'static str,
    pub stats: Option<(f64, f64, f64)>,
}

pub struct Row {
    pub name: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
    pub figures: Vec<Figure>,
}

fn stats(mut xs: Vec<f64>) -> Option<(f64, f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    Some((xs[xs.len() / 2], xs[0], xs[xs.len() - 1]))
}

impl Row {
    pub fn new(w: &Workload, samples: Vec<Vec<f64>>) -> Row {
        let figures = w
            .sides
            .iter()
            .zip(samples)
            .map(|(s, xs)| Figure { kind: s.kind, name: s.name, stats: stats(xs) })
            .collect();
        Row { name: w.name, unit: w.unit, higher_is_better: w.higher_is_better, figures }
    }

    fn median(&self, kind: Kind) -> Option<f64> {
        self.figures.iter().find(|f| f.kind == kind).and_then(|f| f.stats).map(|s| s.0)
    }

    /// How many times better multiproc is than `other` (> 1: ahead).
    pub fn advantage(&self, other: f64) -> Option<f64> {
        let ours = self.median(Kind::Multiproc)?;
        Some(if self.higher_is_better { ours / other } else { other / ours })
    }

    /// Against Python, and against the first floor.
    pub fn ratios(&self) -> (Option<f64>, Option<f64>) {
        let vs = |kind| self.median(kind).and_then(|o| self.advantage(o));
        (vs(Kind::Python), vs(Kind::Floor))
    }

    pub fn print(&self) {
        let fmt = |f: &Figure| match f.stats {
            Some((m, lo, hi)) => format!("{m:.3} [{lo:.3}-{hi:.3}]"),
            None => "-".into(),
        };
        let ratio = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}x"));
        let (py, fl) = self.ratios();
        println!(
            "\n{} ({}; {} is better)",
            self.name,
            self.unit,
            if self.higher_is_better { "higher" } else { "lower" }
        );
        for f in &self.figures {
            let vs = match f.kind {
                Kind::Multiproc => format!("vs python {}, vs floor {}", ratio(py), ratio(fl)),
                _ => f.stats.and_then(|s| self.advantage(s.0)).map_or(String::new(), |r| {
                    format!("multiproc {r:.2}x {}", if r >= 1.0 { "ahead" } else { "behind" })
                }),
            };
            println!("  {:<22} {:>32}   {}", f.name, fmt(f), vs);
        }
    }
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split_once(':').map_or(l, |(_, v)| v).trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "machine: {} CPUs ({cpu}), Linux {}, {}",
        multiproc::cpu_count(),
        kernel.trim(),
        python_version()
    )
}

fn python_version() -> String {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "no python3".into())
}

/// The table for the README: medians, and multiproc's advantage over
/// Python, the first floor and each rival (> 1x: ahead).
pub fn markdown(rows: &[Row], machine: &str) -> String {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut out = format!("Measured {date} on {machine}.\n\n");
    out.push_str("| workload | unit | multiproc | Python | vs Python | floor | vs floor | others (multiproc vs them) |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    let v = |x: f64| {
        if x >= 100.0 {
            format!("{x:.0}")
        } else if x >= 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.2}")
        }
    };
    for r in rows {
        let get = |kind| r.figures.iter().find(|f| f.kind == kind);
        let median = |f: Option<&Figure>| f.and_then(|f| f.stats).map(|s| s.0);
        let adv = |m: Option<f64>| {
            m.and_then(|m| r.advantage(m)).map_or("-".to_string(), |a| format!("{}x", v(a)))
        };
        let ours = median(get(Kind::Multiproc)).map_or("-".into(), v);
        let py = median(get(Kind::Python));
        let fl = get(Kind::Floor);
        let others: Vec<String> = r
            .figures
            .iter()
            .filter(|f| {
                f.kind == Kind::Rival || (f.kind == Kind::Floor && !std::ptr::eq(*f, fl.unwrap()))
            })
            .filter_map(|f| {
                let m = f.stats?.0;
                Some(format!("{} {} ({}x)", f.name, v(m), v(r.advantage(m)?)))
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {ours} | {} | {} | {} | {} | {} |",
            r.name,
            r.unit,
            py.map_or("-".into(), v),
            adv(py),
            fl.and_then(|f| f.stats.map(|s| format!("{} {}", f.name, v(s.0))))
                .unwrap_or("-".into()),
            adv(median(fl)),
            if others.is_empty() { "-".into() } else { others.join("; ") }
        );
    }
    out
}

pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from("workload,unit,side,kind,median,min,max,multiproc_advantage\n");
    for r in rows {
        for f in &r.figures {
            let (m, lo, hi) = f.stats.map_or((String::new(), String::new(), String::new()), |s| {
                (format!("{}", s.0), format!("{}", s.1), format!("{}", s.2))
            });
            let adv = match (f.kind, f.stats) {
                (Kind::Multiproc, _) | (_, None) => String::new(),
                (_, Some(s)) => r.advantage(s.0).map_or(String::new(), |a| format!("{a}")),
            };
            let _ = writeln!(
                out,
                "\"{}\",{},\"{}\",{:?},{m},{lo},{hi},{adv}",
                r.name, r.unit, f.name, f.kind
            );
        }
    }
    out
}

/// A horizontal bar chart, log scale, of how many times multiproc is ahead
/// of Python (blue), the first floor (grey) and each rival (orange).
pub fn svg(rows: &[Row], machine: &str) -> String {
    let bars: Vec<(String, &'static str, f64)> = rows
        .iter()
        .flat_map(|r| {
            r.figures.iter().filter(|f| f.kind != Kind::Multiproc).filter_map(move |f| {
                let a = r.advantage(f.stats?.0)?;
                let colour = match f.kind {
                    Kind::Python => "#3b6fb6",
                    Kind::Floor => "#8c8c8c",
                    _ => "#e08a2c",
                };
                Some((format!("{} vs {}", r.name, f.name), colour, a))
            })
        })
        .collect();
    let (left, width, bar, gap) = (330.0, 420.0, 14.0, 4.0);
    let height = 60.0 + bars.len() as f64 * (bar + gap) + 30.0;
    let (lo, hi) = (-2.0f64, 4.0f64); // 0.01x .. 10000x
    let x = |v: f64| left + (v.log10().clamp(lo, hi) - lo) / (hi - lo) * width;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        left + width + 80.0
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="13">multiproc's advantage, times (log scale; right of 1x is ahead): vs Python (blue), the OS floor (grey), other crates (orange)</text>"#
    );
    let _ = writeln!(s, r##"<text x="10" y="34" fill="#555">{}</text>"##, xml(machine));
    for decade in lo as i32..=hi as i32 {
        let v = 10f64.powi(decade);
        let gx = x(v);
        let _ = writeln!(
            s,
            r##"<line x1="{gx}" y1="44" x2="{gx}" y2="{}" stroke="{}"/><text x="{gx}" y="{}" text-anchor="middle" fill="#555">{}x</text>"##,
            height - 24.0,
            if decade == 0 { "#000" } else { "#ddd" },
            height - 10.0,
            if decade < 0 { format!("{v}") } else { format!("{}", v as u64) }
        );
    }
    for (i, (label, colour, a)) in bars.iter().enumerate() {
        let y = 50.0 + i as f64 * (bar + gap);
        let (x0, x1) = (x(1.0).min(x(*a)), x(1.0).max(x(*a)));
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{x0}" y="{y}" width="{}" height="{bar}" fill="{colour}"/><text x="{}" y="{}">{:.2}x</text>"#,
            left - 6.0,
            y + bar - 3.0,
            xml(label),
            (x1 - x0).max(1.0),
            x1 + 4.0,
            y + bar - 3.0,
            a
        );
    }
    s.push_str("</svg>\n");
    s
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
