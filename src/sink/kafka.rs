//! The Kafka producer: idempotent, `acks=all`, keyed by incident id so that a compacted
//! topic keeps the latest state of each incident. `publish` sends a batch and waits for
//! every delivery report; failed messages are retried with backoff until they are
//! delivered or the pipeline is cancelled (then nothing is acknowledged upstream and the
//! input is read again after a restart).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

use super::{Message, SinkError, Topic};
use crate::config::Sinks;

pub struct KafkaSink {
    producer: FutureProducer,
    topics: Sinks,
    cancel: CancellationToken,
    /// Deliveries that had to be retried, for metrics.
    pub retries: u64,
}

impl KafkaSink {
    pub fn new(client: &ClientConfig, topics: Sinks, cancel: CancellationToken) -> Result<KafkaSink, SinkError> {
        let mut cfg = client.clone();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        let producer = cfg.create().map_err(|error| SinkError::Kafka {
            topic: "(producer)".into(),
            error,
        })?;
        Ok(KafkaSink {
            producer,
            topics,
            cancel,
            retries: 0,
        })
    }

    fn topic(&self, t: Topic) -> &str {
        match t {
            Topic::Incidents => &self.topics.incidents,
            Topic::Anomalies => &self.topics.anomalies,
            Topic::TrendReports => &self.topics.trend_reports,
            Topic::DeadLetters => &self.topics.dead_letters,
        }
    }

    pub async fn publish(&mut self, messages: &[Message]) -> Result<(), SinkError> {
        let mut pending: Vec<&Message> = messages.iter().collect();
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut futures = Vec::with_capacity(pending.len());
            for m in &pending {
                let mut headers = OwnedHeaders::new();
                for (k, v) in &m.headers {
                    headers = headers.insert(Header { key: k, value: Some(v) });
                }
                let mut rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(self.topic(m.topic))
                    .payload(m.payload.as_slice())
                    .headers(headers);
                if let Some(k) = &m.key {
                    rec = rec.key(k.as_str());
                }
                futures.push(self.producer.send(rec, Duration::from_secs(5)));
            }
            let results = futures::future::join_all(futures).await;
            let mut failed = Vec::new();
            let mut last_error = None;
            for (m, r) in pending.iter().zip(results) {
                if let Err((e, _)) = r {
                    last_error = Some((self.topic(m.topic).to_string(), e));
                    failed.push(*m);
                }
            }
            let Some((topic, error)) = last_error else {
                return Ok(());
            };
            if self.cancel.is_cancelled() || permanent(&error) {
                return Err(SinkError::Kafka { topic, error });
            }
            tracing::warn!(%topic, %error, failed = failed.len(), "delivery failed; retrying");
            self.retries += failed.len() as u64;
            pending = failed;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.cancel.cancelled() => return Err(SinkError::Kafka { topic, error }),
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    pub async fn flush(&mut self) -> Result<(), SinkError> {
        let p = self.producer.clone();
        tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(10)))
            .await
            .ok()
            .transpose()
            .map_err(|error| SinkError::Kafka {
                topic: "(flush)".into(),
                error,
            })?;
        Ok(())
    }
}

/// Errors that no retry can fix; the pipeline stops without acknowledging the input.
fn permanent(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::TopicAuthorizationFailed | C::InvalidTopic)
    )
}
