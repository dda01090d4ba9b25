//! The log-pattern model: what a normal minute of a service's logs looks like, as counts
//! of its templates, learnt with k-means (linfa) from history by `lookout train`.
//!
//! The idea is Xu et al.'s (SOSP 2009, console logs): a window of logs is a vector of
//! template counts, and an unusual mix — a template that is normally rare now frequent,
//! a usual one gone silent — is far from every normal mix. Per service: the `dims` most
//! frequent templates in training plus one "other" dimension, each `ln(1 + count)`; the
//! k-means centroids of the training windows; a threshold on the distance to the nearest
//! centroid (the 99.5th percentile of training distances, times 1.5). A window scores
//! its distance over the threshold, and an anomaly names the templates that moved most.
//!
//! The file (`models/<pipeline>/log_patterns.json`) carries a manifest — kind, version,
//! trained_at, the data range, parameters, evaluation figures and a checksum of the
//! model body — and is checked on load: a wrong kind, version or checksum is an error
//! naming the file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::file::{self, Manifested};
use crate::model::normal;

pub const KIND: &str = "log-pattern-kmeans";
pub const VERSION: u32 = 1;

/// How training reads windows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct PatternParams {
    pub window_s: u64,
    /// Templates with their own dimension, per service.
    pub dims: usize,
    /// Clusters, at most (fewer when there are few windows).
    pub k: usize,
    /// Services with fewer training windows get no model.
    pub min_windows: usize,
}

impl Default for PatternParams {
    fn default() -> Self {
        PatternParams {
            window_s: 60,
            dims: 32,
            k: 4,
            min_windows: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub kind: String,
    pub version: u32,
    pub trained_at: String,
    /// Event-time range of the training data (RFC 3339) and how much there was.
    pub data_from: String,
    pub data_to: String,
    pub log_lines: u64,
    pub parameters: PatternParams,
    pub evaluation: Evaluation,
    /// FNV-1a 64 of the JSON of `services`, as 16 hex digits.
    pub checksum: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evaluation {
    pub services: usize,
    pub windows: usize,
    /// Share of training windows over their service's threshold.
    pub train_exceed_rate: f64,
}

/// One service's normal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceModel {
    /// Template ids (16 hex digits) with their own dimension; the last dimension is
    /// every other template.
    pub dims: Vec<String>,
    /// The templates of `dims` as they read in training (for explanations).
    pub templates: Vec<String>,
    pub centroids: Vec<Vec<f64>>,
    pub threshold: f64,
    pub windows: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PatternModel {
    pub manifest: Manifest,
    pub services: BTreeMap<String, ServiceModel>,
}

/// A window's score against a service's normal.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub distance: f64,
    pub threshold: f64,
    /// Template ids that moved most from the nearest centroid, with the counts seen (for
    /// the "other" dimension, its most frequent template and the count of all of them).
    pub movers: Vec<(String, u64)>,
}

impl ServiceModel {
    fn vector(&self, counts: &HashMap<String, u64>) -> Vec<f64> {
        let mut v = vec![0.0; self.dims.len() + 1];
        for (id, &n) in counts {
            let i = self.dims.iter().position(|d| d == id).unwrap_or(self.dims.len());
            v[i] += n as f64;
        }
        v.iter().map(|&x| x.ln_1p()).collect()
    }

    pub fn template_text(&self, id: &str) -> Option<&str> {
        let i = self.dims.iter().position(|d| d == id)?;
        self.templates.get(i).map(String::as_str)
    }

    pub fn score(&self, counts: &HashMap<String, u64>) -> Score {
        let v = self.vector(counts);
        let (_, distance, moved) = normal::explain(&self.centroids, &v, 3);
        let movers = moved
            .iter()
            .filter(|(_, d)| *d > 0.5)
            .map(|&(i, _)| match self.dims.get(i) {
                Some(id) => (id.clone(), counts.get(id).copied().unwrap_or(0)),
                None => {
                    let others = || counts.iter().filter(|(id, _)| !self.dims.contains(id));
                    let top = others().max_by_key(|(id, n)| (**n, std::cmp::Reverse(id.as_str())));
                    let total = others().map(|(_, n)| n).sum();
                    (top.map_or_else(|| "other".to_string(), |(id, _)| id.clone()), total)
                }
            })
            .collect();
        Score {
            distance,
            threshold: self.threshold,
            movers,
        }
    }
}

impl Manifested for PatternModel {
    const KIND: &'static str = KIND;
    const VERSION: u32 = VERSION;
    const WHAT: &'static str = "log-pattern model";

    fn stamp(&self) -> (&str, u32, &str) {
        (&self.manifest.kind, self.manifest.version, &self.manifest.checksum)
    }

    fn checksum(&self) -> String {
        file::checksum_loaded(&self.services)
    }

    fn check(&self) -> Result<(), String> {
        for (service, s) in &self.services {
            if s.centroids.is_empty() || s.centroids.iter().any(|c| c.len() != s.dims.len() + 1) {
                return Err(format!("service {service}: centroids do not fit its dims"));
            }
        }
        Ok(())
    }
}

impl PatternModel {
    pub fn load(path: &Path) -> Result<PatternModel, String> {
        file::load(path)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        file::save(self, path)
    }
}

/// Training data: template counts per service per window.
#[derive(Debug, Default)]
pub struct Windows {
    /// service → window start (ms) → template id → count
    counts: BTreeMap<String, BTreeMap<i64, HashMap<String, u64>>>,
    /// Template id → its text, as last seen.
    texts: HashMap<String, String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub lines: u64,
}

impl Windows {
    pub fn add(&mut self, service: &str, ts: i64, template_id: &str, template: &str, window_ms: i64) {
        if !self.texts.contains_key(template_id) {
            self.texts.insert(template_id.to_string(), template.to_string());
        }
        let start = ts - ts.rem_euclid(window_ms);
        *self
            .counts
            .entry(service.to_string())
            .or_default()
            .entry(start)
            .or_default()
            .entry(template_id.to_string())
            .or_default() += 1;
        self.from = Some(self.from.map_or(ts, |f| f.min(ts)));
        self.to = Some(self.to.map_or(ts, |t| t.max(ts)));
        self.lines += 1;
    }
}

/// Fits one model per service with enough windows. Minutes without logs inside a
/// service's span count as windows (silence is part of normal).
pub fn fit(windows: &Windows, params: PatternParams, trained_at: String) -> Result<PatternModel, String> {
    let window_ms = params.window_s as i64 * 1000;
    let mut services = BTreeMap::new();
    let (mut total, mut exceed) = (0usize, 0usize);
    for (service, by_window) in &windows.counts {
        let (Some(&first), Some(&last)) = (by_window.keys().next(), by_window.keys().next_back()) else {
            continue;
        };
        let n = ((last - first) / window_ms + 1) as usize;
        if n < params.min_windows {
            continue;
        }
        let mut totals: HashMap<&str, u64> = HashMap::new();
        for counts in by_window.values() {
            for (id, c) in counts {
                *totals.entry(id).or_default() += c;
            }
        }
        let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let dims: Vec<String> = ranked.iter().take(params.dims).map(|(id, _)| id.to_string()).collect();
        let templates = dims
            .iter()
            .map(|d| windows.texts.get(d).cloned().unwrap_or_default())
            .collect();
        let shell = ServiceModel {
            dims,
            templates,
            centroids: Vec::new(),
            threshold: 0.0,
            windows: n,
        };
        let empty = HashMap::new();
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|i| shell.vector(by_window.get(&(first + i as i64 * window_ms)).unwrap_or(&empty)))
            .collect();
        let normal = crate::model::normal::fit(&rows, params.k, 1.0).map_err(|e| format!("{service}: {e}"))?;
        exceed += normal.exceed;
        total += n;
        let (centroids, threshold) = (normal.centroids, normal.threshold);
        services.insert(
            service.clone(),
            ServiceModel {
                centroids,
                threshold,
                ..shell
            },
        );
    }
    if services.is_empty() {
        return Err(format!(
            "no service has {} windows of {} s of logs to learn from",
            params.min_windows, params.window_s
        ));
    }
    let fmt = |t: Option<i64>| t.map(crate::decode::time::format_ms).unwrap_or_default();
    Ok(PatternModel {
        manifest: Manifest {
            kind: KIND.into(),
            version: VERSION,
            trained_at,
            data_from: fmt(windows.from),
            data_to: fmt(windows.to),
            log_lines: windows.lines,
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
