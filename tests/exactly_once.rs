//! Exactly-once mode (issue 8, scenario 9): `lookout run --exactly-once` against the mock
//! cluster, as a child process. Outputs, the state checkpoint (to the state topic) and
//! the input offsets go into one Kafka transaction.
//!
//! What the mock cluster can and cannot show: it runs the transactional protocol
//! (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn), but
//! it neither hides aborted messages from read_committed consumers nor stores
//! transactional offset commits, and a second InitProducerId for a transactional id gets
//! a new producer id instead of fencing the first (librdkafka 2.12's
//! `rdkafka_mock_handlers.c`: EndTxn and TxnOffsetCommit only check the producer id,
//! Fetch reports no aborted transactions, InitProducerId calls `rd_kafka_mock_pid_new`).
//! So this test checks that Lookout runs its transactions against the broker, resumes
//! from the state topic alone (committed consumer offsets never arrive) and publishes,
//! deduplicated by key, exactly the run without faults; it counts the messages of
//! transactions cut short, which a real broker would hide. Zombie fencing is not tested.

mod common;

use std::process::Child;
use std::time::Duration;

use common::faults::{
    dead_letters, dead_offsets, dedup, events, incidents_until_all_of, next, produce_slowly, reference, same_incidents,
    spawn_with, terminate,
};
use common::{EmbeddedBroker, INPUTS, OUTPUTS};

const STATE_TOPIC: &str = "lookout-state";

fn eos(bootstrap: &str, state: &std::path::Path, log: &std::path::Path, id: &str) -> Child {
    spawn_with(
        bootstrap,
        state,
        log,
        &["--exactly-once", "--transactional-id", id, "--state-topic", STATE_TOPIC],
    )
}

fn cluster() -> EmbeddedBroker {
    let topics: Vec<&str> = INPUTS
        .iter()
        .chain(OUTPUTS.iter())
        .chain([&STATE_TOPIC])
        .copied()
        .collect();
    EmbeddedBroker::start(&topics, 2).expect("mock cluster starts")
}

/// Scenario 9 under `kill -9`: ten kills at random points while input flows; every
/// restart goes on from the checkpoint committed to the state topic (there is no local
/// state), and what was published equals the run without faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_mode_resumes_from_the_state_topic_after_kill_9() {
    let id = "eos-kill";
    let broker = cluster();
    let bs = broker.bootstrap_servers().to_string();
    let (payloads, bad) = events();
    let want = reference(&payloads).await;
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("lookout.log");
    let producer = {
        let (bs, payloads) = (bs.clone(), payloads.clone());
        std::thread::spawn(move || produce_slowly(&bs, payloads, Duration::from_millis(400)))
    };
    let mut seed = 5;
    let kills = 10;
    for _ in 0..kills {
        // a fresh state directory each time: the state topic is all there is
        let state = tempfile::tempdir().unwrap();
        let mut child = eos(&bs, state.path(), &log, id);
        std::thread::sleep(Duration::from_millis(2_500 + next(&mut seed) % 4_500));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    producer.join().unwrap();
    let state = tempfile::tempdir().unwrap();
    let child = eos(&bs, state.path(), &log, id);
    let incidents = incidents_until_all_of(&bs, &want, Duration::from_secs(180)).await;
    let dead = dead_letters(&bs, &bad).await;
    let (status, log_text) = terminate(child, &log);
    assert!(status.success(), "exit after SIGTERM: {status}\n{log_text}");
    let restores = log_text.matches("state restored from the checkpoint").count();
    assert!(
        restores >= kills / 2,
        "{restores} of {kills} restarts resumed from the state topic:\n{log_text}"
    );
    assert!(log_text.contains(&format!("state topic {STATE_TOPIC}")));
    let (got, repeats) = dedup(&incidents);
    same_incidents(&got, &want);
    assert_eq!(
        dead_offsets(&dead),
        bad,
        "dead letters hold exactly the malformed records"
    );
    eprintln!(
        "exactly-once, kill -9: {kills} kills, {restores} restores from the state topic, {} records ({} malformed), {} incident states, \
         {} messages: {repeats} from transactions cut short (visible on the mock, hidden by a broker that aborts them), {} dead letters",
        payloads.len(),
        bad.len(),
        want.len(),
        incidents.len(),
        dead.len()
    );
}
