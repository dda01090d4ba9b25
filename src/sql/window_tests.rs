//! Windowed SQL: windows, watermarks, late rows, sustained alerts, checkpoints and the
//! errors analysts get.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::decode::schema::{events_batch, logs_batch, metrics_batch};
use crate::decode::{Level, LogRow};

fn file(name: &str, text: &str) -> SqlFile {
    SqlFile::parse(Path::new(&format!("p/{name}.sql")), text).unwrap()
}

async fn engine(files: Vec<SqlFile>) -> SqlEngine {
    match SqlEngine::plan(files, &Catalog::default(), Vec::new()).await {
        Ok(e) => e,
        Err(errs) => panic!(
            "{}",
            errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        ),
    }
}

async fn plan_error(files: Vec<SqlFile>) -> FileError {
    match SqlEngine::plan(files, &Catalog::default(), Vec::new()).await {
        Ok(_) => panic!("planned"),
        Err(mut e) => e.remove(0),
    }
}

fn log(ts: i64, service: &str, level: Level) -> LogRow<'static> {
    LogRow {
        ts,
        service: service.to_string().into(),
        host: Some(format!("{service}-1").into()),
        level,
        message: "m".into(),
        trace_id: None,
        attrs: vec![],
    }
}

/// Feeds log rows as one batch of partition 0 and returns what the SQL emitted.
struct Feeder {
    marks: Watermarks,
    now: Instant,
}

impl Feeder {
    fn new() -> Feeder {
        Feeder {
            marks: Watermarks::new(Duration::from_secs(30)),
            now: Instant::now(),
        }
    }

    async fn feed(&mut self, e: &mut SqlEngine, rows: &[LogRow<'_>]) -> SqlOutput {
        if let Some(t) = rows.iter().map(|r| r.ts).max() {
            self.marks.observe(Stream::Logs, "logs", 0, t, self.now);
        }
        e.run(
            &logs_batch(rows).unwrap(),
            &metrics_batch(&[]).unwrap(),
            &events_batch(&[]).unwrap(),
            0,
            &self.marks,
            self.now,
        )
        .await
        .unwrap()
    }
}

const ERRORS_PER_MINUTE: &str = "--! kind = \"signal\"\n--! lateness = \"10s\"\nSELECT tumble(ts, INTERVAL '1 minute') AS minute, service, count(*) AS lines, count(*) FILTER (WHERE level = 'ERROR') AS errors\nFROM logs GROUP BY 1, service";

fn points(out: &SqlOutput) -> Vec<(String, String, i64, f64)> {
    let mut p: Vec<_> = out
        .points
        .iter()
        .map(|p| (p.series.clone(), p.service.clone(), p.ts, p.value))
        .collect();
    p.sort_by(|a, b| a.partial_cmp(b).unwrap());
    p
}

#[tokio::test]
async fn tumbling_windows_close_when_the_watermark_passes_their_end() {
    let mut e = engine(vec![file("epm", ERRORS_PER_MINUTE)]).await;
    let mut f = Feeder::new();
    let out = f
        .feed(
            &mut e,
            &[
                log(1_000, "a", Level::Error),
                log(2_000, "a", Level::Info),
                log(3_000, "b", Level::Info),
                log(61_000, "a", Level::Info),
            ],
        )
        .await;
    assert!(out.points.is_empty(), "the watermark (61s - 10s) has not passed 60s");
    // 71s - 10s lateness = 61s: the first minute closes
    let out = f.feed(&mut e, &[log(71_000, "b", Level::Error)]).await;
    assert_eq!(
        points(&out),
        vec![
            ("epm.errors".into(), "a".into(), 0, 1.0),
            ("epm.errors".into(), "b".into(), 0, 0.0),
            ("epm.lines".into(), "a".into(), 0, 2.0),
            ("epm.lines".into(), "b".into(), 0, 1.0),
        ]
    );
    assert_eq!(e.open_slots(), 2, "minute 1 for a and b");
    // the end of input closes the rest
    let out = e.flush(0).await.unwrap();
    assert_eq!(points(&out).len(), 4);
    assert_eq!(e.open_slots(), 0);
}

#[tokio::test]
async fn late_rows_are_dropped_and_counted() {
    let mut e = engine(vec![file("epm", ERRORS_PER_MINUTE)]).await;
    let mut f = Feeder::new();
    f.feed(&mut e, &[log(1_000, "a", Level::Error), log(75_000, "a", Level::Info)])
        .await;
    assert_eq!(e.late_rows(), 0);
    // minute 0 closed at watermark 65s: a row for it is late
    let out = f.feed(&mut e, &[log(59_000, "a", Level::Error)]).await;
    assert!(out.points.is_empty());
    assert_eq!(e.late_rows(), 1);
    // a row for the open minute is not
    f.feed(&mut e, &[log(62_000, "a", Level::Error)]).await;
    assert_eq!(e.late_rows(), 1);
}

#[tokio::test]
async fn late_rows_update_a_kept_window_and_emit_a_correction() {
    let sql = ERRORS_PER_MINUTE.replace(
        "--! lateness = \"10s\"",
        "--! lateness = \"10s\"\n--! late = \"update\"\n--! keep_closed = \"2m\"",
    );
    let mut e = engine(vec![file("epm", &sql)]).await;
    let mut f = Feeder::new();
    let out = f
        .feed(&mut e, &[log(1_000, "a", Level::Error), log(75_000, "a", Level::Info)])
        .await;
    assert_eq!(points(&out)[0], ("epm.errors".into(), "a".into(), 0, 1.0));
    let out = f.feed(&mut e, &[log(59_000, "a", Level::Error)]).await;
    assert_eq!(
        points(&out),
        vec![
            ("epm.errors".into(), "a".into(), 0, 2.0),
            ("epm.lines".into(), "a".into(), 0, 2.0)
        ],
        "minute 0 again, with the late row"
    );
    assert_eq!(e.corrections(), 1);
    // a key that had no row in the kept window gets one, as a correction
    let out = f.feed(&mut e, &[log(58_000, "b", Level::Info)]).await;
    assert_eq!(
        points(&out),
        vec![
            ("epm.errors".into(), "b".into(), 0, 0.0),
            ("epm.lines".into(), "b".into(), 0, 1.0)
        ]
    );
    assert_eq!(e.corrections(), 2);
    // past keep_closed the window is gone and the row only counted
    f.feed(&mut e, &[log(200_000, "a", Level::Info)]).await;
    let out = f.feed(&mut e, &[log(30_000, "a", Level::Error)]).await;
    assert!(points(&out).iter().all(|p| p.2 != 0));
    assert_eq!(e.late_rows(), 3);
}

#[tokio::test]
async fn a_row_is_in_every_hopping_window_that_covers_it() {
    let mut e = engine(vec![file(
        "h",
        "--! kind = \"signal\"\nSELECT hop(ts, INTERVAL '3 minutes', INTERVAL '1 minute') AS w, count(*) AS n FROM logs GROUP BY 1",
    )])
    .await;
    let mut f = Feeder::new();
    f.feed(&mut e, &[log(130_000, "a", Level::Info)]).await; // minute 2
    let out = e.flush(0).await.unwrap();
    let starts: Vec<i64> = points(&out).iter().map(|p| p.2).collect();
    assert_eq!(starts, vec![0, 60_000, 120_000]);
}

#[tokio::test]
async fn sessions_grow_merge_and_close_after_the_gap() {
    let mut e = engine(vec![file(
        "bursts",
        "--! kind = \"signal\"\n--! lateness = \"2m\"\nSELECT session(ts, INTERVAL '1 minute') AS started, service, count(*) AS n, max(ts) AS last_ts FROM logs GROUP BY 1, service",
    )])
    .await;
    let mut f = Feeder::new();
    // two sessions of a (0s and 100s), then a row at 50s that bridges them
    f.feed(&mut e, &[log(0, "a", Level::Error), log(100_000, "a", Level::Error)])
        .await;
    assert_eq!(e.open_slots(), 2);
    f.feed(&mut e, &[log(50_000, "a", Level::Error)]).await;
    assert_eq!(e.open_slots(), 1, "bridged");
    // 100s + 1m gap: closes at watermark 160s (280s - 2m)
    let out = f.feed(&mut e, &[log(280_000, "b", Level::Error)]).await;
    assert_eq!(points(&out), vec![("bursts.n".into(), "a".into(), 0, 3.0)]);
    // the end of input closes b's session at its own end (last row + gap), not "forever"
    let rule = "--! kind = \"alert\"\n--! keys = [\"service\"]\nSELECT session(ts, INTERVAL '1 minute') AS started, service, count(*) AS n FROM logs GROUP BY 1, service";
    let mut e = engine(vec![file("burst_rule", rule)]).await;
    Feeder::new().feed(&mut e, &[log(10_000, "c", Level::Error)]).await;
    let alerts = e.flush(0).await.unwrap().alerts;
    assert_eq!(alerts.iter().map(|a| a.ts).collect::<Vec<_>>(), vec![70_000]);
}

#[tokio::test]
async fn an_alert_can_require_several_windows() {
    let rule = "--! kind = \"alert\"\n--! for_windows = 2\n--! of_last = 3\n--! keys = [\"service\"]\nSELECT tumble(ts, INTERVAL '1 minute') AS ts, service, count(*) AS errors FROM logs WHERE level = 'ERROR' GROUP BY 1, service HAVING count(*) >= 2";
    let mut e = engine(vec![file("errs", rule)]).await;
    let mut f = Feeder::new();
    let burst = |minute: i64| vec![log(minute * 60_000 + 1_000, "a", Level::Error); 2];
    let mut fired = Vec::new();
    for minute in [0, 2, 3, 7] {
        let out = f.feed(&mut e, &burst(minute)).await;
        fired.extend(out.alerts.iter().map(|a| a.ts));
    }
    fired.extend(e.flush(0).await.unwrap().alerts.iter().map(|a| a.ts));
    // minute 0 alone: no; minute 2 (2 of the last 3: 0, 2): yes; minute 3: yes; 7: no
    assert_eq!(fired, vec![120_000, 180_000]);
}

#[tokio::test]
async fn signals_feed_rules_that_select_from_them() {
    let rule = "--! kind = \"alert\"\n--! keys = [\"service\"]\nSELECT minute AS ts, service, errors FROM epm WHERE errors > 1";
    let mut e = engine(vec![file("epm", ERRORS_PER_MINUTE), file("many", rule)]).await;
    let mut f = Feeder::new();
    f.feed(
        &mut e,
        &[
            log(1_000, "a", Level::Error),
            log(2_000, "a", Level::Error),
            log(3_000, "b", Level::Error),
        ],
    )
    .await;
    let out = f.feed(&mut e, &[log(80_000, "c", Level::Info)]).await;
    let services: Vec<_> = out.alerts.iter().map(|a| a.service.clone().unwrap()).collect();
    assert_eq!(services, vec!["a"]);
}

#[tokio::test]
async fn state_grows_with_keys_not_rows() {
    let mut e = engine(vec![file("epm", ERRORS_PER_MINUTE)]).await;
    let mut f = Feeder::new();
    for batch in 0..50 {
        let rows: Vec<LogRow> = (0..2_000)
            .map(|i| log(batch * 6_000 + i * 3, &format!("s{}", i % 10), Level::Info))
            .collect();
        f.feed(&mut e, &rows).await;
        assert!(e.open_slots() <= 20, "{} slots after batch {batch}", e.open_slots());
    }
}

#[tokio::test]
async fn a_checkpoint_resumes_exactly() {
    let rows: Vec<LogRow> = (0..600)
        .map(|i| {
            let level = if i % 7 == 0 { Level::Error } else { Level::Info };
            log(i * 1_000, ["a", "b", "c"][i as usize % 3], level)
        })
        .collect();
    let run = |cut: Option<usize>| {
        let rows = rows.clone();
        async move {
            let mut e = engine(vec![file("epm", ERRORS_PER_MINUTE)]).await;
            let mut f = Feeder::new();
            let mut all = Vec::new();
            for (k, chunk) in rows.chunks(50).enumerate() {
                if Some(k) == cut {
                    let state = e.checkpoint().unwrap();
                    let json = serde_json::to_string(&state).unwrap();
                    e = engine(vec![file("epm", ERRORS_PER_MINUTE)]).await;
                    e.restore(serde_json::from_str(&json).unwrap()).unwrap();
                }
                all.extend(points(&f.feed(&mut e, chunk).await));
            }
            all.extend(points(&e.flush(0).await.unwrap()));
            all
        }
    };
    let whole = run(None).await;
    assert_eq!(whole.len(), 2 * 3 * 10);
    assert_eq!(run(Some(5)).await, whole);
    assert_eq!(run(Some(7)).await, whole);
}

#[tokio::test]
async fn window_mistakes_are_located() {
    let e = plan_error(vec![file(
        "s",
        "--! kind = \"signal\"\nSELECT service, count(*) AS n\nFROM logs GROUP BY service",
    )])
    .await;
    assert!(e.message.contains("windowed aggregate"), "{e}");
    let e = plan_error(vec![file(
        "s",
        "--! kind = \"signal\"\nSELECT count(*) AS n\nFROM logs GROUP BY tumble(service, INTERVAL '1 minute')",
    )])
    .await;
    assert!(e.message.contains("time column"), "{e}");
    assert_eq!(e.line, 3, "{e}");
    let e = plan_error(vec![file(
        "s",
        "--! kind = \"signal\"\nSELECT count(*) AS n FROM logs\nGROUP BY hop(ts, INTERVAL '5 minutes', INTERVAL '2 minutes')",
    )])
    .await;
    assert!(e.message.contains("whole number of slides"), "{e}");
    assert_eq!((e.line, e.column), (3, 10), "{e}");
    let e = plan_error(vec![file(
        "v",
        "--! kind = \"view\"\nSELECT count(*) AS n FROM logs GROUP BY tumble(ts, INTERVAL '1 minute')",
    )])
    .await;
    assert!(e.message.contains("stateless"), "{e}");
    let e = plan_error(vec![file(
        "s",
        "--! kind = \"signal\"\nSELECT count(*) AS n FROM logs GROUP BY tumble(ts, 'soon')",
    )])
    .await;
    assert!(e.message.contains("not a duration"), "{e}");
    // a type mismatch names the types
    let e = plan_error(vec![file(
        "s",
        "--! kind = \"signal\"\nSELECT tumble(ts, '1m') AS m, sum(message) AS n\nFROM logs GROUP BY 1",
    )])
    .await;
    assert!(e.message.contains("Utf8"), "{e}");
    let e = SqlFile::parse(
        Path::new("p/s.sql"),
        "--! kind = \"signal\"\n--! lateness = \"a while\"\nSELECT 1",
    )
    .unwrap_err();
    assert!(e.message.contains("lateness"), "{e}");
    let e = SqlFile::parse(
        Path::new("p/s.sql"),
        "--! kind = \"view\"\n--! lateness = \"1m\"\nSELECT 1",
    )
    .unwrap_err();
    assert!(e.message.contains("stateless"), "{e}");
}
