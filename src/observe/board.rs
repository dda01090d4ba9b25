//! What the live web view shows: the latest state of open and recent incidents, the
//! series that had anomalies with their recent points, and the pipeline's counters,
//! kept from what the pipeline publishes and served as `/api/state`.
//!
//! Bounded: at most [`MAX_INCIDENTS`] incidents (open ones first, then the most recently
//! updated) and [`MAX_SERIES`] series of [`MAX_MARKS`] anomalies each.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Value};

pub const MAX_INCIDENTS: usize = 40;
pub const MAX_SERIES: usize = 24;
pub const MAX_MARKS: usize = 20;

/// A series that had anomalies: its key and the anomalies, newest last.
struct Marked {
    signal: String,
    service: String,
    host: String,
    /// (time, value, score)
    marks: VecDeque<(String, f64, f64)>,
    last: u64,
}

#[derive(Default)]
pub struct Board {
    /// incident id → (order of the last update, the latest message)
    incidents: BTreeMap<String, (u64, Value)>,
    series: Vec<Marked>,
    tick: u64,
}

impl Board {
    /// Takes one batch's incident updates and anomalies (the JSON the pipeline
    /// publishes); true when something shown changed.
    pub fn take<'a>(
        &mut self,
        incidents: impl Iterator<Item = &'a Value>,
        anomalies: impl Iterator<Item = &'a Value>,
    ) -> bool {
        let mut changed = false;
        for v in incidents {
            self.tick += 1;
            changed = true;
            let id = v["incident_id"].as_str().unwrap_or_default().to_string();
            self.incidents.insert(id, (self.tick, v.clone()));
        }
        for a in anomalies {
            self.tick += 1;
            changed = true;
            self.mark(a);
        }
        if self.incidents.len() > MAX_INCIDENTS {
            // drop the resolved ones updated longest ago, then the oldest
            let mut by_age: Vec<(bool, u64, String)> = self
                .incidents
                .iter()
                .map(|(id, (t, v))| (v["status"] != "resolved", *t, id.clone()))
                .collect();
            by_age.sort();
            for (_, _, id) in by_age.into_iter().take(self.incidents.len() - MAX_INCIDENTS) {
                self.incidents.remove(&id);
            }
        }
        changed
    }

    fn mark(&mut self, a: &Value) {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let (signal, service, host) = (s(&a["signal"]), s(&a["series"]["service"]), s(&a["series"]["host"]));
        let mark = (
            s(&a["ts"]),
            a["value"].as_f64().unwrap_or(f64::NAN),
            a["score"].as_f64().unwrap_or(0.0),
        );
        let tick = self.tick;
        match self
            .series
            .iter_mut()
            .find(|m| m.signal == signal && m.service == service && m.host == host)
        {
            Some(m) => {
                m.marks.push_back(mark);
                if m.marks.len() > MAX_MARKS {
                    m.marks.pop_front();
                }
                m.last = tick;
            }
            None => {
                if self.series.len() >= MAX_SERIES {
                    let oldest = (0..self.series.len())
                        .min_by_key(|&i| self.series[i].last)
                        .expect("full");
                    self.series.remove(oldest);
                }
                self.series.push(Marked {
                    signal,
                    service,
                    host,
                    marks: VecDeque::from([mark]),
                    last: tick,
                });
            }
        }
    }

    /// The series keys to chart, as the detectors name them (metric, service, host).
    pub fn series_keys(&self) -> Vec<(String, String, String)> {
        self.series
            .iter()
            .map(|m| (m.signal.clone(), m.service.clone(), m.host.clone()))
            .collect()
    }

    /// `/api/state`: `points` are each charted series' recent (time, value) pairs, in
    /// the order of [`Board::series_keys`].
    pub fn render(&self, counters: Value, points: &[Vec<(i64, f64)>]) -> String {
        let mut incidents: Vec<&(u64, Value)> = self.incidents.values().collect();
        incidents.sort_by_key(|(t, v)| (v["status"] == "resolved", std::cmp::Reverse(*t)));
        let series: Vec<Value> = self
            .series
            .iter()
            .enumerate()
            .rev()
            .map(|(i, m)| {
                json!({
                    "signal": m.signal,
                    "service": m.service,
                    "host": m.host,
                    "points": points.get(i).map(|p| p.iter().map(|(t, v)| json!([t, v])).collect::<Vec<_>>()).unwrap_or_default(),
                    "anomalies": m.marks.iter().map(|(t, v, s)| json!({"ts": t, "value": v, "score": s})).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "counters": counters,
            "incidents": incidents.iter().map(|(_, v)| v).collect::<Vec<_>>(),
            "signals": series,
        })
        .to_string()
    }
}

/// One `/api/state` of several tasks' (partitioned state): their incidents (open ones
/// first) and series side by side, their counters summed; the watermark shown is the
/// oldest, as the instance's own would be.
pub fn merge<'a>(states: impl Iterator<Item = &'a String>) -> String {
    let mut counters = serde_json::Map::new();
    let mut incidents: Vec<Value> = Vec::new();
    let mut signals: Vec<Value> = Vec::new();
    for state in states {
        let Ok(mut v) = serde_json::from_str::<Value>(state) else {
            continue;
        };
        if let Value::Object(c) = v["counters"].take() {
            for (k, x) in c {
                let merged = match (counters.remove(&k), x) {
                    (None, x) => x,
                    (Some(Value::Number(a)), Value::Number(b)) => match (a.as_u64(), b.as_u64()) {
                        (Some(a), Some(b)) => json!(a + b),
                        _ => json!(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0)),
                    },
                    (Some(Value::String(a)), Value::String(b)) if k == "watermark" => json!(a.min(b)),
                    (Some(Value::Null), x) => x,
                    (Some(a), _) => a,
                };
                counters.insert(k, merged);
            }
        }
        if let Value::Array(a) = v["incidents"].take() {
            incidents.extend(a);
        }
        if let Value::Array(a) = v["signals"].take() {
            signals.extend(a);
        }
    }
    incidents.sort_by_key(|v| v["status"] == "resolved");
    incidents.truncate(MAX_INCIDENTS);
    signals.truncate(MAX_SERIES);
    json!({"counters": counters, "incidents": incidents, "signals": signals}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(id: &str, status: &str) -> Value {
        json!({"incident_id": id, "status": status})
    }

    fn take(b: &mut Board, incidents: &[Value], anomalies: &[Value]) -> bool {
        b.take(incidents.iter(), anomalies.iter())
    }

    #[test]
    fn tasks_states_merge_into_one() {
        let mut a = Board::default();
        let mut b = Board::default();
        take(&mut a, &[incident("a", "resolved")], &[]);
        take(&mut b, &[incident("b", "open")], &[]);
        let states = [
            a.render(
                json!({"pipeline": "p", "records": 3, "watermark": "2025-03-04T01:00:00Z"}),
                &[],
            ),
            b.render(
                json!({"pipeline": "p", "records": 4, "watermark": "2025-03-04T00:30:00Z"}),
                &[],
            ),
        ];
        let merged: Value = serde_json::from_str(&merge(states.iter())).unwrap();
        assert_eq!(merged["counters"]["records"], 7);
        assert_eq!(merged["counters"]["pipeline"], "p");
        assert_eq!(merged["counters"]["watermark"], "2025-03-04T00:30:00Z");
        assert_eq!(merged["incidents"][0]["incident_id"], "b");
        assert_eq!(merged["incidents"][1]["incident_id"], "a");
    }

    #[test]
    fn keeps_the_latest_state_open_incidents_first_and_bounded() {
        let mut b = Board::default();
        assert!(!take(&mut b, &[], &[]));
        assert!(take(
            &mut b,
            &[incident("a", "open"), incident("a", "resolved"), incident("b", "open")],
            &[]
        ));
        let state: Value = serde_json::from_str(&b.render(json!({}), &[])).unwrap();
        assert_eq!(state["incidents"][0]["incident_id"], "b");
        assert_eq!(state["incidents"][1]["status"], "resolved");
        for i in 0..100 {
            take(&mut b, &[incident(&format!("r{i}"), "resolved")], &[]);
        }
        assert_eq!(b.incidents.len(), MAX_INCIDENTS);
        assert!(b.incidents.contains_key("b"), "open incidents stay");
    }

    #[test]
    fn anomalies_mark_their_series() {
        let mut b = Board::default();
        let a = |v: f64| json!({"signal": "latency", "series": {"service": "api", "host": null}, "ts": "t", "value": v, "score": 0.9});
        take(&mut b, &[], &[a(1.0), a(2.0)]);
        assert_eq!(b.series_keys(), vec![("latency".into(), "api".into(), String::new())]);
        let state: Value = serde_json::from_str(&b.render(json!({}), &[vec![(1, 5.0)]])).unwrap();
        assert_eq!(state["signals"][0]["anomalies"].as_array().unwrap().len(), 2);
        assert_eq!(state["signals"][0]["points"][0], json!([1, 5.0]));
    }
}
