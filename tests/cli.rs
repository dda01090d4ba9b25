//! The `lookout` binary as users run it: the embedded default, replay of a recorded
//! scenario scored by the shared scorer, validate / explain, exit codes, SIGTERM, and
//! the bench.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo, shared};

fn lookout() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lookout"));
    c.current_dir(repo());
    c
}

/// Runs `cmd` and asserts that it is refused as a usage error (exit 2) that says `says`.
fn assert_refused(cmd: &mut Command, says: &str) {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(says), "{err}");
}

#[test]
fn embedded_default_shows_incidents_within_30_seconds() {
    let models = tempfile::tempdir().unwrap();
    let mut child = lookout()
        .args(["run", "--duration", "40", "--http", "127.0.0.1:0", "--models"])
        .arg(models.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut broker_line = None;
    let mut first_incident = None;
    let mut metrics_at = None;
    while let Some(Ok(line)) = lines.next() {
        if let Some(url) = line.trim().strip_prefix("metrics: http://") {
            metrics_at = url.strip_suffix("/metrics (also /health, /ready)").map(str::to_string);
        }
        if line.contains("Kafka-protocol broker on") {
            broker_line = Some(line.clone());
        }
        if line.starts_with("[open]") {
            first_incident = Some((line, started.elapsed()));
            break;
        }
    }
    // Prometheus metrics and readiness while it runs.
    let addr = metrics_at.expect("the metrics address is printed");
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: lookout\r\n\r\n").unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out
    };
    assert!(get("/ready").starts_with("HTTP/1.1 200"));
    let metrics = get("/metrics");
    let updates = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lookout_incident_updates_total "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(updates.is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(metrics.contains("lookout_records_total{stream=\"logs\"}"), "{metrics}");
    assert!(
        metrics.contains("# TYPE lookout_batch_duration_seconds histogram"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("lookout_batch_duration_seconds_count 0\n"),
        "{metrics}"
    );
    // consumer lag comes with librdkafka's statistics, every 5 s
    let waited = Instant::now();
    while !get("/metrics").contains("lookout_consumer_lag_records{topic=\"logs\",partition=\"0\"}") {
        assert!(
            waited.elapsed() < Duration::from_secs(15),
            "no consumer lag: {}",
            get("/metrics")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // SIGTERM: stops cleanly and exits 0
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    let broker_line = broker_line.expect("the broker address is printed");
    assert!(broker_line.contains("127.0.0.1:"), "{broker_line}");
    let (line, after) = first_incident.expect("an incident is printed");
    assert!(after < Duration::from_secs(30), "first incident after {after:?}");
    assert!(line.contains("inc-"), "{line}");
    assert!(status.success(), "SIGTERM exit: {status:?}");
    // The log template state is saved on the way out.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models.path().join("default/templates.json")).unwrap()).unwrap();
    assert!(!state["templates"].as_array().unwrap().is_empty(), "{state}");
}

#[test]
fn replay_of_a_scenario_is_read_by_the_scorer() {
    let Some(shared) = shared() else { return };
    let v = common::replay_and_score(&shared, "public-1");
    let input = &v["input"];
    assert!(input["messages"].as_u64().unwrap() > 0, "{input}");
    for problem in [
        "bad_json_lines",
        "messages_without_incident_id",
        "messages_with_other_schema",
        "incidents_missing_alerts",
        "incidents_missing_root_cause",
        "incidents_missing_opened_at",
    ] {
        assert_eq!(input[problem].as_u64(), Some(0), "scorer reports {problem}: {input}");
    }
    assert!(v["grouping"]["pairwise_f1"].as_f64().is_some(), "{v}");
}

#[test]
fn replay_reads_stdin_and_is_deterministic() {
    let input = (0..30)
        .map(|i| format!(r#"{{"ts":"2025-03-04T10:{i:02}:00Z","kind":"alert","source":"t","service":"s{}","severity":"critical","status":"firing","title":"a{i}","fingerprint":"f{i}"}}"#, i % 3))
        .collect::<Vec<_>>()
        .join("\n");
    let run = || {
        let mut child = lookout()
            .args(["replay", "--input", "-", "--stream", "events", "--output", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let a = run();
    assert!(a.lines().count() >= 3, "{a}");
    assert_eq!(a, run(), "same input, byte-identical incidents");
}

#[test]
fn validate_passes_on_shipped_pipelines_and_locates_errors() {
    let ok = lookout().arg("validate").output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let text = String::from_utf8_lossy(&ok.stdout);
    for p in [
        "default",
        "deploy_errors",
        "http_errors",
        "latency_saturation",
        "log_volume",
    ] {
        assert!(text.contains(&format!("ok    pipelines/{p}")), "{text}");
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), "name = \"broken\"\n").unwrap();
    std::fs::write(
        dir.path().join("bad.sql"),
        "--! kind = \"alert\"\nSELECT service,\n       nosuch\nFROM logs\n",
    )
    .unwrap();
    let bad = lookout().arg("validate").arg(dir.path()).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(text.contains("bad.sql:3:8"), "{text}");
    assert!(text.contains("nosuch"), "{text}");

    std::fs::write(
        dir.path().join("bad.sql"),
        "--! kind = \"alert\"\nSELECT ts FROM logs\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), "name = \"broken\"\nbatch = 3\n").unwrap();
    let bad = lookout().args(["run", "--pipeline"]).arg(dir.path()).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "invalid config fails at start");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("pipeline.toml:2"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// For scripts: `--quiet` says nothing on standard error, `--json` prints one summary.
#[test]
fn replay_quiet_json_prints_one_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs.jsonl");
    std::fs::write(
        &logs,
        "{\"ts\":\"2025-03-04T10:00:00Z\",\"service\":\"api\",\"level\":\"FATAL\",\"message\":\"boom\"}\nnot a record\n",
    )
    .unwrap();
    let out = tmp.path().join("out.jsonl");
    let (code, stdout, stderr) = common::lookout(&[
        "replay",
        "--quiet",
        "--json",
        "--input",
        logs.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["records"], 2, "{summary}");
    assert_eq!(summary["dead_letters"], 1, "{summary}");
    let (code, _, err) = common::lookout(&["replay", "--json", "--input", logs.to_str().unwrap(), "--output", "-"]);
    assert_eq!(code, 2, "{err}");
}

/// docs/config-reference.md is what `lookout config-reference` generates now.
#[test]
fn the_config_reference_is_generated_and_current() {
    let (code, out, err) = common::lookout(&["config-reference"]);
    assert_eq!(code, 0, "{err}");
    let doc = std::fs::read_to_string(repo().join("docs/config-reference.md")).unwrap();
    let table = &doc[doc.find("| key |").expect("a table")..];
    assert_eq!(
        table, out,
        "docs/config-reference.md is stale: regenerate it with `lookout config-reference`"
    );
}

#[test]
fn explain_shows_the_window_and_watermark() {
    let (code, out, err) = common::lookout(&["explain", "pipelines/latency_saturation/host_saturated.sql"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("window: tumbling, 1m"), "{out}");
    assert!(out.contains("minus lateness 30s"), "{out}");
    assert!(out.contains("2 of the last 3 windows"), "{out}");
}

/// `replay --diff` on real telemetry: a stricter copy of a rule changes what fires, and
/// a pipeline against itself changes nothing.
#[test]
fn replay_diff_shows_what_a_rule_change_would_change() {
    let Some(shared) = common::shared() else { return };
    let input = shared.join("data/scenarios/public-1");
    let input = input.to_str().unwrap();
    let (code, out, err) = common::lookout(&[
        "replay",
        "--pipeline",
        "pipelines/http_errors",
        "--diff",
        "pipelines/http_errors",
        "--input",
        input,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no difference downstream"), "{out}");
    let new = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(common::repo().join("pipelines/http_errors")).unwrap() {
        let f = f.unwrap().path();
        let text = std::fs::read_to_string(&f).unwrap();
        // the 5xx rule now needs three minutes running
        let text = text.replace("--! for_windows = 2", "--! for_windows = 3");
        std::fs::write(new.path().join(f.file_name().unwrap()), text).unwrap();
    }
    let (code, out, err) = common::lookout(&[
        "replay",
        "--pipeline",
        new.path().to_str().unwrap(),
        "--diff",
        "pipelines/http_errors",
        "--input",
        input,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rule:high_5xx_ratio: 1 → 0"), "{out}");
    assert!(out.contains("suppressed"), "{out}");
}

#[test]
fn explain_prints_the_plan() {
    let out = lookout()
        .args(["explain", "pipelines/default/high_error_ratio.sql"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("logical_plan") && text.contains("physical_plan"),
        "{text}"
    );
}

/// `lookout bench ARGS`, which must succeed, and the JSON object it prints.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = lookout().args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bench_measures_lookout_against_a_plain_consumer_and_loses_nothing() {
    let r = bench_json(&[
        "bench",
        "--events",
        "30000",
        "--log-lines",
        "3",
        "--rounds",
        "2",
        "--json",
    ]);
    for field in [
        "events_per_s",
        "ceiling_events_per_s",
        "ratio",
        "latency_p50_ms",
        "latency_p99_ms",
        "peak_rss_mb",
    ] {
        assert!(r[field].as_f64().is_some_and(|x| x > 0.0), "{field}: {r}");
    }
    let events = r["events"].as_u64().unwrap();
    assert!(events >= 30_000, "{r}");
    assert_eq!(
        r["logs"].as_u64().unwrap() + r["metrics"].as_u64().unwrap() + r["events_stream"].as_u64().unwrap(),
        events
    );
    assert_eq!(r["dropped"], 0, "{r}");
    assert_eq!(r["dead_letters"], 0, "{r}");
    assert!(
        r["incident_updates"].as_u64().unwrap() > 0,
        "the scenario's faults become incidents: {r}"
    );
    let stages = r["stage_us_per_event"].as_object().unwrap();
    assert_eq!(stages.len(), 7, "{r}");
    assert!(stages["2 decode"].as_f64().unwrap() > 0.0, "{r}");
    // the last batch's wait past the input's end, left out: at most about its
    // `max_wait_ms` (200 ms in the default pipeline), timer lateness aside
    let end_wait = r["end_wait_ms"].as_f64().unwrap();
    assert!((0.0..1000.0).contains(&end_wait), "{r}");
    let ratio = r["ratio"].as_f64().unwrap();
    let expected = r["events_per_s"].as_f64().unwrap() / r["ceiling_events_per_s"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-6 * expected.max(1.0), "{r}");
    // two rounds: the reported one is the lower median, the lower of the two
    let rounds = r["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{r}");
    let lower = rounds
        .iter()
        .min_by(|a, b| a["ratio"].as_f64().unwrap().total_cmp(&b["ratio"].as_f64().unwrap()))
        .unwrap();
    for field in ["ratio", "events_per_s", "ceiling_events_per_s"] {
        assert_eq!(lower[field], r[field], "{field}: {r}");
    }
}

/// `--streams logs`: log events alone, every one read and processed (error-log windows
/// still find the scenario's bad deploys), nothing of the other streams.
#[test]
fn bench_of_log_events_alone_reads_only_logs() {
    let r = bench_json(&[
        "bench",
        "--events",
        "20000",
        "--streams",
        "logs",
        "--log-lines",
        "3",
        "--rounds",
        "1",
        "--json",
    ]);
    let events = r["events"].as_u64().unwrap();
    assert!(events >= 20_000, "{r}");
    assert_eq!(r["rounds"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(r["logs"].as_u64(), Some(events), "{r}");
    assert_eq!(
        (r["metrics"].as_u64(), r["events_stream"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    assert_eq!(r["dropped"], 0, "{r}");
    assert!(r["events_per_s"].as_f64().is_some_and(|x| x > 0.0), "{r}");
    assert!(r["ceiling_events_per_s"].as_f64().is_some_and(|x| x > 0.0), "{r}");
    assert!(
        r["incident_updates"].as_u64().unwrap() > 0,
        "the bad deploys' error logs become incidents: {r}"
    );

    for (bad, says) in [
        (["--streams", "traces"], "`traces` is not a stream"),
        (["--log-lines", "0"], "0 is not in 1..=100000"),
        (["--rounds", "0"], "0 is not in 1..=100"),
    ] {
        let out = lookout().arg("bench").args(bad).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{bad:?}: {err}");
    }
}

/// At a rate, Lookout reads while the producer sends: every record read once, in offset
/// order per partition, and its latency from production to outputs acknowledged.
#[test]
fn bench_at_a_rate_measures_latency_and_memory_and_loses_nothing() {
    let r = bench_json(&[
        "bench",
        "--rate",
        "3000",
        "--duration",
        "10",
        "--log-lines",
        "3",
        "--json",
    ]);
    let events = r["events"].as_u64().unwrap();
    assert!((25_000..=30_000).contains(&events), "{r}");
    assert_eq!(
        r["logs"].as_u64().unwrap() + r["metrics"].as_u64().unwrap() + r["events_stream"].as_u64().unwrap(),
        events
    );
    assert_eq!(r["dropped"], 0, "{r}");
    assert_eq!(r["repeated"], 0, "{r}");
    assert_eq!(r["dead_letters"], 0, "{r}");
    assert!(r["incident_updates"].as_u64().unwrap() > 0, "{r}");
    for field in [
        "events_per_s",
        "latency_p50_ms",
        "latency_p99_ms",
        "record_latency_p99_ms",
        "peak_rss_mb",
    ] {
        assert!(r[field].as_f64().is_some_and(|x| x > 0.0), "{field}: {r}");
    }
    assert!(r["latency_p50_ms"].as_f64() <= r["latency_p99_ms"].as_f64(), "{r}");
    assert!(r["ceiling_events_per_s"].is_null(), "{r}");
    assert_eq!(r["rss_mb_per_minute"].as_array().unwrap().len(), 1, "{r}");
}

/// A token file that cannot be read, or holds no token, stops `run` at start with the
/// file's name and exit 2; the token itself is never printed.
#[test]
fn a_bad_http_token_file_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("token");
    std::fs::write(&empty, "\n").unwrap();
    for (file, says) in [
        (tmp.path().join("missing"), "missing"),
        (empty, "the HTTP token is empty"),
    ] {
        assert_refused(
            lookout()
                .args(["run", "--duration", "1", "--http", "127.0.0.1:0", "--http-token-file"])
                .arg(&file),
            says,
        );
    }
}

/// A SASL password given with `--kafka` is never printed, even with debug logs and a
/// broker that refuses the connection (every librdkafka error is logged).
#[test]
fn a_kafka_password_is_never_printed() {
    let state = tempfile::tempdir().unwrap();
    let out = lookout()
        .args([
            "run",
            "--brokers",
            "127.0.0.1:1",
            "--duration",
            "3",
            "--http",
            "off",
            "--log",
            "debug",
        ])
        .args([
            "--kafka",
            "security.protocol=SASL_PLAINTEXT",
            "--kafka",
            "sasl.mechanism=PLAIN",
        ])
        .args([
            "--kafka",
            "sasl.username=lookout",
            "--kafka",
            "sasl.password=s3cr3t-XYZ",
        ])
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("127.0.0.1:1"), "it tried the broker and said so: {all}");
    assert!(!all.contains("s3cr3t-XYZ"), "the password is printed:\n{all}");
}

/// `--exactly-once` refuses an interval of 0 (it commits at every interval) and a state
/// topic that does not exist, at start, with exit 2 and the topic's name.
#[test]
fn exactly_once_needs_an_interval_and_a_state_topic() {
    let broker = common::broker();
    let state = tempfile::tempdir().unwrap();
    for (extra, says) in [
        (
            vec!["--checkpoint-interval", "0"],
            "--exactly-once commits a transaction every --checkpoint-interval",
        ),
        (
            vec!["--state-topic", "no-such-topic"],
            "state topic no-such-topic does not exist",
        ),
    ] {
        assert_refused(
            lookout()
                .args(["run", "--brokers", broker.bootstrap_servers(), "--exactly-once"])
                .args(["--duration", "20", "--http", "off", "--group", "eos-cli"])
                .args(extra)
                .arg("--state-dir")
                .arg(state.path()),
            says,
        );
    }
}

/// `--partitioned-state` refuses an interval of 0 (partitions move with their
/// checkpoints), `--exactly-once` beside it, a missing state topic, and an assignor that
/// would split a partition number between instances.
#[test]
fn partitioned_state_refuses_what_would_lose_state() {
    let broker = common::broker();
    for (extra, says) in [
        (
            vec!["--checkpoint-interval", "0"],
            "--partitioned-state hands partitions over with their checkpoints",
        ),
        (
            vec!["--exactly-once"],
            "--partitioned-state does not work with --exactly-once",
        ),
        (
            vec!["--state-topic", "no-such-topic"],
            "state topic no-such-topic does not exist",
        ),
        (
            vec![
                "--state-topic",
                "dead-letters",
                "--kafka",
                "partition.assignment.strategy=cooperative-sticky",
            ],
            "needs partition.assignment.strategy=range",
        ),
    ] {
        assert_refused(
            lookout()
                .args(["run", "--brokers", broker.bootstrap_servers(), "--partitioned-state"])
                .args(["--duration", "20", "--http", "off", "--group", "tasks-cli"])
                .args(extra),
            says,
        );
    }
}

/// Kafka settings from `LOOKOUT_KAFKA_<KEY>` variables and from files (`KEY=@FILE`) are
/// applied (a bad key or value read that way is refused by librdkafka, naming it), and a
/// password given either way is never printed, even in debug logs.
#[test]
fn kafka_settings_come_from_the_environment_and_files_and_secrets_stay_unprinted() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("password");
    std::fs::write(&secret, "file-s3cr3t\nignored second line\n").unwrap();
    let mechanism = tmp.path().join("mechanism");
    std::fs::write(&mechanism, "BOGUS-MECHANISM\n").unwrap();
    let run = |env: &[(&str, &str)], kafka: &[String]| {
        let mut c = lookout();
        c.args([
            "run",
            "--brokers",
            "127.0.0.1:1",
            "--duration",
            "3",
            "--http",
            "off",
            "--log",
            "debug",
        ])
        .arg("--state-dir")
        .arg(tmp.path());
        for k in kafka {
            c.args(["--kafka", k]);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), all)
    };
    // read from the environment: an unknown key is refused by name
    let (code, all) = run(&[("LOOKOUT_KAFKA_NO_SUCH_PROPERTY", "x")], &[]);
    assert_ne!(code, Some(0), "{all}");
    assert!(all.contains("no.such.property"), "{all}");
    // read from a file: its value reaches librdkafka
    let (code, all) = run(
        &[],
        &[
            format!("sasl.mechanism=@{}", mechanism.display()),
            "security.protocol=SASL_PLAINTEXT".into(),
        ],
    );
    assert_ne!(code, Some(0), "{all}");
    assert!(all.contains("BOGUS-MECHANISM"), "{all}");
    // a missing file stops start and says which setting and file
    let (code, all) = run(&[], &["sasl.password=@/no/such/file".into()]);
    assert_eq!(code, Some(2), "{all}");
    assert!(all.contains("--kafka sasl.password: /no/such/file"), "{all}");
    // passwords from a variable and from a file are used and never printed
    let sasl = [
        "security.protocol=SASL_PLAINTEXT".to_string(),
        "sasl.mechanism=PLAIN".into(),
        "sasl.username=lookout".into(),
    ];
    let (_, all) = run(&[("LOOKOUT_KAFKA_SASL_PASSWORD", "env-s3cr3t")], &sasl);
    assert!(all.contains("127.0.0.1:1"), "it tried the broker: {all}");
    assert!(!all.contains("env-s3cr3t"), "the password is printed:\n{all}");
    let mut with_file = sasl.to_vec();
    with_file.push(format!("sasl.password=@{}", secret.display()));
    let (_, all) = run(&[], &with_file);
    assert!(all.contains("127.0.0.1:1"), "it tried the broker: {all}");
    assert!(!all.contains("file-s3cr3t"), "the password is printed:\n{all}");
}
