//! The service-signals model: a service's signals judged together, per one-minute window.
//!
//! Each series detector watches one signal alone; some trouble only shows in the mix — a
//! latency that is normal for the traffic of the day shift but not for night traffic, or
//! errors that rise a little while requests fall a little. Per service, a window is the
//! vector of its watched signals (`[[detect]]` metrics averaged over the service's hosts,
//! and the count of ERROR/FATAL log lines when `log_errors` is on), each standardised by
//! its training mean and deviation; normal is the k-means centroids of the training
//! windows ([`super::normal`]). A window far from every centroid is unusual, and the
//! anomaly names the signals that moved most, with their usual values.
//!
//! [`SignalWindows`] cuts the points into windows; a window closes when event time passes
//! its end by a minute (log error counts of a minute arrive 30 s after it ends). A signal
//! without a point in a window keeps its last value (gauges are sampled, not summed).
//!
//! The file (`models/<pipeline>/service_signals.json`) has a manifest — kind, version,
//! trained_at, the data range, parameters, evaluation, checksum — checked on load.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::file::{self, Manifested};
use super::normal;

pub const KIND: &str = "service-signals-kmeans";
pub const VERSION: u32 = 1;
pub const WINDOW_MS: i64 = 60_000;
const CLOSE_AFTER_MS: i64 = 60_000;

/// How training fits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VectorParams {
    /// Clusters, at most (fewer when there are few windows).
    pub k: usize,
    /// Services with fewer training windows get no model.
    pub min_windows: usize,
}

impl Default for VectorParams {
    fn default() -> Self {
        VectorParams { k: 4, min_windows: 30 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSignalModel {
    pub manifest: Manifest,
    pub services: BTreeMap<String, ServiceNormal>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub kind: String,
    pub version: u32,
    pub trained_at: String,
    pub data_from: String,
    pub data_to: String,
    pub window_s: u64,
    pub parameters: VectorParams,
    pub evaluation: Evaluation,
    /// FNV-1a 64 of the JSON of `services`, as 16 hex digits.
    pub checksum: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    pub services: usize,
    pub windows: usize,
    /// Share of training windows over their service's threshold.
    pub train_exceed_rate: f64,
}

/// One service's normal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceNormal {
    /// Signal names, in vector order.
    pub dims: Vec<String>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Centroids of standardised vectors.
    pub centroids: Vec<Vec<f64>>,
    pub threshold: f64,
    pub windows: usize,
}

/// How unusual one window was.
#[derive(Debug, Clone, PartialEq)]
pub struct Unusual {
    pub distance: f64,
    pub threshold: f64,
    /// The signals that moved most from the nearest centroid (at least one deviation),
    /// with the value seen and the centroid's value.
    pub movers: Vec<(String, f64, f64)>,
}

impl ServiceNormal {
    /// Standardised vector; a signal the window lacks counts as its mean.
    fn z(&self, values: &BTreeMap<String, f64>) -> Vec<f64> {
        self.dims
            .iter()
            .enumerate()
            .map(|(i, d)| values.get(d).map_or(0.0, |v| (v - self.mean[i]) / self.std[i]))
            .collect()
    }

    pub fn score(&self, values: &BTreeMap<String, f64>) -> Unusual {
        let z = self.z(values);
        let (c, distance, moved) = normal::explain(&self.centroids, &z, 3);
        let movers = moved
            .iter()
            .filter(|(_, d)| *d >= 1.0)
            .map(|&(i, _)| {
                let usual = self.mean[i] + self.centroids[c][i] * self.std[i];
                let seen = values.get(&self.dims[i]).copied().unwrap_or(self.mean[i]);
                (self.dims[i].clone(), seen, usual)
            })
            .collect();
        Unusual {
            distance,
            threshold: self.threshold,
            movers,
        }
    }
}

impl Manifested for ServiceSignalModel {
    const KIND: &'static str = KIND;
    const VERSION: u32 = VERSION;
    const WHAT: &'static str = "service-signals model";

    fn stamp(&self) -> (&str, u32, &str) {
        (&self.manifest.kind, self.manifest.version, &self.manifest.checksum)
    }

    fn checksum(&self) -> String {
        file::checksum_loaded(&self.services)
    }

    fn check(&self) -> Result<(), String> {
        for (service, s) in &self.services {
            let n = s.dims.len();
            let fits = n > 0
                && s.mean.len() == n
                && s.std.len() == n
                && s.std.iter().all(|x| *x > 0.0)
                && !s.centroids.is_empty()
                && s.centroids.iter().all(|c| c.len() == n);
            if !fits {
                return Err(format!(
                    "service {service}: means, deviations or centroids do not fit its {n} signals"
                ));
            }
        }
        Ok(())
    }
}

impl ServiceSignalModel {
    pub fn load(path: &Path) -> Result<ServiceSignalModel, String> {
        file::load(path)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        file::save(self, path)
    }
}

/// One closed window of one service: its end and each signal's value.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub end: i64,
    pub service: String,
    pub values: BTreeMap<String, f64>,
}

/// Signal → (sum, count) of its points in a window.
type Sums = BTreeMap<String, (f64, u32)>;

/// Cuts signal points into one-minute windows per service.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SignalWindows {
    /// Window start → service → signal → (sum, count).
    open: BTreeMap<i64, BTreeMap<String, Sums>>,
    /// The last value of every signal of every service.
    last: BTreeMap<String, BTreeMap<String, f64>>,
    /// Windows starting before this have closed.
    closed_until: i64,
}

impl SignalWindows {
    /// Adds a point; points of closed windows and non-finite values are ignored.
    pub fn add(&mut self, service: &str, signal: &str, ts: i64, value: f64) {
        let start = ts - ts.rem_euclid(WINDOW_MS);
        if service.is_empty() || !value.is_finite() || start < self.closed_until {
            return;
        }
        // Keys are allocated once per window, not once per point.
        let seen = self
            .open
            .get_mut(&start)
            .and_then(|w| w.get_mut(service))
            .and_then(|w| w.get_mut(signal));
        let slot = match seen {
            Some(slot) => slot,
            None => self
                .open
                .entry(start)
                .or_default()
                .entry(service.to_string())
                .or_default()
                .entry(signal.to_string())
                .or_default(),
        };
        slot.0 += value;
        slot.1 += 1;
    }

    /// Closes the windows that event time has passed, in order; every service seen so
    /// far gets a window, its signals' last values filling what the window lacks.
    pub fn close(&mut self, watermark: i64) -> Vec<Window> {
        let mut out = Vec::new();
        while let Some((&start, _)) = self.open.first_key_value() {
            if start + WINDOW_MS + CLOSE_AFTER_MS > watermark {
                break;
            }
            let window = self.open.remove(&start).unwrap_or_default();
            self.closed_until = start + WINDOW_MS;
            for (service, signals) in window {
                let last = self.last.entry(service).or_default();
                for (signal, (sum, n)) in signals {
                    last.insert(signal, sum / n as f64);
                }
            }
            for (service, values) in &self.last {
                out.push(Window {
                    end: start + WINDOW_MS,
                    service: service.clone(),
                    values: values.clone(),
                });
            }
        }
        out
    }
}

/// Fits a model per service with at least `min_windows` windows.
pub fn fit(
    windows: &[Window],
    params: VectorParams,
    trained_at: String,
    (from, to): (String, String),
) -> Result<ServiceSignalModel, String> {
    let mut by_service: BTreeMap<&str, Vec<&Window>> = BTreeMap::new();
    for w in windows {
        by_service.entry(&w.service).or_default().push(w);
    }
    let mut services = BTreeMap::new();
    let (mut total, mut exceed) = (0, 0);
    for (service, ws) in by_service {
        if ws.len() < params.min_windows {
            continue;
        }
        let mut dims: Vec<String> = ws.iter().flat_map(|w| w.values.keys().cloned()).collect();
        dims.sort();
        dims.dedup();
        let mut mean = vec![0.0; dims.len()];
        let mut std = vec![0.0; dims.len()];
        for (i, d) in dims.iter().enumerate() {
            let xs: Vec<f64> = ws.iter().filter_map(|w| w.values.get(d).copied()).collect();
            let m = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
            let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len().max(1) as f64;
            mean[i] = normal::micro(m);
            std[i] = normal::micro(var.sqrt().max(1e-3 * m.abs()).max(1e-6));
        }
        let shell = ServiceNormal {
            dims,
            mean,
            std,
            centroids: Vec::new(),
            threshold: 0.0,
            windows: ws.len(),
        };
        let rows: Vec<Vec<f64>> = ws.iter().map(|w| shell.z(&w.values)).collect();
        let fitted = normal::fit(&rows, params.k, 1.0).map_err(|e| format!("{service}: {e}"))?;
        total += rows.len();
        exceed += fitted.exceed;
        services.insert(
            service.to_string(),
            ServiceNormal {
                centroids: fitted.centroids,
                threshold: fitted.threshold,
                ..shell
            },
        );
    }
    if services.is_empty() {
        return Err(format!(
            "no service has {} one-minute windows of signals to learn from",
            params.min_windows
        ));
    }
    Ok(ServiceSignalModel {
        manifest: Manifest {
            kind: KIND.into(),
            version: VERSION,
            trained_at,
            data_from: from,
            data_to: to,
            window_s: (WINDOW_MS / 1000) as u64,
            parameters: params,
            evaluation: Evaluation {
                services: services.len(),
                windows: total,
                train_exceed_rate: exceed as f64 / total.max(1) as f64,
            },
            checksum: file::checksum_loaded(&services),
        },
        services,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// A service whose latency follows its traffic; `odd` minutes break the rule.
    fn windows(minutes: i64, odd: &[i64]) -> Vec<Window> {
        let mut w = SignalWindows::default();
        for m in 0..minutes {
            let busy = (m / 30) % 2 == 0;
            let (rate, latency) = if busy { (100.0, 200.0) } else { (10.0, 50.0) };
            let latency = if odd.contains(&m) { 200.0 } else { latency };
            let jitter = (m % 7) as f64;
            // Two hosts, two points each; the window holds their mean.
            for (host_shift, second) in [(0.0, 0), (2.0, 20_000)] {
                w.add("api", "req_rate", m * MIN + second, rate + jitter + host_shift);
                w.add("api", "latency_p95_ms", m * MIN + second, latency + jitter);
            }
            w.add("api", "log_errors", m * MIN, (m % 3) as f64);
        }
        w.close(minutes * MIN + 2 * MIN)
    }

    #[test]
    fn windows_average_points_and_close_in_order() {
        let ws = windows(5, &[]);
        assert_eq!(ws.len(), 5);
        assert_eq!(ws[0].end, MIN);
        assert_eq!(ws[0].values["req_rate"], 101.0);
        assert_eq!(ws[4].values["log_errors"], 1.0);
        let mut w = SignalWindows::default();
        w.add("api", "cpu", 0, 1.0);
        w.add("", "cpu", 0, 1.0);
        w.add("api", "cpu", 0, f64::NAN);
        assert!(w.close(MIN).is_empty(), "not closed before its end plus a minute");
        assert_eq!(w.close(2 * MIN).len(), 1);
        w.add("api", "cpu", 30_000, 9.0); // late: its window closed
        w.add("api", "mem", 2 * MIN, 5.0);
        let next = w.close(4 * MIN);
        assert_eq!(next.len(), 1);
        assert_eq!(
            next[0].values["cpu"], 1.0,
            "a signal without points keeps its last value"
        );
        assert_eq!(next[0].values["mem"], 5.0);
    }

    #[test]
    fn a_mix_unusual_for_the_service_is_found_and_named() {
        let train = windows(600, &[]);
        let model = fit(&train, VectorParams::default(), "now".into(), ("a".into(), "b".into())).unwrap();
        let api = &model.services["api"];
        assert_eq!(api.dims, ["latency_p95_ms", "log_errors", "req_rate"]);
        assert!(model.manifest.evaluation.train_exceed_rate < 0.01);
        // Busy latency at quiet traffic: each value is normal alone, the mix is not.
        let test = windows(120, &[40, 41]);
        let flagged: Vec<i64> = test
            .iter()
            .filter(|w| {
                let s = api.score(&w.values);
                s.distance > s.threshold
            })
            .map(|w| w.end / MIN - 1)
            .collect();
        assert_eq!(flagged, [40, 41]);
        // Nearest is the busy normal (latency fits it), so what moved is the traffic.
        let s = api.score(&test[40].values);
        assert_eq!(s.movers.len(), 1, "{s:?}");
        let (signal, seen, usual) = &s.movers[0];
        assert_eq!(signal, "req_rate");
        assert!(*seen < 20.0 && (95.0..110.0).contains(usual), "{s:?}");
    }

    #[test]
    fn a_saved_model_loads_and_bad_files_are_refused() {
        let model = fit(
            &windows(300, &[]),
            VectorParams::default(),
            "now".into(),
            ("a".into(), "b".into()),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service_signals.json");
        model.save(&path).unwrap();
        assert_eq!(ServiceSignalModel::load(&path).unwrap(), model);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"threshold\": ", "\"threshold\": 1", 1)).unwrap();
        assert!(ServiceSignalModel::load(&path).unwrap_err().contains("checksum"));
        std::fs::write(&path, text.replace(KIND, "log-pattern-kmeans")).unwrap();
        assert!(ServiceSignalModel::load(&path).unwrap_err().contains("expected"));
        std::fs::write(&path, "{").unwrap();
        assert!(ServiceSignalModel::load(&path)
            .unwrap_err()
            .contains("not a service-signals model"));
        assert!(fit(
            &windows(10, &[]),
            VectorParams::default(),
            "now".into(),
            ("a".into(), "b".into())
        )
        .unwrap_err()
        .contains("30 one-minute windows"));
    }
}
