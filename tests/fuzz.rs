//! Fuzzing (issue 8, scenario 10): every decoder and the pipeline-file parser take
//! mutated inputs under proptest without a panic, and answer each with rows or a dead
//! letter (decoders) or an error that names its file (parsers).
//!
//! Inputs are valid seeds of every encoding (the scenario's records, the specification
//! examples of OTLP, Alertmanager, PagerDuty and CloudEvents, the pipelines/ files) with
//! up to eight edits each: bit flips, inserted bytes, deleted or repeated runs, cuts,
//! splices with another seed, and tokens that decoders trip on (deep nesting, huge
//! numbers, lone surrogates, NUL, invalid UTF-8). Each decoder also takes every other
//! stream's seeds. `LOOKOUT_FUZZ_CASES` sets the inputs per target (default 3,000; the
//! long runs in the README's Reliability section set 200,000 and 300,000). A failing input's seed is
//! written by proptest to `tests/fuzz.proptest-regressions` and replayed first on every
//! run (commit it with the fix); each finding is also kept as a named test of the module
//! it is in.

use std::path::Path;

use lookout::decode::{DecodeConfig, Decoder, Encoding, LineFormat, Stream, StreamDecoding};
use lookout::source::{RawRecord, RecordMeta};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use prost::Message as _;

fn cases(default: u32) -> u32 {
    std::env::var("LOOKOUT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fuzz.proptest-regressions"
        )))),
        // shrinking a finding is worth a few seconds, not minutes
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// One edit of an input. Positions are taken modulo the input's length.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Repeat(usize, usize, u8),
    Cut(usize),
    Token(usize, usize),
    Splice(usize, usize, usize),
}

/// What decoders and parsers trip on.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"\\uDFFF",
    b":",
    b",",
    b"=",
    b" ",
    b"\n",
    b"\r\n",
    b"\t",
    b"\0",
    b"\xff\xfe",
    b"\xc3",
    "é€😀".as_bytes(),
    b"1e999",
    b"-1e999",
    b"-0",
    b"NaN",
    b"Infinity",
    b"null",
    b"true",
    b"0x10",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"99999999999999999999999999",
    b"0.000000000000000000000000001",
    b"\"ts\":",
    b"\"2025-13-45T99:99:99Z\"",
    b"\"+275760-09-13T00:00:00Z\"",
    b"1741106004",
    b"-62135596800000",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":",
    b"<Content>",
    b"<",
    b">",
    b"(?P<x>",
    b"--!",
    b"kind = \"alert\"",
    b"'",
    b"SELECT",
    b"WINDOW",
    b"/*",
];

fn edit(seeds: usize) -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Flip(p, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(p, b)| Edit::Insert(p, b)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Edit::Delete(p, n)),
        (any::<usize>(), 1usize..32, 1u8..16).prop_map(|(p, n, k)| Edit::Repeat(p, n, k)),
        any::<usize>().prop_map(Edit::Cut),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(p, t)| Edit::Token(p, t)),
        (0..seeds, any::<usize>(), any::<usize>()).prop_map(|(s, a, b)| Edit::Splice(s, a, b)),
    ]
}

fn mutate(seeds: &[Vec<u8>], seed: usize, edits: &[Edit]) -> Vec<u8> {
    let mut v = seeds[seed].clone();
    let at = |p: usize, v: &Vec<u8>| p % (v.len() + 1);
    for e in edits {
        match e {
            Edit::Flip(p, b) if !v.is_empty() => {
                let i = p % v.len();
                v[i] ^= b | 1;
            }
            Edit::Flip(..) => {}
            Edit::Insert(p, b) => {
                let i = at(*p, &v);
                v.splice(i..i, b.iter().copied());
            }
            Edit::Delete(p, n) => {
                let i = at(*p, &v);
                let end = (i + n).min(v.len());
                v.drain(i..end);
            }
            Edit::Repeat(p, n, k) => {
                let i = at(*p, &v);
                let end = (i + n).min(v.len());
                let run = v[i..end].to_vec();
                for _ in 0..*k {
                    v.splice(end..end, run.iter().copied());
                }
            }
            Edit::Cut(p) => {
                let i = at(*p, &v);
                v.truncate(i);
            }
            Edit::Token(p, t) => {
                let i = at(*p, &v);
                v.splice(i..i, TOKENS[*t].iter().copied());
            }
            Edit::Splice(s, a, b) => {
                let other = &seeds[*s];
                let from = a % (other.len() + 1);
                let i = at(*b, &v);
                v.truncate(i);
                v.extend_from_slice(&other[from..]);
            }
        }
    }
    v
}

fn input(seeds: &[Vec<u8>]) -> impl Strategy<Value = (usize, Vec<Edit>)> {
    (0..seeds.len(), prop::collection::vec(edit(seeds.len()), 0..8))
}

// ---- decoders ----

const LOG_JSON: &str = r#"{"ts":"2025-03-04T00:00:03.356Z","service":"api-gateway","host":"api-gateway-3","level":"INFO","message":"10.60.34.188 - - \"GET /api/v1/products/45021 HTTP/1.1\" 204 9555 37ms upstream=auth","trace_id":"1e491ff1eb8ca2ecd16ad1f7e0a8b213","caller":"client/upstream.go:398"}"#;
const LOG_JSON_ARRAY: &str = r#"[{"@timestamp":1741106004801,"service.name":"cart","hostname":"h1","lvl":"warning","msg":"hi","thread":"t-1","n":3},{"ts":"2025-03-04T00:00:00Z","service":{"name":"a","version":"1"},"body":"x"}]"#;
const LOGFMT: &str =
    r#"time=2025-03-04T00:00:00Z level=error app=cart msg="payment \"declined\" for order 7" attempt=2 flag"#;
const LINE: &str = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating";
const LINE_FORMAT: &str = "<Date> <Time> <Pid> <Level> <Component>: <Content>";
const OTLP_LOGS_JSON: &str = r#"{"resourceLogs":[{"resource":{"attributes":[
    {"key":"service.name","value":{"stringValue":"my.service"}},
    {"key":"host.name","value":{"stringValue":"node-7"}}]},
  "scopeLogs":[{"scope":{"name":"my.library","version":"1.0.0"},"logRecords":[{
    "timeUnixNano":"1544712660300000000","observedTimeUnixNano":"1544712660300000000",
    "severityNumber":17,"severityText":"","traceId":"5b8efff798038103d269b633813fc60c",
    "body":{"stringValue":"Example log record"},
    "attributes":[{"key":"int.attribute","value":{"intValue":"10"}},
      {"key":"kv","value":{"kvlistValue":{"values":[{"key":"a","value":{"doubleValue":1.5}}]}}},
      {"key":"array.attribute","value":{"arrayValue":{"values":[{"stringValue":"many"},{"boolValue":true}]}}}]}]}]}]}"#;

const METRIC_JSON: &str =
    r#"{"ts":"2025-03-04T00:00:00.002Z","name":"cpu_usage","value":0.475,"labels":{"service":"cart","host":"cart-1"}}"#;
const INFLUX: &str = r#"disk\ io,path=/var\,log,service=db used=0.93,ok=true,msg="a b",n=3i 1741106004000000000"#;
const PROMETHEUS: &str = "# TYPE http_requests_total counter\nhttp_requests_total{service=\"cart\",code=\"500\",path=\"a\\\"b,c\"} 1027 1741106004000\nlatency_seconds{quantile=\"0.99\"} 3.5e-2";
const OTLP_METRICS_JSON: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[
    {"key":"service.name","value":{"stringValue":"api"}}]},
  "scopeMetrics":[{"metrics":[
    {"name":"requests","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[
        {"asInt":"42","timeUnixNano":"1544712660300000000","attributes":[{"key":"code","value":{"stringValue":"500"}}]}]}},
    {"name":"temp","gauge":{"dataPoints":[{"asDouble":21.5,"timeUnixNano":"1544712660300000000"}]}},
    {"name":"latency","histogram":{"dataPoints":[{"count":"3","sum":12.5,"timeUnixNano":"1544712660300000000"}]}},
    {"name":"size","exponentialHistogram":{"dataPoints":[{"count":"2","sum":8,"timeUnixNano":"1544712660300000000"}]}},
    {"name":"rpc","summary":{"dataPoints":[{"count":"2","sum":4,"timeUnixNano":"1544712660300000000",
        "quantileValues":[{"quantile":0.99,"value":3.5}]}]}}]}]}]}"#;

const EVENT_JSON: &str = r#"{"ts":"2025-03-04T02:52:52.250Z","kind":"change","source":"terraform","service":"notification-worker","host":null,"severity":"info","status":"resolved","title":"terraform apply: 4 to change in module.notification_worker","fingerprint":"change-d3a0e62e3949","labels":{"change_id":"chg-1596a771","author":"cperez","team":"messaging","workspace":"prod"}}"#;
const ALERT_JSON: &str = r#"{"ts":"2025-03-04T03:07:04.732Z","kind":"alert","source":"prometheus","service":"cart","host":"cart-1","severity":"critical","status":"firing","title":"HighErrorRate","fingerprint":"a1b2","labels":{"alertname":"HighErrorRate"}}"#;
const ALERTMANAGER: &str = r#"{"version":"4","receiver":"lookout","status":"firing","groupKey":"{}","alerts":[
  {"status":"firing","labels":{"alertname":"HighCPU","severity":"critical","job":"cart","instance":"cart-1:9100"},
   "annotations":{"summary":"CPU high"},"startsAt":"2025-03-04T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f1"},
  {"status":"resolved","labels":{"alertname":"DiskFull","job":"db"},"annotations":{},
   "startsAt":"2025-03-04T00:00:00Z","endsAt":"2025-03-04T01:00:00Z","fingerprint":"f2"}]}"#;
const PAGERDUTY: &str = r#"{"routing_key":"k","event_action":"trigger","dedup_key":"d1","payload":{"summary":"DB down","source":"db-1","severity":"critical","component":"postgres","timestamp":"2025-03-04T00:00:00Z","custom_details":{"a":1}}}"#;
const CLOUDEVENT: &str = r#"{"specversion":"1.0","type":"dev.cdevents.service.deployed.0.1.0","source":"argocd","id":"d-42","time":"2025-03-04T00:00:00Z","subject":"cart","data":{"subject":{"content":{"artifactId":"pkg:oci/cart@sha256:1","environment":{"id":"prod"}}}}}"#;

fn seeds(stream: Stream) -> Vec<Vec<u8>> {
    let text = |s: &str| s.as_bytes().to_vec();
    match stream {
        Stream::Logs => {
            let otlp = lookout::decode::otlp_json::logs(OTLP_LOGS_JSON.as_bytes()).expect("valid OTLP JSON");
            vec![
                text(LOG_JSON),
                text(LOG_JSON_ARRAY),
                text(LOGFMT),
                text(LINE),
                text(OTLP_LOGS_JSON),
                otlp.encode_to_vec(),
            ]
        }
        Stream::Metrics => {
            let otlp = lookout::decode::otlp_json::metrics(OTLP_METRICS_JSON.as_bytes()).expect("valid OTLP JSON");
            vec![
                text(METRIC_JSON),
                text(INFLUX),
                text(PROMETHEUS),
                text(OTLP_METRICS_JSON),
                otlp.encode_to_vec(),
            ]
        }
        Stream::Events => vec![
            text(EVENT_JSON),
            text(ALERT_JSON),
            text(ALERTMANAGER),
            text(PAGERDUTY),
            text(CLOUDEVENT),
        ],
    }
}

/// Every encoding a stream can carry.
fn encodings(stream: Stream) -> Vec<Encoding> {
    Encoding::ALL.into_iter().filter(|e| e.allowed(stream)).collect()
}

fn decoder(stream: Stream, encoding: Encoding) -> Decoder {
    let s = StreamDecoding {
        encoding,
        line_format: Some(LineFormat::parse(LINE_FORMAT).expect("valid format")),
        default_service: None,
        skip_attrs: false,
    };
    let mut cfg = DecodeConfig::default();
    match stream {
        Stream::Logs => cfg.logs = s,
        Stream::Metrics => cfg.metrics = s,
        Stream::Events => cfg.events = s,
    }
    Decoder::new(cfg)
}

fn record(stream: Stream, payload: Vec<u8>, offset: i64) -> RawRecord {
    RawRecord {
        stream,
        payload,
        meta: RecordMeta {
            topic: stream.name().to_string(),
            offset,
            kafka_ts: Some(1_741_046_400_000),
            ..Default::default()
        },
    }
}

/// Each input either gives rows or becomes the one dead letter, which keeps its bytes.
fn check_decoder(d: &Decoder, stream: Stream, good: &[u8], input: Vec<u8>) -> Result<(), TestCaseError> {
    // the input beside a valid record: a bad one must not take the batch down
    let records = [record(stream, input.clone(), 1), record(stream, good.to_vec(), 2)];
    let out = d
        .decode(&records)
        .map_err(|e| TestCaseError::fail(format!("the batch failed: {e}")))?;
    prop_assert!(out.dead_letters.len() <= 1, "{:?}", out.dead_letters);
    if let Some(dead) = out.dead_letters.first() {
        prop_assert_eq!(dead.meta.offset, 1, "only the mutated record may fail");
        prop_assert!(!dead.error.is_empty());
        prop_assert_eq!(&dead.payload[..], &input[..dead.payload.len()]);
        prop_assert_eq!(dead.original_len, input.len());
    }
    let rows = out.logs.num_rows() + out.metrics.num_rows() + out.events.num_rows();
    prop_assert!(rows >= 1, "the valid record's rows are there");
    Ok(())
}

fn fuzz_stream(stream: Stream) {
    // seeds of the other streams too: a metric sent to the logs topic is a real mistake
    let mut all = seeds(stream);
    for other in [Stream::Logs, Stream::Metrics, Stream::Events] {
        if other != stream {
            all.extend(seeds(other));
        }
    }
    for encoding in encodings(stream) {
        let d = decoder(stream, encoding);
        let good = seeds(stream)
            .into_iter()
            .find(|s| {
                d.decode(&[record(stream, s.clone(), 0)])
                    .is_ok_and(|o| o.dead_letters.is_empty())
            })
            .unwrap_or_else(|| panic!("no seed decodes as {encoding:?}"));
        let mut runner = proptest::test_runner::TestRunner::new(config(cases(3_000)));
        let result = runner.run(&input(&all), |(seed, edits)| {
            check_decoder(&d, stream, &good, mutate(&all, seed, &edits))
        });
        if let Err(e) = result {
            panic!("{} decoder, encoding {encoding:?}: {e}", stream.name());
        }
    }
}

#[test]
fn log_decoders_take_any_bytes() {
    fuzz_stream(Stream::Logs);
}

#[test]
fn metric_decoders_take_any_bytes() {
    fuzz_stream(Stream::Metrics);
}

#[test]
fn event_decoders_take_any_bytes() {
    fuzz_stream(Stream::Events);
}

// ---- pipeline files ----

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file of every pipeline with the given extension, as seeds.
fn pipeline_files(ext: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(repo().join("pipelines"))
        .expect("pipelines/")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    for d in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&d)
            .expect("a pipeline")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        files.sort();
        for f in files {
            out.push(std::fs::read(f).expect("readable"));
        }
    }
    assert!(!out.is_empty());
    out
}

#[test]
fn the_pipeline_toml_parser_takes_any_bytes() {
    let seeds = pipeline_files("toml");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pipeline.toml");
    let mut runner = proptest::test_runner::TestRunner::new(config(cases(3_000)));
    let result = runner.run(&input(&seeds), |(seed, edits)| {
        std::fs::write(&file, mutate(&seeds, seed, &edits)).expect("write");
        if let Err(e) = lookout::config::PipelineConfig::load(dir.path(), None) {
            let msg = e.to_string();
            prop_assert!(msg.contains("pipeline.toml") || msg.contains("catalog"), "{msg}");
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("pipeline.toml: {e}");
    }
}

#[test]
fn the_sql_file_parser_takes_any_bytes() {
    let seeds = pipeline_files("sql");
    let path = Path::new("pipelines/fuzz/rule.sql");
    let mut runner = proptest::test_runner::TestRunner::new(config(cases(3_000)));
    let result = runner.run(&input(&seeds), |(seed, edits)| {
        let bytes = mutate(&seeds, seed, &edits);
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = lookout::sql::file::SqlFile::parse(path, &text) {
            prop_assert_eq!(&e.file, "pipelines/fuzz/rule.sql");
            prop_assert!(
                e.line <= text.lines().count() + 1,
                "line {} of {}",
                e.line,
                text.lines().count()
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("SQL file header: {e}");
    }
}

/// Mutated SQL planned by DataFusion: slower (milliseconds an input), so fewer inputs.
#[test]
fn the_sql_planner_takes_any_pipeline_file() {
    let seeds = pipeline_files("sql");
    let catalog = lookout::config::Catalog::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rule.sql");
    let mut runner = proptest::test_runner::TestRunner::new(config(cases(3_000) / 10));
    let result = runner.run(&input(&seeds), |(seed, edits)| {
        std::fs::write(&file, mutate(&seeds, seed, &edits)).expect("write");
        let loaded = rt.block_on(lookout::sql::SqlEngine::load(dir.path(), &catalog, Vec::new()));
        if let Err(errors) = loaded {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(e.file.ends_with("rule.sql"), "{e}");
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("SQL planning: {e}");
    }
}
