//! What Lookout publishes validates against the JSON Schemas in `schemas/`, checked by
//! an independent validator (Python's jsonschema, which `.ci/run` installs): the golden
//! outputs of every pipeline (equal to what they publish, see tests/pipelines.rs), a
//! replay of real telemetry, and the dead letters of a file with bad records.

mod common;

use std::process::Command;

use common::{repo, shared};

fn validate(args: &[String]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(repo().join("tests/clients/validate_schemas.py"))
        .arg(repo().join("schemas"))
        .args(args)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named 'jsonschema'"),
        "python3 cannot import jsonschema: pip install jsonschema (.ci/run does)"
    );
    (out.status.success(), text)
}

#[test]
fn golden_outputs_of_every_pipeline_validate() {
    let mut args = Vec::new();
    for f in std::fs::read_dir(repo().join("tests/golden")).unwrap() {
        let f = f.unwrap().path().display().to_string();
        args.push(format!("incidents={f}"));
        args.push(format!("anomalies={f}"));
        args.push(format!("trend-reports={f}"));
    }
    assert!(args.len() >= 15, "a golden output per pipeline");
    let (ok, text) = validate(&args);
    assert!(ok, "{text}");
    assert!(!text.contains("incidents: 0 valid"), "{text}");
}

#[test]
fn a_replay_and_its_dead_letters_validate() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs.jsonl");
    std::fs::write(
        &logs,
        concat!(
            "{\"ts\":\"2025-03-04T10:00:00Z\",\"service\":\"api\",\"level\":\"ERROR\",\"message\":\"boom\"}\n",
            "{\"ts\": not json\n",
            "\u{1}\u{2}\u{3}\n",
            "[]\n",
        ),
    )
    .unwrap();
    let out = tmp.path().join("incidents.jsonl");
    let (code, _, err) = common::lookout(&[
        "replay",
        "--input",
        logs.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let dead = tmp.path().join("incidents.dead-letters.jsonl");
    let (ok, text) = validate(&[format!("dead-letters={}", dead.display())]);
    assert!(ok, "{text}");
    assert!(text.contains("dead-letters: 3 valid"), "{text}");

    let Some(shared) = shared() else { return };
    let out = tmp.path().join("p1.jsonl");
    let input = shared.join("data/scenarios/public-1");
    let (code, _, err) = common::lookout(&[
        "replay",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (ok, text) = validate(&[
        format!("incidents={}", out.display()),
        format!("anomalies={}", tmp.path().join("p1.anomalies.jsonl").display()),
        format!("trend-reports={}", tmp.path().join("p1.trend-reports.jsonl").display()),
    ]);
    assert!(ok, "{text}");
    assert!(!text.contains("trend-reports: 0 valid"), "{text}");
}

/// The check can fail: an incident without its id, or with an unknown status, does not
/// validate.
#[test]
fn a_broken_message_does_not_validate() {
    let golden = std::fs::read_to_string(repo().join("tests/golden/default.tsv")).unwrap();
    let incident = golden.lines().find_map(|l| l.strip_prefix("incidents\t")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for broken in [
        incident.replacen("\"incident_id\"", "\"id\"", 1),
        incident.replacen("\"status\":\"open\"", "\"status\":\"opened\"", 1),
    ] {
        let f = tmp.path().join("bad.jsonl");
        std::fs::write(&f, format!("{broken}\n")).unwrap();
        let (ok, text) = validate(&[format!("incidents={}", f.display())]);
        assert!(!ok, "{text}");
    }
}
