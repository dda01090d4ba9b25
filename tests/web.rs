//! The live web view in a real browser: Lookout runs the embedded default, headless
//! Chromium (Debian's `chromium`, which `.ci/run` installs) opens the page, and the DOM
//! it built from `/api/state` shows the incidents (root cause, grouping graph,
//! timeline), the signal charts with their anomalies and the dead-letter count. The
//! screenshot is saved as `web-view.png` in Cargo's temporary folder for tests
//! (`target/tmp/`).

mod common;

use common::{browser, chromium};

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: lookout\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[test]
fn the_web_view_shows_incidents_in_a_browser() {
    let Some(browser) = browser() else { return };
    let models = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .current_dir(common::repo())
        .args([
            "run",
            "--speed",
            "20",
            "--duration",
            "120",
            "--http",
            "127.0.0.1:0",
            "--models",
        ])
        .arg(models.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.trim()
                .strip_prefix("web view: http://")
                .map(|a| a.trim_end_matches('/').to_string())
        })
        .expect("the web view's address is printed");
    std::thread::spawn(move || lines.for_each(drop));
    // wait for an incident with a grouping decision and a series with anomalies
    let started = Instant::now();
    let state = loop {
        let state: serde_json::Value = serde_json::from_str(&get(&addr, "/api/state")).unwrap();
        let grouped = state["incidents"].as_array().is_some_and(|i| {
            i.iter()
                .any(|i| i["explanation"].as_array().is_some_and(|e| e.len() > 1))
        });
        if grouped && state["signals"].as_array().is_some_and(|s| !s.is_empty()) {
            break state;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no incident in 90 s: {state}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let url = format!("http://{addr}/");
    let dom = chromium(browser, &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let first = &state["incidents"][0];
    for want in [
        "class=\"card incident\"",
        first["incident_id"].as_str().unwrap(),
        "Root cause",
        "Why grouped",
        "aria-label=\"grouping decisions\"",
        "Timeline",
        "aria-label=\"series chart\"",
        "class=\"anomaly\"",
        "dead letters <b id=\"dead\">0</b>",
    ] {
        assert!(dom.contains(want), "the page lacks {want:?}:\n{dom}");
    }
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-view.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(browser, &[&format!("--screenshot={}", shot.display())], &url);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 50_000,
        "screenshot {size} bytes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("screenshot: {}", shot.display());
}
