//! Models: streaming anomaly detection on metrics and on log error counts.
//!
//! [`SignalDetectors`] keeps one [`detector::Detector`] per series: a configured metric
//! per (service, host), and the count of ERROR/FATAL log lines per service per minute
//! (a tumbling window that closes when event time passes its end plus a grace period).
//! An anomaly episode becomes an alert (source `anomaly`) for correlation, firing when
//! it starts and resolved when it ends, and an `anomalies` topic message. Each series
//! has a `role`: a `symptom` (errors, latency, traffic: what users feel) or a `cause`
//! (saturation of CPU, memory); correlation treats them differently.
//!
//! State is bounded: at most `max_series` series (new ones beyond are counted and
//! ignored), each holding its detector's history.

pub mod detector;
pub mod nab;
pub mod surprise;

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use serde::Deserialize;
use serde_json::{json, Value};

pub use detector::{Detector, DetectorParams, Direction, Verdict};

use crate::correlate::alert::derived_fingerprint;
use crate::correlate::Alert;
use crate::decode::time::format_ms;
use crate::decode::{Severity, Status};

/// What a series means to correlation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Symptom,
    Cause,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Symptom => "symptom",
            Role::Cause => "cause",
        }
    }
}

/// `[[detect]]` in pipeline.toml: one metric to watch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectSpec {
    pub metric: String,
    pub direction: Direction,
    pub role: Role,
}

/// `[detection]` in pipeline.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionConfig {
    /// Watch the per-minute count of ERROR/FATAL log lines of each service.
    #[serde(default = "yes")]
    pub log_errors: bool,
    #[serde(default = "default_z")]
    pub z: f64,
    #[serde(default = "default_confirm")]
    pub confirm: u32,
    #[serde(default = "default_history")]
    pub history: usize,
    #[serde(default = "default_max_series")]
    pub max_series: usize,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            log_errors: true,
            z: default_z(),
            confirm: default_confirm(),
            history: default_history(),
            max_series: default_max_series(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_z() -> f64 {
    6.0
}
fn default_confirm() -> u32 {
    2
}
fn default_history() -> usize {
    60
}
fn default_max_series() -> usize {
    100_000
}

const LOG_WINDOW_MS: i64 = 60_000;
const LOG_GRACE_MS: i64 = 30_000;
const LOG_ERRORS: &str = "log_errors";

/// What the detectors found in one batch.
#[derive(Debug, Default)]
pub struct Detections {
    pub alerts: Vec<Alert>,
    pub anomalies: Vec<Value>,
}

struct Series {
    detector: Detector,
    episode: Option<String>,
}

pub struct SignalDetectors {
    specs: HashMap<String, DetectSpec>,
    cfg: DetectionConfig,
    params: DetectorParams,
    series: HashMap<(String, String, String), Series>,
    /// Open log-error windows: window start → service → count.
    log_windows: BTreeMap<i64, BTreeMap<String, u64>>,
    log_services: BTreeMap<String, ()>,
    watermark: i64,
    pub dropped_series: u64,
}

impl SignalDetectors {
    pub fn new(specs: &[DetectSpec], cfg: DetectionConfig) -> SignalDetectors {
        let params = DetectorParams {
            history: cfg.history.max(4),
            min_history: (cfg.history / 3).max(3),
            z: cfg.z,
            confirm: cfg.confirm.max(1),
        };
        SignalDetectors {
            specs: specs.iter().map(|s| (s.metric.clone(), s.clone())).collect(),
            cfg,
            params,
            series: HashMap::new(),
            log_windows: BTreeMap::new(),
            log_services: BTreeMap::new(),
            watermark: i64::MIN,
            dropped_series: 0,
        }
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Scores the metrics and counts the error logs of one batch.
    pub fn observe(&mut self, logs: &RecordBatch, metrics: &RecordBatch) -> Detections {
        let mut out = Detections::default();
        if let Some(cols) = MetricCols::of(metrics) {
            for i in 0..metrics.num_rows() {
                let name = cols.name.value(i);
                let Some(spec) = self.specs.get(name).cloned() else {
                    continue;
                };
                let service = opt(cols.service, i).unwrap_or("");
                let host = opt(cols.host, i).unwrap_or("");
                let ts = cols.ts.value(i);
                self.watermark = self.watermark.max(ts);
                self.score(
                    (name, service, host),
                    ts,
                    cols.value.value(i),
                    spec.direction,
                    spec.role,
                    &mut out,
                );
            }
        }
        if self.cfg.log_errors {
            self.count_logs(logs);
            self.close_log_windows(&mut out);
        }
        out
    }

    fn count_logs(&mut self, logs: &RecordBatch) {
        let (Some(ts), Some(service), Some(level)) = (
            logs.column_by_name("ts")
                .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>()),
            logs.column_by_name("service").and_then(|c| c.as_string_opt::<i32>()),
            logs.column_by_name("level").and_then(|c| c.as_string_opt::<i32>()),
        ) else {
            return;
        };
        let oldest_open = self.watermark.saturating_sub(LOG_GRACE_MS + LOG_WINDOW_MS);
        for i in 0..logs.num_rows() {
            let t = ts.value(i);
            self.watermark = self.watermark.max(t);
            let svc = service.value(i);
            if !self.log_services.contains_key(svc) {
                self.log_services.insert(svc.to_string(), ());
            }
            if t < oldest_open {
                continue; // later than the grace period: its window is closed
            }
            if matches!(level.value(i), "ERROR" | "FATAL") {
                let start = t - t.rem_euclid(LOG_WINDOW_MS);
                *self
                    .log_windows
                    .entry(start)
                    .or_default()
                    .entry(svc.to_string())
                    .or_default() += 1;
            } else {
                let start = t - t.rem_euclid(LOG_WINDOW_MS);
                self.log_windows.entry(start).or_default();
            }
        }
    }

    fn close_log_windows(&mut self, out: &mut Detections) {
        while let Some((&start, _)) = self.log_windows.first_key_value() {
            if start + LOG_WINDOW_MS + LOG_GRACE_MS > self.watermark {
                break;
            }
            let counts = self.log_windows.remove(&start).unwrap_or_default();
            let services: Vec<String> = self.log_services.keys().cloned().collect();
            for svc in services {
                let n = counts.get(&svc).copied().unwrap_or(0) as f64;
                self.score(
                    (LOG_ERRORS, &svc, ""),
                    start + LOG_WINDOW_MS,
                    n,
                    Direction::Up,
                    Role::Symptom,
                    out,
                );
            }
        }
    }

    fn score(
        &mut self,
        key: (&str, &str, &str),
        ts: i64,
        value: f64,
        dir: Direction,
        role: Role,
        out: &mut Detections,
    ) {
        let k = (key.0.to_string(), key.1.to_string(), key.2.to_string());
        if !self.series.contains_key(&k) && self.series.len() >= self.cfg.max_series {
            self.dropped_series += 1;
            return;
        }
        let s = self.series.entry(k).or_insert_with(|| Series {
            detector: Detector::default(),
            episode: None,
        });
        let (metric, service, host) = key;
        let target = if host.is_empty() { service } else { host };
        // One alert per notification of the episode; the role always travels with it.
        let alert = |fingerprint: String, status: Status, title: String, mut labels: Vec<(String, String)>| {
            labels.splice(
                0..0,
                [
                    ("role".to_string(), role.as_str().to_string()),
                    ("metric".to_string(), metric.to_string()),
                ],
            );
            Alert {
                fingerprint,
                source: "anomaly".into(),
                service: (!service.is_empty()).then(|| service.to_string()),
                host: (!host.is_empty()).then(|| host.to_string()),
                severity: Severity::Warning,
                status,
                title,
                ts,
                labels,
            }
        };
        match s.detector.observe(value, dir, &self.params) {
            Verdict::Start {
                score,
                expected,
                low,
                high,
            } => {
                let fp = derived_fingerprint(&["anomaly", metric, service, host, &ts.to_string()]);
                s.episode = Some(fp.clone());
                out.anomalies.push(json!({
                    "schema": "lookout.anomaly.v1",
                    "ts": format_ms(ts),
                    "signal": metric,
                    "series": {"service": service, "host": (!host.is_empty()).then_some(host)},
                    "value": value,
                    "expected": {"median": expected, "low": low, "high": high},
                    "score": (score * 1000.0).round() / 1000.0,
                    "role": role.as_str(),
                    "model": "robust-envelope",
                    "fingerprint": fp,
                }));
                let title = format!(
                    "{metric} anomaly on {target}: {} (normal {} .. {})",
                    short(value),
                    short(low),
                    short(high)
                );
                out.alerts.push(alert(
                    fp,
                    Status::Firing,
                    title,
                    vec![
                        ("direction".into(), went(value, expected).into()),
                        ("value".into(), short(value)),
                        ("expected".into(), short(expected)),
                        ("score".into(), format!("{score:.3}")),
                    ],
                ));
            }
            // Notified again on every anomalous point, as monitoring re-notifies a firing
            // alert, so that correlation knows the symptom still lasts.
            Verdict::Ongoing { score } => {
                if let Some(fp) = s.episode.clone() {
                    let title = format!("{metric} anomaly on {target}: {}", short(value));
                    out.alerts.push(alert(
                        fp,
                        Status::Firing,
                        title,
                        vec![("score".into(), format!("{score:.3}"))],
                    ));
                }
            }
            Verdict::End => {
                if let Some(fp) = s.episode.take() {
                    let title = format!("{metric} back to normal on {target}: {}", short(value));
                    out.alerts.push(alert(fp, Status::Resolved, title, Vec::new()));
                }
            }
            _ => {}
        }
    }
}

/// Which way a value departed from normal.
fn went(value: f64, expected: f64) -> &'static str {
    if value < expected {
        "down"
    } else {
        "up"
    }
}

fn short(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

fn opt(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

struct MetricCols<'a> {
    ts: &'a TimestampMillisecondArray,
    name: &'a StringArray,
    value: &'a Float64Array,
    service: &'a StringArray,
    host: &'a StringArray,
}

impl<'a> MetricCols<'a> {
    fn of(b: &'a RecordBatch) -> Option<MetricCols<'a>> {
        Some(MetricCols {
            ts: b.column_by_name("ts")?.as_any().downcast_ref()?,
            name: b.column_by_name("name")?.as_string_opt()?,
            value: b.column_by_name("value")?.as_any().downcast_ref()?,
            service: b.column_by_name("service")?.as_string_opt()?,
            host: b.column_by_name("host")?.as_string_opt()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::schema::{logs_batch, metrics_batch};
    use crate::decode::{Level, LogRow, MetricRow};

    fn metric(ts: i64, v: f64) -> MetricRow {
        MetricRow {
            ts,
            name: "latency".into(),
            value: v,
            service: Some("cart".into()),
            host: Some("cart-1".into()),
            labels: vec![],
        }
    }

    #[test]
    fn metric_episode_is_an_alert_and_an_anomaly() {
        let spec = DetectSpec {
            metric: "latency".into(),
            direction: Direction::Up,
            role: Role::Symptom,
        };
        let mut d = SignalDetectors::new(&[spec], DetectionConfig::default());
        let rows: Vec<_> = (0..60).map(|i| metric(i * 60_000, 40.0 + (i % 5) as f64)).collect();
        let empty = logs_batch(&[]).unwrap();
        assert!(d.observe(&empty, &metrics_batch(&rows).unwrap()).alerts.is_empty());
        let spike: Vec<_> = (60..66)
            .map(|i| metric(i * 60_000, if i < 63 { 900.0 } else { 41.0 }))
            .collect();
        let out = d.observe(&empty, &metrics_batch(&spike).unwrap());
        let statuses: Vec<Status> = out.alerts.iter().map(|a| a.status).collect();
        assert_eq!(
            statuses,
            vec![Status::Firing, Status::Firing, Status::Resolved],
            "start, still anomalous, back to normal"
        );
        assert!(out.alerts.iter().all(|a| a.fingerprint == out.alerts[0].fingerprint));
        assert_eq!(out.anomalies.len(), 1, "one anomaly message per episode");
        assert_eq!(out.anomalies[0]["signal"], "latency");
        assert_eq!(out.anomalies[0]["role"], "symptom");
    }

    #[test]
    fn error_log_bursts_per_service() {
        let mut d = SignalDetectors::new(&[], DetectionConfig::default());
        let log = |ts: i64, level: Level| LogRow {
            ts,
            service: "pay".into(),
            host: None,
            level,
            message: "x".into(),
            trace_id: None,
            attrs: vec![],
        };
        let mut rows = Vec::new();
        for m in 0..40i64 {
            rows.push(log(m * 60_000 + 5, Level::Info));
            if m % 10 == 0 {
                rows.push(log(m * 60_000 + 7, Level::Error));
            }
        }
        for m in 40..43i64 {
            for k in 0..12 {
                rows.push(log(m * 60_000 + k * 1000, Level::Error));
            }
        }
        rows.push(log(45 * 60_000, Level::Info));
        let out = d.observe(&logs_batch(&rows).unwrap(), &metrics_batch(&[]).unwrap());
        assert_eq!(out.anomalies.len(), 1, "{:?}", out.alerts);
        assert_eq!(out.anomalies[0]["signal"], "log_errors");
        assert_eq!(out.anomalies[0]["series"]["service"], "pay");
        assert!(out.alerts.iter().all(|a| a.status == Status::Firing));
    }

    #[test]
    fn series_are_capped() {
        let spec = DetectSpec {
            metric: "latency".into(),
            direction: Direction::Up,
            role: Role::Symptom,
        };
        let cfg = DetectionConfig {
            max_series: 2,
            ..DetectionConfig::default()
        };
        let mut d = SignalDetectors::new(&[spec], cfg);
        let rows: Vec<_> = (0..5)
            .map(|i| MetricRow {
                ts: 0,
                name: "latency".into(),
                value: 1.0,
                service: Some(format!("s{i}")),
                host: None,
                labels: vec![],
            })
            .collect();
        d.observe(&logs_batch(&[]).unwrap(), &metrics_batch(&rows).unwrap());
        assert_eq!((d.series_count(), d.dropped_series), (2, 3));
    }
}
