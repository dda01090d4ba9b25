//! Template mining inside the pipeline: the logs batch carries `template_id`, `template`
//! and `params` into SQL, `log_template()` answers from the same miner, and the state
//! carries template ids over a restart.

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
