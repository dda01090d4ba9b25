//! Fault scenario 4: scaling out and in during a run. With `--partitioned-state` each
//! input partition's state is checkpointed to the state topic and restored by whichever
//! instance owns the partition next; instances join and leave while input flows, and
//! the incidents, deduplicated by (`incident_id`, `seq`), equal those of one instance
//! that ran alone.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::faults::{dedup, events, incidents_until_all_of, reference_cut, same_incidents, spawn_with, terminate};
use common::{client, consume_until, EmbeddedBroker, INPUTS, OUTPUTS};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const PARTITIONS: i32 = 2;
const ARGS: [&str; 2] = ["--partitioned-state", "--state-topic=lookout-state"];

/// The input spread over the partitions as a producer keying by correlation key would:
/// record i to partition i mod 2. Returns each partition's records in order.
fn split(payloads: &[(i64, Vec<u8>)]) -> Vec<Vec<(i64, Vec<u8>)>> {
    let mut parts = vec![Vec::new(); PARTITIONS as usize];
    for (i, p) in payloads.iter().enumerate() {
        parts[i % PARTITIONS as usize].push(p.clone());
    }
    parts
}

/// What one instance publishes: each partition's records through a processor of its
/// own, in order.
async fn reference(parts: &[Vec<(i64, Vec<u8>)>]) -> BTreeMap<(String, u64), String> {
    let mut out = BTreeMap::new();
    for (partition, records) in parts.iter().enumerate() {
        for (key, state) in reference_cut(records, partition as i32, 50).await {
            assert!(
                out.insert(key.clone(), state).is_none(),
                "two partitions published {key:?}: incident ids must not collide"
            );
        }
    }
    out
}

/// Produces the partitions' records a little at a time, alternating between them.
fn produce_slowly(bootstrap: &str, parts: Vec<Vec<(i64, Vec<u8>)>>, pause: Duration) {
    let p: BaseProducer = client(bootstrap).create().expect("producer");
    let rounds = parts.iter().map(|r| r.len().div_ceil(10)).max().unwrap_or(0);
    for round in 0..rounds {
        for (partition, records) in parts.iter().enumerate() {
            for (ts, pl) in records.iter().skip(round * 10).take(10) {
                let key = format!("group-{partition}");
                let mut rec = BaseRecord::to("events")
                    .payload(pl)
                    .key(&key)
                    .partition(partition as i32)
                    .timestamp(*ts);
                while let Err((_, r)) = p.send(rec) {
                    rec = r;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        p.flush(Duration::from_secs(30)).expect("flush");
        std::thread::sleep(pause);
    }
}

/// Waits until `log` has `n` lines containing `what`.
fn wait_for_log(log: &std::path::Path, what: &str, n: usize, timeout: Duration) -> String {
    let until = std::time::Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(what).count() >= n || std::time::Instant::now() > until {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_one_to_two_to_one_instances_hands_state_over_and_changes_nothing() {
    let topics: Vec<&str> = INPUTS
        .iter()
        .chain(OUTPUTS.iter())
        .copied()
        .chain(["lookout-state"])
        .collect();
    let broker = EmbeddedBroker::start(&topics, PARTITIONS).expect("mock cluster starts");
    let bs = broker.bootstrap_servers().to_string();
    let (payloads, bad) = events();
    let parts = split(&payloads);
    let want = reference(&parts).await;
    assert!(want.len() >= 10, "the reference publishes incidents: {}", want.len());
    let dir = tempfile::tempdir().unwrap();
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let (state_a, state_b) = (dir.path().join("a"), dir.path().join("b"));

    let producer = {
        let (bs, parts) = (bs.clone(), parts.clone());
        std::thread::spawn(move || produce_slowly(&bs, parts, Duration::from_millis(300)))
    };
    // one instance
    let a = spawn_with(&bs, &state_a, &log_a, &ARGS);
    wait_for_log(&log_a, "its task starts", 2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(8));
    // two: the group gives each one partition, and the joining one its state
    let b = spawn_with(&bs, &state_b, &log_b, &ARGS);
    let joined = wait_for_log(&log_b, "its task starts", 1, Duration::from_secs(30));
    assert!(
        joined.contains("its task starts"),
        "the second instance got no partition:\n{joined}"
    );
    std::thread::sleep(Duration::from_secs(8));
    // one again: the first leaves, and its partition goes to the second with its state
    let (status, text_a) = terminate(a, &log_a);
    assert!(status.success(), "first instance after SIGTERM: {status}\n{text_a}");
    producer.join().unwrap();
    let incidents = incidents_until_all_of(&bs, &want, Duration::from_secs(120)).await;
    let (status, text_b) = terminate(b, &log_b);
    assert!(status.success(), "second instance after SIGTERM: {status}\n{text_b}");

    let handed_to_b = text_b.matches("state restored from the checkpoint").count();
    for p in 0..PARTITIONS {
        assert!(
            text_b.contains(&format!("state topic lookout-state (faults/default/{p})")),
            "the second instance never restored partition {p}'s state:\n{text_b}"
        );
    }
    let revoked_from_a = text_a.matches("partition revoked").count();
    assert!(revoked_from_a >= 1, "the first instance gave nothing up:\n{text_a}");
    assert!(
        handed_to_b >= 2,
        "the second instance restored state {handed_to_b} times (each partition's once at least):\n{text_b}"
    );
    let (got, repeats) = dedup(&incidents);
    same_incidents(&got, &want);

    // every malformed record is a dead letter, wherever it went
    let bad_at: BTreeSet<(String, String)> = bad
        .iter()
        .map(|i| {
            let i = *i as usize;
            let p = i % PARTITIONS as usize;
            ((p).to_string(), (i / PARTITIONS as usize).to_string())
        })
        .collect();
    let bs2 = bs.clone();
    let n = bad_at.len();
    let dead = tokio::task::spawn_blocking(move || {
        consume_until(&bs2, "dead-letters", Duration::from_secs(60), |o| {
            o.iter()
                .filter_map(|d| Some((d.header("partition")?, d.header("offset")?)))
                .collect::<BTreeSet<_>>()
                .len()
                >= n
        })
    })
    .await
    .unwrap();
    let dead_at: BTreeSet<(String, String)> = dead
        .iter()
        .filter_map(|d| Some((d.header("partition")?.to_string(), d.header("offset")?.to_string())))
        .collect();
    assert_eq!(dead_at, bad_at, "dead letters hold exactly the malformed records");
    eprintln!(
        "scale 1 → 2 → 1: {} records over {PARTITIONS} partitions ({} malformed), {revoked_from_a} partitions revoked from the first instance, {handed_to_b} restores by the second from the state topic, {} incident states, {} messages, {repeats} repeats dropped by key, {} dead letters",
        payloads.len(),
        bad.len(),
        want.len(),
        incidents.len(),
        dead.len()
    );
}
