//! What correlation consumes: alerts (from the events stream, SQL alert rules and,
//! later, model anomalies) and change events (deploys, config changes).

use arrow::array::{Array, AsArray, MapArray, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;

use crate::decode::{EventKind, Severity, Status};

/// One alert notification. Several notifications of one alert instance share a
/// fingerprint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    pub fingerprint: String,
    /// `alertmanager`, `pagerduty`, `rule:<name>`, ...
    pub source: String,
    pub service: Option<String>,
    pub host: Option<String>,
    pub severity: Severity,
    pub status: Status,
    pub title: String,
    pub ts: i64,
    pub labels: Vec<(String, String)>,
}

impl Alert {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A deploy or change: a candidate cause of what follows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub ts: i64,
    pub kind: EventKind,
    pub source: String,
    pub service: Option<String>,
    pub title: String,
    pub fingerprint: Option<String>,
    pub labels: Vec<(String, String)>,
}

/// What correlation takes from the events stream, in the order it arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Alert(Alert),
    Change(Change),
}

impl Input {
    pub fn ts(&self) -> i64 {
        match self {
            Input::Alert(a) => a.ts,
            Input::Change(c) => c.ts,
        }
    }
}

/// Reads alerts and changes out of an events batch (schema
/// [`crate::decode::schema::EVENTS_SCHEMA`]), in row order.
pub fn from_events(batch: &RecordBatch) -> Vec<Input> {
    let mut out = Vec::new();
    if batch.num_rows() == 0 {
        return out;
    }
    let s = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .cloned()
    };
    let (Some(kind), Some(source), Some(service), Some(host), Some(severity), Some(status), Some(title), Some(fp)) = (
        s("kind"),
        s("source"),
        s("service"),
        s("host"),
        s("severity"),
        s("status"),
        s("title"),
        s("fingerprint"),
    ) else {
        return out;
    };
    let Some(ts) = batch
        .column_by_name("ts")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
    else {
        return out;
    };
    let labels = batch.column_by_name("labels").and_then(|c| c.as_map_opt()).cloned();
    let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
    for i in 0..batch.num_rows() {
        let kind = EventKind::parse(kind.value(i));
        let labels = labels.as_ref().map(|m| map_row(m, i)).unwrap_or_default();
        match kind {
            EventKind::Alert => {
                let (Some(sev), Some(st)) = (Severity::parse(severity.value(i)), Status::parse(status.value(i))) else {
                    continue;
                };
                let service = opt(&service, i);
                let host = opt(&host, i);
                let src = source.value(i).to_string();
                let fingerprint = opt(&fp, i).unwrap_or_else(|| {
                    let name = labels
                        .iter()
                        .find(|(k, _)| k == "alertname")
                        .map_or(title.value(i), |(_, v)| v.as_str());
                    derived_fingerprint(&[
                        &src,
                        service.as_deref().unwrap_or(""),
                        host.as_deref().unwrap_or(""),
                        name,
                    ])
                });
                out.push(Input::Alert(Alert {
                    fingerprint,
                    source: src,
                    service,
                    host,
                    severity: sev,
                    status: st,
                    title: title.value(i).to_string(),
                    ts: ts.value(i),
                    labels,
                }));
            }
            // Deploys and changes, and maintenance announcements (which correlation
            // reads from the same place).
            _ if matches!(kind, EventKind::Deploy | EventKind::Change)
                || labels.iter().any(|(k, _)| k == "maintenance") =>
            {
                out.push(Input::Change(Change {
                    ts: ts.value(i),
                    kind,
                    source: source.value(i).to_string(),
                    service: opt(&service, i),
                    title: title.value(i).to_string(),
                    fingerprint: opt(&fp, i),
                    labels,
                }))
            }
            _ => {}
        }
    }
    out
}

/// The pairs of one row of a `Map<Utf8, Utf8>` column.
pub fn map_row(m: &MapArray, i: usize) -> Vec<(String, String)> {
    if m.is_null(i) {
        return Vec::new();
    }
    let entries = m.value(i);
    let (Some(k), Some(v)) = (
        entries.column(0).as_string_opt::<i32>(),
        entries.column(1).as_string_opt::<i32>(),
    ) else {
        return Vec::new();
    };
    (0..entries.len())
        .map(|j| {
            (
                k.value(j).to_string(),
                if v.is_null(j) {
                    String::new()
                } else {
                    v.value(j).to_string()
                },
            )
        })
        .collect()
}

/// A stable fingerprint from identifying parts (FNV-1a, 64 bits, hex).
pub fn derived_fingerprint(parts: &[&str]) -> String {
    format!("{:016x}", fnv1a(parts))
}

pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0x1f)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}
