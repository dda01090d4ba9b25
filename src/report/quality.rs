//! Forecast quality: the trend reports' forecaster on series whose future is known,
//! against the seasonal-naive forecast, as MASE (mean absolute scaled error: the mean
//! absolute error over the forecasts, divided by the in-sample mean absolute error of the
//! seasonal-naive forecast one season back on the data before the first forecast).
//! Lower is better; the forecaster "beats" the baseline on a series when its MASE is the
//! smaller of the two, which with one scale means a smaller mean absolute error.
//!
//! What `lookout forecast-quality` measures, so the figure can be checked:
//! - **NAB** (every series of the corpus): resampled to hourly means (empty hours are
//!   gaps), season 24 hours; forecasts 24 hours ahead from an origin every 24 hours over
//!   the last 30% of the series, each from the 14 days before the origin (what an hourly
//!   trend report keeps). Baseline: the value 24 hours earlier.
//! - **Memory leaks** in `scenarios/*/truth.json`: each leaking host's `mem_usage`,
//!   per minute; forecasts 15 minutes ahead from an origin every 5 minutes from 10 minutes
//!   after the onset until the first out-of-memory restart, each from the 6 hours before.
//!   A day of data holds no season, so the baseline is the naive forecast (the last value).

use std::fmt::Write as _;
use std::path::Path;

use super::forecast::{self, naive_scale, seasonal_naive};
use crate::model::nab::Corpus;

/// One series' result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub series: String,
    /// Which protocol above.
    pub set: &'static str,
    pub season: usize,
    pub horizon: usize,
    /// Forecasts made (origins) and points compared.
    pub origins: usize,
    pub points: usize,
    pub mase: f64,
    pub mase_baseline: f64,
}

impl Row {
    pub fn better(&self) -> bool {
        self.mase < self.mase_baseline
    }
}

/// How one set of series is cut into origins.
struct Protocol {
    season: usize,
    horizon: usize,
    step: usize,
    /// Points of history each forecast sees.
    window: usize,
}

/// Forecasts from every origin in `origins`, both ways; None when no forecast could be
/// compared or the series has no scale.
fn evaluate(name: &str, set: &'static str, y: &[f64], first: usize, last: usize, p: &Protocol) -> Option<Row> {
    let scale = naive_scale(&y[..first], p.season)?;
    let (mut model, mut baseline, mut points, mut origins) = (0.0, 0.0, 0usize, 0usize);
    let mut o = first;
    while o + p.horizon <= last {
        let train = &y[o.saturating_sub(p.window)..o];
        let Ok(fit) = forecast::fit(train, p.season, 6, p.horizon) else {
            o += p.step;
            continue;
        };
        let f = fit.forecast(p.horizon, 1.96);
        let naive = seasonal_naive(train, p.season, p.horizon);
        origins += 1;
        for j in 0..p.horizon {
            let actual = y[o + j];
            if actual.is_nan() || naive[j].is_nan() {
                continue;
            }
            model += (f.mean[j] - actual).abs();
            baseline += (naive[j] - actual).abs();
            points += 1;
        }
        o += p.step;
    }
    (points > 0).then(|| Row {
        series: name.to_string(),
        set,
        season: p.season,
        horizon: p.horizon,
        origins,
        points,
        mase: model / points as f64 / scale,
        mase_baseline: baseline / points as f64 / scale,
    })
}

/// Mean per `bucket_ms` from the first timestamp's bucket to the last's; NaN for empty.
pub fn resample(ts: &[i64], values: &[f64], bucket_ms: i64) -> Vec<f64> {
    let (Some(&lo), Some(&hi)) = (ts.iter().min(), ts.iter().max()) else {
        return Vec::new();
    };
    let (first, last) = (lo.div_euclid(bucket_ms), hi.div_euclid(bucket_ms));
    let mut sums = vec![(0.0, 0u32); (last - first + 1) as usize];
    for (t, v) in ts.iter().zip(values) {
        let s = &mut sums[(t.div_euclid(bucket_ms) - first) as usize];
        s.0 += v;
        s.1 += 1;
    }
    sums.iter()
        .map(|&(s, n)| if n == 0 { f64::NAN } else { s / n as f64 })
        .collect()
}

/// Every NAB series, hourly.
pub fn nab(corpus: &Corpus) -> Vec<Row> {
    let p = Protocol {
        season: 24,
        horizon: 24,
        step: 6,
        window: 14 * 24,
    };
    corpus
        .series
        .iter()
        .filter_map(|s| {
            let y = resample(&s.timestamps, &s.values, 3_600_000);
            let first = y.len() * 7 / 10;
            evaluate(&s.name, "nab, hourly", &y, first, y.len(), &p)
        })
        .collect()
}

/// The leaking hosts' memory in every scenario under `dir` (directories with a
/// `truth.json` and a `metrics.jsonl`).
pub fn leaks(dir: &Path) -> Result<Vec<Row>, String> {
    let p = Protocol {
        season: 1,
        horizon: 15,
        step: 5,
        window: 6 * 60,
    };
    let mut rows = Vec::new();
    let mut scenarios: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("truth.json").exists() && p.join("metrics.jsonl").exists())
        .collect();
    scenarios.sort();
    for s in scenarios {
        let truth_path = s.join("truth.json");
        let text = std::fs::read_to_string(&truth_path).map_err(|e| format!("{}: {e}", truth_path.display()))?;
        let truth: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", truth_path.display()))?;
        let start = truth["scenario"]["start"]
            .as_str()
            .and_then(crate::decode::time::parse_str)
            .ok_or_else(|| format!("{}: no scenario.start", truth_path.display()))?;
        let leaks: Vec<(String, i64)> = truth["incidents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["fault_type"] == "memory_leak")
            .flat_map(|i| {
                let onset = i["onset"].as_str().and_then(crate::decode::time::parse_str);
                i["root_cause_hosts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(move |h| Some((h.as_str()?.to_string(), onset?)))
            })
            .collect();
        if leaks.is_empty() {
            continue;
        }
        let memory = host_memory(&s.join("metrics.jsonl"), &leaks)?;
        for (host, onset) in &leaks {
            let Some((ts, vs)) = memory.get(host) else {
                continue;
            };
            let mut y = resample(ts, vs, 60_000);
            // the series starts at the scenario's first minute
            let lead = ((ts.iter().min().copied().unwrap_or(start) - start) / 60_000).max(0) as usize;
            y.splice(0..0, std::iter::repeat_n(f64::NAN, lead));
            let onset_at = ((onset - start) / 60_000) as usize;
            // the first drop of a fifth of the memory from the last sample before it
            let mut last = f64::NAN;
            let restart = (onset_at..y.len())
                .find(|&t| {
                    let drop = y[t] < last - 0.2;
                    if !y[t].is_nan() {
                        last = y[t];
                    }
                    drop
                })
                .unwrap_or(y.len());
            let name = format!(
                "{}/{host} mem_usage",
                s.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
            rows.extend(evaluate(
                &name,
                "memory leak, per minute",
                &y,
                onset_at + 10,
                restart,
                &p,
            ));
        }
    }
    Ok(rows)
}

/// Timestamps and values of each host.
type HostSeries = std::collections::HashMap<String, (Vec<i64>, Vec<f64>)>;

/// The `mem_usage` samples of the given hosts, read line by line.
fn host_memory(path: &Path, hosts: &[(String, i64)]) -> Result<HostSeries, String> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = HostSeries::default();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if !line.contains("\"mem_usage\"") {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        let Some(host) = v["labels"]["host"].as_str() else {
            continue;
        };
        if !hosts.iter().any(|(h, _)| h == host) {
            continue;
        }
        let (Some(ts), Some(value)) = (
            v["ts"].as_str().and_then(crate::decode::time::parse_str),
            v["value"].as_f64(),
        ) else {
            return Err(format!(
                "{}:{}: a mem_usage sample without ts or value",
                path.display(),
                n + 1
            ));
        };
        let e = out.entry(host.to_string()).or_default();
        e.0.push(ts);
        e.1.push(value);
    }
    Ok(out)
}

/// The table `lookout forecast-quality` prints, with the summary line last.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let width = rows.iter().map(|r| r.series.len()).max().unwrap_or(6).max(6);
    let _ = writeln!(
        s,
        "{:<width$}  {:<23}  {:>6}  {:>7}  {:>7}  {:>6}  {:>8}  {:>8}  better",
        "series", "set", "season", "horizon", "origins", "points", "MASE", "baseline"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<width$}  {:<23}  {:>6}  {:>7}  {:>7}  {:>6}  {:>8.3}  {:>8.3}  {}",
            r.series,
            r.set,
            r.season,
            r.horizon,
            r.origins,
            r.points,
            r.mase,
            r.mase_baseline,
            if r.better() { "yes" } else { "no" }
        );
    }
    let better = rows.iter().filter(|r| r.better()).count();
    let mut ratio: Vec<f64> = rows.iter().map(|r| r.mase / r.mase_baseline).collect();
    ratio.sort_by(f64::total_cmp);
    let _ = writeln!(
        s,
        "better than the baseline on {better} of {} series ({:.1}%); median MASE ratio {:.3}",
        rows.len(),
        100.0 * better as f64 / rows.len().max(1) as f64,
        forecast::median_of_sorted(&ratio).unwrap_or(f64::NAN)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_means_buckets_and_marks_gaps() {
        let y = resample(&[0, 10, 3_600_000 * 2 + 5], &[1.0, 3.0, 7.0], 3_600_000);
        assert_eq!(y.len(), 3);
        assert_eq!((y[0], y[2]), (2.0, 7.0));
        assert!(y[1].is_nan());
    }

    #[test]
    fn a_trend_beats_the_naive_forecast_on_a_leak() {
        let y: Vec<f64> = (0..400)
            .map(|t| 0.4 + if t > 300 { 0.01 * (t - 300) as f64 } else { 0.0 } + 0.002 * ((t % 7) as f64 - 3.0))
            .collect();
        let p = Protocol {
            season: 1,
            horizon: 15,
            step: 5,
            window: 360,
        };
        let r = evaluate("leak", "test", &y, 310, 400, &p).unwrap();
        assert!(r.better(), "{r:?}");
        assert!(r.mase < r.mase_baseline / 2.0, "{r:?}");
    }
}
