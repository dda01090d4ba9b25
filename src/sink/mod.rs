//! Sinks: where the pipeline's outputs go once they are produced. A sink's `publish`
//! returns only when every message is durably written (acknowledged by the broker, or
//! flushed to the file), because the pipeline stores input offsets right after. `send`
//! and `settle` split that in two, so that a batch's acknowledgements are awaited while
//! the next batch is processed; offsets are still stored only after `settle`.

pub mod file;
pub mod json_text;
pub mod kafka;

use crate::source::DeadLetter;

/// The output topics of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Incidents,
    Anomalies,
    TrendReports,
    DeadLetters,
}

impl Topic {
    pub const ALL: [Topic; 4] = [
        Topic::Incidents,
        Topic::Anomalies,
        Topic::TrendReports,
        Topic::DeadLetters,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Topic::Incidents => "incidents",
            Topic::Anomalies => "anomalies",
            Topic::TrendReports => "trend-reports",
            Topic::DeadLetters => "dead-letters",
        }
    }
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: Topic,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Message {
    pub fn json(topic: Topic, key: Option<String>, value: &serde_json::Value) -> Message {
        Message {
            topic,
            key,
            payload: value.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// A message whose payload is already JSON text.
    pub fn text(topic: Topic, key: Option<String>, payload: Vec<u8>) -> Message {
        Message {
            topic,
            key,
            payload,
            headers: Vec::new(),
        }
    }

    /// A dead letter keeps the original bytes; the reason travels in headers.
    pub fn dead_letter(d: &DeadLetter) -> Message {
        Message {
            topic: Topic::DeadLetters,
            key: d.meta.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: d.payload.clone(),
            headers: d.headers(),
        }
    }
}

/// A sink failed: an external system's fault; retrying may help.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("kafka delivery to {topic} failed: {error}")]
    Kafka {
        topic: String,
        error: rdkafka::error::KafkaError,
    },
    #[error("writing {file}: {error}")]
    Io { file: String, error: std::io::Error },
    #[error("{0}")]
    Failed(String),
}

/// A batch's outputs handed to a sink, not yet known to be written ([`Sink::send`]).
pub struct Sent {
    messages: Vec<Message>,
    /// The Kafka deliveries of the first messages: those the producer queued at once.
    queued: Vec<rdkafka::producer::DeliveryFuture>,
}

/// Where outputs go.
pub enum Sink {
    Kafka(kafka::KafkaSink),
    Files(file::FileSink),
}

impl Sink {
    /// Publishes and waits until every message is acknowledged.
    pub async fn publish(&mut self, messages: &[Message]) -> Result<(), SinkError> {
        match self {
            Sink::Kafka(k) => k.publish(messages).await,
            Sink::Files(f) => f.publish(messages),
        }
    }

    /// Hands a batch's outputs over without waiting for them to be written;
    /// [`Sink::settle`] waits. Between the two the pipeline processes its next batch.
    pub fn send(&mut self, messages: Vec<Message>) -> Sent {
        match self {
            Sink::Kafka(k) => k.send(messages),
            Sink::Files(_) => Sent {
                messages,
                queued: Vec::new(),
            },
        }
    }

    /// Waits until every message [`Sink::send`] handed over is written, as
    /// [`Sink::publish`] does, and hands them back.
    pub async fn settle(&mut self, sent: Sent) -> Result<Vec<Message>, SinkError> {
        match self {
            Sink::Kafka(k) => k.settle(sent).await,
            Sink::Files(f) => {
                f.publish(&sent.messages)?;
                Ok(sent.messages)
            }
        }
    }

    /// The transactional id when outputs are published in transactions.
    pub fn transactional_id(&self) -> Option<&str> {
        match self {
            Sink::Kafka(k) => k.transactional_id(),
            Sink::Files(_) => None,
        }
    }

    /// Commits the open transaction (see [`kafka::KafkaSink::commit`]).
    pub async fn commit(
        &mut self,
        checkpoint: &[u8],
        offsets: &crate::source::Offsets,
        group: rdkafka::consumer::ConsumerGroupMetadata,
    ) -> Result<(), SinkError> {
        match self {
            Sink::Kafka(k) => k.commit(checkpoint, offsets, group).await,
            Sink::Files(_) => Ok(()),
        }
    }

    /// Aborts the open transaction, if any.
    pub async fn abort(&mut self) {
        if let Sink::Kafka(k) = self {
            k.abort().await;
        }
    }

    pub async fn close(&mut self) -> Result<(), SinkError> {
        match self {
            Sink::Kafka(k) => k.flush().await,
            Sink::Files(f) => f.flush(),
        }
    }
}
