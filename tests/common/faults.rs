//! Helpers of the fault tests: scenario input with malformed records, the incidents a
//! run without faults publishes, Lookout as a child process, and comparing what it
//! published (deduplicated by `incident_id` and `seq`) with that reference.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lookout::config::PipelineConfig;
use lookout::decode::Stream;
use lookout::pipeline::Processor;
use lookout::sink::Topic;
use lookout::source::scenario::Scenario;
use lookout::source::{RawRecord, RecordMeta};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::{client, consume_until, repo, Out};

pub const START_MS: i64 = 1_741_046_400_000; // 2025-03-04T00:00:00Z

/// Eight hours of the built-in scenario's events (alerts, deploys, in every encoding)
/// and about three noisy monitor alerts a minute on top, with about 1% malformed records, the
/// last record among them. Returns the payloads and the indices of the malformed ones.
pub fn events() -> (Vec<(i64, Vec<u8>)>, BTreeSet<i64>) {
    let scenario = Scenario::new(42, START_MS);
    let mut timed: Vec<(i64, Vec<u8>)> = (0..8 * 60)
        .flat_map(|m| scenario.minute(m))
        .filter(|g| g.stream == Stream::Events)
        .map(|g| (g.ts, g.payload))
        .collect();
    let mut seed = 11;
    let services = [
        "frontend",
        "checkout",
        "catalog",
        "payments",
        "inventory",
        "redis",
        "postgres",
    ];
    for i in 0..8 * 60 * 3 {
        let ts = START_MS + i * 20_000 + (next(&mut seed) % 20_000) as i64;
        let fp = next(&mut seed) % 40;
        let service = services[(fp % 7) as usize];
        let status = if next(&mut seed).is_multiple_of(3) {
            "resolved"
        } else {
            "firing"
        };
        let severity = ["warning", "critical", "info"][(next(&mut seed) % 3) as usize];
        let json = serde_json::json!({
            "ts": lookout::decode::time::format_ms(ts), "kind": "alert", "source": "nagios",
            "service": service, "host": format!("{service}-{}", fp % 3), "severity": severity,
            "status": status, "title": format!("check {fp} on {service}"), "fingerprint": format!("noise-{fp}"),
        });
        timed.push((ts, json.to_string().into_bytes()));
    }
    timed.sort_by_key(|(ts, _)| *ts);
    let mut out = timed;
    let mut bad = BTreeSet::new();
    for i in (37..out.len()).step_by(100) {
        out[i].1 = format!("{{\"ts\": \"2025-03-04T00:00:00Z\", broken record {i}").into_bytes();
        bad.insert(i as i64);
    }
    out.push((out[out.len() - 1].0, b"\xff\xfe not even UTF-8".to_vec()));
    bad.insert(out.len() as i64 - 1);
    (out, bad)
}

/// The incidents the pipeline publishes for `payloads` read in order without faults.
pub async fn reference(payloads: &[(i64, Vec<u8>)]) -> BTreeMap<(String, u64), String> {
    reference_cut(payloads, 0, 50).await
}

/// The incidents the pipeline publishes for `payloads` read in order from `partition`
/// of `events` in batches of `size`.
pub async fn reference_cut(
    payloads: &[(i64, Vec<u8>)],
    partition: i32,
    size: usize,
) -> BTreeMap<(String, u64), String> {
    let cfg = PipelineConfig::load(&repo().join("pipelines/default"), None).unwrap();
    let mut p = Processor::build(&cfg).await.unwrap();
    let mut out = BTreeMap::new();
    for (n, chunk) in payloads.chunks(size).enumerate() {
        let batch: Vec<RawRecord> = chunk
            .iter()
            .enumerate()
            .map(|(i, (ts, pl))| RawRecord {
                stream: Stream::Events,
                payload: pl.clone(),
                meta: RecordMeta {
                    topic: "events".into(),
                    partition,
                    offset: (n * size + i) as i64,
                    kafka_ts: Some(*ts),
                    ..Default::default()
                },
            })
            .collect();
        for m in p.process(&batch).await.unwrap() {
            if m.topic == Topic::Incidents {
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                let key = (
                    v["incident_id"].as_str().unwrap().to_string(),
                    v["seq"].as_u64().unwrap(),
                );
                out.insert(key, v.to_string());
            }
        }
    }
    out
}

/// Produces `payloads` in order to one partition of `events`, a little at a time, each
/// with its event time as the record's timestamp (as a producer stamping at the source
/// would; records without a time of their own take it).
pub fn produce_slowly(bootstrap: &str, payloads: Vec<(i64, Vec<u8>)>, pause: Duration) {
    let p: BaseProducer = client(bootstrap).create().expect("producer");
    for chunk in payloads.chunks(20) {
        send_events(&p, chunk);
        std::thread::sleep(pause);
    }
}

/// Sends `payloads` with `p` to partition 0 of `events`, each with its event time as
/// the record's timestamp, and waits until the broker has them.
pub fn send_events(p: &BaseProducer, payloads: &[(i64, Vec<u8>)]) {
    for (ts, pl) in payloads {
        let mut rec = BaseRecord::to("events")
            .payload(pl)
            .key("one-key")
            .partition(0)
            .timestamp(*ts);
        while let Err((_, r)) = p.send(rec) {
            rec = r;
            p.poll(Duration::from_millis(10));
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

pub fn spawn(bootstrap: &str, state: &std::path::Path, log: &std::path::Path) -> Child {
    spawn_with(bootstrap, state, log, &[])
}

/// [`spawn`] with more arguments for `lookout run`.
pub fn spawn_with(bootstrap: &str, state: &std::path::Path, log: &std::path::Path, extra: &[&str]) -> Child {
    let log = std::fs::File::options().create(true).append(true).open(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_lookout"))
        .current_dir(repo())
        .args([
            "run",
            "--brokers",
            bootstrap,
            "--group",
            "faults",
            "--http",
            "off",
            "--quiet",
        ])
        .arg("--models")
        .arg(state)
        .args(["--checkpoint-interval", "0.5"])
        .args(extra)
        .args([
            "--kafka",
            "session.timeout.ms=3000",
            "--kafka",
            "heartbeat.interval.ms=300",
        ])
        .env("LOOKOUT_LOG", "lookout=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("lookout starts")
}

/// Reads the incidents topic until every state of `want` is there (or `timeout`).
pub async fn incidents_until_all_of(
    bootstrap: &str,
    want: &BTreeMap<(String, u64), String>,
    timeout: Duration,
) -> Vec<Out> {
    let (bs, keys) = (bootstrap.to_string(), want.keys().cloned().collect::<BTreeSet<_>>());
    tokio::task::spawn_blocking(move || {
        consume_until(&bs, "incidents", timeout, |o| {
            let (got, _) = dedup(o);
            keys.iter().all(|k| got.contains_key(k))
        })
    })
    .await
    .unwrap()
}

/// Waits until the incidents topic holds at least `n` messages.
pub async fn first_incidents(bootstrap: &str, n: usize) {
    let bs = bootstrap.to_string();
    tokio::task::spawn_blocking(move || consume_until(&bs, "incidents", Duration::from_secs(60), |o| o.len() >= n))
        .await
        .unwrap();
}

/// Stops Lookout with SIGTERM: its exit status and its log so far.
pub fn terminate(mut child: Child, log: &std::path::Path) -> (std::process::ExitStatus, String) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

/// Incident messages by (`incident_id`, `seq`), and how many repeated a key.
pub fn dedup(incidents: &[Out]) -> (BTreeMap<(String, u64), String>, usize) {
    let mut out = BTreeMap::new();
    let mut repeats = 0;
    for o in incidents {
        let v = o.json();
        let key = (
            v["incident_id"].as_str().unwrap().to_string(),
            v["seq"].as_u64().unwrap(),
        );
        if out.insert(key, v.to_string()).is_some() {
            repeats += 1;
        }
    }
    (out, repeats)
}

/// Asserts that two incident streams hold the same states, saying where they differ.
pub fn same_incidents(got: &BTreeMap<(String, u64), String>, want: &BTreeMap<(String, u64), String>) {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .collect();
    if let Some((k, v)) = differ.first() {
        let g = &got[*k];
        let at = g.bytes().zip(v.bytes()).position(|(a, b)| a != b).unwrap_or(0);
        let from = at.saturating_sub(200);
        panic!(
            "{} of {} incident states differ from the run without faults; {k:?} at byte {at}:\n got: ...{}\nwant: ...{}",
            differ.len(),
            want.len(),
            &g[from..(at + 200).min(g.len())],
            &v[from..(at + 200).min(v.len())]
        );
    }
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} of {} incident states lost, {} not in the run without faults: lost {:?}, extra {:?}",
        missing.len(),
        want.len(),
        extra.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        extra.iter().take(5).collect::<Vec<_>>()
    );
}

/// A tiny deterministic generator for the kill times.
pub fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

/// Resident memory of a process now and at its peak, in MiB (Linux).
pub fn resident_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Reads dead letters until every offset of `bad` is among them.
pub async fn dead_letters(bootstrap: &str, bad: &BTreeSet<i64>) -> Vec<Out> {
    let (bs, n) = (bootstrap.to_string(), bad.len());
    tokio::task::spawn_blocking(move || {
        consume_until(&bs, "dead-letters", Duration::from_secs(90), |o| {
            o.iter()
                .filter_map(|d| d.header("offset"))
                .collect::<BTreeSet<_>>()
                .len()
                >= n
        })
    })
    .await
    .unwrap()
}

pub fn dead_offsets(dead: &[Out]) -> BTreeSet<i64> {
    dead.iter().filter_map(|d| d.header("offset")?.parse().ok()).collect()
}
