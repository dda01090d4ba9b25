//! CloudEvents 1.0 JSON (structured mode) for deploys and changes, as CI/CD and
//! GitOps tools emit them (`dev.cdevents.service.deployed.0.1.0`,
//! `com.example.deploy.finished`, ...).
//!
//! The kind comes from `type`: deploy / release / rollout, change / config, alert,
//! otherwise `other`. `data.service` (or `subject`) is the service, `data.host` the
//! host; `id` is the fingerprint; `data.title` / `data.message` / `data.summary`, or the
//! type and subject, make the title. Other `data` keys become labels.

use super::value::{Map, Value};

use super::{json, time, Context, DecodeError, EventKind, EventRow, Severity, Status, Text};

pub fn decode<'a>(mut o: Map<'a>, ctx: &Context) -> Result<EventRow<'a>, DecodeError> {
    let get = |o: &mut Map<'a>, k: &'static str| -> Result<Option<Text<'a>>, DecodeError> {
        o.remove(k).map(|v| json::text(k, v)).transpose()
    };
    let typ = get(&mut o, "type")?.ok_or(DecodeError::Missing("type"))?;
    let source = get(&mut o, "source")?.ok_or(DecodeError::Missing("source"))?;
    let id = get(&mut o, "id")?.ok_or(DecodeError::Missing("id"))?;
    let subject = get(&mut o, "subject")?;
    let ts = match o.remove("time") {
        Some(v) => time::parse_json(&v).ok_or_else(|| DecodeError::Timestamp(v.to_string()))?,
        None => ctx.fallback_ts()?,
    };
    let mut data = match o.remove("data") {
        Some(Value::Object(d)) => d,
        Some(Value::Null) | None => Map::new(),
        Some(v) => {
            let mut m = Map::new();
            m.insert("data", v);
            m
        }
    };
    let lower = typ.to_ascii_lowercase();
    let kind = if ["deploy", "release", "rollout"].iter().any(|k| lower.contains(k)) {
        EventKind::Deploy
    } else if ["change", "config"].iter().any(|k| lower.contains(k)) {
        EventKind::Change
    } else if lower.contains("alert") || lower.contains("incident") {
        EventKind::Alert
    } else {
        EventKind::Other
    };
    let take = |d: &mut Map<'a>, keys: &[&'static str]| -> Result<Option<Text<'a>>, DecodeError> {
        json::take(d, keys).map(|(f, v)| json::text(f, v)).transpose()
    };
    let service = take(&mut data, &["service", "service_name", "app", "application"])?.or(subject.clone());
    let host = take(&mut data, &["host", "hostname"])?;
    let title = take(&mut data, &["title", "message", "summary", "description"])?
        .unwrap_or_else(|| format!("{typ} {}", subject.as_deref().unwrap_or(&source)).into());
    let severity = match take(&mut data, &["severity"])? {
        Some(s) => Severity::parse(&s).unwrap_or(Severity::Info),
        None if kind == EventKind::Alert => Severity::Warning,
        None => Severity::Info,
    };
    let status = match take(&mut data, &["status"])? {
        Some(s) => Status::parse(&s).unwrap_or(Status::Resolved),
        None if kind == EventKind::Alert => Status::Firing,
        None => Status::Resolved,
    };
    let mut labels = vec![("ce_type".into(), typ), ("ce_source".into(), source.clone())];
    labels.extend(json::rest(data));
    labels.extend(
        json::rest(o)
            .into_iter()
            .filter(|(k, _)| k != "specversion" && k != "datacontenttype"),
    );
    Ok(EventRow {
        ts,
        kind,
        source,
        service,
        host,
        severity,
        status,
        title,
        fingerprint: Some(id),
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::ctx;
    use super::*;

    #[test]
    fn deploy_event() {
        let o = json::objects(
            br#"{"specversion":"1.0","type":"dev.cdevents.service.deployed.0.1.0","source":"argocd","id":"d-42",
                 "time":"2025-03-04T17:13:24.801Z","subject":"payments","data":{"version":"1.14.1","deploy_id":"argocd-payments-4353"}}"#,
        )
        .unwrap()
        .remove(0);
        let r = decode(o, &ctx()).unwrap();
        assert_eq!(r.kind, EventKind::Deploy);
        assert_eq!(r.service.as_deref(), Some("payments"));
        assert_eq!(r.fingerprint.as_deref(), Some("d-42"));
        assert!(r.labels.contains(&("deploy_id".into(), "argocd-payments-4353".into())));
        assert_eq!(r.status, Status::Resolved);
    }

    #[test]
    fn missing_required_attributes() {
        let o = json::objects(br#"{"specversion":"1.0","source":"x","id":"1"}"#)
            .unwrap()
            .remove(0);
        assert_eq!(decode(o, &ctx()), Err(DecodeError::Missing("type")));
    }
}
