//! Trend reports for people: the latest period as a terminal table, and one
//! self-contained HTML page (inline SVG, no scripts, no network) with a chart per
//! series — its levels over the reports read, the latest forecast with its band, the
//! thresholds and where the forecast crosses them — and the incident counts per period.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// The reports of one period length, in the order read.
pub struct Reports<'a> {
    pub length: String,
    reports: Vec<&'a Value>,
}

impl<'a> Reports<'a> {
    /// Picks `length` (default: the shortest length present, `1h` when there).
    pub fn pick(all: &'a [Value], length: Option<&str>) -> Result<Reports<'a>, String> {
        let lengths: Vec<&str> = all
            .iter()
            .filter(|r| r["schema"] == super::SCHEMA)
            .filter_map(|r| r["period"]["length"].as_str())
            .collect();
        if lengths.is_empty() {
            return Err(format!("no {} messages in the input", super::SCHEMA));
        }
        let length = match length {
            Some(l) if lengths.contains(&l) => l.to_string(),
            Some(l) => return Err(format!("no reports of length {l:?}; there are {:?}", dedup(&lengths))),
            None => lengths
                .iter()
                .min_by_key(|l| crate::sql::window::parse_duration(l).unwrap_or(i64::MAX))
                .map(|l| l.to_string())
                .unwrap_or_default(),
        };
        let reports = all
            .iter()
            .filter(|r| r["schema"] == super::SCHEMA && r["period"]["length"] == length.as_str())
            .collect();
        Ok(Reports { length, reports })
    }

    /// The start of the latest period.
    fn latest(&self) -> &str {
        self.reports
            .iter()
            .filter_map(|r| r["period"]["start"].as_str())
            .max()
            .unwrap_or("")
    }

    fn of_latest(&self) -> impl Iterator<Item = &&'a Value> {
        let latest = self.latest().to_string();
        self.reports
            .iter()
            .filter(move |r| r["period"]["start"] == latest.as_str())
    }

    /// Each series' levels over all periods read: (service, signal, host) → [(start, level)].
    fn history(&self) -> BTreeMap<(String, String, String), Vec<(String, f64)>> {
        let mut h: BTreeMap<_, Vec<(String, f64)>> = BTreeMap::new();
        for r in self.reports.iter().filter(|r| r["kind"] == "service") {
            let start = r["period"]["start"].as_str().unwrap_or("").to_string();
            for s in r["signals"].as_array().into_iter().flatten() {
                let key = series_key(r, s);
                if let Some(l) = s["level"].as_f64() {
                    h.entry(key).or_default().push((start.clone(), l));
                }
            }
        }
        for v in h.values_mut() {
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v.dedup_by(|a, b| a.0 == b.0);
        }
        h
    }
}

/// One readable line for an operations report, as `lookout run` prints them.
pub fn describe(m: &crate::sink::Message) -> Option<String> {
    if m.topic != crate::sink::Topic::TrendReports {
        return None;
    }
    let v: Value = serde_json::from_slice(&m.payload).ok()?;
    if v["kind"] != "operations" {
        return None;
    }
    let o = &v["operations"];
    Some(format!(
        "[trend]   {} from {}: {} incidents opened, {} resolved, {} alerts in (noise reduction {}), MTTD {} MTTR {}",
        v["period"]["length"].as_str()?,
        v["period"]["start"].as_str()?,
        o["incidents_opened"],
        o["incidents_resolved"],
        o["alerts_in"],
        num(&o["noise_reduction"]),
        duration(&o["mttd_s"]),
        duration(&o["mttr_s"])
    ))
}

fn dedup(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v.dedup();
    v
}

fn series_key(r: &Value, s: &Value) -> (String, String, String) {
    (
        r["service"].as_str().unwrap_or("").to_string(),
        s["signal"].as_str().unwrap_or("").to_string(),
        s["host"].as_str().unwrap_or("").to_string(),
    )
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 1000.0 || x == x.trunc() => format!("{x:.0}"),
        Some(x) if x.abs() >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.4}"),
        None => "-".into(),
    }
}

fn duration(v: &Value) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7200.0 => format!("{:.0}m", s / 60.0),
        Some(s) if s < 172_800.0 => format!("{:.1}h", s / 3600.0),
        Some(s) => format!("{:.1}d", s / 86_400.0),
    }
}

/// One cell saying how a series stands against its thresholds.
fn threshold_cell(s: &Value) -> String {
    s["thresholds"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let status = t["status"].as_str().unwrap_or("");
            match status {
                "approaching" => format!("{}: in {}", t["name"].as_str().unwrap_or(""), duration(&t["eta_s"])),
                _ => format!("{}: {status}", t["name"].as_str().unwrap_or("")),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The latest period as a table, with the operations summary under it.
pub fn table(r: &Reports) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "trend report, {} period starting {}", r.length, r.latest());
    let mut rows = vec![[
        "service",
        "signal",
        "host",
        "level",
        "p95",
        "slope/h [95%]",
        "vs prev",
        "vs week",
        "next [95%]",
        "thresholds",
    ]
    .map(String::from)];
    for rep in r.of_latest().filter(|x| x["kind"] == "service") {
        for s in rep["signals"].as_array().into_iter().flatten() {
            let (service, signal, host) = series_key(rep, s);
            let slope = &s["slope"];
            let next = &s["forecast"]["periods"][0];
            rows.push([
                service,
                signal,
                host,
                num(&s["level"]),
                num(&s["p95"]),
                if slope.is_null() {
                    "-".into()
                } else {
                    format!(
                        "{} [{}, {}]",
                        num(&slope["per_hour"]),
                        num(&slope["low"]),
                        num(&slope["high"])
                    )
                },
                num(&s["vs_previous"]["delta"]),
                num(&s["vs_week_ago"]["delta"]),
                if next.is_null() {
                    "-".into()
                } else {
                    format!(
                        "{} [{}, {}]",
                        num(&next["mean"]),
                        num(&next["lower"]),
                        num(&next["upper"])
                    )
                },
                threshold_cell(s),
            ]);
        }
    }
    let widths: Vec<usize> = (0..10)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    if let Some(ops) = r.of_latest().find(|x| x["kind"] == "operations") {
        let o = &ops["operations"];
        let _ = writeln!(
            out,
            "\nincidents opened {} resolved {} open at end {}; alerts in {}; noise reduction {}",
            o["incidents_opened"],
            o["incidents_resolved"],
            o["incidents_open_at_end"],
            o["alerts_in"],
            num(&o["noise_reduction"])
        );
        let _ = writeln!(
            out,
            "MTTD {}  MTTA {}  MTTR {}",
            duration(&o["mttd_s"]),
            duration(&o["mtta_s"]),
            duration(&o["mttr_s"])
        );
        for s in o["noisiest_sources"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "noisy: {:>5} alerts  {} {} {}",
                s["alerts"],
                s["source"].as_str().unwrap_or(""),
                s["service"].as_str().unwrap_or(""),
                s["title"].as_str().unwrap_or("")
            );
        }
        for c in o["recurring"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "recurring: {} incidents  {}",
                c["incidents"],
                c["name"].as_str().unwrap_or("")
            );
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 520.0;
const H: f64 = 160.0;
const PAD: f64 = 34.0;

/// One series' chart: levels, the latest forecast band and mean, thresholds, crossings.
fn chart(history: &[(String, f64)], latest: &Value) -> String {
    let forecast: Vec<(String, f64, f64, f64)> = latest["forecast"]["periods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["start"].as_str()?.to_string(),
                p["mean"].as_f64()?,
                p["lower"].as_f64()?,
                p["upper"].as_f64()?,
            ))
        })
        .collect();
    let thresholds: Vec<(f64, &Value)> = latest["thresholds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["above"].as_f64().or(t["below"].as_f64())?, t)))
        .collect();
    let xs: Vec<&str> = history
        .iter()
        .map(|h| h.0.as_str())
        .chain(forecast.iter().map(|f| f.0.as_str()))
        .collect();
    let mut ys: Vec<f64> = history.iter().map(|h| h.1).collect();
    ys.extend(forecast.iter().flat_map(|f| [f.2, f.3]));
    ys.extend(thresholds.iter().map(|t| t.0));
    let (lo, hi) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let n = xs.len().max(2) as f64 - 1.0;
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / n;
    let y = |v: f64| H - PAD / 2.0 - (H - PAD) * (v - lo) / (hi - lo);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"trend chart\">\
         <text x=\"2\" y=\"12\" class=\"axis\">{}</text><text x=\"2\" y=\"{}\" class=\"axis\">{}</text>",
        num(&serde_json::json!(hi)),
        H - 4.0,
        num(&serde_json::json!(lo))
    );
    if !forecast.is_empty() {
        let off = history.len();
        let upper: Vec<String> = forecast
            .iter()
            .enumerate()
            .map(|(j, f)| format!("{:.1},{:.1}", x(off + j), y(f.3)))
            .collect();
        let lower: Vec<String> = forecast
            .iter()
            .enumerate()
            .rev()
            .map(|(j, f)| format!("{:.1},{:.1}", x(off + j), y(f.2)))
            .collect();
        let _ = write!(
            svg,
            "<polygon class=\"band\" points=\"{} {}\"><title>95% prediction interval</title></polygon>",
            upper.join(" "),
            lower.join(" ")
        );
        let mean: Vec<String> = history
            .last()
            .map(|h| format!("{:.1},{:.1}", x(off - 1), y(h.1)))
            .into_iter()
            .chain(
                forecast
                    .iter()
                    .enumerate()
                    .map(|(j, f)| format!("{:.1},{:.1}", x(off + j), y(f.1))),
            )
            .collect();
        let _ = write!(svg, "<polyline class=\"forecast\" points=\"{}\"/>", mean.join(" "));
    }
    let line: Vec<String> = history
        .iter()
        .enumerate()
        .map(|(i, h)| format!("{:.1},{:.1}", x(i), y(h.1)))
        .collect();
    let _ = write!(svg, "<polyline class=\"level\" points=\"{}\"/>", line.join(" "));
    for (v, t) in &thresholds {
        let _ = write!(
            svg,
            "<line class=\"threshold\" x1=\"{PAD}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\"><title>{}</title></line>",
            W - PAD,
            y(*v),
            y(*v),
            esc(t["name"].as_str().unwrap_or(""))
        );
        if let Some(at) = t["forecast_crosses_in_period"].as_str() {
            if let Some(i) = xs.iter().position(|s| *s == at) {
                let _ = write!(
                    svg,
                    "<circle class=\"crossing\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\"><title>forecast crosses {} in the period from {}</title></circle>",
                    x(i),
                    y(*v),
                    esc(t["name"].as_str().unwrap_or("")),
                    esc(at)
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Incidents opened and alerts in per period, as bars.
fn incident_chart(ops: &[&Value]) -> String {
    let n = ops.len().max(1) as f64;
    let top = ops
        .iter()
        .filter_map(|o| o["operations"]["incidents_opened"].as_f64())
        .fold(1.0f64, f64::max);
    let bw = (W - 2.0 * PAD) / n;
    let mut svg = format!(
        "<svg class=\"chart incidents\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"incidents per period\">\
         <text x=\"2\" y=\"12\" class=\"axis\">{top:.0}</text>"
    );
    for (i, o) in ops.iter().enumerate() {
        let v = o["operations"]["incidents_opened"].as_f64().unwrap_or(0.0);
        let h = (H - PAD) * v / top;
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{}: {v} incidents, {} alerts</title></rect>",
            PAD + bw * i as f64,
            H - PAD / 2.0 - h,
            (bw - 1.0).max(1.0),
            esc(o["period"]["start"].as_str().unwrap_or("")),
            o["operations"]["alerts_in"]
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The whole page.
pub fn html(r: &Reports) -> String {
    let history = r.history();
    let mut body = String::new();
    let latest = r.latest().to_string();
    let _ = write!(
        body,
        "<h1>Lookout trend report</h1><p class=\"meta\">{} periods; latest starts <b id=\"latest\">{}</b>; {} reports read</p>",
        esc(&r.length),
        esc(&latest),
        r.reports.len()
    );
    let ops: Vec<&Value> = r
        .reports
        .iter()
        .copied()
        .filter(|x| x["kind"] == "operations")
        .collect();
    if let Some(o) = ops.iter().rev().find(|o| o["period"]["start"] == latest.as_str()) {
        let o = &o["operations"];
        let _ = write!(
            body,
            "<section id=\"operations\"><h2>Operations</h2><table class=\"kpi\"><tr><th>incidents opened</th><th>resolved</th><th>alerts in</th><th>noise reduction</th><th>MTTD</th><th>MTTA</th><th>MTTR</th></tr>\
             <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>{}",
            o["incidents_opened"], o["incidents_resolved"], o["alerts_in"], num(&o["noise_reduction"]),
            duration(&o["mttd_s"]), duration(&o["mtta_s"]), duration(&o["mttr_s"]), incident_chart(&ops)
        );
        body.push_str("<h3>Noisiest sources</h3><ul class=\"noisy\">");
        for s in o["noisiest_sources"].as_array().into_iter().flatten() {
            let _ = write!(
                body,
                "<li>{} alerts — {} {} {}</li>",
                s["alerts"],
                esc(s["source"].as_str().unwrap_or("")),
                esc(s["service"].as_str().unwrap_or("")),
                esc(s["title"].as_str().unwrap_or(""))
            );
        }
        body.push_str("</ul><h3>Recurring incident types</h3><ul class=\"recurring\">");
        for c in o["recurring"].as_array().into_iter().flatten() {
            let _ = write!(
                body,
                "<li>{} incidents — {}</li>",
                c["incidents"],
                esc(c["name"].as_str().unwrap_or(""))
            );
        }
        body.push_str("</ul></section>");
    }
    for rep in r.of_latest().filter(|x| x["kind"] == "service") {
        let service = rep["service"].as_str().unwrap_or("");
        let _ = write!(
            body,
            "<section class=\"service\"><h2>{}</h2><div class=\"grid\">",
            esc(service)
        );
        for s in rep["signals"].as_array().into_iter().flatten() {
            let key = series_key(rep, s);
            let h = history.get(&key).map(Vec::as_slice).unwrap_or_default();
            let host = if key.2.is_empty() {
                String::new()
            } else {
                format!(" on {}", key.2)
            };
            let notes: Vec<String> = s["notes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(esc))
                .collect();
            let _ = write!(
                body,
                "<figure class=\"series\" data-signal=\"{}\"><figcaption><b>{}</b>{} — level {} p95 {} · {}</figcaption>{}<p class=\"notes\">{}</p></figure>",
                esc(&key.1),
                esc(&key.1),
                esc(&host),
                num(&s["level"]),
                num(&s["p95"]),
                esc(&threshold_cell(s)),
                chart(h, s),
                notes.join("; ")
            );
        }
        body.push_str("</div></section>");
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Lookout trend report {}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        esc(&latest)
    )
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:20px;color:#222;background:#fafafa}\
h1{font-size:20px}h2{font-size:16px;margin:18px 0 6px}.meta{color:#555}\
.grid{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px}\
figcaption{font-size:12px;margin-bottom:2px}.notes{font-size:11px;color:#777;margin:2px 0;max-width:520px}\
.chart .level{fill:none;stroke:#1f77b4;stroke-width:2}.chart .forecast{fill:none;stroke:#ff7f0e;stroke-width:2;stroke-dasharray:5 3}\
.chart .band{fill:#ff7f0e;opacity:.2}.chart .threshold{stroke:#d62728;stroke-width:1.5;stroke-dasharray:2 2}\
.chart .crossing{fill:#d62728}.chart .bar{fill:#9467bd}.axis{font-size:10px;fill:#777}\
table.kpi{border-collapse:collapse}table.kpi td,table.kpi th{border:1px solid #ddd;padding:4px 8px;background:#fff}";
