//! `lookout replay --diff`: what changing a pipeline would change for the people
//! downstream, from two replays of the same input.
//!
//! Incidents of the two runs are matched by the alerts they hold (an alert's
//! fingerprint is the same in both runs when the rule and its keys are). A new incident
//! that shares no alert with an old one was *created*; an old one with no counterpart is
//! *suppressed*; one that took the alerts of several is a *merge*, one whose alerts went
//! to several a *split*; a one-to-one match whose top root cause moved is *re-ranked*,
//! and one whose alerts or priority changed is *changed*. Alerts are compared per
//! source (each rule, each external monitor, the detectors).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::sink::{Message, Topic};

/// One incident's final state in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSummary {
    pub id: String,
    pub title: String,
    pub priority: String,
    pub root: String,
    pub alerts: BTreeSet<String>,
}

/// What one run published, reduced to what the comparison reads.
#[derive(Debug, Default)]
pub struct RunOutput {
    incidents: BTreeMap<String, IncidentSummary>,
    /// Alert fingerprints seen in incidents, by source.
    alerts: BTreeMap<String, BTreeSet<String>>,
    pub anomalies: usize,
}

impl RunOutput {
    /// Takes one published message (incident updates replace the earlier state).
    pub fn add(&mut self, m: &Message) {
        match m.topic {
            Topic::Anomalies => self.anomalies += 1,
            Topic::Incidents => {
                let Ok(v) = serde_json::from_slice::<Value>(&m.payload) else {
                    return;
                };
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                let mut alerts = BTreeSet::new();
                for a in v["alerts"].as_array().into_iter().flatten() {
                    let (Some(fp), Some(source)) = (a["fingerprint"].as_str(), a["source"].as_str()) else {
                        continue;
                    };
                    alerts.insert(fp.to_string());
                    self.alerts
                        .entry(source.to_string())
                        .or_default()
                        .insert(fp.to_string());
                }
                let summary = IncidentSummary {
                    id: s("incident_id"),
                    title: s("title"),
                    priority: s("priority"),
                    root: v["root_cause"][0]["service"].as_str().unwrap_or("?").to_string(),
                    alerts,
                };
                self.incidents.insert(summary.id.clone(), summary);
            }
            _ => {}
        }
    }

    pub fn incidents(&self) -> usize {
        self.incidents.len()
    }
}

/// The differences, ready to print.
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    pub created: Vec<IncidentSummary>,
    pub suppressed: Vec<IncidentSummary>,
    /// (the old incidents, the new one that holds their alerts)
    pub merged: Vec<(Vec<IncidentSummary>, IncidentSummary)>,
    /// (the old incident, the new ones its alerts went to)
    pub split: Vec<(IncidentSummary, Vec<IncidentSummary>)>,
    /// Several old incidents whose alerts went to several new ones.
    pub regrouped: Vec<(Vec<IncidentSummary>, Vec<IncidentSummary>)>,
    /// (old, new) with another top root cause
    pub reranked: Vec<(IncidentSummary, IncidentSummary)>,
    /// (old, new) with other alerts or priority
    pub changed: Vec<(IncidentSummary, IncidentSummary)>,
    pub unchanged: usize,
    /// source → (alerts before, alerts now, only before, only now), where they differ
    pub alerts: BTreeMap<String, (usize, usize, usize, usize)>,
    pub incidents: (usize, usize),
    pub anomalies: (usize, usize),
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
            && self.suppressed.is_empty()
            && self.merged.is_empty()
            && self.split.is_empty()
            && self.regrouped.is_empty()
            && self.reranked.is_empty()
            && self.changed.is_empty()
            && self.alerts.is_empty()
    }
}

pub fn diff(old: &RunOutput, new: &RunOutput) -> Diff {
    let mut d = Diff {
        incidents: (old.incidents.len(), new.incidents.len()),
        anomalies: (old.anomalies, new.anomalies),
        ..Diff::default()
    };
    // Incidents that share alerts, transitively, form one group to compare.
    let olds: Vec<&IncidentSummary> = old.incidents.values().collect();
    let news: Vec<&IncidentSummary> = new.incidents.values().collect();
    let mut parent: Vec<usize> = (0..olds.len() + news.len()).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for (i, o) in olds.iter().enumerate() {
        for (j, n) in news.iter().enumerate() {
            if !o.alerts.is_disjoint(&n.alerts) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, olds.len() + j));
                parent[a] = b;
            }
        }
    }
    let mut groups: BTreeMap<usize, (Vec<IncidentSummary>, Vec<IncidentSummary>)> = BTreeMap::new();
    for (i, o) in olds.iter().enumerate() {
        groups.entry(find(&mut parent, i)).or_default().0.push((*o).clone());
    }
    for (j, n) in news.iter().enumerate() {
        groups
            .entry(find(&mut parent, olds.len() + j))
            .or_default()
            .1
            .push((*n).clone());
    }
    for (_, (mut o, mut n)) in groups {
        // The same incidents by id (an alert may belong to two incidents in turn, which
        // ties them into one group): compared one by one.
        let paired = o.len() == n.len() && o.iter().zip(&n).all(|(a, b)| a.id == b.id);
        match (o.len(), n.len()) {
            (0, _) => d.created.append(&mut n),
            (_, 0) => d.suppressed.append(&mut o),
            _ if paired || (o.len(), n.len()) == (1, 1) => {
                for (o, n) in o.into_iter().zip(n) {
                    if o.root != n.root {
                        d.reranked.push((o, n));
                    } else if o.alerts != n.alerts || o.priority != n.priority {
                        d.changed.push((o, n));
                    } else {
                        d.unchanged += 1;
                    }
                }
            }
            (1, _) => d.split.push((o.remove(0), n)),
            (_, 1) => d.merged.push((o, n.remove(0))),
            _ => d.regrouped.push((o, n)),
        }
    }
    let sources: BTreeSet<&String> = old.alerts.keys().chain(new.alerts.keys()).collect();
    let none = BTreeSet::new();
    for s in sources {
        let (a, b) = (old.alerts.get(s).unwrap_or(&none), new.alerts.get(s).unwrap_or(&none));
        if a != b {
            d.alerts.insert(
                s.clone(),
                (a.len(), b.len(), a.difference(b).count(), b.difference(a).count()),
            );
        }
    }
    d
}

fn one(i: &IncidentSummary) -> String {
    format!(
        "{} {} \"{}\" (root {}, {} alerts)",
        i.id,
        i.priority,
        i.title,
        i.root,
        i.alerts.len()
    )
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "incidents: {} before, {} now — {} created, {} suppressed, {} merged, {} split, {} regrouped, {} re-ranked, {} changed, {} unchanged",
            self.incidents.0,
            self.incidents.1,
            self.created.len(),
            self.suppressed.len(),
            self.merged.len(),
            self.split.len(),
            self.regrouped.len(),
            self.reranked.len(),
            self.changed.len(),
            self.unchanged
        )?;
        writeln!(f, "anomalies: {} before, {} now", self.anomalies.0, self.anomalies.1)?;
        for i in &self.created {
            writeln!(f, "  + created    {}", one(i))?;
        }
        for i in &self.suppressed {
            writeln!(f, "  - suppressed {}", one(i))?;
        }
        for (olds, n) in &self.merged {
            let ids: Vec<&str> = olds.iter().map(|o| o.id.as_str()).collect();
            writeln!(f, "  > merged     {} into {}", ids.join(" + "), one(n))?;
        }
        for (o, news) in &self.split {
            let ids: Vec<&str> = news.iter().map(|n| n.id.as_str()).collect();
            writeln!(f, "  < split      {} into {}", one(o), ids.join(", "))?;
        }
        for (olds, news) in &self.regrouped {
            let ids = |v: &[IncidentSummary]| {
                v.iter()
                    .map(|i| format!("{} ({} alerts)", i.id, i.alerts.len()))
                    .collect::<Vec<_>>()
                    .join(" + ")
            };
            writeln!(f, "  * regrouped  {} into {}", ids(olds), ids(news))?;
        }
        for (o, n) in &self.reranked {
            writeln!(f, "  ~ re-ranked  {}: root {} → {}", one(n), o.root, n.root)?;
        }
        for (o, n) in &self.changed {
            let gained = n.alerts.difference(&o.alerts).count();
            let lost = o.alerts.difference(&n.alerts).count();
            let prio = if o.priority != n.priority {
                format!(", priority {} → {}", o.priority, n.priority)
            } else {
                String::new()
            };
            writeln!(f, "  ~ changed    {}: +{gained} / -{lost} alerts{prio}", one(n))?;
        }
        if !self.alerts.is_empty() {
            writeln!(
                f,
                "alerts that fire differently (distinct alerts in incidents, by source):"
            )?;
            for (s, (before, now, gone, new)) in &self.alerts {
                writeln!(f, "  {s}: {before} → {now} ({gone} only before, {new} only now)")?;
            }
        }
        if self.is_empty() {
            writeln!(f, "no difference downstream")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(id: &str, root: &str, alerts: &[(&str, &str)]) -> Message {
        let alerts: Vec<Value> = alerts
            .iter()
            .map(|(fp, src)| serde_json::json!({"fingerprint": fp, "source": src}))
            .collect();
        Message::json(
            Topic::Incidents,
            Some(id.to_string()),
            &serde_json::json!({"incident_id": id, "title": id, "priority": "P2",
                "root_cause": [{"service": root}], "alerts": alerts}),
        )
    }

    fn run(msgs: &[Message]) -> RunOutput {
        let mut r = RunOutput::default();
        for m in msgs {
            r.add(m);
        }
        r
    }

    #[test]
    fn every_kind_of_change_is_told_apart() {
        let old = run(&[
            incident("same", "db", &[("a", "r1")]),
            incident("m1", "db", &[("b", "r1")]),
            incident("m2", "db", &[("c", "r1")]),
            incident("s", "api", &[("d", "r2"), ("e", "r2")]),
            incident("gone", "api", &[("f", "r3")]),
            incident("rr", "api", &[("g", "r1")]),
        ]);
        let new = run(&[
            incident("same", "db", &[("a", "r1")]),
            incident("m", "db", &[("b", "r1"), ("c", "r1")]),
            incident("s1", "api", &[("d", "r2")]),
            incident("s2", "api", &[("e", "r2")]),
            incident("rr", "db", &[("g", "r1")]),
            incident("fresh", "web", &[("h", "r4")]),
        ]);
        let d = diff(&old, &new);
        assert_eq!(d.unchanged, 1);
        assert_eq!(d.merged.len(), 1);
        assert_eq!(d.merged[0].1.id, "m");
        assert_eq!(d.split.len(), 1);
        assert_eq!(d.split[0].1.len(), 2);
        assert_eq!(d.suppressed[0].id, "gone");
        assert_eq!(d.created[0].id, "fresh");
        assert_eq!(d.reranked[0].1.root, "db");
        assert_eq!(d.alerts.get("r3"), Some(&(1, 0, 1, 0)));
        assert_eq!(d.alerts.get("r4"), Some(&(0, 1, 0, 1)));
        assert!(!d.alerts.contains_key("r1"));
        let text = d.to_string();
        assert!(
            text.contains("1 created, 1 suppressed, 1 merged, 1 split, 0 regrouped, 1 re-ranked"),
            "{text}"
        );
    }

    #[test]
    fn the_same_output_has_no_difference() {
        let msgs = [incident("x", "db", &[("a", "r1")])];
        let d = diff(&run(&msgs), &run(&msgs));
        assert!(d.is_empty());
        assert!(d.to_string().contains("no difference"));
    }
}
