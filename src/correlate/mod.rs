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
//! Determinism: alerts are applied in (ts, fingerprint) order and ids are hashes of the
//! opening alert, so the same input gives the same incident stream.

pub mod alert;
pub mod incident;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde_json::Value;

pub use alert::{Alert, Change};
pub use incident::{Incident, Phase, Transition};

use crate::config::{Catalog, Correlation, MaintenanceMode};
use crate::decode::time;
use crate::decode::{EventKind, Severity, Status};
use incident::Explanation;

/// A published incident state.
#[derive(Debug, Clone)]
pub struct IncidentUpdate {
    pub incident_id: String,
    pub seq: u64,
    pub json: Value,
}

/// Counters for metrics and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
}

/// A maintenance window in force (from config or from an announcement event).
#[derive(Debug, Clone)]
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
    pub stats: CorrelationStats,
}

impl Correlator {
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
            stats: CorrelationStats::default(),
        }
    }

    /// Uses a reloaded catalog from now on.
    pub fn set_catalog(&mut self, catalog: Catalog) {
        self.catalog = catalog;
    }

    pub fn open_incidents(&self) -> usize {
        self.incidents.values().filter(|i| i.phase == Phase::Open).count()
    }

    /// Applies a batch of alerts and changes; returns the incident states that changed.
    pub fn ingest(&mut self, mut alerts: Vec<Alert>, mut changes: Vec<Change>) -> Vec<IncidentUpdate> {
        changes.sort_by_key(|c| c.ts);
        for c in changes {
            self.watermark = self.watermark.max(c.ts);
            match c
                .labels
                .iter()
                .find(|(k, _)| k == "maintenance")
                .map(|(_, v)| v.as_str())
            {
                Some(what) => self.announce_maintenance(&c, what),
                None => self.changes.push_back(c),
            }
        }
        alerts.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.fingerprint.cmp(&b.fingerprint)));
        // Every transition is published as it happens, so a consumer sees each `seq`,
        // `open` first.
        let mut out = Vec::new();
        for a in alerts {
            self.stats.alert_messages += 1;
            self.watermark = self.watermark.max(a.ts);
            let (fp, ts, title) = (a.fingerprint.clone(), a.ts, a.title.clone());
            let changed = self.apply(a);
            // The incident the alert is in now (it may have moved: a clash, a new episode).
            let holder = changed.clone().or_else(|| self.by_fingerprint.get(&fp).cloned());
            let confirmed = holder.and_then(|id| self.maybe_confirm(&id, ts, &title));
            if confirmed.is_some() {
                out.extend(confirmed.and_then(|id| self.publish(&id)));
            } else {
                out.extend(changed.and_then(|id| self.publish(&id)));
            }
        }
        out.extend(self.expire());
        out
    }

    /// Moves event time forward without new alerts (idle inputs, end of a replay).
    pub fn advance(&mut self, watermark: i64) -> Vec<IncidentUpdate> {
        self.watermark = self.watermark.max(watermark);
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
        let id = match self.best_incident(&a) {
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
            .filter(|i| {
                i.phase == Phase::Open
                    && a.ts - i.active_at() <= window
                    && (i.published || a.ts - i.opened_at <= window)
            })
        {
            let gap = (a.ts - inc.active_at()).max(0) as f64 / 1000.0;
            let mut shared = Vec::new();
            if let Some(s) = a.service.as_ref().filter(|s| inc.services().contains(s)) {
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
                        rule,
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
                    inc.services()
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
                                    rule: "topology",
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
        let window = self.cfg.group_window_s as i64 * 1000;
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
            .filter(|i| i.phase == Phase::Open && a.ts - i.active_at() <= window)
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
                        rule: "similar_title",
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
        let quiet = self.cfg.quiet_period_s as i64 * 1000;
        let reopen = self.cfg.reopen_window_s as i64 * 1000;
        let mut ids = Vec::new();
        // Candidates that were never confirmed go quietly.
        let dropped: Vec<String> = self
            .incidents
            .values()
            .filter(|i| !i.published && (i.phase == Phase::Resolved || now - i.active_at() > quiet))
            .map(|i| i.id.clone())
            .collect();
        for id in dropped {
            if self.forget(&id) {
                self.stats.candidates_dropped += 1;
            }
        }
        for inc in self.incidents.values_mut() {
            if inc.phase == Phase::Open && inc.published && now - inc.active_at() > quiet {
                let at = inc.active_at() + quiet;
                inc.phase = Phase::Resolved;
                inc.resolved_at = Some(at);
                inc.note(at, "resolved", format!("quiet for {} s", self.cfg.quiet_period_s));
                inc.transition(Transition::Resolved, at);
                ids.push(inc.id.clone());
            }
        }
        let out = ids.iter().filter_map(|id| self.publish(id)).collect();
        let forget: Vec<String> = self
            .incidents
            .values()
            .filter(|i| i.phase == Phase::Resolved && i.resolved_at.is_some_and(|r| now - r > reopen))
            .map(|i| i.id.clone())
            .collect();
        for id in forget {
            self.forget(&id);
        }
        self.windows.retain(|w| w.end > now);
        let keep_from = now.saturating_sub(self.cfg.change_lookback_s as i64 * 1000 * 2);
        while self.changes.front().is_some_and(|c| c.ts < keep_from) {
            self.changes.pop_front();
        }
        out
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
        Some(IncidentUpdate {
            incident_id: inc.id.clone(),
            seq: inc.seq,
            json: inc.to_json(&self.catalog),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
mod tests {
    use super::*;
    use crate::config::ServiceInfo;
    use crate::decode::Severity;

    fn alert(fp: &str, service: &str, ts_s: i64, status: Status) -> Alert {
        Alert {
            fingerprint: fp.into(),
            source: "test".into(),
            service: Some(service.into()),
            host: None,
            severity: Severity::Warning,
            status,
            title: format!("{fp} on {service}"),
            ts: ts_s * 1000,
            labels: Vec::new(),
        }
    }

    fn open_on_any_alert() -> Correlation {
        Correlation {
            require_confirmation: false,
            ..Correlation::default()
        }
    }

    fn symptom(fp: &str, service: &str, ts_s: i64) -> Alert {
        let mut a = alert(fp, service, ts_s, Status::Firing);
        a.source = "anomaly".into();
        a.labels = vec![("role".into(), "symptom".into())];
        a
    }

    #[test]
    fn candidates_open_only_when_confirmed() {
        let mut c = Correlator::new(Correlation::default(), catalog());
        // a warning alone, even repeated: a candidate, nothing published
        assert!(c
            .ingest(
                vec![
                    alert("w", "db", 0, Status::Firing),
                    alert("w", "db", 120, Status::Firing)
                ],
                vec![]
            )
            .is_empty());
        // a symptom on the same service: not yet (a short blip on one service is noise)
        assert!(c.ingest(vec![symptom("s1", "db", 130)], vec![]).is_empty());
        // ... but symptoms on a caller too: confirmed, opened now with everything so far
        let out = c.ingest(vec![symptom("s2", "api", 190)], vec![]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].json["status"], "open");
        assert_eq!(out[0].json["alert_count"], 3);
        assert_eq!(out[0].json["opened_at"], "1970-01-01T00:03:10.000Z");
        assert!(out[0].json["timeline"].to_string().contains("symptoms on two services"));

        // a critical alert confirms by itself
        let mut crit = alert("c", "mail", 1000, Status::Firing);
        crit.severity = Severity::Critical;
        assert_eq!(c.ingest(vec![crit], vec![]).len(), 1);

        // an alert with symptoms lasting the persistence time confirms
        let mut c = Correlator::new(Correlation::default(), catalog());
        assert!(c
            .ingest(
                vec![symptom("s", "mail", 0), alert("w", "mail", 30, Status::Firing)],
                vec![]
            )
            .is_empty());
        assert!(c
            .ingest(
                vec![symptom("s", "mail", 300), alert("w", "mail", 330, Status::Firing)],
                vec![]
            )
            .is_empty());
        let out = c.ingest(
            vec![symptom("s", "mail", 600), alert("w", "mail", 630, Status::Firing)],
            vec![],
        );
        assert_eq!(out.len(), 1);

        // N alerts confirm when configured so
        let cfg = Correlation {
            confirm_after_alerts: 2,
            ..Correlation::default()
        };
        let mut c2 = Correlator::new(cfg, catalog());
        assert!(c2.ingest(vec![alert("w1", "db", 0, Status::Firing)], vec![]).is_empty());
        let out = c2.ingest(vec![alert("w2", "db", 10, Status::Firing)], vec![]);
        assert!(out[0].json["timeline"].to_string().contains("enough alerts"));

        // unconfirmed candidates go quietly
        let mut c = Correlator::new(Correlation::default(), catalog());
        c.ingest(vec![alert("w", "db", 0, Status::Firing)], vec![]);
        assert!(c.advance(4000 * 1000).is_empty());
        assert_eq!(c.stats.candidates_dropped, 1);
        assert!(c.incidents.is_empty());
    }

    #[test]
    fn info_alerts_are_counted_not_grouped() {
        let mut c = Correlator::new(open_on_any_alert(), catalog());
        let mut info = alert("i", "db", 0, Status::Firing);
        info.severity = Severity::Info;
        assert!(c.ingest(vec![info], vec![]).is_empty());
        assert_eq!(c.stats.informational, 1);
    }

    #[test]
    fn a_rule_firing_again_after_silence_is_a_new_episode() {
        let mut c = Correlator::new(open_on_any_alert(), catalog());
        let first = c.ingest(vec![alert("r", "db", 0, Status::Firing)], vec![]);
        // the incident is still open (quiet period 30 min) but nothing happened for 16 min
        let again = c.ingest(vec![alert("r", "db", 1000, Status::Firing)], vec![]);
        assert_ne!(
            again[0].incident_id, first[0].incident_id,
            "{:?}",
            again[0].json["timeline"]
        );
        // ... while a repeat within the window is only a repeat
        assert!(c
            .ingest(vec![alert("r", "db", 1060, Status::Firing)], vec![])
            .is_empty());
        // an alert with no service at all goes through the same path without trouble
        let mut bare = alert("bare", "db", 2000, Status::Firing);
        bare.service = None;
        bare.severity = Severity::Critical;
        c.ingest(vec![bare.clone()], vec![]);
        bare.ts = 4000 * 1000;
        let out = c.ingest(vec![bare], vec![]);
        assert!(
            out.iter().any(|u| u.json["alerts"].to_string().contains("\"bare\"")),
            "{out:?}"
        );
    }

    #[test]
    fn fresh_trouble_next_door_beats_an_old_same_service_match() {
        let mut c = Correlator::new(open_on_any_alert(), catalog());
        let mut old = alert("old", "api", 0, Status::Firing);
        old.severity = Severity::Critical;
        let old_id = c.ingest(vec![old.clone()], vec![])[0].incident_id.clone();
        old.ts = 500 * 1000; // still firing
        c.ingest(vec![old], vec![]);
        // new trouble on web (a caller of api) opens its own incident: api's trouble is old
        let mut web = alert("web", "web", 520, Status::Firing);
        web.severity = Severity::Critical;
        let web_id = c.ingest(vec![web], vec![])[0].incident_id.clone();
        assert_ne!(web_id, old_id);
        // an api alert now: api is stale in the old incident, fresh next door in web's
        let out = c.ingest(vec![alert("api2", "api", 560, Status::Firing)], vec![]);
        assert_eq!(out[0].incident_id, web_id);
        assert_eq!(out[0].json["explanation"][1]["rule"], "topology");
    }

    #[test]
    fn flapping_alerts_stop_churning_the_incident() {
        let mut c = Correlator::new(open_on_any_alert(), catalog());
        let mut statuses = Vec::new();
        for i in 0..10 {
            let st = if i % 2 == 0 { Status::Firing } else { Status::Resolved };
            for u in c.ingest(vec![alert("f", "db", i * 60, st)], vec![]) {
                statuses.push(u.json["status"].as_str().unwrap().to_string());
            }
        }
        // open, resolved, reopened, resolved; the fourth flip marks it flapping (and reopens
        // the incident); after that its flips no longer publish anything
        assert_eq!(
            statuses,
            vec!["open", "resolved", "reopened", "resolved", "reopened"],
            "{statuses:?}"
        );
        let inc = c.incidents.values().next().unwrap();
        assert!(inc.members["f"].flapping && inc.phase == Phase::Open);
        assert!(inc.timeline.iter().any(|t| t.1 == "alert_flapping"));
    }

    #[test]
    fn maintenance_windows_suppress_or_mark() {
        use crate::config::{Maintenance, MaintenanceMode};
        let mut cfg = open_on_any_alert();
        cfg.maintenance = vec![Maintenance {
            services: vec!["db".into()],
            hosts: vec![],
            start: "1970-01-01T00:00:00Z".into(),
            end: "1970-01-01T01:00:00Z".into(),
            mode: MaintenanceMode::Suppress,
            reason: "db upgrade".into(),
        }];
        let mut c = Correlator::new(cfg, catalog());
        assert!(c.ingest(vec![alert("a", "db", 60, Status::Firing)], vec![]).is_empty());
        assert_eq!(c.stats.suppressed_maintenance, 1);
        assert_eq!(
            c.ingest(vec![alert("b", "mail", 60, Status::Firing)], vec![]).len(),
            1,
            "other services page"
        );

        // announced on the events stream, in mark mode: kept, marked, not paging alone
        let mut c = Correlator::new(Correlation::default(), catalog());
        let announce = |what: &str, ts: i64| Change {
            ts,
            kind: EventKind::Other,
            source: "ops".into(),
            service: Some("api".into()),
            title: "api failover drill".into(),
            fingerprint: None,
            labels: vec![("maintenance".into(), what.into()), ("mode".into(), "mark".into())],
        };
        c.ingest(vec![], vec![announce("start", 0)]);
        let mut crit = alert("x", "api", 60, Status::Firing);
        crit.severity = Severity::Critical;
        assert!(
            c.ingest(vec![crit], vec![]).is_empty(),
            "a marked critical alert does not page by itself"
        );
        c.ingest(vec![], vec![announce("end", 120)]);
        let mut after = alert("y", "api", 180, Status::Firing);
        after.severity = Severity::Critical;
        let out = c.ingest(vec![after], vec![]);
        assert_eq!(out[0].json["status"], "open");
        assert_eq!(out[0].json["alerts"][0]["maintenance"], true);
        assert_eq!(out[0].json["alerts"][1]["maintenance"], false);
    }

    #[test]
    fn awkward_alerts() {
        let mut c = Correlator::new(open_on_any_alert(), catalog());
        // no service at all: still an incident of its own
        let mut bare = alert("bare", "x", 0, Status::Firing);
        bare.service = None;
        bare.host = Some("h-9".into());
        assert_eq!(c.ingest(vec![bare], vec![]).len(), 1);
        // a service the catalog does not know still groups by service and time
        let a = c.ingest(vec![alert("u1", "unknown-svc", 10, Status::Firing)], vec![]);
        let b = c.ingest(vec![alert("u2", "unknown-svc", 20, Status::Firing)], vec![]);
        assert_eq!(a[0].incident_id, b[0].incident_id);
        // clock skew: an alert from a source whose clock is behind still lands
        let late = c.ingest(vec![alert("u3", "unknown-svc", 5, Status::Firing)], vec![]);
        assert_eq!(late[0].incident_id, a[0].incident_id);
        // a fingerprint reused on another service is a different alert
        let reuse = c.ingest(vec![alert("u1", "mail", 30, Status::Firing)], vec![]);
        assert_ne!(reuse[0].incident_id, a[0].incident_id);
        assert_eq!(c.stats.fingerprint_clashes, 1);
        assert!(reuse[0].json["alerts"][0]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("u1~"));
    }

    #[test]
    fn alerts_the_catalog_cannot_place_group_by_attributes_and_similar_titles() {
        let mut c = Correlator::new(open_on_any_alert(), catalog());
        let mk = |fp: &str, title: &str, cluster: &str, ts: i64| {
            let mut a = alert(fp, "x", ts, Status::Firing);
            a.service = None;
            a.title = title.into();
            a.labels = vec![("cluster".into(), cluster.into())];
            a
        };
        let first = c.ingest(
            vec![mk("a", "Disk pressure on node ip-10-0-1-7: 91% used", "eu-1", 0)],
            vec![],
        );
        let same = c.ingest(
            vec![mk("b", "Disk pressure on node ip-10-0-3-9: 95% used", "eu-1", 60)],
            vec![],
        );
        assert_eq!(same[0].incident_id, first[0].incident_id);
        assert_eq!(same[0].json["explanation"][1]["rule"], "similar_title");
        assert_eq!(same[0].json["explanation"][1]["shared_keys"][0]["value"], "eu-1");
        // another cluster, or another kind of trouble: apart
        let other_cluster = c.ingest(
            vec![mk("c", "Disk pressure on node ip-10-0-3-9: 95% used", "us-2", 70)],
            vec![],
        );
        assert_ne!(other_cluster[0].incident_id, first[0].incident_id);
        let other_title = c.ingest(vec![mk("d", "Certificate expires in 3 days", "eu-1", 80)], vec![]);
        assert_ne!(other_title[0].incident_id, first[0].incident_id);
    }

    fn catalog() -> Catalog {
        let s = |n: &str, d: &[&str]| ServiceInfo {
            name: n.into(),
            owner: Some(format!("team-{n}")),
            tier: 1,
            depends_on: d.iter().map(|x| x.to_string()).collect(),
            hosts: vec![],
            kind: None,
        };
        Catalog::from_services(vec![
            s("web", &["api"]),
            s("api", &["db"]),
            s("db", &[]),
            s("mail", &[]),
        ])
        .unwrap()
    }

    #[test]
    fn dedup_group_and_resolve() {
        let mut c = Correlator::new(open_on_any_alert(), catalog());
        let out = c.ingest(vec![alert("a", "db", 0, Status::Firing)], vec![]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].json["status"], "open");
        // the same fingerprint again: deduplicated, nothing published
        assert!(c.ingest(vec![alert("a", "db", 60, Status::Firing)], vec![]).is_empty());
        // a caller of db alerts: joins by topology
        let out = c.ingest(vec![alert("b", "api", 90, Status::Firing)], vec![]);
        assert_eq!(out[0].json["alert_count"], 2);
        assert_eq!(out[0].json["explanation"][1]["rule"], "topology");
        assert_eq!(out[0].json["root_cause"][0]["service"], "db");
        // an unrelated service opens its own incident
        let out = c.ingest(vec![alert("m", "mail", 100, Status::Firing)], vec![]);
        assert_ne!(out[0].incident_id, c.by_fingerprint["a"]);
        // every alert resolves: incident resolves, seq keeps counting
        let out = c.ingest(
            vec![
                alert("a", "db", 200, Status::Resolved),
                alert("b", "api", 210, Status::Resolved),
            ],
            vec![],
        );
        // one message per state change: one alert resolved, then all of them
        let states: Vec<(&str, u64)> = out
            .iter()
            .map(|u| (u.json["status"].as_str().unwrap(), u.seq))
            .collect();
        assert_eq!(states, vec![("updated", 3), ("resolved", 4)]);
        // fires again within the reopen window: reopened, same id
        let out = c.ingest(vec![alert("a", "db", 300, Status::Firing)], vec![]);
        assert_eq!(out[0].json["status"], "reopened");
        assert_eq!(out[0].json["incident_id"], c.by_fingerprint["a"].as_str());
    }

    #[test]
    fn quiet_incidents_resolve_and_are_forgotten() {
        let mut c = Correlator::new(open_on_any_alert(), catalog());
        c.ingest(vec![alert("a", "db", 0, Status::Firing)], vec![]);
        let out = c.advance(1801 * 1000);
        assert_eq!(out[0].json["status"], "resolved");
        assert_eq!(out[0].json["resolved_at"], "1970-01-01T00:30:00.000Z");
        c.advance(1801 * 1000 + 901 * 1000);
        assert!(c.incidents.is_empty() && c.by_fingerprint.is_empty());
    }

    #[test]
    fn resolve_without_firing_is_counted_not_published() {
        let mut c = Correlator::new(open_on_any_alert(), Catalog::default());
        assert!(c.ingest(vec![alert("z", "db", 0, Status::Resolved)], vec![]).is_empty());
        assert_eq!(c.stats.resolves_without_firing, 1);
    }

    #[test]
    fn changes_before_the_first_symptom_are_suspects() {
        let mut c = Correlator::new(open_on_any_alert(), catalog());
        let deploy = Change {
            ts: 0,
            kind: EventKind::Deploy,
            source: "argocd".into(),
            service: Some("db".into()),
            title: "deploy db 1.2".into(),
            fingerprint: Some("deploy-1".into()),
            labels: vec![("deploy_id".into(), "d-1".into())],
        };
        let out = c.ingest(vec![alert("b", "api", 120, Status::Firing)], vec![deploy]);
        let sc = &out[0].json["suspected_changes"];
        assert_eq!(sc[0]["fingerprint"], "deploy-1");
        assert!(sc[0]["reason"].as_str().unwrap().contains("dependency of affected api"));
    }

    #[test]
    fn same_input_same_ids() {
        let run = || {
            let mut c = Correlator::new(open_on_any_alert(), catalog());
            c.ingest(
                vec![
                    alert("b", "api", 5, Status::Firing),
                    alert("a", "db", 5, Status::Firing),
                ],
                vec![],
            )
            .into_iter()
            .map(|u| u.json.to_string())
            .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
