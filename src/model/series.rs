//! One series' detector, of the kind `[detection] model` names, and the episodes it
//! reports: [`super::detector::Detector`] (`envelope`) decides episodes itself; a
//! [`Surprise`] detector scores points, and [`Watch`] turns its scores into episodes.

use serde::{Deserialize, Serialize};

use super::detector::{Detector, Direction, Verdict};
use super::surprise::{Surprise, SurpriseParams};

/// One series' detector, of the configured kind, with the episode it is in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum SeriesDetector {
    Envelope(Detector),
    Surprise(Box<Watch>),
}

/// Episodes from [`Surprise`] scores: one starts when a point is news (score ≥ 0.5) and
/// outside the expected range in the watched direction; it lasts while points stay
/// outside, and ends after `confirm` points back inside.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Watch {
    detector: Surprise,
    pub(crate) in_episode: bool,
    pub(crate) calm: u32,
}

impl Watch {
    pub(crate) fn observe(&mut self, ts: i64, v: f64, dir: Direction, p: &SurpriseParams, confirm: u32) -> Verdict {
        if !v.is_finite() {
            return Verdict::Learning;
        }
        let s = self.detector.observe(ts, v, p);
        let outside = match dir {
            Direction::Up => v > s.high,
            Direction::Down => v < s.low,
            Direction::Both => v > s.high || v < s.low,
        };
        if !self.in_episode {
            if s.score >= 0.5 && outside {
                self.in_episode = true;
                self.calm = 0;
                return Verdict::Start {
                    score: s.score,
                    expected: s.expected,
                    low: s.low,
                    high: s.high,
                };
            }
            return Verdict::Normal { score: s.score };
        }
        if outside {
            self.calm = 0;
            return Verdict::Ongoing { score: s.score };
        }
        self.calm += 1;
        if self.calm >= confirm {
            self.in_episode = false;
            return Verdict::End;
        }
        Verdict::Settling
    }
}
