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

fn service(name: &str, owner: &str) -> crate::config::ServiceInfo {
    crate::config::ServiceInfo {
        name: name.into(),
        owner: Some(owner.into()),
        tier: 2,
        depends_on: vec![],
        hosts: vec![],
        kind: None,
    }
}

/// Plans are made once and run again on each batch (`swap`): a join's build side, an
/// aggregate's repartitioning and a top-k must all start over on the next batch's rows
/// and the catalog of the moment.
#[tokio::test]
async fn a_plan_made_once_reads_each_batch_and_the_current_catalog() {
    let mut e = plan(vec![file(
        "busiest",
        "--! kind = \"alert\"\n--! title = \"{service} of {owner}: {n}\"\n\
         SELECT l.service, c.owner, count(*) AS n FROM logs l JOIN catalog c ON l.service = c.name \
         WHERE l.level = 'ERROR' GROUP BY l.service, c.owner ORDER BY n DESC, l.service LIMIT 1",
    )])
    .await
    .unwrap();
    let catalog = |owner: &str| {
        Catalog::from_services(vec![service("a", owner), service("b", owner), service("c", owner)]).unwrap()
    };
    e.set_catalog(&catalog("ann")).await;
    let errors = |spec: &[(&str, usize)]| {
        let rows: Vec<LogRow> = spec
            .iter()
            .flat_map(|&(s, n)| std::iter::repeat_n(log(s, Level::Error, "x"), n))
            .collect();
        logs_batch(&rows).unwrap()
    };
    let titles = |out: SqlOutput| out.alerts.into_iter().map(|a| a.title).collect::<Vec<_>>();
    let first = run_logs(&mut e, &errors(&[("a", 3), ("b", 1)]), 0).await.unwrap();
    assert_eq!(titles(first), ["a of ann: 3"]);
    let second = run_logs(&mut e, &errors(&[("a", 1), ("b", 2), ("c", 4)]), 0)
        .await
        .unwrap();
    assert_eq!(titles(second), ["c of ann: 4"]);
    e.set_catalog(&catalog("bob")).await;
    let third = run_logs(&mut e, &errors(&[("b", 2)]), 0).await.unwrap();
    assert_eq!(titles(third), ["b of bob: 2"]);
    let empty = run_logs(&mut e, &errors(&[]), 0).await.unwrap();
    assert!(empty.alerts.is_empty());
}

#[tokio::test]
async fn the_engine_says_which_columns_its_files_read() {
    let rule = "--! kind = \"alert\"\n--! severity = \"critical\"\n--! title = \"{service}\"\n";
    let signal =
        "--! kind = \"signal\"\nSELECT tumble(ts, INTERVAL '1 minute') AS minute, service, count(*) AS lines FROM logs";
    let view = |name, sql| file(name, &format!("--! kind = \"view\"\n{sql}"));
    // the default pipeline's shape: a view of some columns, and a rule on it
    let e = plan(vec![
        view(
            "errors",
            "SELECT ts, service, host, level, message FROM logs WHERE level = 'ERROR'",
        ),
        file(
            "fatal",
            &format!("{rule}SELECT ts, service, host FROM errors WHERE level = 'ERROR'"),
        ),
    ])
    .await
    .unwrap();
    assert!(e.reads("logs", "message") && e.reads("logs", "level"));
    assert!(!e.reads("logs", "attrs") && !e.reads("metrics", "labels") && !e.reads("logs", "params"));
    let e = plan(vec![file(
        "p",
        &format!("{rule}SELECT ts, service, host FROM logs WHERE cardinality(params) > 1"),
    )])
    .await
    .unwrap();
    assert!(e.reads("logs", "params") && !e.reads("logs", "attrs"));
    let e = plan(vec![file("s", &format!("{signal} GROUP BY 1, service"))])
        .await
        .unwrap();
    assert!(e.reads("logs", "service") && !e.reads("logs", "attrs"));
    // each way of reading them: all columns out, through a view that selects them all,
    // in a WHERE, in a subquery, in a windowed signal
    for files in [
        vec![file("r", &format!("{rule}SELECT * FROM logs"))],
        vec![
            view("every", "SELECT * FROM logs"),
            file(
                "r",
                &format!("{rule}SELECT ts, service, host FROM every WHERE attrs['k'] = 'v'"),
            ),
        ],
        vec![file(
            "r",
            &format!("{rule}SELECT ts, service, host FROM logs WHERE attrs['k'] = 'v'"),
        )],
        vec![file(
            "r",
            &format!("{rule}SELECT ts, service, host FROM metrics WHERE service IN (SELECT attrs['svc'] FROM logs)"),
        )],
        vec![file(
            "s",
            &format!("{signal} WHERE attrs['k'] = 'v' GROUP BY 1, service"),
        )],
    ] {
        let sql: Vec<String> = files.iter().map(|f| f.sql.clone()).collect();
        assert!(plan(files).await.unwrap().reads("logs", "attrs"), "{sql:?}");
    }
}
