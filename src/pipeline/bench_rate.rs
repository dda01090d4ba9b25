//! `lookout bench --rate N --duration S`: the default pipeline under a steady input rate,
//! for what flat out cannot say: how long an event takes to reach the outputs it causes,
//! and whether memory stays flat over a long run.
//!
//! The broker (unless `--brokers`) and the producer run in a process of their own,
//! `lookout bench-feed` ([`feed`]), so that the CPU time and memory measured are
//! Lookout's alone (the mock broker keeps up to 5 MiB a partition in memory); they share
//! the machine's cores with it. The feed generates the built-in scenario minute after
//! minute and sends N records a second, paced every millisecond, each 10 ms slice to the
//! next input partition, every event and one in 64 other records with a header holding
//! the wall clock at its send. The records keep their scenario times (in their payloads
//! and as their Kafka timestamps), so the header changes nothing Lookout computes;
//! scenario time runs faster than the wall clock at these rates. Lookout joins its group before the feed starts,
//! then consumes as `lookout run` does ([`Lookout::step`]).
//!
//! * Latency of a record: its batch's outputs acknowledged by the broker, minus its
//!   send. Over the events stream (alerts and changes) that is event produced →
//!   incident update published; a SQL window closes in the batch whose record moves
//!   event time past it, so over the sampled records the same figure bounds window close
//!   → publish.
//! * Nothing dropped: per partition Lookout read offsets 0, 1, 2, ... without a gap or a
//!   repeat, and its count equals what the producer had acknowledged. Lookout falling
//!   behind by more than the broker keeps shows up here, not as a wrong rate.
//! * Memory: this process's resident set sampled every second; the table gives the
//!   largest of each minute.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde::Serialize;

use super::bench::{
    aligned, cpu_seconds, now_ms, partitions_for, peak_rss_kb, run_name, start_broker, topic_names, Brokers, Lookout,
    Setup,
};
use crate::config::PipelineConfig;
use crate::decode::Stream;
use crate::source::scenario::Scenario;
use crate::source::RawRecord;

/// What to run.
#[derive(Debug, Clone)]
pub struct RateOptions {
    /// Records a second.
    pub rate: u64,
    /// How long the producer sends.
    pub duration: Duration,
    /// An external cluster; `None` starts the embedded broker.
    pub brokers: Option<String>,
    pub seed: u64,
    /// Routine log lines a scenario host writes a minute ([`Scenario::with_log_lines`]).
    pub log_lines: u32,
    /// No progress on standard error.
    pub quiet: bool,
}

/// What the bench measured at a rate.
#[derive(Debug, Clone, Serialize)]
pub struct RateReport {
    pub rate: u64,
    pub duration_s: f64,
    pub events: u64,
    pub logs: u64,
    pub metrics: u64,
    pub events_stream: u64,
    /// Records a second the producer achieved.
    pub produced_per_s: f64,
    /// Records a second Lookout processed, first received to last acknowledged.
    pub events_per_s: f64,
    /// Not measured at a rate (the plain consumer keeps up with any rate Lookout does).
    pub ceiling_events_per_s: Option<f64>,
    pub ratio: Option<f64>,
    pub partitions: i32,
    /// Records the producer had acknowledged that Lookout never read.
    pub dropped: u64,
    /// Offsets read twice.
    pub repeated: u64,
    /// From the producer's last acknowledged record to Lookout's last batch acknowledged.
    pub drain_ms: f64,
    pub incident_updates: u64,
    pub anomalies: u64,
    pub dead_letters: u64,
    pub batches: u64,
    /// Events stream: record produced → its batch's outputs acknowledged.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// Every event and one in 64 other records: produced → its batch's outputs
    /// acknowledged.
    pub record_latency_p50_ms: f64,
    pub record_latency_p99_ms: f64,
    pub cpu_us_per_event: f64,
    pub peak_rss_mb: f64,
    /// The largest resident set of each minute of the run.
    pub rss_mb_per_minute: Vec<f64>,
}

/// The input partitions hold this many seconds of input at the offered rate: Lookout may
/// lag that far behind before the mock broker drops records it has not read.
const BUFFER_S: u64 = 10;

pub async fn bench_at_rate(cfg: &PipelineConfig, opts: &RateOptions) -> Result<RateReport, String> {
    let scenario = Scenario::new(opts.seed, SCENARIO_START).with_log_lines(opts.log_lines);
    let sample: Vec<_> = (0..10).flat_map(|m| scenario.minute(m)).collect();
    let bytes_per_record = sample.iter().map(|g| g.payload.len() as u64).sum::<u64>() / sample.len().max(1) as u64;
    let buffered = opts.rate * BUFFER_S;
    let partitions = partitions_for(buffered, buffered * bytes_per_record);
    let run = run_name();
    let (mut feed, bootstrap) = Feed::spawn(opts, &run, partitions)?;
    let setup = Setup::new(
        cfg,
        run,
        Brokers::Ready {
            bootstrap: &bootstrap,
            mock: opts.brokers.is_none(),
        },
        partitions,
    )
    .await?;
    let say = |what: String| {
        if !opts.quiet {
            eprintln!("bench: {what}");
        }
    };
    say(format!(
        "{} records/s for {} s into {partitions} partitions per input topic, Lookout reading as they come",
        opts.rate,
        opts.duration.as_secs_f64()
    ));

    let mut lookout = Lookout::start(&setup, &format!("{}-lookout", setup.run)).await?;
    lookout.wait_for_partitions(3 * partitions as usize).await?;
    feed.go()?;

    let started = Instant::now();
    let cpu_start = cpu_seconds();
    let mut next: HashMap<(Stream, i32), i64> = HashMap::new();
    let (mut gaps, mut repeated) = (0u64, 0u64);
    let (mut all, mut alerts) = (Histogram::default(), Histogram::default());
    let (mut incidents, mut anomalies, mut batches) = (0u64, 0u64, 0u64);
    let (mut first, mut last_ack, mut last_ack_ms) = (None, Instant::now(), 0i64);
    let mut rss = Vec::new();
    let mut sampled = Instant::now();
    let mut produced: Option<Produced> = None;
    let mut idle_since = None;
    // every record in, or given up on: the last batch in flight is settled, then the end
    let mut ending = false;
    loop {
        if produced.is_none() {
            produced = feed.produced()?;
            if let Some(p) = &produced {
                say(format!("produced {} records; Lookout draining", p.total()));
            }
        }
        if let Some(p) = &produced {
            if lookout.processor.stats.records_in + gaps >= p.total() {
                ending = true;
            }
        }
        if sampled.elapsed() >= Duration::from_secs(1) {
            sampled = Instant::now();
            let minute = started.elapsed().as_secs() as usize / 60;
            rss.resize(rss.len().max(minute + 1), 0.0f64);
            rss[minute] = rss[minute].max(resident_kb() as f64 / 1024.0);
        }
        let step = if ending {
            match lookout.drain().await? {
                Some(step) => Some(step),
                None => break,
            }
        } else {
            lookout.step().await?
        };
        let Some(step) = step else {
            // after the producer's end, 10 s without a record: what is missing is lost
            if produced.is_some() && idle_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(10) {
                ending = true;
            }
            continue;
        };
        idle_since = None;
        let acked_ms = now_ms() as i64;
        first.get_or_insert(step.received);
        (last_ack, last_ack_ms) = (step.acked, acked_ms);
        batches += 1;
        incidents += step.incidents;
        anomalies += step.anomalies;
        for r in &step.batch {
            let expected = next.entry((r.stream, r.meta.partition)).or_insert(0);
            if r.meta.offset > *expected {
                gaps += (r.meta.offset - *expected) as u64;
            } else if r.meta.offset < *expected {
                repeated += 1;
            }
            *expected = (*expected).max(r.meta.offset + 1);
            if let Some(sent) = sent_ms(r) {
                all.add(acked_ms - sent);
                if r.stream == Stream::Events {
                    alerts.add(acked_ms - sent);
                }
            }
        }
        lookout.recycle(step.batch);
    }
    let produced = produced.ok_or("the bench stopped before the producer")?;
    let cpu = cpu_seconds() - cpu_start;
    let processor = lookout.finish().await?;
    let peak_rss_mb = peak_rss_kb() as f64 / 1024.0;
    drop(feed);
    let records_in = processor.stats.records_in;
    let total = produced.total();
    let lookout_s = first.map_or(0.0, |f| last_ack.duration_since(f).as_secs_f64());
    Ok(RateReport {
        rate: opts.rate,
        duration_s: opts.duration.as_secs_f64(),
        events: total,
        logs: produced.per_stream[0],
        metrics: produced.per_stream[1],
        events_stream: produced.per_stream[2],
        produced_per_s: total as f64 / (produced.elapsed_ms / 1e3).max(1e-9),
        events_per_s: records_in as f64 / lookout_s.max(1e-9),
        ceiling_events_per_s: None,
        ratio: None,
        partitions,
        dropped: total.saturating_sub(records_in.saturating_sub(repeated)),
        repeated,
        drain_ms: (last_ack_ms - produced.ended_ms).max(0) as f64,
        incident_updates: incidents,
        anomalies,
        dead_letters: processor.stats.dead_letters,
        batches,
        latency_p50_ms: alerts.quantile(0.5),
        latency_p99_ms: alerts.quantile(0.99),
        latency_max_ms: alerts.quantile(1.0),
        record_latency_p50_ms: all.quantile(0.5),
        record_latency_p99_ms: all.quantile(0.99),
        cpu_us_per_event: cpu * 1e6 / records_in.max(1) as f64,
        peak_rss_mb,
        rss_mb_per_minute: rss,
    })
}

const SCENARIO_START: i64 = 1_741_046_400_000;

/// The header with the wall clock (ms since the epoch) at a record's send.
const SENT_HEADER: &str = "lookout-bench-sent-ms";
/// Logs and metrics records carry [`SENT_HEADER`] one in this many.
const SAMPLE: u64 = 64;

/// A record's send time from its [`SENT_HEADER`].
fn sent_ms(r: &RawRecord) -> Option<i64> {
    let (_, v) = r.meta.headers.iter().find(|(k, _)| k == SENT_HEADER)?;
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// What `lookout bench-feed` does: the broker (unless `brokers` is given) and the
/// producer of a rate bench, in a process of their own.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// The run whose topics to make and fill.
    pub run: String,
    pub partitions: i32,
    pub rate: u64,
    pub duration: Duration,
    pub seed: u64,
    pub log_lines: u32,
    pub brokers: Option<String>,
}

/// The feed process: prints `bootstrap <servers>`, waits for `go` on standard input,
/// produces, prints `produced <json>`, and keeps its broker until standard input closes.
pub fn feed(o: &FeedOptions) -> Result<(), String> {
    use std::io::{BufRead, Write};
    let (broker, bootstrap) = match &o.brokers {
        Some(b) => (None, b.clone()),
        None => {
            let broker = start_broker(&o.run, o.partitions)?;
            let bootstrap = broker.bootstrap_servers().to_string();
            (Some(broker), bootstrap)
        }
    };
    let mut out = std::io::stdout();
    writeln!(out, "bootstrap {bootstrap}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.trim() == "go" {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &bootstrap);
        let (inputs, _) = topic_names(&o.run);
        let scenario = Scenario::new(o.seed, SCENARIO_START).with_log_lines(o.log_lines);
        let produced = produce(&client, inputs, o.partitions, scenario, o.rate, o.duration)?;
        let json = serde_json::to_string(&produced).map_err(|e| e.to_string())?;
        writeln!(out, "produced {json}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
        // the broker stays until the bench has read everything
        while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {}
    }
    drop(broker);
    Ok(())
}

/// The bench's side of the feed process.
struct Feed {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Feed {
    /// Starts `lookout bench-feed` and waits for its bootstrap servers.
    fn spawn(opts: &RateOptions, run: &str, partitions: i32) -> Result<(Feed, String), String> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("bench-feed")
            .args(["--run", run])
            .args(["--partitions", &partitions.to_string()])
            .args(["--rate", &opts.rate.to_string()])
            .args(["--duration", &opts.duration.as_secs().to_string()])
            .args(["--seed", &opts.seed.to_string()])
            .args(["--log-lines", &opts.log_lines.to_string()]);
        if let Some(b) = &opts.brokers {
            cmd.args(["--brokers", b]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting lookout bench-feed: {e}"))?;
        let stdout = child.stdout.take().ok_or("no standard output from bench-feed")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut feed = Feed { child, stdin, lines };
        let first = feed
            .lines
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| feed.ended("starting"))?;
        let bootstrap = first
            .strip_prefix("bootstrap ")
            .ok_or_else(|| format!("bench-feed said {first:?}"))?
            .to_string();
        Ok((feed, bootstrap))
    }

    fn go(&mut self) -> Result<(), String> {
        use std::io::Write;
        let stdin = self.stdin.as_mut().ok_or("bench-feed's input is closed")?;
        writeln!(stdin, "go")
            .and_then(|()| stdin.flush())
            .map_err(|e| e.to_string())
    }

    /// What the producer sent, once it has finished.
    fn produced(&mut self) -> Result<Option<Produced>, String> {
        match self.lines.try_recv() {
            Ok(line) => {
                let json = line
                    .strip_prefix("produced ")
                    .ok_or_else(|| format!("bench-feed said {line:?}"))?;
                serde_json::from_str(json).map(Some).map_err(|e| e.to_string())
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => Ok(None),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(self.ended("producing")),
        }
    }

    /// Why the feed process stopped talking.
    fn ended(&mut self, doing: &str) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!("bench-feed ended while {doing} ({status}); its errors are above"),
            _ => format!("bench-feed stopped answering while {doing}"),
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // closing its input ends it; a feed that does not end is killed
        drop(self.stdin.take());
        for _ in 0..100 {
            if self.child.try_wait().is_ok_and(|s| s.is_some()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the producer sent and the broker acknowledged.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Produced {
    /// Acknowledged records per stream (logs, metrics, events).
    per_stream: [u64; 3],
    /// From the first send to the last.
    elapsed_ms: f64,
    /// Wall clock, ms since the epoch, when the last record was acknowledged.
    ended_ms: i64,
}

impl Produced {
    fn total(&self) -> u64 {
        self.per_stream.iter().sum()
    }
}

/// Counts the records whose delivery failed.
struct Counting(Arc<AtomicU64>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends the scenario at `rate` records a second for `duration`, each stamped with the
/// wall clock at its send.
fn produce(
    client: &ClientConfig,
    topics: [String; 3],
    partitions: i32,
    scenario: Scenario,
    rate: u64,
    duration: Duration,
) -> Result<Produced, String> {
    let failed = Arc::new(AtomicU64::new(0));
    let producer: BaseProducer<Counting> = client
        .clone()
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Counting(failed.clone()))
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut per_stream = [0u64; 3];
    let (mut sent, mut minute) = (0u64, 0);
    let mut pending = Vec::new().into_iter();
    while start.elapsed() < duration {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let g = match pending.next() {
                Some(g) => g,
                None => {
                    pending = scenario.minute(minute).into_iter();
                    minute += 1;
                    continue;
                }
            };
            let s = Stream::ALL.iter().position(|s| *s == g.stream).unwrap_or(0);
            // a 10 ms slice to one partition, the next slice to the next: the mock
            // broker answers a fetch with one producer batch a partition ("FIXME:
            // Multiple messageSets?" in librdkafka's mock), so batches of a record or
            // two would cap what any consumer could read from it
            let slice = start.elapsed().as_millis() as u64 / 10;
            let mut record = BaseRecord::<(), [u8]>::to(&topics[s])
                .payload(&g.payload)
                .timestamp(g.ts)
                .partition((slice % partitions as u64) as i32);
            // the send time on every event and on one record in SAMPLE of the rest: a
            // header on every record would cost Lookout an allocation each
            if g.stream == Stream::Events || sent % SAMPLE == 0 {
                let sent_ms = now_ms().to_string();
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: SENT_HEADER,
                    value: Some(sent_ms.as_bytes()),
                }));
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(1));
                    }
                    Err((e, _)) => return Err(format!("producing: {e}")),
                }
            }
            per_stream[s] += 1;
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("producing: {e}"))?;
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!(
            "{failed} of {sent} records were not acknowledged by the broker"
        ));
    }
    Ok(Produced {
        per_stream,
        elapsed_ms: elapsed.as_secs_f64() * 1e3,
        ended_ms: now_ms() as i64,
    })
}

/// Latencies in milliseconds, counted in 1 ms buckets up to a minute (longer ones in
/// the last).
struct Histogram(Vec<u64>);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(vec![0; 60_001])
    }
}

impl Histogram {
    fn add(&mut self, ms: i64) {
        let i = (ms.max(0) as usize).min(self.0.len() - 1);
        self.0[i] += 1;
    }

    /// The smallest latency that `q` of the counts are at or under (0 when empty).
    fn quantile(&self, q: f64) -> f64 {
        let n: u64 = self.0.iter().sum();
        if n == 0 {
            return 0.0;
        }
        let want = ((n as f64 * q).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (ms, c) in self.0.iter().enumerate() {
            seen += c;
            if seen >= want {
                return ms as f64;
            }
        }
        (self.0.len() - 1) as f64
    }
}

/// Resident set size now, in KiB (VmRSS), 0 where /proc has none.
fn resident_kb() -> u64 {
    super::bench::proc_status_kb("VmRSS:")
}

impl RateReport {
    /// The table `lookout bench --rate` prints.
    pub fn table(&self) -> String {
        let mut rows = Vec::new();
        let mut row = |k: &'static str, v: String| rows.push((k, v));
        row(
            "offered rate, duration",
            format!("{} events/s, {:.0} s", self.rate, self.duration_s),
        );
        row(
            "events in (logs / metrics / events)",
            format!(
                "{} ({} / {} / {})",
                self.events, self.logs, self.metrics, self.events_stream
            ),
        );
        row(
            "produced / processed",
            format!("{:.0} / {:.0} events/s", self.produced_per_s, self.events_per_s),
        );
        row(
            "input partitions, dropped, read twice",
            format!("{}, {}, {}", self.partitions, self.dropped, self.repeated),
        );
        row(
            "out: incident updates / anomalies / dead letters",
            format!("{} / {} / {}", self.incident_updates, self.anomalies, self.dead_letters),
        );
        row(
            "latency, events stream p50 / p99 / max",
            format!(
                "{:.0} / {:.0} / {:.0} ms (produced → outputs acked)",
                self.latency_p50_ms, self.latency_p99_ms, self.latency_max_ms
            ),
        );
        row(
            "latency, 1 in 64 records p50 / p99",
            format!(
                "{:.0} / {:.0} ms over {} batches",
                self.record_latency_p50_ms, self.record_latency_p99_ms, self.batches
            ),
        );
        row(
            "drain after the producer's last record",
            format!("{:.0} ms", self.drain_ms),
        );
        row(
            "CPU time per event (this process)",
            format!("{:.2} µs", self.cpu_us_per_event),
        );
        row(
            "peak resident memory (this process)",
            format!("{:.0} MB", self.peak_rss_mb),
        );
        let minutes: Vec<String> = self.rss_mb_per_minute.iter().map(|m| format!("{m:.0}")).collect();
        row("resident memory, largest per minute, MB", minutes.join(" "));
        aligned(&rows)
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn quantiles_count_from_the_smallest() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0.0);
        for ms in 1..=100 {
            h.add(ms);
        }
        h.add(120_000);
        assert_eq!(h.quantile(0.5), 51.0);
        assert_eq!(h.quantile(0.99), 100.0);
        assert_eq!(h.quantile(1.0), 60_000.0, "past a minute counts as a minute");
        h.add(-5);
        assert_eq!(h.quantile(0.0), 0.0);
    }
}
