//! The Kafka source: one consumer in a consumer group, subscribed to the input topics.
//!
//! Offsets are never stored automatically (`enable.auto.offset.store=false`): the
//! pipeline calls [`KafkaSource::delivered`] with a batch once every output derived from
//! it is acknowledged, and [`KafkaSource::store_delivered`] once the state that holds it
//! is checkpointed (or at once, without checkpoints); librdkafka commits stored offsets
//! in the background and [`KafkaSource::commit`] commits them synchronously at shutdown.
//! Batches are processed in order, so offsets advance in order per partition. Records
//! the pipeline's state holds already are skipped: those below the offsets of a restored
//! checkpoint ([`KafkaSource::resume_from`]), and those read again when a rebalance hands
//! a partition back at its committed offset, which lags what was delivered.
//!
//! With partitioned state ([`KafkaSource::forget_revoked`]) a revoked partition is
//! forgotten instead: its records still in the batch being read are dropped, and what
//! it had delivered no longer counts, because its next owner may have moved it on; the
//! pipeline takes the list ([`KafkaSource::take_revoked`]) and hands the state over.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use tokio_util::sync::CancellationToken;

use super::Offsets;
use super::{partition_runs, RawRecord, RecordMeta, SourceError};
use crate::config::{Batch, Limits};
use crate::decode::{Decoded, Decoder, Stream};

/// Consumer lag per (topic, partition), from librdkafka's statistics.
pub type Lag = Arc<Mutex<BTreeMap<(String, i32), i64>>>;

/// Keeps the consumer lag that librdkafka reports every `statistics.interval.ms`, and
/// the partitions that rebalances revoked.
pub struct LagContext {
    lag: Lag,
    revoked: Mutex<Vec<(String, i32)>>,
    /// Set when `revoked` has something.
    rebalanced: AtomicBool,
}

impl ClientContext for LagContext {
    fn stats(&self, s: Statistics) {
        let mut lag = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, t) in s.topics {
            for (id, p) in t.partitions {
                // -1 is librdkafka's internal "unassigned" partition; a lag of -1 is unknown
                if id >= 0 && p.consumer_lag >= 0 {
                    lag.insert((topic.clone(), id), p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {
    // runs inside the consumer's poll, before the partitions go
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
            revoked.extend(tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())));
            self.rebalanced.store(true, Ordering::Release);
        }
    }
}

pub struct KafkaSource {
    consumer: Arc<StreamConsumer<LagContext>>,
    lag: Lag,
    reading: Arc<Reading>,
    /// The batches read (and decoded) while the caller processes the one before.
    ahead: Option<Ahead>,
    /// Decodes each batch as soon as it is read ([`KafkaSource::decode_ahead`]).
    decoder: Option<Decoder>,
    /// The last batch handed over, decoded, if it was.
    decoded: Option<Predecoded>,
    /// When the batch returned last took its first record, and how long it then waited
    /// for a record that did not come before its deadline closed it.
    timing: BatchTiming,
    group: String,
    /// The next offset to process per partition, after the batches delivered so far.
    delivered: Offsets,
    /// Records skipped because the state holds them already.
    skipped: u64,
    /// Forget what a revoked partition delivered (partitioned state).
    forget_revoked: bool,
    /// Partitions revoked since [`KafkaSource::take_revoked`] was last called (kept only
    /// with `forget_revoked`).
    revoked: Vec<(String, i32)>,
}

impl KafkaSource {
    pub fn new(
        client: &ClientConfig,
        group: &str,
        topics: &[(Stream, &str)],
        batch: Batch,
        limits: Limits,
    ) -> Result<KafkaSource, SourceError> {
        let mut cfg = client.clone();
        cfg.set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000");
        if cfg.get("auto.offset.reset").is_none() {
            cfg.set("auto.offset.reset", "earliest");
        }
        if cfg.get("statistics.interval.ms").is_none() {
            cfg.set("statistics.interval.ms", "5000");
        }
        fetch_defaults(&mut cfg);
        // a crashed instance's partitions move on after 10 s (librdkafka's default: 45 s)
        if cfg.get("session.timeout.ms").is_none() {
            cfg.set("session.timeout.ms", "10000");
        }
        let lag = Lag::default();
        let context = LagContext {
            lag: lag.clone(),
            revoked: Mutex::default(),
            rebalanced: AtomicBool::new(false),
        };
        let consumer: StreamConsumer<LagContext> = cfg.create_with_context(context)?;
        let names: Vec<&str> = topics.iter().map(|(_, t)| *t).collect();
        consumer.subscribe(&names)?;
        let streams = topics.iter().map(|(s, t)| (t.to_string(), *s)).collect();
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
            lag,
            reading: Arc::new(Reading {
                streams,
                batch,
                limits,
                spare: Mutex::new(Vec::new()),
            }),
            ahead: None,
            decoder: None,
            decoded: None,
            timing: BatchTiming::default(),
            group: group.to_string(),
            delivered: Offsets::new(),
            skipped: 0,
            forget_revoked: false,
            revoked: Vec::new(),
        })
    }

    /// Forgets revoked partitions (see the module's documentation): for partitioned
    /// state, whose partitions come back with the state their last owner checkpointed.
    /// Call it before the first batch: it also stops reading ahead.
    pub fn forget_revoked(&mut self) {
        self.forget_revoked = true;
    }

    /// Decodes each batch with `decoder` on the reading side, beside the processing of
    /// the batch before it; [`KafkaSource::take_decoded`] hands the result over.
    pub fn decode_ahead(&mut self, decoder: Decoder) {
        self.decoder = Some(decoder);
    }

    /// The batch [`KafkaSource::next_batch`] returned last, decoded, with the time that
    /// took; `None` when it was not decoded ahead (no decoder, or records were dropped
    /// from it when it was handed over).
    pub fn take_decoded(&mut self) -> Option<Predecoded> {
        self.decoded.take()
    }

    /// When the batch [`KafkaSource::next_batch`] returned last took its first record
    /// off the consumer, and how long it waited after its last one.
    pub fn batch_timing(&self) -> BatchTiming {
        self.timing
    }

    /// The partitions revoked since the last call.
    pub fn take_revoked(&mut self) -> Vec<(String, i32)> {
        std::mem::take(&mut self.revoked)
    }

    /// The next batch: up to `max_records`, closed `max_wait_ms` after its first
    /// record, without the records the state holds already. `None` once `cancel` fires.
    ///
    /// Batches are read ahead (except with [`KafkaSource::forget_revoked`]): a reader task
    /// reads the next batch while the one before it is decoded and the caller processes
    /// the one before that, so reading, copying records out of the consumer, decoding and
    /// processing overlap; at most [`READ_AHEAD`] batches wait. Offsets are stored only
    /// for delivered batches, so a batch read ahead and never handed over is read again
    /// by the next consumer of its partitions.
    pub async fn next_batch(&mut self, cancel: &CancellationToken) -> Result<Option<Vec<RawRecord>>, SourceError> {
        // Not with partitioned state: a partition revoked while the caller processes
        // would still be processed and checkpointed by a task its new owner may already
        // have restored; read when asked, a revoked partition's task goes first.
        let read = if self.forget_revoked {
            self.read(cancel).await
        } else {
            let ahead = match self.ahead.take() {
                Some(a) => a,
                None => self.start_reading(cancel),
            };
            self.ahead.insert(ahead).next().await
        };
        let mut out = read.records;
        if self.forget_revoked && !read.revoked.is_empty() {
            let gone = |topic: &str, partition: i32| read.revoked.iter().any(|(t, p)| *p == partition && t == topic);
            self.delivered.retain(|(t, p), _| !gone(t, *p));
            self.revoked.extend(read.revoked);
        }
        let before = out.len();
        self.drop_held(&mut out);
        // decoded with records the state holds: decoded again from what is left
        self.decoded = read.decoded.filter(|_| out.len() == before);
        self.timing = read.timing;
        Ok(if read.cancelled && out.is_empty() {
            None
        } else {
            Some(out)
        })
    }

    /// Reads a batch, and decodes it when decoding ahead.
    fn read(&self, cancel: &CancellationToken) -> impl std::future::Future<Output = Read> + Send + 'static {
        let batch = read_batch(
            self.consumer.clone(),
            self.reading.clone(),
            self.forget_revoked,
            cancel.clone(),
        );
        let decoder = self.decoder.clone();
        async move { decode_read(batch.await, decoder).await }
    }

    /// Starts the reader task: it reads batch after batch until `cancel` fires, and
    /// starts decoding each one as soon as it is read.
    fn start_reading(&self, cancel: &CancellationToken) -> Ahead {
        let (tx, batches) = tokio::sync::mpsc::channel(READ_AHEAD - 1);
        let (consumer, reading, decoder, cancel) = (
            self.consumer.clone(),
            self.reading.clone(),
            self.decoder.clone(),
            cancel.clone(),
        );
        let reader = tokio::spawn(async move {
            loop {
                let read = read_batch(consumer.clone(), reading.clone(), false, cancel.clone()).await;
                let last = read.cancelled;
                let decoding = tokio::spawn(decode_read(read, decoder.clone()));
                if tx.send(decoding).await.is_err() || last {
                    return;
                }
            }
        });
        Ahead {
            batches,
            reader: Some(reader),
        }
    }

    /// The partitions assigned to this instance now, with their streams.
    pub fn assigned(&self) -> Vec<(Stream, String, i32)> {
        let Ok(tpl) = self.consumer.assignment() else {
            return Vec::new();
        };
        tpl.elements()
            .iter()
            .filter_map(|e| Some((self.reading.stream_of(e.topic())?, e.topic().to_string(), e.partition())))
            .collect()
    }

    /// Consumer lag per partition as last reported (every 5 s by default).
    pub fn lag(&self) -> Vec<(String, i32, i64)> {
        self.lag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((t, p), l)| (t.clone(), *p, *l))
            .collect()
    }

    /// Whose offsets this source reads: `<cluster id>/<group>` (the cluster id is
    /// asked of the brokers; `unknown` when they do not say within `timeout`).
    pub fn scope(&self, timeout: Duration) -> String {
        let cluster = self.consumer.client().fetch_cluster_id(timeout);
        format!("{}/{}", cluster.as_deref().unwrap_or("unknown"), self.group)
    }

    /// Skips records below `offsets` (a restored checkpoint's): its state holds them.
    pub fn resume_from(&mut self, offsets: Offsets) {
        self.delivered = offsets;
    }

    /// Records skipped because the state holds them already.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Goes on with `partition` (of every input topic) from `offsets`, those of the
    /// state its task restored (none: from the committed offsets).
    pub fn restart_partition(&mut self, partition: i32, offsets: &Offsets) {
        self.delivered.retain(|(_, p), _| *p != partition);
        for ((t, p), next) in offsets {
            if *p == partition {
                self.delivered.insert((t.clone(), *p), *next);
            }
        }
    }

    /// Drops the records of `batch` that the state holds already (read before a task
    /// was restored, or again after a rebalance).
    pub fn drop_held(&mut self, batch: &mut Vec<RawRecord>) {
        self.skipped += drop_below(&self.delivered, batch) as u64;
    }

    /// Notes that every output of a batch is acknowledged.
    pub fn delivered(&mut self, records: &[RawRecord]) {
        advance(&mut self.delivered, records);
    }

    /// Hands a processed batch back: the batch after the one being read now writes its
    /// records over these. Copying a record out of the consumer then reuses a buffer
    /// instead of allocating one, and the processing side frees nothing; freeing a batch
    /// of 8,192 records that another thread allocated was 7% of the processing thread's
    /// time in `lookout bench`.
    ///
    /// Buffers of large records are not kept, so that the spare batch holds at most
    /// `max_records` × [`SPARE_RECORD_BYTES`].
    pub fn recycle(&self, mut batch: Vec<RawRecord>) {
        let mut spare = self.reading.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.is_empty() {
            batch.retain(|r| r.payload.capacity() <= SPARE_RECORD_BYTES);
            *spare = batch;
        }
    }

    /// The next offset to process per partition, after the delivered batches.
    pub fn delivered_offsets(&self) -> &Offsets {
        &self.delivered
    }

    /// Stores the delivered offsets for the next commit.
    pub fn store_delivered(&self) {
        for ((topic, partition), next) in &self.delivered {
            // A partition revoked by a rebalance cannot be stored; its new owner reads
            // from the last committed offset, which is at-least-once.
            if let Err(e) = self.consumer.store_offset(topic, *partition, next - 1) {
                tracing::debug!(topic, partition, offset = next - 1, error = %e, "offset not stored");
            }
        }
    }

    /// The consumer group's generation and member, for a transaction's offsets (the
    /// broker refuses them from a member that has lost its partitions).
    pub fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }

    /// Commits stored offsets now (at shutdown).
    pub fn commit(&self) {
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit is reported as an error by librdkafka.
            tracing::debug!(error = %e, "final commit");
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // the batch being read holds the consumer; nobody will take it
        if let Some(reader) = self.ahead.take().and_then(|a| a.reader) {
            reader.abort();
        }
    }
}

/// Drops the records below the next offset of their partition in `next` (the state
/// holds them); how many went.
fn drop_below(next: &Offsets, batch: &mut Vec<RawRecord>) -> usize {
    if next.is_empty() {
        return 0;
    }
    let next: HashMap<(&str, i32), i64> = next.iter().map(|((t, p), n)| ((t.as_str(), *p), *n)).collect();
    let next_of = |r: &RawRecord| next.get(&(r.meta.topic.as_str(), r.meta.partition)).copied();
    // nearly always nothing is held: find that out once per partition's run
    let held = |run: &[RawRecord]| next_of(&run[0]).is_some_and(|n| run.iter().any(|r| r.meta.offset < n));
    if !partition_runs(batch).any(held) {
        return 0;
    }
    let before = batch.len();
    batch.retain(|r| next_of(r).is_none_or(|n| r.meta.offset >= n));
    before - batch.len()
}

/// Moves each partition's next offset in `next` past the records of a batch.
fn advance(next: &mut Offsets, records: &[RawRecord]) {
    for run in partition_runs(records) {
        let last = run.iter().map(|r| r.meta.offset).max().unwrap_or(i64::MIN);
        let (topic, partition) = (&run[0].meta.topic, run[0].meta.partition);
        match next.get_mut(&(topic.clone(), partition)) {
            Some(n) => *n = (*n).max(last + 1),
            None => {
                next.insert((topic.clone(), partition), last + 1);
            }
        }
    }
}

/// The largest record buffer a recycled batch keeps for reuse.
const SPARE_RECORD_BYTES: usize = 16 << 10;

/// What every read of a batch needs.
struct Reading {
    /// Each input topic's stream: a handful, searched per record faster than hashed.
    streams: Vec<(String, Stream)>,
    batch: Batch,
    /// A record over `max_record_bytes` is copied out of the consumer only as far as its
    /// dead letter keeps it (`dead_letter_max_bytes`): a huge record, or one that a small
    /// compressed batch inflated to (a decompression bomb), is not copied whole.
    limits: Limits,
    /// A processed batch handed back ([`KafkaSource::recycle`]): the next read writes its
    /// records over these, reusing their buffers.
    spare: Mutex<Vec<RawRecord>>,
}

impl Reading {
    /// The stream of an input topic (of a topic named twice, the last).
    fn stream_of(&self, topic: &str) -> Option<Stream> {
        self.streams.iter().rev().find(|(t, _)| t == topic).map(|&(_, s)| s)
    }
}

/// A batch as read, before the records the state holds are dropped.
#[derive(Default)]
struct Read {
    records: Vec<RawRecord>,
    /// Partitions revoked while it was read (kept only when forgetting them).
    revoked: Vec<(String, i32)>,
    /// `cancel` fired.
    cancelled: bool,
    decoded: Option<Predecoded>,
    timing: BatchTiming,
}

/// When a batch's records came off the consumer.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchTiming {
    /// Its first record taken (`None`: the batch is empty).
    pub first: Option<std::time::Instant>,
    /// The time from its last record to its deadline, when the deadline closed it: the
    /// consumer had nothing more (a quiet input, or the end of a finite one).
    pub idle_after_last: Duration,
}

/// A batch decoded as it was read, and the time decoding took.
pub struct Predecoded {
    pub decoded: Result<Decoded, arrow::error::ArrowError>,
    pub took: Duration,
}

/// How many batches are read ahead of the one being processed, at most: one waiting
/// decoded (or being decoded) and one being read or waiting for room.
pub const READ_AHEAD: usize = 2;

/// The reader task and the batches it has read, in order.
struct Ahead {
    batches: tokio::sync::mpsc::Receiver<tokio::task::JoinHandle<Read>>,
    /// Taken once the reader has stopped and been joined.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Ahead {
    /// The next batch read; cancelled once the reader has stopped.
    async fn next(&mut self) -> Read {
        let cancelled = Read {
            cancelled: true,
            ..Read::default()
        };
        let joined = match self.batches.recv().await {
            Some(decoding) => decoding.await,
            // the reader returned after a cancelled batch, or failed
            None => match self.reader.take() {
                Some(reader) => match reader.await {
                    Ok(()) => return cancelled,
                    Err(e) => Err(e),
                },
                None => return cancelled,
            },
        };
        match joined {
            Ok(read) => read,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // aborted: the runtime is shutting down
            Err(_) => cancelled,
        }
    }
}

/// Decodes a batch just read, on a blocking thread, when a decoder is given.
async fn decode_read(mut read: Read, decoder: Option<Decoder>) -> Read {
    let Some(decoder) = decoder.filter(|_| !read.records.is_empty()) else {
        return read;
    };
    let records = std::mem::take(&mut read.records);
    let decoding = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let decoded = decoder.decode(&records);
        let took = started.elapsed();
        (records, Predecoded { decoded, took })
    });
    match decoding.await {
        Ok((records, decoded)) => {
            read.records = records;
            read.decoded = Some(decoded);
        }
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // the runtime is shutting down: nothing is processed any more, and what was read
        // is read again from the stored offsets
        Err(_) => read.cancelled = true,
    }
    read
}

/// How Lookout's consumers fetch, where the client does not say: librdkafka stops
/// fetching a partition for `fetch.queue.backoff.ms` once its local queue is full
/// (default 1 s); a pipeline that drains the queue faster than that sat idle waiting for
/// the next fetch (3.4 of 7.2 µs per record in `lookout bench`). The bench's plain
/// consumer fetches the same way.
pub fn fetch_defaults(cfg: &mut ClientConfig) {
    if cfg.get("fetch.queue.backoff.ms").is_none() {
        cfg.set("fetch.queue.backoff.ms", "20");
    }
}

/// Reads a batch: up to `max_records`, closed `max_wait_ms` after its first record.
async fn read_batch(
    consumer: Arc<StreamConsumer<LagContext>>,
    reading: Arc<Reading>,
    forget: bool,
    cancel: CancellationToken,
) -> Read {
    let (batch, limits) = (&reading.batch, &reading.limits);
    let mut spare = std::mem::take(&mut *reading.spare.lock().unwrap_or_else(|e| e.into_inner()));
    let mut read = Read {
        records: Vec::with_capacity(batch.max_records.min(16_384)),
        ..Read::default()
    };
    let out = &mut read.records;
    // One timer, one cancellation wait and one message stream per batch, not one per
    // record: idle for `max_wait_ms` (at least 50 ms) before the first record, then
    // `max_wait_ms` after it.
    let deadline = tokio::time::sleep(Duration::from_millis(batch.max_wait_ms.max(50)));
    tokio::pin!(deadline);
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let mut messages = consumer.stream();
    let mut started = false;
    // when the reader last waited on the consumer (it had run dry, or 1,024 records
    // were taken), for `BatchTiming::idle_after_last`
    let mut dry = std::time::Instant::now();
    loop {
        // What the consumer holds already is taken without a select. Cancellation and
        // the timer are looked at when it runs dry, and every 1,024 records, after
        // letting the runtime's other tasks run.
        let ready = if out.len() % 1024 == 1023 {
            tokio::task::yield_now().await;
            None
        } else {
            messages.next().now_or_never()
        };
        let msg = match ready {
            Some(m) => Ok(m.expect("kafka streams never terminate")),
            None => {
                dry = std::time::Instant::now();
                tokio::select! {
                    biased;
                    _ = &mut cancelled => {
                        read.cancelled = true;
                        return read;
                    }
                    _ = &mut deadline => Err(()),
                    m = messages.next() => Ok(m.expect("kafka streams never terminate")),
                }
            }
        };
        note_revoked(consumer.context(), forget, &mut read.revoked, out);
        match msg {
            // the batch's time is up; an empty batch lets event time and shutdown move
            Err(()) => {
                if started {
                    read.timing.idle_after_last = dry.elapsed();
                }
                return read;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                if !out.is_empty() {
                    return read;
                }
            }
            Ok(Ok(m)) => {
                let topic = m.topic();
                let Some(stream) = reading.stream_of(topic) else {
                    continue;
                };
                let payload = m.payload().unwrap_or_default();
                // a record over the limit goes to dead letters: keep only what they keep
                let cut_from = (payload.len() > limits.max_record_bytes).then_some(payload.len());
                let keep = if cut_from.is_some() {
                    payload.len().min(limits.dead_letter_max_bytes)
                } else {
                    payload.len()
                };
                let mut r = spare.pop().unwrap_or_else(|| RawRecord {
                    stream,
                    payload: Vec::new(),
                    meta: RecordMeta::default(),
                });
                r.stream = stream;
                r.payload.clear();
                r.payload.extend_from_slice(&payload[..keep]);
                r.meta.topic.clear();
                r.meta.topic.push_str(topic);
                r.meta.partition = m.partition();
                r.meta.offset = m.offset();
                r.meta.kafka_ts = m.timestamp().to_millis();
                r.meta.key = m.key().map(<[u8]>::to_vec);
                r.meta.headers.clear();
                if let Some(h) = may_have_headers(&m).then(|| m.headers()).flatten() {
                    r.meta.headers.extend(
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec).unwrap_or_default())),
                    );
                }
                r.meta.cut_from = cut_from;
                out.push(r);
                if !started {
                    started = true;
                    let now = tokio::time::Instant::now();
                    deadline.as_mut().reset(now + Duration::from_millis(batch.max_wait_ms));
                    read.timing.first = Some(now.into_std());
                }
                if out.len() >= batch.max_records {
                    return read;
                }
            }
        }
    }
}

/// Whether a record may carry headers; `false` only when it is known to have none.
///
/// librdkafka parses a record's headers when they are first asked for, and for a record
/// with none it still allocates, and frees, a reading buffer for the empty list: asking
/// for every record's headers was 6.9% of the CPU of `lookout bench`, whose records have
/// none. In the record format of every broker since Kafka 0.11 (v2), a record's value is
/// followed directly by its header count, a zigzag varint that is 0 for none, and
/// librdkafka's payload points into the record as received or decompressed, one
/// contiguous buffer. So the byte after a non-empty payload says, for a record known to
/// be v2: one that carries its batch's partition leader epoch, which v0 and v1 message
/// sets do not (librdkafka reports -1). An empty payload is a static "" in librdkafka,
/// not a pointer into the record, and a null one has no pointer at all: those records,
/// and those of older formats or of brokers that set no epoch, are asked as before.
fn may_have_headers(m: &BorrowedMessage<'_>) -> bool {
    let raw = m.ptr();
    // SAFETY: `raw` is the live message `m` borrows. Its payload, when non-null and
    // non-empty, lies in a v2 record (checked by the epoch) whose header count follows
    // it in the same buffer, so the byte read is part of the record.
    unsafe {
        let (payload, len) = ((*raw).payload as *const u8, (*raw).len);
        if payload.is_null() || len == 0 || rdkafka::bindings::rd_kafka_message_leader_epoch(raw) < 0 {
            return true;
        }
        *payload.add(len) != 0
    }
}

/// Partitions revoked by a rebalance during the last poll: with `forget`, their records
/// in `out` go and `revoked` gets them (the source then forgets what they delivered, and
/// the tasks hand them over).
fn note_revoked(context: &LagContext, forget: bool, revoked: &mut Vec<(String, i32)>, out: &mut Vec<RawRecord>) {
    if !context.rebalanced.swap(false, Ordering::AcqRel) {
        return;
    }
    let now = std::mem::take(&mut *context.revoked.lock().unwrap_or_else(|e| e.into_inner()));
    if forget {
        let gone = |topic: &str, partition: i32| now.iter().any(|(t, p)| *p == partition && t == topic);
        out.retain(|r| !gone(&r.meta.topic, r.meta.partition));
        revoked.extend(now);
    }
}

/// Reads every message of `topic` from the beginning up to the end it had when asked
/// (each partition's high watermark), without a consumer group: what `lookout report
/// --topic` shows. Gives up after `timeout` with what it read.
pub fn read_topic(client: &ClientConfig, topic: &str, timeout: Duration) -> Result<Vec<Vec<u8>>, SourceError> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    let mut cfg = client.clone();
    cfg.set("group.id", "lookout-report")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = cfg.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            if high > low {
                ends.insert(p.id(), high);
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            }
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + timeout;
    while !ends.is_empty() && std::time::Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m?;
        if let Some(p) = m.payload() {
            out.push(p.to_vec());
        }
        if ends.get(&m.partition()).is_some_and(|&end| m.offset() + 1 >= end) {
            ends.remove(&m.partition());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(topic: &str, partition: i32, offset: i64) -> RawRecord {
        RawRecord {
            stream: Stream::Logs,
            payload: Vec::new(),
            meta: RecordMeta {
                topic: topic.into(),
                partition,
                offset,
                ..RecordMeta::default()
            },
        }
    }

    fn positions(batch: &[RawRecord]) -> Vec<(&str, i32, i64)> {
        batch
            .iter()
            .map(|r| (r.meta.topic.as_str(), r.meta.partition, r.meta.offset))
            .collect()
    }

    /// Records with and without headers, with an empty list of them, with an empty and a
    /// null payload, uncompressed and compressed, read back from the embedded broker:
    /// only a record that has no headers is ever said to have none, and the check does
    /// say so for a plain record (librdkafka's mock broker writes v2 batches with a
    /// leader epoch, as Kafka does).
    #[test]
    fn a_record_is_said_to_have_no_headers_only_when_it_has_none() {
        use rdkafka::message::{Header, OwnedHeaders};
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        type Hs = &'static [(&'static str, Option<&'static [u8]>)];
        /// Payload, headers sent, and whether the record may have headers.
        type Case = (Option<&'static [u8]>, Option<Hs>, bool);
        // long and alike, so that a batch of them compresses
        const PLAIN: &[u8] = b"a plain record, a plain record, a plain record, a plain record, a plain record";
        let cases: [Case; 7] = [
            (Some(PLAIN), None, false),
            (Some(b"one"), Some(&[("k", Some(b"v"))]), true),
            (Some(b"listed, none"), Some(&[]), false),
            (Some(PLAIN), Some(&[("a", Some(b"")), ("b", None)]), true),
            (Some(b""), Some(&[("e", Some(b"1"))]), true),
            (Some(b""), None, true),
            (None, Some(&[("n", Some(b"x"))]), true),
        ];
        // as sent, and compressed: then the records lie in the batch's decompressed copy
        let topics = [("in", "none"), ("in-lz4", "lz4")];
        let broker = crate::source::embedded::EmbeddedBroker::start(&["in", "in-lz4"], 1).unwrap();
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", broker.bootstrap_servers());
        for (topic, compression) in topics {
            // one batch: compressed whole
            let producer: BaseProducer = client
                .clone()
                .set("compression.type", compression)
                .set("linger.ms", "100")
                .create()
                .unwrap();
            for (payload, headers, _) in cases {
                let mut record = BaseRecord::<[u8], [u8]>::to(topic);
                if let Some(p) = payload {
                    record = record.payload(p);
                }
                if let Some(hs) = headers {
                    let all = hs.iter().fold(OwnedHeaders::new(), |all, &(key, value)| {
                        all.insert(Header { key, value })
                    });
                    record = record.headers(all);
                }
                producer.send(record).map_err(|(e, _)| e).unwrap();
            }
            producer.flush(Duration::from_secs(10)).unwrap();
        }

        let consumer: BaseConsumer = client
            .clone()
            .set("group.id", "headers")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["in", "in-lz4"]).unwrap();
        let mut seen = 0;
        for _ in 0..200 {
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m.unwrap();
            let at = format!("{} record {}", m.topic(), m.offset());
            let (payload, sent, may) = cases[m.offset() as usize];
            assert_eq!(m.payload(), payload, "{at}");
            let got: Vec<(String, Option<Vec<u8>>)> = m.headers().map_or_else(Vec::new, |h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            });
            let want: Vec<(String, Option<Vec<u8>>)> = sent
                .unwrap_or_default()
                .iter()
                .map(|&(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
                .collect();
            assert_eq!(got, want, "{at}");
            assert_eq!(may_have_headers(&m), may, "{at}");
            seen += 1;
            if seen == topics.len() * cases.len() {
                return;
            }
        }
        panic!("read {seen} of {} records", topics.len() * cases.len());
    }

    /// Runs of a partition, interleaved partitions and topics sharing a partition
    /// number: every partition's next offset is one past its highest, and only what is
    /// below it is dropped from a later batch.
    #[test]
    fn offsets_advance_and_held_records_drop_per_partition_whatever_the_runs() {
        let mut next = Offsets::new();
        let first = [
            at("logs", 0, 5),
            at("logs", 0, 6),
            at("logs", 1, 3),
            at("metrics", 0, 9),
            at("logs", 0, 7),
            at("logs", 1, 2),
        ];
        advance(&mut next, &first);
        let want: Offsets = [
            (("logs".to_string(), 0), 8),
            (("logs".to_string(), 1), 4),
            (("metrics".to_string(), 0), 10),
        ]
        .into();
        assert_eq!(next, want);
        advance(&mut next, &[at("logs", 0, 1)]);
        assert_eq!(next[&("logs".to_string(), 0)], 8, "never moves back");

        let mut fresh = vec![at("logs", 0, 8), at("logs", 0, 9), at("metrics", 1, 0)];
        assert_eq!(drop_below(&next, &mut fresh), 0);
        assert_eq!(fresh.len(), 3);

        let mut again = vec![
            at("logs", 0, 6),
            at("logs", 0, 8),
            at("metrics", 0, 9),
            at("metrics", 0, 10),
            at("logs", 1, 3),
            at("logs", 1, 4),
            at("events", 0, 0),
        ];
        assert_eq!(drop_below(&next, &mut again), 3);
        assert_eq!(
            positions(&again),
            [("logs", 0, 8), ("metrics", 0, 10), ("logs", 1, 4), ("events", 0, 0)]
        );
        assert_eq!(drop_below(&Offsets::new(), &mut again), 0);
    }
}
