//! Every pipeline in pipelines/ is planned and run on a fixed input (65 minutes of the
//! built-in scenario, seed 42, then the end of input, which closes open windows) and its
//! published messages are compared with a golden
//! file in tests/golden/. After an intended change, regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test pipelines` and review the diff.

mod common;

use std::path::Path;

use common::repo;
use lookout::config::{Catalog, PipelineConfig};
use std::time::Duration;

use lookout::pipeline::checkpoint::{self, pipeline_hash, Checkpoint};
use lookout::pipeline::Processor;
use lookout::source::scenario::{catalog_json, Scenario, CYCLE_MINUTES};
use lookout::source::{RawRecord, RecordMeta};

const START_MS: i64 = 1_741_046_400_000; // 2025-03-04T00:00:00Z

async fn run(dir: &Path) -> String {
    run_with_restarts(dir, &[], Path::new("")).await
}

/// [`run`], stopping after each minute in `restarts`: the state is checkpointed into
/// `state`, and a new processor restored from it goes on.
async fn run_with_restarts(dir: &Path, restarts: &[i64], state: &Path) -> String {
    let mut cfg = PipelineConfig::load(dir, None).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    cfg.catalog = Catalog::parse(&catalog_json().to_string(), "scenario").unwrap();
    let mut p = Processor::build(&cfg)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let scenario = Scenario::new(42, START_MS);
    let mut out = String::new();
    for minute in 0..2 * CYCLE_MINUTES + 5 {
        if restarts.contains(&minute) {
            let offsets = [(("events".to_string(), 0), minute * 10_000)].into();
            let c = Checkpoint::new(&cfg.spec.name, &pipeline_hash(dir), "c/g", offsets, p.state().unwrap());
            let file = state.join(checkpoint::FILE);
            c.save(&file).unwrap();
            p = Processor::build(&cfg).await.unwrap();
            let resumed = p.checkpoint_to(state, Duration::from_secs(5), "c/g").unwrap();
            assert_eq!(resumed.values().copied().collect::<Vec<_>>(), vec![minute * 10_000]);
        }
        let batch: Vec<RawRecord> = scenario
            .minute(minute)
            .into_iter()
            .enumerate()
            .map(|(i, g)| RawRecord {
                stream: g.stream,
                payload: g.payload,
                meta: RecordMeta {
                    topic: g.stream.name().into(),
                    offset: minute * 10_000 + i as i64,
                    kafka_ts: Some(g.ts),
                    ..Default::default()
                },
            })
            .collect();
        for m in p.process(&batch).await.unwrap() {
            push(&mut out, &m);
        }
    }
    // the end of the input closes the windows still open
    for m in p.finish().await.unwrap() {
        push(&mut out, &m);
    }
    out
}

fn push(out: &mut String, m: &lookout::sink::Message) {
    out.push_str(m.topic.name());
    out.push('\t');
    out.push_str(&String::from_utf8_lossy(&m.payload));
    out.push('\n');
}

#[tokio::test]
async fn every_pipeline_matches_its_golden_output() {
    let mut dirs: Vec<_> = std::fs::read_dir(repo().join("pipelines"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("pipeline.toml").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let got = run(&dir).await;
        assert!(
            got.lines().any(|l| l.starts_with("incidents\t")),
            "{name} publishes no incident on the scenario"
        );
        let golden = repo().join("tests/golden").join(format!("{name}.tsv"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("no golden output {}; run with UPDATE_GOLDEN=1", golden.display()));
        if got != want {
            let first = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(got.lines().count().min(want.lines().count()));
            panic!(
                "{name}: output differs from {} at line {}\n got: {}\nwant: {}",
                golden.display(),
                first + 1,
                got.lines().nth(first).unwrap_or("<end>"),
                want.lines().nth(first).unwrap_or("<end>")
            );
        }
    }
}

#[tokio::test]
async fn the_catalog_is_reloaded_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pipeline.toml"),
        "name = \"reload\"\ncatalog = \"catalog.json\"\n",
    )
    .unwrap();
    let catalog = |owner: &str| {
        format!(
            r#"{{"schema":"lookout.catalog.v1","services":[{{"name":"db","owner":"{owner}","tier":1,"depends_on":[],"hosts":["db-1"]}}]}}"#
        )
    };
    let file = dir.path().join("catalog.json");
    let touch = |secs: u64| {
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
            .unwrap();
    };
    std::fs::write(&file, catalog("team-a")).unwrap();
    touch(1_000);
    let cfg = PipelineConfig::load(dir.path(), None).unwrap();
    let mut p = Processor::build(&cfg).await.unwrap();
    let alert = |fp: &str, minute: i64| {
        RawRecord {
        stream: lookout::decode::Stream::Events,
        payload: format!(
            r#"{{"ts":"2025-03-04T10:{minute:02}:00Z","kind":"alert","source":"t","service":"db","severity":"critical","status":"firing","title":"{fp}","fingerprint":"{fp}"}}"#
        )
        .into_bytes(),
        meta: RecordMeta::default(),
    }
    };
    let owner = |msgs: Vec<lookout::sink::Message>| {
        let m = msgs
            .iter()
            .rfind(|m| m.topic == lookout::sink::Topic::Incidents)
            .expect("an incident update");
        serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["owner"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(owner(p.process(&[alert("a", 0)]).await.unwrap()), "team-a");
    std::fs::write(&file, catalog("team-b")).unwrap();
    touch(2_000);
    assert_eq!(owner(p.process(&[alert("b", 1)]).await.unwrap()), "team-b");
    // a broken file keeps the catalog in force
    std::fs::write(&file, "{ not json").unwrap();
    touch(3_000);
    assert_eq!(owner(p.process(&[alert("c", 2)]).await.unwrap()), "team-b");
    assert_eq!(p.stats.catalog_reloads, 1);
}

/// A record later than its window's lateness is counted, in the stats and in
/// `/metrics`, and the windows close per partition: a partition that is behind (less
/// than `[windows] idle_s`) holds them open until it catches up.
#[tokio::test]
async fn late_records_are_counted_and_slow_partitions_hold_windows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pipeline.toml"),
        "name = \"late\"\n[detection]\nlog_errors = false\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("per_minute.sql"),
        "--! kind = \"alert\"\n--! lateness = \"10s\"\n--! keys = [\"service\"]\nSELECT tumble(ts, INTERVAL '1 minute') AS ts, service, count(*) AS lines\nFROM logs GROUP BY 1, service",
    )
    .unwrap();
    let cfg = PipelineConfig::load(dir.path(), None).unwrap();
    let mut p = Processor::build(&cfg).await.unwrap();
    let health = std::sync::Arc::new(lookout::observe::Health::default());
    p.report_to(health.clone());
    let log = |partition: i32, second: i64| RawRecord {
        stream: lookout::decode::Stream::Logs,
        payload: format!(
            r#"{{"ts":"2025-03-04T10:{:02}:{:02}Z","service":"api","level":"INFO","message":"ok"}}"#,
            second / 60,
            second % 60
        )
        .into_bytes(),
        meta: RecordMeta {
            topic: "logs".into(),
            partition,
            ..Default::default()
        },
    };
    // partition 1 is at 0:55, partition 0 already at 1:20: minute 0 stays open
    p.process(&[log(1, 55), log(0, 80)]).await.unwrap();
    assert_eq!(p.stats.rule_alerts, 0);
    // partition 1 reaches 1:20: both are past 0:60 + 10 s, minute 0 closes
    p.process(&[log(1, 80)]).await.unwrap();
    assert_eq!(p.stats.rule_alerts, 1, "minute 0 closed and its row became an alert");
    assert_eq!(p.stats.late_records, 0);
    // a row for minute 0 now is late
    p.process(&[log(0, 30)]).await.unwrap();
    assert_eq!(p.stats.late_records, 1);
    assert!(health.render().contains("lookout_late_records_total 1\n"));
}

/// A pipeline stopped at any point and resumed from its checkpoint publishes exactly
/// what it would have without the stop: open windows, detectors, templates, incidents
/// and trend periods all go on. Three stops: before the first fault, inside the first
/// incident, and during the second hour.
#[tokio::test]
async fn every_pipeline_resumed_from_checkpoints_publishes_the_same() {
    for name in [
        "default",
        "http_errors",
        "log_volume",
        "latency_saturation",
        "deploy_errors",
    ] {
        let dir = repo().join("pipelines").join(name);
        let state = tempfile::tempdir().unwrap();
        let want = run(&dir).await;
        let got = run_with_restarts(&dir, &[7, 24, 41], state.path()).await;
        if got != want {
            let first = got.lines().zip(want.lines()).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "{name}: resumed output differs at line {}\n got: {}\nwant: {}",
                first + 1,
                got.lines().nth(first).unwrap_or("<end>"),
                want.lines().nth(first).unwrap_or("<end>")
            );
        }
    }
}

/// A checkpoint made by other pipeline files, or of another cluster or group, is not used; a broken one fails start
/// naming the file.
#[tokio::test]
async fn a_checkpoint_of_other_files_is_ignored_and_a_broken_one_fails_start() {
    let dir = repo().join("pipelines/http_errors");
    let cfg = PipelineConfig::load(&dir, None).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut p = Processor::build(&cfg).await.unwrap();
    let offsets: checkpoint::Offsets = [(("logs".to_string(), 0), 42)].into();
    let file = state.path().join(checkpoint::FILE);
    let hash = pipeline_hash(&dir);
    for (hash, scope, what) in [
        ("another-hash", "c/g", "other files"),
        (hash.as_str(), "another-cluster/g", "another cluster"),
        (hash.as_str(), "c/another-group", "another group"),
    ] {
        Checkpoint::new(&cfg.spec.name, hash, scope, offsets.clone(), p.state().unwrap())
            .save(&file)
            .unwrap();
        let resumed = p.checkpoint_to(state.path(), Duration::from_secs(5), "c/g").unwrap();
        assert!(resumed.is_empty(), "state of {what} is not restored: {resumed:?}");
    }
    Checkpoint::new(&cfg.spec.name, &hash, "c/g", offsets.clone(), p.state().unwrap())
        .save(&file)
        .unwrap();
    assert_eq!(
        p.checkpoint_to(state.path(), Duration::from_secs(5), "c/g").unwrap(),
        offsets
    );

    std::fs::write(&file, b"\xa1garbage").unwrap();
    let mut q = Processor::build(&cfg).await.unwrap();
    let err = q
        .checkpoint_to(state.path(), Duration::from_secs(5), "c/g")
        .unwrap_err();
    assert!(err.contains("checkpoint.cbor"), "{err}");
}
