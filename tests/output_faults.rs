//! Faults on the output side (issue 8, scenarios 5, 7 and 8): a two-broker mock cluster
//! where broker 1 leads the input topics and coordinates the consumer groups, and broker
//! 2 leads the output topics under test, so that outputs can be taken away or slowed
//! while input keeps flowing. Lookout runs as a child process (`lookout run --brokers`).
//! What it published, deduplicated by (`incident_id`, `seq`), must equal what the same
//! pipeline publishes without faults.

mod common;

use std::time::{Duration, Instant};

use common::faults::{
    dead_letters, dead_offsets, dedup, events, first_incidents, incidents_until_all_of, produce_slowly, reference,
    resident_mib, same_incidents, spawn, terminate,
};
use common::{client, EmbeddedBroker, INPUTS, OUTPUTS};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// The consumer group `spawn` runs Lookout in.
const GROUP: &str = "faults";

/// Two brokers; `on_second` (output topics) are led by broker 2, everything else by
/// broker 1, which also coordinates Lookout's group and the tests' readers.
fn cluster(on_second: &[&str]) -> EmbeddedBroker {
    let topics: Vec<&str> = INPUTS.iter().chain(OUTPUTS.iter()).copied().collect();
    let b = EmbeddedBroker::start_cluster(&topics, 2, 2).expect("mock cluster starts");
    for t in &topics {
        for p in 0..2 {
            b.set_leader(t, p, if on_second.contains(t) { 2 } else { 1 });
        }
    }
    b.set_group_coordinator(GROUP, 1);
    for t in OUTPUTS {
        // the group `consume_until` reads with
        b.set_group_coordinator(&format!("verify-{t}-{}", std::process::id()), 1);
    }
    b
}

/// The offset Lookout's group has committed for `events` partition 0 (-1: none yet).
fn committed(bootstrap: &str) -> i64 {
    let c: BaseConsumer = client(bootstrap).set("group.id", GROUP).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("events", 0);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let offset = match got.find_partition("events", 0).map(|e| e.offset()) {
        Some(Offset::Offset(n)) => n,
        _ => -1,
    };
    // the list goes before the consumer (dropping them the other way round can hang)
    drop(got);
    offset
}

/// The end (high watermark) of `events` partition 0: what has been produced.
fn produced(bootstrap: &str) -> i64 {
    let c: BaseConsumer = client(bootstrap).create().expect("consumer");
    c.fetch_watermarks("events", 0, Duration::from_secs(10))
        .expect("watermarks")
        .1
}

/// Waits until the group has committed `end` (every record), or `timeout`.
fn committed_until(bootstrap: &str, end: i64, timeout: Duration) -> i64 {
    let start = Instant::now();
    loop {
        let c = committed(bootstrap);
        if c >= end || start.elapsed() > timeout {
            return c;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Scenario 7: the dead-letter topic is unavailable (its leader is down) from the start.
/// Lookout cannot publish the first malformed record's dead letter, so it commits no
/// offset past that record and retries; once the topic is back the dead letter lands,
/// processing goes on, and dead letters hold exactly the malformed records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_dead_letter_topic_holds_offsets_at_the_bad_record() {
    let broker = cluster(&["dead-letters"]);
    let bs = broker.bootstrap_servers().to_string();
    let (payloads, bad) = events();
    let want = reference(&payloads).await;
    let first_bad = *bad.first().unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("lookout.log");
    broker.set_broker_down(2, true);
    produce_slowly(&bs, payloads.clone(), Duration::ZERO);
    let child = spawn(&bs, state.path(), &log);
    // past the producer's message timeout (30 s): the failure is seen and retried
    std::thread::sleep(Duration::from_secs(35));
    let held = committed(&bs);
    broker.set_broker_down(2, false);
    let back = Instant::now();
    let dead = dead_letters(&bs, &bad).await;
    let landed = back.elapsed();
    let incidents = incidents_until_all_of(&bs, &want, Duration::from_secs(90)).await;
    let end = committed_until(&bs, payloads.len() as i64, Duration::from_secs(30));
    let (status, log_text) = terminate(child, &log);
    assert!(status.success(), "exit after SIGTERM: {status}\n{log_text}");
    assert!(
        held <= first_bad,
        "committed offset {held} passed the bad record at {first_bad} while its dead letter was undelivered"
    );
    let retries: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains("delivery failed; retrying"))
        .collect();
    assert!(
        retries.iter().any(|l| l.contains("dead-letters")),
        "the log names the topic it cannot deliver to:\n{log_text}"
    );
    assert_eq!(
        dead_offsets(&dead),
        bad,
        "dead letters hold exactly the malformed records"
    );
    assert_eq!(
        end,
        payloads.len() as i64,
        "every record committed once the topic was back"
    );
    let (got, repeats) = dedup(&incidents);
    same_incidents(&got, &want);
    eprintln!(
        "dead-letter topic down 35 s: committed offset held at {held} (first bad record at {first_bad}), {} retries logged; \
         dead letters landed {landed:?} after it came back ({} messages for {} bad records); {} incident states, {repeats} repeats; committed {end} of {}",
        retries.len(),
        dead.len(),
        bad.len(),
        want.len(),
        payloads.len()
    );
}

/// Scenario 5 with outputs in flight: the broker that leads every output topic is down
/// for 35 s (longer than the producer's 30 s message timeout) while input keeps arriving
/// on the other. Deliveries time out and are retried; nothing is lost or changed, every
/// incident state is readable within 60 s of the broker's return, and the log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_broker_outage_with_deliveries_in_flight_loses_nothing() {
    let broker = cluster(&OUTPUTS);
    let bs = broker.bootstrap_servers().to_string();
    let (payloads, _) = events();
    let want = reference(&payloads).await;
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("lookout.log");
    let half = payloads.len() / 2;
    produce_slowly(&bs, payloads[..half].to_vec(), Duration::ZERO);
    let child = spawn(&bs, state.path(), &log);
    first_incidents(&bs, 1).await;
    broker.set_broker_down(2, true);
    // the rest arrives while the outputs are unreachable
    produce_slowly(&bs, payloads[half..].to_vec(), Duration::from_millis(300));
    std::thread::sleep(Duration::from_secs(10));
    let during = committed(&bs);
    std::thread::sleep(Duration::from_secs(10));
    broker.set_broker_down(2, false);
    let back = Instant::now();
    let incidents = incidents_until_all_of(&bs, &want, Duration::from_secs(90)).await;
    let caught_up = back.elapsed();
    let end = committed_until(&bs, payloads.len() as i64, Duration::from_secs(30));
    let (status, log_text) = terminate(child, &log);
    assert!(status.success(), "exit after SIGTERM: {status}\n{log_text}");
    let (got, repeats) = dedup(&incidents);
    same_incidents(&got, &want);
    let retries = log_text.matches("delivery failed; retrying").count();
    assert!(retries > 0, "deliveries were in flight and timed out:\n{log_text}");
    assert!(
        caught_up < Duration::from_secs(60),
        "caught up {caught_up:?} after the broker came back"
    );
    assert!(
        during < payloads.len() as i64,
        "no offset committed for input whose outputs were undelivered"
    );
    assert_eq!(end, payloads.len() as i64);
    eprintln!(
        "output broker down 35 s with deliveries in flight: {retries} retries logged, committed offset held at {during} of {} meanwhile; \
         every incident state readable {caught_up:?} after it came back; {} states, {repeats} repeats",
        payloads.len(),
        want.len()
    );
}

/// Scenario 8: every output topic answers 5 s late while input arrives. Lookout
/// processes one batch at a time and waits for its outputs, so it reads no further
/// ahead than the consumer's prefetch: memory stays flat while the lag grows, and once
/// the outputs are fast again it catches up with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_outputs_grow_the_lag_not_the_memory_and_lose_nothing() {
    let broker = cluster(&OUTPUTS);
    let bs = broker.bootstrap_servers().to_string();
    let (payloads, _) = events();
    let want = reference(&payloads).await;
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("lookout.log");
    let child = spawn(&bs, state.path(), &log);
    std::thread::sleep(Duration::from_secs(3));
    let (rss_before, _) = resident_mib(child.id());
    broker.set_round_trip(2, Duration::from_secs(5));
    let producer = {
        let (bs, payloads) = (bs.clone(), payloads.clone());
        std::thread::spawn(move || produce_slowly(&bs, payloads, Duration::from_millis(150)))
    };
    let started = Instant::now();
    let (mut max_lag, mut max_rss) = (0i64, 0u64);
    while started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_secs(1));
        max_lag = max_lag.max(produced(&bs) - committed(&bs).max(0));
        max_rss = max_rss.max(resident_mib(child.id()).0);
    }
    producer.join().unwrap();
    broker.set_round_trip(2, Duration::ZERO);
    let back = Instant::now();
    let incidents = incidents_until_all_of(&bs, &want, Duration::from_secs(90)).await;
    let caught_up = back.elapsed();
    let end = committed_until(&bs, payloads.len() as i64, Duration::from_secs(30));
    let (_, peak) = resident_mib(child.id());
    let (status, log_text) = terminate(child, &log);
    assert!(status.success(), "exit after SIGTERM: {status}\n{log_text}");
    let (got, repeats) = dedup(&incidents);
    same_incidents(&got, &want);
    assert_eq!(end, payloads.len() as i64);
    assert!(
        max_lag > 200,
        "the lag grew while outputs were slow (at most {max_lag} records behind)"
    );
    assert!(
        max_rss < rss_before + 256,
        "memory stayed flat: {rss_before} MiB before, {max_rss} MiB at most while outputs were slow"
    );
    eprintln!(
        "outputs 5 s slow for 30 s: lag up to {max_lag} of {} records; resident memory {rss_before} MiB before, at most {max_rss} MiB meanwhile, peak {peak} MiB; \
         caught up {caught_up:?} after; {} incident states, {repeats} repeats",
        payloads.len(),
        want.len()
    );
}
