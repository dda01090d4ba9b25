//! Planning, errors and stateless rules.

use super::*;
use crate::decode::schema::{events_batch, logs_batch, metrics_batch};
use crate::decode::{Level, LogRow, Severity};

fn marks() -> Watermarks {
    Watermarks::new(std::time::Duration::from_secs(30))
}

/// Runs the files on a batch of logs (no metrics or events).
async fn run_logs(e: &mut SqlEngine, logs: &RecordBatch, watermark: i64) -> Result<SqlOutput, SqlError> {
    let (metrics, events) = (metrics_batch(&[]).unwrap(), events_batch(&[]).unwrap());
    e.run(logs, &metrics, &events, watermark, &marks(), Instant::now())
        .await
}

fn file(name: &str, text: &str) -> SqlFile {
    SqlFile::parse(Path::new(&format!("p/{name}.sql")), text).unwrap()
}

async fn plan(files: Vec<SqlFile>) -> Result<SqlEngine, Vec<FileError>> {
    SqlEngine::plan(files, &Catalog::default(), Vec::new()).await
}

fn log(service: &str, level: Level, msg: &str) -> LogRow<'static> {
    LogRow {
        ts: 5_000,
        service: service.to_string().into(),
        host: Some("h1".into()),
        level,
        message: msg.to_string().into(),
        trace_id: None,
        attrs: vec![("k".into(), "v".into())],
    }
}

#[tokio::test]
async fn views_feed_rules_and_rows_become_alerts() {
    let mut e = plan(vec![
        file("zz_rule", "--! kind = \"alert\"\n--! severity = \"critical\"\n--! title = \"fatal on {service}: {message}\"\nSELECT ts, service, host, message FROM bad_logs WHERE attrs['k'] = 'v'"),
        file("bad_logs", "--! kind = \"view\"\nSELECT * FROM logs WHERE level = 'FATAL'"),
    ])
    .await
    .unwrap();
    let logs = logs_batch(&[log("a", Level::Fatal, "boom"), log("b", Level::Info, "fine")]).unwrap();
    let alerts = run_logs(&mut e, &logs, 0).await.unwrap().alerts;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].title, "fatal on a: boom");
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert_eq!(alerts[0].ts, 5_000);
    // the same key gives the same fingerprint on the next batch
    let again = run_logs(&mut e, &logs, 0).await.unwrap().alerts;
    assert_eq!(again[0].fingerprint, alerts[0].fingerprint);
}

#[tokio::test]
async fn errors_are_located() {
    let errs = plan(vec![file(
        "a",
        "--! kind = \"alert\"\n\nSELECT service,\n  nosuch FROM logs",
    )])
    .await
    .err()
    .unwrap();
    assert_eq!((errs[0].line, errs[0].column), (4, 3), "{}", errs[0]);
    assert!(errs[0].hint.is_some());
    let errs = plan(vec![file("a", "--! kind = \"alert\"\nSELECT FROM WHERE")])
        .await
        .err()
        .unwrap();
    assert_eq!(errs[0].line, 2, "{}", errs[0]);
    let errs = plan(vec![file("a", "--! kind = \"alert\"\nSELECT 1; SELECT 2")])
        .await
        .err()
        .unwrap();
    assert!(errs[0].message.contains("exactly one statement"));
    let errs = plan(vec![file(
        "a",
        "--! kind = \"alert\"\nSELECT 1 + 'x' AS service FROM nosuchtable",
    )])
    .await
    .err()
    .unwrap();
    assert!(errs[0].message.contains("nosuchtable"), "{}", errs[0]);
}

#[tokio::test]
async fn cycles_are_refused() {
    let errs = plan(vec![
        file("v1", "--! kind = \"view\"\nSELECT * FROM v2"),
        file("v2", "--! kind = \"view\"\nSELECT * FROM v1"),
    ])
    .await
    .err()
    .unwrap();
    assert!(errs[0].message.contains("cycle"), "{}", errs[0]);
}

#[tokio::test]
async fn division_by_zero_is_null_not_a_crash() {
    let mut e = plan(vec![file(
        "r",
        "--! kind = \"alert\"\nSELECT service, CAST(count(*) AS DOUBLE) / 0 AS ratio FROM logs GROUP BY service",
    )])
    .await
    .unwrap();
    let logs = logs_batch(&[log("a", Level::Error, "x")]).unwrap();
    let alerts = run_logs(&mut e, &logs, 7).await;
    assert!(alerts.is_ok(), "{alerts:?}");
}

#[tokio::test]
async fn alert_rule_output_types_are_checked() {
    let errs = plan(vec![file("r", "--! kind = \"alert\"\nSELECT 1 AS service FROM logs")])
        .await
        .err()
        .unwrap();
    assert!(errs[0].message.contains("must be text"), "{}", errs[0]);
    let errs = plan(vec![file(
        "r",
        "--! kind = \"alert\"\n--! title = \"{nope}\"\nSELECT service FROM logs",
    )])
    .await
    .err()
    .unwrap();
    assert!(errs[0].message.contains("{nope}"), "{}", errs[0]);
}
