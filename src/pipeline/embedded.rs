//! The embedded default: `lookout run` with no brokers. An in-process Kafka-protocol
//! broker (librdkafka's mock cluster) on a local port, the built-in scenario written
//! into it in simulated time, and the pipeline consuming it like any Kafka deployment.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::config::PipelineConfig;
use crate::decode::Stream;
use crate::source::embedded::EmbeddedBroker;
use crate::source::scenario::Scenario;
use crate::source::SourceError;

/// Starts the broker with the pipeline's input and output topics, and `more` (the
/// state topic of `--exactly-once` or `--partitioned-state`).
pub fn start_broker(cfg: &PipelineConfig, more: &[&str]) -> Result<EmbeddedBroker, SourceError> {
    let s = &cfg.spec.sinks;
    let mut topics: Vec<&str> = cfg.topics().iter().map(|(_, t)| *t).collect();
    topics.extend([
        s.incidents.as_str(),
        s.anomalies.as_str(),
        s.trend_reports.as_str(),
        s.dead_letters.as_str(),
    ]);
    topics.extend(more);
    EmbeddedBroker::start(&topics, 1)
}

/// Writes the scenario into the broker: simulated minute `m` is produced `m * 60 /
/// speed` seconds after the start, until cancelled.
pub async fn produce_scenario(
    bootstrap: String,
    cfg: PipelineConfig,
    seed: u64,
    start_ms: i64,
    speed: f64,
    cancel: CancellationToken,
) -> Result<u64, SourceError> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "20")
        .set("enable.idempotence", "true")
        .create()?;
    let scenario = Scenario::new(seed, start_ms);
    let topic = |s: Stream| match s {
        Stream::Logs => cfg.spec.sources.logs.topic.as_str(),
        Stream::Metrics => cfg.spec.sources.metrics.topic.as_str(),
        Stream::Events => cfg.spec.sources.events.topic.as_str(),
    };
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    for minute in 0.. {
        let due = started + Duration::from_secs_f64(minute as f64 * 60.0 / speed.max(0.001));
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(due) => {}
        }
        let records = scenario.minute(minute);
        let mut futures = Vec::with_capacity(records.len());
        for g in &records {
            futures.push(
                producer.send(
                    FutureRecord::<(), [u8]>::to(topic(g.stream))
                        .payload(&g.payload)
                        .timestamp(g.ts),
                    Duration::from_secs(5),
                ),
            );
        }
        for r in futures::future::join_all(futures).await {
            match r {
                Ok(_) => sent += 1,
                Err((e, _)) => tracing::warn!(error = %e, "scenario record not produced"),
            }
        }
    }
    Ok(sent)
}
