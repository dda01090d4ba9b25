//! OTLP JSON (the Collector's `otlp_json`) into the protobuf messages of [`super::otlp`]:
//! camelCase names, 64-bit integers as strings or numbers, ids in hex, enums as numbers.

use serde_json::Value;

use super::otlp::*;
use super::DecodeError;

fn err(what: &str) -> DecodeError {
    DecodeError::Invalid(format!("OTLP JSON: {what}"))
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn u64_of(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn f64_of(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn any(v: &Value) -> AnyValue {
    use any_value::Value as V;
    let value = if let Some(s) = v.get("stringValue").and_then(Value::as_str) {
        Some(V::StringValue(s.to_string()))
    } else if let Some(b) = v.get("boolValue").and_then(Value::as_bool) {
        Some(V::BoolValue(b))
    } else if let Some(i) = v.get("intValue") {
        Some(V::IntValue(u64_of(i) as i64))
    } else if let Some(d) = v.get("doubleValue").and_then(f64_of) {
        Some(V::DoubleValue(d))
    } else if let Some(a) = v.get("arrayValue") {
        Some(V::ArrayValue(ArrayValue {
            values: list(a, "values").iter().map(any).collect(),
        }))
    } else if let Some(kv) = v.get("kvlistValue") {
        Some(V::KvlistValue(KeyValueList {
            values: attrs(kv, "values"),
        }))
    } else {
        v.get("bytesValue")
            .and_then(Value::as_str)
            .map(|s| V::StringValue(s.to_string()))
    };
    AnyValue { value }
}

fn attrs(v: &Value, key: &str) -> Vec<KeyValue> {
    list(v, key)
        .iter()
        .map(|kv| KeyValue {
            key: kv.get("key").and_then(Value::as_str).unwrap_or_default().to_string(),
            value: kv.get("value").map(any),
        })
        .collect()
}

fn resource(v: &Value) -> Option<Resource> {
    v.get("resource").map(|r| Resource {
        attributes: attrs(r, "attributes"),
    })
}

/// Hex ids: as bytes, so that the mapping is the protobuf one.
fn id(v: Option<&Value>) -> Vec<u8> {
    let s = v.and_then(Value::as_str).unwrap_or_default();
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

pub fn logs(p: &[u8]) -> Result<LogsData, DecodeError> {
    let v: Value = serde_json::from_slice(p).map_err(|e| DecodeError::Json(e.to_string()))?;
    let rl = v.get("resourceLogs").ok_or_else(|| err("no resourceLogs"))?;
    let resource_logs = rl
        .as_array()
        .ok_or_else(|| err("resourceLogs is not an array"))?
        .iter()
        .map(|r| ResourceLogs {
            resource: resource(r),
            scope_logs: list(r, "scopeLogs")
                .iter()
                .map(|s| ScopeLogs {
                    log_records: list(s, "logRecords")
                        .iter()
                        .map(|l| LogRecord {
                            time_unix_nano: l.get("timeUnixNano").map_or(0, u64_of),
                            observed_time_unix_nano: l.get("observedTimeUnixNano").map_or(0, u64_of),
                            severity_number: l.get("severityNumber").map_or(0, u64_of) as i32,
                            severity_text: l
                                .get("severityText")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                            body: l.get("body").map(any),
                            attributes: attrs(l, "attributes"),
                            trace_id: id(l.get("traceId")),
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Ok(LogsData { resource_logs })
}

fn number_points(v: &Value) -> Points {
    Points {
        data_points: list(v, "dataPoints")
            .iter()
            .map(|d| NumberDataPoint {
                attributes: attrs(d, "attributes"),
                time_unix_nano: d.get("timeUnixNano").map_or(0, u64_of),
                value: d
                    .get("asDouble")
                    .and_then(f64_of)
                    .map(number::Value::AsDouble)
                    .or_else(|| d.get("asInt").map(|i| number::Value::AsInt(u64_of(i) as i64))),
            })
            .collect(),
    }
}

fn histogram_points(v: &Value) -> HistogramPoints {
    HistogramPoints {
        data_points: list(v, "dataPoints")
            .iter()
            .map(|d| HistogramDataPoint {
                attributes: attrs(d, "attributes"),
                time_unix_nano: d.get("timeUnixNano").map_or(0, u64_of),
                count: d.get("count").map_or(0, u64_of),
                sum: d.get("sum").and_then(f64_of),
            })
            .collect(),
    }
}

fn summary_points(v: &Value) -> SummaryPoints {
    SummaryPoints {
        data_points: list(v, "dataPoints")
            .iter()
            .map(|d| SummaryDataPoint {
                attributes: attrs(d, "attributes"),
                time_unix_nano: d.get("timeUnixNano").map_or(0, u64_of),
                count: d.get("count").map_or(0, u64_of),
                sum: d.get("sum").and_then(f64_of).unwrap_or(0.0),
                quantile_values: list(d, "quantileValues")
                    .iter()
                    .map(|q| ValueAtQuantile {
                        quantile: q.get("quantile").and_then(f64_of).unwrap_or(0.0),
                        value: q.get("value").and_then(f64_of).unwrap_or(0.0),
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub fn metrics(p: &[u8]) -> Result<MetricsData, DecodeError> {
    let v: Value = serde_json::from_slice(p).map_err(|e| DecodeError::Json(e.to_string()))?;
    let rm = v.get("resourceMetrics").ok_or_else(|| err("no resourceMetrics"))?;
    let resource_metrics = rm
        .as_array()
        .ok_or_else(|| err("resourceMetrics is not an array"))?
        .iter()
        .map(|r| ResourceMetrics {
            resource: resource(r),
            scope_metrics: list(r, "scopeMetrics")
                .iter()
                .map(|s| ScopeMetrics {
                    metrics: list(s, "metrics")
                        .iter()
                        .map(|m| {
                            use metric::Data;
                            let data = if let Some(g) = m.get("gauge") {
                                Some(Data::Gauge(number_points(g)))
                            } else if let Some(s) = m.get("sum") {
                                Some(Data::Sum(number_points(s)))
                            } else if let Some(h) = m.get("histogram") {
                                Some(Data::Histogram(histogram_points(h)))
                            } else if let Some(h) = m.get("exponentialHistogram") {
                                Some(Data::Histogram(histogram_points(h)))
                            } else {
                                m.get("summary").map(|s| Data::Summary(summary_points(s)))
                            };
                            Metric {
                                name: m.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                                data,
                            }
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Ok(MetricsData { resource_metrics })
}
