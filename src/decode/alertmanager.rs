//! Prometheus Alertmanager webhook payloads (version 4): one event per alert.
//!
//! `labels.alertname` and `annotations.summary` make the title; `labels.severity`,
//! `labels.service` / `job` and `labels.instance` / `host` fill their columns; the
//! alert's `fingerprint` is kept (Alertmanager computes it from the label set). The event
//! time is `startsAt` for a firing alert and `endsAt` for a resolved one. Annotations
//! become labels prefixed `annotation.`. A payload with no alerts is refused.

use super::value::{Map, Value};

use super::{json, time, Context, DecodeError, EventKind, EventRow, Severity, Status};

pub fn decode<'a>(mut o: Map<'a>, ctx: &Context) -> Result<Vec<EventRow<'a>>, DecodeError> {
    let alerts = match o.remove("alerts") {
        Some(Value::Array(a)) => a,
        _ => return Err(DecodeError::Missing("alerts")),
    };
    if alerts.is_empty() {
        return Err(DecodeError::Invalid("Alertmanager payload has no alerts".into()));
    }
    let receiver = o.get("receiver").and_then(Value::as_str).unwrap_or("").to_string();
    let group_status = o.get("status").and_then(Value::as_str).map(str::to_string);
    alerts
        .into_iter()
        .enumerate()
        .map(|(i, a)| match a {
            Value::Object(a) => alert(a, &receiver, group_status.as_deref(), ctx),
            other => Err(DecodeError::Type {
                field: format!("alerts[{i}]"),
                want: "an object",
                got: json::kind(&other),
            }),
        })
        .collect()
}

fn alert<'a>(
    mut a: Map<'a>,
    receiver: &str,
    group_status: Option<&str>,
    ctx: &Context,
) -> Result<EventRow<'a>, DecodeError> {
    let status_raw = a.remove("status").and_then(|v| v.as_str().map(str::to_string));
    let status = status_raw
        .as_deref()
        .or(group_status)
        .and_then(Status::parse)
        .ok_or(DecodeError::Missing("alerts[].status"))?;
    let labels = match a.remove("labels") {
        Some(v) => json::string_map("labels", v)?,
        None => return Err(DecodeError::Missing("alerts[].labels")),
    };
    let annotations = match a.remove("annotations") {
        Some(v) => json::string_map("annotations", v)?,
        None => Vec::new(),
    };
    let when_key = if status == Status::Resolved {
        "endsAt"
    } else {
        "startsAt"
    };
    let ts = match a.get(when_key).or_else(|| a.get("startsAt")) {
        Some(v) if !is_zero_time(v) => {
            time::parse_json(v).ok_or_else(|| DecodeError::Timestamp(format!("{when_key}: {v}")))?
        }
        _ => ctx.fallback_ts()?,
    };
    let alertname = json::label(&labels, &["alertname"]).unwrap_or_else(|| "alert".into());
    let summary = json::label(&annotations, &["summary", "description", "message"]);
    let title = match summary {
        Some(s) => format!("{alertname}: {s}").into(),
        None => alertname,
    };
    let severity = json::label(&labels, &["severity", "priority"])
        .and_then(|s| Severity::parse(&s))
        .unwrap_or(Severity::Warning);
    let mut all = labels.clone();
    all.extend(
        annotations
            .into_iter()
            .map(|(k, v)| (format!("annotation.{k}").into(), v)),
    );
    if let Some(u) = a.get("generatorURL").and_then(Value::as_str) {
        all.push(("generator_url".into(), u.to_string().into()));
    }
    if !receiver.is_empty() {
        all.push(("receiver".into(), receiver.to_string().into()));
    }
    if let Some(s) = a.get("startsAt").and_then(Value::as_str) {
        all.push(("starts_at".into(), s.to_string().into()));
    }
    Ok(EventRow {
        ts,
        kind: EventKind::Alert,
        source: "alertmanager".into(),
        service: json::label(&labels, &["service", "job", "app"]),
        host: json::label(&labels, &["host", "instance", "node"]).map(|h| strip_port(&h).into()),
        severity,
        status,
        title,
        fingerprint: a
            .get("fingerprint")
            .and_then(Value::as_str)
            .map(|f| f.to_string().into()),
        labels: all,
    })
}

/// Alertmanager writes `0001-01-01T00:00:00Z` for "not ended".
fn is_zero_time(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with("0001-"))
}

fn strip_port(instance: &str) -> String {
    match instance.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => instance.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::ctx;
    use super::*;

    const PAYLOAD: &str = r#"{"version":"4","receiver":"lookout","status":"firing","groupKey":"{}","alerts":[
      {"status":"firing","labels":{"alertname":"HighCPU","severity":"critical","job":"cart","instance":"cart-1:9100"},
       "annotations":{"summary":"CPU 98%"},"startsAt":"2025-03-04T03:06:34.445Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"86aab944c3c5869a"},
      {"status":"resolved","labels":{"alertname":"DiskFull","job":"db"},"annotations":{},
       "startsAt":"2025-03-04T03:00:00Z","endsAt":"2025-03-04T03:10:00Z","fingerprint":"ff"}]}"#;

    #[test]
    fn one_event_per_alert() {
        let o = json::objects(PAYLOAD.as_bytes()).unwrap().remove(0);
        let rows = decode(o, &ctx()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].title, "HighCPU: CPU 98%");
        assert_eq!(rows[0].severity, Severity::Critical);
        assert_eq!(rows[0].host.as_deref(), Some("cart-1"));
        assert_eq!(rows[0].service.as_deref(), Some("cart"));
        assert_eq!(rows[0].fingerprint.as_deref(), Some("86aab944c3c5869a"));
        assert_eq!(rows[1].status, Status::Resolved);
        assert_eq!(rows[1].ts, 1_741_057_800_000, "resolved alerts carry endsAt");
    }
}
