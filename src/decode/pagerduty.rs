//! PagerDuty Events API v2: `trigger`, `acknowledge` and `resolve` with a `dedup_key`.
//!
//! A trigger is a firing alert; a resolve resolves the alert with that `dedup_key`; an
//! acknowledge is kept as an `other` event with `labels.event_action = acknowledge`, so
//! that it does not look like a new symptom but its time can still be measured (MTTA).
//! `payload.source` is the host; `payload.component` (or `custom_details.service`) the
//! service.

use super::value::{Map, Value};

use super::{json, time, Context, DecodeError, EventKind, EventRow, Pairs, Severity, Status};

pub fn decode<'a>(mut o: Map<'a>, ctx: &Context) -> Result<EventRow<'a>, DecodeError> {
    let action = match o.remove("event_action") {
        Some(Value::String(s)) => s.into_owned(),
        Some(v) => {
            return Err(DecodeError::Type {
                field: "event_action".into(),
                want: "a string",
                got: json::kind(&v),
            })
        }
        None => return Err(DecodeError::Missing("event_action")),
    };
    let dedup_key = match o.remove("dedup_key") {
        Some(v) => Some(json::text("dedup_key", v)?),
        None => None,
    };
    let mut payload = match o.remove("payload") {
        Some(Value::Object(p)) => p,
        Some(v) => {
            return Err(DecodeError::Type {
                field: "payload".into(),
                want: "an object",
                got: json::kind(&v),
            })
        }
        None if action != "trigger" => Map::new(),
        None => return Err(DecodeError::Missing("payload")),
    };
    let (kind, status) = match action.as_str() {
        "trigger" => (EventKind::Alert, Status::Firing),
        "resolve" => (EventKind::Alert, Status::Resolved),
        "acknowledge" => (EventKind::Other, Status::Firing),
        other => return Err(DecodeError::Invalid(format!("unknown event_action {other:?}"))),
    };
    if kind == EventKind::Alert && status == Status::Resolved && dedup_key.is_none() {
        return Err(DecodeError::Missing("dedup_key (a resolve needs one)"));
    }
    let ts = match payload.remove("timestamp") {
        Some(v) => time::parse_json(&v).ok_or_else(|| DecodeError::Timestamp(v.to_string()))?,
        None => ctx.fallback_ts()?,
    };
    let summary = match payload.remove("summary") {
        Some(v) => json::text("payload.summary", v)?,
        None if action == "trigger" => return Err(DecodeError::Missing("payload.summary")),
        None => format!("{action} {}", dedup_key.as_deref().unwrap_or("")).into(),
    };
    let severity = match payload.remove("severity") {
        Some(v) => {
            let s = json::text("payload.severity", v)?;
            Severity::parse(&s).ok_or_else(|| DecodeError::Invalid(format!("unknown severity {s:?}")))?
        }
        None => Severity::Warning,
    };
    let host = payload
        .remove("source")
        .map(|v| json::text("payload.source", v))
        .transpose()?;
    let mut details = match payload.remove("custom_details") {
        Some(v @ Value::Object(_)) => json::string_map("custom_details", v)?,
        Some(other) => vec![("custom_details".into(), other.to_string().into())],
        None => Vec::new(),
    };
    let service = match payload.remove("component") {
        Some(v) => Some(json::text("payload.component", v)?),
        None => json::label(&details, &["service", "app"]),
    };
    let mut labels: Pairs = vec![("event_action".into(), action.clone().into())];
    labels.extend(json::rest(payload));
    labels.append(&mut details);
    if let Some(client) = o.get("client").and_then(Value::as_str) {
        labels.push(("client".into(), client.to_string().into()));
    }
    Ok(EventRow {
        ts,
        kind,
        source: "pagerduty".into(),
        service,
        host,
        severity,
        status,
        title: summary,
        fingerprint: dedup_key,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::ctx;
    use super::*;

    fn parse(s: &str) -> Result<EventRow<'_>, DecodeError> {
        decode(json::objects(s.as_bytes()).unwrap().remove(0), &ctx())
    }

    #[test]
    fn trigger_acknowledge_resolve() {
        let t = parse(r#"{"routing_key":"k","event_action":"trigger","dedup_key":"d1","payload":{"summary":"DB down","source":"db-1","severity":"critical","component":"postgres","timestamp":"2025-03-04T00:00:00Z"}}"#).unwrap();
        assert_eq!(
            (t.kind, t.status, t.severity),
            (EventKind::Alert, Status::Firing, Severity::Critical)
        );
        assert_eq!(
            (t.service.as_deref(), t.host.as_deref()),
            (Some("postgres"), Some("db-1"))
        );
        let a = parse(r#"{"routing_key":"k","event_action":"acknowledge","dedup_key":"d1"}"#).unwrap();
        assert_eq!(a.kind, EventKind::Other);
        let r = parse(r#"{"routing_key":"k","event_action":"resolve","dedup_key":"d1"}"#).unwrap();
        assert_eq!((r.status, r.fingerprint.as_deref()), (Status::Resolved, Some("d1")));
        assert!(parse(r#"{"routing_key":"k","event_action":"explode","payload":{}}"#).is_err());
        assert!(parse(r#"{"routing_key":"k","event_action":"resolve"}"#).is_err());
    }
}
