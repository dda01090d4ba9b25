//! OpenTelemetry (OTLP) logs and metrics, as the Collector's Kafka exporter writes them:
//! `otlp_proto` (an `ExportLogsServiceRequest` / `ExportMetricsServiceRequest`, the same
//! bytes as `LogsData` / `MetricsData`) or `otlp_json` (the same messages in OTLP's JSON
//! mapping: camelCase names, 64-bit integers as strings, ids as hex).
//!
//! Mapping to the stream schemas: a log record's time is `timeUnixNano` (else
//! `observedTimeUnixNano`, else the Kafka timestamp); `service` is the resource's
//! `service.name`; `host` its `host.name` (else `k8s.pod.name`); `level` the severity
//! text, else the severity number's range (1–4 TRACE … 21–24 FATAL); `message` the body
//! (non-string bodies as JSON text); `trace_id` in hex; every other attribute, resource
//! ones prefixed `resource.`, in `attrs`. A gauge or sum data point is one metric sample
//! named as the metric, its attributes the labels; a histogram or summary gives
//! `NAME_count` and `NAME_sum` (and a summary one `NAME` sample per quantile, labelled
//! `quantile`).
//!
//! The messages below are the subset of opentelemetry-proto v1 that Lookout reads; prost
//! skips the fields it does not know, so newer senders decode too.

use prost::Message;
use serde_json::Value;

use super::schema::{Level, LogRow, MetricRow, Pairs, Text};
use super::{Context, DecodeError};

#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
        #[prost(message, tag = "6")]
        KvlistValue(super::KeyValueList),
        #[prost(bytes, tag = "7")]
        BytesValue(Vec<u8>),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LogsData {
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeLogs {
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LogRecord {
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    #[prost(fixed64, tag = "11")]
    pub observed_time_unix_nano: u64,
    #[prost(int32, tag = "2")]
    pub severity_number: i32,
    #[prost(string, tag = "3")]
    pub severity_text: String,
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
    #[prost(bytes, tag = "9")]
    pub trace_id: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MetricsData {
    #[prost(message, repeated, tag = "1")]
    pub resource_metrics: Vec<ResourceMetrics>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceMetrics {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_metrics: Vec<ScopeMetrics>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeMetrics {
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Metric {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(oneof = "metric::Data", tags = "5, 7, 9, 10, 11")]
    pub data: Option<metric::Data>,
}

pub mod metric {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        #[prost(message, tag = "5")]
        Gauge(super::Points),
        #[prost(message, tag = "7")]
        Sum(super::Points),
        #[prost(message, tag = "9")]
        Histogram(super::HistogramPoints),
        #[prost(message, tag = "10")]
        ExponentialHistogram(super::ExpHistogramPoints),
        #[prost(message, tag = "11")]
        Summary(super::SummaryPoints),
    }
}

/// A gauge's or a sum's data points.
#[derive(Clone, PartialEq, Message)]
pub struct Points {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NumberDataPoint {
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    #[prost(oneof = "number::Value", tags = "4, 6")]
    pub value: Option<number::Value>,
}

pub mod number {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(double, tag = "4")]
        AsDouble(f64),
        #[prost(sfixed64, tag = "6")]
        AsInt(i64),
    }
}

/// Histogram points: count and sum are read, not the buckets.
#[derive(Clone, PartialEq, Message)]
pub struct HistogramPoints {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<HistogramDataPoint>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HistogramDataPoint {
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    #[prost(double, optional, tag = "5")]
    pub sum: Option<f64>,
}

/// Exponential-histogram points: the same facts, the attributes under another tag.
#[derive(Clone, PartialEq, Message)]
pub struct ExpHistogramPoints {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<ExpHistogramDataPoint>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExpHistogramDataPoint {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    #[prost(double, optional, tag = "5")]
    pub sum: Option<f64>,
}

impl From<ExpHistogramPoints> for HistogramPoints {
    fn from(e: ExpHistogramPoints) -> HistogramPoints {
        HistogramPoints {
            data_points: e
                .data_points
                .into_iter()
                .map(|d| HistogramDataPoint {
                    attributes: d.attributes,
                    time_unix_nano: d.time_unix_nano,
                    count: d.count,
                    sum: d.sum,
                })
                .collect(),
        }
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct SummaryPoints {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<SummaryDataPoint>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SummaryDataPoint {
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    #[prost(double, tag = "5")]
    pub sum: f64,
    #[prost(message, repeated, tag = "6")]
    pub quantile_values: Vec<ValueAtQuantile>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueAtQuantile {
    #[prost(double, tag = "1")]
    pub quantile: f64,
    #[prost(double, tag = "2")]
    pub value: f64,
}

/// An attribute value as text (arrays and maps as JSON).
fn text(v: &AnyValue) -> String {
    json(v).as_str().map_or_else(|| json(v).to_string(), str::to_string)
}

fn json(v: &AnyValue) -> Value {
    use any_value::Value as V;
    match &v.value {
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::from(*i),
        Some(V::DoubleValue(d)) => Value::from(*d),
        Some(V::ArrayValue(a)) => Value::Array(a.values.iter().map(json).collect()),
        Some(V::KvlistValue(kv)) => Value::Object(
            kv.values
                .iter()
                .map(|k| (k.key.clone(), k.value.as_ref().map_or(Value::Null, json)))
                .collect(),
        ),
        Some(V::BytesValue(b)) => Value::String(hex(b)),
        None => Value::Null,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn pairs(kvs: &[KeyValue]) -> Pairs<'static> {
    kvs.iter()
        .map(|k| {
            (
                k.key.clone().into(),
                k.value.as_ref().map(text).unwrap_or_default().into(),
            )
        })
        .collect()
}

/// The resource's service and host, and its other attributes.
struct Origin {
    service: Option<Text<'static>>,
    host: Option<Text<'static>>,
    rest: Pairs<'static>,
}

fn origin(r: Option<&Resource>) -> Origin {
    let mut o = Origin {
        service: None,
        host: None,
        rest: Vec::new(),
    };
    for (k, v) in pairs(r.map_or(&[][..], |r| &r.attributes)) {
        match k.as_ref() {
            "service.name" => o.service = Some(v),
            "host.name" => o.host = Some(v),
            "k8s.pod.name" if o.host.is_none() => o.host = Some(v),
            _ => o.rest.push((format!("resource.{k}").into(), v)),
        }
    }
    o
}

fn nanos_to_ms(n: u64) -> Option<i64> {
    (n > 0).then_some((n / 1_000_000) as i64)
}

/// OTLP's severity numbers in ranges of four.
fn level(text: &str, number: i32) -> Level {
    if let Some(l) = Level::parse(text) {
        return l;
    }
    match number {
        1..=4 => Level::Trace,
        5..=8 => Level::Debug,
        13..=16 => Level::Warn,
        17..=20 => Level::Error,
        21..=24 => Level::Fatal,
        _ => Level::Info,
    }
}

pub fn logs(d: LogsData, ctx: &Context) -> Result<Vec<LogRow<'static>>, DecodeError> {
    let mut out = Vec::new();
    for rl in &d.resource_logs {
        let o = origin(rl.resource.as_ref());
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                let ts = match nanos_to_ms(r.time_unix_nano).or(nanos_to_ms(r.observed_time_unix_nano)) {
                    Some(t) => t,
                    None => ctx.fallback_ts()?,
                };
                let attrs = ctx.attrs(|| {
                    let mut attrs = pairs(&r.attributes);
                    attrs.extend(o.rest.iter().cloned());
                    attrs.sort();
                    attrs
                });
                out.push(LogRow {
                    ts,
                    service: o.service.clone().unwrap_or_else(|| ctx.default_service()),
                    host: o.host.clone(),
                    level: level(&r.severity_text, r.severity_number),
                    message: r.body.as_ref().map(text).unwrap_or_default().into(),
                    trace_id: (!r.trace_id.is_empty()).then(|| hex(&r.trace_id).into()),
                    attrs,
                });
            }
        }
    }
    if out.is_empty() {
        return Err(DecodeError::Invalid("OTLP logs request with no log records".into()));
    }
    Ok(out)
}

pub fn metrics(d: MetricsData, ctx: &Context) -> Result<Vec<MetricRow<'static>>, DecodeError> {
    let mut out = Vec::new();
    for rm in d.resource_metrics {
        let o = origin(rm.resource.as_ref());
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                let mut push =
                    |name: String, value: f64, ts: u64, attrs: &[KeyValue], extra: Option<(&str, String)>| {
                        let ts = match nanos_to_ms(ts) {
                            Some(t) => t,
                            None => ctx.fallback_ts()?,
                        };
                        let mut labels = pairs(attrs);
                        labels.extend(extra.map(|(k, v)| (k.to_string().into(), v.into())));
                        labels.sort();
                        out.push(MetricRow {
                            ts,
                            name: name.into(),
                            value,
                            service: o.service.clone(),
                            host: o.host.clone(),
                            labels,
                        });
                        Ok::<(), DecodeError>(())
                    };
                use metric::Data;
                // an exponential histogram is read as a histogram: count and sum
                let data = match m.data {
                    Some(Data::ExponentialHistogram(e)) => Some(Data::Histogram(e.into())),
                    other => other,
                };
                match &data {
                    Some(Data::Gauge(p) | Data::Sum(p)) => {
                        for dp in &p.data_points {
                            let v = match dp.value {
                                Some(number::Value::AsDouble(d)) => d,
                                Some(number::Value::AsInt(i)) => i as f64,
                                None => continue,
                            };
                            push(m.name.clone(), v, dp.time_unix_nano, &dp.attributes, None)?;
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for dp in &h.data_points {
                            push(
                                format!("{}_count", m.name),
                                dp.count as f64,
                                dp.time_unix_nano,
                                &dp.attributes,
                                None,
                            )?;
                            if let Some(sum) = dp.sum {
                                push(format!("{}_sum", m.name), sum, dp.time_unix_nano, &dp.attributes, None)?;
                            }
                        }
                    }
                    Some(Data::Summary(s)) => {
                        for dp in &s.data_points {
                            push(
                                format!("{}_count", m.name),
                                dp.count as f64,
                                dp.time_unix_nano,
                                &dp.attributes,
                                None,
                            )?;
                            push(
                                format!("{}_sum", m.name),
                                dp.sum,
                                dp.time_unix_nano,
                                &dp.attributes,
                                None,
                            )?;
                            for q in &dp.quantile_values {
                                push(
                                    m.name.clone(),
                                    q.value,
                                    dp.time_unix_nano,
                                    &dp.attributes,
                                    Some(("quantile", q.quantile.to_string())),
                                )?;
                            }
                        }
                    }
                    // exponential histograms were turned into histograms above
                    Some(Data::ExponentialHistogram(_)) | None => {}
                }
            }
        }
    }
    if out.is_empty() {
        return Err(DecodeError::Invalid("OTLP metrics request with no data points".into()));
    }
    Ok(out)
}

pub fn decode_logs(p: &[u8]) -> Result<LogsData, DecodeError> {
    LogsData::decode(p).map_err(|e| DecodeError::Invalid(format!("OTLP protobuf logs: {e}")))
}

pub fn decode_metrics(p: &[u8]) -> Result<MetricsData, DecodeError> {
    MetricsData::decode(p).map_err(|e| DecodeError::Invalid(format!("OTLP protobuf metrics: {e}")))
}

/// Whether a JSON payload is an OTLP JSON request of this kind: an object whose first
/// key is `key` (quoted), as the Collector writes it.
pub fn is_json(p: &[u8], key: &str) -> bool {
    let Some(rest) = p.strip_prefix(b"{") else {
        return false;
    };
    let first = rest.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(rest.len());
    p.len() < 1 << 20 && rest[first..].starts_with(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tests::record;
    use crate::decode::{DecodeConfig, Decoder, Stream};

    /// The OTLP JSON example of the specification, trimmed: one resource, one record.
    const LOGS_JSON: &str = r#"{"resourceLogs":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"my.service"}},
        {"key":"host.name","value":{"stringValue":"node-7"}},
        {"key":"cloud.region","value":{"stringValue":"eu-west-1"}}]},
      "scopeLogs":[{"scope":{"name":"my.library","version":"1.0.0"},"logRecords":[{
        "timeUnixNano":"1544712660300000000","observedTimeUnixNano":"1544712660300000000",
        "severityNumber":17,"severityText":"","traceId":"5b8efff798038103d269b633813fc60c",
        "body":{"stringValue":"Example log record"},
        "attributes":[{"key":"int.attribute","value":{"intValue":"10"}},
                      {"key":"array.attribute","value":{"arrayValue":{"values":[{"stringValue":"many"},{"stringValue":"values"}]}}}]}]}]}]}"#;

    const METRICS_JSON: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"api"}}]},
      "scopeMetrics":[{"metrics":[
        {"name":"requests","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[
            {"asInt":"42","timeUnixNano":"1544712660300000000","attributes":[{"key":"code","value":{"stringValue":"500"}}]}]}},
        {"name":"latency","histogram":{"dataPoints":[{"count":"3","sum":12.5,"timeUnixNano":"1544712660300000000"}]}},
        {"name":"rpc","summary":{"dataPoints":[{"count":"2","sum":4,"timeUnixNano":"1544712660300000000",
            "quantileValues":[{"quantile":0.99,"value":3.5}]}]}}]}]}]}"#;

    #[test]
    fn otlp_json_logs_map_to_the_logs_schema() {
        let d = Decoder::new(DecodeConfig::default());
        let records = [record(Stream::Logs, LOGS_JSON.as_bytes())];
        let (rows, dead) = d.decode_rows(&records);
        assert!(dead.is_empty(), "{dead:?}");
        let r = &rows.logs[0];
        assert_eq!(r.ts, 1_544_712_660_300);
        assert_eq!((r.service.as_ref(), r.host.as_deref()), ("my.service", Some("node-7")));
        assert_eq!(r.level, Level::Error, "severity number 17");
        assert_eq!(r.message, "Example log record");
        assert_eq!(r.trace_id.as_deref(), Some("5b8efff798038103d269b633813fc60c"));
        assert!(r.attrs.contains(&("int.attribute".into(), "10".into())));
        assert!(r
            .attrs
            .contains(&("array.attribute".into(), "[\"many\",\"values\"]".into())));
        assert!(r.attrs.contains(&("resource.cloud.region".into(), "eu-west-1".into())));
    }

    /// With `auto`, OTLP JSON is an object whose first key is `resourceLogs`; a JSON log
    /// that merely mentions the word is a plain JSON log.
    #[test]
    fn otlp_json_is_recognised_by_its_first_key() {
        let key = "\"resourceLogs\"";
        assert!(is_json(LOGS_JSON.as_bytes(), key));
        assert!(is_json(b"{ \n\t\"resourceLogs\":[]}", key));
        assert!(!is_json(b"{\"msg\":\"\\\"resourceLogs\\\" is empty\"}", key));
        assert!(!is_json(b"[{\"resourceLogs\":[]}]", key));
        let d = Decoder::new(DecodeConfig::default());
        let records = [record(Stream::Logs, br#"{"msg":"\"resourceLogs\" is empty","ts":1}"#)];
        let (rows, dead) = d.decode_rows(&records);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(rows.logs[0].message, "\"resourceLogs\" is empty");
    }

    #[test]
    fn otlp_json_metrics_give_samples_per_point() {
        let d = Decoder::new(DecodeConfig::default());
        let records = [record(Stream::Metrics, METRICS_JSON.as_bytes())];
        let (rows, dead) = d.decode_rows(&records);
        assert!(dead.is_empty(), "{dead:?}");
        let got: Vec<(&str, f64)> = rows.metrics.iter().map(|m| (m.name.as_ref(), m.value)).collect();
        assert_eq!(
            got,
            vec![
                ("requests", 42.0),
                ("latency_count", 3.0),
                ("latency_sum", 12.5),
                ("rpc_count", 2.0),
                ("rpc_sum", 4.0),
                ("rpc", 3.5)
            ]
        );
        assert_eq!(rows.metrics[0].labels, vec![("code".into(), "500".into())]);
        assert_eq!(rows.metrics[0].service.as_deref(), Some("api"));
        assert!(rows.metrics[5].labels.contains(&("quantile".into(), "0.99".into())));
    }

    #[test]
    fn an_exponential_histogram_gives_count_and_sum() {
        let req = MetricsData {
            resource_metrics: vec![ResourceMetrics {
                resource: None,
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "rpc_ms".into(),
                        data: Some(metric::Data::ExponentialHistogram(ExpHistogramPoints {
                            data_points: vec![ExpHistogramDataPoint {
                                attributes: vec![KeyValue {
                                    key: "route".into(),
                                    value: Some(AnyValue {
                                        value: Some(any_value::Value::StringValue("/pay".into())),
                                    }),
                                }],
                                time_unix_nano: 1_544_712_660_300_000_000,
                                count: 7,
                                sum: Some(21.0),
                            }],
                        })),
                    }],
                }],
            }],
        };
        let d = Decoder::new(DecodeConfig::default());
        let records = [record(Stream::Metrics, &req.encode_to_vec())];
        let (rows, dead) = d.decode_rows(&records);
        assert!(dead.is_empty(), "{dead:?}");
        let got: Vec<(&str, f64)> = rows.metrics.iter().map(|m| (m.name.as_ref(), m.value)).collect();
        assert_eq!(got, vec![("rpc_ms_count", 7.0), ("rpc_ms_sum", 21.0)]);
        assert_eq!(rows.metrics[0].labels, vec![("route".into(), "/pay".into())]);
    }

    #[test]
    fn protobuf_is_recognised_and_text_is_not_taken_for_it() {
        let req = crate::decode::otlp_json::logs(LOGS_JSON.as_bytes()).unwrap();
        let bytes = req.encode_to_vec();
        assert_eq!(bytes[0], 0x0a, "field 1, length-delimited");
        let d = Decoder::new(DecodeConfig::default());
        let records = [record(Stream::Logs, &bytes)];
        let (rows, dead) = d.decode_rows(&records);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(rows.logs[0].message, "Example log record");
        // a text line that starts with a newline is still text
        let records = [record(Stream::Logs, b"\nlevel=error msg=boom service=a")];
        let (rows, dead) = d.decode_rows(&records);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(rows.logs[0].message, "boom");
        // a truncated request is a dead letter with the reason, when the stream says otlp
        let mut cfg = DecodeConfig::default();
        cfg.logs.encoding = crate::decode::Encoding::Otlp;
        let (_, dead) = Decoder::new(cfg).decode_rows(&[record(Stream::Logs, &bytes[..bytes.len() / 2])]);
        assert!(dead[0].error.contains("OTLP protobuf"), "{:?}", dead[0]);
    }
}
