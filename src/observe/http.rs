//! A minimal read-only HTTP/1.1 server for `/metrics`, `/health`, `/ready`, the web view
//! (`/`) and its data (`/api/state`): one
//! request per connection, GET only, requests over 8 KiB refused, five seconds to send
//! one. It runs on a thread of its own with blocking sockets, so that a slow scraper
//! never holds up the pipeline's runtime. Bound to loopback by default (`--http`). With
//! a [`Token`], everything but `/health` and `/ready` (what orchestrators probe) asks for
//! `Authorization: Bearer <token>` (Prometheus: `authorization.credentials_file`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::Health;

/// The live web view: one page, no assets from anywhere else; it polls `/api/state`.
const PAGE: &str = include_str!("web/index.html");

/// A bearer token for the HTTP endpoints. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from a file's first line (a mounted secret), trimmed; an empty one is an
    /// error, not "no token".
    pub fn from_file(path: &std::path::Path) -> Result<Token, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Token::new(text.lines().next().unwrap_or("")).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn new(token: &str) -> Result<Token, String> {
        let t = token.trim();
        if t.is_empty() {
            return Err("the HTTP token is empty".into());
        }
        Ok(Token(t.to_string()))
    }

    /// Whether a request's head carries this token, compared in constant time.
    fn admits(&self, head: &str) -> bool {
        let given = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("authorization")
                .then(|| v.trim().strip_prefix("Bearer ").unwrap_or("").trim())
        });
        let (a, b) = (given.unwrap_or("").as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
    }
}

/// Serves on a new thread for as long as the process lives.
pub fn spawn(listener: TcpListener, health: Arc<Health>, token: Option<Token>) -> std::io::Result<()> {
    std::thread::Builder::new().name("http".into()).spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => {
                    if let Err(e) = answer(stream, &health, token.as_ref()) {
                        tracing::debug!(error = %e, "http request failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "http accept failed"),
            }
        }
    })?;
    Ok(())
}

fn answer(mut stream: TcpStream, health: &Health, token: Option<&Token>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        if n == buf.len() {
            respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "too large\n",
            )?;
            // Read what the client is still sending, so that closing does not reset the
            // connection before it reads the answer.
            stream.shutdown(std::net::Shutdown::Write)?;
            let _ = std::io::copy(&mut (&mut stream).take(1 << 20), &mut std::io::sink());
            return Ok(());
        }
        let read = stream.read(&mut buf[n..])?;
        if read == 0 {
            return Ok(());
        }
        n += read;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let probe = matches!(path, "/health" | "/ready");
    if token.is_some_and(|t| !probe && !t.admits(&head)) {
        let head = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nunauthorized\n";
        stream.write_all(head.as_bytes())?;
        return stream.flush();
    }
    match (method, path) {
        ("GET", "/metrics") => respond(
            &mut stream,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &health.render(),
        ),
        ("GET", "/") => respond(&mut stream, "200 OK", "text/html; charset=utf-8", PAGE),
        ("GET", "/api/state") => respond(&mut stream, "200 OK", "application/json", &health.board()),
        ("GET", "/health") => respond(&mut stream, "200 OK", "text/plain", "ok\n"),
        ("GET", "/ready") if health.ready() => respond(&mut stream, "200 OK", "text/plain", "ready\n"),
        ("GET", "/ready") => respond(&mut stream, "503 Service Unavailable", "text/plain", "not ready\n"),
        ("GET", _) => respond(&mut stream, "404 Not Found", "text/plain", "not found\n"),
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn endpoints_answer_and_readiness_follows_the_pipeline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Arc::new(Health::default());
        spawn(listener, health.clone(), None).unwrap();
        assert!(get(addr, "GET /health HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        assert!(get(addr, "GET /ready HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503"));
        let mut snap = super::super::Snapshot::default();
        snap.stats.logs = 7;
        snap.open_incidents = 2;
        snap.models = vec![("log_patterns", true), ("service_signals", false)];
        health.publish(snap);
        assert!(get(addr, "GET /ready HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(metrics.contains("Content-Type: text/plain; version=0.0.4"), "{metrics}");
        assert!(
            metrics.contains("\nlookout_records_total{stream=\"logs\"} 7\n"),
            "{metrics}"
        );
        assert!(metrics.contains("\nlookout_open_incidents 2\n"), "{metrics}");
        // the batch histogram's buckets are cumulative
        health.observe_batch(0.02);
        health.observe_batch(3.0);
        health.set_lag(vec![("logs".into(), 1, 42)]);
        let metrics = get(addr, "GET /metrics HTTP/1.1\r\n\r\n");
        for line in [
            "lookout_batch_duration_seconds_bucket{le=\"0.01\"} 0\n",
            "lookout_batch_duration_seconds_bucket{le=\"0.025\"} 1\n",
            "lookout_batch_duration_seconds_bucket{le=\"5\"} 2\n",
            "lookout_batch_duration_seconds_count 2\n",
            "lookout_consumer_lag_records{topic=\"logs\",partition=\"1\"} 42\n",
        ] {
            assert!(metrics.contains(line), "{line}{metrics}");
        }
        assert!(
            metrics.contains("\nlookout_model_loaded{model=\"service_signals\"} 0\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("# TYPE lookout_dead_letters_total counter"),
            "{metrics}"
        );
        let page = get(addr, "GET / HTTP/1.1\r\n\r\n");
        assert!(page.contains("text/html") && page.contains("/api/state"), "{page}");
        let state = get(addr, "GET /api/state HTTP/1.1\r\n\r\n");
        assert!(
            state.contains("application/json") && state.contains("\"incidents\":[]"),
            "{state}"
        );
        health.set_board(None, r#"{"incidents":[{"incident_id":"inc-1"}]}"#.into());
        assert!(get(addr, "GET /api/state HTTP/1.1\r\n\r\n").contains("inc-1"));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get(addr, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(get(addr, &huge).starts_with("HTTP/1.1 431"));
    }

    #[test]
    fn a_token_guards_everything_but_the_probes_and_never_shows() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let token = Token::new(" s3cret\n").unwrap();
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        spawn(listener, Arc::new(Health::default()), Some(token)).unwrap();
        for path in ["/metrics", "/", "/api/state"] {
            let r = get(addr, &format!("GET {path} HTTP/1.1\r\n\r\n"));
            assert!(
                r.starts_with("HTTP/1.1 401") && r.contains("WWW-Authenticate: Bearer"),
                "{r}"
            );
            let r = get(
                addr,
                &format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer s3creT\r\n\r\n"),
            );
            assert!(r.starts_with("HTTP/1.1 401"), "{r}");
            let r = get(
                addr,
                &format!("GET {path} HTTP/1.1\r\nauthorization: Bearer s3cret\r\n\r\n"),
            );
            assert!(r.starts_with("HTTP/1.1 200"), "{path}: {r}");
            assert!(!r.contains("s3cret"), "{r}");
        }
        assert!(get(addr, "GET /health HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        assert!(get(addr, "GET /ready HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503"));
        assert!(Token::new("  ").is_err());
    }
}
