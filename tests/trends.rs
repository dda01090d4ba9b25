//! Trend reports end to end: published on the trend-reports topic by `lookout run` and
//! read back with `lookout report --topic`; written by `lookout replay` of real
//! telemetry, where the hourly report sees a memory leak coming; rendered as an HTML page
//! that headless Chromium opens; and the forecaster's quality against the seasonal-naive
//! forecast on series with a known future (`lookout forecast-quality`).

mod common;

use std::time::Duration;

use common::{broker, browser, chromium, consume_until, lookout, produce, shared, while_lookout_runs};
use serde_json::Value;

#[test]
fn lookout_run_publishes_reports_that_report_reads_from_the_topic() {
    let broker = broker();
    let bs = broker.bootstrap_servers().to_string();
    // three hours of a disk filling on db-1, one sample a minute
    let t0 = 1_741_082_400_000i64; // 2025-03-04T10:00:00Z
    let metrics: Vec<Vec<u8>> = (0..180)
        .map(|m| {
            format!(
                r#"{{"ts":{},"name":"disk_usage","value":{},"labels":{{"service":"db","host":"db-1"}}}}"#,
                t0 + m * 60_000,
                0.5 + 0.02 * m as f64 / 60.0
            )
            .into_bytes()
        })
        .collect();
    produce(&bs, "metrics", &metrics);
    let (reports, status) = while_lookout_runs(&bs, "trends", || {
        consume_until(&bs, "trend-reports", Duration::from_secs(60), |o| {
            ["db", "operations"].iter().all(|scope| {
                let id = format!("1h/2025-03-04T11:00:00.000Z/{scope}");
                o.iter().any(|m| m.json()["report_id"] == id.as_str())
            })
        })
    });
    assert!(status.success(), "{status:?}");
    let hour = reports
        .iter()
        .map(|m| m.json())
        .find(|r| r["report_id"] == "1h/2025-03-04T11:00:00.000Z/db")
        .expect("the 11:00 report of db");
    assert_eq!(hour["schema"], "lookout.trend_report.v1");
    assert_eq!(hour["closed_by"], "watermark");
    let host = hour["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["host"] == "db-1")
        .expect("disk is watched per host");
    assert_eq!(host["samples"], 60);
    let th = &host["thresholds"][0];
    assert_eq!(th["name"], "disk capacity");
    assert_eq!(th["status"], "approaching", "{th}");
    // 0.54 at 12:00, 0.02 an hour: 0.9 in 18 hours
    let eta_h = th["eta_s"].as_f64().unwrap() / 3600.0;
    assert!((eta_h - 18.0).abs() < 0.5, "{th}");
    assert!(reports.iter().any(|m| m.json()["kind"] == "operations"));
    let (code, table, err) = lookout(&["report", "--topic", "trend-reports", "--brokers", &bs]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("trend report, 1h period starting 2025-03-04T1"),
        "{table}"
    );
    assert!(table.contains("disk capacity: in 1"), "{table}");
}

/// A replay of public-1, made once for the tests that read its trend reports.
struct Replay {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
    reports: Vec<Value>,
}

fn public_1() -> Option<&'static Replay> {
    static REPLAY: std::sync::OnceLock<Option<Replay>> = std::sync::OnceLock::new();
    REPLAY
        .get_or_init(|| {
            let shared = shared()?;
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("p1.jsonl");
            let input = shared.join("data/scenarios/public-1");
            let (code, _, err) = lookout(&[
                "replay",
                "--quiet",
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ]);
            assert_eq!(code, 0, "{err}");
            let file = dir.path().join("p1.trend-reports.jsonl");
            let text = std::fs::read_to_string(&file).unwrap();
            let reports = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            Some(Replay {
                _dir: dir,
                file,
                reports,
            })
        })
        .as_ref()
}

#[test]
fn a_replay_reports_every_hour_and_sees_the_memory_leak_coming() {
    let Some(Replay { reports, .. }) = public_1() else {
        return;
    };
    let hourly_ops = reports
        .iter()
        .filter(|r| r["kind"] == "operations" && r["period"]["length"] == "1h")
        .count();
    assert_eq!(hourly_ops, 24, "one operations report per hour of the day");
    // notification-worker-1 leaks from 03:25 (truth: onset 03:23:45) and crosses 0.95
    // at about 04:20; the 03:00 report, published after 04:01, foresees it
    let r = reports
        .iter()
        .find(|r| r["report_id"] == "1h/2025-03-04T03:00:00.000Z/notification-worker")
        .unwrap();
    let leak = r["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["signal"] == "mem_usage" && s["host"] == "notification-worker-1")
        .unwrap();
    let th = &leak["thresholds"][0];
    assert_eq!(th["status"], "approaching", "{th}");
    let at = th["at"].as_str().unwrap();
    assert!(("2025-03-04T04:05".."2025-03-04T05:00").contains(&at), "{th}");
    // the day's operations
    let day = reports
        .iter()
        .find(|r| r["report_id"] == "1d/2025-03-04T00:00:00.000Z/operations")
        .unwrap();
    let o = &day["operations"];
    let opened = o["incidents_opened"].as_u64().unwrap();
    assert!((5..=15).contains(&opened), "{o}");
    assert!(o["alerts_in"].as_u64().unwrap() > 10 * opened, "{o}");
    assert!(o["mttd_s"].as_f64().unwrap() >= 0.0);
    assert!(o["mttr_s"].as_f64().unwrap() > 0.0);
    assert_eq!(o["mtta_s"], Value::Null, "the scenario has no acknowledgements");
    assert!(!o["noisiest_sources"].as_array().unwrap().is_empty());
    assert!(o["mtbf_s"]["api-gateway"]["incidents"].as_u64().unwrap() >= 2, "{o}");
}

#[test]
fn the_report_page_renders_in_a_browser() {
    let Some(browser) = browser() else { return };
    let Some(replay) = public_1() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("report.html");
    let (code, table, err) = lookout(&[
        "report",
        "--input",
        replay.file.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("memory capacity"), "{table}");
    assert!(table.contains("MTTD"), "{table}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    let url = format!("file://{}", page.display());
    let dom = chromium(browser, &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&dom.stdout);
    for want in [
        "<h1>Lookout trend report</h1>",
        "id=\"latest\">2025-03-04T23:00:00.000Z",
        "id=\"operations\"",
        "aria-label=\"incidents per period\"",
        "class=\"bar\"",
        "class=\"chart\"",
        "class=\"level\"",
        "class=\"band\"",
        "class=\"forecast\"",
        "class=\"threshold\"",
        "data-signal=\"mem_usage\"",
        "Noisiest sources",
    ] {
        assert!(dom.contains(want), "the page lacks {want:?}");
    }
    let charts = dom.matches("class=\"chart\"").count();
    assert!(charts > 50, "{charts} charts");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("trend-report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(browser, &[&format!("--screenshot={}", shot.display())], &url);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 30_000, "screenshot {size} bytes");
}

#[test]
fn report_refuses_input_that_is_not_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("x.jsonl");
    std::fs::write(&f, "{\"schema\":\"lookout.trend_report.v1\"\nnot json\n").unwrap();
    let (code, _, err) = lookout(&["report", "--input", f.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("x.jsonl:1: not a JSON report"), "{err}");
    std::fs::write(&f, "{\"schema\":\"lookout.incident.v1\"}\n").unwrap();
    let (code, _, err) = lookout(&["report", "--input", f.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no lookout.trend_report.v1 messages"), "{err}");
}

/// The issue's target: better than the seasonal-naive forecast on at least 80% of the
/// series with a known future.
#[test]
fn the_forecaster_beats_seasonal_naive_on_most_series() {
    let Some(shared) = shared() else { return };
    let (code, out, err) = lookout(&[
        "forecast-quality",
        "--json",
        "--nab",
        shared.join("data/nab").to_str().unwrap(),
        "--scenarios",
        shared.join("data/scenarios").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        rows.len() >= 40,
        "every NAB series and every leaking host: {}",
        rows.len()
    );
    let leaks = rows.iter().filter(|r| r["set"] == "memory leak, per minute").count();
    assert_eq!(leaks, 4);
    let better = rows
        .iter()
        .filter(|r| r["mase"].as_f64().unwrap() < r["mase_baseline"].as_f64().unwrap())
        .count();
    assert!(
        better * 100 >= 80 * rows.len(),
        "better on {better} of {} series",
        rows.len()
    );
}

/// Over the three public days, incidents that recur (a memory leak on the same service
/// on two days) come out as a recurring type of two or more incidents, named by what
/// they share. (The daily certificate expiries on api-gateway, auth and cart are not
/// one type: their signatures, services and log shapes naming the expired service,
/// lie further apart than DBSCAN's tolerance of 0.6.)
#[test]
fn recurring_incident_types_over_three_days() {
    let Some(shared) = shared() else { return };
    let s = shared.join("data/scenarios");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("all.jsonl");
    let mut args = vec!["replay".to_string(), "--quiet".into(), "--input".into()];
    for p in ["public-1", "public-2", "public-3"] {
        args.push(s.join(p).display().to_string());
    }
    args.extend([
        "--catalog".into(),
        s.join("public-1/catalog.json").display().to_string(),
        "--output".into(),
        out.display().to_string(),
    ]);
    let (code, _, err) = lookout(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(tmp.path().join("all.trend-reports.jsonl")).unwrap();
    let last_day = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .rfind(|r| r["report_id"] == "1d/2025-03-06T00:00:00.000Z/operations")
        .unwrap();
    let recurring = last_day["operations"]["recurring"].as_array().unwrap().clone();
    let leak = recurring
        .iter()
        .find(|c| c["alerts"].to_string().contains("MemoryHigh"))
        .unwrap_or_else(|| panic!("no memory-leak type among {recurring:?}"));
    assert!(leak["incidents"].as_u64().unwrap() >= 2, "{leak}");
    assert!(!leak["services"].as_array().unwrap().is_empty(), "{leak}");
    let ids = leak["incident_ids"].as_array().unwrap();
    assert!(ids.len() >= 2 && ids[0] != ids[1], "{leak}");
    assert!(leak["first"] != leak["last"], "recurring, not one incident: {leak}");
}
