//! Incident analytics for the trend reports: how operations are doing, per period.
//!
//! Fed with what the pipeline already has (the alerts that went into correlation, the
//! incident states it published, acknowledgement events), it keeps a bounded ledger of
//! incidents and counts of alerts per period, and answers for a period:
//! - **MTTD**: first evidence (the earliest `first_seen` of the incident's alerts) to
//!   the incident's `opened_at`, over incidents opened in the period;
//! - **MTTA**: `opened_at` to the first acknowledgement (a PagerDuty Events v2
//!   `acknowledge` whose `dedup_key` is one of the incident's alert fingerprints, or any
//!   event labelled `event_action = acknowledge` with an `incident_id` label), over
//!   incidents acknowledged in the period;
//! - **MTTR**: `opened_at` to `resolved_at`, over incidents resolved in the period;
//! - **MTBF per service**: the mean time between the openings of consecutive incidents
//!   that involve the service, over everything in the ledger;
//! - **noise reduction**: alert notifications in per incident opened;
//! - **noisiest sources**: the alert sources (source, service, title shape) that sent
//!   the most notifications in the period;
//! - **recurring incident types**: incidents clustered by signature (services, alert
//!   sources and title shapes, hashed into a vector) with DBSCAN from linfa, each cluster
//!   named by what most of its members share.
//!
//! Memory: at most [`MAX_INCIDENTS`] incidents (the oldest resolved go first), alert
//! counts only for periods not yet reported.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ndarray::Array2;
use serde_json::{json, Value};

use crate::correlate::{Alert, ListedAlert, Summary};
use crate::decode::time::format_ms;

/// Incidents kept for MTBF and recurring types.
pub const MAX_INCIDENTS: usize = 2000;
/// Noisiest sources listed per report.
const TOP_SOURCES: usize = 5;
/// Dimensions of the hashed signature vectors.
const DIMS: usize = 64;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Tracked {
    opened_at: i64,
    first_evidence: i64,
    acked_at: Option<i64>,
    resolved_at: Option<i64>,
    services: Vec<String>,
    fingerprints: Vec<String>,
    /// `source: title shape` of each alert.
    kinds: Vec<String>,
}

impl Tracked {
    /// Does an acknowledgement's key (an alert fingerprint or an incident id) name this
    /// incident, whose id is `id`?
    fn named_by(&self, id: &str, key: &str) -> bool {
        id == key || self.fingerprints.iter().any(|f| f == key)
    }

    /// The earliest acknowledgement at or after the opening counts.
    fn acknowledge(&mut self, ts: i64) {
        if self.acked_at.is_none_or(|a| ts < a) && ts >= self.opened_at {
            self.acked_at = Some(ts);
        }
    }
}

/// Alerts counted for one period (by its start).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct AlertCounts {
    total: u64,
    by_source: HashMap<(String, String, String), u64>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    incidents: BTreeMap<String, Tracked>,
    /// Acknowledgements not yet matched: (fingerprint or incident id, time).
    pending_acks: VecDeque<(String, i64)>,
    /// Alert counts per (period length, period start).
    alerts: BTreeMap<(i64, i64), AlertCounts>,
    /// The period lengths reports are made for.
    lengths: Vec<i64>,
    /// Kinds worked out before (not checkpointed): an update lists mostly the alerts
    /// the one before it listed.
    #[serde(skip)]
    kinds: KindCache,
}

/// An alert's kind by its title, with the source and service it was worked out for.
#[derive(Debug, Clone, Default)]
struct KindCache(HashMap<String, (String, Option<String>, String)>);

/// Titles whose kinds are kept; the cache starts again when it is full.
const KINDS_KEPT: usize = 10_000;

impl KindCache {
    /// `source: title shape`, with the alert's own service blanked too, so that one kind
    /// of failure on two services has one shape.
    fn kind(&mut self, a: &ListedAlert) -> String {
        if let Some((source, service, kind)) = self.0.get(a.title.as_str()) {
            if *source == a.source && *service == a.service {
                return kind.clone();
            }
        }
        let title = match a.service.as_deref().filter(|s| !s.is_empty()) {
            Some(svc) => a.title.replace(svc, "*"),
            None => a.title.clone(),
        };
        let kind = format!("{}: {}", a.source, title_shape(&title));
        if self.0.len() >= KINDS_KEPT {
            self.0.clear();
        }
        self.0
            .insert(a.title.clone(), (a.source.clone(), a.service.clone(), kind.clone()));
        kind
    }
}

/// A title with its numbers and quoted parts blanked: `error ratio 0.22 on web-1` →
/// `error ratio # on web-#`, so one rule's notifications are one source.
pub fn title_shape(title: &str) -> String {
    static NUM: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\b\d+(\.\d+)?").expect("static regex"));
    NUM.replace_all(title, "#").into_owned()
}

impl Ledger {
    pub fn new(lengths: Vec<i64>) -> Ledger {
        Ledger {
            lengths,
            ..Ledger::default()
        }
    }

    /// Counts alert notifications into every period length's bucket.
    pub fn observe_alerts(&mut self, alerts: &[Alert]) {
        for a in alerts {
            let source = (
                a.source.clone(),
                a.service.clone().unwrap_or_default(),
                title_shape(&a.title),
            );
            for &len in &self.lengths {
                let c = self.alerts.entry((len, a.ts.div_euclid(len) * len)).or_default();
                c.total += 1;
                *c.by_source.entry(source.clone()).or_default() += 1;
            }
        }
    }

    /// An acknowledgement of the alert `fingerprint` (or of the incident with that id).
    pub fn observe_ack(&mut self, key: &str, ts: i64) {
        if !self.ack(key, ts) {
            self.pending_acks.push_back((key.to_string(), ts));
            if self.pending_acks.len() > MAX_INCIDENTS {
                self.pending_acks.pop_front();
            }
        }
    }

    fn ack(&mut self, key: &str, ts: i64) -> bool {
        let hit = self.incidents.iter_mut().find(|(id, t)| t.named_by(id, key));
        match hit {
            Some((_, t)) => {
                t.acknowledge(ts);
                true
            }
            None => false,
        }
    }

    /// Takes a published incident state as JSON (`lookout.incident.v1`).
    pub fn observe_incident(&mut self, v: &Value) {
        if let (Some(id), Some(summary)) = (v["incident_id"].as_str(), Summary::from_json(v)) {
            self.observe_summary(id, &summary);
        }
    }

    /// Takes a published incident state, as the correlator summarised it.
    pub fn observe_summary(&mut self, id: &str, s: &Summary) {
        let first_evidence = s
            .alerts
            .iter()
            .map(|a| a.first_seen)
            .min()
            .unwrap_or(s.opened_at)
            .min(s.opened_at);
        let t = self.incidents.entry(id.to_string()).or_default();
        t.opened_at = s.opened_at;
        t.first_evidence = first_evidence;
        t.resolved_at = s.resolved_at;
        t.services.clone_from(&s.services);
        t.fingerprints = s.alerts.iter().map(|a| a.fingerprint.clone()).collect();
        t.kinds = s.alerts.iter().map(|a| self.kinds.kind(a)).collect();
        // an acknowledgement still pending matched no incident when it came, so only this
        // one can have become its match
        self.pending_acks.retain(|(key, ts)| {
            let mine = t.named_by(id, key);
            if mine {
                t.acknowledge(*ts);
            }
            !mine
        });
        if self.incidents.len() > MAX_INCIDENTS {
            let oldest = self
                .incidents
                .iter()
                .filter(|(_, t)| t.resolved_at.is_some())
                .min_by_key(|(_, t)| t.opened_at)
                .or_else(|| self.incidents.iter().min_by_key(|(_, t)| t.opened_at))
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                self.incidents.remove(&id);
            }
        }
    }

    /// The operations part of the report for `[start, start + len)`; forgets that
    /// period's alert counts.
    pub fn report(&mut self, len: i64, start: i64) -> Value {
        let end = start + len;
        let within = |t: i64| t >= start && t < end;
        let counts = self.alerts.remove(&(len, start)).unwrap_or_default();
        // periods before this one will not be reported any more
        self.alerts.retain(|&(l, s), _| l != len || s > start);
        let opened: Vec<&Tracked> = self.incidents.values().filter(|t| within(t.opened_at)).collect();
        let mean_s = |v: Vec<i64>| -> Value {
            if v.is_empty() {
                Value::Null
            } else {
                json!(round(v.iter().sum::<i64>() as f64 / v.len() as f64 / 1000.0))
            }
        };
        let detect: Vec<i64> = opened.iter().map(|t| t.opened_at - t.first_evidence).collect();
        let ack: Vec<i64> = self
            .incidents
            .values()
            .filter_map(|t| t.acked_at.filter(|a| within(*a)).map(|a| a - t.opened_at))
            .collect();
        let repair: Vec<i64> = self
            .incidents
            .values()
            .filter_map(|t| t.resolved_at.filter(|r| within(*r)).map(|r| r - t.opened_at))
            .collect();
        let (acked, resolved) = (ack.len(), repair.len());
        let mut sources: Vec<_> = counts.by_source.into_iter().collect();
        sources.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let noisiest: Vec<Value> = sources
            .iter()
            .take(TOP_SOURCES)
            .map(|((source, service, title), n)| {
                json!({"source": source, "service": service, "title": title, "alerts": n})
            })
            .collect();
        json!({
            "incidents_opened": opened.len(),
            "incidents_resolved": resolved,
            "incidents_open_at_end": self.incidents.values()
                .filter(|t| t.opened_at < end && t.resolved_at.is_none_or(|r| r >= end)).count(),
            "alerts_in": counts.total,
            "noise_reduction": (!opened.is_empty()).then(|| round(counts.total as f64 / opened.len() as f64)),
            "mttd_s": mean_s(detect),
            "mtta_s": mean_s(ack),
            "mtta_note": (acked == 0).then_some("no acknowledgements in this period"),
            "mttr_s": mean_s(repair),
            "mtbf_s": self.mtbf(end),
            "noisiest_sources": noisiest,
            "recurring": self.recurring(end),
        })
    }

    /// Per service with two incidents or more opened before `end`.
    fn mtbf(&self, end: i64) -> Value {
        let mut opens: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for t in self.incidents.values().filter(|t| t.opened_at < end) {
            for s in &t.services {
                opens.entry(s).or_default().push(t.opened_at);
            }
        }
        let mut out = serde_json::Map::new();
        for (service, mut v) in opens {
            if v.len() < 2 {
                continue;
            }
            v.sort_unstable();
            let gaps = (v[v.len() - 1] - v[0]) as f64 / (v.len() - 1) as f64;
            out.insert(
                service.to_string(),
                json!({"incidents": v.len(), "mtbf_s": round(gaps / 1000.0)}),
            );
        }
        Value::Object(out)
    }

    /// Clusters of two or more similar incidents opened before `end`.
    fn recurring(&self, end: i64) -> Vec<Value> {
        let members: Vec<(&String, &Tracked)> = self.incidents.iter().filter(|(_, t)| t.opened_at < end).collect();
        if members.len() < 2 {
            return Vec::new();
        }
        let tokens: Vec<Vec<String>> = members.iter().map(|(_, t)| signature(t)).collect();
        let mut data = Array2::<f64>::zeros((members.len(), DIMS));
        for (i, toks) in tokens.iter().enumerate() {
            for tok in toks {
                let h = crate::correlate::alert::fnv1a(&[tok]) as usize % DIMS;
                data[[i, h]] += 1.0;
            }
            let norm = data.row(i).dot(&data.row(i)).sqrt();
            if norm > 0.0 {
                data.row_mut(i).mapv_inplace(|x| x / norm);
            }
        }
        // unit vectors: a distance of 0.6 is a cosine similarity above 0.82
        let labels = dbscan_pairs(&data, 0.6);
        let mut clusters: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, l) in labels.iter().enumerate() {
            if let Some(c) = l {
                clusters.entry(*c).or_default().push(i);
            }
        }
        let mut out: Vec<Value> = clusters
            .values()
            .map(|idx| {
                let common = |prefix: &str| -> Vec<String> {
                    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
                    for &i in idx {
                        let mut seen: Vec<&str> = tokens[i].iter().filter_map(|t| t.strip_prefix(prefix)).collect();
                        seen.dedup();
                        for t in seen {
                            *count.entry(t).or_default() += 1;
                        }
                    }
                    count
                        .into_iter()
                        .filter(|(_, n)| 2 * n >= idx.len())
                        .map(|(t, _)| t.to_string())
                        .collect()
                };
                let (services, kinds) = (common("service="), common("alert="));
                let opened: Vec<i64> = idx.iter().map(|&i| members[i].1.opened_at).collect();
                json!({
                    "name": format!("{} — {}", services.join(", "), kinds.first().cloned().unwrap_or_default()),
                    "incidents": idx.len(),
                    "services": services,
                    "alerts": kinds,
                    "first": format_ms(*opened.iter().min().unwrap_or(&0)),
                    "last": format_ms(*opened.iter().max().unwrap_or(&0)),
                    "incident_ids": idx.iter().take(10).map(|&i| members[i].0.clone()).collect::<Vec<_>>(),
                })
            })
            .collect();
        out.sort_by(|a, b| b["incidents"].as_u64().cmp(&a["incidents"].as_u64()));
        out
    }
}

/// DBSCAN with a minimum of two points (a point and one neighbour within `tolerance`),
/// as linfa's `Dbscan::params(2)` labels them: with two points every member of a cluster
/// is a core point, so the clusters are the connected components (of two rows or more)
/// of the graph joining rows within `tolerance`, numbered in the order of their first
/// row. Identical rows (incidents of one kind have the same signature) are compared once,
/// so the work is quadratic in the distinct signatures only; linfa's k-d tree, in these 64
/// dimensions, compared every pair and sorted a heap for each row, which took most of
/// the pipeline's time once the ledger held its 2,000 incidents.
fn dbscan_pairs(rows: &Array2<f64>, tolerance: f64) -> Vec<Option<usize>> {
    let mut distinct: HashMap<Vec<u64>, usize> = HashMap::new();
    let mut of_row = Vec::with_capacity(rows.nrows());
    let mut firsts = Vec::new();
    for (i, row) in rows.rows().into_iter().enumerate() {
        let bits: Vec<u64> = row.iter().map(|x| x.to_bits()).collect();
        let next = distinct.len();
        let d = *distinct.entry(bits).or_insert(next);
        if d == next {
            firsts.push(i);
        }
        of_row.push(d);
    }
    let mut parent: Vec<usize> = (0..firsts.len()).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut linked = vec![false; firsts.len()];
    let limit = tolerance * tolerance;
    for a in 0..firsts.len() {
        for b in a + 1..firsts.len() {
            let (ra, rb) = (rows.row(firsts[a]), rows.row(firsts[b]));
            let d: f64 = ra.iter().zip(rb.iter()).map(|(x, y)| (x - y) * (x - y)).sum();
            if d <= limit {
                let (x, y) = (root(&mut parent, a), root(&mut parent, b));
                parent[x.max(y)] = x.min(y);
                linked[a] = true;
                linked[b] = true;
            }
        }
    }
    let mut copies = vec![0usize; firsts.len()];
    for &d in &of_row {
        copies[d] += 1;
    }
    let mut ids: HashMap<usize, usize> = HashMap::new();
    of_row
        .iter()
        .map(|&d| {
            if !linked[d] && copies[d] < 2 {
                return None;
            }
            let r = root(&mut parent, d);
            let next = ids.len();
            Some(*ids.entry(r).or_insert(next))
        })
        .collect()
}

/// What makes two incidents the same kind: their services and their alerts' sources and
/// title shapes.
fn signature(t: &Tracked) -> Vec<String> {
    let mut v: Vec<String> = t.services.iter().map(|s| format!("service={s}")).collect();
    let mut kinds: Vec<String> = t.kinds.iter().map(|k| format!("alert={k}")).collect();
    kinds.sort();
    kinds.dedup();
    v.extend(kinds);
    v
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::time::parse_str;
    use crate::decode::{Severity, Status};

    fn incident(id: &str, opened: &str, resolved: Option<&str>, service: &str, fp: &str, first: &str) -> Value {
        json!({
            "incident_id": id, "opened_at": opened, "resolved_at": resolved, "services": [service],
            "alerts": [{"fingerprint": fp, "source": "rule:high_error_ratio",
                        "title": format!("{service}: error ratio 0.3 on {service}-1"), "first_seen": first}],
        })
    }

    fn alert(source: &str, ts: i64) -> Alert {
        Alert {
            fingerprint: "f".into(),
            source: source.into(),
            service: Some("web".into()),
            host: None,
            severity: Severity::Critical,
            status: Status::Firing,
            title: format!("latency {ts} ms"),
            ts,
            labels: vec![],
        }
    }

    #[test]
    fn mean_times_and_noise_per_period() {
        let hour = 3_600_000;
        let mut l = Ledger::new(vec![hour]);
        let t0 = parse_str("2025-03-04T10:00:00Z").unwrap();
        l.observe_alerts(&(0..30).map(|i| alert("nagios", t0 + i * 1000)).collect::<Vec<_>>());
        l.observe_alerts(&[alert("alertmanager", t0 + 5000), alert("nagios", t0 + hour + 1)]);
        // acknowledged before the incident is seen: kept until it is
        l.observe_ack("fp-a", parse_str("2025-03-04T10:12:00Z").unwrap());
        l.observe_incident(&incident(
            "a",
            "2025-03-04T10:10:00Z",
            Some("2025-03-04T10:40:00Z"),
            "web",
            "fp-a",
            "2025-03-04T10:08:00Z",
        ));
        l.observe_incident(&incident(
            "b",
            "2025-03-04T10:20:00Z",
            None,
            "web",
            "fp-b",
            "2025-03-04T10:19:00Z",
        ));
        let r = l.report(hour, t0);
        assert_eq!(r["incidents_opened"], 2);
        assert_eq!(r["alerts_in"], 31);
        assert_eq!(r["noise_reduction"], 15.5);
        assert_eq!(r["mttd_s"], 90.0); // (120 + 60) / 2
        assert_eq!(r["mtta_s"], 120.0);
        assert_eq!(r["mttr_s"], 1800.0);
        assert_eq!(r["incidents_open_at_end"], 1);
        assert_eq!(r["mtbf_s"]["web"]["mtbf_s"], 600.0);
        assert_eq!(r["noisiest_sources"][0]["source"], "nagios");
        assert_eq!(r["noisiest_sources"][0]["alerts"], 30);
        assert_eq!(r["noisiest_sources"][0]["title"], "latency # ms");
        let recurring = r["recurring"].as_array().unwrap();
        assert_eq!(recurring.len(), 1, "{recurring:?}");
        assert_eq!(recurring[0]["incidents"], 2);
        assert_eq!(recurring[0]["services"], json!(["web"]));
        // the next hour has its own counts, and says there were no acknowledgements
        let r = l.report(hour, t0 + hour);
        assert_eq!(r["alerts_in"], 1);
        assert_eq!(r["noise_reduction"], Value::Null);
        assert_eq!(r["mtta_s"], Value::Null);
        assert_eq!(r["mtta_note"], "no acknowledgements in this period");
    }

    #[test]
    fn title_shapes_blank_numbers_but_not_names() {
        assert_eq!(
            title_shape("p95 latency 0.08s above 1.5s on web-12"),
            "p95 latency #s above #s on web-#"
        );
    }

    /// The same labels as linfa's DBSCAN with two points, on signatures with repeats,
    /// near neighbours, chains and loners.
    #[test]
    fn pairwise_dbscan_labels_as_linfa_does() {
        use linfa::prelude::ParamGuard;
        use linfa::traits::Transformer;
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for trial in 0..20 {
            let n = 5 + trial * 7;
            let mut data = Array2::<f64>::zeros((n, DIMS));
            for i in 0..n {
                // a few kinds of signature, some repeated exactly, some with a token more
                let kind = next() % (2 + trial % 6);
                for t in 0..3 {
                    data[[i, (kind * 5 + t) % DIMS]] += 1.0;
                }
                if next() % 3 == 0 {
                    data[[i, next() % DIMS]] += 1.0;
                }
                let norm = data.row(i).dot(&data.row(i)).sqrt();
                data.row_mut(i).mapv_inplace(|x| x / norm);
            }
            let linfa: Vec<Option<usize>> = linfa_clustering::Dbscan::params(2)
                .tolerance(0.6)
                .check()
                .unwrap()
                .transform(&data)
                .to_vec();
            assert_eq!(dbscan_pairs(&data, 0.6), linfa, "trial {trial}");
            assert!(linfa.iter().any(Option::is_some), "trial {trial} has clusters");
        }
    }

    #[test]
    fn different_incidents_do_not_cluster() {
        let mut l = Ledger::new(vec![3_600_000]);
        for (i, s) in ["web", "db", "cache"].iter().enumerate() {
            let at = format!("2025-03-04T1{i}:00:00Z");
            l.observe_incident(&incident(&format!("i{i}"), &at, None, s, &format!("f{i}"), &at));
        }
        let r = l.report(3_600_000, parse_str("2025-03-04T12:00:00Z").unwrap());
        assert_eq!(r["recurring"], json!([]));
    }
}
