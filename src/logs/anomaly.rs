//! Log anomalies, from the templates of the logs batch: published to the anomalies topic
//! and handed to correlation as alerts (source `anomaly`). Their `role` is `evidence` by
//! default: they join an incident of their service, to say what the logs did, but never
//! open or confirm one (a new template alone is weak evidence, and in the scenarios
//! letting it open incidents split real ones); `role = "symptom"` makes them count as
//! symptoms like metric anomalies.
//!
//! - **New template** after warm-up: a message unlike any seen before. Warning when the
//!   line is WARN or worse, else info (published, but info alerts open no incident). One
//!   anomaly per template, one alert per service (repeated per new template).
//! - **Burst of a rare template**: in a closed one-minute window, a (service, template)
//!   seen at least `burst_min` times and `burst_factor` times its usual rate (an
//!   exponentially weighted mean over about an hour of windows).
//! - **Unusual mix** ([`super::patterns`]): a service's window of template counts far
//!   from every normal mix the trained model knows; an episode fires while it lasts and
//!   resolves on the first normal window.
//!
//! Windows close when event time passes their end plus 30 s. Warm-up is `warmup_s` of
//! event time, or none when the templates came from a saved state. State is bounded:
//! at most `max_keys` (service, template) rates; keys past it are counted and ignored.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::{Array, AsArray, RecordBatch, StringArray, TimestampMillisecondArray};
use serde::Deserialize;
use serde_json::{json, Value};

use super::patterns::PatternModel;
use crate::correlate::alert::derived_fingerprint;
use crate::correlate::Alert;
use crate::decode::time::format_ms;
use crate::decode::{Severity, Status};
use crate::model::Detections;

const WINDOW_MS: i64 = 60_000;
const GRACE_MS: i64 = 30_000;
/// Weight of the newest window in a template's usual rate: about an hour of memory.
const ALPHA: f64 = 1.0 / 60.0;

/// `[log_anomalies]` in pipeline.toml.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogAnomalyConfig {
    /// Report a template seen for the first time after the warm-up.
    #[serde(default = "yes")]
    pub new_templates: bool,
    /// Event time learnt before new templates are reported (a restored template state skips it).
    #[serde(default = "default_warmup")]
    pub warmup_s: u64,
    /// A burst: at least this many lines of a template in a minute...
    #[serde(default = "default_burst_min")]
    pub burst_min: u64,
    /// ... and this many times its usual rate.
    #[serde(default = "default_burst_factor")]
    pub burst_factor: f64,
    /// (service, template) rates kept at most.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// `evidence` (default) or `symptom`: what the alerts are to correlation.
    #[serde(default = "default_role")]
    pub role: LogAnomalyRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogAnomalyRole {
    Evidence,
    Symptom,
}

fn default_role() -> LogAnomalyRole {
    LogAnomalyRole::Evidence
}

impl Default for LogAnomalyConfig {
    fn default() -> Self {
        LogAnomalyConfig {
            new_templates: true,
            warmup_s: default_warmup(),
            burst_min: default_burst_min(),
            burst_factor: default_burst_factor(),
            max_keys: default_max_keys(),
            role: default_role(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_warmup() -> u64 {
    3600
}
fn default_burst_min() -> u64 {
    10
}
fn default_burst_factor() -> f64 {
    10.0
}
fn default_max_keys() -> usize {
    100_000
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Seen {
    count: u64,
    template: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Rate {
    mean: f64,
    window: i64,
}

/// What a checkpoint keeps of [`LogAnomalies`]: all but the configuration and model.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LogAnomalyState {
    first_ts: Option<i64>,
    warm: bool,
    watermark: i64,
    windows: BTreeMap<i64, BTreeMap<(String, String), Seen>>,
    rates: HashMap<(String, String), Rate>,
    episodes: HashMap<String, String>,
    dropped_keys: u64,
}

pub struct LogAnomalies {
    cfg: LogAnomalyConfig,
    first_ts: Option<i64>,
    warm: bool,
    watermark: i64,
    /// Open windows: start → (service, template id) → count and template; ordered, so
    /// that a replay publishes its anomalies in the same order every time.
    windows: BTreeMap<i64, BTreeMap<(String, String), Seen>>,
    rates: HashMap<(String, String), Rate>,
    model: Option<PatternModel>,
    /// Open unusual-mix episodes: service → fingerprint.
    episodes: HashMap<String, String>,
    pub dropped_keys: u64,
}

struct Cols<'a> {
    ts: &'a TimestampMillisecondArray,
    service: &'a StringArray,
    host: &'a StringArray,
    level: &'a StringArray,
    id: &'a StringArray,
    template: &'a StringArray,
}

impl<'a> Cols<'a> {
    fn of(b: &'a RecordBatch) -> Option<Cols<'a>> {
        let s = |n: &str| b.column_by_name(n).and_then(|c| c.as_string_opt::<i32>());
        Some(Cols {
            ts: b.column_by_name("ts")?.as_any().downcast_ref()?,
            service: s("service")?,
            host: s("host")?,
            level: s("level")?,
            id: s("template_id")?,
            template: s("template")?,
        })
    }
}

impl LogAnomalies {
    pub fn new(cfg: LogAnomalyConfig) -> LogAnomalies {
        LogAnomalies {
            cfg,
            first_ts: None,
            warm: false,
            watermark: i64::MIN,
            windows: BTreeMap::new(),
            rates: HashMap::new(),
            model: None,
            episodes: HashMap::new(),
            dropped_keys: 0,
        }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> LogAnomalyState {
        LogAnomalyState {
            first_ts: self.first_ts,
            warm: self.warm,
            watermark: self.watermark,
            windows: self.windows.clone(),
            rates: self.rates.clone(),
            episodes: self.episodes.clone(),
            dropped_keys: self.dropped_keys,
        }
    }

    /// Continues from a checkpointed state.
    pub fn restore(&mut self, s: LogAnomalyState) {
        self.first_ts = s.first_ts;
        self.warm = s.warm;
        self.watermark = s.watermark;
        self.windows = s.windows;
        self.rates = s.rates;
        self.episodes = s.episodes;
        self.dropped_keys = s.dropped_keys;
    }

    /// Templates restored from a saved state: what is new is new now.
    pub fn skip_warmup(&mut self) {
        self.warm = true;
    }

    pub fn set_model(&mut self, model: Option<PatternModel>) {
        self.model = model;
    }

    pub fn model(&self) -> Option<&PatternModel> {
        self.model.as_ref()
    }

    fn warm_at(&self, ts: i64) -> bool {
        self.warm || self.first_ts.is_some_and(|f| ts >= f + self.cfg.warmup_s as i64 * 1000)
    }

    /// Looks at an enriched logs batch; `created` holds the ids (hex) of templates that
    /// mining it created.
    pub fn observe(&mut self, logs: &RecordBatch, created: &HashSet<String>) -> Detections {
        let mut out = Detections::default();
        let Some(c) = Cols::of(logs) else { return out };
        let mut reported: HashSet<&str> = HashSet::new();
        // Windows closed before this batch stay closed; rows within a batch may come in
        // any order.
        let closed_before = self.watermark;
        for i in 0..logs.num_rows() {
            if c.id.is_null(i) {
                continue;
            }
            let (ts, service, id) = (c.ts.value(i), c.service.value(i), c.id.value(i));
            self.first_ts.get_or_insert(ts);
            self.watermark = self.watermark.max(ts);
            let template = c.template.value(i);
            if self.cfg.new_templates && created.contains(id) && self.warm_at(ts) && reported.insert(id) {
                let host = (!c.host.is_null(i)).then(|| c.host.value(i));
                self.new_template(ts, service, host, c.level.value(i), id, template, &mut out);
            }
            let start = ts - ts.rem_euclid(WINDOW_MS);
            if start + WINDOW_MS + GRACE_MS <= closed_before {
                continue; // its window has closed
            }
            let seen = self
                .windows
                .entry(start)
                .or_default()
                .entry((service.to_string(), id.to_string()))
                .or_default();
            seen.count += 1;
            if seen.template.is_empty() {
                seen.template = template.to_string();
            }
        }
        self.close_windows(&mut out);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn new_template(
        &self,
        ts: i64,
        service: &str,
        host: Option<&str>,
        level: &str,
        id: &str,
        template: &str,
        out: &mut Detections,
    ) {
        // One anomaly per template; one alert per service, repeated for each new template
        // (its count says how many), so that an incident does not fill up with them.
        let fingerprint = derived_fingerprint(&["log-new-template", service, id]);
        let alert_fingerprint = derived_fingerprint(&["log-new-template", service]);
        let severity = if matches!(level, "WARN" | "ERROR" | "FATAL") {
            Severity::Warning
        } else {
            Severity::Info
        };
        out.anomalies.push(self.record(
            ts,
            ("new_template", "log_template", "new-template"),
            (service, host),
            &fingerprint,
            json!({"template_id": id, "template": template, "level": level, "value": 1, "score": 1.0}),
        ));
        out.alerts.push(alert(
            self.cfg.role,
            alert_fingerprint,
            service,
            severity,
            Status::Firing,
            format!("new log template on {service}: {template}"),
            ts,
            &[("template_id", id), ("kind", "new_template")],
        ));
    }

    /// An anomalies-topic record: what every log anomaly says (kind, signal and model;
    /// service and host), its own fields, then role and fingerprint.
    fn record(
        &self,
        ts: i64,
        (kind, signal, model): (&str, &str, &str),
        (service, host): (&str, Option<&str>),
        fingerprint: &str,
        own: Value,
    ) -> Value {
        let mut record = json!({
            "schema": "lookout.anomaly.v1",
            "ts": format_ms(ts),
            "signal": signal,
            "kind": kind,
            "series": {"service": service, "host": host},
        });
        if let (Value::Object(r), Value::Object(o)) = (&mut record, own) {
            r.extend(o);
            r.insert("role".into(), role_name(self.cfg.role).into());
            r.insert("model".into(), model.into());
            r.insert("fingerprint".into(), fingerprint.into());
        }
        record
    }

    /// A warning alert of this stage's role.
    fn warning(
        &self,
        fingerprint: String,
        service: &str,
        status: Status,
        title: String,
        ts: i64,
        labels: &[(&str, &str)],
    ) -> Alert {
        alert(
            self.cfg.role,
            fingerprint,
            service,
            Severity::Warning,
            status,
            title,
            ts,
            labels,
        )
    }

    fn close_windows(&mut self, out: &mut Detections) {
        while let Some((&start, _)) = self.windows.first_key_value() {
            if start + WINDOW_MS + GRACE_MS > self.watermark {
                break;
            }
            let window = self.windows.remove(&start).unwrap_or_default();
            let end = start + WINDOW_MS;
            let warm = self.warm_at(end);
            for ((service, id), seen) in &window {
                self.burst(start, end, warm, service, id, seen, out);
            }
            if self.model.is_some() {
                self.score_mix(end, &window, out);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn burst(&mut self, start: i64, end: i64, warm: bool, service: &str, id: &str, seen: &Seen, out: &mut Detections) {
        let key = (service.to_string(), id.to_string());
        if !self.rates.contains_key(&key) && self.rates.len() >= self.cfg.max_keys {
            self.dropped_keys += 1;
            return;
        }
        let rate = self.rates.entry(key).or_insert(Rate {
            mean: 0.0,
            window: start,
        });
        // Windows without the template since the last one count as zeros.
        let gap = ((start - rate.window) / WINDOW_MS).max(0) as i32;
        let usual = rate.mean * (1.0 - ALPHA).powi(gap);
        let n = seen.count as f64;
        rate.mean = ALPHA * n + (1.0 - ALPHA) * usual;
        rate.window = start;
        if warm && seen.count >= self.cfg.burst_min && n >= self.cfg.burst_factor * usual.max(0.1) {
            let fingerprint = derived_fingerprint(&["log-burst", service, id]);
            out.anomalies.push(self.record(
                end,
                ("burst", "log_template_rate", "template-burst"),
                (service, None),
                &fingerprint,
                json!({
                    "template_id": id,
                    "template": seen.template,
                    "value": seen.count,
                    "expected": {"per_minute": (usual * 1000.0).round() / 1000.0},
                    "score": (1.0 - usual / n).clamp(0.0, 1.0),
                }),
            ));
            let a = self.warning(
                fingerprint,
                service,
                Status::Firing,
                format!(
                    "burst of a rare log template on {service}: {} x {} in a minute (usually {usual:.1})",
                    seen.count, seen.template
                ),
                end,
                &[("template_id", id), ("kind", "burst")],
            );
            out.alerts.push(a);
        }
    }

    fn score_mix(&mut self, end: i64, window: &BTreeMap<(String, String), Seen>, out: &mut Detections) {
        let Some(model) = &self.model else { return };
        let mut by_service: HashMap<&str, HashMap<String, u64>> = HashMap::new();
        let mut texts: HashMap<&str, &str> = HashMap::new();
        for ((service, id), seen) in window {
            by_service.entry(service).or_default().insert(id.clone(), seen.count);
            texts.insert(id, &seen.template);
        }
        let empty = HashMap::new();
        for (service, normal) in &model.services {
            let score = normal.score(by_service.get(service.as_str()).unwrap_or(&empty));
            let unusual = score.distance > score.threshold;
            match (unusual, self.episodes.get(service).cloned()) {
                (true, episode) => {
                    let fingerprint =
                        episode.unwrap_or_else(|| derived_fingerprint(&["log-pattern", service, &end.to_string()]));
                    let moved: Vec<String> = score
                        .movers
                        .iter()
                        .map(|(id, n)| {
                            let text = texts.get(id.as_str()).copied().or_else(|| normal.template_text(id));
                            format!("{n} x {}", text.unwrap_or(id))
                        })
                        .collect();
                    if !self.episodes.contains_key(service) {
                        let record = self.record(
                            end,
                            ("unusual_mix", "log_pattern", super::patterns::KIND),
                            (service, None),
                            &fingerprint,
                            json!({
                                "value": (score.distance * 1000.0).round() / 1000.0,
                                "expected": {"high": (score.threshold * 1000.0).round() / 1000.0},
                                "score": (1.0 - score.threshold / score.distance).clamp(0.0, 1.0),
                                "moved": moved,
                            }),
                        );
                        out.anomalies.push(record);
                        self.episodes.insert(service.clone(), fingerprint.clone());
                    }
                    out.alerts.push(self.warning(
                        fingerprint,
                        service,
                        Status::Firing,
                        format!(
                            "unusual log mix on {service}: distance {:.2} over {:.2}; moved: {}",
                            score.distance,
                            score.threshold,
                            moved.join("; ")
                        ),
                        end,
                        &[("kind", "unusual_mix")],
                    ));
                }
                (false, Some(fingerprint)) => {
                    self.episodes.remove(service);
                    out.alerts.push(self.warning(
                        fingerprint,
                        service,
                        Status::Resolved,
                        format!("log mix back to normal on {service}"),
                        end,
                        &[("kind", "unusual_mix")],
                    ));
                }
                (false, None) => {}
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn alert(
    role: LogAnomalyRole,
    fingerprint: String,
    service: &str,
    severity: Severity,
    status: Status,
    title: String,
    ts: i64,
    labels: &[(&str, &str)],
) -> Alert {
    let mut all = vec![
        ("role".to_string(), role_name(role).to_string()),
        ("metric".to_string(), "log_template".to_string()),
    ];
    all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Alert {
        fingerprint,
        source: "anomaly".into(),
        service: Some(service.to_string()),
        host: None,
        severity,
        status,
        title,
        ts,
        labels: all,
    }
}

fn role_name(role: LogAnomalyRole) -> &'static str {
    match role {
        LogAnomalyRole::Evidence => "evidence",
        LogAnomalyRole::Symptom => "symptom",
    }
}
