//! The Arrow schemas of the three input streams, and builders that turn decoded rows
//! into record batches.
//!
//! Every stream has an event-time column `ts` (Timestamp, ms, UTC). Fields that a decoder
//! does not map to a column are kept in `attrs` (logs) or `labels` (metrics, events), a
//! `Map<Utf8, Utf8>`, so that SQL can read them as `attrs['logger']`. The logs stream's
//! `template_id`, `template` and `params` are null after decoding and filled by template
//! mining (`logs::enrich`) before SQL runs.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Float64Builder, MapBuilder, MapFieldNames, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// Which of the three input streams a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Logs,
    Metrics,
    Events,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Logs, Stream::Metrics, Stream::Events];

    pub fn name(self) -> &'static str {
        match self {
            Stream::Logs => "logs",
            Stream::Metrics => "metrics",
            Stream::Events => "events",
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Stream::Logs => LOGS_SCHEMA.clone(),
            Stream::Metrics => METRICS_SCHEMA.clone(),
            Stream::Events => EVENTS_SCHEMA.clone(),
        }
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn ts_field() -> Field {
    Field::new(
        "ts",
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    )
}

fn map_names() -> MapFieldNames {
    MapFieldNames {
        entry: "entries".into(),
        key: "key".into(),
        value: "value".into(),
    }
}

fn map_field(name: &str) -> Field {
    let entries = Field::new(
        "entries",
        DataType::Struct(
            vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ]
            .into(),
        ),
        false,
    );
    Field::new(name, DataType::Map(Arc::new(entries), false), false)
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

pub static LOGS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        ts_field(),
        utf8("service", false),
        utf8("host", true),
        utf8("level", false),
        utf8("message", false),
        utf8("trace_id", true),
        map_field("attrs"),
        utf8("template_id", true),
        utf8("template", true),
        params_field(),
    ]))
});

/// `params`: a log message's parameters, in order, once its template is mined.
pub fn params_field() -> Field {
    Field::new(
        "params",
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        true,
    )
}

pub static METRICS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        ts_field(),
        utf8("name", false),
        Field::new("value", DataType::Float64, false),
        utf8("service", true),
        utf8("host", true),
        map_field("labels"),
    ]))
});

pub static EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        ts_field(),
        utf8("kind", false),
        utf8("source", false),
        utf8("service", true),
        utf8("host", true),
        utf8("severity", false),
        utf8("status", false),
        utf8("title", false),
        utf8("fingerprint", true),
        map_field("labels"),
    ]))
});

/// Log levels, normalised. Unknown spellings are kept in `attrs["level_raw"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }

    /// Reads the spellings of common loggers (log4j, syslog, bunyan, Go, Python).
    pub fn parse(s: &str) -> Option<Level> {
        let s = s.trim();
        let numeric = s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+');
        if let Some(Ok(n)) = numeric.then(|| s.parse::<i64>()) {
            // bunyan / pino numbers: 10 trace .. 60 fatal
            return Some(match n {
                ..=10 => Level::Trace,
                11..=20 => Level::Debug,
                21..=30 => Level::Info,
                31..=40 => Level::Warn,
                41..=50 => Level::Error,
                _ => Level::Fatal,
            });
        }
        // upper-cased on the stack, not into a String for every record (no spelling
        // below is longer than 11 bytes)
        let mut upper = [0u8; 12];
        let upper = upper.get_mut(..s.len())?;
        upper.copy_from_slice(s.as_bytes());
        upper.make_ascii_uppercase();
        Some(match &*upper {
            b"TRACE" | b"TRC" | b"FINEST" | b"FINER" => Level::Trace,
            b"DEBUG" | b"DBG" | b"FINE" | b"VERBOSE" => Level::Debug,
            b"INFO" | b"INF" | b"INFORMATION" | b"NOTICE" | b"I" => Level::Info,
            b"WARN" | b"WARNING" | b"WRN" | b"W" => Level::Warn,
            b"ERROR" | b"ERR" | b"E" | b"SEVERE" => Level::Error,
            b"FATAL" | b"CRITICAL" | b"CRIT" | b"PANIC" | b"EMERG" | b"EMERGENCY" | b"ALERT" | b"F" => Level::Fatal,
            _ => return None,
        })
    }
}

/// Decoded text: borrowed from the record where it is written plainly, owned where
/// decoding changed it (escapes, numbers written as text, joined names). A batch's rows
/// live only until its Arrow batches are built, so borrowing saves an allocation and a
/// free per field.
pub type Text<'a> = Cow<'a, str>;

/// Label or attribute pairs.
pub type Pairs<'a> = Vec<(Text<'a>, Text<'a>)>;

/// One decoded log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow<'a> {
    pub ts: i64,
    pub service: Text<'a>,
    pub host: Option<Text<'a>>,
    pub level: Level,
    pub message: Text<'a>,
    pub trace_id: Option<Text<'a>>,
    pub attrs: Pairs<'a>,
}

/// One decoded metric sample.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow<'a> {
    pub ts: i64,
    pub name: Text<'a>,
    pub value: f64,
    pub service: Option<Text<'a>>,
    pub host: Option<Text<'a>>,
    pub labels: Pairs<'a>,
}

/// One decoded event: an alert, a deploy, a change, or something else.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow<'a> {
    pub ts: i64,
    pub kind: EventKind,
    pub source: Text<'a>,
    pub service: Option<Text<'a>>,
    pub host: Option<Text<'a>>,
    pub severity: Severity,
    pub status: Status,
    pub title: Text<'a>,
    pub fingerprint: Option<Text<'a>>,
    pub labels: Pairs<'a>,
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// What an event is about.
    EventKind { Alert => "alert", Deploy => "deploy", Change => "change", Other => "other" }
);
string_enum!(
    /// Event severity, most severe first so that `min` finds the worst.
    Severity { Critical => "critical", Error => "error", Warning => "warning", Info => "info" }
);
string_enum!(
    /// Whether an alert is active.
    Status { Firing => "firing", Resolved => "resolved" }
);

impl EventKind {
    pub fn parse(s: &str) -> EventKind {
        match s.trim().to_ascii_lowercase().as_str() {
            "alert" | "alarm" | "incident" | "problem" => EventKind::Alert,
            "deploy" | "deployment" | "release" | "rollout" => EventKind::Deploy,
            "change" | "config" | "configuration" | "config_change" => EventKind::Change,
            _ => EventKind::Other,
        }
    }
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "critical" | "crit" | "fatal" | "page" | "p1" | "sev1" | "high" | "disaster" | "emergency" => {
                Severity::Critical
            }
            "error" | "err" | "major" | "p2" | "sev2" => Severity::Error,
            "warning" | "warn" | "minor" | "medium" | "p3" | "sev3" | "average" => Severity::Warning,
            "info" | "information" | "informational" | "low" | "none" | "ok" | "p4" | "p5" | "debug" => Severity::Info,
            _ => return None,
        })
    }
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "firing" | "fire" | "trigger" | "triggered" | "active" | "open" | "problem" | "alerting" => Status::Firing,
            "resolved" | "resolve" | "ok" | "closed" | "recovery" | "inactive" | "normal" => Status::Resolved,
            _ => return None,
        })
    }
}

type LabelMap = MapBuilder<StringBuilder, StringBuilder>;

/// A builder for the label maps of `rows` rows, sized for all of them: grown as it
/// went, it spent a tenth of decoding metrics copying what it had.
fn label_map<'a: 'b, 'b>(rows: usize, labels: impl Iterator<Item = &'b [(Text<'a>, Text<'a>)]>) -> LabelMap {
    let (mut n, mut keys, mut values) = (0, 0, 0);
    for l in labels {
        n += l.len();
        keys += l.iter().map(|(k, _)| k.len()).sum::<usize>();
        values += l.iter().map(|(_, v)| v.len()).sum::<usize>();
    }
    MapBuilder::with_capacity(
        Some(map_names()),
        StringBuilder::with_capacity(n, keys),
        StringBuilder::with_capacity(n, values),
        rows,
    )
}

/// A string builder sized for `strings`.
fn strings<'a>(strings: impl Iterator<Item = Option<&'a str>>) -> StringBuilder {
    let (mut n, mut bytes) = (0, 0);
    for s in strings {
        n += 1;
        bytes += s.map_or(0, str::len);
    }
    StringBuilder::with_capacity(n, bytes)
}

fn push_labels(b: &mut LabelMap, labels: &[(Text, Text)]) -> Result<(), ArrowError> {
    for (k, v) in labels {
        b.keys().append_value(k);
        b.values().append_value(v);
    }
    b.append(true)
}

/// An emptied vector as one of another element type, in the same allocation: std
/// collects a vector's own iterator in place when the element layouts match, as those
/// of one row type at two lifetimes do (tested).
fn emptied<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().map(|_| unreachable!("the vector is empty")).collect()
}

/// Accumulates rows of all three streams and turns them into batches.
#[derive(Default)]
pub struct Rows<'a> {
    pub logs: Vec<LogRow<'a>>,
    pub metrics: Vec<MetricRow<'a>>,
    pub events: Vec<EventRow<'a>>,
}

impl<'a> Rows<'a> {
    pub fn len_of(&self, s: Stream) -> usize {
        match s {
            Stream::Logs => self.logs.len(),
            Stream::Metrics => self.metrics.len(),
            Stream::Events => self.events.len(),
        }
    }

    /// The newest time among the rows of a stream from index `from` on.
    pub fn newest_since(&self, s: Stream, from: usize) -> Option<i64> {
        match s {
            Stream::Logs => self.logs.get(from..)?.iter().map(|r| r.ts).max(),
            Stream::Metrics => self.metrics.get(from..)?.iter().map(|r| r.ts).max(),
            Stream::Events => self.events.get(from..)?.iter().map(|r| r.ts).max(),
        }
    }

    pub fn len(&self) -> usize {
        self.logs.len() + self.metrics.len() + self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room for this many rows, all streams together.
    pub fn capacity(&self) -> usize {
        self.logs.capacity() + self.metrics.capacity() + self.events.capacity()
    }

    /// Drops the rows and keeps their room, free of the records they borrowed from.
    pub fn recycle(self) -> Rows<'static> {
        Rows {
            logs: emptied(self.logs),
            metrics: emptied(self.metrics),
            events: emptied(self.events),
        }
    }
}

pub fn logs_batch(rows: &[LogRow<'_>]) -> Result<RecordBatch, ArrowError> {
    logs_batch_of(&[rows])
}

/// [`logs_batch`] of rows decoded in parts (the halves of a batch), in order.
pub fn logs_batch_of(parts: &[&[LogRow<'_>]]) -> Result<RecordBatch, ArrowError> {
    let rows = || parts.iter().flat_map(|p| p.iter());
    let n = parts.iter().map(|p| p.len()).sum();
    let mut ts = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut service = strings(rows().map(|r| Some(r.service.as_ref())));
    let mut host = strings(rows().map(|r| r.host.as_deref()));
    let mut level = StringBuilder::with_capacity(n, n * 5);
    let mut message = strings(rows().map(|r| Some(r.message.as_ref())));
    let mut trace = strings(rows().map(|r| r.trace_id.as_deref()));
    let mut attrs = label_map(n, rows().map(|r| r.attrs.as_slice()));
    for r in rows() {
        ts.append_value(r.ts);
        service.append_value(&r.service);
        host.append_option(r.host.as_deref());
        level.append_value(r.level.as_str());
        message.append_value(&r.message);
        trace.append_option(r.trace_id.as_deref());
        push_labels(&mut attrs, &r.attrs)?;
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(service.finish()),
        Arc::new(host.finish()),
        Arc::new(level.finish()),
        Arc::new(message.finish()),
        Arc::new(trace.finish()),
        Arc::new(attrs.finish()),
        arrow::array::new_null_array(&DataType::Utf8, n),
        arrow::array::new_null_array(&DataType::Utf8, n),
        arrow::array::new_null_array(params_field().data_type(), n),
    ];
    RecordBatch::try_new(LOGS_SCHEMA.clone(), cols)
}

pub fn metrics_batch(rows: &[MetricRow<'_>]) -> Result<RecordBatch, ArrowError> {
    metrics_batch_of(&[rows])
}

/// [`metrics_batch`] of rows decoded in parts (the halves of a batch), in order.
pub fn metrics_batch_of(parts: &[&[MetricRow<'_>]]) -> Result<RecordBatch, ArrowError> {
    let rows = || parts.iter().flat_map(|p| p.iter());
    let n = parts.iter().map(|p| p.len()).sum();
    let mut ts = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut name = strings(rows().map(|r| Some(r.name.as_ref())));
    let mut value = Float64Builder::with_capacity(n);
    let mut service = strings(rows().map(|r| r.service.as_deref()));
    let mut host = strings(rows().map(|r| r.host.as_deref()));
    let mut labels = label_map(n, rows().map(|r| r.labels.as_slice()));
    for r in rows() {
        ts.append_value(r.ts);
        name.append_value(&r.name);
        value.append_value(r.value);
        service.append_option(r.service.as_deref());
        host.append_option(r.host.as_deref());
        push_labels(&mut labels, &r.labels)?;
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(name.finish()),
        Arc::new(value.finish()),
        Arc::new(service.finish()),
        Arc::new(host.finish()),
        Arc::new(labels.finish()),
    ];
    RecordBatch::try_new(METRICS_SCHEMA.clone(), cols)
}

pub fn events_batch(rows: &[EventRow<'_>]) -> Result<RecordBatch, ArrowError> {
    events_batch_of(&[rows])
}

/// [`events_batch`] of rows decoded in parts (the halves of a batch), in order.
pub fn events_batch_of(parts: &[&[EventRow<'_>]]) -> Result<RecordBatch, ArrowError> {
    let rows = || parts.iter().flat_map(|p| p.iter());
    let n = parts.iter().map(|p| p.len()).sum();
    let mut ts = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut kind = StringBuilder::new();
    let mut source = StringBuilder::new();
    let mut service = StringBuilder::new();
    let mut host = StringBuilder::new();
    let mut severity = StringBuilder::new();
    let mut status = StringBuilder::new();
    let mut title = StringBuilder::new();
    let mut fingerprint = StringBuilder::new();
    let mut labels = label_map(n, rows().map(|r| r.labels.as_slice()));
    for r in rows() {
        ts.append_value(r.ts);
        kind.append_value(r.kind.as_str());
        source.append_value(&r.source);
        service.append_option(r.service.as_deref());
        host.append_option(r.host.as_deref());
        severity.append_value(r.severity.as_str());
        status.append_value(r.status.as_str());
        title.append_value(&r.title);
        fingerprint.append_option(r.fingerprint.as_deref());
        push_labels(&mut labels, &r.labels)?;
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(kind.finish()),
        Arc::new(source.finish()),
        Arc::new(service.finish()),
        Arc::new(host.finish()),
        Arc::new(severity.finish()),
        Arc::new(status.finish()),
        Arc::new(title.finish()),
        Arc::new(fingerprint.finish()),
        Arc::new(labels.finish()),
    ];
    RecordBatch::try_new(EVENTS_SCHEMA.clone(), cols)
}

#[cfg(test)]
mod tests {
    use super::Level;

    #[test]
    fn levels_read_in_any_case_as_numbers_and_not_past_the_longest_spelling() {
        let cases = [
            ("warn", Some(Level::Warn)),
            (" Warning ", Some(Level::Warn)),
            ("information", Some(Level::Info)),
            ("EMERGENCY", Some(Level::Fatal)),
            ("e", Some(Level::Error)),
            ("fine", Some(Level::Debug)),
            ("30", Some(Level::Info)),
            ("+5", Some(Level::Trace)),
            ("-1", Some(Level::Trace)),
            ("60", Some(Level::Fatal)),
            ("informational", None),
            ("a very long level name", None),
            ("wärn", None),
            ("", None),
            ("4x", None),
        ];
        for (s, want) in cases {
            assert_eq!(Level::parse(s), want, "{s:?}");
        }
    }
}
