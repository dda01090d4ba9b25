//! `lookout bench`: how many events per second Lookout processes end to end, against how
//! many a plain Kafka consumer can read from the same topics (the ceiling).
//!
//! 1. Fresh topics (names unique to the run) on the embedded broker or `--brokers`.
//! 2. The built-in scenario, minute after minute, produced into them until `events`
//!    records are written (of the chosen streams: `--streams logs` measures log events
//!    alone, and only their topic is read); per stream counts. Its hosts write
//!    `--log-lines` routine log lines a simulated minute ([`LOG_LINES`] by default):
//!    windows, detectors and trend periods close once per simulated minute however many
//!    records it holds, so the sparser the traffic, the more of that work each event
//!    carries.
//! 3. Proof that nothing counted was dropped: every input partition still starts at
//!    offset 0 (the mock cluster silently drops the oldest messages past 100,000 or 5 MiB
//!    per partition, so the bench spreads the records over enough partitions) and the
//!    partitions' ends add up to what was produced.
//! 4. The ceiling: one plain consumer reads every record and drops it.
//! 5. Lookout: the pipeline (decode, templates, SQL, detectors, correlation, publishing
//!    to Kafka, offsets stored after delivery) consumes the same records in a new group.
//! 6. Steps 4 and 5 again, `rounds` times in all (new groups, a new pipeline each time):
//!    on a shared machine one round's ratio moves by a sixth from run to run, so the
//!    round of the median ratio is reported, with every round's rates.
//!
//! Both rates run from the first record taken off the consumer, so group joins do not
//! count: the plain consumer's to its last record, Lookout's to its last batch's outputs
//! acknowledged, less the time that batch waited for records past the end of the input
//! (until `[batch] max_wait_ms` closed it: a stream always has more). Also measured in
//! step 5: the wall time of each batch from its last record received to its outputs
//! acknowledged (p50 / p99), the process's CPU time per event, and its peak resident
//! memory (the whole run). The process's CPU time per event is measured in step 4 too:
//! both reads keep the two cores busy, so the ratio is close to the plain consumer's CPU
//! per event over Lookout's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Processor;
use crate::config::PipelineConfig;
use crate::decode::Stream;
use crate::sink::kafka::KafkaSink;
use crate::sink::{Sent, Sink, Topic};
use crate::source::embedded::EmbeddedBroker;
use crate::source::kafka::{BatchTiming, KafkaSource};
use crate::source::scenario::Scenario;
use crate::source::RawRecord;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Records to produce (at least; whole scenario minutes).
    pub events: u64,
    /// An external cluster; `None` starts the embedded broker.
    pub brokers: Option<String>,
    pub seed: u64,
    /// Routine log lines a scenario host writes a minute ([`Scenario::with_log_lines`]).
    pub log_lines: u32,
    /// No progress on standard error.
    pub quiet: bool,
    /// The streams whose records are produced and read (the scenario's records of the
    /// others are left out, and their topics are not read).
    pub streams: Vec<Stream>,
    /// Times the ceiling and Lookout each read the records (at least 1); the round of
    /// the median ratio is reported.
    pub rounds: u32,
}

/// The bench's routine log lines a host a minute, 10 a second: an instance logging a line
/// a request at 10 requests a second, a quiet service among those a platform team runs.
pub const LOG_LINES: u32 = 600;

/// What the bench measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub events: u64,
    pub logs: u64,
    pub metrics: u64,
    pub events_stream: u64,
    pub partitions: i32,
    pub dropped: u64,
    pub ceiling_events_per_s: f64,
    pub events_per_s: f64,
    pub ratio: f64,
    /// Every round's rates, in the order run.
    pub rounds: Vec<RoundRates>,
    pub incident_updates: u64,
    pub anomalies: u64,
    pub dead_letters: u64,
    /// Records that came after their SQL window had closed, and windows published again
    /// with them (the input's order shows here: a partition read behind the others).
    pub late_records: u64,
    pub window_corrections: u64,
    /// Points the detectors saw older than their series' newest.
    pub out_of_order_points: u64,
    pub batches: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub cpu_us_per_event: f64,
    /// The plain consumer's CPU time per event in the same round (the process's, with
    /// the embedded broker's when there is one): what reading alone costs.
    pub ceiling_cpu_us_per_event: f64,
    pub peak_rss_mb: f64,
    /// How long Lookout's last batch waited after the input's last record for more,
    /// until its deadline (`[batch] max_wait_ms`): the end of a finite input, left out
    /// of Lookout's rate and of its time waiting for records.
    pub end_wait_ms: f64,
    /// Wall time per event in each stage, µs: waiting for records, decode, templates
    /// (mining and log anomalies), SQL, detectors, correlation, publishing.
    pub stage_us_per_event: BTreeMap<&'static str, f64>,
}

/// One round's rates: the ceiling's and Lookout's, read one after the other.
#[derive(Debug, Clone, Serialize)]
pub struct RoundRates {
    pub ceiling_events_per_s: f64,
    pub events_per_s: f64,
    pub ratio: f64,
}

const PER_PARTITION_RECORDS: u64 = 80_000;
const PER_PARTITION_BYTES: u64 = 4 << 20;

/// Input partitions (per topic) for the broker to hold `records` of `bytes` with room to
/// spare: the mock cluster keeps at most 100,000 messages or 5 MiB a partition.
pub(super) fn partitions_for(records: u64, bytes: u64) -> i32 {
    (records / PER_PARTITION_RECORDS)
        .max(bytes / PER_PARTITION_BYTES)
        .max(1) as i32
        + 1
}

/// The round that is reported: the one of the median ratio (the lower of the two middle
/// ones). `rounds` is not empty.
fn median_round(rounds: &[RoundRates]) -> usize {
    let mut order: Vec<usize> = (0..rounds.len()).collect();
    order.sort_by(|&a, &b| rounds[a].ratio.total_cmp(&rounds[b].ratio));
    order[(order.len() - 1) / 2]
}

pub async fn bench(cfg: &PipelineConfig, opts: &BenchOptions) -> Result<BenchReport, String> {
    // The records first, to size the partitions.
    let scenario = Scenario::new(opts.seed, 1_741_046_400_000).with_log_lines(opts.log_lines);
    let mut records = Vec::new();
    let mut bytes = 0u64;
    let mut minute = 0;
    while (records.len() as u64) < opts.events {
        for g in scenario.minute(minute) {
            if !opts.streams.contains(&g.stream) {
                continue;
            }
            bytes += g.payload.len() as u64;
            records.push(g);
        }
        minute += 1;
    }
    let total = records.len() as u64;
    let partitions = partitions_for(total, bytes);

    let brokers = match &opts.brokers {
        Some(b) => Brokers::External(b),
        None => Brokers::Embedded,
    };
    let mut setup = Setup::new(cfg, run_name(), brokers, partitions).await?;
    setup.read_only(&opts.streams);
    let inputs = setup.inputs();
    let (client, run) = (&setup.client, &setup.run);

    // Produce.
    let say = |what: String| {
        if !opts.quiet {
            eprintln!("bench: {what}");
        }
    };
    say(format!(
        "producing {} records into {partitions} input partitions",
        records.len()
    ));
    let producer: FutureProducer = client
        .clone()
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| e.to_string())?;
    let mut per_stream: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (c, chunk) in records.chunks(20_000).enumerate() {
        // Round robin over the partitions: the default sticky partitioner fills one
        // partition per producer batch, past what the mock cluster keeps.
        let sends = chunk.iter().enumerate().map(|(i, g)| {
            producer.send(
                FutureRecord::<(), [u8]>::to(setup.topic(g.stream))
                    .payload(&g.payload)
                    .timestamp(g.ts)
                    .partition(((c * 20_000 + i) % partitions as usize) as i32),
                Duration::from_secs(30),
            )
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| format!("producing: {e}"))?;
        }
        for g in chunk {
            *per_stream.entry(g.stream.name()).or_default() += 1;
        }
    }
    drop(records);
    // Every send was acknowledged; an idle producer's polling thread would still wake
    // through both measurements.
    drop(producer);

    // Nothing dropped: every partition starts at 0 and their ends add up.
    let probe: StreamConsumer = client
        .clone()
        .set("group.id", format!("{run}-probe"))
        .create()
        .map_err(|e| e.to_string())?;
    let mut dropped = 0u64;
    let mut stored = 0u64;
    for &topic in &inputs {
        for p in 0..partitions {
            let (low, high) = probe
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_err(|e| format!("{topic}/{p}: {e}"))?;
            tracing::debug!(topic, partition = p, low, high, "input partition");
            dropped += low.max(0) as u64;
            stored += high.max(0) as u64;
        }
    }
    drop(probe);
    if dropped > 0 || stored != total {
        return Err(format!(
            "the broker kept {stored} of {total} records ({dropped} dropped from partition starts): fewer records or more partitions"
        ));
    }

    let mut rounds = Vec::new();
    for round in 1..=opts.rounds {
        if opts.rounds > 1 {
            say(format!("round {round} of {}", opts.rounds));
        }
        rounds.push(measure(&setup, &inputs, total, round, &say).await?);
    }
    let rate = |s: f64| if s > 0.0 { total as f64 / s } else { 0.0 };
    let each: Vec<RoundRates> = rounds
        .iter()
        .map(|r| RoundRates {
            ceiling_events_per_s: rate(r.ceiling_s),
            events_per_s: rate(r.lookout_s),
            ratio: if r.ceiling_s > 0.0 {
                r.ceiling_s / r.lookout_s.max(1e-9)
            } else {
                0.0
            },
        })
        .collect();
    let median = median_round(&each);
    let m = rounds.swap_remove(median);

    let pct = |q: f64| {
        m.latencies
            .get(((m.latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let per = |ns: f64| ns / 1e3 / total.max(1) as f64;
    let (stats, t) = (&m.stats, m.stats.time);
    let stage_us_per_event = BTreeMap::from([
        ("1 waiting for records", per(m.waiting.as_nanos() as f64)),
        ("2 decode", per(t.decode as f64)),
        ("3 templates", per(t.templates as f64)),
        ("4 sql", per(t.sql as f64)),
        ("5 detectors", per(t.detectors as f64)),
        ("6 correlation", per(t.correlation as f64)),
        ("7 publishing", per(m.publishing.as_nanos() as f64)),
    ]);
    Ok(BenchReport {
        events: total,
        logs: per_stream.get("logs").copied().unwrap_or(0),
        metrics: per_stream.get("metrics").copied().unwrap_or(0),
        events_stream: per_stream.get("events").copied().unwrap_or(0),
        partitions,
        dropped,
        ceiling_events_per_s: each[median].ceiling_events_per_s,
        events_per_s: each[median].events_per_s,
        ratio: each[median].ratio,
        rounds: each,
        incident_updates: m.incidents,
        anomalies: m.anomalies,
        dead_letters: stats.dead_letters,
        late_records: stats.late_records,
        window_corrections: stats.window_corrections,
        out_of_order_points: stats.out_of_order_points,
        batches: m.latencies.len() as u64,
        latency_p50_ms: pct(0.5),
        latency_p99_ms: pct(0.99),
        cpu_us_per_event: m.cpu_s * 1e6 / total.max(1) as f64,
        ceiling_cpu_us_per_event: m.ceiling_cpu_s * 1e6 / total.max(1) as f64,
        peak_rss_mb: peak_rss_kb() as f64 / 1024.0,
        end_wait_ms: m.end_wait.as_secs_f64() * 1e3,
        stage_us_per_event,
    })
}

/// One round's measurements: the ceiling's read of every record, then Lookout's.
struct Round {
    ceiling_s: f64,
    /// The process's CPU time during the plain consumer's read.
    ceiling_cpu_s: f64,
    lookout_s: f64,
    /// The process's CPU time during Lookout's read.
    cpu_s: f64,
    /// Each batch's wall time from its last record received to its outputs
    /// acknowledged, ms, sorted.
    latencies: Vec<f64>,
    incidents: u64,
    anomalies: u64,
    waiting: Duration,
    /// Lookout's last batch's wait past the end of the input, left out of `lookout_s`.
    end_wait: Duration,
    publishing: Duration,
    stats: super::Stats,
}

/// A plain consumer, then Lookout, each in a group of its own, read all `total` records
/// of the inputs from the start.
async fn measure(
    setup: &Setup,
    inputs: &[&str],
    total: u64,
    round: u32,
    say: &impl Fn(String),
) -> Result<Round, String> {
    say("a plain consumer reads every record (the ceiling)".into());
    // The ceiling: a plain consumer, fetching as Lookout's does.
    let plain: StreamConsumer = setup
        .reading_client()
        .set("group.id", format!("{}-ceiling-{round}", setup.run))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    plain.subscribe(inputs).map_err(|e| e.to_string())?;
    let (mut seen, mut first, mut cpu_start) = (0u64, None, 0.0);
    while seen < total {
        match tokio::time::timeout(Duration::from_secs(30), plain.recv()).await {
            Ok(Ok(m)) => {
                if first.is_none() {
                    first = Some(Instant::now());
                    cpu_start = cpu_seconds();
                }
                std::hint::black_box(m.payload().map(<[u8]>::len));
                seen += 1;
            }
            Ok(Err(e)) => return Err(format!("plain consumer: {e}")),
            Err(_) => return Err(format!("plain consumer: no record for 30 s after {seen} of {total}")),
        }
    }
    let ceiling_s = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    let ceiling_cpu_s = cpu_seconds() - cpu_start;
    drop(plain);

    say("Lookout's default pipeline reads every record end to end".into());
    let mut lookout = Lookout::start(setup, &format!("{}-lookout-{round}", setup.run)).await?;
    let (mut first, mut cpu_start) = (None, 0.0);
    let mut latencies = Vec::new();
    let (mut incidents, mut anomalies) = (0u64, 0u64);
    let mut idle = 0;
    let (mut waiting, mut publishing) = (Duration::ZERO, Duration::ZERO);
    // how long the latest batch waited after its last record for more, until its deadline
    let mut end_wait = Duration::ZERO;
    loop {
        // the first batch's processing counts; the wait for it (group join) barely does
        if lookout.processor.stats.records_in == 0 {
            cpu_start = cpu_seconds();
        }
        let step = if lookout.processor.stats.records_in < total {
            lookout.step().await?
        } else {
            // every record processed: the last batch's outputs are still in flight
            match lookout.drain().await? {
                Some(step) => Some(step),
                None => break,
            }
        };
        let Some(step) = step else {
            idle += 1;
            if idle > 300 {
                return Err(format!(
                    "Lookout read nothing for a minute after {} of {total}",
                    lookout.processor.stats.records_in
                ));
            }
            continue;
        };
        idle = 0;
        if first.is_none() {
            // from the first record taken, as the plain consumer's
            first = Some(step.timing.first.unwrap_or(step.received));
        } else {
            waiting += step.waited;
        }
        end_wait = step.timing.idle_after_last;
        publishing += step.publishing;
        latencies.push(step.acked.duration_since(step.received).as_secs_f64() * 1e3);
        incidents += step.incidents;
        anomalies += step.anomalies;
        lookout.recycle(step.batch);
    }
    // The last batch waited for records past the end of the input until its deadline
    // (`max_wait_ms`); a stream always has more, and the plain consumer's time ends at
    // its last record: that wait is not counted.
    let lookout_s = first.map_or(0.0, |f| f.elapsed().saturating_sub(end_wait).as_secs_f64());
    let waiting = waiting.saturating_sub(end_wait);
    let cpu = cpu_seconds() - cpu_start;
    let processor = lookout.finish().await?;

    latencies.sort_by(f64::total_cmp);
    Ok(Round {
        ceiling_s,
        ceiling_cpu_s,
        lookout_s,
        cpu_s: cpu,
        latencies,
        incidents,
        anomalies,
        waiting,
        end_wait,
        publishing,
        stats: processor.stats,
    })
}

/// Fresh topics (names unique to the run) on the embedded broker or `brokers`, and the
/// pipeline configured to read and write them.
pub(super) struct Setup {
    pub run: String,
    pub cfg: PipelineConfig,
    /// The streams whose input topics are read.
    pub streams: Vec<Stream>,
    pub client: ClientConfig,
    /// The broker is librdkafka's mock (embedded here or in `lookout bench-feed`).
    pub mock: bool,
    _broker: Option<EmbeddedBroker>,
}

/// Where a bench's topics live.
pub(super) enum Brokers<'a> {
    /// The embedded broker, started in this process with the run's topics.
    Embedded,
    /// A cluster on which the bench creates the run's topics.
    External(&'a str),
    /// A cluster that has the run's topics already (made by `lookout bench-feed`), and
    /// whether it is librdkafka's mock broker.
    Ready { bootstrap: &'a str, mock: bool },
}

/// A name unique to a bench run, the prefix of its topics and groups.
pub(super) fn run_name() -> String {
    format!("bench-{}-{}", std::process::id(), now_ms())
}

/// A run's input topics (logs, metrics, events) and output topics (incidents,
/// anomalies, trend reports, dead letters).
pub(super) fn topic_names(run: &str) -> ([String; 3], [String; 4]) {
    let t = |s: &str| format!("{run}-{s}");
    (
        [t("logs"), t("metrics"), t("events")],
        [t("incidents"), t("anomalies"), t("trend-reports"), t("dead-letters")],
    )
}

impl Setup {
    pub async fn new(
        cfg: &PipelineConfig,
        run: String,
        brokers: Brokers<'_>,
        partitions: i32,
    ) -> Result<Setup, String> {
        let (inputs, outputs) = topic_names(&run);
        let mut cfg = cfg.clone();
        let [logs, metrics, events] = inputs.clone();
        cfg.spec.sources.logs.topic = logs;
        cfg.spec.sources.metrics.topic = metrics;
        cfg.spec.sources.events.topic = events;
        let [incidents, anomalies, trend_reports, dead_letters] = outputs.clone();
        cfg.spec.sinks.incidents = incidents;
        cfg.spec.sinks.anomalies = anomalies;
        cfg.spec.sinks.trend_reports = trend_reports;
        cfg.spec.sinks.dead_letters = dead_letters;
        let (bootstrap, broker, mock) = match brokers {
            Brokers::External(b) => {
                create_topics(b, &inputs, partitions, &outputs).await?;
                (b.to_string(), None, false)
            }
            Brokers::Ready { bootstrap, mock } => (bootstrap.to_string(), None, mock),
            Brokers::Embedded => {
                let broker = start_broker(&run, partitions)?;
                (broker.bootstrap_servers().to_string(), Some(broker), true)
            }
        };
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &bootstrap);
        Ok(Setup {
            run,
            cfg,
            streams: Stream::ALL.to_vec(),
            client,
            mock,
            _broker: broker,
        })
    }

    /// The client of a consumer of the inputs, Lookout's or the plain one: it fetches as
    /// Lookout's consumers do ([`crate::source::kafka::fetch_defaults`]). librdkafka's
    /// mock broker answers a fetch that finds no data after the whole
    /// `fetch.wait.max.ms` (500 ms by default), even when records arrive meanwhile; a
    /// broker answers as soon as they do. On the mock (embedded, or the feed's) the
    /// bench's consumers wait 10 ms, so that what it reports is theirs, not the mock's.
    pub fn reading_client(&self) -> ClientConfig {
        let mut client = self.client.clone();
        crate::source::kafka::fetch_defaults(&mut client);
        if self.mock && client.get("fetch.wait.max.ms").is_none() {
            client.set("fetch.wait.max.ms", "10");
        }
        client
    }

    /// Reads only these streams' topics (the others are made, and stay empty).
    pub fn read_only(&mut self, streams: &[Stream]) {
        self.streams = streams.to_vec();
    }

    /// The input topics read.
    pub fn inputs(&self) -> Vec<&str> {
        self.streams.iter().map(|&s| self.topic(s)).collect()
    }

    /// The input topic of a stream.
    pub fn topic(&self, stream: Stream) -> &str {
        let s = &self.cfg.spec.sources;
        match stream {
            Stream::Logs => &s.logs.topic,
            Stream::Metrics => &s.metrics.topic,
            Stream::Events => &s.events.topic,
        }
    }
}

/// The default pipeline as `lookout run` drives it: a batch from the consumer, processed,
/// its outputs sent; they are acknowledged while the next batch is processed, and then
/// its offsets are stored for commit.
pub(super) struct Lookout {
    pub processor: Processor,
    source: KafkaSource,
    sink: Sink,
    cancel: CancellationToken,
    in_flight: Option<InFlight>,
}

/// A batch processed, its outputs sent and not yet acknowledged.
struct InFlight {
    sent: Sent,
    batch: Vec<RawRecord>,
    waited: Duration,
    received: Instant,
    timing: BatchTiming,
    /// Time spent sending its outputs and settling the batch before it.
    publishing: Duration,
}

/// One batch through [`Lookout`], once its outputs are acknowledged.
pub(super) struct Step {
    pub batch: Vec<RawRecord>,
    /// From asking for the batch to its hand-over: its last record, or the deadline after
    /// it when the consumer ran dry.
    pub waited: Duration,
    pub received: Instant,
    /// When its first record came off the consumer, and how long the reader then
    /// waited after its last one for more, until the batch's deadline.
    pub timing: BatchTiming,
    /// Time the pipeline spent sending its outputs and waiting for their
    /// acknowledgement, beside processing.
    pub publishing: Duration,
    /// Its outputs acknowledged by the broker.
    pub acked: Instant,
    pub incidents: u64,
    pub anomalies: u64,
}

impl Lookout {
    /// Lookout reading the setup's inputs in consumer group `group`.
    pub async fn start(setup: &Setup, group: &str) -> Result<Lookout, String> {
        let cfg = &setup.cfg;
        let mut processor = Processor::build(cfg).await.map_err(|e| e.to_string())?;
        processor.read_partitions();
        let client = setup.reading_client();
        let topics: Vec<_> = cfg
            .topics()
            .into_iter()
            .filter(|(s, _)| setup.streams.contains(s))
            .collect();
        let mut source =
            KafkaSource::new(&client, group, &topics, cfg.spec.batch, cfg.spec.limits).map_err(|e| e.to_string())?;
        source.decode_ahead(processor.decoder.clone());
        let cancel = CancellationToken::new();
        let sink = Sink::Kafka(
            KafkaSink::new(&setup.client, cfg.spec.sinks.clone(), cancel.clone()).map_err(|e| e.to_string())?,
        );
        Ok(Lookout {
            processor,
            source,
            sink,
            cancel,
            in_flight: None,
        })
    }

    /// The next batch processed and its outputs sent; what it gives is the batch before
    /// it, settled meanwhile (`None`: there was none, or nothing came within the batch's
    /// wait and nothing was in flight).
    pub async fn step(&mut self) -> Result<Option<Step>, String> {
        let asked = Instant::now();
        let batch = self
            .source
            .next_batch(&self.cancel)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        if batch.is_empty() {
            return self.drain().await;
        }
        let received = Instant::now();
        let messages = self
            .processor
            .process_from(&batch, &mut self.source)
            .await
            .map_err(|e| e.to_string())?;
        let processed = Instant::now();
        let settled = self.drain().await?;
        let sent = self.sink.send(messages);
        self.in_flight = Some(InFlight {
            sent,
            batch,
            waited: received.duration_since(asked),
            received,
            timing: self.source.batch_timing(),
            publishing: processed.elapsed(),
        });
        Ok(settled)
    }

    /// Settles the batch in flight, if any: its outputs acknowledged, its offsets
    /// stored.
    pub async fn drain(&mut self) -> Result<Option<Step>, String> {
        let Some(f) = self.in_flight.take() else {
            return Ok(None);
        };
        let settling = Instant::now();
        let messages = self.sink.settle(f.sent).await.map_err(|e| e.to_string())?;
        let acked = Instant::now();
        self.source.delivered(&f.batch);
        self.source.store_delivered();
        let count = |t: Topic| messages.iter().filter(|m| m.topic == t).count() as u64;
        Ok(Some(Step {
            waited: f.waited,
            received: f.received,
            timing: f.timing,
            publishing: f.publishing + acked.duration_since(settling),
            acked,
            incidents: count(Topic::Incidents),
            anomalies: count(Topic::Anomalies),
            batch: f.batch,
        }))
    }

    /// Polls (reading nothing, as no records exist yet) until the consumer owns `count`
    /// partitions: the group join happens before records are produced.
    pub async fn wait_for_partitions(&mut self, count: usize) -> Result<(), String> {
        let since = Instant::now();
        while self.source.assigned().len() < count {
            if since.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "the consumer owns {} of {count} partitions after a minute",
                    self.source.assigned().len()
                ));
            }
            if let Some(step) = self.step().await? {
                return Err(format!("{} records before any were produced", step.batch.len()));
            }
        }
        Ok(())
    }

    /// Hands a step's batch back to the source, to be read over (see
    /// [`KafkaSource::recycle`]).
    pub fn recycle(&self, batch: Vec<RawRecord>) {
        self.source.recycle(batch);
    }

    /// Commits, flushes the producer, and hands back the processor for its counters.
    pub async fn finish(mut self) -> Result<Processor, String> {
        self.source.commit();
        self.sink.close().await.map_err(|e| e.to_string())?;
        Ok(self.processor)
    }
}

/// The embedded broker with a run's topics, `partitions` each.
pub(super) fn start_broker(run: &str, partitions: i32) -> Result<EmbeddedBroker, String> {
    let (inputs, outputs) = topic_names(run);
    let topics: Vec<&str> = inputs.iter().chain(&outputs).map(String::as_str).collect();
    EmbeddedBroker::start(&topics, partitions).map_err(|e| e.to_string())
}

async fn create_topics(bootstrap: &str, inputs: &[String], partitions: i32, outputs: &[String]) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let mut topics: Vec<NewTopic> = inputs
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    topics.extend(outputs.iter().map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1))));
    for r in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .map_err(|e| e.to_string())?
    {
        r.map_err(|(t, e)| format!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// User plus system CPU time of this process, from /proc (0 where there is none).
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at its closing ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size in KiB (VmHWM), 0 where /proc has none.
pub fn peak_rss_kb() -> u64 {
    proc_status_kb("VmHWM:")
}

/// A KiB figure of /proc/self/status (`field` with its colon), 0 where there is none.
pub(super) fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|x| x.parse().ok()))
        })
        .unwrap_or(0)
}

pub(super) fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Rows of `key  value`, the values in one column after the longest key.
pub(super) fn aligned(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("{k:<width$} {v}\n")).collect()
}

impl BenchReport {
    /// The table `lookout bench` prints.
    pub fn table(&self) -> String {
        let mut rows = Vec::new();
        let mut row = |k: &'static str, v: String| rows.push((k, v));
        row(
            "events in (logs / metrics / events)",
            format!(
                "{} ({} / {} / {})",
                self.events, self.logs, self.metrics, self.events_stream
            ),
        );
        row(
            "input partitions, records dropped by the broker",
            format!("{}, {}", self.partitions, self.dropped),
        );
        row(
            "ceiling: plain consumer",
            format!("{:.0} events/s", self.ceiling_events_per_s),
        );
        row(
            "Lookout, default pipeline end to end",
            format!("{:.0} events/s", self.events_per_s),
        );
        row(
            "left out: last batch's wait past the input's end",
            format!("{:.0} ms (until its max_wait_ms)", self.end_wait_ms),
        );
        if self.rounds.len() > 1 {
            let each: Vec<String> = self.rounds.iter().map(|r| format!("{:.2}", r.ratio)).collect();
            row(
                "ratio to the ceiling",
                format!(
                    "{:.2}, the median of {} rounds ({}); figures here are that round's",
                    self.ratio,
                    self.rounds.len(),
                    each.join(", ")
                ),
            );
            // the ceiling moves more than Lookout from round to round: show both
            let rates: Vec<String> = self
                .rounds
                .iter()
                .map(|r| format!("{:.0} / {:.0}", r.ceiling_events_per_s / 1e3, r.events_per_s / 1e3))
                .collect();
            row("each round: ceiling / Lookout, thousand events/s", rates.join(", "));
        } else {
            row("ratio to the ceiling", format!("{:.2}", self.ratio));
        }
        row(
            "out: incident updates / anomalies / dead letters",
            format!("{} / {} / {}", self.incident_updates, self.anomalies, self.dead_letters),
        );
        row(
            "late records / SQL windows corrected / points out of order",
            format!(
                "{} / {} / {}",
                self.late_records, self.window_corrections, self.out_of_order_points
            ),
        );
        row(
            "batch latency p50 / p99 (received → acked)",
            format!(
                "{:.1} / {:.1} ms over {} batches",
                self.latency_p50_ms, self.latency_p99_ms, self.batches
            ),
        );
        row(
            "CPU time per event: Lookout / plain consumer",
            format!("{:.2} / {:.2} µs", self.cpu_us_per_event, self.ceiling_cpu_us_per_event),
        );
        row(
            "peak resident memory (whole run)",
            format!("{:.0} MB", self.peak_rss_mb),
        );
        let stages: Vec<String> = self
            .stage_us_per_event
            .iter()
            .map(|(k, v)| format!("{} {v:.2}", &k[2..]))
            .collect();
        row("wall time per event by stage, µs", stages.join(", "));
        aligned(&rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rounds: &[(f64, f64)]) -> BenchReport {
        let rounds: Vec<RoundRates> = rounds
            .iter()
            .map(|&(c, l)| RoundRates {
                ceiling_events_per_s: c,
                events_per_s: l,
                ratio: l / c,
            })
            .collect();
        let median = rounds[median_round(&rounds)].clone();
        BenchReport {
            events: 1000,
            logs: 990,
            metrics: 8,
            events_stream: 2,
            partitions: 2,
            dropped: 0,
            ceiling_events_per_s: median.ceiling_events_per_s,
            events_per_s: median.events_per_s,
            ratio: median.ratio,
            rounds,
            incident_updates: 1,
            anomalies: 0,
            dead_letters: 0,
            late_records: 0,
            window_corrections: 0,
            out_of_order_points: 0,
            batches: 3,
            latency_p50_ms: 20.0,
            latency_p99_ms: 40.0,
            cpu_us_per_event: 4.0,
            ceiling_cpu_us_per_event: 1.5,
            peak_rss_mb: 500.0,
            end_wait_ms: 180.0,
            stage_us_per_event: BTreeMap::from([("1 waiting for records", 1.0)]),
        }
    }

    /// Several rounds: every round's ratio, and both rates behind it, so that a reader
    /// sees which of the two moved.
    #[test]
    fn the_table_shows_each_rounds_rates_behind_its_ratio() {
        let t = report(&[
            (1_107_308.0, 437_110.0),
            (1_741_051.0, 530_758.0),
            (1_137_302.0, 433_748.0),
        ])
        .table();
        assert!(t.contains("0.38, the median of 3 rounds (0.39, 0.30, 0.38)"), "{t}");
        assert!(
            t.contains("each round: ceiling / Lookout, thousand events/s")
                && t.contains("1107 / 437, 1741 / 531, 1137 / 434"),
            "{t}"
        );
        let one = report(&[(1_000_000.0, 500_000.0)]).table();
        assert!(one.contains("0.50") && !one.contains("each round"), "{one}");
    }
}
