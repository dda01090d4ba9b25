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
//! Work per point: O(history) (two selections), bounded; state per series: `history` floats.

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
        if self.history.len() == p.history {
            self.history.pop_front();
        }
        self.history.push_back(v);
    }

    /// Median, robust scale, min and max of the history.
    fn stats(&self) -> (f64, f64, f64, f64) {
        let mut xs: Vec<f64> = self.history.iter().copied().collect();
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
