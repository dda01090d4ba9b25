//! The built-in scenario: a small shop (7 services, 14 hosts) with injected faults and
//! background noise, in every input encoding Lookout reads. `lookout run` writes it into
//! the embedded broker; tests and benchmarks use it as known input.
//!
//! Time is simulated: one cycle is 60 minutes and repeats with new fingerprints; the
//! first 15 minutes of a cycle are quiet, so that detectors learn what normal is.
//! * minute 19: a bad deploy of `payments` (CloudEvents); from minute 20 payments fails
//!   30% of requests, checkout and frontend feel it; Alertmanager fires HighErrorRate on
//!   payments and checkout; minute 29 a rollback (CloudEvents) ends it.
//! * minute 33–41: `redis` CPU saturation; HighCPU on redis-1 and HighLatency on
//!   inventory (via PagerDuty Events v2 for the latter).
//! * noise: a flapping DiskSpaceLow on a random host, a failed housekeeping job.
//!
//! Logs are JSON, or logfmt for the Go services; metrics are JSON, Influx line protocol
//! for the databases (Telegraf) and Prometheus text for the frontend; changes are
//! generic JSON. Everything is a pure function of the seed and the minute, so the same
//! seed gives the same records.

use serde_json::json;

use crate::decode::time::format_ms;
use crate::decode::Stream;

/// One generated record.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub ts: i64,
    pub stream: Stream,
    pub payload: Vec<u8>,
}

/// (name, tier, depends_on, go service)
pub const SERVICES: [(&str, u8, &[&str], bool); 7] = [
    ("frontend", 1, &["checkout", "catalog"], false),
    ("checkout", 1, &["payments", "inventory", "postgres"], false),
    ("catalog", 2, &["postgres", "redis"], true),
    ("payments", 1, &["postgres"], false),
    ("inventory", 2, &["redis"], true),
    ("postgres", 1, &[], false),
    ("redis", 2, &[], false),
];

pub const CYCLE_MINUTES: i64 = 60;
/// Faults start this many minutes into a cycle, after the detectors have learnt normal.
const FAULT_OFFSET: i64 = 15;

/// The catalog of the built-in scenario, as JSON (`lookout.catalog.v1`).
pub fn catalog_json() -> serde_json::Value {
    json!({
        "schema": "lookout.catalog.v1",
        "services": SERVICES.iter().map(|(name, tier, deps, _)| json!({
            "name": name,
            "owner": format!("team-{name}"),
            "tier": tier,
            "depends_on": deps,
            "hosts": [format!("{name}-1"), format!("{name}-2")],
        })).collect::<Vec<_>>(),
    })
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub struct Scenario {
    seed: u64,
    start_ms: i64,
    log_lines: u32,
}

/// Routine log lines a host writes a minute, by default.
pub const LOG_LINES: u32 = 3;

impl Generated {
    /// The record as a consumer would hand it over: its time as the Kafka timestamp,
    /// no topic, partition or offset.
    pub fn record(self) -> crate::source::RawRecord {
        crate::source::RawRecord {
            stream: self.stream,
            payload: self.payload,
            meta: crate::source::RecordMeta {
                kafka_ts: Some(self.ts),
                ..Default::default()
            },
        }
    }
}

impl Scenario {
    pub fn new(seed: u64, start_ms: i64) -> Scenario {
        Scenario {
            seed,
            start_ms: start_ms - start_ms.rem_euclid(60_000),
            log_lines: LOG_LINES,
        }
    }

    /// The same shop, each host writing `n` routine log lines a minute instead of 3, and
    /// its fault logs (errors of the bad deploy, slow redis warnings) in proportion:
    /// a busier shop. Metrics (one scrape a host a minute) and events do not change.
    pub fn with_log_lines(self, n: u32) -> Scenario {
        Scenario {
            log_lines: n.max(1),
            ..self
        }
    }

    /// Every record of simulated minute `m`, in time order.
    pub fn minute(&self, m: i64) -> Vec<Generated> {
        let mut rng = Rng(self.seed ^ (m as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let cycle = m.div_euclid(CYCLE_MINUTES);
        let cm = m.rem_euclid(CYCLE_MINUTES);
        let f = cm - FAULT_OFFSET;
        let t0 = self.start_ms + m * 60_000;
        let mut out = Vec::new();
        let bad_deploy = (5..14).contains(&f);
        let redis_hot = (18..26).contains(&f);

        for (si, (svc, _, _, go)) in SERVICES.iter().enumerate() {
            for h in 1..=2 {
                let host = format!("{svc}-{h}");
                let ts = t0 + (si as i64 * 2 + h) * 1_700;
                let mut cpu = 0.35 + 0.1 * ((m as f64) / 90.0).sin() + 0.05 * rng.unit();
                let mut latency = 40.0 + 10.0 * rng.unit();
                let mut errors = 0.002 + 0.002 * rng.unit();
                if bad_deploy && (*svc == "payments" || *svc == "checkout" || *svc == "frontend") {
                    errors = if *svc == "payments" { 0.3 } else { 0.12 } + 0.02 * rng.unit();
                }
                if redis_hot && *svc == "redis" && h == 1 {
                    cpu = 0.97 + 0.02 * rng.unit();
                }
                if redis_hot && (*svc == "inventory" || *svc == "catalog") {
                    latency = 900.0 + 200.0 * rng.unit();
                }
                out.push(metric_record(
                    svc,
                    &host,
                    ts,
                    &[
                        ("cpu_usage", cpu),
                        ("latency_p95_ms", latency),
                        ("error_ratio", errors),
                        ("req_rate", 50.0 + 10.0 * rng.unit()),
                    ],
                ));
                let lines = i64::from(self.log_lines);
                let spacing = 51_000 / lines;
                for k in 0..lines {
                    let lts = ts + 5_000 + k * spacing + rng.below(spacing.min(3_000) as u64) as i64;
                    let ms = 20 + rng.below(80);
                    let msg = match k % 3 {
                        0 => format!("GET /api/v1/{svc}/{} 200 {ms}ms", rng.below(90_000)),
                        1 => format!("Health check passed in {}ms", rng.below(30)),
                        _ => format!("Processed {} items in {ms}ms", rng.below(500)),
                    };
                    out.push(log_record(svc, &host, lts, "INFO", &msg, *go));
                }
                if bad_deploy && (*svc == "payments" || *svc == "checkout") {
                    // four errors a minute at 3 routine lines
                    let errors = (lines * 4 / 3).max(1);
                    for k in 0..errors {
                        let lts = ts + 2_000 + k * (44_000 / errors);
                        let msg = if *svc == "payments" {
                            format!("Payment authorization failed for order ord_{:x}: NullPointerException in CardTokenizer", rng.next() >> 40)
                        } else {
                            format!(
                                "Call to payments failed: upstream returned 500 after {}ms",
                                100 + rng.below(400)
                            )
                        };
                        out.push(log_record(svc, &host, lts, "ERROR", &msg, *go));
                    }
                }
                if redis_hot && *svc == "inventory" {
                    // one warning a minute at 3 routine lines
                    let warnings = (lines / 3).max(1);
                    for k in 0..warnings {
                        out.push(log_record(
                            svc,
                            &host,
                            ts + 9_000 + k * (48_000 / warnings),
                            "WARN",
                            &format!(
                                "Slow response from redis: {}ms for GET stock:{}",
                                800 + rng.below(400),
                                rng.below(9999)
                            ),
                            *go,
                        ));
                    }
                }
            }
        }

        // changes: the bad deploy and its rollback, a routine config change
        if f == 4 {
            out.push(deploy(
                t0 + 12_345,
                "payments",
                &format!("1.{}.1", 14 + cycle),
                cycle,
                false,
            ));
        }
        if f == 14 {
            out.push(deploy(
                t0 + 31_000,
                "payments",
                &format!("1.{}.0", 14 + cycle),
                cycle,
                true,
            ));
        }
        if f == 10 {
            let ts = t0 + 40_000;
            out.push(Generated {
                ts,
                stream: Stream::Events,
                payload: json!({"ts": format_ms(ts), "kind": "change", "source": "launchdarkly", "service": "catalog",
                    "title": "flag new-search-ranking set to 10%", "fingerprint": format!("change-flag-{cycle}"),
                    "labels": {"flag": "new-search-ranking", "rollout_pct": "10"}})
                .to_string()
                .into_bytes(),
            });
        }

        // alerts: notified every 2 minutes while active, resolved once after
        let am = |name: &str, svc: &str, host: Option<&str>, sev: &str, firing: bool, summary: &str, ts: i64| {
            alertmanager_record(name, svc, host, sev, firing, summary, ts, cycle)
        };
        if (6..15).contains(&f) && f % 2 == 0 {
            out.push(am(
                "HighErrorRate",
                "payments",
                None,
                "critical",
                true,
                "payments error ratio 30% above 5%",
                t0 + 20_000,
            ));
        }
        if f == 15 {
            out.push(am(
                "HighErrorRate",
                "payments",
                None,
                "critical",
                false,
                "payments error ratio back to 0.3%",
                t0 + 20_000,
            ));
        }
        if (7..15).contains(&f) && f % 2 == 1 {
            out.push(am(
                "HighErrorRate",
                "checkout",
                None,
                "warning",
                true,
                "checkout error ratio 12% above 5%",
                t0 + 25_000,
            ));
        }
        if f == 15 {
            out.push(am(
                "HighErrorRate",
                "checkout",
                None,
                "warning",
                false,
                "checkout error ratio back to 0.4%",
                t0 + 26_000,
            ));
        }
        if (19..26).contains(&f) && f % 2 == 1 {
            out.push(am(
                "HighCPU",
                "redis",
                Some("redis-1"),
                "warning",
                true,
                "redis-1 CPU usage 98%",
                t0 + 8_000,
            ));
        }
        if f == 27 {
            out.push(am(
                "HighCPU",
                "redis",
                Some("redis-1"),
                "warning",
                false,
                "redis-1 CPU usage 41%",
                t0 + 8_000,
            ));
        }
        if f == 20 || f == 27 {
            let trigger = f == 20;
            let ts = t0 + 30_000;
            let mut body = json!({"routing_key": "R0UT1NGKEY", "event_action": if trigger { "trigger" } else { "resolve" },
                "dedup_key": format!("inventory-latency-{cycle}")});
            if trigger {
                body["payload"] = json!({"summary": "HighLatency: inventory p95 latency 1.1 s above 500 ms", "source": "inventory-1",
                    "severity": "error", "component": "inventory", "timestamp": format_ms(ts)});
            }
            out.push(Generated {
                ts,
                stream: Stream::Events,
                payload: body.to_string().into_bytes(),
            });
        }
        // noise: a flapping disk alert on a random host, a housekeeping job
        let noisy = SERVICES[(cycle as usize) % SERVICES.len()].0;
        if cm % 11 == 2 || cm % 11 == 3 {
            let firing = cm % 11 == 2;
            out.push(am(
                "DiskSpaceLow",
                noisy,
                Some(&format!("{noisy}-2")),
                "warning",
                firing,
                "disk 81% full on /var",
                t0 + 50_000,
            ));
        }
        if f == 27 {
            out.push(am(
                "KubeJobFailed",
                "postgres",
                None,
                "info",
                true,
                "job backup-verify failed",
                t0 + 55_000,
            ));
        }
        out.sort_by_key(|g| g.ts);
        out
    }
}

fn log_record(svc: &str, host: &str, ts: i64, level: &str, msg: &str, go: bool) -> Generated {
    let payload = if go {
        format!(
            "ts={} level={} service={svc} host={host} caller=handler.go:{} msg={:?}",
            format_ms(ts),
            level.to_ascii_lowercase(),
            100 + msg.len() % 300,
            msg
        )
    } else {
        json!({"ts": format_ms(ts), "service": svc, "host": host, "level": level, "message": msg,
               "logger": format!("com.shop.{svc}.Handler"), "thread": "http-nio-8080-exec-3"})
        .to_string()
    };
    Generated {
        ts,
        stream: Stream::Logs,
        payload: payload.into_bytes(),
    }
}

fn metric_record(svc: &str, host: &str, ts: i64, values: &[(&str, f64)]) -> Generated {
    let payload = match svc {
        "postgres" | "redis" => {
            let fields: Vec<String> = values.iter().map(|(n, v)| format!("{n}={v:.4}")).collect();
            format!(
                "host_stats,host={host},service={svc} {} {}",
                fields.join(","),
                ts * 1_000_000
            )
        }
        "frontend" => values
            .iter()
            .map(|(n, v)| format!("{n}{{service=\"{svc}\",host=\"{host}\"}} {v:.4} {ts}"))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => {
            let arr: Vec<_> = values
                .iter()
                .map(|(n, v)| json!({"ts": format_ms(ts), "name": n, "value": (v * 10_000.0).round() / 10_000.0, "labels": {"service": svc, "host": host}}))
                .collect();
            serde_json::Value::Array(arr).to_string()
        }
    };
    Generated {
        ts,
        stream: Stream::Metrics,
        payload: payload.into_bytes(),
    }
}

fn deploy(ts: i64, svc: &str, version: &str, cycle: i64, rollback: bool) -> Generated {
    let id = format!("argocd-{svc}-{cycle}-{}", if rollback { "rb" } else { "rel" });
    let payload = json!({"specversion": "1.0", "type": "dev.cdevents.service.deployed.0.1.0", "source": "argocd",
        "id": format!("deploy-{id}"), "time": format_ms(ts), "subject": svc,
        "data": {"version": version, "deploy_id": id, "rollback": rollback.to_string(), "author": "ci-bot"}});
    Generated {
        ts,
        stream: Stream::Events,
        payload: payload.to_string().into_bytes(),
    }
}

#[allow(clippy::too_many_arguments)] // one call site per alert kind reads better than a struct here
fn alertmanager_record(
    name: &str,
    svc: &str,
    host: Option<&str>,
    sev: &str,
    firing: bool,
    summary: &str,
    ts: i64,
    cycle: i64,
) -> Generated {
    let mut labels =
        json!({"alertname": name, "severity": sev, "job": svc, "namespace": "shop-prod", "cluster": "demo"});
    if let Some(h) = host {
        labels["instance"] = json!(format!("{h}:9100"));
    }
    let fp = format!(
        "{:016x}",
        crate::correlate::alert::fnv1a(&[name, svc, host.unwrap_or(""), &cycle.to_string()])
    );
    let alert = json!({"status": if firing { "firing" } else { "resolved" }, "labels": labels,
        "annotations": {"summary": summary}, "startsAt": format_ms(ts - 30_000),
        "endsAt": if firing { "0001-01-01T00:00:00Z".to_string() } else { format_ms(ts) }, "fingerprint": fp});
    let payload = json!({"version": "4", "receiver": "lookout", "status": if firing { "firing" } else { "resolved" }, "alerts": [alert]});
    Generated {
        ts,
        stream: Stream::Events,
        payload: payload.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Decoder;
    use crate::source::RawRecord;

    #[test]
    fn every_generated_record_decodes() {
        let s = Scenario::new(7, 1_741_046_400_000);
        let d = Decoder::default();
        let recs: Vec<RawRecord> = (0..CYCLE_MINUTES)
            .flat_map(|m| s.minute(m))
            .map(Generated::record)
            .collect();
        let out = d.decode(&recs).unwrap();
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters.first());
        assert!(out.logs.num_rows() > 1000 && out.metrics.num_rows() > 1000 && out.events.num_rows() > 20);
        assert_eq!(
            s.minute(3),
            Scenario::new(7, 1_741_046_400_000).minute(3),
            "deterministic"
        );
    }

    #[test]
    fn a_busier_shop_writes_more_logs_and_the_same_metrics_and_events() {
        let count = |s: &Scenario, m: i64, stream: Stream, level: &str| {
            s.minute(m)
                .iter()
                .filter(|g| g.stream == stream && String::from_utf8_lossy(&g.payload).contains(level))
                .count()
        };
        let (quiet, busy) = (Scenario::new(7, 0), Scenario::new(7, 0).with_log_lines(600));
        // minute 20 of a cycle: payments' bad deploy is failing requests
        let bad = 20;
        assert_eq!(count(&quiet, bad, Stream::Logs, ""), 14 * 3 + 4 * 4);
        assert_eq!(count(&busy, bad, Stream::Logs, ""), 14 * 600 + 4 * 800);
        assert_eq!(
            count(&busy, bad, Stream::Logs, "\"ERROR\""),
            4 * 800,
            "errors in proportion"
        );
        for stream in [Stream::Metrics, Stream::Events] {
            for m in [bad, 36] {
                assert_eq!(
                    count(&quiet, m, stream, ""),
                    count(&busy, m, stream, ""),
                    "{stream:?} {m}"
                );
            }
        }
        // redis is hot in minute 36: inventory's warnings, one per 3 routine lines
        assert_eq!(count(&busy, 36, Stream::Logs, "Slow response"), 2 * 200);
        let ts: Vec<i64> = busy.minute(bad).iter().map(|g| g.ts).collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "in time order");
        assert!(
            ts.iter().all(|t| (0..90_000).contains(&(t - bad * 60_000))),
            "within the minute, give or take"
        );
    }
}
