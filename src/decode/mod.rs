//! Decoding: raw records to one Arrow record batch per stream.
//!
//! Each encoding lives in its own file and turns one payload into rows (a payload can
//! hold several: an Alertmanager webhook, a Prometheus scrape, an Influx line with many
//! fields). A payload that cannot be decoded is handed back as a [`DeadLetter`] value
//! with the reason; decoding never stops for a bad record and never writes anywhere.
//!
//! With `encoding = "auto"` (the default) the encoding is recognised per record: JSON
//! objects by their keys (Alertmanager's `alerts`, PagerDuty's `event_action`,
//! CloudEvents' `specversion`), text by its shape (logfmt pairs, Influx line protocol,
//! Prometheus samples, or the configured line format).

pub mod alertmanager;
pub mod cloudevents;
mod flat;
pub mod influx;
pub mod json;
pub mod line;
pub mod logfmt;
pub mod otlp;
pub mod otlp_json;
pub mod pagerduty;
pub mod prometheus;
pub mod schema;
pub mod time;
pub mod value;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::source::{partition_runs, DeadLetter, RawRecord};
pub use line::LineFormat;
pub use schema::{EventKind, EventRow, Level, LogRow, MetricRow, Pairs, Rows, Severity, Status, Stream, Text};

/// Why a record could not be decoded. Always the input's fault; retrying cannot help.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("invalid UTF-8 at byte {0}")]
    Utf8(usize),
    #[error("field {field} must be {want}, got {got}")]
    Type {
        field: String,
        want: &'static str,
        got: &'static str,
    },
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("unparsable timestamp {0}")]
    Timestamp(String),
    #[error("no timestamp in the record and no Kafka record timestamp")]
    NoTimestamp,
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("unknown encoding: {0}")]
    UnknownEncoding(String),
    #[error("{0}")]
    Invalid(String),
}

/// How the records of one stream are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Recognise the encoding of each record.
    #[default]
    Auto,
    Json,
    Logfmt,
    /// Raw text lines split by the stream's `line_format`.
    Line,
    Influx,
    Prometheus,
    Alertmanager,
    Pagerduty,
    Cloudevents,
    /// OpenTelemetry protobuf (`otlp_proto`, as the Collector's Kafka exporter writes).
    Otlp,
    /// OpenTelemetry's JSON mapping (`otlp_json`).
    #[serde(rename = "otlp_json")]
    OtlpJson,
}

impl Encoding {
    pub const ALL: [Encoding; 11] = [
        Encoding::Auto,
        Encoding::Json,
        Encoding::Logfmt,
        Encoding::Line,
        Encoding::Influx,
        Encoding::Prometheus,
        Encoding::Alertmanager,
        Encoding::Pagerduty,
        Encoding::Cloudevents,
        Encoding::Otlp,
        Encoding::OtlpJson,
    ];

    /// The encodings a stream can carry.
    pub fn allowed(self, stream: Stream) -> bool {
        use Encoding::*;
        match stream {
            Stream::Logs => matches!(self, Auto | Json | Logfmt | Line | Otlp | OtlpJson),
            Stream::Metrics => matches!(self, Auto | Json | Influx | Prometheus | Otlp | OtlpJson),
            Stream::Events => matches!(self, Auto | Json | Alertmanager | Pagerduty | Cloudevents),
        }
    }
}

/// Decoding settings of one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamDecoding {
    pub encoding: Encoding,
    pub line_format: Option<LineFormat>,
    /// Service of records that name none (raw lines from one service's file, say).
    pub default_service: Option<String>,
    /// Leaves the logs' `attrs` empty: set when no SQL file of the pipeline reads them
    /// ([`crate::sql::SqlEngine::reads`]). Collecting, sorting and copying a JSON or
    /// logfmt line's other fields into them was about 7% of the CPU of `lookout bench`.
    pub skip_attrs: bool,
}

/// Decoding settings of all streams.
#[derive(Debug, Clone)]
pub struct DecodeConfig {
    pub logs: StreamDecoding,
    pub metrics: StreamDecoding,
    pub events: StreamDecoding,
    /// Records larger than this go to dead letters unread.
    pub max_record_bytes: usize,
    /// Dead letters keep at most this much of the original payload, so that they fit
    /// the broker's message size limit (headers say how long the original was).
    pub dead_letter_max_bytes: usize,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            logs: StreamDecoding::default(),
            metrics: StreamDecoding::default(),
            events: StreamDecoding::default(),
            max_record_bytes: 1 << 20,
            dead_letter_max_bytes: 512 << 10,
        }
    }
}

impl DecodeConfig {
    fn stream(&self, s: Stream) -> &StreamDecoding {
        match s {
            Stream::Logs => &self.logs,
            Stream::Metrics => &self.metrics,
            Stream::Events => &self.events,
        }
    }
}

/// Records in a batch from which decoding uses two threads.
const PARALLEL_FROM: usize = 2048;

static CORES: std::sync::LazyLock<usize> =
    std::sync::LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

type Timed<'a> = (Rows<'a>, Vec<DeadLetter>, Vec<PartitionTime>);

/// Row buffers kept from one batch to the next. A batch's rows take about a megabyte;
/// allocated afresh, growing as they were filled, their pages were faulted in again on
/// every batch (15% of decoding's samples in a profile of `lookout bench`).
#[derive(Clone, Default)]
struct SpareRows(Arc<Mutex<Vec<Rows<'static>>>>);

/// Spare row buffers kept: two halves of the batch being decoded, two of the next.
const SPARE_ROWS: usize = 4;
/// Buffers with room for more rows than this are freed rather than kept.
const SPARE_ROWS_MAX: usize = 1 << 16;

impl SpareRows {
    fn take(&self) -> Rows<'static> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Keeps a buffer for a later batch; one with no room (the second half of a batch
    /// decoded on one thread) would only take a place from one that has some.
    fn keep(&self, rows: Rows) {
        if rows.capacity() == 0 || rows.capacity() > SPARE_ROWS_MAX {
            return;
        }
        let rows = rows.recycle();
        let mut spare = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < SPARE_ROWS {
            spare.push(rows);
        }
    }
}

impl std::fmt::Debug for SpareRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpareRows")
    }
}

/// Keeps the newest event time of a partition (a batch holds a few partitions).
fn note_time(times: &mut Vec<PartitionTime>, stream: Stream, topic: &str, partition: i32, ts: i64) {
    match times
        .iter_mut()
        .find(|p| p.stream == stream && p.partition == partition && p.topic == topic)
    {
        Some(p) => p.newest = p.newest.max(ts),
        None => times.push(PartitionTime {
            stream,
            topic: topic.to_string(),
            partition,
            newest: ts,
        }),
    }
}

/// What decoding one poll batch gives.
#[derive(Debug)]
pub struct Decoded {
    pub logs: RecordBatch,
    pub metrics: RecordBatch,
    pub events: RecordBatch,
    pub dead_letters: Vec<DeadLetter>,
    /// The newest event time each input partition delivered in this batch.
    pub partitions: Vec<PartitionTime>,
}

/// The newest event time of one input partition's records in a batch (watermarks).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionTime {
    pub stream: Stream,
    pub topic: String,
    pub partition: i32,
    pub newest: i64,
}

impl Decoded {
    pub fn rows(&self) -> usize {
        self.logs.num_rows() + self.metrics.num_rows() + self.events.num_rows()
    }
}

/// The record being decoded and its stream's settings.
pub struct Context<'a> {
    record: &'a RawRecord,
    cfg: &'a StreamDecoding,
}

impl Context<'_> {
    pub fn fallback_ts(&self) -> Result<i64, DecodeError> {
        self.record.meta.kafka_ts.ok_or(DecodeError::NoTimestamp)
    }

    pub fn default_service(&self) -> Text<'static> {
        match &self.cfg.default_service {
            Some(s) => Cow::Owned(s.clone()),
            None => Cow::Borrowed("unknown"),
        }
    }

    pub fn topic(&self) -> &str {
        &self.record.meta.topic
    }

    /// A log's `attrs` as `build` makes them, or empty without calling it when the
    /// pipeline reads none ([`StreamDecoding::skip_attrs`]).
    pub fn attrs<'a>(&self, build: impl FnOnce() -> Pairs<'a>) -> Pairs<'a> {
        if self.cfg.skip_attrs {
            Pairs::new()
        } else {
            build()
        }
    }
}

/// Decodes poll batches. Cheap to clone: settings, and row buffers its clones share.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    cfg: DecodeConfig,
    spare: SpareRows,
}

impl Decoder {
    pub fn new(cfg: DecodeConfig) -> Decoder {
        Decoder {
            cfg,
            spare: SpareRows::default(),
        }
    }

    /// Decodes records into rows, handing back the ones that fail as dead letters.
    pub fn decode_rows<'a>(&self, records: &'a [RawRecord]) -> (Rows<'a>, Vec<DeadLetter>) {
        let (rows, dead, _) = self.decode_rows_timed(records, Rows::default());
        (rows, dead)
    }

    /// [`Decoder::decode_rows`] into `rows` (empty), also saying the newest event time
    /// of each partition.
    fn decode_rows_timed<'a>(&self, records: &'a [RawRecord], mut rows: Rows<'a>) -> Timed<'a> {
        let mut dead = Vec::new();
        let mut times: Vec<PartitionTime> = Vec::new();
        for run in partition_runs(records) {
            let mut newest = None;
            for r in run {
                let before = rows.len_of(r.stream);
                let decoded = self.decode_one(r, &mut rows);
                newest = newest.max(rows.newest_since(r.stream, before));
                if let Err(e) = decoded {
                    dead.push(DeadLetter::new(
                        r,
                        "decode",
                        e.to_string(),
                        self.cfg.dead_letter_max_bytes,
                    ));
                }
            }
            if let Some(t) = newest {
                let m = &run[0].meta;
                note_time(&mut times, run[0].stream, &m.topic, m.partition, t);
            }
        }
        (rows, dead, times)
    }

    /// Decodes records into one batch per stream. A large batch is decoded in two
    /// halves on two threads (decoding is what a record costs most), and its logs batch
    /// built beside the metrics and events ones; the output is the same, in the same
    /// order, as on one thread.
    pub fn decode(&self, records: &[RawRecord]) -> Result<Decoded, arrow::error::ArrowError> {
        let parallel = records.len() >= PARALLEL_FROM && *CORES > 1;
        let ((first, mut dead_letters, mut partitions), second) = if parallel {
            let (a, b) = records.split_at(records.len() / 2);
            std::thread::scope(|s| {
                let second = s.spawn(|| self.decode_rows_timed(b, self.spare.take()));
                let first = self.decode_rows_timed(a, self.spare.take());
                (first, second.join().expect("decoding does not panic"))
            })
        } else {
            (self.decode_rows_timed(records, self.spare.take()), Timed::default())
        };
        let (rows, dead, times) = second;
        dead_letters.extend(dead);
        for t in times {
            note_time(&mut partitions, t.stream, &t.topic, t.partition, t.newest);
        }
        let logs = [first.logs.as_slice(), rows.logs.as_slice()];
        let metrics = [first.metrics.as_slice(), rows.metrics.as_slice()];
        let events = [first.events.as_slice(), rows.events.as_slice()];
        let others = || -> Result<_, arrow::error::ArrowError> {
            Ok((schema::metrics_batch_of(&metrics)?, schema::events_batch_of(&events)?))
        };
        let (logs, others) = if parallel {
            std::thread::scope(|s| {
                let others = s.spawn(others);
                (
                    schema::logs_batch_of(&logs),
                    others.join().expect("building batches does not panic"),
                )
            })
        } else {
            (schema::logs_batch_of(&logs), others())
        };
        self.spare.keep(first);
        self.spare.keep(rows);
        let (metrics, events) = others?;
        Ok(Decoded {
            logs: logs?,
            metrics,
            events,
            dead_letters,
            partitions,
        })
    }

    /// Decodes one record, appending its rows only when all of them decoded.
    pub fn decode_one<'a>(&self, r: &'a RawRecord, out: &mut Rows<'a>) -> Result<(), DecodeError> {
        let size = r.meta.cut_from.unwrap_or(r.payload.len());
        if size > self.cfg.max_record_bytes {
            return Err(DecodeError::TooLarge {
                size,
                limit: self.cfg.max_record_bytes,
            });
        }
        let cfg = self.cfg.stream(r.stream);
        let ctx = Context { record: r, cfg };
        // Every encoding but OTLP's protobuf is text, and a record is checked as UTF-8
        // once, here (trimming ASCII spaces changes nothing to that): `auto` asks it to
        // tell protobuf from text, the text encodings read what was checked. Failing, it
        // is said plainly rather than as a parse error, except for JSON-like records,
        // which `serde_json` reads and words the error for (`json::parsed`).
        let p = trim(&r.payload);
        let checked = (cfg.encoding != Encoding::Otlp).then(|| std::str::from_utf8(p));
        if let Some(decoded) = otlp_payload(r, cfg.encoding, checked.map(|c| c.is_ok()), &ctx, out) {
            return decoded;
        }
        // with `otlp`, only an event is left here (`otlp_payload` took logs and metrics)
        let checked = checked.unwrap_or_else(|| std::str::from_utf8(p));
        if p.is_empty() {
            return Err(DecodeError::Invalid("empty record".into()));
        }
        let json_like = p[0] == b'{' || p[0] == b'[';
        let as_text = || checked.map_err(|e| DecodeError::Utf8(e.valid_up_to()));
        if !json_like {
            as_text()?;
        }
        let json_text = checked.ok();
        match (r.stream, cfg.encoding) {
            (Stream::Logs, Encoding::Json) => json_rows(p, json_text, &mut out.logs, |o| json::log(o, &ctx)),
            (Stream::Logs, Encoding::Auto) if json_like => {
                json_rows(p, json_text, &mut out.logs, |o| json::log(o, &ctx))
            }
            (Stream::Logs, Encoding::Logfmt) => logfmt::log(as_text()?, &ctx).map(|row| out.logs.push(row)),
            (Stream::Logs, Encoding::Line) => {
                line::log(as_text()?, cfg.line_format.as_ref(), &ctx).map(|row| out.logs.push(row))
            }
            (Stream::Logs, Encoding::Auto) => {
                let s = as_text()?;
                if cfg.line_format.is_none() && logfmt::looks_like(s) {
                    logfmt::log(s, &ctx).map(|row| out.logs.push(row))
                } else {
                    line::log(s, cfg.line_format.as_ref(), &ctx).map(|row| out.logs.push(row))
                }
            }
            (Stream::Metrics, Encoding::Json) => json_rows(p, json_text, &mut out.metrics, |o| json::metric(o, &ctx)),
            (Stream::Metrics, Encoding::Auto) if json_like => {
                json_rows(p, json_text, &mut out.metrics, |o| json::metric(o, &ctx))
            }
            (Stream::Metrics, Encoding::Influx) => extend(&mut out.metrics, influx::decode(as_text()?, &ctx)?),
            (Stream::Metrics, Encoding::Prometheus) => extend(&mut out.metrics, prometheus::decode(as_text()?, &ctx)?),
            (Stream::Metrics, Encoding::Auto) => {
                let s = as_text()?;
                if influx::looks_like(s) {
                    extend(&mut out.metrics, influx::decode(s, &ctx)?)
                } else if prometheus::looks_like(s) {
                    extend(&mut out.metrics, prometheus::decode(s, &ctx)?)
                } else {
                    Err(DecodeError::UnknownEncoding(
                        "metrics record is not JSON, Influx line protocol or Prometheus text".into(),
                    ))
                }
            }
            (Stream::Events, enc) => {
                if !json_like {
                    return Err(DecodeError::UnknownEncoding("event records must be JSON".into()));
                }
                let objs = json::objects(p)?;
                let mut rows = Vec::new();
                for o in objs {
                    let enc = match enc {
                        Encoding::Auto => sniff_event(&o),
                        other => other,
                    };
                    match enc {
                        Encoding::Alertmanager => rows.extend(alertmanager::decode(o, &ctx)?),
                        Encoding::Pagerduty => rows.push(pagerduty::decode(o, &ctx)?),
                        Encoding::Cloudevents => rows.push(cloudevents::decode(o, &ctx)?),
                        _ => rows.push(json::event(o, &ctx)?),
                    }
                }
                extend(&mut out.events, rows)
            }
            (stream, enc) => Err(DecodeError::UnknownEncoding(format!("{enc:?} on the {stream} stream"))),
        }
    }
}

fn sniff_event(o: &value::Map) -> Encoding {
    if o.get("alerts").is_some_and(|a| a.is_array()) {
        Encoding::Alertmanager
    } else if o.contains_key("event_action") || o.contains_key("routing_key") {
        Encoding::Pagerduty
    } else if o.contains_key("specversion") {
        Encoding::Cloudevents
    } else {
        Encoding::Json
    }
}

/// A JSON record's rows, `row` reading each object; `text` is the payload when it is
/// UTF-8. The common record, one flat object, is read without a list of one around it.
fn json_rows<'a, T>(
    p: &'a [u8],
    text: Option<&'a str>,
    rows: &mut Vec<T>,
    row: impl Fn(value::Map<'a>) -> Result<T, DecodeError>,
) -> Result<(), DecodeError> {
    match text.and_then(flat::object_of) {
        Some(o) => row(o).map(|r| rows.push(r)),
        None => push_all(rows, json::parsed(p)?.into_iter().map(row)),
    }
}

/// Appends a record's rows as they decode; at the first that fails, takes back those
/// appended and fails with it. A record that holds no rows fails too.
fn push_all<T>(out: &mut Vec<T>, rows: impl Iterator<Item = Result<T, DecodeError>>) -> Result<(), DecodeError> {
    let from = out.len();
    for row in rows {
        match row {
            Ok(row) => out.push(row),
            Err(e) => {
                out.truncate(from);
                return Err(e);
            }
        }
    }
    if out.len() == from {
        return Err(DecodeError::Invalid("record holds no data".into()));
    }
    Ok(())
}

/// OTLP logs and metrics: protobuf when the stream says `otlp`, or (with `auto`) when
/// the payload is not text or starts like an OTLP request (field 1, length-delimited)
/// and decodes as one; OTLP JSON when the stream says `otlp_json`, or (with `auto`) when
/// a JSON object starts with `resourceLogs` / `resourceMetrics`. `None`: not OTLP.
/// `utf8`: whether the payload is UTF-8, when it was checked (with any encoding but `otlp`).
fn otlp_payload(
    r: &RawRecord,
    enc: Encoding,
    utf8: Option<bool>,
    ctx: &Context,
    out: &mut Rows<'_>,
) -> Option<Result<(), DecodeError>> {
    let p = r.payload.as_slice();
    let (logs, key) = match r.stream {
        Stream::Logs => (true, "\"resourceLogs\""),
        Stream::Metrics => (false, "\"resourceMetrics\""),
        Stream::Events => return None,
    };
    let json = match enc {
        Encoding::OtlpJson => true,
        Encoding::Otlp => false,
        Encoding::Auto if otlp::is_json(trim(p), key) => true,
        Encoding::Auto if p.first() == Some(&0x0a) || utf8 == Some(false) => {
            // a guess: only a request that decodes into records is taken as OTLP
            let rows = if logs {
                otlp::decode_logs(p)
                    .and_then(|d| otlp::logs(d, ctx))
                    .map(|r| extend(&mut out.logs, r))
            } else {
                otlp::decode_metrics(p)
                    .and_then(|d| otlp::metrics(d, ctx))
                    .map(|r| extend(&mut out.metrics, r))
            };
            return rows.ok();
        }
        _ => return None,
    };
    Some(if logs {
        let d = if json {
            otlp_json::logs(trim(p))
        } else {
            otlp::decode_logs(p)
        };
        d.and_then(|d| otlp::logs(d, ctx))
            .and_then(|r| extend(&mut out.logs, r))
    } else {
        let d = if json {
            otlp_json::metrics(trim(p))
        } else {
            otlp::decode_metrics(p)
        };
        d.and_then(|d| otlp::metrics(d, ctx))
            .and_then(|r| extend(&mut out.metrics, r))
    })
}

/// Appends a record's rows; a record that holds none fails.
fn extend<T>(out: &mut Vec<T>, rows: Vec<T>) -> Result<(), DecodeError> {
    push_all(out, rows.into_iter().map(Ok))
}

/// Reads a double-quoted value of `s` whose opening quote ends at byte `from`, with
/// `\n`, `\t` and `\x` escapes (logfmt and Prometheus label values); `None` when the
/// quote never closes. A value without escapes is borrowed from `s`.
fn read_quoted<'a>(s: &'a str, from: usize, it: &mut impl Iterator<Item = (usize, char)>) -> Option<Text<'a>> {
    let mut owned: Option<String> = None;
    while let Some((i, c)) = it.next() {
        match c {
            '\\' => {
                let value = owned.get_or_insert_with(|| s[from..i].to_string());
                match it.next()?.1 {
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    e => value.push(e),
                }
            }
            '"' => return Some(owned.map_or(Cow::Borrowed(&s[from..i]), Cow::Owned)),
            c => {
                if let Some(value) = &mut owned {
                    value.push(c);
                }
            }
        }
    }
    None
}

fn trim(p: &[u8]) -> &[u8] {
    let start = p.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(p.len());
    let end = p
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &p[start..end]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::source::RecordMeta;

    /// Two threads give exactly what one gives: rows, order, dead letters, times.
    #[test]
    fn a_large_batch_decodes_the_same_on_two_threads() {
        let scenario = crate::source::scenario::Scenario::new(3, 1_741_046_400_000);
        let mut records: Vec<RawRecord> = (0..40)
            .flat_map(|m| scenario.minute(m))
            .enumerate()
            .map(|(i, g)| RawRecord {
                stream: g.stream,
                payload: if i % 97 == 0 { b"{broken".to_vec() } else { g.payload },
                meta: RecordMeta {
                    topic: g.stream.name().into(),
                    partition: (i % 3) as i32,
                    offset: i as i64,
                    kafka_ts: Some(g.ts),
                    ..Default::default()
                },
            })
            .collect();
        records.truncate(6000);
        assert!(records.len() >= PARALLEL_FROM);
        let d = Decoder::new(DecodeConfig::default());
        let both = d.decode(&records).unwrap();
        let (rows, dead, mut times) = d.decode_rows_timed(&records, Rows::default());
        assert_eq!(both.logs, schema::logs_batch(&rows.logs).unwrap());
        assert_eq!(both.metrics, schema::metrics_batch(&rows.metrics).unwrap());
        assert_eq!(both.events, schema::events_batch(&rows.events).unwrap());
        assert_eq!(both.dead_letters, dead);
        assert!(!dead.is_empty());
        // again, into the row buffers the first decoding left
        let again = d.decode(&records).unwrap();
        assert_eq!(
            (again.logs, again.metrics, again.events),
            (both.logs, both.metrics, both.events)
        );
        let mut got = both.partitions.clone();
        let key = |p: &PartitionTime| (p.stream.name(), p.topic.clone(), p.partition);
        got.sort_by_key(key);
        times.sort_by_key(key);
        assert_eq!(got, times);
    }

    /// Text written plainly is borrowed from the record; unescaped text is owned. Rows
    /// recycled for the next batch keep their room.
    #[test]
    fn plain_text_is_borrowed_and_recycled_rows_keep_their_room() {
        let records = [
            record(Stream::Logs, br#"{"ts":1,"service":"cart","msg":"say \"hi\"","n":3}"#),
            record(Stream::Logs, br#"ts=1 service=cart msg="a b" quoted="x\"y" k=v"#),
            record(
                Stream::Metrics,
                br#"cpu,host=h\ 1,service=cart usage=1.5 1741106004801"#,
            ),
            record(Stream::Metrics, br#"up{job="cart",path="a\"b"} 1 1741106004801"#),
        ];
        let (mut rows, dead) = Decoder::new(DecodeConfig::default()).decode_rows(&records);
        assert!(dead.is_empty(), "{dead:?}");
        let borrowed = |t: &Text| matches!(t, Cow::Borrowed(_));
        let label = |pairs: &Pairs<'_>, k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| borrowed(v));
        let (json, logfmt) = (&rows.logs[0], &rows.logs[1]);
        assert!(borrowed(&json.service) && !borrowed(&json.message));
        assert_eq!(json.message, "say \"hi\"");
        assert_eq!(label(&json.attrs, "n"), Some(false), "a number is written as text");
        assert!(borrowed(&logfmt.service) && borrowed(&logfmt.message));
        assert_eq!(
            (label(&logfmt.attrs, "k"), label(&logfmt.attrs, "quoted")),
            (Some(true), Some(false))
        );
        let (influx, prom) = (&rows.metrics[0], &rows.metrics[1]);
        assert_eq!(
            (influx.host.as_deref(), influx.host.as_ref().map(borrowed)),
            (Some("h 1"), Some(false))
        );
        assert!(influx.service.as_ref().is_some_and(borrowed) && !borrowed(&influx.name));
        assert!(borrowed(&prom.name) && prom.service.as_ref().is_some_and(borrowed));
        assert_eq!(label(&prom.labels, "path"), Some(false));

        rows.logs.reserve(1000);
        let room = (rows.logs.capacity(), rows.metrics.capacity());
        let spare = rows.recycle();
        assert!(spare.is_empty());
        assert_eq!((spare.logs.capacity(), spare.metrics.capacity()), room);
    }

    #[test]
    fn a_batch_decoded_on_one_thread_leaves_its_buffer_for_the_next() {
        let d = Decoder::new(DecodeConfig::default());
        let records: Vec<_> = (0..10)
            .map(|i| record(Stream::Logs, format!("ts={i} msg=m service=a").as_bytes()))
            .collect();
        for _ in 0..3 {
            assert_eq!(d.decode(&records).unwrap().logs.num_rows(), 10);
        }
        let spare = d.spare.0.lock().unwrap();
        assert_eq!(spare.len(), 1, "one buffer, with room, and no empty one beside it");
        assert!(spare[0].logs.capacity() >= 10);
    }

    pub fn record(stream: Stream, payload: &[u8]) -> RawRecord {
        RawRecord {
            stream,
            payload: payload.to_vec(),
            meta: RecordMeta {
                topic: "t".into(),
                kafka_ts: Some(1_000),
                ..Default::default()
            },
        }
    }

    pub fn ctx() -> Context<'static> {
        static CFG: std::sync::LazyLock<StreamDecoding> = std::sync::LazyLock::new(StreamDecoding::default);
        static REC: std::sync::LazyLock<RawRecord> = std::sync::LazyLock::new(|| record(Stream::Logs, b"{}"));
        Context {
            record: &REC,
            cfg: &CFG,
        }
    }

    #[test]
    fn attrs_are_left_empty_when_the_pipeline_reads_none() {
        let recs = vec![
            record(Stream::Logs, br#"{"ts":1,"message":"a","logger":"x","level":"loud"}"#),
            record(Stream::Logs, b"ts=1 msg=b caller=main.go:1"),
        ];
        let keep = Decoder::default();
        let mut cfg = DecodeConfig::default();
        cfg.logs.skip_attrs = true;
        let skip = Decoder::new(cfg);
        let (kept, _) = keep.decode_rows(&recs);
        let (skipped, dead) = skip.decode_rows(&recs);
        assert!(dead.is_empty());
        assert_eq!(kept.logs[0].attrs.len(), 2, "logger and level_raw");
        assert_eq!(kept.logs[1].attrs.len(), 1, "caller");
        for (k, s) in kept.logs.iter().zip(&skipped.logs) {
            assert!(s.attrs.is_empty());
            assert_eq!((k.ts, &k.message, k.level), (s.ts, &s.message, s.level));
        }
    }

    #[test]
    fn bad_records_become_dead_letters_and_the_rest_goes_on() {
        let d = Decoder::default();
        let big = vec![b'x'; 10 * 1024 * 1024];
        let recs = vec![
            record(Stream::Logs, br#"{"ts":"2025-03-04T00:00:00Z","message":"ok"}"#),
            record(Stream::Logs, b"{not json"),
            record(Stream::Metrics, br#"{"ts":1,"name":"x","value":true}"#),
            record(Stream::Logs, br#"{"ts":"never","message":"x"}"#),
            record(Stream::Logs, &big),
            record(Stream::Logs, b"\xff\xfe garbage"),
            record(Stream::Events, b"plain text event"),
            record(Stream::Events, br#"{"receiver":"x","status":"firing","alerts":[]}"#),
            record(
                Stream::Metrics,
                br#"{"ts":"2025-03-04T00:00:00Z","name":"x","value":1}"#,
            ),
        ];
        let out = d.decode(&recs).unwrap();
        assert_eq!(out.logs.num_rows(), 1);
        assert_eq!(out.metrics.num_rows(), 1);
        let errors: Vec<_> = out
            .dead_letters
            .iter()
            .map(|d| (d.meta.offset, d.error.clone()))
            .collect();
        assert_eq!(out.dead_letters.len(), 7, "{errors:?}");
        assert!(out.dead_letters[0].error.starts_with("malformed JSON"));
        assert!(out.dead_letters[1].error.contains("must be a number"));
        assert!(out.dead_letters[2].error.contains("unparsable timestamp"));
        assert!(out.dead_letters[3].error.contains("exceeds the limit"));
        assert_eq!(
            out.dead_letters[3].payload.len(),
            512 << 10,
            "cut to fit a Kafka message"
        );
        assert_eq!(out.dead_letters[3].original_len, big.len());
        assert!(out.dead_letters[4].error.contains("invalid UTF-8"));
        assert!(out.dead_letters[5].error.contains("unknown encoding"));
        assert!(out.dead_letters[6].error.contains("no alerts"));
        assert_eq!(out.dead_letters[1].payload, recs[2].payload, "original bytes kept");
    }

    /// JSON is not checked for UTF-8 before parsing; a payload that fails to parse for
    /// that reason still says so.
    #[test]
    fn json_that_is_not_utf8_is_refused_as_such() {
        let d = Decoder::default();
        for p in [&b"{\"message\":\"caf\xe9\"}"[..], b"[{\"msg\":1}] \xff", b"{\xff}"] {
            let out = d.decode(&[record(Stream::Logs, p)]).unwrap();
            assert_eq!(out.dead_letters.len(), 1);
            assert!(
                out.dead_letters[0].error.starts_with("invalid UTF-8 at byte"),
                "{:?}",
                out.dead_letters[0].error
            );
        }
        let out = d.decode(&[record(Stream::Logs, b"{\"message\": 1,}")]).unwrap();
        assert!(out.dead_letters[0].error.starts_with("malformed JSON"));
    }

    /// A record that looks like JSON but whose stream is read as text is checked for
    /// UTF-8 there, and read as text when it is.
    #[test]
    fn json_looking_text_is_checked_where_it_is_read() {
        let mut cfg = DecodeConfig::default();
        cfg.logs.encoding = Encoding::Logfmt;
        let d = Decoder::new(cfg);
        let out = d.decode(&[record(Stream::Logs, b"{\xff level=info msg=x")]).unwrap();
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].error, "invalid UTF-8 at byte 1");
        let out = d
            .decode(&[record(Stream::Logs, b"{a}=1 level=info msg=x ts=2025-03-04T00:00:00Z")])
            .unwrap();
        assert_eq!(out.logs.num_rows(), 1, "{:?}", out.dead_letters);
    }

    #[test]
    fn kafka_timestamp_fills_in() {
        let d = Decoder::default();
        let out = d.decode(&[record(Stream::Logs, br#"{"message":"no ts"}"#)]).unwrap();
        assert_eq!(out.logs.num_rows(), 1);
        let mut r = record(Stream::Logs, br#"{"message":"no ts"}"#);
        r.meta.kafka_ts = None;
        let out = d.decode(&[r]).unwrap();
        assert_eq!(out.dead_letters[0].error, DecodeError::NoTimestamp.to_string());
    }
}
