//! Helpers shared by the integration tests: a mock Kafka cluster per test (so topic
//! names never collide), producing, consuming until a condition holds, locating
//! ../shared, and running the `lookout` binary.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub mod faults;

pub use lookout::source::embedded::EmbeddedBroker;

pub const INPUTS: [&str; 3] = ["logs", "metrics", "events"];
pub const OUTPUTS: [&str; 4] = ["incidents", "anomalies", "trend-reports", "dead-letters"];

pub fn broker() -> EmbeddedBroker {
    let topics: Vec<&str> = INPUTS.iter().chain(OUTPUTS.iter()).copied().collect();
    EmbeddedBroker::start(&topics, 2).expect("mock cluster starts")
}

pub fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    c
}

pub fn produce(bootstrap: &str, topic: &str, payloads: &[Vec<u8>]) {
    let p: BaseProducer = client(bootstrap)
        .set("message.max.bytes", "4000000")
        .create()
        .expect("producer");
    for (i, pl) in payloads.iter().enumerate() {
        let key = i.to_string();
        let mut rec = BaseRecord::to(topic).payload(pl).key(&key);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    rec = r;
                    p.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
    p.flush(Duration::from_secs(10)).expect("flush");
}

/// A consumed output message.
#[derive(Debug, Clone)]
pub struct Out {
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Out {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("JSON output")
    }
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
}

/// Reads `topic` from the start until `done` holds on everything read, or `timeout`.
pub fn consume_until(bootstrap: &str, topic: &str, timeout: Duration, done: impl Fn(&[Out]) -> bool) -> Vec<Out> {
    let group = format!("verify-{topic}-{}", std::process::id());
    let c: BaseConsumer = client(bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < timeout && !done(&out) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(Out {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    out
}

/// `../shared` beside the repository, if it is there.
pub fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if p.join("data").is_dir() {
        Some(p)
    } else {
        eprintln!("SKIPPED: ../shared/data is not beside the repository");
        None
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Replays `../shared/data/scenarios/<name>` with the `lookout` binary and returns the
/// shared scorer's JSON for it.
pub fn replay_and_score(shared: &std::path::Path, name: &str) -> serde_json::Value {
    use std::process::Command;
    let dir = shared.join("data/scenarios").join(name);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("incidents.jsonl");
    let status = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .current_dir(repo())
        .args(["replay", "--input"])
        .arg(&dir)
        .arg("--output")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "replay of {name} failed");
    let s = Command::new("python3")
        .arg(shared.join("tools/score_incidents.py"))
        .arg("--truth")
        .arg(dir.join("truth.json"))
        .arg("--incidents")
        .arg(&out)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    serde_json::from_slice(&s.stdout).unwrap()
}

/// Runs the `lookout` binary in the repository: exit code, standard output, standard error.
pub fn lookout(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("lookout runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether python3 can import a module (the independent clients' dependencies).
pub fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `lookout run` against a broker while `during` runs (a client producing and
/// reading), then stops it with SIGTERM; `during`'s result and Lookout's exit status.
pub fn while_lookout_runs<T>(
    bootstrap: &str,
    group: &str,
    during: impl FnOnce() -> T,
) -> (T, std::process::ExitStatus) {
    use std::process::{Command, Stdio};
    let state = tempfile::tempdir().expect("a state directory");
    let mut lookout = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .current_dir(repo())
        .args([
            "run",
            "--brokers",
            bootstrap,
            "--group",
            group,
            "--http",
            "off",
            "--quiet",
        ])
        .arg("--state-dir")
        .arg(state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lookout starts");
    let out = during();
    let _ = Command::new("kill").args(["-TERM", &lookout.id().to_string()]).status();
    (out, lookout.wait().expect("lookout exits"))
}

/// Runs one of the independent Python clients in `tests/clients/` with its arguments and
/// returns the JSON object it prints.
pub fn python_client(script: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .arg(repo().join("tests/clients").join(script))
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the client prints one JSON object")
}

/// Headless Chromium (Debian's `chromium`, which `.ci/run` installs); None, saying the
/// test is skipped, where there is none (a failure under `LOOKOUT_CI`).
pub fn browser() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("LOOKOUT_CI").is_none(),
            "no chromium, and LOOKOUT_CI is set: .ci/run installs it"
        );
        eprintln!("SKIPPED: no chromium (apt-get install chromium)");
    }
    found
}

/// Runs headless `browser` on `url` with `args` (`--dump-dom`, `--screenshot=F`).
pub fn chromium(browser: &str, args: &[&str], url: &str) -> std::process::Output {
    std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            "--window-size=1400,1400",
        ])
        .args(args)
        .arg(url)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the browser runs")
}
