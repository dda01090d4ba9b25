//! Template mining inside the pipeline: the logs batch carries `template_id`, `template`
//! and `params` into SQL, `log_template()` answers from the same miner, and the state
//! carries template ids over a restart.

mod common;

use common::lookout;
use lookout::config::PipelineConfig;
use lookout::decode::Stream;
use lookout::pipeline::Processor;
use lookout::source::{RawRecord, RecordMeta};

const RULE: &str = r#"--! kind = "alert"
--! severity = "critical"
--! title = "{service}: {lines} x {template} (looked up: {looked_up}; params of the first: {first_params})"
--! keys = ["service", "template_id"]
SELECT max(ts) AS ts, service, template_id, template, count(*) AS lines,
       log_template(min(message)) AS looked_up,
       array_to_string(first_value(params ORDER BY ts), '|') AS first_params
FROM logs
GROUP BY service, template_id, template
HAVING count(*) >= 3
"#;

fn pipeline() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pipeline.toml"),
        "name = \"t\"\n[correlation]\nrequire_confirmation = false\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("repeated_template.sql"), RULE).unwrap();
    dir
}

fn logs(lines: &[(&str, &str)]) -> Vec<RawRecord> {
    lines
        .iter()
        .enumerate()
        .map(|(i, (service, message))| {
            let json = serde_json::json!({"ts": 1_741_046_400_000i64 + i as i64 * 1000, "service": service, "level": "ERROR", "message": message});
            RawRecord {
                stream: Stream::Logs,
                payload: json.to_string().into_bytes(),
                meta: RecordMeta {
                    topic: "logs".into(),
                    offset: i as i64,
                    ..Default::default()
                },
            }
        })
        .collect()
}

fn titles(messages: &[lookout::sink::Message]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok())
        .filter_map(|v| v["title"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn sql_sees_templates_and_params() {
    let dir = pipeline();
    let cfg = PipelineConfig::load(dir.path(), None).unwrap();
    let mut p = Processor::build(&cfg).await.unwrap();
    let batch = logs(&[
        ("db", "connection to 10.0.0.1:5432 timed out after 3000 ms"),
        ("db", "connection to 10.0.0.2:5432 timed out after 2000 ms"),
        ("db", "connection to 10.0.0.3:5432 timed out after 1000 ms"),
        ("db", "disk full"),
    ]);
    let out = p.process(&batch).await.unwrap();
    assert_eq!(
        titles(&out),
        vec![
            "db: 3 x connection to <*>:<*> timed out after <*> ms (looked up: connection to <*>:<*> timed out after <*> ms; \
             params of the first: 10.0.0.1|5432|3000)"
        ]
    );
}

#[tokio::test]
async fn template_ids_survive_a_restart_through_the_saved_state() {
    let dir = pipeline();
    let models = dir.path().join("models");
    let state = models.join("templates.json");
    let cfg = PipelineConfig::load(dir.path(), None).unwrap();
    let users = ["ann", "ben", "cid", "dan"];
    let lines: Vec<String> = users.iter().map(|u| format!("login failed for user {u}")).collect();
    let batch: Vec<(&str, &str)> = lines.iter().map(|l| ("auth", l.as_str())).collect();

    let mut first = Processor::build(&cfg).await.unwrap();
    first.use_models(&models).unwrap();
    first.process(&logs(&batch)).await.unwrap();
    first.save_state().unwrap();
    let before: Vec<(u64, String)> = first.miner().templates().map(|t| (t.id, t.text())).collect();
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].1, "login failed for user <*>");

    let mut second = Processor::build(&cfg).await.unwrap();
    second.use_models(&models).unwrap();
    second
        .process(&logs(&[("auth", "login failed for user eve")]))
        .await
        .unwrap();
    let after: Vec<(u64, String)> = second.miner().templates().map(|t| (t.id, t.text())).collect();
    assert_eq!(after, before, "the same template, with the same id, after a restart");

    std::fs::write(&state, b"garbage").unwrap();
    let mut third = Processor::build(&cfg).await.unwrap();
    let err = third.use_models(&models).unwrap_err();
    assert!(
        err.contains("templates.json"),
        "a corrupt state fails at start and names the file: {err}"
    );
}

#[test]
fn train_writes_models_that_replay_uses_and_bad_models_fail_at_start() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/scenarios");
    if !shared.is_dir() {
        eprintln!("SKIPPED: ../shared/data is not beside the repository");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let m = models.to_str().unwrap();
    let (code, out, err) = lookout(&[
        "train",
        "--input",
        shared.join("public-1").to_str().unwrap(),
        "--models",
        m,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("trained on 270666 records"), "{out}");
    assert!(err.contains("read 270666 records"), "progress is shown: {err}");
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models.join("default/log_patterns.json")).unwrap()).unwrap();
    let manifest = &model["manifest"];
    for field in [
        "kind",
        "version",
        "trained_at",
        "data_from",
        "data_to",
        "parameters",
        "evaluation",
        "checksum",
    ] {
        assert!(!manifest[field].is_null(), "manifest has {field}: {manifest}");
    }
    assert_eq!(manifest["data_from"].as_str().unwrap()[..10], *"2025-03-04");
    assert!(
        manifest["evaluation"]["train_exceed_rate"].as_f64().unwrap() < 0.01,
        "{manifest}"
    );

    // The series detectors and the service-signals model, each with its manifest.
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(models.join("default").join(f)).unwrap()).unwrap()
    };
    let series = read("series.json");
    assert_eq!(series["manifest"]["kind"], "series-detectors");
    assert_eq!(series["manifest"]["detector"], "envelope");
    assert!(
        series["manifest"]["evaluation"]["series"].as_u64().unwrap() > 100,
        "{}",
        series["manifest"]
    );
    let signals = read("service_signals.json");
    assert_eq!(signals["manifest"]["kind"], "service-signals-kmeans");
    assert_eq!(signals["manifest"]["data_from"].as_str().unwrap()[..10], *"2025-03-04");
    assert_eq!(
        signals["services"]["checkout"]["dims"],
        serde_json::json!(["error_ratio", "latency_p95_ms", "log_errors", "req_rate"]),
        "symptom signals and log errors, not saturation levels"
    );
    assert!(out.contains("service signals: 14 services"), "{out}");

    let output = tmp.path().join("p2.jsonl");
    let replay = |models: &str| {
        lookout(&[
            "replay",
            "--input",
            shared.join("public-2").to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--models",
            models,
        ])
    };
    let (code, _, err) = replay(m);
    assert_eq!(code, 0, "{err}");
    let anomalies = std::fs::read_to_string(tmp.path().join("p2.anomalies.jsonl")).unwrap();
    assert!(
        anomalies.contains("\"kind\":\"unusual_mix\""),
        "the trained model finds unusual mixes in public-2"
    );

    let model_file = models.join("default/log_patterns.json");
    let good = std::fs::read(&model_file).unwrap();
    std::fs::write(&model_file, &good[..good.len() / 3]).unwrap();
    let (code, _, err) = replay(m);
    assert_eq!(code, 2, "a corrupt model fails start: {err}");
    assert!(
        err.contains("log_patterns.json") && err.contains("not a log-pattern model"),
        "{err}"
    );
    std::fs::write(&model_file, &good).unwrap();

    let signals_file = models.join("default/service_signals.json");
    let good_signals = std::fs::read(&signals_file).unwrap();
    std::fs::write(&signals_file, b"[]").unwrap();
    let (code, _, err) = replay(m);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("service_signals.json: not a service-signals model"),
        "{err}"
    );
    std::fs::write(&signals_file, &good_signals).unwrap();

    // Series trained for one detector do not start another.
    let other = tmp.path().join("surprise");
    std::fs::create_dir_all(&other).unwrap();
    for f in std::fs::read_dir("pipelines/default").unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, other.join(f.file_name().unwrap())).unwrap();
    }
    let toml = std::fs::read_to_string(other.join("pipeline.toml")).unwrap();
    std::fs::write(
        other.join("pipeline.toml"),
        toml.replace("[detection]\n", "[detection]\nmodel = \"surprise\"\n"),
    )
    .unwrap();
    let (code, _, err) = lookout(&[
        "replay",
        "--pipeline",
        other.to_str().unwrap(),
        "--input",
        shared.join("public-2").to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--models",
        m,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("series.json") && err.contains("trained for another detector"),
        "{err}"
    );

    std::fs::remove_file(models.join("default/templates.json")).unwrap();
    let (code, _, err) = replay(m);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("templates.json") && err.contains("lookout train"), "{err}");
}

#[tokio::test]
async fn a_replaced_model_is_reloaded_and_a_bad_replacement_keeps_the_old_one() {
    use lookout::logs::patterns::{self, PatternParams, Windows};
    let dir = pipeline();
    let models = dir.path().join("models");
    let cfg = PipelineConfig::load(dir.path(), None).unwrap();
    let fitted = |services: &[&str]| {
        let mut w = Windows::default();
        for s in services {
            for m in 0..60 {
                w.add(s, 1_741_046_400_000 + m * 60_000, "00000000000000aa", "t", 60_000);
            }
        }
        patterns::fit(&w, PatternParams::default(), "now".into()).unwrap()
    };
    let mut p = Processor::build(&cfg).await.unwrap();
    p.use_models(&models).unwrap(); // nothing there yet: no model
    assert!(p.log_model().is_none());
    p.miner().save(&models.join("templates.json")).unwrap();
    fitted(&["a"]).save(&models.join("log_patterns.json")).unwrap();
    p.process(&logs(&[("a", "x")])).await.unwrap();
    assert_eq!(
        p.log_model().unwrap().services.len(),
        1,
        "a new model file is picked up"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(models.join("log_patterns.json"), b"{broken").unwrap();
    p.process(&logs(&[("a", "y")])).await.unwrap();
    assert_eq!(
        p.log_model().unwrap().services.len(),
        1,
        "a bad replacement keeps the model in use"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    fitted(&["a", "b"]).save(&models.join("log_patterns.json")).unwrap();
    p.process(&logs(&[("a", "z")])).await.unwrap();
    assert_eq!(p.log_model().unwrap().services.len(), 2, "a good replacement is loaded");
    assert_eq!(p.stats.model_reloads, 2);

    // The service-signals model is watched the same way.
    use lookout::model::services::{self, Window};
    let signals = |services: &[&str]| {
        let windows: Vec<Window> = services
            .iter()
            .flat_map(|s| {
                (0..60).map(move |m| Window {
                    end: m * 60_000,
                    service: s.to_string(),
                    values: [("req_rate".to_string(), 10.0 + (m % 5) as f64)].into(),
                })
            })
            .collect();
        services::fit(&windows, Default::default(), "now".into(), ("a".into(), "b".into())).unwrap()
    };
    assert!(p.signal_model().is_none());
    signals(&["a"]).save(&models.join("service_signals.json")).unwrap();
    p.process(&logs(&[("a", "x")])).await.unwrap();
    assert_eq!(p.signal_model().unwrap().services.len(), 1);
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(models.join("service_signals.json"), b"{}").unwrap();
    p.process(&logs(&[("a", "y")])).await.unwrap();
    assert_eq!(p.signal_model().unwrap().services.len(), 1, "kept");
    std::thread::sleep(std::time::Duration::from_millis(20));
    signals(&["a", "b"]).save(&models.join("service_signals.json")).unwrap();
    p.process(&logs(&[("a", "z")])).await.unwrap();
    assert_eq!(p.signal_model().unwrap().services.len(), 2, "replaced");
    assert_eq!(p.stats.model_reloads, 4);
}

#[test]
fn a_replay_publishes_the_same_anomalies_and_incidents_every_time() {
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/scenarios/public-3");
    if !scenario.is_dir() {
        eprintln!("SKIPPED: ../shared/data is not beside the repository");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let outputs: Vec<(Vec<u8>, Vec<u8>)> = (0..2)
        .map(|i| {
            let out = tmp.path().join(format!("r{i}.jsonl"));
            let (code, _, err) = lookout(&[
                "replay",
                "--input",
                scenario.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ]);
            assert_eq!(code, 0, "{err}");
            let anomalies = tmp.path().join(format!("r{i}.anomalies.jsonl"));
            (std::fs::read(&out).unwrap(), std::fs::read(anomalies).unwrap())
        })
        .collect();
    assert!(outputs[0] == outputs[1], "two replays of the same input differ");
}
