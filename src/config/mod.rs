//! Configuration: the files an operator or analyst writes, parsed strictly (unknown
//! fields are errors) and turned into validated values before anything runs.
//!
//! `pipelines/<name>/pipeline.toml` names the topics, encodings, batch sizes,
//! correlation settings and the service catalog of one pipeline; the `*.sql` files
//! beside it are read by [`crate::sql`]. Errors name the file, and the line where the
//! parser knows it.

pub mod catalog;
pub mod reference;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use catalog::{Catalog, ServiceInfo};

use crate::decode::{DecodeConfig, Encoding, LineFormat, StreamDecoding};

/// A configuration error: always the user's to fix; retrying cannot help.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}:{line}: {message}")]
    Parse { file: String, line: usize, message: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

impl ConfigError {
    pub fn io(path: &Path, source: std::io::Error) -> ConfigError {
        ConfigError::Io {
            file: path.display().to_string(),
            source,
        }
    }
}

/// `pipeline.toml` as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineToml {
    /// The pipeline's name: its models live in `models/<name>/`.
    pub name: String,
    /// What the pipeline is for, for people.
    #[serde(default)]
    pub description: String,
    /// Service catalog file, relative to the pipeline directory.
    #[serde(default)]
    pub catalog: Option<PathBuf>,
    #[serde(default)]
    pub sources: Sources,
    #[serde(default)]
    pub sinks: Sinks,
    #[serde(default)]
    pub batch: Batch,
    #[serde(default)]
    pub correlation: Correlation,
    #[serde(default)]
    pub limits: Limits,
    /// Metrics to watch for anomalies.
    #[serde(default)]
    pub detect: Vec<crate::model::DetectSpec>,
    #[serde(default)]
    pub detection: crate::model::DetectionConfig,
    #[serde(default)]
    pub templates: Templates,
    #[serde(default)]
    pub log_anomalies: crate::logs::LogAnomalyConfig,
    #[serde(default)]
    pub windows: Windows,
    #[serde(default)]
    pub trends: crate::report::TrendConfig,
}

/// `[windows]`: event-time progress for windowed SQL.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Windows {
    /// A partition that delivers nothing for this many seconds (wall time) stops
    /// holding windows open; when all are quiet, time moves on with the clock.
    #[serde(default = "default_idle_s")]
    pub idle_s: f64,
}

impl Default for Windows {
    fn default() -> Windows {
        Windows {
            idle_s: default_idle_s(),
        }
    }
}

impl Windows {
    pub fn idle_ms(&self) -> u64 {
        (self.idle_s.max(0.0) * 1000.0) as u64
    }
}

fn default_idle_s() -> f64 {
    30.0
}

/// `[templates]`: log template mining.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    /// Regular expressions whose matches are parameters (a source's known value shapes).
    #[serde(default)]
    pub masks: Vec<String>,
    /// Distinct words at one position before it becomes a parameter.
    #[serde(default = "default_word_threshold")]
    pub word_threshold: usize,
    /// At most this many templates; the least recently seen is evicted past it.
    #[serde(default = "default_max_templates")]
    pub max_templates: usize,
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            masks: Vec::new(),
            word_threshold: default_word_threshold(),
            max_templates: default_max_templates(),
        }
    }
}

fn default_word_threshold() -> usize {
    4
}
fn default_max_templates() -> usize {
    10_000
}

/// Input topics and their encodings.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    #[serde(default = "logs_source")]
    pub logs: SourceStream,
    #[serde(default = "metrics_source")]
    pub metrics: SourceStream,
    #[serde(default = "events_source")]
    pub events: SourceStream,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            logs: logs_source(),
            metrics: metrics_source(),
            events: events_source(),
        }
    }
}

fn logs_source() -> SourceStream {
    SourceStream::named("logs")
}
fn metrics_source() -> SourceStream {
    SourceStream::named("metrics")
}
fn events_source() -> SourceStream {
    SourceStream::named("events")
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceStream {
    /// The input topic.
    pub topic: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// For raw text lines, e.g. `<Date> <Time> <Level> <Component>: <Content>`.
    #[serde(default)]
    pub line_format: Option<String>,
    /// Service of records that name none (else `unknown`).
    #[serde(default)]
    pub default_service: Option<String>,
}

impl SourceStream {
    fn named(topic: &str) -> SourceStream {
        SourceStream {
            topic: topic.into(),
            encoding: Encoding::Auto,
            line_format: None,
            default_service: None,
        }
    }
}

/// Output topics.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sinks {
    /// Topic of incident updates (`lookout.incident.v1`).
    #[serde(default = "incidents_topic")]
    pub incidents: String,
    /// Topic of anomalies (`lookout.anomaly.v1`).
    #[serde(default = "anomalies_topic")]
    pub anomalies: String,
    /// Topic of trend reports.
    #[serde(default = "trend_topic")]
    pub trend_reports: String,
    /// Topic of records that could not be processed (original bytes, reason in headers).
    #[serde(default = "dead_topic")]
    pub dead_letters: String,
}

impl Default for Sinks {
    fn default() -> Self {
        Sinks {
            incidents: incidents_topic(),
            anomalies: anomalies_topic(),
            trend_reports: trend_topic(),
            dead_letters: dead_topic(),
        }
    }
}

fn incidents_topic() -> String {
    "incidents".into()
}
fn anomalies_topic() -> String {
    "anomalies".into()
}
fn trend_topic() -> String {
    "trend-reports".into()
}
fn dead_topic() -> String {
    "dead-letters".into()
}

/// When a poll batch closes: at `max_records`, or `max_wait_ms` after its first record.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// A batch closes at this many records...
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// ... or this long after its first record.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            max_records: default_max_records(),
            max_wait_ms: default_max_wait_ms(),
        }
    }
}

fn default_max_records() -> usize {
    8192
}
fn default_max_wait_ms() -> u64 {
    200
}

/// Correlation settings (event time, seconds).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Correlation {
    /// An alert joins an incident whose last alert is at most this old.
    #[serde(default = "default_group_window")]
    pub group_window_s: u64,
    /// An incident with no firing alert for this long is resolved.
    #[serde(default = "default_quiet")]
    pub quiet_period_s: u64,
    /// A resolved incident whose alert fires again within this time is reopened.
    #[serde(default = "default_reopen")]
    pub reopen_window_s: u64,
    /// Deploys and changes this long before the first symptom are suspects.
    #[serde(default = "default_change_lookback")]
    pub change_lookback_s: u64,
    /// Topology grouping follows at most this many dependency edges.
    #[serde(default = "default_max_hops")]
    pub max_hops: usize,
    /// An alert that flips between firing and resolved `flap_threshold` times within
    /// `flap_window_s` is flapping: its flips stop changing the incident.
    #[serde(default = "default_flap_window")]
    pub flap_window_s: u64,
    /// Flips within `flap_window_s` that make an alert flapping.
    #[serde(default = "default_flap_threshold")]
    pub flap_threshold: usize,
    /// Maintenance windows: alerts of these services or hosts in this time are
    /// suppressed or marked. Windows also come from events labelled `maintenance =
    /// "start"` / `"end"` (scoped by their service and host).
    #[serde(default)]
    pub maintenance: Vec<Maintenance>,
    /// Hold a new incident as a candidate until it is confirmed (a critical alert, or a
    /// symptom anomaly with an alert or on a second service); `false` opens on any alert.
    #[serde(default = "yes")]
    pub require_confirmation: bool,
    /// Topology groups a new alert with a service whose trouble started at most this
    /// long before it (trouble spreads to callers within minutes).
    #[serde(default = "default_spread")]
    pub spread_window_s: u64,
    /// A candidate with this many distinct alerts (not anomalies) is confirmed whatever
    /// their severity; 0 turns the rule off.
    #[serde(default)]
    pub confirm_after_alerts: usize,
    /// An alert whose service shows symptoms this long confirms a candidate.
    #[serde(default = "default_persist")]
    pub persist_s: u64,
    /// An incident takes new alerts for this long after it opened; later trouble is
    /// grouped afresh (repeats of its own alerts still update it). Without it, trouble
    /// that keeps coming back before the incident goes quiet grows one incident forever.
    #[serde(default = "default_max_grouping")]
    pub max_grouping_s: u64,
}

impl Default for Correlation {
    fn default() -> Self {
        Correlation {
            group_window_s: default_group_window(),
            quiet_period_s: default_quiet(),
            reopen_window_s: default_reopen(),
            change_lookback_s: default_change_lookback(),
            max_hops: default_max_hops(),
            flap_window_s: default_flap_window(),
            flap_threshold: default_flap_threshold(),
            maintenance: Vec::new(),
            require_confirmation: true,
            persist_s: default_persist(),
            confirm_after_alerts: 0,
            spread_window_s: default_spread(),
            max_grouping_s: default_max_grouping(),
        }
    }
}

fn default_max_grouping() -> u64 {
    6 * 3600
}
fn default_group_window() -> u64 {
    600
}
fn default_quiet() -> u64 {
    1800
}
fn default_reopen() -> u64 {
    900
}
fn default_change_lookback() -> u64 {
    1800
}
fn default_max_hops() -> usize {
    1
}
fn default_flap_window() -> u64 {
    1800
}
fn default_flap_threshold() -> usize {
    4
}

/// What a maintenance window does to the alerts it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaintenanceMode {
    /// Drop them (counted).
    Suppress,
    /// Keep them in incidents, marked; they do not confirm a candidate by themselves.
    Mark,
}

/// `[[correlation.maintenance]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// Services the window covers.
    #[serde(default)]
    pub services: Vec<String>,
    /// Hosts the window covers.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
    pub mode: MaintenanceMode,
    /// Why, for the incident's timeline.
    #[serde(default)]
    pub reason: String,
}
fn default_spread() -> u64 {
    300
}
fn default_persist() -> u64 {
    600
}
fn yes() -> bool {
    true
}

/// Input size limits.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Larger records are dead letters.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// How much of a bad record a dead letter keeps (below the broker's message limit).
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: default_max_record_bytes(),
            dead_letter_max_bytes: default_dead_letter_max_bytes(),
        }
    }
}

fn default_max_record_bytes() -> usize {
    1 << 20
}
fn default_dead_letter_max_bytes() -> usize {
    512 << 10
}

/// A pipeline directory, read and checked (the SQL is planned by [`crate::sql`]).
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub dir: PathBuf,
    pub spec: PipelineToml,
    pub decode: DecodeConfig,
    pub catalog: Catalog,
    /// Where the catalog came from, so that a running pipeline can reload it.
    pub catalog_path: Option<PathBuf>,
    pub miner: crate::logs::MinerConfig,
}

impl PipelineConfig {
    /// Reads `dir/pipeline.toml`, compiles line formats and loads the catalog
    /// (`catalog_override` wins over the file's `catalog`).
    pub fn load(dir: &Path, catalog_override: Option<&Path>) -> Result<PipelineConfig, ConfigError> {
        let file = dir.join("pipeline.toml");
        let text = std::fs::read_to_string(&file).map_err(|e| ConfigError::io(&file, e))?;
        let spec: PipelineToml = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            file: file.display().to_string(),
            line: e.span().map_or(0, |s| text[..s.start].matches('\n').count() + 1),
            message: e.message().to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            file: file.display().to_string(),
            message,
        };
        let stream = |name: crate::decode::Stream, s: &SourceStream| -> Result<StreamDecoding, ConfigError> {
            if !s.encoding.allowed(name) {
                return Err(invalid(format!(
                    "sources.{name}.encoding {:?} cannot carry {name}",
                    s.encoding
                )));
            }
            let line_format = match &s.line_format {
                Some(f) => Some(LineFormat::parse(f).map_err(|m| invalid(format!("sources.{name}.line_format: {m}")))?),
                None if s.encoding == Encoding::Line => {
                    return Err(invalid(format!(
                        "sources.{name}: encoding \"line\" needs a line_format"
                    )))
                }
                None => None,
            };
            Ok(StreamDecoding {
                encoding: s.encoding,
                line_format,
                default_service: s.default_service.clone(),
                // known once the SQL is planned (`Processor::build`)
                skip_attrs: false,
            })
        };
        use crate::decode::Stream;
        let decode = DecodeConfig {
            logs: stream(Stream::Logs, &spec.sources.logs)?,
            metrics: stream(Stream::Metrics, &spec.sources.metrics)?,
            events: stream(Stream::Events, &spec.sources.events)?,
            max_record_bytes: spec.limits.max_record_bytes,
            dead_letter_max_bytes: spec.limits.dead_letter_max_bytes,
        };
        for (i, m) in spec.correlation.maintenance.iter().enumerate() {
            let (start, end) = (
                crate::decode::time::parse_str(&m.start),
                crate::decode::time::parse_str(&m.end),
            );
            match (start, end) {
                (Some(s), Some(e)) if s < e => {}
                _ => {
                    return Err(invalid(format!(
                        "correlation.maintenance[{i}]: start and end must be RFC 3339 times, start first"
                    )))
                }
            }
            if m.services.is_empty() && m.hosts.is_empty() {
                return Err(invalid(format!("correlation.maintenance[{i}]: name services or hosts")));
            }
        }
        spec.trends.validate().map_err(invalid)?;
        if spec.batch.max_records == 0 {
            return Err(invalid("batch.max_records must be at least 1".into()));
        }
        let t = &spec.templates;
        if t.word_threshold < 2 || t.max_templates == 0 {
            return Err(invalid(
                "templates.word_threshold must be at least 2, max_templates at least 1".into(),
            ));
        }
        let miner = crate::logs::MinerConfig {
            masks: t
                .masks
                .iter()
                .enumerate()
                .map(|(i, m)| regex::Regex::new(m).map_err(|e| invalid(format!("templates.masks[{i}]: {e}"))))
                .collect::<Result<_, _>>()?,
            word_threshold: t.word_threshold,
            max_templates: t.max_templates,
            ..crate::logs::MinerConfig::default()
        };
        let catalog_path = catalog_override
            .map(Path::to_path_buf)
            .or_else(|| spec.catalog.as_ref().map(|c| dir.join(c)));
        let catalog = match &catalog_path {
            Some(p) => Catalog::load(p)?,
            None => Catalog::default(),
        };
        Ok(PipelineConfig {
            dir: dir.to_path_buf(),
            spec,
            decode,
            catalog,
            catalog_path,
            miner,
        })
    }

    /// The topic each stream is read from.
    pub fn topics(&self) -> [(crate::decode::Stream, &str); 3] {
        use crate::decode::Stream;
        [
            (Stream::Logs, self.spec.sources.logs.topic.as_str()),
            (Stream::Metrics, self.spec.sources.metrics.topic.as_str()),
            (Stream::Events, self.spec.sources.events.topic.as_str()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<PipelineConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pipeline.toml"), toml).unwrap();
        PipelineConfig::load(dir.path(), None)
    }

    #[test]
    fn unknown_fields_name_file_and_line() {
        let err = load("name = \"x\"\n\n[batch]\nmax_recods = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pipeline.toml:4"), "{err}");
        assert!(err.contains("max_recods"), "{err}");
    }

    #[test]
    fn encodings_must_fit_their_stream() {
        let err = load("name = \"x\"\n[sources.logs]\ntopic = \"l\"\nencoding = \"influx\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot carry logs"), "{err}");
        let err = load("name = \"x\"\n[sources.logs]\ntopic = \"l\"\nencoding = \"line\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a line_format"), "{err}");
    }

    #[test]
    fn maintenance_windows_are_checked() {
        let ok = "name = \"x\"\n[[correlation.maintenance]]\nservices = [\"db\"]\nstart = \"2025-03-04T00:00:00Z\"\nend = \"2025-03-04T01:00:00Z\"\nmode = \"mark\"\n";
        assert_eq!(load(ok).unwrap().spec.correlation.maintenance.len(), 1);
        let backwards = ok
            .replace("T01:00", "T00:00")
            .replace("start = \"2025-03-04T00:00:00Z\"", "start = \"2025-03-05T00:00:00Z\"");
        assert!(load(&backwards).unwrap_err().to_string().contains("maintenance[0]"));
        let nothing = ok.replace("services = [\"db\"]\n", "");
        assert!(load(&nothing)
            .unwrap_err()
            .to_string()
            .contains("name services or hosts"));
    }

    #[test]
    fn template_masks_are_compiled_at_load() {
        let err = load("name = \"x\"\n[templates]\nmasks = [\"ok\", \"(\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pipeline.toml") && err.contains("templates.masks[1]"),
            "{err}"
        );
        let c = load("name = \"x\"\n[templates]\nmasks = [\"blk_-?\\\\d+\"]\nword_threshold = 3\n").unwrap();
        assert_eq!((c.miner.masks.len(), c.miner.word_threshold), (1, 3));
        assert!(load("name = \"x\"\n[templates]\nword_threshold = 1\n").is_err());
    }

    #[test]
    fn defaults() {
        let c = load("name = \"x\"\n").unwrap();
        assert_eq!(c.spec.sinks.incidents, "incidents");
        assert_eq!(c.topics()[2].1, "events");
    }
}
