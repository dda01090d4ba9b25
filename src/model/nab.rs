//! Scoring anomaly detectors the way the Numenta Anomaly Benchmark does
//! (`nab/sweeper.py`, `optimizer.py`, `runner.py`; described in `shared/data/nab/README.md`).
//!
//! Every labelled anomaly has a window. The first 15% of a file (at most 750 rows) is a
//! probationary period that is not scored. A row is a detection when its anomaly score is
//! at least the threshold. Inside a window only the best (earliest) detection counts, worth
//! `A_TP · σ(y) / σ(−1)` with y the row's position relative to the window's right edge in
//! window widths (−1 at the left edge); a window without one costs `−A_FN`. A detection
//! outside every window costs `A_FP · σ(y)` with y its distance past the end of the
//! previous window (−A_FP before any window), σ(y) = 2/(1+e^{5y}) − 1, and −1 beyond 3.
//! One threshold for the whole corpus is chosen per profile by sweeping every distinct
//! score; the raw score is normalised so that no detections score 0 and a perfect detector
//! 100.
//!
//! [`Corpus::load`] reads NAB's layout (`data/<category>/<file>.csv` and
//! `labels/combined_windows.json`); [`Corpus::score`] scores one score vector per file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::decode::time::parse_str;

/// A cost matrix of `config/profiles.json`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

/// NAB's three profiles.
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

#[derive(Debug, thiserror::Error)]
pub enum NabError {
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },
}

fn input(path: &Path, reason: impl Into<String>) -> NabError {
    NabError::Input {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// One data file with its windows.
#[derive(Debug, Clone)]
pub struct Series {
    /// `category/file.csv`, as the label file names it.
    pub name: String,
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
    /// [start, end] in epoch ms, inclusive.
    pub windows: Vec<(i64, i64)>,
}

/// A labelled set of series.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub series: Vec<Series>,
}

/// Reads a `timestamp,value` CSV with a header row. Rows whose timestamp or value does not
/// parse are errors with their line number: a benchmark must not silently score less data.
pub fn read_csv(path: &Path) -> Result<(Vec<i64>, Vec<f64>), NabError> {
    let text = std::fs::read_to_string(path).map_err(|e| input(path, e.to_string()))?;
    let mut ts = Vec::new();
    let mut vs = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let mut cols = line.split(',');
        let (t, v) = (cols.next().unwrap_or(""), cols.next().unwrap_or(""));
        let t = parse_str(t).ok_or_else(|| input(path, format!("line {}: bad timestamp {t:?}", n + 1)))?;
        let v: f64 = v
            .trim()
            .parse()
            .map_err(|_| input(path, format!("line {}: bad value {v:?}", n + 1)))?;
        ts.push(t);
        vs.push(v);
    }
    Ok((ts, vs))
}

impl Corpus {
    /// Loads every file named in `labels/combined_windows.json` under `dir/data`.
    pub fn load(dir: &Path) -> Result<Corpus, NabError> {
        let labels = dir.join("labels/combined_windows.json");
        let text = std::fs::read_to_string(&labels).map_err(|e| input(&labels, e.to_string()))?;
        let windows: BTreeMap<String, Vec<[String; 2]>> =
            serde_json::from_str(&text).map_err(|e| input(&labels, e.to_string()))?;
        let mut series = Vec::new();
        for (name, ws) in windows {
            let path = dir.join("data").join(&name);
            let (timestamps, values) = read_csv(&path)?;
            let mut windows = Vec::new();
            for [a, b] in &ws {
                let bad = || input(&labels, format!("{name}: bad window [{a}, {b}]"));
                windows.push((parse_str(a).ok_or_else(bad)?, parse_str(b).ok_or_else(bad)?));
            }
            series.push(Series {
                name,
                timestamps,
                values,
                windows,
            });
        }
        Ok(Corpus { series })
    }

    /// Scores one anomaly-score vector per series (in `self.series` order) under every
    /// profile, with the threshold optimised over the whole corpus.
    pub fn score(&self, scores: &[Vec<f64>]) -> Vec<ProfileScore> {
        let mut rows = Vec::new();
        let mut windows = 0;
        for (s, sc) in self.series.iter().zip(scores) {
            rows.extend(sweep_rows(&s.timestamps, sc, &s.windows, windows));
            windows += s.windows.len();
        }
        PROFILES.iter().map(|p| optimise(&rows, windows, p)).collect()
    }
}

/// One file's part of a score at a fixed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct FileScore {
    pub name: String,
    pub raw: f64,
    pub detected: usize,
    pub windows: usize,
    pub false_positives: usize,
}

impl Corpus {
    /// Each file's raw score, detections and false positives at `threshold`.
    pub fn per_file(&self, scores: &[Vec<f64>], threshold: f64, p: &Profile) -> Vec<FileScore> {
        self.series
            .iter()
            .zip(scores)
            .map(|(s, sc)| {
                let rows = sweep_rows(&s.timestamps, sc, &s.windows, 0);
                let mut best: Vec<Option<f64>> = vec![None; s.windows.len()];
                let mut seen = vec![false; s.windows.len()];
                let mut f = FileScore {
                    name: s.name.clone(),
                    raw: 0.0,
                    detected: 0,
                    windows: 0,
                    false_positives: 0,
                };
                for r in &rows {
                    match r.place {
                        Place::Window(id, v) => {
                            seen[id] = true;
                            if r.score >= threshold {
                                best[id] = Some(best[id].map_or(v, |b: f64| b.max(v)));
                            }
                        }
                        Place::Outside(v) if r.score >= threshold => {
                            f.raw += v * p.fp;
                            f.false_positives += 1;
                        }
                        Place::Outside(_) => {}
                    }
                }
                for (b, seen) in best.iter().zip(&seen) {
                    if *seen {
                        f.windows += 1;
                        match b {
                            Some(v) => {
                                f.detected += 1;
                                f.raw += v * p.tp;
                            }
                            None => f.raw -= p.fn_,
                        }
                    }
                }
                f
            })
            .collect()
    }
}

/// Where a scorable row lies.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    /// In window `id`, worth σ(y)/σ(−1) when it is the best detection there.
    Window(usize, f64),
    /// Outside every window: σ(y), negative (or −1 before any window).
    Outside(f64),
}

#[derive(Debug, Clone, Copy)]
struct Row {
    score: f64,
    place: Place,
}

/// NAB's scaled sigmoid.
fn sigmoid(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// The probationary length of a file of `n` rows.
pub fn probation(n: usize) -> usize {
    ((0.15 * n as f64).floor()).min(0.15 * 5000.0) as usize
}

/// The scorable rows of one file (`calcSweepScore`): probationary rows are left out;
/// window ids start at `first_window`.
fn sweep_rows(ts: &[i64], scores: &[f64], windows: &[(i64, i64)], first_window: usize) -> Vec<Row> {
    let skip = probation(ts.len());
    let max_tp = sigmoid(-1.0);
    let mut rows = Vec::with_capacity(ts.len());
    let mut next = 0; // next window to enter
    let mut cur: Option<(usize, usize, f64)> = None; // (id, right index, width)
    let mut prev: Option<(usize, f64)> = None; // (right index, width)
    for (i, (&t, &score)) in ts.iter().zip(scores).enumerate() {
        if cur.is_none() && next < windows.len() && t >= windows[next].0 {
            let (_, end) = windows[next];
            let right = ts.iter().rposition(|&x| x <= end).unwrap_or(i).max(i);
            cur = Some((first_window + next, right, (right - i + 1) as f64));
            next += 1;
        }
        let place = match cur {
            Some((id, right, width)) => Place::Window(id, sigmoid(-((right - i + 1) as f64) / width) / max_tp),
            None => match prev {
                None => Place::Outside(-1.0),
                Some((right, width)) => Place::Outside(sigmoid(i.abs_diff(right) as f64 / (width - 1.0).max(1.0))),
            },
        };
        if i >= skip {
            rows.push(Row {
                score: if score.is_finite() { score } else { 0.0 },
                place,
            });
        }
        if let Some((_, right, width)) = cur {
            if i == right {
                prev = Some((right, width));
                cur = None;
            }
        }
    }
    rows
}

/// One profile's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileScore {
    pub profile: &'static str,
    pub threshold: f64,
    pub raw: f64,
    /// 0 = no detections, 100 = perfect.
    pub normalised: f64,
    pub detected: usize,
    pub windows: usize,
    pub false_positives: usize,
}

/// Sweeps every distinct score as a threshold (`calcScoreByThreshold`) and keeps the best.
fn optimise(rows: &[Row], n_windows: usize, p: &Profile) -> ProfileScore {
    // Windows with no scorable row (inside the probationary period) do not count.
    let mut scorable = vec![false; n_windows];
    for r in rows {
        if let Place::Window(id, _) = r.place {
            scorable[id] = true;
        }
    }
    let windows = scorable.iter().filter(|x| **x).count();
    let null = -(windows as f64) * p.fn_;
    let perfect = windows as f64 * p.tp;
    let mut order: Vec<&Row> = rows.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut part: Vec<f64> = vec![-p.fn_; n_windows];
    let (mut total, mut detected, mut fps) = (null, 0, 0);
    let mut best = ProfileScore {
        profile: p.name,
        threshold: f64::INFINITY,
        raw: null,
        normalised: 0.0,
        detected: 0,
        windows,
        false_positives: 0,
    };
    let mut i = 0;
    while i < order.len() {
        let threshold = order[i].score;
        while i < order.len() && order[i].score >= threshold {
            match order[i].place {
                Place::Outside(s) => {
                    total += s * p.fp;
                    fps += 1;
                }
                Place::Window(id, s) => {
                    let v = s * p.tp;
                    if part[id] == -p.fn_ {
                        detected += 1;
                    }
                    if v > part[id] {
                        total += v - part[id];
                        part[id] = v;
                    }
                }
            }
            i += 1;
        }
        if total > best.raw {
            best.threshold = threshold;
            best.raw = total;
            best.detected = detected;
            best.false_positives = fps;
        }
    }
    best.normalised = if perfect > null {
        100.0 * (best.raw - null) / (perfect - null)
    } else {
        0.0
    };
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 rows a minute apart, one window over rows 40..=59.
    fn one_window() -> Series {
        Series {
            name: "t/x.csv".into(),
            timestamps: (0..100).map(|i| i * 60_000).collect(),
            values: vec![0.0; 100],
            windows: vec![(40 * 60_000, 59 * 60_000)],
        }
    }

    fn corpus() -> Corpus {
        Corpus {
            series: vec![one_window()],
        }
    }

    fn with(points: &[(usize, f64)]) -> Vec<f64> {
        let mut s = vec![0.0; 100];
        for (i, v) in points {
            s[*i] = *v;
        }
        s
    }

    #[test]
    fn the_sigmoid_is_nabs() {
        assert!((sigmoid(-1.0) - 0.986_614_298_151_430_3).abs() < 1e-12);
        assert_eq!(sigmoid(0.0), 0.0);
        assert_eq!(sigmoid(3.5), -1.0);
        assert_eq!(probation(100), 15);
        assert_eq!(probation(20_000), 750);
    }

    #[test]
    fn null_scores_zero_and_an_earliest_detection_one_hundred() {
        let c = corpus();
        let null = &c.score(&[vec![0.0; 100]])[0];
        // Sweeping includes the all-rows threshold; the best of those is no better than null.
        assert_eq!(null.normalised, 0.0);
        let s = c.score(&[with(&[(40, 1.0)])]);
        for p in &s {
            assert!((p.normalised - 100.0).abs() < 1e-9, "{p:?}");
            assert_eq!((p.detected, p.false_positives), (1, 0));
        }
    }

    #[test]
    fn late_detections_earn_less_and_false_positives_cost() {
        let c = corpus();
        let mid = c.score(&[with(&[(50, 1.0)])])[0].clone();
        // Row 50 of a 20-row window: y = -(59-50+1)/20 = -0.5.
        let expected = sigmoid(-0.5) / sigmoid(-1.0);
        assert!((mid.raw - expected).abs() < 1e-12, "{mid:?}");
        let with_fp = c.score(&[with(&[(50, 1.0), (20, 1.0)])])[0].clone();
        assert!((with_fp.raw - (expected - 0.11)).abs() < 1e-12, "{with_fp:?}");
        // Just past the window a false positive costs little: row 60 is y = 1/19.
        let after = c.score(&[with(&[(50, 1.0), (60, 1.0)])])[0].clone();
        assert!((after.raw - (expected + 0.11 * sigmoid(1.0 / 19.0))).abs() < 1e-12);
        // In the probationary period nothing counts.
        let early = c.score(&[with(&[(50, 1.0), (3, 1.0)])])[0].clone();
        assert!((early.raw - expected).abs() < 1e-12);
    }

    #[test]
    fn the_threshold_is_swept() {
        let c = corpus();
        // A false positive scored higher than the detection: the best threshold takes both,
        // since the detection is worth more than the false positive costs.
        let s = c.score(&[with(&[(20, 0.9), (45, 0.5)])])[0].clone();
        assert_eq!(s.threshold, 0.5);
        assert_eq!((s.detected, s.false_positives), (1, 1));
    }
}
