//! The Kafka producer: idempotent, `acks=all`, keyed by incident id so that a compacted
//! topic keeps the latest state of each incident. `publish` sends a batch and waits for
//! every delivery report (`send` and `settle` do it in two steps, so that the pipeline
//! processes its next batch in between); failed messages are retried with backoff until
//! they are delivered or the pipeline is cancelled (then nothing is acknowledged upstream
//! and the input is read again after a restart).
//!
//! With `--exactly-once` the producer is transactional: outputs, the state checkpoint
//! (to the state topic) and the input offsets go into one transaction, committed every
//! checkpoint interval ([`KafkaSink::commit`]). A delivery that fails then is not
//! retried: the transaction cannot commit, the pipeline stops, and the next start goes
//! on from the last committed one. Starting with the same `transactional.id` fences an
//! older instance (a zombie): its next send or commit fails and it stops.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use tokio_util::sync::CancellationToken;

use super::{Message, Sent, SinkError, Topic};
use crate::config::Sinks;
use crate::pipeline::state_topic::{self, StateRecord};
use crate::source::Offsets;

/// How long a transaction call may wait on the brokers.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// A transactional producer's own settings.
struct Transactions {
    /// Where checkpoints go, keyed by this instance's transactional id.
    state_topic: String,
    instance: String,
    /// Checkpoints committed by this process, for their ids.
    committed: u64,
}

pub struct KafkaSink {
    producer: FutureProducer,
    topics: Sinks,
    cancel: CancellationToken,
    /// Deliveries that had to be retried, for metrics.
    pub retries: u64,
    transactions: Option<Transactions>,
    /// Checkpoints written outside transactions, for their ids.
    state_writes: u64,
}

impl KafkaSink {
    pub fn new(client: &ClientConfig, topics: Sinks, cancel: CancellationToken) -> Result<KafkaSink, SinkError> {
        let mut cfg = client.clone();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            // a batch's outputs are sent together and then awaited: lingering for more
            // only delays the acknowledgement the next batch waits for
            .set("linger.ms", "0")
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
            transactions: None,
            state_writes: 0,
        })
    }

    /// A transactional sink (`transactional.id` = `id`) that checkpoints to
    /// `state_topic`. Fences any older producer with the same id and opens the first
    /// transaction.
    pub async fn transactional(
        client: &ClientConfig,
        topics: Sinks,
        cancel: CancellationToken,
        id: &str,
        state_topic: &str,
    ) -> Result<KafkaSink, SinkError> {
        let mut cfg = client.clone();
        cfg.set("transactional.id", id).set("transaction.timeout.ms", "60000");
        let mut sink = KafkaSink::new(&cfg, topics, cancel)?;
        sink.transactions = Some(Transactions {
            state_topic: state_topic.to_string(),
            instance: id.to_string(),
            committed: 0,
        });
        sink.blocking("(init transactions)", |p| {
            p.init_transactions(TXN_TIMEOUT)?;
            p.begin_transaction()
        })
        .await?;
        Ok(sink)
    }

    /// The transactional id, when outputs are published in transactions.
    pub fn transactional_id(&self) -> Option<&str> {
        self.transactions.as_ref().map(|t| t.instance.as_str())
    }

    /// Commits the open transaction with the checkpoint of the state after it and the
    /// input offsets that state has processed, then opens the next.
    pub async fn commit(
        &mut self,
        checkpoint: &[u8],
        offsets: &Offsets,
        group: ConsumerGroupMetadata,
    ) -> Result<(), SinkError> {
        let Some(t) = &mut self.transactions else {
            return Ok(());
        };
        t.committed += 1;
        let id = format!("{}-{}", chrono::Utc::now().timestamp_millis(), t.committed);
        let topic = t.state_topic.clone();
        let records = state_topic::chunks(&t.instance, &id, checkpoint);
        let sends: Vec<_> = records.iter().map(|r| self.send_state(&topic, r)).collect();
        for r in futures::future::join_all(sends).await {
            r.map_err(|error| self.failed(topic.clone(), error))?;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in offsets {
            tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*next))
                .map_err(|error| SinkError::Kafka {
                    topic: topic.clone(),
                    error,
                })?;
        }
        self.blocking("(commit transaction)", move |p| {
            p.send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)?;
            p.commit_transaction(TXN_TIMEOUT)?;
            p.begin_transaction()
        })
        .await
    }

    /// Writes a checkpoint of `instance` to the state topic `topic` outside any
    /// transaction (partitioned state) and waits until the brokers have every chunk.
    pub async fn write_state(&mut self, topic: &str, instance: &str, checkpoint: &[u8]) -> Result<(), SinkError> {
        self.state_writes += 1;
        let id = format!("{}-{}", chrono::Utc::now().timestamp_millis(), self.state_writes);
        let records = state_topic::chunks(instance, &id, checkpoint);
        let sends: Vec<_> = records.iter().map(|r| self.send_state(topic, r)).collect();
        for r in futures::future::join_all(sends).await {
            r.map_err(|error| SinkError::Kafka {
                topic: topic.to_string(),
                error,
            })?;
        }
        Ok(())
    }

    /// Aborts the open transaction (after a failure; best effort).
    pub async fn abort(&mut self) {
        if self.transactions.is_none() {
            return;
        }
        if let Err(e) = self
            .blocking("(abort transaction)", |p| p.abort_transaction(TXN_TIMEOUT))
            .await
        {
            tracing::warn!(error = %e, "transaction not aborted; the broker aborts it when it times out");
        }
    }

    /// Runs a blocking producer call off the async threads.
    async fn blocking(
        &self,
        what: &str,
        f: impl FnOnce(&FutureProducer) -> Result<(), KafkaError> + Send + 'static,
    ) -> Result<(), SinkError> {
        let p = self.producer.clone();
        let r = tokio::task::spawn_blocking(move || f(&p))
            .await
            .map_err(|e| SinkError::Failed(format!("{what}: {e}")))?;
        r.map_err(|error| self.failed(what.to_string(), error))
    }

    /// A delivery or transaction error (see [`Transactions::failed`]).
    fn failed(&self, topic: String, error: KafkaError) -> SinkError {
        match &self.transactions {
            Some(t) => t.failed(topic, error),
            None => SinkError::Kafka { topic, error },
        }
    }

    async fn send_state(&self, topic: &str, r: &StateRecord) -> Result<(), KafkaError> {
        let rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
            .key(r.key.as_str())
            .payload(r.payload.as_slice())
            .headers(headers(&r.headers));
        self.producer
            .send(rec, Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    fn topic(&self, t: Topic) -> &str {
        match t {
            Topic::Incidents => &self.topics.incidents,
            Topic::Anomalies => &self.topics.anomalies,
            Topic::TrendReports => &self.topics.trend_reports,
            Topic::DeadLetters => &self.topics.dead_letters,
        }
    }

    fn record<'m>(&'m self, m: &'m Message) -> FutureRecord<'m, str, [u8]> {
        let rec = FutureRecord::to(self.topic(m.topic))
            .payload(m.payload.as_slice())
            .headers(headers(&m.headers));
        match &m.key {
            Some(k) => rec.key(k.as_str()),
            None => rec,
        }
    }

    pub async fn publish(&mut self, messages: &[Message]) -> Result<(), SinkError> {
        self.deliver(messages.iter().collect(), Vec::new()).await
    }

    /// Queues a message, waiting up to 5 s for room in the producer's queue.
    async fn queue(&self, m: &Message) -> Result<DeliveryFuture, KafkaError> {
        let since = std::time::Instant::now();
        loop {
            match self.producer.send_result(self.record(m)) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if since.elapsed() < Duration::from_secs(5) && !self.cancel.is_cancelled() =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Hands a batch's outputs to the producer without waiting for their
    /// acknowledgements: [`KafkaSink::settle`] waits for them, so that the pipeline can
    /// process its next batch meanwhile. Messages the producer cannot queue now (its
    /// queue is full) are sent, in order, when the batch is settled.
    pub fn send(&self, messages: Vec<Message>) -> Sent {
        let mut queued = Vec::with_capacity(messages.len());
        for m in &messages {
            match self.producer.send_result(self.record(m)) {
                Ok(delivery) => queued.push(delivery),
                Err(_) => break,
            }
        }
        Sent { messages, queued }
    }

    /// Waits until every message of `sent` is acknowledged, retrying as
    /// [`KafkaSink::publish`] does, and hands the messages back.
    pub async fn settle(&mut self, sent: Sent) -> Result<Vec<Message>, SinkError> {
        let Sent { messages, queued } = sent;
        self.deliver(messages.iter().collect(), queued).await?;
        Ok(messages)
    }

    /// Delivers `pending`, whose first `queued.len()` messages are queued already.
    async fn deliver(&mut self, mut pending: Vec<&Message>, mut queued: Vec<DeliveryFuture>) -> Result<(), SinkError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            // the rest are queued one after the other, in order, each once there is room
            let mut deliveries: Vec<Result<DeliveryFuture, KafkaError>> = queued.drain(..).map(Ok).collect();
            for m in &pending[deliveries.len()..] {
                deliveries.push(self.queue(m).await);
            }
            let mut results = Vec::with_capacity(deliveries.len());
            for d in deliveries {
                results.push(match d {
                    Ok(delivery) => match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(e),
                        Err(_) => Err(KafkaError::Canceled),
                    },
                    Err(e) => Err(e),
                });
            }
            let mut failed = Vec::new();
            let mut last_error = None;
            for (m, r) in pending.iter().zip(results) {
                if let Err(e) = r {
                    // which message, so that a permanent failure can be traced
                    let what = format!(
                        "{} (key {}, {} bytes)",
                        self.topic(m.topic),
                        m.key.as_deref().unwrap_or("none"),
                        m.payload.len()
                    );
                    last_error = Some((what, e));
                    failed.push(*m);
                }
            }
            let Some((topic, error)) = last_error else {
                return Ok(());
            };
            // in a transaction a failed send fails the transaction: no retry
            if let Some(t) = &self.transactions {
                return Err(t.failed(topic, error));
            }
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

impl Transactions {
    /// The error of a transaction that cannot commit, saying so plainly when another
    /// instance with this transactional id has fenced this one.
    fn failed(&self, topic: String, error: KafkaError) -> SinkError {
        use rdkafka::types::RDKafkaErrorCode as C;
        let fenced = matches!(
            error.rdkafka_error_code(),
            Some(C::Fenced | C::ProducerFenced | C::InvalidProducerEpoch)
        );
        if fenced {
            SinkError::Failed(format!(
                "fenced: another instance started with transactional id {}; this one stops, and its open transaction does not commit ({error})",
                self.instance
            ))
        } else {
            SinkError::Kafka { topic, error }
        }
    }
}

fn headers(h: &[(String, Vec<u8>)]) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(h.len());
    for (k, v) in h {
        out = out.insert(Header { key: k, value: Some(v) });
    }
    out
}

/// Errors that no retry can fix; the pipeline stops without acknowledging the input.
fn permanent(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::TopicAuthorizationFailed | C::InvalidTopic)
    )
}
