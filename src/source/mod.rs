//! Sources: where raw records come from, and where their offsets are acknowledged.
//!
//! * [`kafka::KafkaSource`]: a consumer group on the logs, metrics and events topics;
//!   offsets are stored only when the pipeline acknowledges a batch.
//! * [`file::FileSource`]: JSON-lines or text files and stdin, for replay; a scenario
//!   directory (`logs.jsonl`, `metrics.jsonl`, `events.jsonl`) is merged by event time.
//! * [`embedded::EmbeddedBroker`]: librdkafka's mock cluster, for `lookout run` with no
//!   brokers and for tests; [`scenario`] writes a built-in scenario into it.

pub mod embedded;
pub mod file;
pub mod kafka;
mod record;
pub mod scenario;

pub use record::{dead_letter_json, partition_runs, DeadLetter, RawRecord, RecordMeta};

/// Input positions: (topic, partition) → the next offset to process.
pub type Offsets = std::collections::BTreeMap<(String, i32), i64>;

/// A source failed: an external system's or the environment's fault.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{file}: {error}")]
    Io { file: String, error: std::io::Error },
    #[error("{0}")]
    Config(String),
}
