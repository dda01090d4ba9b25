//! A streaming detector for one time series: is this point far outside the series' own
//! recent normal, in the direction that hurts?
//!
//! Assumptions, stated so that users know when it fits: the recent past (the last
//! `history` points, an hour of one-minute samples by default) is mostly normal; a
//! symptom is a departure that is both *statistically* large (robust z-score against the
//! median and MAD of the history, above `z`) and *practically* large (beyond the whole
//! recent envelope, by a quarter of its range), which keeps tiny ratios that go from 0.000
//! to 0.004 from paging anyone; and it lasts (`confirm` consecutive points). Daily
//! seasonality is tracked by the rolling history, which an hour of data follows closely.
//! Anomalous points are not added to the history, so a long incident does not become
//! the new normal; after `history` anomalous points in a row the level is accepted (a
//! level shift).
//!
//! Work per point: O(history) (an insertion into and a removal from a sorted copy of the
//! history, and a walk over half of it), bounded; state per series: twice `history` floats.

use std::collections::VecDeque;

/// Which departures count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
    Both,
}

#[derive(Debug, Clone, Copy)]
pub struct DetectorParams {
    pub history: usize,
    pub min_history: usize,
    pub z: f64,
    pub confirm: u32,
}

impl Default for DetectorParams {
    fn default() -> Self {
        DetectorParams {
            history: 60,
            min_history: 20,
            z: 6.0,
            confirm: 2,
        }
    }
}

/// What one point did to the series' state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Not enough history yet, or a non-finite value (ignored).
    Learning,
    Normal {
        score: f64,
    },
    /// Outside normal but not yet for `confirm` points.
    Suspect {
        score: f64,
    },
    /// An anomaly episode starts at this point.
    Start {
        score: f64,
        expected: f64,
        low: f64,
        high: f64,
    },
    /// Still anomalous.
    Ongoing {
        score: f64,
    },
    /// Normal again, but not yet for `confirm` points.
    Settling,
    /// Back to normal: the episode ends.
    End,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Detector {
    history: VecDeque<f64>,
    run: u32,
    calm: u32,
    in_episode: bool,
    rejected: usize,
    /// The history's values in order, kept beside it so that a point costs one insertion
    /// and one removal instead of two selections; rebuilt when it does not match the
    /// history (after a restore: it is not saved).
    #[serde(skip)]
    sorted: Vec<f64>,
}

impl Detector {
    /// Scores one point, using only the past.
    pub fn observe(&mut self, v: f64, dir: Direction, p: &DetectorParams) -> Verdict {
        if !v.is_finite() {
            return Verdict::Learning;
        }
        if self.history.len() < p.min_history {
            self.push(v, p);
            return Verdict::Learning;
        }
        let (median, scale, lo, hi) = self.stats();
        let z = (v - median) / scale;
        let margin = 0.25 * (hi - lo);
        let up = z > p.z && v > hi + margin;
        let down = z < -p.z && v < lo - margin;
        let bad = match dir {
            Direction::Up => up,
            Direction::Down => down,
            Direction::Both => up || down,
        };
        let score = 1.0 - 1.0 / (1.0 + (z.abs() / p.z).powi(2));
        if bad {
            self.run += 1;
            self.calm = 0;
            self.rejected += 1;
            if self.rejected >= p.history {
                // A level shift that has lasted a whole history is the new normal.
                self.history.clear();
                self.sorted.clear();
                self.rejected = 0;
            }
            if self.in_episode {
                return Verdict::Ongoing { score };
            }
            if self.run >= p.confirm {
                self.in_episode = true;
                return Verdict::Start {
                    score,
                    expected: median,
                    low: lo,
                    high: hi,
                };
            }
            return Verdict::Suspect { score };
        }
        self.run = 0;
        self.rejected = 0;
        self.push(v, p);
        if self.in_episode {
            self.calm += 1;
            if self.calm >= p.confirm {
                self.in_episode = false;
                self.calm = 0;
                return Verdict::End;
            }
            return Verdict::Settling;
        }
        Verdict::Normal { score }
    }

    fn push(&mut self, v: f64, p: &DetectorParams) {
        self.sync_sorted();
        if self.history.len() == p.history {
            if let Some(old) = self.history.pop_front() {
                if let Ok(i) = self.sorted.binary_search_by(|x| x.total_cmp(&old)) {
                    self.sorted.remove(i);
                }
            }
        }
        self.history.push_back(v);
        let at = self.sorted.partition_point(|x| x.total_cmp(&v).is_lt());
        self.sorted.insert(at, v);
    }

    fn sync_sorted(&mut self) {
        if self.sorted.len() != self.history.len() {
            self.sorted = self.history.iter().copied().collect();
            self.sorted.sort_by(f64::total_cmp);
        }
    }

    /// Median, robust scale, min and max of the history (not empty).
    fn stats(&mut self) -> (f64, f64, f64, f64) {
        self.sync_sorted();
        let xs = &self.sorted;
        let mid = xs.len() / 2;
        let median = xs[mid];
        let (lo, hi) = (xs[0], xs[xs.len() - 1]);
        // The median absolute deviation: the mid-th smallest distance from the median,
        // found by walking outwards from it (the values on each side are in order).
        let (mut left, mut right) = (mid, mid);
        let mut deviation = 0.0;
        for _ in 0..=mid {
            let below = (left > 0).then(|| median - xs[left - 1]);
            let above = xs.get(right).map(|x| x - median);
            deviation = match (below, above) {
                (Some(b), Some(a)) if b < a => {
                    left -= 1;
                    b
                }
                (_, Some(a)) => {
                    right += 1;
                    a
                }
                (Some(b), None) => {
                    left -= 1;
                    b
                }
                (None, None) => break,
            };
        }
        let mad = deviation * 1.4826;
        let scale = mad.max(median.abs() * 0.05).max((hi - lo) * 0.05).max(1e-9);
        (median, scale, lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(d: &mut Detector, xs: impl IntoIterator<Item = f64>, dir: Direction) -> Vec<Verdict> {
        let p = DetectorParams::default();
        xs.into_iter().map(|x| d.observe(x, dir, &p)).collect()
    }

    fn noisy(i: usize) -> f64 {
        50.0 + ((i * 7919) % 13) as f64 // 50..62, deterministic
    }

    /// The statistics by two selections over a copy of the history, as they were found
    /// before the sorted copy was kept.
    fn selected_stats(history: &VecDeque<f64>) -> (f64, f64, f64, f64) {
        let mut xs: Vec<f64> = history.iter().copied().collect();
        let mid = xs.len() / 2;
        let median = *xs.select_nth_unstable_by(mid, f64::total_cmp).1;
        let (lo, hi) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
        for x in xs.iter_mut() {
            *x = (*x - median).abs();
        }
        let mad = *xs.select_nth_unstable_by(mid, f64::total_cmp).1 * 1.4826;
        let scale = mad.max(median.abs() * 0.05).max((hi - lo) * 0.05).max(1e-9);
        (median, scale, lo, hi)
    }

    #[test]
    fn the_sorted_history_gives_the_statistics_of_selection() {
        let p = DetectorParams::default();
        let mut d = Detector::default();
        // repeats, both zeros, negatives and a level shift that clears the history
        for i in 0..2000usize {
            let v = match (i * 7919) % 17 {
                0 => 0.0,
                1 => -0.0,
                k => (k as f64 - 8.0) * 0.75,
            } + if (700..900).contains(&i) { 1e4 } else { 0.0 };
            d.observe(v, Direction::Both, &p);
            if !d.history.is_empty() {
                assert_eq!(d.stats(), selected_stats(&d.history), "after point {i}");
            }
        }
        // a restored detector (the sorted copy is not saved) rebuilds it
        let mut restored: Detector = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert!(restored.sorted.is_empty());
        assert_eq!(restored.stats(), selected_stats(&d.history));
        for i in 0..100 {
            let v = noisy(i);
            assert_eq!(restored.observe(v, Direction::Up, &p), d.observe(v, Direction::Up, &p));
        }
    }

    #[test]
    fn a_sustained_spike_starts_and_ends_an_episode() {
        let mut d = Detector::default();
        feed(&mut d, (0..60).map(noisy), Direction::Up);
        let v = feed(&mut d, [400.0, 420.0, 410.0, 55.0, 56.0], Direction::Up);
        assert!(matches!(v[0], Verdict::Suspect { .. }), "{v:?}");
        assert!(
            matches!(v[1], Verdict::Start { expected, .. } if (50.0..63.0).contains(&expected)),
            "{v:?}"
        );
        assert!(matches!(v[2], Verdict::Ongoing { .. }));
        assert_eq!(v[4], Verdict::End);
    }

    #[test]
    fn one_point_blips_and_the_wrong_direction_do_not_count() {
        let mut d = Detector::default();
        feed(&mut d, (0..60).map(noisy), Direction::Up);
        let v = feed(&mut d, [400.0, 55.0, 0.0, 0.0, 0.0], Direction::Up);
        assert!(v.iter().all(|x| !matches!(x, Verdict::Start { .. })), "{v:?}");
    }

    #[test]
    fn tiny_absolute_changes_of_a_flat_ratio_are_normal() {
        let mut d = Detector::default();
        let base = (0..60).map(|i| if i % 7 == 0 { 0.004 } else { 0.0 });
        feed(&mut d, base, Direction::Up);
        let v = feed(&mut d, [0.003, 0.0045, 0.002], Direction::Up);
        assert!(v.iter().all(|x| matches!(x, Verdict::Normal { .. })), "{v:?}");
        let v = feed(&mut d, [0.3, 0.31], Direction::Up);
        assert!(matches!(v[1], Verdict::Start { .. }), "{v:?}");
    }

    #[test]
    fn nan_infinite_and_constant_series_are_safe() {
        let mut d = Detector::default();
        let v = feed(
            &mut d,
            std::iter::repeat_n(1.0, 40).chain([f64::NAN, f64::INFINITY, 1.0]),
            Direction::Both,
        );
        assert!(
            v.iter()
                .all(|x| matches!(x, Verdict::Learning | Verdict::Normal { .. })),
            "{v:?}"
        );
    }

    #[test]
    fn a_level_shift_becomes_normal_after_a_history() {
        let mut d = Detector::default();
        feed(&mut d, (0..60).map(noisy), Direction::Up);
        let v = feed(&mut d, (0..200).map(|i| 500.0 + noisy(i)), Direction::Up);
        assert!(matches!(v.last(), Some(Verdict::Normal { .. })), "{:?}", &v[150..]);
    }
}
