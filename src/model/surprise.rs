//! The default streaming detector: an anomaly score in 0..1 for every point of a series,
//! from the past alone, in constant work and constant memory per point.
//!
//! What it assumes, so that users know when it fits:
//! - **Normal is predictable** by one of three forecasters, whichever has had the smaller
//!   mean absolute error lately: the recent level (an exponentially weighted mean, for
//!   series without a cycle), the daily profile (a running mean per quarter hour of the
//!   day) or the weekly profile (per hour of the week), each profile shifted by the series'
//!   current offset from it. Daily and weekly seasonality need no configuration; sampling
//!   may be irregular, since profiles are indexed by time, not by point count.
//! - **Three kinds of departure** are measured in the series' own units of normal: a point
//!   far from its forecast (spikes, dips), a forecast that has been wrong in one direction
//!   for a while (level shifts, slow drifts such as a memory leak), and a value beyond the
//!   envelope of everything seen lately (a slowly shrinking min/max: a new high or low).
//! - **Rare is relative to the series' own history.** Each departure is turned into a
//!   rarity, −log10 of how often departures at least that large happened recently (a
//!   fading histogram), so a noisy or spiky series whose spikes are routine does not page,
//!   and one threshold fits every series.
//! - **An anomaly is news once**: a point scores only when its rarity exceeds the largest
//!   of the recent past (a decaying maximum), so a long anomaly scores at its start and
//!   not at every point after it; and after a point scores 0.5 or more, no point scores for
//!   the next `quiet` points (the same trouble coming back in waves is the same news).
//! - **Routine is not news.** A value inside the range the series held at this hour of the
//!   day (or the hour either side) on each of the two days before — a nightly backup, a
//!   daily batch — departs from its forecast by at most `routine` scales, and is not a
//!   new high or low. It must have happened on both days, so yesterday's one-off anomaly
//!   does not hide today's.
//! - Errors are clipped before they update the error scales, so an anomaly does not teach
//!   the detector that anomalies are normal; a new level becomes normal as forecasts
//!   follow it. Flat series are fine (any departure from flat is rare); sparse ones too.
//!
//! State per series: [`Surprise::STATE_BYTES`] (fixed-size tables); work per point: about
//! two hundred arithmetic operations, no allocation.

use serde::{Deserialize, Serialize};

/// Tunable constants. The defaults are what `lookout nab` reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SurpriseParams {
    /// Points scored 0 at the start while the state settles.
    pub warmup: usize,
    /// Weight of a new point in the level forecast.
    pub level_alpha: f64,
    /// Weight of a new point in a seasonal bin.
    pub bin_alpha: f64,
    /// Weight of a new error in the error scales.
    pub error_alpha: f64,
    /// Errors are clipped at this many scales before they update a scale.
    pub clip: f64,
    /// Weight of a new error in the running bias (mean signed error) of the forecast.
    pub bias_alpha: f64,
    /// How much a sustained bias counts against a point departure.
    pub bias_weight: f64,
    /// How much a value beyond the envelope counts, and how fast the envelope shrinks.
    pub beyond_weight: f64,
    pub envelope_decay: f64,
    /// Per-point fading of the rarity histograms.
    pub tail_decay: f64,
    /// Pseudo-points in every tail of the histograms.
    pub prior: f64,
    /// Per-point decay of the recent maximum rarity.
    pub decay: f64,
    /// Points after a report during which no other point scores: the same news.
    pub quiet: f64,
    /// A routine value (inside the range of this hour on both of the last two days)
    /// departs from its forecast by at most this many scales; 0 turns the rule off.
    pub routine: f64,
    /// How far beyond that range, as a share of its width, a value is still routine.
    pub routine_margin: f64,
    /// Rarity at which the score is 0.5: the threshold that scores best on NAB's standard
    /// profile, so that 0.5 is where an anomaly is reported.
    pub half: f64,
}

impl Default for SurpriseParams {
    fn default() -> Self {
        SurpriseParams {
            warmup: 0,
            level_alpha: 0.1,
            bin_alpha: 0.3,
            error_alpha: 0.003,
            clip: 10.0,
            bias_alpha: 0.05,
            bias_weight: 1.0,
            beyond_weight: 1.0,
            envelope_decay: 0.001,
            tail_decay: 0.999,
            prior: 0.1,
            decay: 0.998,
            quiet: 50.0,
            routine: 1.0,
            routine_margin: 0.25,
            half: 2.4,
        }
    }
}

impl SurpriseParams {
    /// Sets one parameter by name (`key=value`), for tuning from the command line.
    pub fn set(&mut self, kv: &str) -> Result<(), String> {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("{kv:?}: expected key=value"))?;
        let x: f64 = v.parse().map_err(|_| format!("{kv:?}: not a number"))?;
        if !x.is_finite() || x < 0.0 {
            return Err(format!("{kv:?}: must be a finite number ≥ 0"));
        }
        let slot = match k {
            "warmup" => {
                self.warmup = x as usize;
                return Ok(());
            }
            "level_alpha" => &mut self.level_alpha,
            "bin_alpha" => &mut self.bin_alpha,
            "error_alpha" => &mut self.error_alpha,
            "clip" => &mut self.clip,
            "bias_alpha" => &mut self.bias_alpha,
            "bias_weight" => &mut self.bias_weight,
            "beyond_weight" => &mut self.beyond_weight,
            "envelope_decay" => &mut self.envelope_decay,
            "tail_decay" => &mut self.tail_decay,
            "prior" => &mut self.prior,
            "decay" => &mut self.decay,
            "quiet" => &mut self.quiet,
            "routine" => &mut self.routine,
            "routine_margin" => &mut self.routine_margin,
            "half" => &mut self.half,
            _ => return Err(format!("{k:?}: no such parameter")),
        };
        *slot = x;
        Ok(())
    }
}

const DAY_BINS: usize = 96;
const CAP: f64 = 1000.0;
const WEEK_BINS: usize = 168;
const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;
const HOUR_MS: i64 = 3_600_000;

/// The day number and the hour of the day of a time.
fn day_and_hour(t_ms: i64) -> (i64, usize) {
    (t_ms.div_euclid(DAY_MS), (t_ms.rem_euclid(DAY_MS) / HOUR_MS) as usize)
}

/// A running mean absolute error. It starts as a plain mean over its first 1/α errors,
/// then weights new errors by α and clips them at `clip` scales so that an anomaly does
/// not widen what counts as normal.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Scale {
    mae: f64,
    n: u32,
}

impl Scale {
    fn update(&mut self, e: f64, p: &SurpriseParams) {
        let e = e.abs();
        let settled = self.n as f64 * p.error_alpha >= 1.0;
        if settled {
            let e = e.min(p.clip * 1.25 * self.mae);
            self.mae += p.error_alpha * (e - self.mae);
        } else {
            self.n += 1;
            self.mae += (e - self.mae) / self.n as f64;
        }
    }

    fn ready(&self) -> bool {
        self.n >= 10
    }
}

const TAIL_BINS: usize = 48;

/// How often a surprise at least this large has happened lately: a histogram of surprises
/// on a log scale (four bins per doubling) whose old mass fades by `tail_decay` per point.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tail {
    #[serde(with = "serde_big_array")]
    mass: [f64; TAIL_BINS],
    total: f64,
    /// The weight of the next point; grows instead of every bin shrinking.
    weight: f64,
}

impl Default for Tail {
    fn default() -> Self {
        Tail {
            mass: [0.0; TAIL_BINS],
            total: 0.0,
            weight: 1.0,
        }
    }
}

impl Tail {
    fn bin(z: f64) -> usize {
        (((1.0 + z).log2() * 4.0) as usize).min(TAIL_BINS - 1)
    }

    /// −log10 of the share of recent surprises at least as large as `z`, with a prior of
    /// `p.prior` points spread as P(Z ≥ z) = 1/(1+z), so that beyond everything seen the
    /// rarity still grows with `z`.
    fn rarity(&self, z: f64, p: &SurpriseParams) -> f64 {
        let tail: f64 = self.mass[Tail::bin(z)..].iter().sum();
        let prior = p.prior * self.weight;
        -((tail + prior / (1.0 + z)) / (self.total + prior)).log10()
    }

    fn add(&mut self, z: f64, p: &SurpriseParams) {
        self.weight /= p.tail_decay;
        self.mass[Tail::bin(z)] += self.weight;
        self.total += self.weight;
        if self.weight > 1e100 {
            for m in self.mass.iter_mut() {
                *m /= self.weight;
            }
            self.total /= self.weight;
            self.weight = 1.0;
        }
    }
}

/// A seasonal profile: one running mean per bin of a period.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Profile<const N: usize> {
    #[serde(with = "serde_big_array")]
    mean: [f64; N],
    #[serde(with = "serde_big_array")]
    seen: [bool; N],
    /// Current offset of the series from the profile.
    offset: f64,
    error: Scale,
}

impl<const N: usize> Default for Profile<N> {
    fn default() -> Self {
        Profile {
            mean: [0.0; N],
            seen: [false; N],
            offset: 0.0,
            error: Scale::default(),
        }
    }
}

impl<const N: usize> Profile<N> {
    fn forecast(&self, bin: usize) -> Option<f64> {
        self.seen[bin].then(|| self.mean[bin] + self.offset)
    }

    fn update(&mut self, bin: usize, x: f64, p: &SurpriseParams) {
        if self.seen[bin] {
            self.offset += p.bias_alpha * ((x - self.mean[bin]) - self.offset);
            self.mean[bin] += p.bin_alpha * (x - self.offset - self.mean[bin]);
        } else {
            self.mean[bin] = x - self.offset;
            self.seen[bin] = true;
        }
    }
}

/// The range of values seen in one hour of the day, today and on the two days before.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct HourRange {
    day: i64,
    /// (low, high) today, yesterday and the day before; None where nothing was seen.
    days: [Option<(f64, f64)>; 3],
}

impl HourRange {
    /// The ranges of the two days before `day`, as they stand.
    fn before(&self, day: i64) -> [Option<(f64, f64)>; 2] {
        match day - self.day {
            0 => [self.days[1], self.days[2]],
            1 => [self.days[0], self.days[1]],
            2 => [None, self.days[0]],
            _ => [None, None],
        }
    }

    fn add(&mut self, day: i64, x: f64) {
        if day != self.day {
            let [d1, d2] = self.before(day);
            self.days = [None, d1, d2];
            self.day = day;
        }
        let (lo, hi) = self.days[0].unwrap_or((x, x));
        self.days[0] = Some((lo.min(x), hi.max(x)));
    }
}

/// Serde for arrays longer than 32 (serde's own impls stop there).
mod serde_big_array {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize, const N: usize>(a: &[T; N], s: S) -> Result<S::Ok, S::Error> {
        a.as_slice().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>, const N: usize>(
        d: D,
    ) -> Result<[T; N], D::Error> {
        let v = Vec::<T>::deserialize(d)?;
        let n = v.len();
        v.try_into()
            .map_err(|_| serde::de::Error::custom(format!("expected {N} values, found {n}")))
    }
}

/// What one point scored, with the range the detector expected it in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// 0..1; 0 while learning.
    pub score: f64,
    /// The rarity of the point's largest departure (−log10 of a frequency).
    pub surprise: f64,
    /// The forecast, and the range within three error scales of it.
    pub expected: f64,
    pub low: f64,
    pub high: f64,
}

/// One series' detector state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Surprise {
    n: u64,
    first_ms: i64,
    level: f64,
    level_error: Scale,
    day: Profile<DAY_BINS>,
    week: Profile<WEEK_BINS>,
    /// Running mean of signed forecast errors.
    bias: f64,
    /// The envelope: a min and max that shrink slowly towards each other.
    lo: f64,
    hi: f64,
    point_tail: Tail,
    bias_tail: Tail,
    beyond_tail: Tail,
    recent_max: f64,
    /// What each hour of the day held on the days before: a value inside the range it
    /// held at this hour (±1) on both of the last two days is routine (a nightly job).
    #[serde(default)]
    hours: [HourRange; 24],
    /// No point scores up to this count: the quiet after a report.
    #[serde(default)]
    quiet_until: u64,
}

impl Surprise {
    pub const STATE_BYTES: usize = std::mem::size_of::<Surprise>();

    /// Scores one point. Non-finite values are ignored (score 0, state unchanged).
    pub fn observe(&mut self, t_ms: i64, x: f64, p: &SurpriseParams) -> Scored {
        if !x.is_finite() {
            return Scored {
                score: 0.0,
                surprise: 0.0,
                expected: self.level,
                low: self.lo,
                high: self.hi,
            };
        }
        if self.n == 0 {
            self.first_ms = t_ms;
            self.level = x;
            (self.lo, self.hi) = (x, x);
        }
        let tiny = 1e-9 + 1e-6 * self.level.abs();
        let day_bin = (t_ms.rem_euclid(DAY_MS) * DAY_BINS as i64 / DAY_MS) as usize;
        let week_bin = (t_ms.rem_euclid(WEEK_MS) * WEEK_BINS as i64 / WEEK_MS) as usize;
        let age = t_ms.saturating_sub(self.first_ms);

        // The forecaster with the smallest error lately.
        let mut expected = self.level;
        let mut mae = self.level_error.mae;
        for (f, err, old_enough) in [
            (self.day.forecast(day_bin), &self.day.error, age > DAY_MS),
            (self.week.forecast(week_bin), &self.week.error, age > WEEK_MS),
        ] {
            if let Some(f) = f.filter(|_| old_enough && err.ready() && err.mae < mae) {
                expected = f;
                mae = err.mae;
            }
        }

        // The three departures, in units of normal, and their rarity.
        let scale = 1.25 * mae + tiny;
        // the hour either side is looked up at its own time, so that at 23:30 the hour
        // after is 00:30 of the days after those before
        let routine = p.routine > 0.0
            && [-HOUR_MS, 0, HOUR_MS].iter().any(|d| {
                let (day, hour) = day_and_hour(t_ms + d);
                match self.hours[hour].before(day) {
                    [Some(a), Some(b)] => {
                        let (lo, hi) = (a.0.max(b.0), a.1.min(b.1));
                        let margin = p.routine_margin * (hi - lo);
                        x <= hi + margin && x >= lo - margin
                    }
                    _ => false,
                }
            });
        let e = x - expected;
        let e = if routine {
            e.clamp(-p.routine * scale, p.routine * scale)
        } else {
            e
        };
        let point = e.abs() / scale;
        let bias = self.bias + p.bias_alpha * (e - self.bias);
        let sustained = bias.abs() / scale;
        let beyond = (x - self.hi).max(self.lo - x).max(0.0) / (self.hi - self.lo).max(tiny);
        let beyond = if routine { 0.0 } else { beyond };
        let surprise = self
            .point_tail
            .rarity(point, p)
            .max(p.bias_weight * self.bias_tail.rarity(sustained, p))
            .max(p.beyond_weight * self.beyond_tail.rarity(beyond, p))
            .min(CAP);

        // Learn from the point.
        self.point_tail.add(point, p);
        self.bias_tail.add(sustained, p);
        self.beyond_tail.add(beyond, p);
        self.bias = bias;
        let mid = (self.hi + self.lo) / 2.0;
        self.hi = x.max(self.hi - p.envelope_decay * (self.hi - mid));
        self.lo = x.min(self.lo + p.envelope_decay * (mid - self.lo));
        if let Some(f) = self.day.forecast(day_bin) {
            self.day.error.update(x - f, p);
        }
        if let Some(f) = self.week.forecast(week_bin) {
            self.week.error.update(x - f, p);
        }
        self.day.update(day_bin, x, p);
        self.week.update(week_bin, x, p);
        self.level_error.update(x - self.level, p);
        self.level += p.level_alpha * (x - self.level);
        let (day, hour) = day_and_hour(t_ms);
        self.hours[hour].add(day, x);
        self.n += 1;

        // News once: only a rarity above the recent maximum scores.
        let learning = (self.n as usize) <= p.warmup;
        let quiet = self.n <= self.quiet_until;
        let news = if surprise > self.recent_max && !quiet {
            surprise
        } else {
            0.0
        };
        if !learning {
            self.recent_max = (self.recent_max * p.decay).max(surprise);
        }
        let score = if learning { 0.0 } else { news / (news + p.half) };
        if score >= 0.5 {
            self.quiet_until = self.n + p.quiet as u64;
        }
        Scored {
            score,
            surprise,
            expected,
            low: expected - 3.0 * scale,
            high: expected + 3.0 * scale,
        }
    }
}

/// Scores a whole series, in order.
pub fn score_series(timestamps: &[i64], values: &[f64], p: &SurpriseParams) -> Vec<Scored> {
    let mut d = Surprise::default();
    timestamps
        .iter()
        .zip(values)
        .map(|(t, x)| d.observe(*t, *x, p))
        .collect()
}

const KIND: &str = "series-detector";
const VERSION: u32 = 1;

/// A detector saved with what it learnt: `lookout detect --save-model` writes it and
/// `--model` starts from it, so scoring a new export starts warm.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesModel {
    pub manifest: SeriesManifest,
    pub state: Surprise,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeriesManifest {
    pub kind: String,
    pub version: u32,
    pub trained_at: String,
    /// Where the training points came from, their time range and count.
    pub source: String,
    pub data_from: String,
    pub data_to: String,
    pub points: usize,
    pub parameters: SurpriseParams,
    pub evaluation: SeriesEvaluation,
    /// FNV-1a 64 of the state's JSON, as 16 hex digits.
    pub checksum: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeriesEvaluation {
    /// Training points scored at least 0.5, and their share.
    pub flagged: usize,
    pub flagged_share: f64,
}

impl SeriesModel {
    pub fn new(
        parameters: SurpriseParams,
        state: Surprise,
        source: &str,
        timestamps: &[i64],
        flagged: usize,
    ) -> SeriesModel {
        let fmt = |t: Option<&i64>| t.map(|t| crate::decode::time::format_ms(*t)).unwrap_or_default();
        let checksum = super::file::checksum_saved(&state);
        SeriesModel {
            manifest: SeriesManifest {
                kind: KIND.into(),
                version: VERSION,
                trained_at: crate::decode::time::format_ms(chrono::Utc::now().timestamp_millis()),
                source: source.into(),
                data_from: fmt(timestamps.first()),
                data_to: fmt(timestamps.last()),
                points: timestamps.len(),
                parameters,
                evaluation: SeriesEvaluation {
                    flagged,
                    flagged_share: flagged as f64 / timestamps.len().max(1) as f64,
                },
                checksum,
            },
            state,
        }
    }

    pub fn load(path: &std::path::Path) -> Result<SeriesModel, String> {
        super::file::load(path)
    }

    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        super::file::save(self, path)
    }
}

impl super::file::Manifested for SeriesModel {
    const KIND: &'static str = KIND;
    const VERSION: u32 = VERSION;
    const WHAT: &'static str = "series-detector model";

    fn stamp(&self) -> (&str, u32, &str) {
        (&self.manifest.kind, self.manifest.version, &self.manifest.checksum)
    }

    fn checksum(&self) -> String {
        super::file::checksum_loaded(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// Deterministic noise in −1..1.
    fn noise(i: usize) -> f64 {
        let x = (i as u64)
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((x >> 33) as f64 / (1u64 << 31) as f64) - 1.0
    }

    fn run(values: &[f64], step_ms: i64) -> Vec<Scored> {
        let ts: Vec<i64> = (0..values.len() as i64).map(|i| i * step_ms).collect();
        let p = SurpriseParams {
            warmup: 200,
            ..SurpriseParams::default()
        };
        score_series(&ts, values, &p)
    }

    fn max_score(s: &[Scored]) -> f64 {
        s.iter().map(|x| x.score).fold(0.0, f64::max)
    }

    #[test]
    fn a_spike_outscores_every_normal_point() {
        let mut v: Vec<f64> = (0..3000).map(|i| 50.0 + 5.0 * noise(i)).collect();
        v[2500] = 120.0;
        let s = run(&v, 5 * MIN);
        let normal = max_score(&s[1000..2500]);
        assert!(s[2500].score > 0.55, "{:?}", s[2500]);
        assert!(normal < 0.5, "normal max {normal}");
        assert!(s[2500].low < 60.0 && s[2500].high < 120.0, "{:?}", s[2500]);
    }

    #[test]
    fn a_level_shift_is_news_at_its_start_only() {
        let v: Vec<f64> = (0..4000)
            .map(|i| if i < 3000 { 20.0 } else { 35.0 } + 2.0 * noise(i))
            .collect();
        let s = run(&v, 5 * MIN);
        let first = s[3000..3010].iter().map(|x| x.score).fold(0.0, f64::max);
        assert!(first > 0.55, "{:?}", &s[3000..3010]);
        let later = s[3100..].iter().filter(|x| x.score > 0.5).count();
        assert!(later <= 2, "{later} more points over 0.5 after the shift");
    }

    #[test]
    fn a_second_spike_in_the_quiet_after_a_report_does_not_score() {
        let mut v: Vec<f64> = (0..3000).map(|i| 50.0 + 5.0 * noise(i)).collect();
        v[2500] = 120.0;
        v[2520] = 150.0; // larger, but within the quiet of 50 points
        v[2900] = 200.0; // after it
        let s = run(&v, 5 * MIN);
        assert!(s[2500].score > 0.5, "{:?}", s[2500]);
        assert_eq!(s[2520].score, 0.0, "{:?}", s[2520]);
        assert!(s[2520].surprise > s[2500].surprise, "{:?}", s[2520]);
        assert!(s[2900].score > 0.5, "{:?}", s[2900]);
    }

    #[test]
    fn a_nightly_spike_is_routine_from_its_third_night_and_one_at_another_hour_is_not() {
        // Flat, every 5 minutes for 8 days; a spike at 03:10-03:40 every night, a little
        // larger or smaller each time, and on day 7 one at 15:00 as well.
        let step = 5 * MIN;
        let mut v: Vec<f64> = (0..8 * 288).map(|i| 1.0 + 0.01 * noise(i)).collect();
        let nightly: Vec<usize> = (0..8).map(|d| d * 288 + 38 + (d * 7) % 6).collect();
        for (d, &i) in nightly.iter().enumerate() {
            v[i] = 20.0 + (d % 3) as f64;
        }
        let afternoon = 7 * 288 + 180;
        v[afternoon] = 21.0;
        let ts: Vec<i64> = (0..v.len() as i64).map(|i| i * step).collect();
        let on = SurpriseParams::default();
        let off = SurpriseParams { routine: 0.0, ..on };
        let (with, without) = (score_series(&ts, &v, &on), score_series(&ts, &v, &off));
        for &i in &nightly[3..] {
            assert!(with[i].score < 0.5, "night at {i}: {:?}", with[i]);
        }
        assert!(
            nightly[3..].iter().any(|&i| without[i].score > 0.5),
            "without the routine the nights score: {:?}",
            nightly.iter().map(|&i| without[i].score).collect::<Vec<_>>()
        );
        assert!(with[afternoon].score > 0.5, "{:?}", with[afternoon]);
    }

    #[test]
    fn the_hour_after_2330_is_half_past_midnight_of_the_next_day() {
        // Flat, every 5 minutes; a spike at 00:20 on days 2 and 3, then one at 23:40 on
        // day 3: twenty minutes before the spikes' hour comes round again, so routine.
        let step = 5 * MIN;
        let mut v: Vec<f64> = (0..4 * 288).map(|i| 1.0 + 0.01 * noise(i)).collect();
        for d in [2, 3] {
            v[d * 288 + 4] = 20.0;
        }
        let late = 3 * 288 + 284;
        v[late] = 20.0;
        let ts: Vec<i64> = (0..v.len() as i64).map(|i| i * step).collect();
        let on = SurpriseParams {
            warmup: 200,
            ..SurpriseParams::default()
        };
        let off = SurpriseParams { routine: 0.0, ..on };
        assert!(score_series(&ts, &v, &on)[late].score < 0.5);
        assert!(score_series(&ts, &v, &off)[late].score > 0.5);
    }

    #[test]
    fn daily_seasonality_is_normal_and_a_missing_peak_is_not() {
        // Every 5 minutes for 14 days; the peak of day 12 is missing.
        let step = 5 * MIN;
        let v: Vec<f64> = (0..14 * 288)
            .map(|i| {
                let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                let wave = 50.0 * phase.sin();
                let day = i / 288;
                60.0 + if day == 12 { wave.min(0.0) } else { wave } + noise(i)
            })
            .collect();
        let s = run(&v, step);
        // Four normal days: the most rare-looking points of a clean cycle come back about
        // once a day, so a few cross 0.5, none as high as the missing peak.
        let normal = &s[8 * 288..12 * 288];
        let over = normal.iter().filter(|x| x.score >= 0.5).count();
        let missing = max_score(&s[12 * 288..12 * 288 + 144]);
        assert!(missing > 0.6, "missing peak scored {missing}");
        assert!(
            max_score(normal) < missing,
            "normal days scored up to {}",
            max_score(normal)
        );
        assert!(over <= 4, "{over} normal points over 0.5 in four days");
    }

    #[test]
    fn a_slow_leak_is_noticed_before_it_has_doubled() {
        // A memory gauge: steady with noise for 10 days, then growing by 0.05% a point.
        let v: Vec<f64> = (0..5000)
            .map(|i| {
                let leak = if i > 3000 { (i - 3000) as f64 * 0.5 } else { 0.0 };
                1000.0 + leak + 10.0 * noise(i)
            })
            .collect();
        let s = run(&v, 5 * MIN);
        let normal = max_score(&s[1000..3000]);
        let found = s[3000..]
            .iter()
            .position(|x| x.score > normal.max(0.5))
            .map(|i| i + 3000);
        assert!(
            matches!(found, Some(i) if i < 4500),
            "first over normal: {found:?}, normal max {normal}"
        );
    }

    #[test]
    fn flat_sparse_and_broken_input_is_safe() {
        // Flat: nothing to report until it moves.
        let mut v = vec![7.0; 1000];
        v[900] = 8.0;
        let s = run(&v, MIN);
        assert_eq!(max_score(&s[300..900]), 0.0);
        assert!(s[900].score > 0.5, "{:?}", s[900]);
        // Non-finite values are ignored and change nothing.
        let mut d = Surprise::default();
        let p = SurpriseParams::default();
        for i in 0..500 {
            d.observe(i * MIN, 1.0 + noise(i as usize), &p);
        }
        let before = serde_json::to_string(&d).unwrap();
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(d.observe(500 * MIN, x, &p).score, 0.0);
        }
        assert_eq!(serde_json::to_string(&d).unwrap(), before);
        // Clocks that jump back or far ahead, and sparse points, do not panic or go NaN.
        for (t, x) in [(0, 1.0), (-5 * MIN, 2.0), (i64::MAX / 2, 1.0), (i64::MIN / 2, 3.0)] {
            let s = d.observe(t, x, &p);
            assert!(s.score.is_finite() && (0.0..=1.0).contains(&s.score), "{s:?}");
        }
    }

    #[test]
    fn duplicate_out_of_order_and_single_points_are_scored_safely() {
        let p = SurpriseParams {
            warmup: 50,
            ..SurpriseParams::default()
        };
        // A series seen once: nothing to say yet.
        let mut once = Surprise::default();
        assert_eq!(once.observe(0, 42.0, &p).score, 0.0);
        // Every timestamp twice, and every tenth point a minute in the past: still a
        // steady series, so nothing scores; then a spike does.
        let mut d = Surprise::default();
        let mut scores = Vec::new();
        for i in 0..2000i64 {
            let t = if i % 10 == 0 { (i - 1) * MIN } else { i / 2 * MIN };
            scores.push(d.observe(t, 10.0 + noise(i as usize), &p).score);
        }
        assert!(
            scores[300..].iter().all(|s| *s < 0.5),
            "{:?}",
            scores.iter().cloned().fold(0.0, f64::max)
        );
        assert!(d.observe(1000 * MIN, 40.0, &p).score > 0.5);
    }

    #[test]
    fn state_is_bounded() {
        // Fixed-size tables: what a series holds after six weeks of points is what it held
        // after two, once every bin is in use (the saved form differs only in digits).
        const { assert!(Surprise::STATE_BYTES < 6144) };
        let mut d = Surprise::default();
        let p = SurpriseParams::default();
        let mut early = 0;
        for i in 0..60_480 {
            d.observe(i * MIN, 5.0 + noise(i as usize), &p);
            if i == 20_160 {
                early = serde_json::to_string(&d).unwrap().len();
            }
        }
        let late = serde_json::to_string(&d).unwrap().len();
        assert!(
            late <= early + early / 10,
            "two weeks: {early} bytes saved, six: {late}"
        );
    }

    #[test]
    fn a_saved_model_resumes_where_it_stopped_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = SurpriseParams::default();
        let ts: Vec<i64> = (0..2000).map(|i| i * MIN).collect();
        let v: Vec<f64> = (0..2000).map(|i| 5.0 + noise(i)).collect();
        let mut d = Surprise::default();
        for (t, x) in ts.iter().zip(&v) {
            d.observe(*t, *x, &p);
        }
        let path = dir.path().join("m.json");
        SeriesModel::new(p, d.clone(), "test", &ts, 0).save(&path).unwrap();
        let m = SeriesModel::load(&path).unwrap();
        assert_eq!(m.manifest.points, 2000);
        let (mut a, mut b) = (d, m.state);
        // JSON floats read back within an ulp, so the scores agree to far below what matters.
        for i in 2000..2100 {
            let x = 5.0 + noise(i) + if i == 2050 { 30.0 } else { 0.0 };
            let (sa, sb) = (a.observe(i as i64 * MIN, x, &p), b.observe(i as i64 * MIN, x, &p));
            assert!((sa.score - sb.score).abs() < 1e-9 && (sa.expected - sb.expected).abs() < 1e-9);
        }

        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replacen("\"n\": 2000", "\"n\": 2001", 1);
        assert_ne!(edited, text);
        std::fs::write(&path, edited).unwrap();
        assert!(SeriesModel::load(&path).unwrap_err().contains("checksum"));
        std::fs::write(&path, text.replace("series-detector", "log-pattern-kmeans")).unwrap();
        assert!(SeriesModel::load(&path)
            .unwrap_err()
            .contains("expected \"series-detector\""));
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(SeriesModel::load(&path)
            .unwrap_err()
            .contains("not a series-detector model"));
        assert!(SeriesModel::load(&dir.path().join("missing.json")).is_err());
    }

    #[test]
    fn parameters_are_set_by_name_and_checked() {
        let mut p = SurpriseParams::default();
        p.set("decay=0.99").unwrap();
        assert_eq!(p.decay, 0.99);
        assert!(p.set("nope=1").unwrap_err().contains("no such parameter"));
        assert!(p.set("decay").unwrap_err().contains("key=value"));
        assert!(p.set("decay=-1").is_err());
        assert!(p.set("decay=NaN").is_err());
    }
}
