//! The log anomaly detectors on hand-made minutes of logs.

use std::collections::{HashMap, HashSet};

use super::anomaly::{LogAnomalies, LogAnomalyConfig};
use super::miner::{Miner, MinerConfig, TemplateChange};
use super::patterns::{self, PatternParams, Windows};
use crate::decode::schema::{logs_batch, Level, LogRow};
use crate::decode::Status;
use crate::model::Detections;

const T0: i64 = 1_741_046_400_000;
const MIN: i64 = 60_000;

fn row(ts: i64, service: &str, level: Level, message: &str) -> LogRow<'static> {
    LogRow {
        ts,
        service: service.to_string().into(),
        host: None,
        level,
        message: message.to_string().into(),
        trace_id: None,
        attrs: Vec::new(),
    }
}

/// Mines and observes one batch, as the pipeline does.
fn feed(miner: &mut Miner, stage: &mut LogAnomalies, rows: &[LogRow]) -> Detections {
    let (batch, changes) = super::enrich(miner, &logs_batch(rows).unwrap(), true).unwrap();
    let created: HashSet<String> = changes
        .iter()
        .filter_map(|c| match c {
            TemplateChange::Created { id } => Some(format!("{id:016x}")),
            _ => None,
        })
        .collect();
    stage.observe(&batch, &created)
}

fn kinds(d: &Detections) -> Vec<String> {
    d.anomalies
        .iter()
        .map(|a| a["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

/// `minutes` of normal traffic: 20 requests a minute and one cache miss every 10 minutes.
fn normal(minutes: i64, from: i64) -> Vec<LogRow<'static>> {
    let mut rows = Vec::new();
    for m in from..from + minutes {
        for k in 0..20 {
            rows.push(row(
                T0 + m * MIN + k * 2_000,
                "api",
                Level::Info,
                &format!("GET /items/{k} 200 in {} ms", 10 + k),
            ));
        }
        if m % 10 == 0 {
            rows.push(row(
                T0 + m * MIN + 50_000,
                "api",
                Level::Warn,
                "cache miss for key user:42",
            ));
        }
    }
    rows
}

#[test]
fn a_new_template_after_warm_up_is_an_anomaly_and_before_it_is_not() {
    let mut miner = Miner::new(MinerConfig::default());
    let mut stage = LogAnomalies::new(LogAnomalyConfig {
        warmup_s: 1800,
        ..LogAnomalyConfig::default()
    });
    let mut early = normal(5, 0);
    early.push(row(T0 + 4 * MIN, "api", Level::Error, "startup probe failed"));
    assert!(
        kinds(&feed(&mut miner, &mut stage, &early)).is_empty(),
        "nothing is new during warm-up"
    );
    feed(&mut miner, &mut stage, &normal(40, 5));
    let mut later = normal(1, 45);
    later.push(row(
        T0 + 45 * MIN + 30_000,
        "api",
        Level::Error,
        "connection pool exhausted (max 50)",
    ));
    later.push(row(T0 + 45 * MIN + 31_000, "api", Level::Info, "feature flag reloaded"));
    let d = feed(&mut miner, &mut stage, &later);
    assert_eq!(kinds(&d), vec!["new_template", "new_template"]);
    assert_eq!(d.anomalies[0]["template"], "connection pool exhausted (max <*>)");
    let severities: Vec<_> = d.alerts.iter().map(|a| a.severity).collect();
    assert_eq!(
        severities,
        vec![crate::decode::Severity::Warning, crate::decode::Severity::Info]
    );
    assert!(d.alerts.iter().all(|a| a.label("role") == Some("evidence")));
    assert_eq!(
        d.alerts[0].fingerprint, d.alerts[1].fingerprint,
        "one alert per service"
    );
}

#[test]
fn a_burst_of_a_rare_template_is_an_anomaly_and_steady_traffic_is_not() {
    let mut miner = Miner::new(MinerConfig::default());
    let mut stage = LogAnomalies::new(LogAnomalyConfig {
        warmup_s: 600,
        ..LogAnomalyConfig::default()
    });
    let d = feed(&mut miner, &mut stage, &normal(120, 0));
    assert!(!kinds(&d).contains(&"burst".to_string()), "{:?}", kinds(&d));
    let mut storm = normal(3, 120);
    for k in 0..30 {
        storm.push(row(
            T0 + 121 * MIN + k * 1000,
            "api",
            Level::Warn,
            "cache miss for key user:42",
        ));
    }
    let d = feed(&mut miner, &mut stage, &storm);
    let bursts: Vec<_> = d.anomalies.iter().filter(|a| a["kind"] == "burst").collect();
    assert_eq!(bursts.len(), 1, "{:?}", d.anomalies);
    assert_eq!(bursts[0]["value"], 30);
    assert_eq!(bursts[0]["template"], "cache miss for key user:<*>");
}

#[test]
fn an_unusual_mix_opens_an_episode_that_resolves_on_a_normal_window() {
    let mut miner = Miner::new(MinerConfig::default());
    // Train on three hours of normal minutes.
    let history = normal(180, 0);
    let (batch, _) = super::enrich(&mut miner, &logs_batch(&history).unwrap(), true).unwrap();
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap()
            .clone()
    };
    let (ids, texts) = (column("template_id"), column("template"));
    let mut windows = Windows::default();
    for (i, r) in history.iter().enumerate() {
        windows.add(&r.service, r.ts, ids.value(i), texts.value(i), MIN);
    }
    let model = patterns::fit(&windows, PatternParams::default(), "now".into()).unwrap();
    assert_eq!(model.services.len(), 1);
    assert_eq!(model.manifest.evaluation.windows, 180);

    let mut stage = LogAnomalies::new(LogAnomalyConfig::default());
    stage.skip_warmup();
    stage.set_model(Some(model));
    feed(&mut miner, &mut stage, &normal(5, 200));
    // A minute where requests stop and errors take their place.
    let mut bad: Vec<LogRow> = (0..25)
        .map(|k| {
            row(
                T0 + 205 * MIN + k * 2000,
                "api",
                Level::Error,
                &format!("upstream db timed out after {k} s"),
            )
        })
        .collect();
    bad.extend(normal(3, 206));
    let d = feed(&mut miner, &mut stage, &bad);
    let mix: Vec<_> = d.anomalies.iter().filter(|a| a["kind"] == "unusual_mix").collect();
    assert_eq!(mix.len(), 1, "{:?}", d.anomalies);
    let moved = mix[0]["moved"].to_string();
    assert!(moved.contains("25 x upstream db timed out after <*> s"), "{moved}");
    assert!(
        moved.contains("0 x GET <*> <*> in <*> ms"),
        "the silent usual template is named: {moved}"
    );
    let statuses: Vec<Status> = d
        .alerts
        .iter()
        .filter(|a| a.label("kind") == Some("unusual_mix"))
        .map(|a| a.status)
        .collect();
    assert_eq!(statuses, vec![Status::Firing, Status::Resolved]);
}

#[test]
fn a_model_file_is_checked_when_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut windows = Windows::default();
    let counts: HashMap<&str, u64> = [("00000000000000aa", 5), ("00000000000000bb", 1)].into();
    for m in 0..60 {
        for (id, n) in &counts {
            for _ in 0..*n {
                windows.add("svc", T0 + m * MIN, id, "a template", MIN);
            }
        }
    }
    let model = patterns::fit(&windows, PatternParams::default(), "now".into()).unwrap();
    let path = dir.path().join("log_patterns.json");
    model.save(&path).unwrap();
    assert_eq!(patterns::PatternModel::load(&path).unwrap(), model);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"threshold\": ", "\"threshold\": 9", 1)).unwrap();
    let err = patterns::PatternModel::load(&path).unwrap_err();
    assert!(err.contains("log_patterns.json") && err.contains("checksum"), "{err}");
    std::fs::write(&path, text.replace("log-pattern-kmeans", "something-else")).unwrap();
    assert!(patterns::PatternModel::load(&path).unwrap_err().contains("kind"));
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    assert!(patterns::PatternModel::load(&path)
        .unwrap_err()
        .contains("not a log-pattern model"));
}
