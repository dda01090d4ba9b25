//! OpenTelemetry input from an independent producer: the OpenTelemetry project's Python
//! classes (opentelemetry-proto) write OTLP logs and metrics to Kafka as protobuf and as
//! OTLP JSON, the `lookout` binary consumes them with the default pipeline (encoding
//! `auto`), and the faults they carry come out as incidents.

mod common;

use common::{broker, python_has};

fn producer(bootstrap: &str, mode: &str) -> serde_json::Value {
    common::python_client("otlp_producer.py", &[bootstrap, mode])
}

#[test]
fn otlp_logs_and_metrics_reach_incidents() {
    for m in ["confluent_kafka", "opentelemetry.proto"] {
        if !python_has(m) {
            assert!(
                std::env::var_os("LOOKOUT_CI").is_none(),
                "python3 cannot import {m} (.ci/run installs it)"
            );
            eprintln!("SKIPPED: python3 cannot import {m} (pip install confluent-kafka opentelemetry-proto)");
            return;
        }
    }
    let broker = broker();
    let bs = broker.bootstrap_servers().to_string();
    let produced = producer(&bs, "produce");
    assert_eq!(produced["unflushed"], 0, "{produced}");
    let (seen, status) = common::while_lookout_runs(&bs, "otlp", || producer(&bs, "consume"));
    let titles: Vec<&str> = seen["titles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(
        titles
            .iter()
            .any(|t| t.contains("FATAL log on payments: OutOfMemoryError in CardTokenizer")),
        "{seen}"
    );
    assert!(
        titles
            .iter()
            .any(|t| t.contains("checkout: error ratio 0.35 on checkout-1")),
        "{seen}"
    );
    assert!(status.success(), "{status:?}");
}
