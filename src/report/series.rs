//! One series in one period length: what the open periods have gathered, the levels of
//! the closed ones, and what the report says about it when a period closes.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Map, Value};

use super::forecast::{self, theil_sen};
use super::{Budget, Period, Threshold};
use crate::decode::time::format_ms;

/// Values kept per open period for its p95: a uniform subsample past this many.
const SAMPLE: usize = 512;
/// Slots per period whose means the slope is fitted to.
const BUCKETS: usize = 60;
/// Two-sided normal quantile of the intervals (95%).
const Z95: f64 = 1.959_964;

/// What one open period has gathered.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Open {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    sample: Vec<f64>,
    /// Every `stride`-th value goes into `sample`.
    stride: u64,
    buckets: Vec<(f64, u32)>,
}

impl Default for Open {
    fn default() -> Open {
        Open {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sample: Vec::new(),
            stride: 1,
            buckets: vec![(0.0, 0); BUCKETS],
        }
    }
}

impl Open {
    /// Adds a value at `frac` (0..1) of the way through the period.
    fn add(&mut self, frac: f64, v: f64) {
        if self.count.is_multiple_of(self.stride) {
            if self.sample.len() == SAMPLE {
                // keep every other value and take half as many from now on
                let kept: Vec<f64> = self.sample.iter().step_by(2).copied().collect();
                self.sample = kept;
                self.stride *= 2;
            }
            self.sample.push(v);
        }
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        let b = &mut self.buckets[((frac * BUCKETS as f64) as usize).min(BUCKETS - 1)];
        b.0 += v;
        b.1 += 1;
    }

    fn level(&self) -> f64 {
        self.sum / self.count as f64
    }

    fn p95(&self) -> f64 {
        let mut s = self.sample.clone();
        s.sort_by(f64::total_cmp);
        let rank = ((s.len() as f64) * 0.95).ceil() as usize;
        s[rank.clamp(1, s.len()) - 1]
    }
}

/// A series' state in one period length.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct SeriesState {
    open: BTreeMap<i64, Open>,
    /// Levels of closed periods, oldest first, NaN where a period had no data; the last
    /// is the period starting at `last_start`.
    levels: VecDeque<f64>,
    last_start: Option<i64>,
    /// Since when each threshold (by index) has been crossed.
    crossed_since: BTreeMap<usize, i64>,
    /// The forecaster's weights and the closes left before they are chosen again.
    weights: Option<(forecast::Method, forecast::Weights, usize)>,
    pub last_seen: i64,
}

impl SeriesState {
    /// Adds a value to its period (starting at `start`), which the caller knows is open.
    pub fn add(&mut self, p: &Period, start: i64, ts: i64, v: f64) {
        let frac = (ts - start) as f64 / p.len as f64;
        self.open.entry(start).or_default().add(frac, v);
        self.last_seen = self.last_seen.max(ts);
    }

    /// The series has something to say about the period at `start`: data, or a gap after
    /// periods it reported (before its first data a period is none of its business).
    pub fn reports(&self, start: i64) -> bool {
        self.open.contains_key(&start) || self.last_start.is_some_and(|l| l < start)
    }

    /// The history has nothing for `keep` periods: forget the series.
    pub fn stale(&self, p: &Period, now_start: i64) -> bool {
        self.open.is_empty() && self.last_start.is_none_or(|l| now_start - l >= p.keep as i64 * p.len)
    }

    /// Levels up to and including the period at `start`, NaN for the ones without data.
    fn levels_through(&mut self, p: &Period, start: i64) {
        if let Some(last) = self.last_start {
            let missing = ((start - last) / p.len - 1).max(0) as usize;
            for _ in 0..missing.min(p.keep) {
                self.levels.push_back(f64::NAN);
            }
        }
        while self.levels.len() >= p.keep {
            self.levels.pop_front();
        }
    }

    /// Closes the period at `start` and says what the report shows about the series.
    pub fn close(&mut self, p: &Period, start: i64, thresholds: &[(usize, &Threshold)], budgets: &[&Budget]) -> Value {
        let open = self.open.remove(&start);
        let previous_start = self.last_start;
        self.levels_through(p, start);
        let level = open.as_ref().map_or(f64::NAN, Open::level);
        self.levels.push_back(level);
        self.last_start = Some(start);
        let n = self.levels.len();
        let back = |periods: i64| -> Option<f64> {
            let i = n as i64 - 1 - periods;
            (i >= 0).then(|| self.levels[i as usize]).filter(|v| !v.is_nan())
        };
        let mut notes: Vec<String> = Vec::new();
        let mut out = Map::new();
        let Some(open) = open else {
            out.insert("samples".into(), json!(0));
            out.insert("level".into(), Value::Null);
            notes.push(format!("no data this period; last seen {}", format_ms(self.last_seen)));
            out.insert("notes".into(), json!(notes));
            return Value::Object(out);
        };
        if let Some(prev) = previous_start {
            let skipped = (start - prev) / p.len - 1;
            if skipped > 0 {
                notes.push(format!("{skipped} periods without data before this one"));
            }
        }
        out.insert("samples".into(), json!(open.count));
        out.insert("level".into(), json!(round(level)));
        out.insert("p95".into(), json!(round(open.p95())));
        out.insert("min".into(), json!(round(open.min)));
        out.insert("max".into(), json!(round(open.max)));
        // the slope of the period's slot means, per hour
        let points: Vec<(f64, f64)> = open
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| b.1 > 0)
            .map(|(i, b)| {
                (
                    (i as f64 + 0.5) * p.len as f64 / BUCKETS as f64 / 3_600_000.0,
                    b.0 / b.1 as f64,
                )
            })
            .collect();
        let slope = theil_sen(&points, Z95);
        out.insert(
            "slope".into(),
            match &slope {
                Some(s) => json!({
                    "per_hour": round(s.slope), "low": round(s.low), "high": round(s.high),
                    "confidence": 0.95, "points": s.points,
                    "method": format!("theil-sen over {BUCKETS} slot means"),
                }),
                None => {
                    notes.push("too few slots with data for a slope".into());
                    Value::Null
                }
            },
        );
        let change = |before: Option<f64>, what: &str, notes: &mut Vec<String>| match before {
            Some(b) => json!({
                "level": round(b), "delta": round(level - b),
                "ratio": (b != 0.0).then(|| round(level / b - 1.0)),
            }),
            None => {
                notes.push(format!("no data for {what}"));
                Value::Null
            }
        };
        out.insert("vs_previous".into(), change(back(1), "the previous period", &mut notes));
        let week = 7 * 24 * 3_600_000 / p.len;
        out.insert(
            "vs_week_ago".into(),
            change(back(week), "the same period a week earlier", &mut notes),
        );
        let y: Vec<f64> = self.levels.iter().copied().collect();
        // weights are chosen from the grid once a season (a day of hourly reports) and
        // reused in between: the state is refreshed every period at a pass's cost
        let earlier = self.weights.filter(|w| w.2 > 0).map(|(m, w, _)| (m, w));
        let forecast = forecast::fit_with(&y, p.season, p.min_history, p.horizon, earlier);
        self.weights = match (&forecast, self.weights) {
            (Ok(f), Some((m, w, left))) if left > 0 && m == f.method && w == f.weights => Some((m, w, left - 1)),
            (Ok(f), _) => Some((f.method, f.weights, p.season.max(6) - 1)),
            (Err(_), _) => None,
        };
        let predicted = forecast.as_ref().ok().map(|fit| fit.forecast(p.horizon, Z95));
        let f = match (&forecast, &predicted) {
            (Ok(fit), Some(fc)) => {
                json!({
                    "method": fit.method.name(),
                    "history_periods": fit.points,
                    "interval": 0.95,
                    "periods": (0..p.horizon).map(|j| json!({
                        "start": format_ms(start + (j as i64 + 1) * p.len),
                        "mean": round(fc.mean[j]), "lower": round(fc.lower[j]), "upper": round(fc.upper[j]),
                    })).collect::<Vec<_>>(),
                })
            }
            (Err(e), _) => {
                notes.push(format!("no forecast: {e}"));
                Value::Null
            }
            (Ok(_), None) => Value::Null,
        };
        out.insert("forecast".into(), f);
        let now = slope.map_or(level, |s| s.end_value);
        let t: Vec<Value> = thresholds
            .iter()
            .map(|&(i, t)| {
                let crossed = t.beyond(level);
                if crossed {
                    self.crossed_since.entry(i).or_insert(start);
                } else {
                    self.crossed_since.remove(&i);
                }
                let forecast_crosses = predicted.as_ref().and_then(|fc| {
                    (0..p.horizon)
                        .find(|&j| t.beyond(fc.mean[j]))
                        .map(|j| format_ms(start + (j as i64 + 1) * p.len))
                });
                threshold_status(
                    t,
                    crossed,
                    self.crossed_since.get(&i).copied(),
                    now,
                    slope,
                    start + p.len,
                )
                .into_iter()
                .chain([("forecast_crosses_in_period".to_string(), json!(forecast_crosses))])
                .collect::<Map<_, _>>()
                .into()
            })
            .collect();
        if !t.is_empty() {
            out.insert("thresholds".into(), json!(t));
        }
        if !budgets.is_empty() {
            let b: Vec<Value> = budgets.iter().map(|b| self.budget(p, b, level)).collect();
            out.insert("budgets".into(), json!(b));
        }
        out.insert("notes".into(), json!(notes));
        Value::Object(out)
    }
}

impl SeriesState {
    /// How much of an error budget the kept periods within its window have spent, and
    /// when the rest runs out at this period's burn.
    fn budget(&self, p: &Period, b: &Budget, level: f64) -> Value {
        let window = crate::sql::window::parse_duration(&b.window).unwrap_or(30 * 86_400_000);
        let allowed = 1.0 - b.objective;
        let periods = ((window / p.len).max(1) as usize).min(self.levels.len());
        let seen: Vec<f64> = self
            .levels
            .iter()
            .rev()
            .take(periods)
            .copied()
            .filter(|v| !v.is_nan())
            .collect();
        let observed = seen.len() as f64 * p.len as f64;
        // error-time spent over the error-time the window allows
        let spent = seen.iter().sum::<f64>() * p.len as f64 / (allowed * window as f64);
        let remaining = 1.0 - spent;
        let burn = level / allowed;
        let mut m = Map::new();
        m.insert(
            "name".into(),
            json!(b
                .name
                .clone()
                .unwrap_or_else(|| format!("{} {}", b.metric, b.objective))),
        );
        m.insert("objective".into(), json!(b.objective));
        m.insert("window".into(), json!(b.window));
        m.insert("spent".into(), json!(round(spent)));
        m.insert("burn_rate".into(), json!(round(burn)));
        m.insert("observed_s".into(), json!(observed / 1000.0));
        if remaining <= 0.0 {
            m.insert("status".into(), json!("exhausted"));
        } else if level > 0.0 {
            // the rest of the budget's error-time at this period's error ratio
            let s = remaining * allowed * window as f64 / level / 1000.0;
            m.insert("status".into(), json!(if burn > 1.0 { "burning" } else { "within" }));
            m.insert("exhausted_in_s".into(), json!(s.round()));
        } else {
            m.insert("status".into(), json!("within"));
        }
        if observed < window as f64 {
            m.insert(
                "note".into(),
                json!(format!(
                    "spent over the {:.1} days seen of the {} window",
                    observed / 86_400_000.0,
                    b.window
                )),
            );
        }
        Value::Object(m)
    }
}

/// A threshold's state: crossed, approaching (with when), or not approaching.
fn threshold_status(
    t: &Threshold,
    crossed: bool,
    since: Option<i64>,
    now: f64,
    slope: Option<forecast::Slope>,
    end: i64,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(t.name()));
    m.insert(
        if t.above.is_some() { "above" } else { "below" }.into(),
        json!(t.value()),
    );
    if crossed {
        m.insert("status".into(), json!("crossed"));
        m.insert("crossed_since".into(), json!(since.map(format_ms)));
        return m;
    }
    // toward the threshold is up for `above`, down for `below`
    let sign = if t.above.is_some() { 1.0 } else { -1.0 };
    let gap = sign * (t.value() - now);
    let eta_h = |rate: f64| (rate * sign > 0.0).then(|| gap / (rate * sign));
    match slope {
        // the whole interval points toward it: it is coming, and the interval's ends
        // say how soon at the earliest and the latest
        Some(s) if eta_h(s.low).is_some() && eta_h(s.high).is_some() => {
            let (steep, shallow) = if sign > 0.0 { (s.high, s.low) } else { (s.low, s.high) };
            let eta = eta_h(s.slope).unwrap_or(f64::INFINITY);
            m.insert("status".into(), json!("approaching"));
            m.insert("eta_s".into(), json!((eta * 3600.0).round()));
            // a date beyond ten years says nothing useful (and may not print)
            if eta < 10.0 * 365.0 * 24.0 {
                m.insert("at".into(), json!(format_ms(end + (eta * 3_600_000.0) as i64)));
            }
            m.insert(
                "eta_earliest_s".into(),
                json!(eta_h(steep).map(|h| (h * 3600.0).round())),
            );
            m.insert(
                "eta_latest_s".into(),
                json!(eta_h(shallow).map(|h| (h * 3600.0).round())),
            );
        }
        Some(s) if eta_h(s.slope).is_some() => {
            m.insert("status".into(), json!("no significant trend"));
            m.insert(
                "note".into(),
                json!("the slope points toward it but its 95% interval includes no change"),
            );
        }
        Some(_) => {
            m.insert("status".into(), json!("not approaching"));
        }
        None => {
            m.insert("status".into(), json!("unknown: no slope this period"));
        }
    }
    m
}

pub(super) fn round(x: f64) -> f64 {
    if x.abs() >= 1e6 {
        x.round()
    } else {
        (x * 1e6).round() / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_of_a_subsample_stays_close() {
        let mut o = Open::default();
        for i in 0..10_000 {
            o.add(i as f64 / 10_000.0, (i % 1000) as f64);
        }
        assert!(o.sample.len() <= SAMPLE);
        assert!((o.p95() - 950.0).abs() < 20.0, "{}", o.p95());
        assert_eq!((o.min, o.max, o.count), (0.0, 999.0, 10_000));
    }
}
