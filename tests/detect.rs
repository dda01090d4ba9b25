//! `lookout detect` and `lookout nab`: NAB's data scored end to end, the detector's
//! output shape, saved models, and bad input.

mod common;

use common::lookout;

fn nab() -> Option<std::path::PathBuf> {
    common::shared().map(|s| s.join("data/nab"))
}

/// The score column of a `profile score threshold detected FP` table.
fn score(table: &str, profile: &str) -> f64 {
    let row = table.lines().find(|l| l.starts_with(profile)).expect(profile);
    row.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn nab_scores_on_the_development_categories() {
    let Some(dir) = nab() else { return };
    let results = tempfile::tempdir().unwrap();
    let (code, out, err) = lookout(&[
        "nab",
        "--data",
        dir.to_str().unwrap(),
        "--results",
        results.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("NAB, 37 files, 69 windows"), "{out}");
    // The figures the README quotes; the detector is deterministic.
    assert_eq!(score(&out, "standard"), 71.1, "{out}");
    assert_eq!(score(&out, "reward_low_FP_rate"), 59.7, "{out}");
    assert_eq!(score(&out, "reward_low_FN_rate"), 76.9, "{out}");
    // NAB's results layout, for its own scorer.
    let f = results.path().join("lookout/realKnownCause/lookout_nyc_taxi.csv");
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.starts_with("timestamp,value,anomaly_score,label\n2014-07-01 00:00:00,10844,"));
    assert_eq!(text.lines().count(), 10_321);
}

#[test]
fn detect_writes_what_nab_reads_and_a_saved_model_starts_warm() {
    let Some(dir) = nab() else { return };
    let input = dir.join("data/realKnownCause/ec2_request_latency_system_failure.csv");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("scored.csv");
    let model = tmp.path().join("model.json");
    let (code, _, err) = lookout(&[
        "detect",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--save-model",
        model.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(text.lines().next(), Some("timestamp,value,anomaly_score"));
    assert_eq!(rows.len(), 4032);
    let scores: Vec<f64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    // NAB's probationary period (15% of 4032 rows) scores 0.
    assert!(scores[..604].iter().all(|s| *s == 0.0));
    assert!(scores.iter().any(|s| *s >= 0.5));

    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    let m = &manifest["manifest"];
    assert_eq!(m["kind"], "series-detector");
    assert_eq!(m["points"], 4032);
    assert_eq!(m["data_from"], "2014-03-07T03:41:00.000Z");
    assert!(m["checksum"].as_str().unwrap().len() == 16);
    assert!(m["parameters"]["decay"].is_number());

    // Started from the model, the first rows are scored (no warm-up) without a flood.
    let again = tmp.path().join("again.csv");
    let (code, _, err) = lookout(&[
        "detect",
        "--input",
        input.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--output",
        again.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let warm: Vec<f64> = std::fs::read_to_string(&again)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        warm[..604].iter().any(|s| *s > 0.0),
        "a warm model scores from the first row"
    );
    assert!(warm[..604].iter().filter(|s| **s >= 0.5).count() <= 5);
}

#[test]
fn bad_input_fails_with_the_line_and_bad_models_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("bad.csv");
    std::fs::write(
        &csv,
        "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,oops\n",
    )
    .unwrap();
    let (code, _, err) = lookout(&["detect", "--input", csv.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.csv: line 3: bad value \"oops\""), "{err}");

    std::fs::write(&csv, "timestamp,value\nyesterday,1\n").unwrap();
    let (code, _, err) = lookout(&["detect", "--input", csv.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("line 2: bad timestamp \"yesterday\""), "{err}");

    let (code, _, err) = lookout(&["detect", "--input", "no/such.csv"]);
    assert_eq!(code, 2);
    assert!(err.contains("no/such.csv"), "{err}");

    // A header alone is an empty result, not an error.
    std::fs::write(&csv, "timestamp,value\n").unwrap();
    let (code, out, _) = lookout(&["detect", "--input", csv.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (0, "timestamp,value,anomaly_score\n"));

    let model = tmp.path().join("model.json");
    std::fs::write(&model, "{\"manifest\": {}}").unwrap();
    let (code, _, err) = lookout(&[
        "detect",
        "--input",
        csv.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not a series-detector model"), "{err}");

    let (code, _, err) = lookout(&["detect", "--input", csv.to_str().unwrap(), "--set", "decay=x"]);
    assert_eq!(code, 2);
    assert!(err.contains("not a number"), "{err}");

    let (code, _, err) = lookout(&["nab", "--data", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("combined_windows.json"), "{err}");
}
