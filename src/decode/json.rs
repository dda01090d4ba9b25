//! Generic JSON for the three streams, with the field aliases of DESIGN.md.
//!
//! A payload is one JSON object, or an array of them (each element one record). Fields
//! that are not mapped to a column go to `attrs` / `labels`, never dropped: strings as
//! they are, other values as their JSON text. Nested `service: {name}` and `host: {name}`
//! (OpenTelemetry-style) are read too.

use std::borrow::Cow;

use super::value::{Map, Value};

use super::schema::{EventKind, EventRow, Level, LogRow, MetricRow, Pairs, Severity, Status, Text};
use super::{time, Context, DecodeError};

type Obj<'a> = Map<'a>;

/// Parses a payload into JSON objects, borrowing their keys and strings from it (a flat
/// object by [`super::flat`], the rest by `serde_json`). A payload that is not UTF-8 is
/// refused as such, not as malformed JSON.
pub fn objects(payload: &[u8]) -> Result<Vec<Obj<'_>>, DecodeError> {
    match super::flat::object(payload) {
        Some(o) => Ok(vec![o]),
        None => parsed(payload),
    }
}

/// The objects of a payload that [`super::flat`] declined, by `serde_json`.
pub fn parsed(payload: &[u8]) -> Result<Vec<Obj<'_>>, DecodeError> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| match std::str::from_utf8(payload) {
        Err(u) => DecodeError::Utf8(u.valid_up_to()),
        Ok(_) => DecodeError::Json(e.to_string()),
    })?;
    match v {
        Value::Object(o) => Ok(vec![o]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(DecodeError::Invalid("empty JSON array".into()));
            }
            items
                .into_iter()
                .map(|i| match i {
                    Value::Object(o) => Ok(o),
                    other => Err(DecodeError::Invalid(format!(
                        "array element is {}, not an object",
                        kind(&other)
                    ))),
                })
                .collect()
        }
        other => Err(DecodeError::Invalid(format!("JSON {} is not an object", kind(&other)))),
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Removes the first present alias and returns it.
pub fn take<'a>(o: &mut Obj<'a>, aliases: &[&'static str]) -> Option<(&'static str, Value<'a>)> {
    for a in aliases {
        if let Some(v) = o.remove(a) {
            if !v.is_null() {
                return Some((a, v));
            }
        }
    }
    None
}

/// A scalar as text; objects and arrays are a type error.
pub fn text<'a>(field: &str, v: Value<'a>) -> Result<Text<'a>, DecodeError> {
    match v {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string().into()),
        Value::Bool(b) => Ok(Cow::Borrowed(if b { "true" } else { "false" })),
        other => Err(DecodeError::Type {
            field: field.into(),
            want: "a string",
            got: kind(&other),
        }),
    }
}

fn take_text<'a>(o: &mut Obj<'a>, aliases: &[&'static str]) -> Result<Option<Text<'a>>, DecodeError> {
    let taken = take(o, aliases);
    text_of(o, taken)
}

/// A field taken out of `o` (with the key it came from) as text; an object's `name`, the
/// rest of it going back into `o` as attributes.
fn text_of<'a>(o: &mut Obj<'a>, taken: Option<(&'static str, Value<'a>)>) -> Result<Option<Text<'a>>, DecodeError> {
    match taken {
        Some((f, Value::Object(mut inner))) => {
            // `service: {"name": "x", ...}`: the name is the value, the rest are attributes.
            let name = match inner.remove("name") {
                Some(n) => text(&format!("{f}.name"), n)?,
                None => {
                    return Err(DecodeError::Type {
                        field: f.into(),
                        want: "a string",
                        got: "an object",
                    })
                }
            };
            o.extend(inner.into_iter().map(|(k, v)| (Cow::Owned(format!("{f}.{k}")), v)));
            Ok(Some(name))
        }
        Some((f, v)) => text(f, v).map(Some),
        None => Ok(None),
    }
}

/// The rest of an object as key / value strings.
pub fn rest(o: Obj) -> Pairs {
    let mut out: Pairs = o
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string().into()),
        })
        .collect();
    out.sort();
    out
}

/// A JSON object of strings (labels), as pairs.
pub fn string_map<'a>(field: &str, v: Value<'a>) -> Result<Pairs<'a>, DecodeError> {
    match v {
        Value::Object(m) => Ok(rest(m)),
        Value::Null => Ok(Vec::new()),
        other => Err(DecodeError::Type {
            field: field.into(),
            want: "an object",
            got: kind(&other),
        }),
    }
}

/// The event time: a timestamp field, else the Kafka record timestamp.
pub fn event_time(o: &mut Obj, aliases: &[&'static str], ctx: &Context) -> Result<i64, DecodeError> {
    time_of(take(o, aliases), ctx)
}

/// A field taken out of an object (with the key it came from) as the event time, or the
/// record's fallback when there is none.
fn time_of(taken: Option<(&'static str, Value)>, ctx: &Context) -> Result<i64, DecodeError> {
    match taken {
        Some((f, v)) => time::parse_json(&v).ok_or_else(|| DecodeError::Timestamp(format!("{f}: {v}"))),
        None => ctx.fallback_ts(),
    }
}

const TS: &[&str] = &["ts", "timestamp", "@timestamp", "time"];

/// The keys of a log's columns, each column's most preferred first: the event time,
/// service, host, message, trace id and level.
const LOG_KEYS: [&[&str]; 6] = [
    TS,
    &["service", "service.name", "app"],
    &["host", "hostname", "host.name"],
    &["message", "msg", "log", "body"],
    &["trace_id", "traceId", "trace.id"],
    &["level", "severity", "lvl"],
];

/// Which of [`LOG_KEYS`]' columns a key fills, and its place among that column's keys.
fn log_key(key: &str) -> Option<(usize, usize)> {
    Some(match key {
        "ts" => (0, 0),
        "timestamp" => (0, 1),
        "@timestamp" => (0, 2),
        "time" => (0, 3),
        "service" => (1, 0),
        "service.name" => (1, 1),
        "app" => (1, 2),
        "host" => (2, 0),
        "hostname" => (2, 1),
        "host.name" => (2, 2),
        "message" => (3, 0),
        "msg" => (3, 1),
        "log" => (3, 2),
        "body" => (3, 3),
        "trace_id" => (4, 0),
        "traceId" => (4, 1),
        "trace.id" => (4, 2),
        "level" => (5, 0),
        "severity" => (5, 1),
        "lvl" => (5, 2),
        _ => return None,
    })
}

pub fn log<'a>(mut o: Obj<'a>, ctx: &Context) -> Result<LogRow<'a>, DecodeError> {
    // the six columns' pairs found in one pass, then taken in this order, so that the
    // first error is the one taking them in turn gave (an object's other keys, put back
    // into `o` as attributes, go after its pairs: they move none of those found)
    let found = o.find_fields::<6>(log_key);
    let take = |o: &mut Obj<'a>, f: usize| found[f].map(|at| (LOG_KEYS[f][at.key], o.take_found(at)));
    let text = |o: &mut Obj<'a>, f: usize| {
        let taken = take(o, f);
        text_of(o, taken)
    };
    let ts = time_of(take(&mut o, 0), ctx)?;
    let service = text(&mut o, 1)?;
    let host = text(&mut o, 2)?;
    let message = text(&mut o, 3)?.ok_or(DecodeError::Missing("message (or msg, log, body)"))?;
    let trace_id = text(&mut o, 4)?;
    let level_raw = text(&mut o, 5)?;
    let (level, unknown_level) = level_of(level_raw);
    let attrs = ctx.attrs(|| {
        let mut attrs = rest(o);
        if let Some(raw) = unknown_level {
            attrs.push(("level_raw".into(), raw));
        }
        attrs
    });
    Ok(LogRow {
        ts,
        service: service.unwrap_or_else(|| ctx.default_service()),
        host,
        level,
        message,
        trace_id,
        attrs,
    })
}

/// A level, defaulting to INFO; an unknown spelling is returned to be kept in attrs.
pub fn level_of(raw: Option<Text>) -> (Level, Option<Text>) {
    match raw {
        None => (Level::Info, None),
        Some(s) => match Level::parse(&s) {
            Some(l) => (l, None),
            None => (Level::Info, Some(s)),
        },
    }
}

pub fn metric<'a>(mut o: Obj<'a>, ctx: &Context) -> Result<MetricRow<'a>, DecodeError> {
    let ts = event_time(&mut o, TS, ctx)?;
    let name = take_text(&mut o, &["name", "metric", "__name__"])?
        .ok_or(DecodeError::Missing("name (or metric, __name__)"))?;
    let value = match take(&mut o, &["value", "val", "gauge"]) {
        Some((_, Value::Number(n))) => n
            .as_f64()
            .ok_or_else(|| DecodeError::Invalid("value out of range".into()))?,
        Some((f, Value::String(s))) => s.trim().parse::<f64>().map_err(|_| DecodeError::Type {
            field: f.into(),
            want: "a number",
            got: "a non-numeric string",
        })?,
        Some((f, v)) => {
            return Err(DecodeError::Type {
                field: f.into(),
                want: "a number",
                got: kind(&v),
            })
        }
        None => return Err(DecodeError::Missing("value")),
    };
    let mut labels = match take(&mut o, &["labels", "tags", "attributes"]) {
        Some((f, v)) => string_map(f, v)?,
        None => Vec::new(),
    };
    let mut service = take_text(&mut o, &["service", "service.name", "job"])?;
    let mut host = take_text(&mut o, &["host", "hostname", "instance"])?;
    if service.is_none() {
        service = label(&labels, &["service", "service.name", "job"]);
    }
    if host.is_none() {
        host = label(&labels, &["host", "hostname", "instance"]);
    }
    labels.extend(rest(o));
    Ok(MetricRow {
        ts,
        name,
        value,
        service,
        host,
        labels,
    })
}

/// The first present label of the aliases.
pub fn label<'a>(labels: &[(Text<'a>, Text<'a>)], aliases: &[&str]) -> Option<Text<'a>> {
    aliases
        .iter()
        .find_map(|a| labels.iter().find(|(k, _)| k == a).map(|(_, v)| v.clone()))
}

pub fn event<'a>(mut o: Obj<'a>, ctx: &Context) -> Result<EventRow<'a>, DecodeError> {
    let ts = event_time(&mut o, TS, ctx)?;
    let kind_raw = take_text(&mut o, &["kind", "type", "event_type"])?;
    let severity_raw = take_text(&mut o, &["severity", "priority", "level"])?;
    let status_raw = take_text(&mut o, &["status", "state"])?;
    let kind = match &kind_raw {
        Some(k) => EventKind::parse(k),
        // Without a kind, something with a status or severity is an alert.
        None if severity_raw.is_some() || status_raw.is_some() => EventKind::Alert,
        None => EventKind::Other,
    };
    let severity = match &severity_raw {
        Some(s) => Severity::parse(s).ok_or_else(|| DecodeError::Invalid(format!("unknown severity {s:?}")))?,
        None if kind == EventKind::Alert => Severity::Warning,
        None => Severity::Info,
    };
    let status = match &status_raw {
        Some(s) => Status::parse(s).ok_or_else(|| DecodeError::Invalid(format!("unknown status {s:?}")))?,
        None if kind == EventKind::Alert => Status::Firing,
        None => Status::Resolved,
    };
    let title = take_text(&mut o, &["title", "summary", "message", "name", "description"])?
        .ok_or(DecodeError::Missing("title (or summary, message, name)"))?;
    let source =
        take_text(&mut o, &["source", "origin", "tool"])?.unwrap_or_else(|| Cow::Owned(ctx.topic().to_string()));
    let mut labels = match take(&mut o, &["labels", "tags", "attributes"]) {
        Some((f, v)) => string_map(f, v)?,
        None => Vec::new(),
    };
    let mut service = take_text(&mut o, &["service", "service.name", "app"])?;
    let host = take_text(&mut o, &["host", "hostname", "host.name"])?;
    if service.is_none() {
        service = label(&labels, &["service", "job", "app"]);
    }
    let fingerprint = take_text(&mut o, &["fingerprint", "dedup_key", "alert_id", "id"])?;
    if let Some(k) = kind_raw.filter(|_| kind == EventKind::Other) {
        labels.push(("kind_raw".into(), k));
    }
    labels.extend(rest(o));
    Ok(EventRow {
        ts,
        kind,
        source,
        service,
        host,
        severity,
        status,
        title,
        fingerprint,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::ctx;
    use super::*;

    fn obj(s: &str) -> Obj<'_> {
        objects(s.as_bytes()).unwrap().remove(0)
    }

    #[test]
    fn log_aliases_and_attrs() {
        let r = log(
            obj(r#"{"@timestamp":1741106004801,"service.name":"cart","hostname":"h1","lvl":"warning","msg":"hi","thread":"t-1","n":3}"#),
            &ctx(),
        )
        .unwrap();
        assert_eq!(r.ts, 1_741_106_004_801);
        assert_eq!(r.service, "cart");
        assert_eq!(r.host.as_deref(), Some("h1"));
        assert_eq!(r.level, Level::Warn);
        assert_eq!(r.message, "hi");
        assert_eq!(r.attrs, vec![("n".into(), "3".into()), ("thread".into(), "t-1".into())]);
    }

    /// One pass finds what taking each column's keys in turn finds, leaving the same
    /// pairs: with several keys of a column present, in any order, null, or nested.
    #[test]
    fn log_columns_are_taken_in_one_pass_as_in_turn() {
        for (f, keys) in LOG_KEYS.iter().enumerate() {
            for (rank, k) in keys.iter().enumerate() {
                assert_eq!(log_key(k), Some((f, rank)), "{k}");
            }
        }
        for k in ["Message", "ts ", "", "service.version", "attrs", "levels"] {
            assert_eq!(log_key(k), None, "{k}");
        }
        let left = |o: Obj| {
            let mut pairs: Vec<(String, String)> = o
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            pairs.sort();
            pairs
        };
        for text in [
            r#"{"ts":1,"service":"a","host":"h","message":"m","trace_id":"t","level":"INFO","x":1}"#,
            r#"{"msg":"second","x":"y","message":"first","time":5,"ts":6,"lvl":"debug","severity":"error"}"#,
            r#"{"message":null,"msg":"m","service":null,"app":"a","service.name":"s","log":"l","body":"b"}"#,
            r#"{"host":{"name":"h","zone":"z"},"hostname":"h2","host.name":"h3","traceId":"t2","trace.id":"t3"}"#,
            r#"{"a":1,"b":true,"c":null}"#,
            r#"{}"#,
        ] {
            let mut one = obj(text);
            let found = one.find_fields::<6>(log_key);
            let mut each = obj(text);
            for (f, keys) in LOG_KEYS.iter().enumerate() {
                let taken = found[f].map(|at| (keys[at.key], one.take_found(at)));
                assert_eq!(taken, take(&mut each, keys), "{text}: column {f}");
            }
            assert_eq!(left(one), left(each), "{text}");
        }
    }

    #[test]
    fn nested_service_object() {
        let r = log(
            obj(r#"{"ts":"2025-03-04T00:00:00Z","service":{"name":"a","version":"1"},"body":"x"}"#),
            &ctx(),
        )
        .unwrap();
        assert_eq!(r.service, "a");
        assert_eq!(r.attrs, vec![("service.version".into(), "1".into())]);
    }

    #[test]
    fn metric_labels_give_service_and_host() {
        let r = metric(
            obj(r#"{"ts":"2025-03-04T00:00:00.002Z","name":"cpu_usage","value":0.475,"labels":{"service":"cart","host":"cart-1"}}"#),
            &ctx(),
        )
        .unwrap();
        assert_eq!(
            (r.service.as_deref(), r.host.as_deref(), r.value),
            (Some("cart"), Some("cart-1"), 0.475)
        );
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(matches!(
            metric(obj(r#"{"ts":1,"name":"x","value":"abc"}"#), &ctx()),
            Err(DecodeError::Type { .. })
        ));
        assert!(matches!(
            log(obj(r#"{"ts":1,"message":["a"]}"#), &ctx()),
            Err(DecodeError::Type { .. })
        ));
        assert!(matches!(
            log(obj(r#"{"ts":"soon","message":"a"}"#), &ctx()),
            Err(DecodeError::Timestamp(_))
        ));
    }
}
