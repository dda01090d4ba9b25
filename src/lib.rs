//! Lookout: a stream-processing AIOps pipeline.
//!
//! ```text
//! Kafka topics / files / embedded broker          source/    RawRecord batches, offsets to acknowledge
//!        │
//!        ▼
//! bytes → Arrow RecordBatch per stream            decode/    logs · metrics · events, bad records as values
//!        ▼
//! log templates: template_id, template, params    logs/      online mining; `lookout templates`, `train`
//!        ▼
//! analyst SQL on DataFusion                       sql/       views and alert rules from pipelines/<name>/*.sql
//!        ▼
//! anomaly detection on metrics and log errors     model/     streaming detectors, one per series;
//!                                                            a service's signals together (k-means);
//!                                                            NAB scoring, `lookout detect`
//!                                                 logs/      new templates, bursts, unusual template mixes
//!        ▼
//! alerts + changes → incidents                    correlate/ dedup, grouping, lifecycle, explanations
//!        ▼
//! trend reports: levels, forecasts, thresholds,   report/    per period on event time;
//! incident analytics (MTTD/MTTR, noise, types)               `lookout report`, `forecast-quality`
//!        ▼
//! incidents · anomalies · trend reports · dead    sink/      Kafka producer, JSON-lines files, stdout
//! letters
//! ```
//!
//! `observe/` serves what operators watch: Prometheus metrics, health and readiness.
//!
//! `pipeline/` wires the stages: it takes a batch from a source, runs it through the
//! stages, publishes what they return, waits for every acknowledgement and only then hands
//! the offsets back to the source. Stages never call each other and never see Kafka.
//! `config/` turns files on disk (pipeline.toml, SQL, the service catalog) into validated
//! values before anything runs.

pub mod config;
pub mod correlate;
pub mod decode;
pub mod logs;
pub mod model;
pub mod observe;
pub mod pipeline;
pub mod report;
pub mod sink;
pub mod source;
pub mod sql;
