//! The state topic: where `lookout run --exactly-once` keeps its checkpoints, written in
//! the same Kafka transaction as the outputs and the input offsets they correspond to,
//! so that state, outputs and offsets are committed together or not at all.
//!
//! A checkpoint is cut into chunks of at most [`CHUNK`] bytes (below the broker's
//! message limit), keyed `<instance>/<index>`, so that a compacted topic keeps the latest
//! of each (the keys may hash to several partitions). Headers say which checkpoint a
//! chunk belongs to (an id that orders them by time) and how many it has. Reading back
//! takes, of this instance's chunks, the newest checkpoint whose chunks are all there (a
//! broker that hides aborted transactions shows only complete ones; one that does not,
//! like the mock cluster, may show the start of one cut short by a crash).
//!
//! With `--partitioned-state` each input partition's task checkpoints here too, keyed
//! `<group>/<pipeline>/<partition>/<index>` and written by the ordinary producer, so that
//! whichever instance the partition moves to reads its state back ([`read_tasks`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// The largest chunk of a checkpoint in one message.
pub const CHUNK: usize = 512 << 10;

const ID: &str = "lookout-checkpoint";
const COUNT: &str = "lookout-chunks";

/// One message of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRecord {
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The messages that hold checkpoint `id` of `instance`.
pub fn chunks(instance: &str, id: &str, bytes: &[u8]) -> Vec<StateRecord> {
    let parts: Vec<&[u8]> = if bytes.is_empty() {
        vec![bytes]
    } else {
        bytes.chunks(CHUNK).collect()
    };
    let count = parts.len().to_string();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| StateRecord {
            key: format!("{instance}/{i}"),
            payload: part.to_vec(),
            headers: vec![
                (ID.to_string(), id.as_bytes().to_vec()),
                (COUNT.to_string(), count.as_bytes().to_vec()),
            ],
        })
        .collect()
}

/// Puts checkpoints back together from their chunks, which may sit in several
/// partitions: the newest (by id, `<ms since the epoch>-<count>`) whose chunks are all
/// there.
#[derive(Default)]
struct Assembly {
    /// Checkpoint id → its count and the chunks seen.
    parts: HashMap<String, (usize, HashMap<usize, Vec<u8>>)>,
    /// Checkpoint ids in the order their first chunk was read (the tie-break).
    order: Vec<String>,
}

impl Assembly {
    fn add(&mut self, index: usize, id: &str, count: usize, payload: &[u8]) {
        if !self.parts.contains_key(id) {
            self.order.push(id.to_string());
        }
        let e = self.parts.entry(id.to_string()).or_insert((count, HashMap::new()));
        e.1.insert(index, payload.to_vec());
    }

    fn latest(mut self) -> Option<Vec<u8>> {
        // newest last; the sort is stable, so read order breaks ties
        let mut ids = std::mem::take(&mut self.order);
        ids.sort_by_key(|id| newness(id));
        for id in ids.iter().rev() {
            let (count, mut chunks) = self.parts.remove(id)?;
            if (0..count).all(|i| chunks.contains_key(&i)) {
                return Some((0..count).flat_map(|i| chunks.remove(&i).unwrap_or_default()).collect());
            }
            tracing::warn!(checkpoint = %id, have = chunks.len(), count, "state topic: an incomplete checkpoint skipped");
        }
        None
    }
}

/// When a checkpoint id says it was written: (ms since the epoch, count in its process).
fn newness(id: &str) -> Option<(i64, u64)> {
    let (ms, n) = id.split_once('-')?;
    Some((ms.parse().ok()?, n.parse().ok()?))
}

/// Reads this instance's latest checkpoint from `topic` (committed messages only).
/// `Ok(None)` when it holds none; an error when the topic cannot be read to its end
/// within `timeout` (starting without the state would repeat or lose work).
pub fn read(client: &ClientConfig, topic: &str, instance: &str, timeout: Duration) -> Result<Option<Vec<u8>>, String> {
    let mut found = read_instances(client, topic, &format!("{instance}-state-reader"), timeout, |i| {
        i == instance
    })?;
    Ok(found.remove(instance).and_then(Assembly::latest))
}

/// Reads the latest checkpoint of each of `tasks` (partition numbers) of `prefix`
/// (`<group>/<pipeline>`), as [`read`] does.
pub fn read_tasks(
    client: &ClientConfig,
    topic: &str,
    prefix: &str,
    tasks: &[i32],
    timeout: Duration,
) -> Result<HashMap<i32, Vec<u8>>, String> {
    let wanted = |instance: &str| {
        instance
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|p| p.parse::<i32>().ok())
            .filter(|p| tasks.contains(p))
    };
    let found = read_instances(client, topic, &format!("{prefix}-state-reader"), timeout, |i| {
        wanted(i).is_some()
    })?;
    Ok(found
        .into_iter()
        .filter_map(|(instance, a)| Some((wanted(&instance)?, a.latest()?)))
        .collect())
}

/// The reader's context: reaching the end of a partition is how reading ends, not an
/// error to log (librdkafka reports it as one for an empty partition).
struct Reader;

impl ClientContext for Reader {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for Reader {}

/// The chunks of every instance that `want` names, read from the start of `topic` to
/// its end.
fn read_instances(
    client: &ClientConfig,
    topic: &str,
    reader: &str,
    timeout: Duration,
    want: impl Fn(&str) -> bool,
) -> Result<HashMap<String, Assembly>, String> {
    let fail = |e: KafkaError| format!("state topic {topic}: {e}");
    let mut cfg = client.clone();
    cfg.set("group.id", reader)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer<Reader> = cfg.create_with_context(Reader).map_err(fail)?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(fail)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!(
            "state topic {topic} does not exist; create it (cleanup.policy=compact) or name another with --state-topic"
        ));
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning).map_err(fail)?;
    }
    consumer.assign(&tpl).map_err(fail)?;
    let mut open: Vec<i32> = partitions;
    let mut found: HashMap<String, Assembly> = HashMap::new();
    let deadline = Instant::now() + timeout;
    while !open.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "state topic {topic}: partitions {open:?} not read to their end within {timeout:?}"
            ));
        }
        let m = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.retain(|x| *x != p);
                continue;
            }
            Some(Err(e)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                return Err(fail(e))
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "state topic read");
                continue;
            }
            Some(Ok(m)) => m,
        };
        let Some((instance, index)) = m
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.rsplit_once('/'))
            .filter(|(instance, _)| want(instance))
            .and_then(|(instance, i)| Some((instance, i.parse::<usize>().ok()?)))
        else {
            continue;
        };
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string)
        };
        let (Some(id), Some(count)) = (header(ID), header(COUNT).and_then(|c| c.parse().ok())) else {
            continue;
        };
        found
            .entry(instance.to_string())
            .or_default()
            .add(index, &id, count, m.payload().unwrap_or_default());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(records: &[StateRecord]) -> Option<Vec<u8>> {
        let mut a = Assembly::default();
        for r in records {
            let h = |n: &str| String::from_utf8(r.headers.iter().find(|(k, _)| k == n).unwrap().1.clone()).unwrap();
            let index = r.key.rsplit('/').next().unwrap().parse().unwrap();
            a.add(index, &h(ID), h(COUNT).parse().unwrap(), &r.payload);
        }
        a.latest()
    }

    #[test]
    fn a_checkpoint_is_cut_into_chunks_and_put_back_together() {
        let big: Vec<u8> = (0..CHUNK * 2 + 10).map(|i| (i % 251) as u8).collect();
        let records = chunks("a", "1", &big);
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].key, "a/2");
        assert!(records.iter().all(|r| r.payload.len() <= CHUNK));
        assert_eq!(assemble(&records), Some(big));
        assert_eq!(assemble(&chunks("a", "1", b"")), Some(Vec::new()));
    }

    #[test]
    fn the_last_complete_checkpoint_wins() {
        let first: Vec<u8> = vec![1; CHUNK + 1];
        let second: Vec<u8> = vec![2; CHUNK + 1];
        let mut records = chunks("a", "1-1", &first);
        records.extend(chunks("a", "1-2", &second));
        assert_eq!(assemble(&records).unwrap(), second);
        // a crash after the first chunk of a third: the second still stands
        records.push(chunks("a", "1-3", &[3; CHUNK + 1])[0].clone());
        assert_eq!(assemble(&records).unwrap(), second);
        assert_eq!(assemble(&[]), None);
    }

    #[test]
    fn the_newest_by_id_wins_whatever_order_the_partitions_are_read_in() {
        let older = chunks("a", "1700000000000-7", b"older");
        let newer = chunks("a", "1700000005000-1", b"newer");
        let mut records = newer.clone();
        records.extend(older.clone());
        assert_eq!(assemble(&records).unwrap(), b"newer");
        records = older;
        records.extend(newer);
        assert_eq!(assemble(&records).unwrap(), b"newer");
    }
}
