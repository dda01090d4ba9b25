//! Windowed SQL on one core: a 1-minute tumbling aggregate grouped by service over
//! 10 million log records from 1,000 services, through Lookout's streaming path
//! (batches of 8,192 as the pipeline makes them, watermarks, windows closing as event
//! time passes). Prints records per second of CPU time, the peak resident memory (read
//! before the baseline runs) and the open window state; then the same query in plain
//! DataFusion over all records as one in-memory table, and the ratio of the two.
//!
//! Targets: at least 2,000,000 records/s per core, peak memory under 256 MB.
//!
//! `cargo bench --bench windows` (`-- 1000000` for fewer records)

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use lookout::config::Catalog;
use lookout::decode::schema::{logs_batch, LogRow};
use lookout::decode::{Level, Stream};
use lookout::pipeline::bench::{cpu_seconds, peak_rss_kb};
use lookout::sql::{SqlEngine, SqlFile, Watermarks};

const SERVICES: usize = 1_000;
const BATCH: usize = 8_192;
/// Event time advances 1 ms per record: 10 M records span about 2.8 hours.
const MS_PER_RECORD: i64 = 1;

const SIGNAL: &str = "--! kind = \"signal\"
--! lateness = \"5s\"
SELECT tumble(ts, INTERVAL '1 minute') AS minute, service,
       count(*) AS lines,
       count(*) FILTER (WHERE level = 'ERROR') AS errors
FROM logs
GROUP BY 1, service";

const PLAIN: &str = "SELECT date_bin(INTERVAL '1 minute', ts) AS minute, service,
       count(*) AS lines,
       count(*) FILTER (WHERE level = 'ERROR') AS errors
FROM logs
GROUP BY 1, service";

fn batch(from: usize, n: usize, services: &[String]) -> RecordBatch {
    let rows: Vec<LogRow> = (from..from + n)
        .map(|i| LogRow {
            ts: 1_741_046_400_000 + i as i64 * MS_PER_RECORD,
            service: services[(i * 7919) % SERVICES].clone().into(),
            host: Some(format!("h{}", i % 3).into()),
            level: if i % 50 == 0 { Level::Error } else { Level::Info },
            message: "request served".into(),
            trace_id: None,
            attrs: Vec::new(),
        })
        .collect();
    logs_batch(&rows).expect("logs schema")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let records: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let services: Vec<String> = (0..SERVICES).map(|i| format!("service-{i:04}")).collect();
    let file = SqlFile::parse(std::path::Path::new("bench/per_minute.sql"), SIGNAL).expect("valid file");
    let mut engine = SqlEngine::plan(vec![file], &Catalog::default(), Vec::new())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let empty = |s: Stream| RecordBatch::new_empty(s.schema());
    let (metrics, events) = (empty(Stream::Metrics), empty(Stream::Events));
    let mut marks = Watermarks::new(Duration::from_secs(30));
    let mut spent = Duration::ZERO;
    let mut cpu = 0.0;
    let mut points = 0usize;
    let mut most_slots = 0;
    let mut from = 0;
    while from < records {
        let n = BATCH.min(records - from);
        let logs = batch(from, n, &services);
        let newest = 1_741_046_400_000 + (from + n - 1) as i64 * MS_PER_RECORD;
        let (clock, cpu0) = (Instant::now(), cpu_seconds());
        marks.observe(Stream::Logs, "logs", 0, newest, clock);
        let out = engine
            .run(&logs, &metrics, &events, newest, &marks, clock)
            .await
            .expect("runs");
        spent += clock.elapsed();
        cpu += cpu_seconds() - cpu0;
        points += out.points.len();
        most_slots = most_slots.max(engine.open_slots());
        from += n;
    }
    let (clock, cpu0) = (Instant::now(), cpu_seconds());
    points += engine.flush(i64::MAX).await.expect("flushes").points.len();
    spent += clock.elapsed();
    cpu += cpu_seconds() - cpu0;
    let peak_mb = peak_rss_kb() as f64 / 1024.0;
    let windows = (records as i64 - 1) * MS_PER_RECORD / 60_000 + 1;
    assert_eq!(points, 2 * SERVICES * windows as usize, "every (minute, service) once");
    let streaming = records as f64 / spent.as_secs_f64();

    // The same query on all records at once, in plain DataFusion.
    let mut all = Vec::new();
    let mut from = 0;
    while from < records {
        let n = BATCH.min(records - from);
        all.push(batch(from, n, &services));
        from += n;
    }
    let ctx = SessionContext::new();
    let table = MemTable::try_new(Stream::Logs.schema(), vec![all]).expect("one partition");
    ctx.register_table("logs", Arc::new(table)).expect("fresh context");
    let (clock, cpu1) = (Instant::now(), cpu_seconds());
    let rows: usize = ctx
        .sql(PLAIN)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs")
        .iter()
        .map(|b| b.num_rows())
        .sum();
    let plain_wall = clock.elapsed();
    let plain_cpu = cpu_seconds() - cpu1;
    assert_eq!(rows, SERVICES * windows as usize);
    let plain = records as f64 / plain_wall.as_secs_f64();

    println!("windowed SQL: 1-minute tumbling count per service, {records} log records, {SERVICES} services, {windows} windows");
    println!("| path | records/s (wall) | records/s per CPU-second | peak RSS |");
    println!("|---|---:|---:|---:|");
    println!(
        "| Lookout streaming (batches of {BATCH}, watermarks) | {:.0} | {:.0} | {peak_mb:.0} MB |",
        streaming,
        records as f64 / cpu.max(1e-9)
    );
    println!(
        "| plain DataFusion, one in-memory table | {:.0} | {:.0} | (all records in memory) |",
        plain,
        records as f64 / plain_cpu.max(1e-9)
    );
    println!(
        "streaming / plain: {:.2}; most open (window, service) slots: {most_slots}",
        streaming / plain
    );
}
