//! One incident's state, and its published form (`lookout.incident.v1`).
//!
//! State machine (event time):
//!
//! ```text
//!            alert joins / member changes           every alert resolved, or quiet period
//!   (none) ──open──▶ Open ──────updated──────▶ Open ───────────resolved──────────▶ Resolved
//!                                                                                    │
//!                      a member fires again within the reopen window ◀──reopened─────┘
//! ```
//!
//! Every transition increments `seq` and publishes the whole current state, so a
//! compacted topic keyed by `incident_id` holds the latest state of each incident.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Value};

use super::alert::{Alert, Change};
use super::{ListedAlert, Summary};
use crate::config::Catalog;
use crate::decode::time::format_ms;
use crate::decode::{Severity, Status};
use crate::sink::json_text::JsonText;

pub const SCHEMA: &str = "lookout.incident.v1";
const TIMELINE_CAP: usize = 200;
/// Members listed in a published incident: the first half of them to join (where it
/// started) and the latest half. However long an incident lives, its message stays far
/// under Kafka's default limit of 1 MB (an incident of 1,364 alerts, all listed, was
/// 1.03 MB); `alert_count` is the true count and `alerts_omitted` says how many are not
/// listed.
pub const LISTED_MEMBERS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    Open,
    Resolved,
}

/// What a transition published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Transition {
    Open,
    Updated,
    Resolved,
    Reopened,
}

impl Transition {
    fn as_str(self) -> &'static str {
        match self {
            Transition::Open => "open",
            Transition::Updated => "updated",
            Transition::Resolved => "resolved",
            Transition::Reopened => "reopened",
        }
    }
}

/// A member alert (all notifications of one fingerprint).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub alert: Alert,
    pub first_seen: i64,
    pub last_seen: i64,
    pub count: u64,
    pub join: Explanation,
    /// When its status last flipped between firing and resolved (bounded).
    pub flips: std::collections::VecDeque<i64>,
    /// Flipping too often: its flips no longer change the incident.
    pub flapping: bool,
    /// It arrived during a maintenance window of its service or host.
    pub maintenance: bool,
    /// Its entries in the last update that listed it (not checkpointed).
    #[serde(skip)]
    written: Entries,
}

/// A member's [`Written`] entries, if it has any. A copy of the member (a checkpoint's
/// snapshot of the incidents) starts without them: they are written again when needed.
#[derive(Debug, Default)]
struct Entries(std::cell::RefCell<Option<Box<Written>>>);

impl Clone for Entries {
    fn clone(&self) -> Entries {
        Entries::default()
    }
}

/// A member's entries in a published update (`alerts`, `signals`, `explanation`) as
/// JSON text, and the state they show. An update lists up to [`LISTED_MEMBERS`] members
/// and is rebuilt on every change of its incident, while most of them have not changed
/// since the update before: writing every entry again was most of the cost of
/// correlating large incidents.
#[derive(Debug, Default)]
struct Written {
    shown: Shown,
    /// The member as an update's [`Summary`] lists it.
    listed: Arc<ListedAlert>,
    /// The three entries one after the other (the signal empty unless the member is an
    /// anomaly), rewritten in place when the member changes.
    text: Vec<u8>,
    alert_end: usize,
    signal_end: usize,
}

impl Written {
    fn alert(&self) -> &[u8] {
        &self.text[..self.alert_end]
    }

    fn signal(&self) -> &[u8] {
        &self.text[self.alert_end..self.signal_end]
    }

    fn explanation(&self) -> &[u8] {
        &self.text[self.signal_end..]
    }
}

/// What of a member can change after it joined (everything else its entries show is
/// fixed when it joins: a member that joins again is a new [`Member`]).
#[derive(Debug, Default)]
struct Shown {
    title: String,
    /// Severity, status, last seen, count, flapping; `None` before anything is written.
    state: Option<(Severity, Status, i64, u64, bool)>,
}

impl Shown {
    fn state(m: &Member) -> (Severity, Status, i64, u64, bool) {
        (m.alert.severity, m.alert.status, m.last_seen, m.count, m.flapping)
    }

    /// Now shows `m`.
    fn update(&mut self, m: &Member) {
        self.title.clone_from(&m.alert.title);
        self.state = Some(Shown::state(m));
    }

    /// Whether `m` is still as shown.
    fn is(&self, m: &Member) -> bool {
        self.state == Some(Shown::state(m)) && self.title == m.alert.title
    }
}

impl Member {
    /// Its entries as of now: those written before, unless it changed since.
    fn entries(&self) -> std::cell::Ref<'_, Written> {
        let cell = &self.written.0;
        if !cell.borrow().as_ref().is_some_and(|w| w.shown.is(self)) {
            let mut slot = cell.borrow_mut();
            let written = slot.get_or_insert_with(Box::default);
            let mut w = JsonText::over(std::mem::take(&mut written.text));
            write_alert(&mut w, self);
            written.alert_end = w.end_value();
            if self.alert.source == "anomaly" {
                write_signal(&mut w, self);
            }
            written.signal_end = w.end_value();
            write_explanation(&mut w, self);
            written.text = w.into_bytes();
            written.shown.update(self);
            written.listed = Arc::new(ListedAlert {
                fingerprint: self.alert.fingerprint.clone(),
                source: self.alert.source.clone(),
                service: self.alert.service.clone(),
                title: self.alert.title.clone(),
                first_seen: self.first_seen,
            });
        }
        std::cell::Ref::map(cell.borrow(), |w| w.as_deref().expect("written above"))
    }

    #[cfg(test)]
    pub(super) fn has_entries(&self) -> bool {
        self.written.0.borrow().is_some()
    }

    /// Forgets its entries (it is no longer listed).
    fn forget_entries(&self) {
        self.written.0.take();
    }

    /// Records a firing / resolved flip; true when this flip makes the alert flapping.
    pub fn flip(&mut self, ts: i64, window_ms: i64, threshold: usize) -> bool {
        self.flips.push_back(ts);
        while self.flips.front().is_some_and(|t| ts - t > window_ms) || self.flips.len() > threshold.max(1) {
            self.flips.pop_front();
        }
        let now_flapping = self.flips.len() >= threshold.max(1);
        let started = now_flapping && !self.flapping;
        self.flapping = self.flapping || now_flapping;
        started
    }
}

/// Why an alert joined its incident.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Explanation {
    /// `opened` (it opened the incident), `same_service`, `same_host`, `topology`.
    pub rule: String,
    pub shared_keys: Vec<(String, String)>,
    /// Seconds since the incident's latest alert when this one joined.
    pub time_gap_s: f64,
    pub topology_path: Vec<String>,
    pub score: f64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Incident {
    pub id: String,
    pub seq: u64,
    pub phase: Phase,
    pub last: Transition,
    pub opened_at: i64,
    pub updated_at: i64,
    pub resolved_at: Option<i64>,
    /// The latest firing notification of any member.
    pub last_firing: i64,
    /// The latest activity of a significant member (see [`significant`]).
    pub last_significant: Option<i64>,
    pub members: BTreeMap<String, Member>,
    /// Fingerprints in the order they joined.
    pub order: Vec<String>,
    pub changes: Vec<(Change, String)>,
    pub timeline: Vec<(i64, String, String)>,
    /// A candidate is not published until it is confirmed (see [`Incident::confirmed`]).
    pub published: bool,
    /// How many timeline events are written, and their JSON (not checkpointed):
    /// events are only ever added, so each is written once.
    #[serde(skip)]
    timeline_text: std::cell::RefCell<(usize, Vec<u8>)>,
    /// Members before this place in `order` that are no longer listed have forgotten
    /// their entries (not checkpointed).
    #[serde(skip)]
    forgotten_to: std::cell::Cell<usize>,
}

impl Incident {
    pub fn open(alert: &Alert) -> Incident {
        let id = format!(
            "inc-{:016x}",
            super::alert::fnv1a(&[&alert.fingerprint, &alert.ts.to_string()])
        );
        let mut inc = Incident {
            id,
            seq: 0,
            phase: Phase::Open,
            last: Transition::Open,
            opened_at: alert.ts,
            updated_at: alert.ts,
            resolved_at: None,
            last_firing: alert.ts,
            last_significant: None,
            members: BTreeMap::new(),
            order: Vec::new(),
            changes: Vec::new(),
            timeline: Vec::new(),
            published: false,
            timeline_text: Default::default(),
            forgotten_to: Default::default(),
        };
        let join = Explanation {
            rule: "opened".into(),
            shared_keys: Vec::new(),
            time_gap_s: 0.0,
            topology_path: Vec::new(),
            score: 1.0,
        };
        inc.add(alert, join);
        inc.note(alert.ts, "first_alert", alert.title.clone());
        inc
    }

    pub fn add(&mut self, alert: &Alert, join: Explanation) {
        if !self.members.contains_key(&alert.fingerprint) {
            self.order.push(alert.fingerprint.clone());
        }
        self.members.insert(
            alert.fingerprint.clone(),
            Member {
                alert: alert.clone(),
                first_seen: alert.ts,
                last_seen: alert.ts,
                count: 1,
                join,
                flips: std::collections::VecDeque::new(),
                flapping: false,
                maintenance: alert.label("maintenance").is_some(),
                written: Default::default(),
            },
        );
        self.last_firing = self.last_firing.max(alert.ts);
        if significant(alert) {
            self.last_significant = Some(self.last_significant.map_or(alert.ts, |t| t.max(alert.ts)));
        }
    }

    pub fn note(&mut self, ts: i64, event: &'static str, detail: String) {
        if self.timeline.len() < TIMELINE_CAP {
            self.timeline.push((ts, event.to_string(), detail));
        }
    }

    /// Every alert resolved; a flapping alert never counts as resolved, so that it does
    /// not resolve and reopen the incident over and over (the quiet period ends it).
    pub fn all_resolved(&self) -> bool {
        self.members
            .values()
            .all(|m| m.alert.status == Status::Resolved && !m.flapping)
    }

    pub fn services(&self) -> Vec<String> {
        let s: BTreeSet<&str> = self
            .members
            .values()
            .filter_map(|m| m.alert.service.as_deref())
            .collect();
        s.into_iter().map(str::to_string).collect()
    }

    /// When a service's first member alert started.
    pub fn onset_of(&self, service: &str) -> Option<i64> {
        self.members
            .values()
            .filter(|m| m.alert.service.as_deref() == Some(service))
            .map(|m| m.first_seen)
            .min()
    }

    /// The latest notification of any member on `service`.
    pub fn last_activity_on(&self, service: Option<&str>) -> i64 {
        self.members
            .values()
            .filter(|m| m.alert.service.as_deref() == service)
            .map(|m| m.last_seen)
            .max()
            .unwrap_or(i64::MIN)
    }

    pub fn hosts(&self) -> Vec<String> {
        let h: BTreeSet<&str> = self.members.values().filter_map(|m| m.alert.host.as_deref()).collect();
        h.into_iter().map(str::to_string).collect()
    }

    pub fn severity(&self) -> Severity {
        self.members
            .values()
            .map(|m| m.alert.severity)
            .min()
            .unwrap_or(Severity::Info)
    }

    /// Is this more than background noise? A critical alert says so by itself; so do
    /// symptoms (errors, latency, traffic moving) on two services, since trouble spreads
    /// to callers; and so does an alert from monitoring whose service has shown symptoms
    /// for `persist_ms`. Warnings alone (blips, flapping checks, disks filling,
    /// housekeeping) and a short blip on one service never open an incident.
    pub fn confirmed(&self, now: i64, persist_ms: i64) -> Option<&'static str> {
        // Alerts marked by a maintenance window do not page by themselves.
        let members = || self.members.values().filter(|m| !m.maintenance);
        if members().any(|m| m.alert.severity == Severity::Critical && m.alert.status == Status::Firing) {
            return Some("a critical alert");
        }
        // A drop in traffic echoes a failing caller; it does not confirm trouble here.
        let symptoms: Vec<&Member> = members()
            .filter(|m| is_symptom(&m.alert) && m.alert.label("direction") != Some("down"))
            .collect();
        let mut services: Vec<&str> = symptoms.iter().filter_map(|m| m.alert.service.as_deref()).collect();
        services.sort();
        services.dedup();
        if services.len() >= 2 {
            return Some("symptoms on two services");
        }
        let lasting = symptoms
            .iter()
            .any(|m| m.alert.status == Status::Firing && now - m.first_seen >= persist_ms);
        let monitored = members().any(|m| m.alert.source != "anomaly" && m.alert.status == Status::Firing);
        (lasting && monitored).then_some("an alert with lasting symptoms")
    }

    /// When the incident was last active: the latest notification of a significant
    /// member (firing alerts are notified again while they last, anomalies on every
    /// point of their episode), or for a candidate of warnings its latest firing.
    pub fn active_at(&self) -> i64 {
        self.last_significant.unwrap_or(self.last_firing)
    }

    /// Publishes a confirmed candidate: it opens now.
    pub fn confirm(&mut self, ts: i64, why: String) {
        self.published = true;
        self.opened_at = ts;
        self.updated_at = ts;
        self.note(ts, "opened", why);
        self.transition(Transition::Open, ts);
    }

    /// Records a transition of a published incident: bumps `seq` and the update time.
    pub fn transition(&mut self, t: Transition, ts: i64) {
        if !self.published {
            return;
        }
        self.seq += 1;
        self.last = t;
        self.updated_at = self.updated_at.max(ts);
    }

    /// Each affected service's onset, whether its early symptoms are only a drop in
    /// traffic, and its first cause signal, found in one pass over the members: an update
    /// is rebuilt on every change, and root-cause ranking compares every pair of services.
    fn service_digests(&self) -> BTreeMap<&str, ServiceDigest<'_>> {
        let external = |a: &Alert| a.source != "anomaly" && !a.source.starts_with("rule:");
        let mut digests: BTreeMap<&str, ServiceDigest> = BTreeMap::new();
        for m in self.members.values() {
            let Some(s) = m.alert.service.as_deref() else { continue };
            let d = digests.entry(s).or_insert(ServiceDigest {
                onset: i64::MAX,
                first_not_drop: i64::MAX,
                cause: None,
            });
            d.onset = d.onset.min(m.first_seen);
            if !(m.alert.source == "anomaly" && m.alert.label("direction") == Some("down")) {
                d.first_not_drop = d.first_not_drop.min(m.first_seen);
            }
            let cause = (m.alert.source == "anomaly" && m.alert.label("role") == Some("cause"))
                || (m.alert.host.is_some() && m.alert.severity == Severity::Critical && external(&m.alert));
            if cause && d.cause.is_none() {
                d.cause = Some(m);
            }
        }
        digests
    }

    /// Services ranked as root-cause candidates, with evidence. Symptoms travel from a
    /// failing dependency to its callers, so the best candidate is the affected service
    /// whose callers explain the most other affected services and which depends on no
    /// affected service itself; an earlier onset, cause signals (saturation anomalies, a
    /// host-level critical alert such as an instance down) and a change just before the
    /// first symptom raise the score.
    fn root_cause(&self, catalog: &Catalog, digests: &BTreeMap<&str, ServiceDigest>) -> Vec<Value> {
        let services: Vec<&str> = digests.keys().copied().collect();
        if services.is_empty() {
            return Vec::new();
        }
        let onset = |s: &str| digests.get(s).map_or(i64::MAX, |d| d.onset);
        // A service whose early symptoms are only a drop in traffic is a victim: when a
        // caller fails, its dependencies see fewer requests. It neither explains nor
        // is explained by the others.
        let traffic_drop_only = |s: &str| {
            digests
                .get(s)
                .is_none_or(|d| d.first_not_drop > d.onset.saturating_add(ROOT_LATE_MS))
        };
        let mut by_onset: Vec<(i64, &str)> = services.iter().map(|s| (onset(s), *s)).collect();
        by_onset.sort();
        let n = services.len() as f64;
        let others = (services.len() as f64 - 1.0).max(1.0);
        let first = by_onset.first().map_or(0, |x| x.0);
        let mut ranked: Vec<(f64, &str, Vec<String>)> = by_onset
            .iter()
            .enumerate()
            .map(|(rank, (t, s))| {
                let mut evidence = vec![format!("first symptom at {}", format_ms(*t))];
                let mut score = 0.5 * (1.0 - rank as f64 / n);
                // Symptoms travel to callers afterwards; a caller that was hurting before
                // this service is not explained by it.
                let explained: Vec<&str> = services
                    .iter()
                    .copied()
                    .filter(|o| {
                        *o != *s
                            && !traffic_drop_only(o)
                            && onset(o) >= t - ROOT_SLACK_MS
                            && reaches(catalog, o, s, ROOT_DEPTH)
                    })
                    .collect();
                if traffic_drop_only(s) {
                    score -= 0.5;
                    evidence.push("only a drop in traffic, which follows a failing caller".into());
                } else if !explained.is_empty() {
                    score += explained.len() as f64 / others;
                    evidence.push(format!("affected callers {} depend on it", explained.join(", ")));
                }
                let victim_of: Vec<&str> = services
                    .iter()
                    .copied()
                    .filter(|o| {
                        *o != *s
                            && !traffic_drop_only(o)
                            && onset(o) <= *t + ROOT_SLACK_MS
                            && reaches(catalog, s, o, ROOT_DEPTH)
                    })
                    .collect();
                if !victim_of.is_empty() {
                    score -= 0.5;
                    evidence.push(format!("depends on affected {}", victim_of.join(", ")));
                }
                if *t > first + ROOT_LATE_MS {
                    score -= 1.0;
                    evidence.push(format!("joined {} min after the first symptom", (*t - first) / 60_000));
                }
                if let Some(m) = digests.get(s).and_then(|d| d.cause) {
                    score += 0.3;
                    evidence.push(format!("cause signal: {}", m.alert.title));
                }
                if self.changes.iter().any(|(c, _)| c.service.as_deref() == Some(*s)) {
                    score += 0.3;
                    evidence.push("changed shortly before the first symptom".into());
                }
                (score, *s, evidence)
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let top = ranked.first().map_or(1.0, |r| r.0.abs()).max(f64::MIN_POSITIVE);
        ranked
            .into_iter()
            .map(|(score, s, evidence)| json!({ "service": s, "score": round3(score / top), "evidence": evidence }))
            .collect()
    }

    /// P1 (page now) .. P5: severity sets the base; a tier-1 service or a blast radius of
    /// three or more services raises it one step each, a tier-3-or-lower service lowers it.
    fn priority(catalog: &Catalog, severity: Severity, services: &[String]) -> u8 {
        let base: i32 = match severity {
            Severity::Critical => 2,
            Severity::Error => 3,
            Severity::Warning => 3,
            Severity::Info => 5,
        };
        let best_tier = services.iter().filter_map(|s| catalog.service(s)).map(|s| s.tier).min();
        let mut p = base;
        match best_tier {
            Some(1) => p -= 1,
            Some(t) if t >= 3 => p += 1,
            _ => {}
        }
        if services.len() >= 3 {
            p -= 1;
        }
        p.clamp(1, 5) as u8
    }

    /// The published form (`lookout.incident.v1`) as JSON text, written directly (an
    /// update is rebuilt on every change and lists up to [`LISTED_MEMBERS`] members),
    /// and the summary of it that the trend ledger keeps.
    pub fn published(&self, catalog: &Catalog) -> (Vec<u8>, Summary) {
        let first = self.order.first().and_then(|f| self.members.get(f));
        let digests = self.service_digests();
        let services: Vec<String> = digests.keys().map(|s| s.to_string()).collect();
        let title = match (first, services.len()) {
            (Some(m), n) if n > 1 => format!("{} (+{} services)", m.alert.title, n - 1),
            (Some(m), _) => m.alert.title.clone(),
            (None, _) => "incident".into(),
        };
        let severity = self.severity();
        let root = self.root_cause(catalog, &digests);
        let owner = root
            .first()
            .and_then(|r| r["service"].as_str())
            .and_then(|s| catalog.service(s))
            .and_then(|s| s.owner.as_deref());
        let (members, alert_count) = self.listed();
        let entries: Vec<_> = members.iter().map(|m| m.entries()).collect();
        let timeline = self.timeline_text();
        let root_text = serde_json::to_vec(&root).expect("JSON into memory");
        let size = entries.iter().map(|e| e.text.len() + 3).sum::<usize>()
            + timeline.len()
            + root_text.len()
            + 300 * self.changes.len()
            + 1024;
        let mut w = JsonText::with_capacity(size);
        w.begin_object()
            .field("schema", SCHEMA)
            .field("incident_id", &self.id)
            .field("seq", &self.seq)
            .field("status", self.last.as_str())
            .field("title", &title)
            .field("severity", severity.as_str())
            .field(
                "priority",
                &format!("P{}", Incident::priority(catalog, severity, &services)),
            )
            .field("opened_at", &format_ms(self.opened_at))
            .field("updated_at", &format_ms(self.updated_at))
            .field("resolved_at", &self.resolved_at.map(format_ms))
            .field("services", &services)
            .field("hosts", &self.hosts())
            .field("owner", &owner)
            .key("root_cause")
            .raw(&root_text)
            .key("suspected_changes")
            .begin_array();
        for (c, why) in &self.changes {
            w.value(&change_json(c, why));
        }
        w.end_array().key("alerts").begin_array();
        for e in &entries {
            w.raw(e.alert());
        }
        w.end_array()
            .field("alert_count", &alert_count)
            .field("alerts_omitted", &(alert_count - members.len()))
            .key("signals")
            .begin_array();
        for e in entries.iter().filter(|e| !e.signal().is_empty()) {
            w.raw(e.signal());
        }
        w.end_array().key("explanation").begin_array();
        for e in &entries {
            w.raw(e.explanation());
        }
        w.end_array()
            .key("timeline")
            .begin_array()
            .raw_items(&timeline)
            .end_array()
            .end_object();
        drop(timeline);
        let summary = Summary {
            opened_at: self.opened_at,
            resolved_at: self.resolved_at,
            services,
            alerts: entries.iter().map(|e| Arc::clone(&e.listed)).collect(),
        };
        (w.into_bytes(), summary)
    }

    /// The timeline's events as JSON items, those added since the last call written now.
    fn timeline_text(&self) -> std::cell::Ref<'_, [u8]> {
        let mut cache = self.timeline_text.borrow_mut();
        let (written, text) = &mut *cache;
        if *written < self.timeline.len() {
            let mut w = JsonText::after(std::mem::take(text));
            for (ts, ev, d) in &self.timeline[*written..] {
                w.begin_object()
                    .field("ts", &format_ms(*ts))
                    .field("event", ev)
                    .field("detail", d)
                    .end_object();
            }
            *text = w.into_bytes();
            *written = self.timeline.len();
        }
        drop(cache);
        std::cell::Ref::map(self.timeline_text.borrow(), |(_, t)| t.as_slice())
    }

    /// The members a published update lists, in the order they joined (the first and
    /// the latest [`LISTED_MEMBERS`] / 2 of a larger incident), and how many there are.
    /// Members are never removed, so `order` names each of them once: only the listed
    /// ones are looked up, and those that left the listing since the last call.
    fn listed(&self) -> (Vec<&Member>, usize) {
        let count = self.order.len();
        let half = LISTED_MEMBERS / 2;
        let (head, tail) = if count <= LISTED_MEMBERS {
            (&self.order[..], &self.order[..0])
        } else {
            (&self.order[..half], &self.order[count - half..])
        };
        // members that left the listing keep no entries
        let unlisted = self.forgotten_to.get().max(head.len())..count - tail.len();
        if !unlisted.is_empty() {
            for f in &self.order[unlisted.clone()] {
                self.members.get(f).inspect(|m| m.forget_entries());
            }
            self.forgotten_to.set(unlisted.end);
        }
        let listed = head.iter().chain(tail).filter_map(|f| self.members.get(f)).collect();
        (listed, count)
    }
}

/// A member as the incident's `alerts` list it.
fn write_alert(w: &mut JsonText, m: &Member) {
    let a = &m.alert;
    w.begin_object()
        .field("fingerprint", &a.fingerprint)
        .field("source", &a.source)
        .field("service", &a.service)
        .field("host", &a.host)
        .field("title", &a.title)
        .field("severity", a.severity.as_str())
        .field("status", a.status.as_str())
        .field("first_seen", &format_ms(m.first_seen))
        .field("last_seen", &format_ms(m.last_seen))
        .field("count", &m.count)
        .field("flapping", &m.flapping)
        .field("maintenance", &m.maintenance)
        .end_object();
}

/// Why a member joined, as the incident's `explanation` says it.
fn write_explanation(w: &mut JsonText, m: &Member) {
    let j = &m.join;
    w.begin_object()
        .field("fingerprint", &m.alert.fingerprint)
        .field("rule", &j.rule)
        .key("shared_keys")
        .begin_array();
    for (k, v) in &j.shared_keys {
        w.begin_object().field("key", k).field("value", v).end_object();
    }
    w.end_array()
        .key("time_gap_s")
        .f64(round3(j.time_gap_s))
        .field("topology_path", &j.topology_path)
        .key("score")
        .f64(round3(j.score))
        .end_object();
}

/// A member anomaly as the incident's `signals` show it: the series, how it moved and
/// what was expected, from the anomaly's first notification.
fn write_signal(w: &mut JsonText, m: &Member) {
    let a = &m.alert;
    let number = |k: &str| a.label(k).and_then(|v| v.parse::<f64>().ok()).filter(|x| x.is_finite());
    w.begin_object()
        .field("fingerprint", &a.fingerprint)
        .field("signal", &a.label("metric"))
        .field("kind", &a.label("kind"))
        .field("service", &a.service)
        .field("host", &a.host)
        .field("role", &a.label("role"))
        .field("direction", &a.label("direction"))
        .field("value", &number("value"))
        .field("expected", &number("expected"))
        .field("score", &number("score"))
        .field("status", a.status.as_str())
        .field("first_seen", &format_ms(m.first_seen))
        .field("last_seen", &format_ms(m.last_seen))
        .end_object();
}

fn change_json(c: &Change, reason: &str) -> Value {
    let label = |k: &str| c.labels.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    json!({
        "fingerprint": c.fingerprint,
        "kind": c.kind.as_str(),
        "source": c.source,
        "service": c.service,
        "ts": format_ms(c.ts),
        "title": c.title,
        "deploy_id": label("deploy_id"),
        "change_id": label("change_id"),
        "version": label("version"),
        "reason": reason,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A symptom anomaly: errors, latency or traffic of a service moving.
pub fn is_symptom(a: &Alert) -> bool {
    a.source == "anomaly" && a.label("role") == Some("symptom")
}

/// Members whose activity keeps an incident alive and open to new members: critical
/// alerts and symptoms other than a drop in traffic (which only echoes a failing
/// caller). Warnings join incidents but do not keep them open, so that a disk filling
/// for hours does not glue unrelated trouble together.
pub fn significant(a: &Alert) -> bool {
    a.severity == Severity::Critical || (is_symptom(a) && a.label("direction") != Some("down"))
}

/// How far root-cause ranking follows dependencies.
const ROOT_DEPTH: usize = 4;
/// Onsets this close count as simultaneous: samples are a minute apart and monitoring
/// alerts fire minutes after the trouble they report.
const ROOT_SLACK_MS: i64 = 180_000;
/// A service whose first symptom came this long after the incident's is not where it started.
const ROOT_LATE_MS: i64 = 300_000;

/// What root-cause ranking needs of one service's members.
struct ServiceDigest<'a> {
    /// The first `first_seen` of any member, and of any that is not a drop in traffic.
    onset: i64,
    first_not_drop: i64,
    /// The first member (in fingerprint order) that is a cause signal.
    cause: Option<&'a Member>,
}

/// Does `caller` depend on `dep`, directly or through at most `depth` edges?
fn reaches(catalog: &Catalog, caller: &str, dep: &str, depth: usize) -> bool {
    let mut frontier = vec![caller.to_string()];
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..depth {
        let mut next = Vec::new();
        for s in &frontier {
            for d in catalog.dependencies(s) {
                if d == dep {
                    return true;
                }
                if seen.insert(d.to_string()) {
                    next.push(d.to_string());
                }
            }
        }
        frontier = next;
    }
    false
}
