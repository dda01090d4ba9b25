//! An independent client check: Python's confluent-kafka (not Lookout's code) produces
//! alerts into a Kafka-protocol broker, the `lookout` binary runs against it with
//! `--brokers`, and confluent-kafka reads the incidents back.

mod common;

use common::broker;

fn client(bootstrap: &str, mode: &str) -> serde_json::Value {
    common::python_client("independent_client.py", &[bootstrap, mode])
}

#[test]
fn confluent_kafka_produces_and_consumes() {
    if !common::python_has("confluent_kafka") {
        eprintln!("SKIPPED: python3 cannot import confluent_kafka (pip install confluent-kafka)");
        return;
    }
    let broker = broker();
    let bs = broker.bootstrap_servers().to_string();
    let produced = client(&bs, "produce");
    assert_eq!(produced["unflushed"], 0);

    let (seen, status) = common::while_lookout_runs(&bs, "independent", || client(&bs, "consume"));

    let fps: Vec<&str> = seen["fingerprints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(fps.contains(&"py-am-1") && fps.contains(&"py-gen-1"), "{seen}");
    for inc in seen["incidents"].as_array().unwrap() {
        assert_eq!(inc["schema"], "lookout.incident.v1");
        assert_eq!(inc["key"], inc["incident_id"]);
    }
    assert!(status.success(), "lookout exits 0 on SIGTERM: {status:?}");
}
