//! What operators see of a running pipeline: Prometheus metrics on `/metrics`, liveness
//! on `/health`, readiness on `/ready` ([`http`]).
//!
//! The pipeline publishes a [`Snapshot`] into the shared [`Health`] after every batch;
//! the HTTP side only reads it, so scraping never slows processing down. Ready means
//! the models loaded (a bad model fails start before this exists) and the pipeline has
//! processed its first batch from the source (the consumer is polling).
//!
//! With partitioned state the instance publishes the sum of its tasks' snapshots (see
//! [`crate::pipeline::tasks`]), and every task its own web-view state, merged when read.

pub mod board;
pub mod http;
pub mod progress;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::pipeline::Stats;

/// What one batch left behind, for scraping.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub stats: Stats,
    pub open_incidents: usize,
    pub watched_series: usize,
    /// Points the detectors hold for event time to pass them.
    pub held_points: usize,
    pub templates: usize,
    /// Open (window, key) groups of windowed SQL.
    pub open_windows: usize,
    /// Optional models and whether one is in use.
    pub models: Vec<(&'static str, bool)>,
}

/// Shared between the pipeline (writer) and the HTTP endpoints (readers).
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    snapshot: Mutex<Snapshot>,
    /// The web view's `/api/state`, rendered by the pipeline.
    board: Mutex<String>,
    /// Consumer lag per (topic, partition).
    lag: Mutex<Vec<(String, i32, i64)>>,
    batches: Mutex<Histogram>,
    /// The web view's state of each task (partitioned state).
    task_boards: Mutex<BTreeMap<i32, String>>,
}

impl Snapshot {
    /// Adds another processor's (the tasks of one instance).
    pub fn add(&mut self, o: &Snapshot) {
        self.stats.add(&o.stats);
        self.open_incidents += o.open_incidents;
        self.watched_series += o.watched_series;
        self.held_points += o.held_points;
        self.templates += o.templates;
        self.open_windows += o.open_windows;
        self.models.clone_from(&o.models);
    }
}

/// Upper bounds (seconds) of the batch latency histogram's buckets.
const BATCH_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A Prometheus histogram: counts per bucket (not cumulative), sum and count.
#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BATCH_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Health {
    pub fn publish(&self, s: Snapshot) {
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = s;
        self.ready.store(true, Ordering::Release);
    }

    /// A task that has moved to another instance: its web-view state goes.
    pub fn retire(&self, task: i32) {
        self.task_boards.lock().unwrap_or_else(|e| e.into_inner()).remove(&task);
    }

    /// One batch from the source handled end to end (processed, published, acked).
    pub fn observe_batch(&self, seconds: f64) {
        let mut h = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = BATCH_BUCKETS.iter().position(|b| seconds <= *b) {
            h.counts[i] += 1;
        }
        h.sum += seconds;
        h.count += 1;
    }

    pub fn set_lag(&self, lag: Vec<(String, i32, i64)>) {
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }

    /// The web view's state of the pipeline, or of one task of it.
    pub fn set_board(&self, task: Option<i32>, state: String) {
        match task {
            None => *self.board.lock().unwrap_or_else(|e| e.into_inner()) = state,
            Some(p) => {
                self.task_boards
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(p, state);
            }
        }
    }

    /// `/api/state` for the web view.
    pub fn board(&self) -> String {
        {
            let boards = self.task_boards.lock().unwrap_or_else(|e| e.into_inner());
            if !boards.is_empty() {
                return board::merge(boards.values());
            }
        }
        let b = self.board.lock().unwrap_or_else(|e| e.into_inner());
        if b.is_empty() {
            r#"{"counters":{},"incidents":[],"signals":[]}"#.to_string()
        } else {
            b.clone()
        }
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The Prometheus text exposition (version 0.0.4) of the latest snapshot.
    pub fn render(&self) -> String {
        let s = self.snapshot();
        let t = &s.stats;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        metric(
            "lookout_records_total",
            "counter",
            "Input records decoded, by stream.",
            &[
                ("{stream=\"logs\"}", t.logs as f64),
                ("{stream=\"metrics\"}", t.metrics as f64),
                ("{stream=\"events\"}", t.events as f64),
            ],
        );
        metric(
            "lookout_records_read_total",
            "counter",
            "Input records read from the source, decodable or not.",
            &[("", t.records_in as f64)],
        );
        metric(
            "lookout_dead_letters_total",
            "counter",
            "Records that could not be processed, sent to dead letters with the reason.",
            &[("", t.dead_letters as f64)],
        );
        metric(
            "lookout_batches_total",
            "counter",
            "Batches processed.",
            &[("", t.batches as f64)],
        );
        metric(
            "lookout_rule_alerts_total",
            "counter",
            "Alerts raised by SQL alert rules.",
            &[("", t.rule_alerts as f64)],
        );
        metric(
            "lookout_anomalies_total",
            "counter",
            "Anomalies published.",
            &[("", t.anomalies as f64)],
        );
        metric(
            "lookout_incident_updates_total",
            "counter",
            "Incident messages published (open, updated, resolved, reopened).",
            &[("", t.incident_updates as f64)],
        );
        metric(
            "lookout_open_incidents",
            "gauge",
            "Incidents open now.",
            &[("", s.open_incidents as f64)],
        );
        metric(
            "lookout_watched_series",
            "gauge",
            "Series with a detector.",
            &[("", s.watched_series as f64)],
        );
        metric(
            "lookout_held_points",
            "gauge",
            "Points the detectors hold until event time on every live partition has passed them.",
            &[("", s.held_points as f64)],
        );
        metric(
            "lookout_dropped_series_total",
            "counter",
            "Series not watched because detection.max_series were watched already.",
            &[("", t.dropped_series as f64)],
        );
        metric(
            "lookout_out_of_order_points_total",
            "counter",
            "Points the detectors saw older than their series' newest point (scored as they came).",
            &[("", t.out_of_order_points as f64)],
        );
        metric(
            "lookout_late_records_total",
            "counter",
            "Rows of windowed SQL that arrived after their window closed (dropped, or folded into a kept window).",
            &[("", t.late_records as f64)],
        );
        metric(
            "lookout_checkpoints_total",
            "counter",
            "State checkpoints written (each followed by an offset commit).",
            &[("", t.checkpoints as f64)],
        );
        metric(
            "lookout_checkpoint_failures_total",
            "counter",
            "Checkpoints that could not be written (offsets wait for the next one).",
            &[("", t.checkpoint_failures as f64)],
        );
        metric(
            "lookout_checkpoint_bytes",
            "gauge",
            "Size of the latest checkpoint.",
            &[("", t.checkpoint_bytes as f64)],
        );
        metric(
            "lookout_skipped_records_total",
            "counter",
            "Records skipped at start because the restored checkpoint holds them.",
            &[("", t.skipped_records as f64)],
        );
        metric(
            "lookout_window_corrections_total",
            "counter",
            "Closed windows emitted again because late rows changed them.",
            &[("", t.window_corrections as f64)],
        );
        metric(
            "lookout_open_windows",
            "gauge",
            "Open (window, key) groups of windowed SQL: what window state grows with.",
            &[("", s.open_windows as f64)],
        );
        metric(
            "lookout_signal_points_total",
            "counter",
            "Points of SQL signals handed to the anomaly detectors.",
            &[("", t.signal_points as f64)],
        );
        metric(
            "lookout_log_templates",
            "gauge",
            "Log templates known to the miner.",
            &[("", s.templates as f64)],
        );
        metric(
            "lookout_template_changes_total",
            "counter",
            "Log templates created, generalised or evicted.",
            &[("", t.template_changes as f64)],
        );
        metric(
            "lookout_model_reloads_total",
            "counter",
            "Model files reloaded after they changed.",
            &[("", t.model_reloads as f64)],
        );
        let models: Vec<(String, f64)> = s
            .models
            .iter()
            .map(|(m, loaded)| (format!("{{model=\"{m}\"}}"), if *loaded { 1.0 } else { 0.0 }))
            .collect();
        let models: Vec<(&str, f64)> = models.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "lookout_model_loaded",
            "gauge",
            "1 when the optional model is in use.",
            &models,
        );
        let st = &t.time;
        metric(
            "lookout_stage_seconds_total",
            "counter",
            "Wall time spent in each processing stage.",
            &[
                ("{stage=\"decode\"}", st.decode as f64 / 1e9),
                ("{stage=\"templates\"}", st.templates as f64 / 1e9),
                ("{stage=\"sql\"}", st.sql as f64 / 1e9),
                ("{stage=\"detectors\"}", st.detectors as f64 / 1e9),
                ("{stage=\"correlation\"}", st.correlation as f64 / 1e9),
            ],
        );
        let lag = self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let lag: Vec<(String, f64)> = lag
            .iter()
            .map(|(t, p, l)| (format!("{{topic=\"{t}\",partition=\"{p}\"}}"), *l as f64))
            .collect();
        let lag: Vec<(&str, f64)> = lag.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "lookout_consumer_lag_records",
            "gauge",
            "Records not yet consumed, per input partition (from librdkafka statistics, every 5 s).",
            &lag,
        );
        metric(
            "lookout_ready",
            "gauge",
            "1 once models are loaded and the first batch is processed.",
            &[("", if self.ready() { 1.0 } else { 0.0 })],
        );
        {
            let h = self.batches.lock().unwrap_or_else(|e| e.into_inner());
            let name = "lookout_batch_duration_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} Time from a batch leaving the source to its offsets being stored (processed, published, acknowledged).\n# TYPE {name} histogram"
            );
            let mut cumulative = 0;
            for (b, c) in BATCH_BUCKETS.iter().zip(h.counts) {
                cumulative += c;
                let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum {}", h.sum);
            let _ = writeln!(out, "{name}_count {}", h.count);
        }
        out
    }
}
