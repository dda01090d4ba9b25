//! End to end on the Kafka protocol (librdkafka's mock cluster): every input encoding
//! in, incidents and dead letters read back with a plain consumer; then a crash before
//! commit and a restart, with every input alert still reflected in the incidents topic;
//! and the source's account of when a batch's records came.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use lookout::config::PipelineConfig;
use lookout::pipeline::{run_kafka, Processor};
use lookout::sink::kafka::KafkaSink;
use lookout::sink::Sink;
use lookout::source::kafka::KafkaSource;
use tokio_util::sync::CancellationToken;

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

type Payloads = Vec<Vec<u8>>;

fn inputs() -> (Payloads, Payloads, Payloads) {
    let logs = vec![
        b(
            r#"{"ts":"2025-03-04T10:00:00Z","service":"payments","host":"payments-1","level":"ERROR","message":"Payment failed"}"#,
        ),
        b(r#"time=2025-03-04T10:00:01Z level=fatal app=payments host=payments-2 msg="out of memory""#),
        b("2025-03-04 10:00:02 plain text line from a file tailer"),
        b(r#"{"ts":"2025-03-04T10:00:03Z","message":"broken"#),
        b"{\"ts\":\"2025-03-04T10:00:04Z\",\"message\":\"\xff\xfe\"}".to_vec(),
        [
            b(r#"{"ts":"2025-03-04T10:00:05Z","message":""#),
            vec![b'x'; 1_100_000],
            b(r#""}"#),
        ]
        .concat(),
        b(r#"{"ts":"yesterday","message":"when?"}"#),
    ];
    let metrics = vec![
        b(
            r#"{"ts":"2025-03-04T10:00:06Z","name":"error_ratio","value":0.5,"labels":{"service":"payments","host":"payments-1"}}"#,
        ),
        b("host_stats,host=redis-1,service=redis cpu_usage=0.97 1741082406000000000"),
        b("# TYPE latency_p95_ms gauge\nlatency_p95_ms{service=\"frontend\",host=\"frontend-1\"} 41.5 1741082406000"),
        b(r#"{"ts":"2025-03-04T10:00:06Z","name":"cpu_usage","value":"high"}"#),
    ];
    let events = vec![
        b(
            r#"{"specversion":"1.0","type":"dev.cdevents.service.deployed.0.1.0","source":"argocd","id":"deploy-pay-1","time":"2025-03-04T09:55:00Z","subject":"payments","data":{"version":"1.14.1","deploy_id":"argocd-payments-1"}}"#,
        ),
        b(r#"{"version":"4","receiver":"lookout","status":"firing","alerts":[
            {"status":"firing","labels":{"alertname":"HighErrorRate","severity":"critical","job":"payments"},"annotations":{"summary":"payments errors 30%"},"startsAt":"2025-03-04T10:00:10Z","fingerprint":"am-1"},
            {"status":"firing","labels":{"alertname":"HighErrorRate","severity":"warning","job":"checkout"},"annotations":{"summary":"checkout errors 12%"},"startsAt":"2025-03-04T10:00:20Z","fingerprint":"am-2"}]}"#),
        b(
            r#"{"routing_key":"r","event_action":"trigger","dedup_key":"pd-1","payload":{"summary":"inventory latency high","source":"inventory-1","severity":"error","component":"inventory","timestamp":"2025-03-04T10:30:00Z"}}"#,
        ),
        b(
            r#"{"ts":"2025-03-04T10:31:00Z","kind":"alert","source":"nagios","service":"redis","host":"redis-1","severity":"warning","status":"firing","title":"disk 85%","fingerprint":"gen-1"}"#,
        ),
        b(r#"{"version":"4","receiver":"lookout","status":"firing","alerts":[]}"#),
        b("PROBLEM: host down"),
    ];
    (logs, metrics, events)
}

const BAD: usize = 7;

async fn start(
    bootstrap: &str,
    group: &str,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<lookout::pipeline::Stats> {
    let mut cfg = PipelineConfig::load(&repo().join("pipelines/default"), None).unwrap();
    // These tests check transport (every alert reaches the incidents topic), not the
    // candidate stage that holds back unconfirmed warnings.
    cfg.spec.correlation.require_confirmation = false;
    let mut processor = Processor::build(&cfg).await.unwrap();
    let client = client(bootstrap);
    let mut source = KafkaSource::new(&client, group, &cfg.topics(), cfg.spec.batch, cfg.spec.limits).unwrap();
    let mut sink = Sink::Kafka(KafkaSink::new(&client, cfg.spec.sinks.clone(), cancel.clone()).unwrap());
    tokio::spawn(async move {
        run_kafka(&mut processor, &mut source, &mut sink, &cancel, &mut |_| {})
            .await
            .unwrap()
    })
}

fn fingerprints(incidents: &[Out]) -> BTreeSet<String> {
    incidents
        .iter()
        .flat_map(|m| m.json()["alerts"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["fingerprint"].as_str().map(str::to_string))
        .collect()
}

fn sources(incidents: &[Out]) -> BTreeSet<String> {
    incidents
        .iter()
        .flat_map(|m| m.json()["alerts"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["source"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_encoding_in_incidents_and_dead_letters_out() {
    let broker = broker();
    let bs = broker.bootstrap_servers().to_string();
    let (logs, metrics, events) = inputs();
    produce(&bs, "logs", &logs);
    produce(&bs, "metrics", &metrics);
    produce(&bs, "events", &events);

    let cancel = CancellationToken::new();
    let task = start(&bs, "e2e", cancel.clone()).await;
    let want: BTreeSet<String> = ["am-1", "am-2", "pd-1", "gen-1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let bs2 = bs.clone();
    let incidents = tokio::task::spawn_blocking(move || {
        consume_until(&bs2, "incidents", Duration::from_secs(60), |o| {
            fingerprints(o).is_superset(&want)
                && sources(o).contains("rule:high_error_ratio")
                && sources(o).contains("rule:fatal_log")
        })
    })
    .await
    .unwrap();
    let bs3 = bs.clone();
    let dead = tokio::task::spawn_blocking(move || {
        consume_until(&bs3, "dead-letters", Duration::from_secs(30), |o| o.len() >= BAD)
    })
    .await
    .unwrap();
    cancel.cancel();
    let stats = task.await.unwrap();

    let fps = fingerprints(&incidents);
    for f in ["am-1", "am-2", "pd-1", "gen-1"] {
        assert!(fps.contains(f), "alert {f} missing from incidents: {fps:?}");
    }
    let srcs = sources(&incidents);
    assert!(
        srcs.contains("rule:high_error_ratio") && srcs.contains("rule:fatal_log"),
        "{srcs:?}"
    );
    for m in &incidents {
        let v = m.json();
        assert_eq!(v["schema"], "lookout.incident.v1");
        assert_eq!(m.key.as_deref(), v["incident_id"].as_str(), "keyed by incident id");
    }
    // the payments incident holds the deploy that came before it
    let payments = incidents
        .iter()
        .map(Out::json)
        .rfind(|v| v["services"].as_array().unwrap().iter().any(|s| s == "payments"))
        .unwrap();
    assert_eq!(
        payments["suspected_changes"][0]["fingerprint"], "deploy-pay-1",
        "{payments}"
    );

    assert_eq!(
        dead.len(),
        BAD,
        "exactly the bad records: {:?}",
        dead.iter().map(|d| d.header("error")).collect::<Vec<_>>()
    );
    for d in &dead {
        assert_eq!(d.header("stage"), Some("decode"));
        assert!(d.header("error").is_some() && d.header("offset").is_some() && d.header("partition").is_some());
        let topic = d.header("topic").unwrap();
        let offset: usize = d.header("offset").unwrap().parse().unwrap();
        assert!(INPUTS.contains(&topic));
        let original = match topic {
            "logs" => &logs,
            "metrics" => &metrics,
            _ => &events,
        };
        // Records are keyed by index but spread over 2 partitions, so match by content.
        assert!(
            original.iter().any(|o| o.starts_with(&d.payload)),
            "dead letter at {topic}/{offset} keeps the original bytes"
        );
    }
    let errors: Vec<&str> = dead.iter().filter_map(|d| d.header("error")).collect();
    for needle in [
        "malformed JSON",
        "invalid UTF-8",
        "exceeds the limit",
        "must be a number",
        "unparsable timestamp",
        "no alerts",
        "unknown encoding",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "no dead letter says {needle:?}: {errors:?}"
        );
    }
    assert_eq!(stats.dead_letters, BAD as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_commit_then_restart_loses_no_alert() {
    let broker = broker();
    let bs = broker.bootstrap_servers().to_string();
    let n = 40;
    let alerts: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            b(&format!(
                r#"{{"ts":"2025-03-04T10:{:02}:00Z","kind":"alert","source":"test","service":"svc-{}","severity":"warning","status":"firing","title":"alert {i}","fingerprint":"fp-{i}"}}"#,
                i,
                i % 5
            ))
        })
        .collect();
    produce(&bs, "events", &alerts[..n / 2]);

    // First run: process part of the input, then die without a graceful shutdown.
    let cancel = CancellationToken::new();
    let task = start(&bs, "crashy", cancel.clone()).await;
    let bs2 = bs.clone();
    tokio::task::spawn_blocking(move || consume_until(&bs2, "incidents", Duration::from_secs(60), |o| !o.is_empty()))
        .await
        .unwrap();
    task.abort();
    let _ = task.await;
    produce(&bs, "events", &alerts[n / 2..]);

    // Restart in the same group: resumes from the last committed offsets (or the start).
    let cancel = CancellationToken::new();
    let task = start(&bs, "crashy", cancel.clone()).await;
    let want: BTreeSet<String> = (0..n).map(|i| format!("fp-{i}")).collect();
    let bs3 = bs.clone();
    let want2 = want.clone();
    let incidents = tokio::task::spawn_blocking(move || {
        consume_until(&bs3, "incidents", Duration::from_secs(90), |o| {
            fingerprints(o).is_superset(&want2)
        })
    })
    .await
    .unwrap();
    cancel.cancel();
    task.await.unwrap();
    let got = fingerprints(&incidents);
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(missing.is_empty(), "alerts lost across the crash: {missing:?}");
}

/// What `lookout bench` leaves out at the end of its input: a batch that its deadline
/// closed says how long the reader waited after its last record, one that its record
/// count closed waited for nothing, and both say when their first record came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_says_when_its_first_record_came_and_how_long_it_waited_after_its_last() {
    use lookout::config::{Batch, Limits};
    use lookout::decode::Stream;
    let broker = EmbeddedBroker::start(&["logs"], 1).expect("mock cluster starts");
    let bs = broker.bootstrap_servers();
    let lines: Payloads = (0..5).map(|i| b(&format!("level=info msg=\"line {i}\""))).collect();
    produce(bs, "logs", &lines);
    let batch = Batch {
        max_records: 3,
        max_wait_ms: 300,
    };
    let mut source = KafkaSource::new(
        &client(bs),
        "timing",
        &[(Stream::Logs, "logs")],
        batch,
        Limits::default(),
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let mut batches = Vec::new();
    let asked = std::time::Instant::now();
    while batches.len() < 2 {
        assert!(asked.elapsed() < Duration::from_secs(30), "no records read");
        let records = source.next_batch(&cancel).await.unwrap().unwrap();
        if !records.is_empty() {
            batches.push((records.len(), source.batch_timing()));
        }
    }
    let ((full, by_count), (rest, by_deadline)) = (batches[0], batches[1]);
    assert_eq!((full, rest), (3, 2));
    assert_eq!(by_count.idle_after_last, Duration::ZERO);
    // the two records left came together: the reader then waited out the 300 ms
    assert!(
        (Duration::from_millis(150)..Duration::from_secs(3)).contains(&by_deadline.idle_after_last),
        "{by_deadline:?}"
    );
    let (first, second) = (by_count.first.unwrap(), by_deadline.first.unwrap());
    assert!(asked <= first && first <= second, "{by_count:?} {by_deadline:?}");
    cancel.cancel();
}
