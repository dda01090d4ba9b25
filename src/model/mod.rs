//! Models: streaming anomaly detection on metrics and on log error counts.
//!
//! [`SignalDetectors`] keeps one detector per series ([`series`]: the `envelope`
//! [`detector::Detector`] or the [`surprise::Surprise`] detector, as `[detection] model`
//! says): a configured metric per (service, host), and the count of ERROR/FATAL log lines
//! per service per minute (a tumbling window that closes when event time passes its end
//! plus a grace period). An anomaly episode becomes an alert (source `anomaly`) for
//! correlation, firing when it starts and resolved when it ends, and an `anomalies` topic
//! message. Each series has a `role`: a `symptom` (errors, latency, traffic: what users
//! feel) or a `cause` (saturation of CPU, memory); correlation treats them differently.
//!
//! It also cuts each service's symptom signals into one-minute windows; with a trained
//! [`services`] model, a window unlike every normal one is an `unusual_signals` anomaly
//! (role `evidence`). For training it keeps those windows, and its series detectors can
//! be exported and imported ([`saved`]: `series.json`).
//!
//! State is bounded: at most `max_series` series (new ones beyond are counted and
//! ignored), each holding a fixed-size detector state.
//!
//! Also here: [`nab`], NAB's scoring, and [`normal`], the k-means "normal" shared with
//! the log-pattern model.

pub mod detector;
pub mod file;
pub mod nab;
pub mod normal;
pub mod saved;
pub mod series;
pub mod services;
pub mod surprise;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use serde::Deserialize;
use serde_json::{json, Value};

pub use detector::{Detector, DetectorParams, Direction, Verdict};
pub use saved::SavedSeries;
use series::SeriesDetector;
use services::{ServiceSignalModel, SignalWindows, Window};

use crate::correlate::alert::derived_fingerprint;
use crate::correlate::Alert;
use crate::decode::time::format_ms;
use crate::decode::{Severity, Status};

/// What a series means to correlation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Symptom,
    Cause,
    /// Joins an incident that already involves its service; never opens one.
    Evidence,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Symptom => "symptom",
            Role::Cause => "cause",
            Role::Evidence => "evidence",
        }
    }
}

/// `[[detect]]` in pipeline.toml: one metric to watch.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectSpec {
    /// The metric name to watch (every series of it: per service and host).
    pub metric: String,
    pub direction: Direction,
    pub role: Role,
}

/// `[detection]` in pipeline.toml.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionConfig {
    /// Watch the per-minute count of ERROR/FATAL log lines of each service.
    #[serde(default = "yes")]
    pub log_errors: bool,
    /// `envelope`: robust z-score beyond which a point departs.
    #[serde(default = "default_z")]
    pub z: f64,
    /// Departing points in a row before an anomaly is reported.
    #[serde(default = "default_confirm")]
    pub confirm: u32,
    /// `envelope`: points of history per series.
    #[serde(default = "default_history")]
    pub history: usize,
    /// Series watched at most; more are counted as dropped (`lookout_dropped_series_total`).
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Which detector watches each series.
    #[serde(default)]
    pub model: DetectorKind,
    /// Points a `surprise` detector learns before it may report (a model trained by
    /// `lookout train` has learnt already).
    #[serde(default = "default_warmup")]
    pub warmup: usize,
}

/// `[detection] model`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// Median and MAD of a rolling history, confirmed over `confirm` points.
    #[default]
    Envelope,
    /// The default streaming detector of `lookout detect` (see [`surprise`]).
    Surprise,
}

impl DetectorKind {
    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::Envelope => "robust-envelope",
            DetectorKind::Surprise => "surprise",
        }
    }
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            log_errors: true,
            z: default_z(),
            confirm: default_confirm(),
            history: default_history(),
            max_series: default_max_series(),
            model: DetectorKind::default(),
            warmup: default_warmup(),
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
fn default_warmup() -> usize {
    120
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

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Series {
    detector: SeriesDetector,
    episode: Option<String>,
    /// The latest points, for the web view's charts (the first [`RECENT_SERIES`]
    /// series only, so that memory stays small).
    recent: Option<VecDeque<(i64, f64)>>,
    /// The time of the newest point: an older one is out of order.
    #[serde(default = "never")]
    newest: i64,
}

fn never() -> i64 {
    i64::MIN
}

/// Series whose latest [`RECENT_POINTS`] points are kept for charts.
const RECENT_SERIES: usize = 2_000;
const RECENT_POINTS: usize = 60;
/// Keys of held points kept before the first clean-up of those no point holds.
const HELD_KEYS_MIN: usize = 1024;

/// What a checkpoint keeps of [`SignalDetectors`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DetectorsState {
    series: hashbrown::HashMap<SeriesKey, Series>,
    log_windows: BTreeMap<i64, BTreeMap<String, u64>>,
    log_services: BTreeMap<String, ()>,
    watermark: i64,
    dropped_series: u64,
    #[serde(default)]
    out_of_order: u64,
    windows: SignalWindows,
    vector_episodes: HashMap<String, String>,
    /// Points held for event time to pass them, oldest first.
    #[serde(default)]
    held: Vec<(i64, HeldState)>,
}

/// A series: its metric or signal, service and host (empty when it has none).
type SeriesKey = (String, String, String);

/// A series' key borrowed from a point: the series map is searched with it, so that a
/// point costs no copies of its key (hashes as the owned key does).
#[derive(Hash)]
struct KeyRef<'a>(&'a str, &'a str, &'a str);

impl hashbrown::Equivalent<SeriesKey> for KeyRef<'_> {
    fn equivalent(&self, k: &SeriesKey) -> bool {
        self.0 == k.0 && self.1 == k.1 && self.2 == k.2
    }
}

impl hashbrown::Equivalent<Arc<SeriesKey>> for KeyRef<'_> {
    fn equivalent(&self, k: &Arc<SeriesKey>) -> bool {
        self.equivalent(&**k)
    }
}

impl KeyRef<'_> {
    fn owned(&self) -> SeriesKey {
        (self.0.to_string(), self.1.to_string(), self.2.to_string())
    }
}

/// What the detectors need of a point besides its series and time.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Point {
    value: f64,
    direction: Direction,
    role: Role,
    /// A metric of a `[[detect]]` table: a symptom goes into its service's mix.
    mixed: bool,
}

/// A point waiting for event time to pass it ([`SignalDetectors::hold`]); the points
/// of one series share its key.
#[derive(Debug, Clone)]
struct Held {
    key: Arc<SeriesKey>,
    point: Point,
}

/// A held point as a checkpoint keeps it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct HeldState {
    series: String,
    service: String,
    host: String,
    point: Point,
}

pub struct SignalDetectors {
    specs: HashMap<String, DetectSpec>,
    cfg: DetectionConfig,
    params: DetectorParams,
    surprise: surprise::SurpriseParams,
    series: hashbrown::HashMap<SeriesKey, Series>,
    /// Open log-error windows: window start → service → count.
    log_windows: BTreeMap<i64, BTreeMap<String, u64>>,
    log_services: BTreeMap<String, ()>,
    watermark: i64,
    pub dropped_series: u64,
    /// Points older than their series' newest point. They are scored as they come,
    /// though the detectors assume a series arrives in order: this counts how far it
    /// does not (a producer that spreads one series over several partitions, read
    /// unevenly).
    pub out_of_order: u64,
    /// Windows of each service's signals together, for the service-signals model.
    windows: SignalWindows,
    vector_model: Option<ServiceSignalModel>,
    /// Unusual-signals episodes: service → fingerprint.
    vector_episodes: HashMap<String, String>,
    /// Closed windows kept for training, when recording.
    recorded: Option<Vec<Window>>,
    /// While holding, points wait here in event-time order (then arrival order) until
    /// `horizon` passes them.
    held: BTreeMap<(i64, u64), Held>,
    /// The keys of the series held points belong to, each kept once.
    held_keys: hashbrown::HashSet<Arc<SeriesKey>>,
    /// How many keys `held_keys` may grow to before those no point holds are dropped.
    held_keys_limit: usize,
    arrivals: u64,
    horizon: Option<i64>,
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
            surprise: surprise::SurpriseParams {
                warmup: cfg.warmup,
                ..surprise::SurpriseParams::default()
            },
            cfg,
            params,
            series: hashbrown::HashMap::new(),
            log_windows: BTreeMap::new(),
            log_services: BTreeMap::new(),
            watermark: i64::MIN,
            dropped_series: 0,
            out_of_order: 0,
            windows: SignalWindows::default(),
            vector_model: None,
            vector_episodes: HashMap::new(),
            recorded: None,
            held: BTreeMap::new(),
            held_keys: hashbrown::HashSet::new(),
            held_keys_limit: HELD_KEYS_MIN,
            arrivals: 0,
            horizon: None,
        }
    }

    /// The state to checkpoint: all but the configuration, the model and what training
    /// records.
    pub fn state(&self) -> DetectorsState {
        DetectorsState {
            series: self.series.clone(),
            log_windows: self.log_windows.clone(),
            log_services: self.log_services.clone(),
            watermark: self.watermark,
            dropped_series: self.dropped_series,
            out_of_order: self.out_of_order,
            windows: self.windows.clone(),
            vector_episodes: self.vector_episodes.clone(),
            held: self
                .held
                .iter()
                .map(|((ts, _), h)| {
                    let (series, service, host) = (*h.key).clone();
                    let state = HeldState {
                        series,
                        service,
                        host,
                        point: h.point,
                    };
                    (*ts, state)
                })
                .collect(),
        }
    }

    /// Continues from a checkpointed state.
    pub fn restore(&mut self, s: DetectorsState) {
        self.series = s.series;
        self.log_windows = s.log_windows;
        self.log_services = s.log_services;
        self.watermark = s.watermark;
        self.dropped_series = s.dropped_series;
        self.out_of_order = s.out_of_order;
        self.windows = s.windows;
        self.vector_episodes = s.vector_episodes;
        self.held.clear();
        self.held_keys.clear();
        for (ts, h) in s.held {
            let key = (h.series.as_str(), h.service.as_str(), h.host.as_str());
            self.hold_point(key, ts, h.point);
        }
    }

    /// Holds points until event time passes them: from now on a point is scored once
    /// `horizon` (the oldest newest event time of the partitions being read, set before
    /// each batch) has reached it, in event-time order, and windows of error logs and of
    /// service signals close on the horizon too. When partitions are read unevenly, a
    /// series spread over them then reaches its detector in order, and what is found
    /// does not depend on which partition was read first. Replayed files are merged by
    /// event time and need no holding.
    pub fn hold(&mut self, horizon: i64) {
        self.horizon = Some(horizon);
    }

    /// Stops holding and scores every point held (the input has ended).
    pub fn release(&mut self) -> Detections {
        self.horizon = None;
        let mut out = Detections::default();
        self.release_until(i64::MAX, &mut out);
        self.close_vectors(&mut out);
        out
    }

    /// Points waiting for event time to pass them.
    pub fn held_points(&self) -> usize {
        self.held.len()
    }

    /// Event time up to which windows close: the newest seen, or the horizon while
    /// holding.
    fn closing(&self) -> i64 {
        match self.horizon {
            Some(h) => h.min(self.watermark),
            None => self.watermark,
        }
    }

    /// Scores a point now, or holds it while holding.
    fn point(&mut self, key: (&str, &str, &str), ts: i64, point: Point, out: &mut Detections) {
        match self.horizon {
            None => self.score_point(key, ts, point, out),
            Some(_) => self.hold_point(key, ts, point),
        }
    }

    fn hold_point(&mut self, key: (&str, &str, &str), ts: i64, point: Point) {
        let borrowed = KeyRef(key.0, key.1, key.2);
        let key = match self.held_keys.get(&borrowed) {
            Some(k) => Arc::clone(k),
            None => {
                if self.held_keys.len() >= self.held_keys_limit {
                    // only the held points (and this set) share a key
                    self.held_keys.retain(|k| Arc::strong_count(k) > 1);
                    self.held_keys_limit = (2 * self.held_keys.len()).max(HELD_KEYS_MIN);
                }
                let k = Arc::new(borrowed.owned());
                self.held_keys.insert(Arc::clone(&k));
                k
            }
        };
        self.held.insert((ts, self.arrivals), Held { key, point });
        self.arrivals += 1;
    }

    /// Scores the held points up to `until`, oldest first.
    fn release_until(&mut self, until: i64, out: &mut Detections) {
        while let Some(first) = self.held.first_entry() {
            if first.key().0 > until {
                break;
            }
            let ((ts, _), h) = first.remove_entry();
            let key = (h.key.0.as_str(), h.key.1.as_str(), h.key.2.as_str());
            self.score_point(key, ts, h.point, out);
        }
    }

    fn score_point(&mut self, key: (&str, &str, &str), ts: i64, p: Point, out: &mut Detections) {
        let watched = self.score(key, ts, p.value, p.direction, p.role, out);
        // What users feel goes into the service's mix; saturation levels (memory, CPU)
        // differ from one deployment to the next and would dominate it.
        if watched && p.mixed && p.role == Role::Symptom {
            self.mix(key.1, key.0, ts, p.value);
        }
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// A series' latest points (for charts); empty when it is not kept.
    pub fn recent_points(&self, key: &(String, String, String)) -> Vec<(i64, f64)> {
        self.series
            .get(key)
            .and_then(|s| s.recent.as_ref())
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Scores the metrics and counts the error logs of one batch.
    pub fn observe(&mut self, logs: &RecordBatch, metrics: &RecordBatch) -> Detections {
        let mut out = Detections::default();
        if let Some(cols) = MetricCols::of(metrics) {
            // A batch holds runs of several partitions over overlapping times, and a
            // producer that spreads a series over partitions interleaves its points:
            // each series is scored in event-time order within the batch, however the
            // runs came (held points are ordered as they are held).
            let ts = cols.ts.values();
            let mut order: Vec<usize> = (0..metrics.num_rows()).collect();
            if self.horizon.is_none() && !ts.is_sorted() {
                order.sort_by_key(|&i| ts[i]);
            }
            for i in order {
                let name = cols.name.value(i);
                let Some((direction, role)) = self.specs.get(name).map(|s| (s.direction, s.role)) else {
                    continue;
                };
                let service = opt(cols.service, i).unwrap_or("");
                let host = opt(cols.host, i).unwrap_or("");
                let ts = cols.ts.value(i);
                self.watermark = self.watermark.max(ts);
                let value = cols.value.value(i);
                let p = Point {
                    value,
                    direction,
                    role,
                    mixed: true,
                };
                self.point((name, service, host), ts, p, &mut out);
            }
        }
        if let Some(h) = self.horizon {
            self.release_until(h, &mut out);
        }
        if self.cfg.log_errors {
            self.count_logs(logs);
            self.close_log_windows(&mut out);
        }
        self.close_vectors(&mut out);
        out
    }

    /// Scores the points of SQL signals (every series of a signal is watched, up to
    /// `max_series`).
    pub fn observe_points(&mut self, points: &[crate::sql::SignalPoint]) -> Detections {
        let mut out = Detections::default();
        for p in points {
            self.watermark = self.watermark.max(p.ts);
            let key = (p.series.as_str(), p.service.as_str(), p.host.as_str());
            let point = Point {
                value: p.value,
                direction: p.direction,
                role: p.role,
                mixed: false,
            };
            self.point(key, p.ts, point, &mut out);
        }
        if let Some(h) = self.horizon {
            self.release_until(h, &mut out);
        }
        out
    }

    /// Keeps every closed window of service signals for [`SignalDetectors::take_recorded`]
    /// (training).
    pub fn record_windows(&mut self) {
        self.recorded = Some(Vec::new());
    }

    pub fn take_recorded(&mut self) -> Vec<Window> {
        self.recorded.take().unwrap_or_default()
    }

    pub fn set_vector_model(&mut self, model: Option<ServiceSignalModel>) {
        self.vector_model = model;
    }

    pub fn vector_model(&self) -> Option<&ServiceSignalModel> {
        self.vector_model.as_ref()
    }

    /// Every series' detector, in a stable order, for `series.json`.
    pub fn export_series(&self) -> Vec<SavedSeries> {
        let mut out: Vec<SavedSeries> = self
            .series
            .iter()
            .map(|((metric, service, host), s)| SavedSeries {
                metric: metric.clone(),
                service: service.clone(),
                host: host.clone(),
                state: s.detector.clone(),
            })
            .collect();
        out.sort_by(|a, b| (&a.metric, &a.service, &a.host).cmp(&(&b.metric, &b.service, &b.host)));
        out
    }

    /// Starts series from saved detectors (out of any episode). Detectors of another
    /// kind than the configured one are an error: the file was trained for another setup.
    pub fn import_series(&mut self, saved: Vec<SavedSeries>) -> Result<usize, String> {
        let mut n = 0;
        for s in saved {
            let mut detector = s.state;
            match (&mut detector, self.cfg.model) {
                (SeriesDetector::Envelope(_), DetectorKind::Envelope) => {}
                (SeriesDetector::Surprise(w), DetectorKind::Surprise) => {
                    w.in_episode = false;
                    w.calm = 0;
                }
                (_, kind) => {
                    return Err(format!(
                        "series {}/{}/{}: trained for another detector than [detection] model = {:?}",
                        s.metric,
                        s.service,
                        s.host,
                        kind.name()
                    ))
                }
            }
            if self.series.len() >= self.cfg.max_series {
                self.dropped_series += 1;
                continue;
            }
            let charted = self.series.len() < RECENT_SERIES;
            self.series.insert(
                (s.metric, s.service, s.host),
                Series {
                    detector,
                    episode: None,
                    recent: charted.then(VecDeque::new),
                    newest: i64::MIN,
                },
            );
            n += 1;
        }
        Ok(n)
    }

    fn close_vectors(&mut self, out: &mut Detections) {
        for w in self.windows.close(self.closing()) {
            if let Some(kept) = &mut self.recorded {
                kept.push(w.clone());
            }
            let Some(normal) = self.vector_model.as_ref().and_then(|m| m.services.get(&w.service)) else {
                continue;
            };
            let score = normal.score(&w.values);
            let service = w.service.as_str();
            let unusual = score.distance > score.threshold;
            let episode = self.vector_episodes.get(service).cloned();
            let alert = |fingerprint: String, status: Status, title: String| Alert {
                fingerprint,
                source: "anomaly".into(),
                service: Some(service.to_string()),
                host: None,
                severity: Severity::Warning,
                status,
                title,
                ts: w.end,
                labels: vec![
                    ("role".into(), "evidence".into()),
                    ("metric".into(), "service_signals".into()),
                    ("kind".into(), "unusual_signals".into()),
                ],
            };
            match (unusual, episode) {
                (true, episode) => {
                    let fp = episode
                        .clone()
                        .unwrap_or_else(|| derived_fingerprint(&["service-signals", service, &w.end.to_string()]));
                    let moved: Vec<String> = score
                        .movers
                        .iter()
                        .map(|(s, v, u)| format!("{s} {} (usually {})", short(*v), short(*u)))
                        .collect();
                    if episode.is_none() {
                        out.anomalies.push(json!({
                            "schema": "lookout.anomaly.v1",
                            "ts": format_ms(w.end),
                            "signal": "service_signals",
                            "kind": "unusual_signals",
                            "series": {"service": service, "host": null},
                            "value": (score.distance * 1000.0).round() / 1000.0,
                            "expected": {"high": score.threshold},
                            "score": ((1.0 - score.threshold / score.distance).clamp(0.0, 1.0) * 1000.0).round() / 1000.0,
                            "moved": score.movers.iter().map(|(s, v, u)| json!({"signal": s, "value": v, "usual": u})).collect::<Vec<_>>(),
                            "role": "evidence",
                            "model": services::KIND,
                            "fingerprint": fp,
                        }));
                        self.vector_episodes.insert(service.to_string(), fp.clone());
                    }
                    out.alerts.push(alert(
                        fp,
                        Status::Firing,
                        format!(
                            "unusual signals on {service}: distance {:.2} over {:.2}; moved: {}",
                            score.distance,
                            score.threshold,
                            moved.join(", ")
                        ),
                    ));
                }
                (false, Some(fp)) => {
                    self.vector_episodes.remove(service);
                    out.alerts.push(alert(
                        fp,
                        Status::Resolved,
                        format!("signals back to normal on {service}"),
                    ));
                }
                (false, None) => {}
            }
        }
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
        let oldest_open = self.closing().saturating_sub(LOG_GRACE_MS + LOG_WINDOW_MS);
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
            if start + LOG_WINDOW_MS + LOG_GRACE_MS > self.closing() {
                break;
            }
            let counts = self.log_windows.remove(&start).unwrap_or_default();
            let services: Vec<String> = self.log_services.keys().cloned().collect();
            for svc in services {
                let n = counts.get(&svc).copied().unwrap_or(0) as f64;
                let key = (LOG_ERRORS, svc.as_str(), "");
                if self.score(key, start + LOG_WINDOW_MS, n, Direction::Up, Role::Symptom, out) {
                    self.mix(&svc, LOG_ERRORS, start, n);
                }
            }
        }
    }

    /// Adds a point of a watched series to its service's window, when a service-signals
    /// model or training will read the windows.
    fn mix(&mut self, service: &str, signal: &str, ts: i64, value: f64) {
        if self.vector_model.is_some() || self.recorded.is_some() {
            self.windows.add(service, signal, ts, value);
        }
    }

    /// Scores a point of a series; false when the series is not watched (the cap).
    fn score(
        &mut self,
        key: (&str, &str, &str),
        ts: i64,
        value: f64,
        dir: Direction,
        role: Role,
        out: &mut Detections,
    ) -> bool {
        let kind = self.cfg.model;
        let count = self.series.len();
        let borrowed = KeyRef(key.0, key.1, key.2);
        let s = match self.series.entry_ref(&borrowed) {
            hashbrown::hash_map::EntryRef::Occupied(o) => o.into_mut(),
            hashbrown::hash_map::EntryRef::Vacant(_) if count >= self.cfg.max_series => {
                self.dropped_series += 1;
                return false;
            }
            hashbrown::hash_map::EntryRef::Vacant(v) => v.insert_with_key(
                borrowed.owned(),
                Series {
                    detector: match kind {
                        DetectorKind::Envelope => SeriesDetector::Envelope(Detector::default()),
                        DetectorKind::Surprise => SeriesDetector::Surprise(Box::default()),
                    },
                    episode: None,
                    recent: (count < RECENT_SERIES).then(VecDeque::new),
                    newest: i64::MIN,
                },
            ),
        };
        if ts < s.newest {
            self.out_of_order += 1;
        } else {
            s.newest = ts;
        }
        if let Some(r) = &mut s.recent {
            if r.len() == RECENT_POINTS {
                r.pop_front();
            }
            r.push_back((ts, value));
        }
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
        let verdict = match &mut s.detector {
            SeriesDetector::Envelope(d) => d.observe(value, dir, &self.params),
            SeriesDetector::Surprise(w) => w.observe(ts, value, dir, &self.surprise, self.params.confirm),
        };
        match verdict {
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
                    "model": kind.name(),
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
        true
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

    fn metric(ts: i64, v: f64) -> MetricRow<'static> {
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
    fn a_batch_of_interleaved_partition_runs_is_scored_in_event_time_order() {
        let spec = spec("latency", Direction::Up, Role::Symptom);
        let empty = logs_batch(&[]).unwrap();
        let rows: Vec<_> = (0..70)
            .map(|i| {
                metric(
                    i * 60_000,
                    if (62..65).contains(&i) {
                        900.0
                    } else {
                        40.0 + (i % 5) as f64
                    },
                )
            })
            .collect();
        // the same points as two partitions' runs: even minutes, then odd ones
        let runs: Vec<_> = rows
            .iter()
            .step_by(2)
            .chain(rows.iter().skip(1).step_by(2))
            .cloned()
            .collect();
        let detect = |rows: &[MetricRow]| {
            let mut d = SignalDetectors::new(std::slice::from_ref(&spec), DetectionConfig::default());
            let out = d.observe(&empty, &metrics_batch(rows).unwrap());
            let alerts: Vec<(i64, Status)> = out.alerts.iter().map(|a| (a.ts, a.status)).collect();
            (alerts, out.anomalies, d.out_of_order)
        };
        let in_order = detect(&rows);
        assert!(!in_order.0.is_empty(), "the spike is found");
        assert_eq!(detect(&runs), in_order);
        assert_eq!(in_order.2, 0);
        // across batches the order is what it is, and the points that go back are counted
        let mut d = SignalDetectors::new(std::slice::from_ref(&spec), DetectionConfig::default());
        d.observe(&empty, &metrics_batch(&rows[30..]).unwrap());
        d.observe(&empty, &metrics_batch(&rows[..30]).unwrap());
        assert_eq!(d.out_of_order, 30);
    }

    #[test]
    fn held_points_give_partitions_read_unevenly_the_findings_of_event_time_order() {
        let spec = spec("latency", Direction::Up, Role::Symptom);
        let empty = logs_batch(&[]).unwrap();
        let value = |i: i64| match i {
            150..=153 => 900.0,
            _ => 40.0 + (i % 5) as f64,
        };
        let rows: Vec<_> = (0..240).map(|i| metric(i * 60_000, value(i))).collect();
        let found = |out: &Detections| -> Vec<(i64, Status, String)> {
            out.alerts.iter().map(|a| (a.ts, a.status, a.title.clone())).collect()
        };
        let mut d = SignalDetectors::new(std::slice::from_ref(&spec), DetectionConfig::default());
        let in_order = found(&d.observe(&empty, &metrics_batch(&rows).unwrap()));
        let spike = 150 * 60_000..=153 * 60_000;
        assert!(
            in_order.iter().any(|a| spike.contains(&a.0) && a.1 == Status::Firing),
            "the spike is found: {in_order:?}"
        );
        // Two partitions of one series: the even minutes are read in batches of 40 rows
        // a whole hour before the odd ones, which come at the end. The horizon is the
        // oldest newest event of the two (nothing before the odd ones' first batch).
        let (even, odd): (Vec<_>, Vec<_>) = rows.iter().cloned().partition(|r| (r.ts / 60_000) % 2 == 0);
        let mut batches: Vec<(Vec<MetricRow>, Option<i64>)> = Vec::new();
        let (mut even_newest, mut odd_newest) = (None, None);
        let mut reads: Vec<(bool, &[MetricRow])> = even.chunks(40).map(|c| (true, c)).collect();
        reads.splice(2..2, odd.chunks(40).map(|c| (false, c)));
        for (is_even, chunk) in reads {
            let newest = chunk.last().map(|r| r.ts);
            if is_even {
                even_newest = newest
            } else {
                odd_newest = newest
            }
            batches.push((chunk.to_vec(), even_newest.zip(odd_newest).map(|(a, b)| a.min(b))));
        }
        let run = |hold: bool| {
            let mut d = SignalDetectors::new(std::slice::from_ref(&spec), DetectionConfig::default());
            let mut got = Vec::new();
            for (rows, horizon) in &batches {
                if hold {
                    d.hold(horizon.unwrap_or(i64::MIN));
                }
                got.extend(found(&d.observe(&empty, &metrics_batch(rows).unwrap())));
            }
            got.extend(found(&d.release()));
            assert_eq!(d.held_points(), 0);
            (got, d.out_of_order)
        };
        assert_eq!(run(true), (in_order.clone(), 0));
        let (unheld, out_of_order) = run(false);
        assert!(out_of_order > 0);
        assert_ne!(
            unheld, in_order,
            "read unevenly and scored on arrival, the series is not what it was"
        );
    }

    /// Held points of one series share its key; keys no held point uses are dropped
    /// as new ones come, so the set stays near the number of series held at once.
    #[test]
    fn held_keys_are_shared_and_dropped_once_released() {
        let spec = spec("latency", Direction::Up, Role::Symptom);
        let empty = logs_batch(&[]).unwrap();
        let on_host = |host: usize, ts: i64| MetricRow {
            host: Some(format!("cart-{host}").into()),
            ..metric(ts, 40.0)
        };
        let mut d = SignalDetectors::new(std::slice::from_ref(&spec), DetectionConfig::default());
        d.hold(i64::MIN);
        let rows: Vec<_> = (0..3000).flat_map(|h| [on_host(h, 0), on_host(h, 60_000)]).collect();
        d.observe(&empty, &metrics_batch(&rows).unwrap());
        assert_eq!((d.held_points(), d.held_keys.len()), (6000, 3000));
        assert!(d.held.values().all(|h| Arc::strong_count(&h.key) == 3));
        d.hold(60_000);
        d.observe(&empty, &metrics_batch(&[]).unwrap());
        assert_eq!((d.held_points(), d.series_count()), (0, 3000));
        // 2,000 more series: on the way the 3,000 released keys are dropped
        let rows: Vec<_> = (3000..5000).map(|h| on_host(h, 120_000)).collect();
        d.observe(&empty, &metrics_batch(&rows).unwrap());
        assert_eq!(d.held_points(), 2000);
        assert!(d.held_keys.len() < 3000, "{} keys", d.held_keys.len());
        assert!(d
            .held_keys
            .iter()
            .all(|k| k.2["cart-".len()..].parse::<usize>().unwrap() >= 3000));
        assert_eq!(d.release().alerts.len(), 0);
        assert_eq!(d.series_count(), 5000);
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
                service: Some(format!("s{i}").into()),
                host: None,
                labels: vec![],
            })
            .collect();
        d.observe(&logs_batch(&[]).unwrap(), &metrics_batch(&rows).unwrap());
        assert_eq!((d.series_count(), d.dropped_series), (2, 3));
    }

    fn spec(metric: &str, direction: Direction, role: Role) -> DetectSpec {
        DetectSpec {
            metric: metric.into(),
            direction,
            role,
        }
    }

    /// Rate and latency of `cart`, one point a minute each; `odd` minutes have busy-hour
    /// latency at quiet-hour traffic.
    fn traffic(minutes: std::ops::Range<i64>, odd: &[i64]) -> Vec<MetricRow<'static>> {
        let mut rows = Vec::new();
        for m in minutes {
            let busy = (m / 30) % 2 == 0;
            let (rate, latency) = if busy { (100.0, 200.0) } else { (10.0, 50.0) };
            let latency = if odd.contains(&m) { 200.0 } else { latency };
            let jitter = (m % 7) as f64;
            for (name, v) in [("req_rate", rate + jitter), ("latency", latency + jitter)] {
                rows.push(MetricRow {
                    name: name.into(),
                    ..metric(m * 60_000, v)
                });
            }
        }
        rows
    }

    #[test]
    fn a_trained_service_mix_reports_unusual_windows_as_evidence() {
        let specs = [
            spec("req_rate", Direction::Down, Role::Symptom),
            spec("latency", Direction::Up, Role::Symptom),
        ];
        let cfg = DetectionConfig {
            log_errors: false,
            ..DetectionConfig::default()
        };
        let empty = logs_batch(&[]).unwrap();
        let mut train = SignalDetectors::new(&specs, cfg.clone());
        train.record_windows();
        train.observe(&empty, &metrics_batch(&traffic(0..600, &[])).unwrap());
        let windows = train.take_recorded();
        assert_eq!(windows.len(), 598, "all but the last two minutes have closed");
        let model = services::fit(&windows, Default::default(), "now".into(), ("a".into(), "b".into())).unwrap();

        let mut d = SignalDetectors::new(&specs, cfg);
        d.set_vector_model(Some(model));
        let out = d.observe(&empty, &metrics_batch(&traffic(600..700, &[640, 641])).unwrap());
        let mix: Vec<&Alert> = out
            .alerts
            .iter()
            .filter(|a| a.label("kind") == Some("unusual_signals"))
            .collect();
        let statuses: Vec<(Status, i64)> = mix.iter().map(|a| (a.status, a.ts / 60_000)).collect();
        assert_eq!(
            statuses,
            [(Status::Firing, 641), (Status::Firing, 642), (Status::Resolved, 643)],
            "an episode per unusual stretch, stamped with the windows' ends"
        );
        assert_eq!(mix[0].label("role"), Some("evidence"));
        assert!(mix[0].title.contains("req_rate"), "{}", mix[0].title);
        let records: Vec<&Value> = out
            .anomalies
            .iter()
            .filter(|a| a["kind"] == "unusual_signals")
            .collect();
        assert_eq!(records.len(), 1, "one anomaly per episode");
        assert_eq!(records[0]["model"], services::KIND);
        assert_eq!(records[0]["moved"][0]["signal"], "req_rate");
    }

    #[test]
    fn surprise_detectors_open_episodes_and_start_warm_from_a_saved_state() {
        let cfg = DetectionConfig {
            model: DetectorKind::Surprise,
            log_errors: false,
            ..DetectionConfig::default()
        };
        let specs = [spec("latency", Direction::Up, Role::Symptom)];
        let empty = logs_batch(&[]).unwrap();
        let normal = |range: std::ops::Range<i64>| -> Vec<MetricRow> {
            range.map(|i| metric(i * 60_000, 40.0 + (i * 7 % 5) as f64)).collect()
        };
        let mut d = SignalDetectors::new(&specs, cfg.clone());
        d.observe(&empty, &metrics_batch(&normal(0..600)).unwrap());
        let saved = d.export_series();
        assert_eq!(saved.len(), 1);

        // A warm copy reports a spike at once, with the model's name; so does the original.
        let mut warm = SignalDetectors::new(&specs, cfg.clone());
        assert_eq!(warm.import_series(saved.clone()).unwrap(), 1);
        let mut spike = normal(600..610);
        spike[3].value = 900.0;
        spike[4].value = 880.0;
        for det in [&mut d, &mut warm] {
            let out = det.observe(&empty, &metrics_batch(&spike).unwrap());
            let statuses: Vec<Status> = out.alerts.iter().map(|a| a.status).collect();
            assert_eq!(statuses, [Status::Firing, Status::Firing, Status::Resolved]);
            assert_eq!(out.anomalies[0]["model"], "surprise");
            assert!(out.anomalies[0]["score"].as_f64().unwrap() >= 0.5);
        }
        // A cold one is still learning.
        let mut cold = SignalDetectors::new(&specs, cfg);
        assert!(cold.observe(&empty, &metrics_batch(&spike).unwrap()).alerts.is_empty());

        // States survive JSON, and a state of another kind is refused.
        let json = serde_json::to_string(&saved).unwrap();
        let back: Vec<SavedSeries> = serde_json::from_str(&json).unwrap();
        let mut envelope = SignalDetectors::new(&specs, DetectionConfig::default());
        assert!(envelope.import_series(back).unwrap_err().contains("another detector"));
    }
}
