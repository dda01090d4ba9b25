//! What the rows of SQL files become: alerts (rules) and series points (signals).

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::util::display::array_value_to_string;

use super::{SignalPoint, SqlFile};
use crate::correlate::alert::derived_fingerprint;
use crate::correlate::Alert;
use crate::decode::{Severity, Status};
use crate::model::{Direction, Role};

/// `{column}` in an alert title.
pub(super) static TITLE_FIELD: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"\{([A-Za-z_][A-Za-z0-9_]*)\}").expect("static regex"));

pub(super) fn rows_to_alerts(f: &SqlFile, b: &RecordBatch, watermark: i64) -> Vec<Alert> {
    let schema = b.schema();
    let text_col = |name: &str| -> Option<ArrayRef> {
        let c = b.column_by_name(name)?;
        arrow::compute::cast(c, &DataType::Utf8).ok()
    };
    let ts = b
        .column_by_name("ts")
        .and_then(|c| arrow::compute::cast(c, &DataType::Timestamp(TimeUnit::Millisecond, None)).ok());
    let service = text_col("service");
    let host = text_col("host");
    let severity = text_col("severity");
    let keys: Vec<String> = match &f.header.keys {
        Some(k) => k.clone(),
        None => ["service", "host"]
            .iter()
            .filter(|k| schema.field_with_name(k).is_ok())
            .map(|k| k.to_string())
            .collect(),
    };
    let get = |c: &Option<ArrayRef>, i: usize| -> Option<String> {
        let a = c.as_ref()?.as_string_opt::<i32>()?;
        (!a.is_null(i)).then(|| a.value(i).to_string())
    };
    let value = |name: &str, i: usize| -> String {
        b.column_by_name(name)
            .and_then(|c| array_value_to_string(c, i).ok())
            .unwrap_or_default()
    };
    let title_re = &*TITLE_FIELD;
    (0..b.num_rows())
        .map(|i| {
            let t = ts
                .as_ref()
                .and_then(|c| {
                    c.as_primitive_opt::<arrow::datatypes::TimestampMillisecondType>()
                        .filter(|a| !a.is_null(i))
                        .map(|a| a.value(i))
                })
                .unwrap_or(watermark);
            let title = match &f.header.title {
                Some(tpl) => title_re
                    .replace_all(tpl, |c: &regex::Captures| value(&c[1], i))
                    .into_owned(),
                None => format!(
                    "{} on {}",
                    f.name,
                    get(&service, i).unwrap_or_else(|| "unknown service".into())
                ),
            };
            let mut parts: Vec<String> = vec![format!("rule:{}", f.name)];
            parts.extend(keys.iter().map(|k| value(k, i)));
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let labels: Vec<(String, String)> = schema
                .fields()
                .iter()
                .map(|f| f.name())
                .filter(|n| !matches!(n.as_str(), "ts" | "service" | "host" | "severity"))
                .map(|n| (n.clone(), value(n, i)))
                .chain(std::iter::once(("rule".to_string(), f.name.clone())))
                .collect();
            Alert {
                fingerprint: derived_fingerprint(&refs),
                source: format!("rule:{}", f.name),
                service: get(&service, i),
                host: get(&host, i),
                severity: get(&severity, i)
                    .and_then(|s| Severity::parse(&s))
                    .or(f.header.severity)
                    .unwrap_or(Severity::Warning),
                status: Status::Firing,
                title,
                ts: t,
                labels,
            }
        })
        .collect()
}

/// Each numeric column of a signal's row is a point of the series named by the file,
/// the column and the row's text columns (service and host are the series' own). The
/// point's time is the row's first timestamp column (the window start, when selected),
/// else the window's end.
pub(super) fn rows_to_points(f: &SqlFile, b: &RecordBatch, end: i64) -> Vec<SignalPoint> {
    let schema = b.schema();
    let mut texts = Vec::new();
    let mut numbers = Vec::new();
    let mut time = None;
    for (i, field) in schema.fields().iter().enumerate() {
        let c = b.column(i);
        match field.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                if let Ok(c) = arrow::compute::cast(c, &DataType::Utf8) {
                    texts.push((field.name().as_str(), c));
                }
            }
            DataType::Timestamp(_, _) if time.is_none() => {
                time = arrow::compute::cast(c, &DataType::Timestamp(TimeUnit::Millisecond, None)).ok();
            }
            t if t.is_numeric() => {
                if let Ok(c) = arrow::compute::cast(c, &DataType::Float64) {
                    numbers.push((field.name().as_str(), c));
                }
            }
            _ => {}
        }
    }
    let direction = f.header.direction.unwrap_or(Direction::Up);
    let role = f.header.role.unwrap_or(Role::Symptom);
    let mut out = Vec::new();
    for i in 0..b.num_rows() {
        let text = |name: &str| {
            texts
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, c)| {
                    let a = c.as_string::<i32>();
                    (!a.is_null(i)).then(|| a.value(i).to_string())
                })
                .unwrap_or_default()
        };
        let others: Vec<String> = texts
            .iter()
            .filter(|(n, _)| !matches!(*n, "service" | "host"))
            .map(|(n, c)| {
                let a = c.as_string::<i32>();
                format!("{n}={}", if a.is_null(i) { "" } else { a.value(i) })
            })
            .collect();
        let ts = time
            .as_ref()
            .map(|c| c.as_primitive::<arrow::datatypes::TimestampMillisecondType>())
            .filter(|c| !c.is_null(i))
            .map_or(end, |c| c.value(i));
        for (name, c) in &numbers {
            let v = c.as_primitive::<arrow::datatypes::Float64Type>();
            if v.is_null(i) || !v.value(i).is_finite() {
                continue;
            }
            let mut series = if *name == f.name {
                f.name.clone()
            } else {
                format!("{}.{name}", f.name)
            };
            if !others.is_empty() {
                series.push_str(&format!("{{{}}}", others.join(",")));
            }
            out.push(SignalPoint {
                series,
                service: text("service"),
                host: text("host"),
                ts,
                value: v.value(i),
                direction,
                role,
            });
        }
    }
    out
}
