//! The Kafka sink's two steps (`send` a batch's outputs, `settle` them after the next
//! batch is processed, as `lookout run` does): every message arrives, in the order it
//! was sent, also when the producer's queue has no room for a whole batch and the rest
//! of it is queued while settling.

mod common;

use std::time::Duration;

use common::{broker, client, consume_until, repo};
use lookout::config::PipelineConfig;
use lookout::sink::kafka::KafkaSink;
use lookout::sink::{Message, Sink, Topic};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_flight_arrive_whole_and_in_order() {
    let b = broker();
    let mut c = client(b.bootstrap_servers());
    // a batch is 40 messages: most of each is queued only when it is settled
    c.set("queue.buffering.max.messages", "16");
    let cfg = PipelineConfig::load(&repo().join("pipelines/default"), None).unwrap();
    let topic = cfg.spec.sinks.incidents.clone();
    let mut sink = Sink::Kafka(KafkaSink::new(&c, cfg.spec.sinks, CancellationToken::new()).unwrap());
    let batch = |n: usize| -> Vec<Message> {
        (n * 40..(n + 1) * 40)
            .map(|i| {
                Message::text(
                    Topic::Incidents,
                    Some("one-key".into()),
                    format!("{{\"n\":{i}}}").into_bytes(),
                )
            })
            .collect()
    };
    let mut in_flight = None;
    for n in 0..5 {
        // (the pipeline processes batch n here, then settles the one before it)
        if let Some(before) = in_flight.take() {
            let settled = sink.settle(before).await.unwrap();
            assert_eq!(settled, batch(n - 1), "settling hands back the batch sent");
        }
        in_flight = Some(sink.send(batch(n)));
    }
    sink.settle(in_flight.unwrap()).await.unwrap();

    let out = consume_until(b.bootstrap_servers(), &topic, Duration::from_secs(30), |o| {
        o.len() >= 200
    });
    let got: Vec<u64> = out.iter().map(|o| o.json()["n"].as_u64().unwrap()).collect();
    assert_eq!(got, (0..200).collect::<Vec<u64>>());
}
