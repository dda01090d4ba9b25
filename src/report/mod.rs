//! Trend reports: periodic, on event time, per service and signal, and per period for
//! how operations are doing.
//!
//! For every configured period length (hourly and daily by default) each series (a
//! metric or an SQL signal column, per service; per host too for metrics a threshold
//! watches host by host) gathers its values while the period is open. When the watermark
//! (the oldest input partition still delivering, [`crate::sql::Watermarks::settled`])
//! passes a period's end plus
//! `lateness_s`, the period closes and the report says, per series: level (mean), p95,
//! min, max, the slope within the period with its 95% interval (Theil–Sen), the change
//! against the previous period and the same period a week earlier, a forecast of the
//! coming periods with 95% prediction intervals (Holt-Winters, [`forecast`]), and for
//! each threshold on it whether it is crossed, approaching (and when), or not. A second
//! kind of report per period carries the incident analytics of [`incidents`].
//!
//! Bad input says so instead of inventing numbers: too little history gives no forecast
//! and a note; a period without data gives `level: null` and a note; values for a period
//! already reported are counted as late and left out; a clock that jumps forward leaves a
//! gap in the history (NaN), which the forecaster skips.
//!
//! One message per (period, service) keeps messages small with many series; keys are
//! `<length>/<start>/<service>` (and `<length>/<start>/operations`), so a compacted topic
//! holds the latest report of each.

pub mod forecast;
pub mod incidents;
pub mod quality;
pub mod render;
mod series;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, TimestampMillisecondType};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::correlate::Alert;
use crate::decode::time::format_ms;
use crate::sql::SignalPoint;
use series::SeriesState;

/// The schema of every trend report.
pub const SCHEMA: &str = "lookout.trend_report.v1";

/// `[trends]` in pipeline.toml.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrendConfig {
    /// Publish trend reports.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The period lengths reported.
    #[serde(default = "default_periods")]
    pub periods: Vec<PeriodSpec>,
    /// A period closes this long after its end on event time, for late records.
    #[serde(default = "default_lateness")]
    pub lateness_s: f64,
    /// Metrics reported (default: every metric name seen).
    #[serde(default)]
    pub metrics: Vec<String>,
    /// Series kept at most, per period length; values of more series are not reported.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Thresholds whose crossing the reports forecast (capacity, error objectives).
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    /// Error budgets: how much of each is spent and when it runs out at the current burn.
    #[serde(default)]
    pub budgets: Vec<Budget>,
}

/// An error budget on a service's error-ratio series: `1 − objective` of the window may
/// fail. Spent is the mean ratio over the window's kept periods times their time; the
/// burn rate is this period's ratio over `1 − objective` (1 spends the budget exactly
/// in the window). Unweighted by traffic: each period counts by its time.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// The error-ratio metric or SQL signal (values 0..1).
    pub metric: String,
    /// The objective, e.g. 0.999 for 99.9% good.
    pub objective: f64,
    /// The objective's window: `30d`, `7d`, `28d`...
    #[serde(default = "default_budget_window")]
    pub window: String,
    /// What it is, for people (default: `metric objective`).
    #[serde(default)]
    pub name: Option<String>,
}

fn default_budget_window() -> String {
    "30d".into()
}

/// One period length.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodSpec {
    /// `1h`, `1d`, `15m`...
    pub length: String,
    /// Periods forecast ahead.
    #[serde(default = "default_horizon")]
    pub horizon: usize,
    /// Periods in a season (24 for hourly: the day; 7 for daily: the week); 1 for none.
    #[serde(default = "one")]
    pub season: usize,
    /// Periods of history kept per series (the forecaster's window; at least a week's
    /// worth for the week-ago comparison).
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Periods with data before a forecast is made.
    #[serde(default = "default_min_history")]
    pub min_history: usize,
}

/// A threshold on a metric or signal: `above` or `below`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// The metric name or SQL signal (`file.column`).
    pub metric: String,
    /// Crossed when the period's level is at or above this.
    pub above: Option<f64>,
    /// Crossed when the period's level is at or below this.
    pub below: Option<f64>,
    /// What it is, for people (default: `metric above value`).
    #[serde(default)]
    pub name: Option<String>,
    /// Watch each host's series (capacity is per host) or each service's.
    #[serde(default)]
    pub per: Where,
}

/// Which series a threshold watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Where {
    /// Each host's own series.
    #[default]
    Host,
    /// The service's series (all its hosts).
    Service,
}

impl Threshold {
    fn value(&self) -> f64 {
        self.above.or(self.below).unwrap_or(f64::NAN)
    }

    fn beyond(&self, v: f64) -> bool {
        match (self.above, self.below) {
            (Some(a), _) => v >= a,
            (_, Some(b)) => v <= b,
            _ => false,
        }
    }

    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let (how, v) = match self.above {
                Some(a) => ("above", a),
                None => ("below", self.value()),
            };
            format!("{} {how} {v}", self.metric)
        })
    }
}

fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn default_lateness() -> f64 {
    60.0
}
fn default_max_series() -> usize {
    5000
}
fn default_horizon() -> usize {
    6
}
fn default_keep() -> usize {
    14 * 24
}
fn default_min_history() -> usize {
    6
}
fn default_periods() -> Vec<PeriodSpec> {
    vec![
        PeriodSpec {
            length: "1h".into(),
            horizon: 6,
            season: 24,
            keep: 14 * 24,
            min_history: 6,
        },
        PeriodSpec {
            length: "1d".into(),
            horizon: 7,
            season: 7,
            keep: 8 * 7,
            min_history: 6,
        },
    ]
}

impl Default for TrendConfig {
    fn default() -> TrendConfig {
        TrendConfig {
            enabled: true,
            periods: default_periods(),
            lateness_s: default_lateness(),
            metrics: Vec::new(),
            max_series: default_max_series(),
            thresholds: Vec::new(),
            budgets: Vec::new(),
        }
    }
}

/// A period length, validated.
#[derive(Debug, Clone)]
pub struct Period {
    pub name: String,
    pub len: i64,
    pub horizon: usize,
    pub season: usize,
    pub keep: usize,
    pub min_history: usize,
}

impl TrendConfig {
    /// The period lengths, or what is wrong with the section (for the config error).
    pub fn validate(&self) -> Result<Vec<Period>, String> {
        let mut out = Vec::new();
        for (i, p) in self.periods.iter().enumerate() {
            let len = crate::sql::window::parse_duration(&p.length)
                .map_err(|e| format!("trends.periods[{i}].length: {e}"))?;
            if len < 60_000 {
                return Err(format!("trends.periods[{i}].length: at least one minute"));
            }
            if p.horizon == 0 || p.season == 0 || p.keep < 2 {
                return Err(format!(
                    "trends.periods[{i}]: horizon and season at least 1, keep at least 2"
                ));
            }
            out.push(Period {
                name: p.length.clone(),
                len,
                horizon: p.horizon,
                season: p.season,
                keep: p.keep,
                min_history: p.min_history,
            });
        }
        for (i, t) in self.thresholds.iter().enumerate() {
            if t.above.is_some() == t.below.is_some() {
                return Err(format!("trends.thresholds[{i}]: give one of above or below"));
            }
            if !t.value().is_finite() {
                return Err(format!("trends.thresholds[{i}]: the value must be a number"));
            }
        }
        for (i, b) in self.budgets.iter().enumerate() {
            if !(b.objective > 0.0 && b.objective < 1.0) {
                return Err(format!("trends.budgets[{i}].objective: between 0 and 1, e.g. 0.999"));
            }
            crate::sql::window::parse_duration(&b.window).map_err(|e| format!("trends.budgets[{i}].window: {e}"))?;
        }
        if !(0.0..=86_400.0).contains(&self.lateness_s) {
            return Err("trends.lateness_s: between 0 and 86400".into());
        }
        Ok(out)
    }
}

/// Which series: a signal of a service, or of one host of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct Key {
    service: String,
    host: Option<String>,
    signal: String,
}

/// Values left out, for the stats and the replay summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrendStats {
    /// Values for a period already reported.
    pub late: u64,
    /// Values of series past `max_series`.
    pub dropped: u64,
}

/// What a checkpoint keeps of [`Trends`]: all but the configuration.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrendState {
    series: Vec<HashMap<Key, SeriesState>>,
    pending: Vec<BTreeSet<i64>>,
    closed: Vec<Option<i64>>,
    ledger: incidents::Ledger,
    stats: TrendStats,
}

/// The trend reporter of one pipeline.
pub struct Trends {
    cfg: TrendConfig,
    periods: Vec<Period>,
    series: Vec<HashMap<Key, SeriesState>>,
    /// Period starts with something to report, per period length.
    pending: Vec<BTreeSet<i64>>,
    /// The latest period start reported, per period length: anything for it or before
    /// is late (a report is never published twice under one key).
    closed: Vec<Option<i64>>,
    ledger: incidents::Ledger,
    /// The scope of the operations report's id: `operations`, or with partitioned state
    /// `operations-partition-<p>` (each partition's task reports its own incidents).
    operations: String,
    pub stats: TrendStats,
}

impl Trends {
    pub fn new(cfg: &TrendConfig) -> Result<Trends, String> {
        let periods = cfg.validate()?;
        Ok(Trends {
            cfg: cfg.clone(),
            series: periods.iter().map(|_| HashMap::new()).collect(),
            pending: periods.iter().map(|_| BTreeSet::new()).collect(),
            closed: periods.iter().map(|_| None).collect(),
            ledger: incidents::Ledger::new(periods.iter().map(|p| p.len).collect()),
            periods,
            operations: "operations".to_string(),
            stats: TrendStats::default(),
        })
    }

    /// Names the operations report by the input partition whose incidents it counts.
    pub fn for_partition(&mut self, partition: i32) {
        self.operations = format!("operations-partition-{partition}");
    }

    /// The state to checkpoint.
    pub fn state(&self) -> TrendState {
        TrendState {
            series: self.series.clone(),
            pending: self.pending.clone(),
            closed: self.closed.clone(),
            ledger: self.ledger.clone(),
            stats: self.stats,
        }
    }

    /// Continues from a checkpointed state; one made with other `[[trends.periods]]` is
    /// refused.
    pub fn restore(&mut self, s: TrendState) -> Result<(), String> {
        let n = self.periods.len();
        if s.series.len() != n || s.pending.len() != n || s.closed.len() != n {
            return Err(format!(
                "trend state for {} periods, the pipeline has {n}",
                s.series.len()
            ));
        }
        self.series = s.series;
        self.pending = s.pending;
        self.closed = s.closed;
        self.ledger = s.ledger;
        self.stats = s.stats;
        Ok(())
    }

    fn add(&mut self, key: Key, ts: i64, v: f64) {
        self.add_all(key, &[(ts, v)]);
    }

    /// Adds one series' values (in arrival order) to every period length.
    fn add_all(&mut self, key: Key, values: &[(i64, f64)]) {
        for (i, p) in self.periods.iter().enumerate() {
            let map = &mut self.series[i];
            if !map.contains_key(&key) && map.len() >= self.cfg.max_series {
                self.stats.dropped += values.len() as u64;
                continue;
            }
            let state = match map.get_mut(&key) {
                Some(s) => s,
                None => map.entry(key.clone()).or_default(),
            };
            let mut last = None;
            for &(ts, v) in values {
                if !v.is_finite() {
                    continue;
                }
                let start = ts.div_euclid(p.len) * p.len;
                // every series' reported periods end at or before `closed`
                if self.closed[i].is_some_and(|c| start <= c) {
                    self.stats.late += 1;
                    continue;
                }
                state.add(p, start, ts, v);
                if last != Some(start) {
                    self.pending[i].insert(start);
                    last = Some(start);
                }
            }
        }
    }

    /// Thresholds watched host by host for `signal`.
    fn per_host(&self, signal: &str) -> bool {
        self.cfg
            .thresholds
            .iter()
            .any(|t| t.metric == signal && t.per == Where::Host)
    }

    /// Takes a decoded metrics batch.
    pub fn observe_metrics(&mut self, b: &RecordBatch) {
        let (Some(ts), Some(name), Some(value)) = (
            b.column_by_name("ts")
                .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>()),
            b.column_by_name("name").and_then(|c| c.as_string_opt::<i32>()),
            b.column_by_name("value")
                .and_then(|c| c.as_primitive_opt::<Float64Type>()),
        ) else {
            return;
        };
        let text = |col: &str| b.column_by_name(col).and_then(|c| c.as_string_opt::<i32>()).cloned();
        let (service, host) = (text("service"), text("host"));
        fn get(a: &Option<arrow::array::StringArray>, i: usize) -> Option<&str> {
            a.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i))
        }
        // one series' values together, so a key is built once per batch, not per value;
        // ordered, so that which series come first (for max_series) does not vary
        type Series<'a> = (&'a str, Option<&'a str>, &'a str);
        let mut groups: BTreeMap<Series, Vec<(i64, f64)>> = BTreeMap::new();
        for i in 0..b.num_rows() {
            if value.is_null(i) || ts.is_null(i) {
                continue;
            }
            let signal = name.value(i);
            if !self.cfg.metrics.is_empty() && !self.cfg.metrics.iter().any(|m| m == signal) {
                continue;
            }
            groups
                .entry((get(&service, i).unwrap_or_default(), get(&host, i), signal))
                .or_default()
                .push((ts.value(i), value.value(i)));
        }
        for ((service, host, signal), values) in groups {
            let key = Key {
                service: service.to_string(),
                host: None,
                signal: signal.to_string(),
            };
            if let Some(h) = host.filter(|_| self.per_host(signal)) {
                self.add_all(
                    Key {
                        host: Some(h.to_string()),
                        ..key.clone()
                    },
                    &values,
                );
            }
            self.add_all(key, &values);
        }
    }

    fn add_point(&mut self, service: String, host: Option<String>, signal: &str, ts: i64, v: f64) {
        let by_host = host.is_some() && self.per_host(signal);
        self.add(
            Key {
                service: service.clone(),
                host: None,
                signal: signal.to_string(),
            },
            ts,
            v,
        );
        if by_host {
            self.add(
                Key {
                    service,
                    host,
                    signal: signal.to_string(),
                },
                ts,
                v,
            );
        }
    }

    /// Takes the points of SQL signals.
    pub fn observe_points(&mut self, points: &[SignalPoint]) {
        for p in points {
            let host = (!p.host.is_empty()).then(|| p.host.clone());
            self.add_point(p.service.clone(), host, &p.series, p.ts, p.value);
        }
    }

    /// Takes the alerts that go into correlation (counted per period).
    pub fn observe_alerts(&mut self, alerts: &[Alert]) {
        self.ledger.observe_alerts(alerts);
        for a in alerts {
            for (i, p) in self.periods.iter().enumerate() {
                let start = a.ts.div_euclid(p.len) * p.len;
                // an alert for a reported period is not reported again
                if self.closed[i].is_none_or(|c| start > c) {
                    self.pending[i].insert(start);
                }
            }
        }
    }

    /// Takes a published incident state.
    pub fn observe_incident(&mut self, v: &Value) {
        self.ledger.observe_incident(v);
    }

    /// Takes a published incident state as the correlator summarised it.
    pub fn observe_summary(&mut self, id: &str, s: &crate::correlate::Summary) {
        self.ledger.observe_summary(id, s);
    }

    /// Takes acknowledgements from a decoded events batch: PagerDuty `acknowledge`
    /// (by `dedup_key`), or any event labelled `event_action = acknowledge` naming an
    /// `incident_id`.
    pub fn observe_events(&mut self, b: &RecordBatch) {
        let (Some(ts), Some(labels)) = (
            b.column_by_name("ts")
                .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>()),
            b.column_by_name("labels").and_then(|c| c.as_map_opt()),
        ) else {
            return;
        };
        let fingerprint = b.column_by_name("fingerprint").and_then(|c| c.as_string_opt::<i32>());
        for i in 0..b.num_rows() {
            let row = labels.value(i);
            let (Some(keys), Some(values)) = (
                row.column(0).as_string_opt::<i32>(),
                row.column(1).as_string_opt::<i32>(),
            ) else {
                continue;
            };
            let label = |k: &str| {
                (0..keys.len())
                    .find(|&j| keys.value(j) == k && !values.is_null(j))
                    .map(|j| values.value(j).to_string())
            };
            if label("event_action").as_deref() != Some("acknowledge") {
                continue;
            }
            let key =
                label("incident_id").or_else(|| fingerprint.filter(|f| !f.is_null(i)).map(|f| f.value(i).to_string()));
            if let Some(k) = key {
                self.ledger.observe_ack(&k, ts.value(i));
            }
        }
    }

    /// Reports for every period that ended `lateness_s` before `watermark`.
    pub fn advance(&mut self, watermark: i64) -> Vec<Value> {
        let cut = watermark.saturating_sub((self.cfg.lateness_s * 1000.0) as i64);
        self.close(|start, len| start + len <= cut, "watermark")
    }

    /// Reports for every period still open: the input has ended.
    pub fn finish(&mut self) -> Vec<Value> {
        self.close(|_, _| true, "end of input")
    }

    fn close(&mut self, due: impl Fn(i64, i64) -> bool, closed_by: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for i in 0..self.periods.len() {
            let p = self.periods[i].clone();
            let starts: Vec<i64> = self.pending[i].iter().copied().filter(|&s| due(s, p.len)).collect();
            for start in starts {
                self.pending[i].remove(&start);
                self.closed[i] = Some(start);
                out.extend(self.close_period(i, &p, start, closed_by));
            }
        }
        out
    }

    fn close_period(&mut self, i: usize, p: &Period, start: i64, closed_by: &str) -> Vec<Value> {
        let thresholds = &self.cfg.thresholds;
        let mut by_service: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let map = &mut self.series[i];
        map.retain(|_, s| !s.stale(p, start));
        let mut keys: Vec<Key> = map
            .iter()
            .filter(|(_, s)| s.reports(start))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        for key in keys {
            let Some(s) = map.get_mut(&key) else { continue };
            let watching: Vec<(usize, &Threshold)> = thresholds
                .iter()
                .enumerate()
                .filter(|(_, t)| t.metric == key.signal && (t.per == Where::Host) == key.host.is_some())
                .collect();
            let budgets: Vec<&Budget> = match key.host {
                Some(_) => Vec::new(),
                None => self.cfg.budgets.iter().filter(|b| b.metric == key.signal).collect(),
            };
            let mut v = s.close(p, start, &watching, &budgets);
            v["signal"] = json!(key.signal);
            v["host"] = json!(key.host);
            by_service.entry(key.service.clone()).or_default().push(v);
        }
        let period = json!({
            "length": p.name,
            "start": format_ms(start),
            "end": format_ms(start + p.len),
        });
        let id = |scope: &str| format!("{}/{}/{scope}", p.name, format_ms(start));
        let mut out: Vec<Value> = by_service
            .into_iter()
            .map(|(service, signals)| {
                json!({
                    "schema": SCHEMA,
                    "report_id": id(&service),
                    "kind": "service",
                    "period": period,
                    "closed_by": closed_by,
                    "service": service,
                    "signals": signals,
                })
            })
            .collect();
        out.push(json!({
            "schema": SCHEMA,
            "report_id": id(&self.operations),
            "kind": "operations",
            "period": period,
            "closed_by": closed_by,
            "operations": self.ledger.report(p.len, start),
        }));
        out
    }
}
