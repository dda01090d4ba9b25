//! Correlation: alerts and changes in, incident state changes out.
//!
//! Rules, in the order they are tried for an alert (event time throughout):
//! 1. **Deduplication**: a fingerprint already in an incident updates its member
//!    (count, last seen, status); a fingerprint in an incident resolved less than the
//!    reopen window ago reopens it.
//! 2. **Grouping**: an alert joins the open incident, active within the group window,
//!    that shares its service or host, or else the nearest one in the catalog's
//!    dependency graph within `max_hops`. Ties go to the most recently active incident.
//! 3. Otherwise it opens a new incident.
//!
//! Change events are kept for `change_lookback_s`; those on an incident's services (or
//! their dependencies) before its first symptom become `suspected_changes`.
//! `advance(watermark)` resolves incidents quiet for `quiet_period_s` and forgets
//! resolved ones after the reopen window, so state is bounded by the incidents that are
//! open or recently resolved.
//!
//! Expiry can be held back (`hold`): a consumer reads Kafka partitions unevenly, and in
//! a backlog one partition can run far ahead of another in event time.
//! Expiring on the newest event would resolve incidents that the lagging partitions'
//! alerts still belong to, and each of those alerts would open another. Held, an
//! incident expires once every live partition has passed its due time; an alert that
//! comes after an incident's due time still finds it resolved, as in event-time order.
//!
//! Determinism: alerts are applied in (ts, fingerprint) order and ids are hashes of the
//! opening alert, so the same input gives the same incident stream.

pub mod alert;
pub mod incident;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde_json::Value;

pub use alert::{Alert, Change, Input};
pub use incident::{Incident, Phase, Transition};

use crate::config::{Catalog, Correlation, MaintenanceMode};
use crate::decode::time;
use crate::decode::{EventKind, Severity, Status};
use incident::Explanation;

/// A published incident state: its JSON text, and what the trend ledger reads from it.
#[derive(Debug, Clone)]
pub struct IncidentUpdate {
    pub incident_id: String,
    pub seq: u64,
    /// `lookout.incident.v1` as published.
    pub text: Vec<u8>,
    pub summary: Summary,
}

impl IncidentUpdate {
    /// The published state parsed (tests, the board).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.text).expect("an incident update is JSON")
    }
}

/// The parts of an incident update the operations ledger of trend reports keeps
/// ([`crate::report::incidents::Ledger`]), typed, so that it need not parse the text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub opened_at: i64,
    pub resolved_at: Option<i64>,
    pub services: Vec<String>,
    /// The listed members, in the order they joined (shared with the incident's
    /// cache of what it lists: most updates list the same members again).
    pub alerts: Vec<std::sync::Arc<ListedAlert>>,
}

impl Summary {
    /// Reads a published state (`lookout.incident.v1`); `None` without `opened_at`.
    pub fn from_json(v: &Value) -> Option<Summary> {
        let time = |v: &Value| v.as_str().and_then(time::parse_str);
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Some(Summary {
            opened_at: time(&v["opened_at"])?,
            resolved_at: time(&v["resolved_at"]),
            services: v["services"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            alerts: v["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    std::sync::Arc::new(ListedAlert {
                        fingerprint: text(&a["fingerprint"]),
                        source: text(&a["source"]),
                        service: a["service"].as_str().map(str::to_string),
                        title: text(&a["title"]),
                        first_seen: time(&a["first_seen"]).unwrap_or(i64::MAX),
                    })
                })
                .collect(),
        })
    }
}

/// A listed member as [`Summary`] has it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListedAlert {
    pub fingerprint: String,
    pub source: String,
    pub service: Option<String>,
    pub title: String,
    pub first_seen: i64,
}

/// Counters for metrics and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CorrelationStats {
    pub alert_messages: u64,
    pub incidents_opened: u64,
    pub resolves_without_firing: u64,
    /// Candidates that resolved or went quiet without being confirmed.
    pub candidates_dropped: u64,
    /// Alerts of severity `info`, which correlation leaves out.
    pub informational: u64,
    /// Alerts dropped by a maintenance window in `suppress` mode.
    pub suppressed_maintenance: u64,
    /// Fingerprints seen on two different targets (kept apart as two alerts).
    pub fingerprint_clashes: u64,
    /// Evidence (role `evidence`) that found no incident to join.
    pub evidence_unattached: u64,
}

/// A maintenance window in force (from config or from an announcement event).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Window {
    services: Vec<String>,
    hosts: Vec<String>,
    start: i64,
    end: i64,
    mode: MaintenanceMode,
    reason: String,
}

impl Window {
    fn covers(&self, a: &Alert) -> bool {
        (self.start..self.end).contains(&a.ts)
            && (a.service.as_ref().is_some_and(|s| self.services.contains(s))
                || a.host.as_ref().is_some_and(|h| self.hosts.contains(h)))
    }
}

pub struct Correlator {
    cfg: Correlation,
    windows: Vec<Window>,
    catalog: Catalog,
    incidents: BTreeMap<String, Incident>,
    by_fingerprint: HashMap<String, String>,
    /// Incidents by the services and hosts of their members, so that an alert looks
    /// only at incidents it could join, however many are open.
    by_key: HashMap<(IndexKind, String), BTreeSet<String>>,
    changes: VecDeque<Change>,
    watermark: i64,
    /// Nothing expires before event time passes this (see [`Correlator::due`]).
    next_due: i64,
    /// Event time does not pass this for expiry (see [`Correlator::hold`]).
    horizon: i64,
    pub stats: CorrelationStats,
}

/// What a checkpoint keeps of correlation: all of it but the configuration and catalog.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CorrelatorState {
    windows: Vec<Window>,
    incidents: BTreeMap<String, Incident>,
    by_fingerprint: HashMap<String, String>,
    by_key: HashMap<(IndexKind, String), BTreeSet<String>>,
    changes: VecDeque<Change>,
    watermark: i64,
    stats: CorrelationStats,
}

/// `ordered` as it is, with each of `sorted` (in event-time order) put before the first
/// of `ordered` that is not earlier than it, and what is left of `sorted` at the end.
pub fn interleave(ordered: Vec<Input>, sorted: impl IntoIterator<Item = Input>) -> Vec<Input> {
    let mut sorted = sorted.into_iter().peekable();
    let mut out = Vec::with_capacity(ordered.len());
    for o in ordered {
        while let Some(x) = sorted.next_if(|x| x.ts() <= o.ts()) {
            out.push(x);
        }
        out.push(o);
    }
    out.extend(sorted);
    out
}

impl Correlator {
    /// The state to checkpoint.
    pub fn state(&self) -> CorrelatorState {
        CorrelatorState {
            windows: self.windows.clone(),
            incidents: self.incidents.clone(),
            by_fingerprint: self.by_fingerprint.clone(),
            by_key: self.by_key.clone(),
            changes: self.changes.clone(),
            watermark: self.watermark,
            stats: self.stats,
        }
    }

    /// Continues from a checkpointed state.
    pub fn restore(&mut self, s: CorrelatorState) {
        self.windows = s.windows;
        self.incidents = s.incidents;
        self.by_fingerprint = s.by_fingerprint;
        self.by_key = s.by_key;
        self.changes = s.changes;
        self.watermark = s.watermark;
        self.next_due = i64::MIN;
        self.stats = s.stats;
    }

    pub fn new(cfg: Correlation, catalog: Catalog) -> Correlator {
        let windows = cfg
            .maintenance
            .iter()
            .filter_map(|m| {
                Some(Window {
                    services: m.services.clone(),
                    hosts: m.hosts.clone(),
                    start: time::parse_str(&m.start)?,
                    end: time::parse_str(&m.end)?,
                    mode: m.mode,
                    reason: m.reason.clone(),
                })
            })
            .collect();
        Correlator {
            windows,
            cfg,
            catalog,
            incidents: BTreeMap::new(),
            by_fingerprint: HashMap::new(),
            by_key: HashMap::new(),
            changes: VecDeque::new(),
            watermark: i64::MIN,
            next_due: i64::MIN,
            horizon: i64::MAX,
            stats: CorrelationStats::default(),
        }
    }

    /// Uses a reloaded catalog from now on.
    pub fn set_catalog(&mut self, catalog: Catalog) {
        self.catalog = catalog;
    }

    /// Expires nothing due after `horizon`, the event time that every input partition
    /// still delivering has passed, until it is moved or [`Correlator::release`]d.
    pub fn hold(&mut self, horizon: i64) {
        self.horizon = horizon;
    }

    /// Expiry follows the newest event again (the input has ended).
    pub fn release(&mut self) {
        self.horizon = i64::MAX;
    }

    pub fn open_incidents(&self) -> usize {
        self.incidents.values().filter(|i| i.phase == Phase::Open).count()
    }

    /// Applies alerts and changes that came without an order of their own (tests, the
    /// benchmark): in event-time order, changes first at equal times. See
    /// [`Correlator::ingest_in_order`].
    pub fn ingest(&mut self, mut alerts: Vec<Alert>, mut changes: Vec<Change>) -> Vec<IncidentUpdate> {
        changes.sort_by_key(|c| c.ts);
        alerts.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.fingerprint.cmp(&b.fingerprint)));
        let inputs = interleave(
            alerts.into_iter().map(Input::Alert).collect(),
            changes.into_iter().map(Input::Change),
        );
        self.ingest_in_order(inputs)
    }

    /// Applies alerts and changes in the order they arrived; returns the incident states
    /// that changed, each transition as it happens (a consumer sees each `seq`, `open`
    /// first).
    ///
    /// Event time is the newest seen: an input moves it forward, a late one (older than
    /// that) is applied without moving it back. After every input whatever fell due (an
    /// incident quiet long enough, a resolved candidate) is expired, as the end of a
    /// batch there would: the incident stream depends on the order of the input, not on
    /// how it was cut into batches (a restart, a slower consumer give the same one).
    /// Held (see [`Correlator::hold`]), event time stops at the horizon for expiry, and
    /// an alert first settles what fell due before it for its fingerprint's incident.
    pub fn ingest_in_order(&mut self, inputs: Vec<Input>) -> Vec<IncidentUpdate> {
        let mut out = Vec::new();
        for input in inputs {
            out.extend(self.pass_time(input.ts()));
            match input {
                Input::Change(c) => self.take_change(c),
                Input::Alert(a) => {
                    if let Some(id) = self.by_fingerprint.get(&a.fingerprint).cloned() {
                        out.extend(self.settle(&id, a.ts));
                    }
                    out.extend(self.take_alert(a));
                }
            }
            if self.watermark > self.next_due {
                out.extend(self.expire());
            }
        }
        out.extend(self.expire());
        out
    }

    /// Applies one alert; the incident state it published, if any.
    fn take_alert(&mut self, a: Alert) -> Option<IncidentUpdate> {
        self.stats.alert_messages += 1;
        let (fp, ts, title) = (a.fingerprint.clone(), a.ts, a.title.clone());
        let changed = self.apply(a);
        // The incident the alert is in now (it may have moved: a clash, a new episode).
        let holder = changed.clone().or_else(|| self.by_fingerprint.get(&fp).cloned());
        for id in changed.iter().chain(holder.iter()) {
            if let Some(inc) = self.incidents.get(id) {
                self.next_due = self.next_due.min(self.due(inc));
            }
        }
        let confirmed = holder.and_then(|id| self.maybe_confirm(&id, ts, &title));
        if confirmed.is_some() {
            confirmed.and_then(|id| self.publish(&id))
        } else {
            changed.and_then(|id| self.publish(&id))
        }
    }

    /// Moves event time to `ts`, expiring what fell due before it.
    fn pass_time(&mut self, ts: i64) -> Vec<IncidentUpdate> {
        let ts = ts.min(self.horizon);
        if ts <= self.watermark {
            return Vec::new();
        }
        self.watermark = ts;
        if ts > self.next_due {
            self.expire()
        } else {
            Vec::new()
        }
    }

    fn take_change(&mut self, c: Change) {
        let maintenance = c
            .labels
            .iter()
            .find(|(k, _)| k == "maintenance")
            .map(|(_, v)| v.clone());
        match maintenance {
            Some(what) => {
                self.announce_maintenance(&c, &what);
                self.next_due = i64::MIN;
            }
            None => {
                let lookback = self.cfg.change_lookback_s as i64 * 1000;
                self.next_due = self.next_due.min(c.ts.saturating_add(2 * lookback));
                self.changes.push_back(c);
            }
        }
    }

    /// The event time after which [`Correlator::expire`] changes an incident.
    fn due(&self, inc: &Incident) -> i64 {
        let quiet = self.cfg.quiet_period_s as i64 * 1000;
        let reopen = self.cfg.reopen_window_s as i64 * 1000;
        match (inc.phase, inc.published) {
            (Phase::Resolved, false) => inc.resolved_at.unwrap_or(i64::MIN),
            (Phase::Resolved, true) => inc.resolved_at.unwrap_or(i64::MIN).saturating_add(reopen),
            (Phase::Open, _) => inc.active_at().saturating_add(quiet),
        }
    }

    /// Moves event time forward without new alerts (idle inputs, end of a replay).
    pub fn advance(&mut self, watermark: i64) -> Vec<IncidentUpdate> {
        self.watermark = self.watermark.max(watermark.min(self.horizon));
        self.expire()
    }

    /// Opens or closes a maintenance window announced on the events stream: `start`
    /// (optionally with `labels.until`, RFC 3339) or `end`, for the event's service, or
    /// `labels.hosts` (comma-separated); `labels.mode` is `suppress` (default) or `mark`.
    fn announce_maintenance(&mut self, c: &Change, what: &str) {
        let label = |k: &str| c.labels.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let services: Vec<String> = c.service.iter().cloned().collect();
        let hosts: Vec<String> = label("hosts")
            .map(|h| h.split(',').map(|x| x.trim().to_string()).collect())
            .unwrap_or_default();
        match what {
            "start" => self.windows.push(Window {
                services,
                hosts,
                start: c.ts,
                end: label("until").and_then(|u| time::parse_str(&u)).unwrap_or(i64::MAX),
                mode: if label("mode").as_deref() == Some("mark") {
                    MaintenanceMode::Mark
                } else {
                    MaintenanceMode::Suppress
                },
                reason: c.title.clone(),
            }),
            "end" => {
                for w in self
                    .windows
                    .iter_mut()
                    .filter(|w| w.services == services && w.hosts == hosts && w.start <= c.ts)
                {
                    w.end = w.end.min(c.ts);
                }
            }
            _ => {}
        }
    }

    /// Applies one alert; returns the incident it changed, if any.
    fn apply(&mut self, mut a: Alert) -> Option<String> {
        if a.severity == Severity::Info {
            // Informational: counted, never paged on, never glued to an incident.
            self.stats.informational += 1;
            return None;
        }
        if let Some(w) = self.windows.iter().find(|w| w.covers(&a)) {
            match w.mode {
                MaintenanceMode::Suppress => {
                    self.stats.suppressed_maintenance += 1;
                    return None;
                }
                MaintenanceMode::Mark => a.labels.push(("maintenance".into(), w.reason.clone())),
            }
        }
        if let Some(id) = self.by_fingerprint.get(&a.fingerprint).cloned() {
            // The same fingerprint on another service is another alert that happens to
            // share it (a sloppy integration): keep them apart. (Hosts may differ: a
            // service-level rule reports whichever instance tripped it; and a resolve that
            // names no service, like PagerDuty's, belongs to its dedup key.)
            let clash = self
                .incidents
                .get(&id)
                .and_then(|i| i.members.get(&a.fingerprint))
                .is_some_and(|m| matches!((&m.alert.service, &a.service), (Some(x), Some(y)) if x != y));
            if clash {
                self.stats.fingerprint_clashes += 1;
                let target = [a.service.as_deref().unwrap_or("")];
                a.fingerprint = format!("{}~{}", a.fingerprint, alert::derived_fingerprint(&target));
                return self.apply(a);
            }
            // Still firing, but nothing at all happened on its service in this incident
            // for the group window: a new episode of the same rule on the same target
            // (SQL rules never resolve), not a repeat.
            let window = self.cfg.group_window_s as i64 * 1000;
            let silent = self.incidents.get(&id).is_some_and(|i| {
                i.members
                    .get(&a.fingerprint)
                    .is_some_and(|m| m.alert.status == Status::Firing)
                    && a.ts.saturating_sub(i.last_activity_on(a.service.as_deref())) > window
            });
            if a.status == Status::Firing && silent {
                self.by_fingerprint.remove(&a.fingerprint);
            } else {
                return self.update_member(&id, a);
            }
        }
        if a.status == Status::Resolved {
            self.stats.resolves_without_firing += 1;
            return None;
        }
        let evidence = a.source == "anomaly" && a.label("role") == Some("evidence");
        let best = self.best_incident(&a).filter(|(id, _)| {
            // Evidence explains what its own service did in an incident; it does not
            // bring a new service (and a new root-cause candidate) in.
            !evidence
                || self
                    .incidents
                    .get(id)
                    .is_some_and(|i| a.service.as_ref().is_some_and(|s| i.services().contains(s)))
        });
        let id = match best {
            None if evidence => {
                // Evidence explains trouble; it does not start any.
                self.stats.evidence_unattached += 1;
                return None;
            }
            Some((id, join)) => {
                let inc = self.incidents.get_mut(&id)?;
                inc.note(a.ts, "alert_joined", format!("{} joined ({})", a.title, join.rule));
                inc.add(&a, join);
                inc.transition(Transition::Updated, a.ts);
                id
            }
            None => {
                let inc = Incident::open(&a);
                let id = inc.id.clone();
                self.incidents.insert(id.clone(), inc);
                id
            }
        };
        self.by_fingerprint.insert(a.fingerprint.clone(), id.clone());
        for key in index_keys(&a) {
            self.by_key.entry(key).or_default().insert(id.clone());
        }
        self.attach_changes(&id);
        Some(id)
    }

    /// Publishes candidate `id` once it is confirmed.
    fn maybe_confirm(&mut self, id: &str, ts: i64, title: &str) -> Option<String> {
        let inc = self
            .incidents
            .get_mut(id)
            .filter(|i| !i.published && i.phase == Phase::Open)?;
        let why = if self.cfg.require_confirmation {
            let many = self.cfg.confirm_after_alerts;
            let alerts = inc
                .members
                .values()
                .filter(|m| m.alert.source != "anomaly" && !m.maintenance)
                .count();
            if many > 0 && alerts >= many {
                "enough alerts"
            } else {
                inc.confirmed(ts, self.cfg.persist_s as i64 * 1000)?
            }
        } else {
            "an alert"
        };
        inc.confirm(ts, format!("opened on {why}: {title}"));
        self.stats.incidents_opened += 1;
        Some(inc.id.clone())
    }

    fn update_member(&mut self, id: &str, a: Alert) -> Option<String> {
        let reopen_ms = self.cfg.reopen_window_s as i64 * 1000;
        let inc = self.incidents.get_mut(id)?;
        let m = inc.members.get_mut(&a.fingerprint)?;
        let was = m.alert.status;
        let severity_before = inc.severity();
        let m = inc.members.get_mut(&a.fingerprint)?;
        m.count += 1;
        m.last_seen = m.last_seen.max(a.ts);
        if was != a.status {
            let window = self.cfg.flap_window_s as i64 * 1000;
            if m.flip(a.ts, window, self.cfg.flap_threshold) {
                m.alert.status = a.status;
                inc.note(
                    a.ts,
                    "alert_flapping",
                    format!("{} flapping: further flips suppressed", a.title),
                );
                if inc.phase == Phase::Resolved && a.status == Status::Firing {
                    inc.phase = Phase::Open;
                    inc.resolved_at = None;
                    inc.transition(Transition::Reopened, a.ts);
                } else {
                    inc.transition(Transition::Updated, a.ts);
                }
                return Some(id.to_string());
            }
        }
        if m.flapping {
            m.alert.status = a.status;
            m.alert.title = a.title.clone();
            if a.status == Status::Firing {
                inc.last_firing = inc.last_firing.max(a.ts);
            }
            return None;
        }
        m.alert.title = a.title.clone();
        m.alert.status = a.status;
        m.alert.severity = a.severity;
        if a.status == Status::Firing {
            inc.last_firing = inc.last_firing.max(a.ts);
        }
        if incident::significant(&a) {
            inc.last_significant = Some(inc.last_significant.map_or(a.ts, |t| t.max(a.ts)));
        }
        match (inc.phase, was, a.status) {
            (Phase::Resolved, _, Status::Firing) => {
                if a.ts - inc.resolved_at.unwrap_or(a.ts) > reopen_ms {
                    return None;
                }
                inc.phase = Phase::Open;
                inc.resolved_at = None;
                inc.note(a.ts, "reopened", format!("{} fired again", a.title));
                inc.transition(Transition::Reopened, a.ts);
                Some(id.to_string())
            }
            (Phase::Open, Status::Firing, Status::Resolved) => {
                inc.note(a.ts, "alert_resolved", format!("{} resolved", a.title));
                if inc.all_resolved() {
                    inc.phase = Phase::Resolved;
                    inc.resolved_at = Some(a.ts);
                    inc.note(a.ts, "resolved", "every alert resolved".into());
                    inc.transition(Transition::Resolved, a.ts);
                } else {
                    inc.transition(Transition::Updated, a.ts);
                }
                Some(id.to_string())
            }
            (Phase::Open, Status::Resolved, Status::Firing) => {
                inc.note(a.ts, "alert_refired", format!("{} fired again", a.title));
                inc.transition(Transition::Updated, a.ts);
                Some(id.to_string())
            }
            (Phase::Open, _, _) if inc.severity() != severity_before => {
                inc.note(a.ts, "severity_changed", format!("now {}", inc.severity()));
                inc.transition(Transition::Updated, a.ts);
                Some(id.to_string())
            }
            _ => None,
        }
    }

    /// Can an incident take a new alert at `ts`: open, active within `group_window_s`,
    /// and opened at most `max_grouping_s` before?
    fn takes_new_alerts(&self, i: &Incident, ts: i64) -> bool {
        i.phase == Phase::Open
            && ts - i.active_at() <= self.cfg.group_window_s as i64 * 1000
            && ts - i.opened_at <= self.cfg.max_grouping_s as i64 * 1000
    }

    /// The open incident an alert should join, with the reason.
    fn best_incident(&self, a: &Alert) -> Option<(String, Explanation)> {
        let window = self.cfg.group_window_s as i64 * 1000;
        let mut best: Option<((u8, bool, i64, String), Explanation)> = None;
        // Only incidents sharing the alert's service or host, or holding a service
        // within `max_hops` of it, can match.
        let mut keys: Vec<(IndexKind, String)> = index_keys(a)
            .into_iter()
            .filter(|(k, _)| *k != IndexKind::Attribute)
            .collect();
        if let Some(s) = &a.service {
            keys.extend(
                self.catalog
                    .neighbours(s, self.cfg.max_hops)
                    .into_iter()
                    .map(|n| (IndexKind::Service, n)),
            );
        }
        let ids: BTreeSet<&String> = keys.iter().filter_map(|k| self.by_key.get(k)).flatten().collect();
        for inc in ids
            .into_iter()
            .filter_map(|id| self.incidents.get(id))
            // A candidate older than the window is background (a disk filling, a job
            // failing); new trouble starts its own candidate instead of joining it.
            .filter(|i| self.takes_new_alerts(i, a.ts) && (i.published || a.ts - i.opened_at <= window))
        {
            let gap = (a.ts - inc.active_at()).max(0) as f64 / 1000.0;
            let mut shared = Vec::new();
            // Computed once per incident: each call collects and sorts its members.
            let services = inc.services();
            if let Some(s) = a.service.as_ref().filter(|s| services.contains(s)) {
                shared.push(("service".to_string(), s.clone()));
            }
            if let Some(h) = a.host.as_ref().filter(|h| inc.hosts().contains(h)) {
                shared.push(("host".to_string(), h.clone()));
            }
            let spread = self.cfg.spread_window_s as i64 * 1000;
            let candidate = if !shared.is_empty() {
                let rule = if shared[0].0 == "service" {
                    "same_service"
                } else {
                    "same_host"
                };
                // A service that has been in this incident for a while ranks below fresh
                // trouble next door: a new fault beside an old one is not the old one.
                let fresh = rule == "same_host"
                    || a.service
                        .as_deref()
                        .and_then(|s| inc.onset_of(s))
                        .is_some_and(|o| a.ts - o <= spread);
                let echo_only = a.service.as_deref().is_some_and(|s| {
                    !inc.members
                        .values()
                        .any(|m| m.alert.service.as_deref() == Some(s) && incident::significant(&m.alert))
                });
                if !fresh && rule == "same_service" && echo_only {
                    // The service is in the incident only as an echo (its traffic fell
                    // because a caller failed): a later alert of its own is its own.
                    continue;
                }
                let rank = if fresh { 0 } else { self.cfg.max_hops as u8 + 1 };
                Some((
                    rank,
                    Explanation {
                        rule: rule.to_string(),
                        shared_keys: shared,
                        time_gap_s: gap,
                        topology_path: Vec::new(),
                        score: 1.0,
                    },
                ))
            } else {
                // Trouble spreads along dependencies within minutes: topology links a
                // new alert only to services whose symptoms started recently, not to
                // one that has been hurting for an hour (that is a new fault nearby).
                a.service.as_deref().and_then(|s| {
                    services
                        .iter()
                        .filter(|t| inc.onset_of(t).is_some_and(|o| a.ts - o <= spread))
                        .filter_map(|t| self.catalog.path(s, t, self.cfg.max_hops))
                        .min_by_key(|p| p.len())
                        .map(|path| {
                            let hops = path.len() as u8 - 1;
                            let score = 1.0 / f64::from(hops + 1);
                            (
                                hops,
                                Explanation {
                                    rule: "topology".into(),
                                    shared_keys: Vec::new(),
                                    time_gap_s: gap,
                                    topology_path: path,
                                    score,
                                },
                            )
                        })
                })
            };
            if let Some((rank, exp)) = candidate {
                // Closest match first; among equals a published incident before a
                // candidate, then the one that started first (the likelier origin).
                let key = (rank, !inc.published, inc.opened_at, inc.id.clone());
                if best.as_ref().is_none_or(|(k, _)| key < *k) {
                    best = Some((key, exp));
                }
            }
        }
        if best.is_none() && a.service.as_deref().is_none_or(|s| self.catalog.service(s).is_none()) {
            return self.similar_incident(a);
        }
        best.map(|((_, _, _, id), exp)| (id, exp))
    }

    /// For an alert the catalog cannot place (no service, or one it does not know):
    /// the open incident, active within the group window, whose alerts share its
    /// deployment attributes (`cluster`, `region`, `namespace` labels, all that both
    /// carry) and whose titles are most alike (word Jaccard at least
    /// [`SIMILAR_TITLES`]). Only incidents sharing an attribute are looked at.
    fn similar_incident(&self, a: &Alert) -> Option<(String, Explanation)> {
        let words = title_words(&a.title);
        let mut best: Option<(f64, i64, String, Explanation)> = None;
        let keys: Vec<(IndexKind, String)> = index_keys(a)
            .into_iter()
            .filter(|(k, _)| *k == IndexKind::Attribute)
            .collect();
        let ids: BTreeSet<&String> = keys.iter().filter_map(|k| self.by_key.get(k)).flatten().collect();
        for inc in ids
            .into_iter()
            .filter_map(|id| self.incidents.get(id))
            .filter(|i| self.takes_new_alerts(i, a.ts))
        {
            for m in inc.members.values() {
                let shared: Vec<(String, String)> = ATTRIBUTES
                    .iter()
                    .filter_map(|k| match (a.label(k), m.alert.label(k)) {
                        (Some(x), Some(y)) if x == y => Some((k.to_string(), x.to_string())),
                        _ => None,
                    })
                    .collect();
                let disagree = ATTRIBUTES
                    .iter()
                    .any(|k| matches!((a.label(k), m.alert.label(k)), (Some(x), Some(y)) if x != y));
                if shared.is_empty() || disagree {
                    continue;
                }
                let sim = jaccard(&words, &title_words(&m.alert.title));
                if sim < SIMILAR_TITLES {
                    continue;
                }
                let key = (sim, -inc.opened_at, inc.id.clone());
                if best.as_ref().is_none_or(|(s, o, id, _)| key > (*s, *o, id.clone())) {
                    let gap = (a.ts - inc.active_at()).max(0) as f64 / 1000.0;
                    let exp = Explanation {
                        rule: "similar_title".into(),
                        shared_keys: shared,
                        time_gap_s: gap,
                        topology_path: Vec::new(),
                        score: sim,
                    };
                    best = Some((sim, -inc.opened_at, inc.id.clone(), exp));
                }
            }
        }
        best.map(|(_, _, id, exp)| (id, exp))
    }

    /// Attaches changes on the incident's services or their dependencies that came
    /// before its first symptom, within the lookback.
    fn attach_changes(&mut self, id: &str) {
        let lookback = self.cfg.change_lookback_s as i64 * 1000;
        let Some(inc) = self.incidents.get(id) else {
            return;
        };
        let services = inc.services();
        let start = inc.opened_at;
        let mut found = Vec::new();
        for c in self
            .changes
            .iter()
            .filter(|c| c.ts <= start && start - c.ts <= lookback)
        {
            let Some(svc) = c.service.as_deref() else {
                continue;
            };
            if inc.changes.iter().any(|(k, _)| k == c) {
                continue;
            }
            let mins = (start - c.ts) as f64 / 60_000.0;
            let what = if c.kind == EventKind::Deploy {
                "deploy"
            } else {
                "change"
            };
            let reason = if services.iter().any(|s| s == svc) {
                format!("{what} on affected service {svc} {mins:.1} min before the first symptom")
            } else if let Some(s) = services.iter().find(|s| self.catalog.dependencies(s).any(|d| d == svc)) {
                format!("{what} on {svc}, a dependency of affected {s}, {mins:.1} min before the first symptom")
            } else {
                continue;
            };
            found.push((c.clone(), reason));
        }
        if let Some(inc) = self.incidents.get_mut(id) {
            inc.changes.extend(found);
        }
    }

    /// Resolves quiet incidents and forgets old state.
    fn expire(&mut self) -> Vec<IncidentUpdate> {
        let now = self.watermark;
        let due: Vec<String> = self
            .incidents
            .values()
            .filter(|i| now > self.due(i))
            .map(|i| i.id.clone())
            .collect();
        let out = due.iter().filter_map(|id| self.settle(id, now)).collect();
        self.windows.retain(|w| w.end > now);
        let lookback = self.cfg.change_lookback_s as i64 * 1000;
        let keep_from = now.saturating_sub(lookback * 2);
        while self.changes.front().is_some_and(|c| c.ts < keep_from) {
            self.changes.pop_front();
        }
        self.next_due = self
            .incidents
            .values()
            .map(|i| self.due(i))
            .chain(self.windows.iter().map(|w| w.end.saturating_sub(1)))
            .chain(self.changes.front().map(|c| c.ts.saturating_add(2 * lookback)))
            .min()
            .unwrap_or(i64::MAX);
        out
    }

    /// What fell due for an incident by event time `now` ([`Correlator::due`]): an open
    /// one quiet for the quiet period ends (a published one is resolved at the end of that
    /// period, a candidate never confirmed goes quietly), and a resolved one is forgotten
    /// after the reopen window (a candidate at once).
    fn settle(&mut self, id: &str, now: i64) -> Option<IncidentUpdate> {
        let inc = self.incidents.get(id)?;
        let due = self.due(inc);
        if now <= due {
            return None;
        }
        let mut update = None;
        if inc.phase == Phase::Open && inc.published {
            let inc = self.incidents.get_mut(id)?;
            inc.phase = Phase::Resolved;
            inc.resolved_at = Some(due);
            inc.note(due, "resolved", format!("quiet for {} s", self.cfg.quiet_period_s));
            inc.transition(Transition::Resolved, due);
            update = self.publish(id);
            if now <= self.incidents.get(id).map_or(i64::MAX, |i| self.due(i)) {
                return update;
            }
        }
        let candidate = self.incidents.get(id).is_some_and(|i| !i.published);
        if self.forget(id) && candidate {
            self.stats.candidates_dropped += 1;
        }
        update
    }

    /// Removes an incident and every index entry pointing at it.
    fn forget(&mut self, id: &str) -> bool {
        let Some(inc) = self.incidents.remove(id) else {
            return false;
        };
        for m in inc.members.values() {
            if self.by_fingerprint.get(&m.alert.fingerprint).is_some_and(|i| i == id) {
                self.by_fingerprint.remove(&m.alert.fingerprint);
            }
            for key in index_keys(&m.alert) {
                if let Some(set) = self.by_key.get_mut(&key) {
                    set.remove(id);
                    if set.is_empty() {
                        self.by_key.remove(&key);
                    }
                }
            }
        }
        true
    }

    fn publish(&self, id: &str) -> Option<IncidentUpdate> {
        let inc = self.incidents.get(id).filter(|i| i.published)?;
        let (text, summary) = inc.published(&self.catalog);
        Some(IncidentUpdate {
            incident_id: inc.id.clone(),
            seq: inc.seq,
            text,
            summary,
        })
    }
}

/// How alike two titles must be (word Jaccard) to group alerts the catalog cannot place.
const SIMILAR_TITLES: f64 = 0.5;

/// The words of a title, without numbers and values that change between notifications.
fn title_words(t: &str) -> BTreeSet<String> {
    t.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2 && !w.chars().any(|c| c.is_ascii_digit()))
        .map(str::to_ascii_lowercase)
        .collect()
}

fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        0.0
    } else {
        a.intersection(b).count() as f64 / union as f64
    }
}

/// What an index key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
enum IndexKind {
    Service,
    Host,
    /// `cluster=…`, `region=…`, `namespace=…`
    Attribute,
}

/// The deployment labels that alerts the catalog cannot place are grouped by.
const ATTRIBUTES: [&str; 3] = ["cluster", "region", "namespace"];

/// The index keys of an alert: its service, host and deployment attributes.
fn index_keys(a: &Alert) -> Vec<(IndexKind, String)> {
    let mut keys: Vec<(IndexKind, String)> = a
        .service
        .iter()
        .map(|s| (IndexKind::Service, s.clone()))
        .chain(a.host.iter().map(|h| (IndexKind::Host, h.clone())))
        .collect();
    keys.extend(
        ATTRIBUTES
            .iter()
            .filter_map(|k| a.label(k).map(|v| (IndexKind::Attribute, format!("{k}={v}")))),
    );
    keys
}

#[cfg(test)]
mod tests;
