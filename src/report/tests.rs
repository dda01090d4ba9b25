//! The trend reporter on hand-made series: each kind of bad input says so in the report.

use serde_json::Value;

use super::*;

const H: i64 = 3_600_000;
const T0: i64 = 1_741_046_400_000; // 2025-03-04T00:00:00Z

fn hourly(thresholds: Vec<Threshold>) -> Trends {
    Trends::new(&TrendConfig {
        periods: vec![PeriodSpec {
            length: "1h".into(),
            horizon: 3,
            season: 24,
            keep: 14 * 24,
            min_history: 6,
        }],
        thresholds,
        ..TrendConfig::default()
    })
    .unwrap()
}

/// One value a minute for `hours` hours from `from`, `f(minute)`.
fn feed(t: &mut Trends, host: &str, from: i64, hours: i64, f: impl Fn(i64) -> f64) {
    for m in 0..hours * 60 {
        t.add_point("db".into(), Some(host.into()), "disk_usage", from + m * 60_000, f(m));
    }
}

fn signal<'a>(reports: &'a [Value], start: i64, host: Option<&str>) -> &'a Value {
    let start = format_ms(start);
    reports
        .iter()
        .filter(|r| r["kind"] == "service" && r["period"]["start"] == start.as_str())
        .flat_map(|r| r["signals"].as_array().unwrap())
        .find(|s| s["signal"] == "disk_usage" && s["host"].as_str() == host)
        .unwrap_or_else(|| panic!("no disk_usage {host:?} at {start} in {} reports", reports.len()))
}

fn disk(above: f64) -> Threshold {
    Threshold {
        metric: "disk_usage".into(),
        above: Some(above),
        below: None,
        name: Some("disk capacity".into()),
        per: Where::Host,
    }
}

#[test]
fn too_little_history_gives_no_forecast_and_says_why() {
    let mut t = hourly(vec![]);
    feed(&mut t, "db-1", T0, 3, |_| 0.5);
    let r = t.advance(T0 + 3 * H + 61_000);
    let s = signal(&r, T0 + 2 * H, None);
    assert_eq!(s["forecast"], Value::Null);
    let notes = s["notes"].to_string();
    assert!(notes.contains("too little history: 3 periods"), "{notes}");
    assert!(notes.contains("a week earlier"), "{notes}");
    assert_eq!(s["vs_previous"]["delta"], 0.0);
}

#[test]
fn a_steady_climb_is_forecast_and_its_threshold_crossing_foreseen() {
    let mut t = hourly(vec![disk(0.9)]);
    // 0.5 rising 0.01 an hour: 0.9 is 40 hours after the start
    feed(&mut t, "db-1", T0, 10, |m| 0.5 + 0.01 * m as f64 / 60.0);
    let r = t.advance(T0 + 10 * H + 61_000);
    let s = signal(&r, T0 + 9 * H, Some("db-1"));
    let f = &s["forecast"]["periods"];
    assert_eq!(f.as_array().unwrap().len(), 3);
    let next = f[0]["mean"].as_f64().unwrap();
    assert!((next - 0.605).abs() < 0.01, "{s}");
    assert!(f[0]["lower"].as_f64().unwrap() <= next && next <= f[0]["upper"].as_f64().unwrap());
    let th = &s["thresholds"][0];
    assert_eq!(th["status"], "approaching", "{th}");
    let eta_h = th["eta_s"].as_f64().unwrap() / 3600.0;
    assert!((eta_h - 30.0).abs() < 0.5, "{th}");
    assert_eq!(s["slope"]["per_hour"], 0.01);
}

#[test]
fn a_threshold_already_crossed_says_since_when() {
    let mut t = hourly(vec![disk(0.9)]);
    feed(&mut t, "db-1", T0, 1, |_| 0.5);
    feed(&mut t, "db-1", T0 + H, 2, |_| 0.95);
    let r = t.advance(T0 + 3 * H + 61_000);
    for start in [T0 + H, T0 + 2 * H] {
        let th = &signal(&r, start, Some("db-1"))["thresholds"][0];
        assert_eq!(th["status"], "crossed");
        assert_eq!(th["crossed_since"], format_ms(T0 + H));
    }
    assert_eq!(
        signal(&r, T0, Some("db-1"))["thresholds"][0]["status"],
        "not approaching"
    );
}

#[test]
fn gaps_and_series_that_stop_or_start_are_reported_as_such() {
    let mut t = hourly(vec![]);
    // db-1 reports for 8 hours, stops for 2, comes back; db-2 starts in hour 5
    for h in (0..8).chain(10..12) {
        feed(&mut t, "db-1", T0 + h * H, 1, |_| 0.4 + 0.001 * h as f64);
    }
    feed(&mut t, "db-2", T0 + 5 * H, 7, |_| 0.2);
    // the service series mixes both hosts; per-host series exist only for thresholds
    t.cfg.thresholds.push(disk(0.99));
    let r = t.advance(T0 + 12 * H + 61_000);
    let stopped = signal(&r, T0 + 8 * H, None);
    assert!(stopped["level"].is_number(), "db-2 still reports: {stopped}");
    // with a watched host: the stopped host's period has no data
    let mut t = hourly(vec![disk(0.99)]);
    for h in (0..8).chain(10..12) {
        feed(&mut t, "db-1", T0 + h * H, 1, |_| 0.4 + 0.001 * h as f64);
    }
    feed(&mut t, "db-2", T0 + 5 * H, 7, |_| 0.2);
    let r = t.advance(T0 + 12 * H + 61_000);
    let gap = signal(&r, T0 + 8 * H, Some("db-1"));
    assert_eq!(gap["level"], Value::Null);
    assert_eq!(gap["samples"], 0);
    assert!(gap["notes"].to_string().contains("no data this period"), "{gap}");
    let back = signal(&r, T0 + 10 * H, Some("db-1"));
    // the gap hours were reported (db-2 had data then), so the previous one is a gap
    assert!(
        back["notes"].to_string().contains("no data for the previous period"),
        "{back}"
    );
    assert_eq!(signal(&r, T0 + 9 * H, Some("db-1"))["level"], Value::Null);
    assert!(back["forecast"].is_object(), "gaps are skipped, not fatal: {back}");
    // db-2 has no report before it started
    assert!(!r.iter().any(|x| x["period"]["start"] == format_ms(T0 + 4 * H).as_str()
        && x["signals"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["host"] == "db-2"))));
    let started = signal(&r, T0 + 5 * H, Some("db-2"));
    assert!(started["notes"].to_string().contains("no data for the previous period"));
}

#[test]
fn clock_jumps_leave_gaps_and_late_values_are_counted() {
    let mut t = hourly(vec![]);
    feed(&mut t, "db-1", T0, 8, |_| 0.3);
    let r = t.advance(T0 + 8 * H + 61_000);
    assert!(!r.is_empty());
    // the clock jumps back into a reported hour: late, left out, counted, and no
    // second report for that hour, from this series or a new one
    feed(&mut t, "db-1", T0 + 2 * H, 1, |_| 0.9);
    feed(&mut t, "db-2", T0 + 2 * H, 1, |_| 0.9);
    assert_eq!(t.stats.late, 120);
    // and forward by three days: one report for the new hour, the gap noted
    feed(&mut t, "db-1", T0 + 80 * H, 1, |_| 0.3);
    let r = t.advance(T0 + 81 * H + 61_000);
    let s = signal(&r, T0 + 80 * H, None);
    assert!(s["notes"].to_string().contains("72 periods without data"), "{s}");
    assert_eq!(s["level"], 0.3);
    let services = r.iter().filter(|x| x["kind"] == "service").count();
    assert_eq!(services, 1, "no report for each empty hour of the jump");
}

#[test]
fn finish_closes_open_periods_and_says_so() {
    let mut t = hourly(vec![]);
    feed(&mut t, "db-1", T0, 1, |_| 0.3);
    assert!(t.advance(T0 + 30 * 60_000).is_empty());
    let r = t.finish();
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r.iter().all(|x| x["closed_by"] == "end of input"));
    assert!(r.iter().any(|x| x["kind"] == "operations"));
}

#[test]
fn bad_settings_fail_with_the_key() {
    let mut c = TrendConfig::default();
    c.periods[0].length = "soon".into();
    assert!(c.validate().unwrap_err().contains("trends.periods[0].length"));
    let mut c = TrendConfig::default();
    c.thresholds.push(Threshold {
        above: Some(1.0),
        below: Some(0.0),
        ..disk(0.9)
    });
    assert!(c.validate().unwrap_err().contains("trends.thresholds[0]"));
}

#[test]
fn an_error_budget_says_how_much_is_spent_and_when_it_runs_out() {
    let mut t = hourly(vec![]);
    t.cfg.budgets.push(Budget {
        metric: "disk_usage".into(),
        objective: 0.99,
        window: "1d".into(),
        name: None,
    });
    // 0.5% errors for 10 hours, then 3% for 2
    feed(&mut t, "db-1", T0, 10, |_| 0.005);
    feed(&mut t, "db-1", T0 + 10 * H, 2, |_| 0.03);
    let r = t.advance(T0 + 12 * H + 61_000);
    let b = &signal(&r, T0 + 9 * H, None)["budgets"][0];
    assert_eq!(b["status"], "within", "{b}");
    assert_eq!(b["burn_rate"], 0.5);
    // 10 h at 0.5% of the 1% a day allows: 0.05 / 0.24 of the budget
    assert!((b["spent"].as_f64().unwrap() - 0.05 / 0.24).abs() < 1e-6, "{b}");
    let b = &signal(&r, T0 + 11 * H, None)["budgets"][0];
    assert_eq!(b["status"], "burning", "{b}");
    assert_eq!(b["burn_rate"], 3.0);
    // spent (0.05 + 0.06) / 0.24; the rest at 3% lasts 0.13 h-of-errors / 0.03 = 4.33 h
    let left_h = b["exhausted_in_s"].as_f64().unwrap() / 3600.0;
    assert!((left_h - 0.13 / 0.03).abs() < 0.01, "{b}");
    assert!(b["note"].as_str().unwrap().contains("0.5 days seen"), "{b}");
    feed(&mut t, "db-1", T0 + 12 * H, 6, |_| 0.03);
    let r = t.advance(T0 + 18 * H + 61_000);
    assert_eq!(signal(&r, T0 + 17 * H, None)["budgets"][0]["status"], "exhausted");
}

#[test]
fn a_pagerduty_acknowledge_gives_the_mtta() {
    use crate::decode::{DecodeConfig, Decoder, Stream};
    use crate::source::{RawRecord, RecordMeta};
    let record = |json: &str| RawRecord {
        stream: Stream::Events,
        payload: json.as_bytes().to_vec(),
        meta: RecordMeta {
            topic: "events".into(),
            ..Default::default()
        },
    };
    let d = Decoder::new(DecodeConfig::default())
        .decode(&[record(
            r#"{"routing_key":"r","event_action":"acknowledge","dedup_key":"pd-7","payload":{"timestamp":"2025-03-04T00:05:00Z"}}"#,
        )])
        .unwrap();
    assert_eq!(d.events.num_rows(), 1, "{:?}", d.dead_letters);
    let mut t = hourly(vec![]);
    // the acknowledgement arrives first; the incident with that alert after it
    t.observe_events(&d.events);
    t.observe_incident(&serde_json::json!({
        "incident_id": "inc-1", "opened_at": "2025-03-04T00:02:00Z", "resolved_at": null,
        "services": ["pay"], "alerts": [{"fingerprint": "pd-7", "source": "pagerduty",
        "title": "pay down", "first_seen": "2025-03-04T00:01:00Z"}],
    }));
    feed(&mut t, "db-1", T0, 1, |_| 0.3);
    let r = t.advance(T0 + H + 61_000);
    let ops = r.iter().find(|x| x["kind"] == "operations").unwrap();
    assert_eq!(ops["operations"]["mtta_s"], 180.0, "{ops}");
    assert_eq!(ops["operations"]["mttd_s"], 60.0);
}
