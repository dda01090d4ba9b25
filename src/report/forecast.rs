//! The statistics behind a trend report: a seasonal forecast with prediction intervals,
//! the seasonal-naive baseline it is measured against, and a robust slope with its
//! confidence interval.
//!
//! **Forecast**: additive Holt-Winters with a damped trend (ETS(A,Ad,A) in Hyndman's
//! taxonomy; ETS(A,Ad,N), "damped Holt", when the history holds fewer than two seasons).
//! The smoothing weights come from a fixed grid, the combination with the smallest
//! Huber loss of its forecasts over the history (one step ahead and at doubling
//! horizons up to the one asked for) wins, so a fit is deterministic and
//! costs grid × points steps. Errors are Huber-clipped at three robust scales before they
//! update the state, so one spike does not bend the level, trend or season (Gelper, Fried
//! and Croux's robust Holt-Winters). Gaps (NaN) advance time without a correction.
//! Prediction intervals are ETS(A,Ad,A)'s analytic ones: with σ the one-step error's
//! standard deviation, the h-step variance is
//! σ²·(1 + Σ_{j<h} (α(1 + βφ_j) + γ·[j mod m = 0])²), φ_j = φ + … + φ^j.
//!
//! **Slope**: Theil–Sen (the median of pairwise slopes), with Sen's rank-based confidence
//! interval. It assumes independent errors; autocorrelated series get intervals that are
//! too narrow, which the README says.

/// Smoothing weights tried for a fit: level α, trend β (as a fraction of α), season γ
/// (as a fraction of 1 − α), damping φ.
const ALPHAS: [f64; 7] = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9];
const BETAS: [f64; 3] = [0.0, 0.05, 0.2];
const GAMMAS: [f64; 6] = [0.0, 0.05, 0.15, 0.3, 0.6, 0.9];
const PHIS: [f64; 3] = [0.8, 0.9, 0.98];

/// An error's weight in the loss halves every 72 points back.
const RECENT: f64 = 0.990_418_2;

/// Errors beyond this many robust scales are clipped before they update the state.
const HUBER_K: f64 = 3.0;

/// Which model a fit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Method {
    /// Level, damped trend and season.
    HoltWinters,
    /// Level and damped trend: fewer than two seasons of history.
    DampedHolt,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::HoltWinters => "holt-winters additive, damped trend",
            Method::DampedHolt => "damped holt (no full season of history yet)",
        }
    }
}

/// Weights of one model.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Weights {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub phi: f64,
}

/// A fitted model: its weights, its state after the last point, its error scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub method: Method,
    pub weights: Weights,
    /// Season length in points (1 for none).
    pub m: usize,
    level: f64,
    trend: f64,
    season: Vec<f64>,
    /// Index in `season` of the next point.
    next: usize,
    /// Standard deviation of the one-step errors.
    pub sigma: f64,
    /// Points of history the fit saw (gaps excluded).
    pub points: usize,
}

/// Forecasts for the next points, with a prediction interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub mean: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
}

/// Why there is no forecast.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoForecast {
    #[error("too little history: {have} periods with data, a forecast needs {need}")]
    TooLittle { have: usize, need: usize },
    #[error("the series is not finite")]
    NotFinite,
}

/// Fits the series `y` (NaN for gaps) with season length `m` (1 for none) for forecasts
/// up to `horizon` points ahead: seasonal when it holds two full seasons, damped Holt
/// otherwise; `min_points` values at least.
pub fn fit(y: &[f64], m: usize, min_points: usize, horizon: usize) -> Result<Fit, NoForecast> {
    fit_with(y, m, min_points, horizon, None)
}

/// [`fit`], with the weights of an earlier fit of the same method when given (one pass
/// over `y` instead of the grid's): how a report refreshes its forecast every period and
/// re-chooses weights only now and then.
pub fn fit_with(
    y: &[f64],
    m: usize,
    min_points: usize,
    horizon: usize,
    earlier: Option<(Method, Weights)>,
) -> Result<Fit, NoForecast> {
    let points = y.iter().filter(|v| !v.is_nan()).count();
    let need = min_points.max(3);
    if points < need {
        return Err(NoForecast::TooLittle { have: points, need });
    }
    if y.iter().any(|v| v.is_infinite()) {
        return Err(NoForecast::NotFinite);
    }
    let seasonal = m > 1 && y.len() >= 2 * m && seasons_covered(y, m);
    let (method, m) = if seasonal {
        (Method::HoltWinters, m)
    } else {
        (Method::DampedHolt, 1)
    };
    let init = initial_state(y, m);
    let scale = robust_scale(y, m);
    // one step, and doubling up to the horizon
    let horizons: Vec<usize> = std::iter::successors(Some(2usize), |k| Some(k * 2))
        .take_while(|&k| k < horizon)
        .chain((horizon > 1).then_some(horizon))
        .collect();
    let mut best: Option<(f64, Weights)> = earlier.filter(|(was, _)| *was == method).map(|(_, w)| (0.0, w));
    let recency = recency(y.len());
    // the earlier weights, or the whole grid
    if best.is_none() {
        for w in grid(m) {
            // a candidate whose loss so far is no better than the best cannot win: its
            // run stops there (the loss only grows)
            let bound = best.map(|(l, _)| l);
            let Some(r) = run(y, m, w, &init, scale, &horizons, &recency, bound) else {
                continue;
            };
            if best.is_none_or(|(l, _)| r.loss < l) {
                best = Some((r.loss, w));
            }
        }
    }
    let (_, weights) = best.expect("the grid is not empty");
    let r = run(y, m, weights, &init, scale, &[], &recency, None).expect("an unbounded run finishes");
    Ok(Fit {
        method,
        weights,
        m,
        level: r.state.level,
        trend: r.state.trend,
        season: r.state.season,
        next: y.len() % m,
        sigma: (r.sse / r.errors.max(1) as f64).sqrt(),
        points,
    })
}

/// Every combination of the grid's weights, in a fixed order (the first of equal losses
/// wins); the season's weight only with a season (`m` > 1).
fn grid(m: usize) -> impl Iterator<Item = Weights> {
    let gammas: &'static [f64] = if m > 1 { &GAMMAS } else { &[0.0] };
    ALPHAS.iter().flat_map(move |&alpha| {
        BETAS.iter().flat_map(move |&b| {
            gammas.iter().flat_map(move |&g| {
                PHIS.iter().map(move |&phi| Weights {
                    alpha,
                    beta: b * alpha,
                    gamma: g * (1.0 - alpha),
                    phi,
                })
            })
        })
    })
}

impl Fit {
    /// Forecasts `h` points ahead with a `z`-sigma interval (1.96 for 95%).
    pub fn forecast(&self, h: usize, z: f64) -> Forecast {
        let Weights {
            alpha,
            beta,
            gamma,
            phi,
        } = self.weights;
        let mut f = Forecast {
            mean: Vec::with_capacity(h),
            lower: Vec::with_capacity(h),
            upper: Vec::with_capacity(h),
        };
        let (mut damp, mut phi_j, mut var) = (0.0, 0.0, 1.0_f64);
        for j in 1..=h {
            damp += phi.powi(j as i32);
            let mean = self.level + damp * self.trend + self.season[(self.next + j - 1) % self.m];
            let sd = self.sigma * var.sqrt();
            f.mean.push(mean);
            f.lower.push(mean - z * sd);
            f.upper.push(mean + z * sd);
            // the variance of the next step adds this step's coefficient
            phi_j += phi.powi(j as i32);
            let seasonal = if self.m > 1 && j % self.m == 0 { gamma } else { 0.0 };
            var += (alpha * (1.0 + beta / alpha.max(1e-12) * phi_j) + seasonal).powi(2);
        }
        f
    }
}

/// The seasonal-naive forecast of the `h` points after `y`: the value one season before
/// (two, three… when that one is a gap); the last value when no season back has one.
pub fn seasonal_naive(y: &[f64], m: usize, h: usize) -> Vec<f64> {
    let last = y.iter().rev().find(|v| !v.is_nan()).copied().unwrap_or(f64::NAN);
    (1..=h)
        .map(|j| {
            let t = y.len() + j - 1;
            let mut back = m.max(1) * j.div_ceil(m.max(1));
            while back <= t {
                let v = y[t - back];
                if !v.is_nan() {
                    return v;
                }
                back += m.max(1);
            }
            last
        })
        .collect()
}

/// The mean absolute error of the in-sample seasonal-naive forecast (lag `m`): MASE's
/// scale. None when no pair of points one season apart exists or all are equal.
pub fn naive_scale(y: &[f64], m: usize) -> Option<f64> {
    let m = m.max(1);
    let errors: Vec<f64> = (m..y.len())
        .map(|t| (y[t] - y[t - m]).abs())
        .filter(|e| !e.is_nan())
        .collect();
    let mae = errors.iter().sum::<f64>() / errors.len().max(1) as f64;
    (!errors.is_empty() && mae > 0.0).then_some(mae)
}

struct State {
    level: f64,
    trend: f64,
    season: Vec<f64>,
}

struct Run {
    state: State,
    /// Huber's loss of the one-step errors: what the weights minimise.
    loss: f64,
    /// Squared clipped errors: the error scale of normal behaviour.
    sse: f64,
    errors: usize,
}

/// Every season position has a value in the first two seasons' span or later.
fn seasons_covered(y: &[f64], m: usize) -> bool {
    (0..m).all(|i| y.iter().skip(i).step_by(m).filter(|v| !v.is_nan()).count() >= 2)
}

/// The state before the first point: level and trend from the first two seasons' means
/// (the first points without a season), the season from every full season's departures
/// from its mean (medians).
fn initial_state(y: &[f64], m: usize) -> State {
    let mean = |s: &[f64]| {
        let v: Vec<f64> = s.iter().copied().filter(|v| !v.is_nan()).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let span = if m > 1 { m } else { (y.len() / 4).clamp(1, 12) };
    let first = mean(&y[..span.min(y.len())]);
    let second = mean(&y[span.min(y.len())..(2 * span).min(y.len())]);
    let level = first.or(second).unwrap_or(0.0);
    let trend = match (first, second) {
        (Some(a), Some(b)) => (b - a) / span as f64,
        _ => 0.0,
    };
    let mut season = vec![0.0; m];
    if m > 1 {
        // each position's median departure from its season's mean over every full
        // season of the history: robust to spikes and to a level that moved
        let seasons: Vec<(usize, f64)> = (0..y.len() / m)
            .filter_map(|k| Some((k, mean(&y[k * m..(k + 1) * m])?)))
            .collect();
        for (i, s) in season.iter_mut().enumerate() {
            let mut d: Vec<f64> = seasons
                .iter()
                .map(|&(k, base)| y[k * m + i] - base)
                .filter(|v| !v.is_nan())
                .collect();
            d.sort_by(f64::total_cmp);
            *s = median_of_sorted(&d).unwrap_or(0.0);
        }
    }
    // the level at t = 0 is the first season's mean minus its trend to mid-season
    State {
        level: level - trend * (span as f64 - 1.0) / 2.0 - trend,
        trend,
        season,
    }
}

/// The median absolute difference between points one season (or one point) apart,
/// scaled to a standard deviation: the Huber clip's unit.
fn robust_scale(y: &[f64], m: usize) -> f64 {
    let lag = m.max(1);
    let mut d: Vec<f64> = (lag..y.len())
        .map(|t| (y[t] - y[t - lag]).abs())
        .filter(|v| !v.is_nan())
        .collect();
    if d.is_empty() {
        return f64::INFINITY;
    }
    let mid = d.len() / 2;
    let (_, med, _) = d.select_nth_unstable_by(mid, f64::total_cmp);
    let s = *med * 1.4826 / std::f64::consts::SQRT_2;
    if s > 0.0 {
        s
    } else {
        f64::INFINITY
    }
}

/// Huber's loss: squared within the clip, linear beyond, so that an anomaly in the
/// history does not pick the weights that chase anomalies.
fn huber(e: f64, clip: f64) -> f64 {
    if e.abs() <= clip {
        e * e
    } else {
        clip * (2.0 * e.abs() - clip)
    }
}

/// Each point's weight in the loss, by its index: [`RECENT`] to the power of its distance
/// from the end.
fn recency(n: usize) -> Vec<f64> {
    (0..n).map(|t| RECENT.powi((n - t) as i32)).collect()
}

/// Runs the filter over `y`; the loss adds, at every point, the errors of the forecasts
/// made there for each of `horizons` ahead, so the weights that win forecast well at the
/// horizons a report shows, not just one step ahead. Each error weighs `recency` of its
/// point. `None` as soon as the loss reaches `bound`: that run cannot beat it.
#[allow(clippy::too_many_arguments)]
fn run(
    y: &[f64],
    m: usize,
    w: Weights,
    init: &State,
    scale: f64,
    horizons: &[usize],
    recency: &[f64],
    bound: Option<f64>,
) -> Option<Run> {
    let mut s = State {
        level: init.level,
        trend: init.trend,
        season: init.season.clone(),
    };
    let (mut loss, mut sse, mut errors) = (0.0, 0.0, 0usize);
    let clip = HUBER_K * scale;
    // the first season only sets the state; errors count from the second
    let burn_in = if m > 1 { m } else { 2 };
    let damp: Vec<f64> = horizons
        .iter()
        .map(|&k| (1..=k).map(|j| w.phi.powi(j as i32)).sum())
        .collect();
    for (t, &v) in y.iter().enumerate() {
        let i = t % m;
        // recent errors weigh more: the weights that forecast well now win after a
        // change of regime
        let weight = recency[t];
        if bound.is_some_and(|b| loss >= b) {
            return None;
        }
        if t >= burn_in {
            for (&k, d) in horizons.iter().zip(&damp) {
                match y.get(t + k - 1) {
                    Some(a) if k > 1 && !a.is_nan() => {
                        loss += weight * huber(a - s.level - d * s.trend - s.season[(t + k - 1) % m], clip)
                    }
                    _ => {}
                }
            }
        }
        let base = s.level + w.phi * s.trend;
        if v.is_nan() {
            s.level = base;
            s.trend *= w.phi;
            continue;
        }
        let e = v - base - s.season[i];
        let clipped = e.clamp(-clip, clip);
        if t >= burn_in {
            loss += weight * huber(e, clip);
            sse += clipped * clipped;
            errors += 1;
        }
        let e = clipped;
        s.level = base + w.alpha * e;
        s.trend = w.phi * s.trend + w.beta * e;
        s.season[i] += w.gamma * e;
    }
    Some(Run {
        state: s,
        loss,
        sse,
        errors,
    })
}

/// The median of values sorted ascending; None for none.
pub(super) fn median_of_sorted(v: &[f64]) -> Option<f64> {
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The `k`-th smallest of `v` (from 0), as sorting would place it; reorders `v`.
fn kth(v: &mut [f64], k: usize) -> f64 {
    *v.select_nth_unstable_by(k, f64::total_cmp).1
}

/// [`median_of_sorted`] of `v` without sorting it; reorders `v`.
fn median_in_place(v: &mut [f64]) -> Option<f64> {
    let n = v.len();
    match n {
        0 => None,
        n if n % 2 == 1 => Some(kth(v, n / 2)),
        n => {
            let upper = kth(v, n / 2);
            // everything before the n/2-th is at most it: the largest of them is next
            let lower = v[..n / 2].iter().copied().max_by(f64::total_cmp)?;
            Some((lower + upper) / 2.0)
        }
    }
}

/// A slope and its confidence interval, in y units per x unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slope {
    pub slope: f64,
    pub low: f64,
    pub high: f64,
    /// The line's value at the last x.
    pub end_value: f64,
    pub points: usize,
}

/// Theil–Sen over `(x, y)` points with Sen's `z`-level interval (1.96 for 95%); None with
/// fewer than three points of distinct x.
pub fn theil_sen(points: &[(f64, f64)], z: f64) -> Option<Slope> {
    let n = points.len();
    let mut slopes = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            if b.0 != a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    if n < 3 || slopes.len() < 3 {
        return None;
    }
    // three order statistics of the n(n−1)/2 slopes, each found in linear time; the
    // median's selection leaves the smaller slopes before it and the larger after it,
    // so the bounds are looked for on their own side only
    let slope = median_in_place(&mut slopes)?;
    let pairs = slopes.len() as f64;
    let nf = n as f64;
    let c = z * (nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0).sqrt();
    let lo = (((pairs - c) / 2.0).floor() as isize - 1).clamp(0, slopes.len() as isize - 1) as usize;
    let hi = (((pairs + c) / 2.0).ceil() as usize).min(slopes.len() - 1);
    let mid = slopes.len() / 2;
    let low = if lo < mid {
        kth(&mut slopes[..mid], lo)
    } else {
        kth(&mut slopes, lo)
    };
    let high = if hi > mid {
        kth(&mut slopes[mid + 1..], hi - mid - 1)
    } else {
        kth(&mut slopes, hi)
    };
    let mut offsets: Vec<f64> = points.iter().map(|(x, y)| y - slope * x).collect();
    let last_x = points.iter().map(|p| p.0).fold(f64::MIN, f64::max);
    Some(Slope {
        slope,
        low,
        high,
        end_value: median_in_place(&mut offsets)? + slope * last_x,
        points: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seasonal(n: usize, m: usize, level: f64, trend: f64) -> Vec<f64> {
        (0..n)
            .map(|t| level + trend * t as f64 + 5.0 * (2.0 * std::f64::consts::PI * (t % m) as f64 / m as f64).sin())
            .collect()
    }

    #[test]
    fn an_exact_seasonal_series_is_forecast_exactly() {
        let y = seasonal(24 * 6, 24, 100.0, 0.1);
        let f = fit(&y, 24, 6, 12).unwrap();
        assert_eq!(f.method, Method::HoltWinters);
        let truth = seasonal(24 * 6 + 12, 24, 100.0, 0.1);
        let fc = f.forecast(12, 1.96);
        for (j, v) in fc.mean.iter().enumerate() {
            assert!(
                (v - truth[24 * 6 + j]).abs() < 0.5,
                "step {j}: {v} vs {}",
                truth[24 * 6 + j]
            );
        }
        // the first seasons' departures include the trend within them, which the
        // filter then corrects
        assert!(f.sigma < 0.5, "{}", f.sigma);
    }

    #[test]
    fn intervals_widen_with_the_horizon_and_cover_noise() {
        // a level with uniform noise in ±1.7 (standard deviation about 1), from an LCG
        let mut state = 12345u64;
        let mut noise = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64 * 3.4 - 1.7
        };
        let all: Vec<f64> = (0..300).map(|_| 50.0 + noise()).collect();
        let (y, future) = all.split_at(200);
        let f = fit(y, 1, 6, 12).unwrap();
        assert_eq!(f.method, Method::DampedHolt);
        let fc = f.forecast(10, 1.96);
        let width = |j: usize| fc.upper[j] - fc.lower[j];
        assert!(width(9) >= width(0));
        assert!((fc.mean[0] - 50.0).abs() < 0.6, "{}", fc.mean[0]);
        assert!((f.sigma - 1.0).abs() < 0.3, "{}", f.sigma);
        let inside = future
            .iter()
            .filter(|v| **v >= fc.lower[0] && **v <= fc.upper[0])
            .count();
        assert!(inside >= 85, "{inside} of 100 inside the one-step interval");
    }

    #[test]
    fn a_spike_does_not_bend_the_forecast() {
        let mut y: Vec<f64> = (0..100).map(|t| 10.0 + 0.01 * t as f64).collect();
        y[95] = 1000.0;
        let f = fit(&y, 1, 6, 12).unwrap();
        let next = f.forecast(1, 1.96).mean[0];
        assert!((next - 11.0).abs() < 2.0, "{next}");
    }

    #[test]
    fn gaps_advance_time_without_a_correction() {
        let mut y = seasonal(24 * 4, 24, 20.0, 0.0);
        for v in &mut y[30..40] {
            *v = f64::NAN;
        }
        let f = fit(&y, 24, 6, 12).unwrap();
        let fc = f.forecast(24, 1.96);
        let truth = seasonal(24 * 5, 24, 20.0, 0.0);
        let mae = fc
            .mean
            .iter()
            .zip(&truth[96..])
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / 24.0;
        assert!(mae < 0.5, "{mae}");
    }

    #[test]
    fn too_little_history_is_said_not_invented() {
        assert_eq!(
            fit(&[1.0, f64::NAN, 2.0], 24, 6, 6),
            Err(NoForecast::TooLittle { have: 2, need: 6 })
        );
        assert_eq!(
            fit(&[1.0, 2.0, 3.0, 4.0, 5.0, f64::INFINITY], 1, 3, 6),
            Err(NoForecast::NotFinite)
        );
    }

    #[test]
    fn seasonal_naive_repeats_the_last_season_and_skips_gaps() {
        let y = [1.0, 2.0, 3.0, 4.0, f64::NAN, 6.0];
        // m = 3: next three are y[3], y[4] (gap: y[1]), y[5]
        assert_eq!(seasonal_naive(&y, 3, 4), vec![4.0, 2.0, 6.0, 4.0]);
        assert_eq!(seasonal_naive(&y, 1, 2), vec![6.0, 6.0]);
        assert_eq!(naive_scale(&[1.0, 1.0, 1.0], 1), None);
        assert_eq!(naive_scale(&[1.0, 3.0, 2.0], 1), Some(1.5));
    }

    #[test]
    fn order_statistics_in_place_are_those_of_the_sorted_values() {
        for n in 1..40usize {
            // deterministic values with repeats, both zeros and negatives
            let v: Vec<f64> = (0..n)
                .map(|i| match (i * 7919) % 11 {
                    0 => 0.0,
                    1 => -0.0,
                    k => (k as f64 - 5.0) * 1.5,
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            assert_eq!(median_in_place(&mut v.clone()), median_of_sorted(&sorted), "n = {n}");
            for (k, want) in sorted.iter().enumerate() {
                assert_eq!(kth(&mut v.clone(), k).to_bits(), want.to_bits(), "n = {n}, k = {k}");
            }
        }
        assert_eq!(median_in_place(&mut []), None);
    }

    #[test]
    fn theil_sen_is_exact_on_a_line_and_robust_to_outliers() {
        let line: Vec<(f64, f64)> = (0..20).map(|x| (x as f64, 3.0 + 0.5 * x as f64)).collect();
        let s = theil_sen(&line, 1.96).unwrap();
        assert_eq!((s.slope, s.low, s.high), (0.5, 0.5, 0.5));
        assert!((s.end_value - 12.5).abs() < 1e-9);
        let mut noisy = line.clone();
        noisy[3].1 = 500.0;
        noisy[11].1 = -500.0;
        let s = theil_sen(&noisy, 1.96).unwrap();
        assert!((s.slope - 0.5).abs() < 0.05, "{s:?}");
        assert!(s.low <= 0.5 && s.high >= 0.5, "{s:?}");
        assert!(theil_sen(&[(1.0, 1.0), (1.0, 2.0), (2.0, 3.0)], 1.96).is_none());
    }

    #[test]
    fn sen_interval_takes_the_ranks_of_the_normal_approximation() {
        // n = 10, 45 pairwise slopes; at 90%: C = 1.645·sqrt(10·9·25/18) = 18.4, so the
        // interval runs from the M1 = (45 − C)/2 = 13.3 → 13th smallest slope to the
        // M2 + 1 = (45 + C)/2 + 1 = 32.7 → 33rd (Sen 1968)
        let ys = [
            (1.0, 10.0),
            (2.0, 15.0),
            (3.0, 12.0),
            (4.0, 18.0),
            (5.0, 21.0),
            (6.0, 19.0),
            (7.0, 25.0),
            (8.0, 24.0),
            (9.0, 30.0),
            (10.0, 28.0),
        ];
        let s = theil_sen(&ys, 1.645).unwrap();
        let mut all: Vec<f64> = Vec::new();
        for i in 0..10 {
            for j in i + 1..10 {
                all.push((ys[j].1 - ys[i].1) / (ys[j].0 - ys[i].0));
            }
        }
        all.sort_by(f64::total_cmp);
        assert_eq!((s.low, s.high), (all[12], all[32]));
        assert!(s.low < s.slope && s.slope < s.high);
    }

    /// The bounds are found beside the median's selection: the same ranks as in the
    /// sorted slopes, for odd and even numbers of pairs, with ties.
    #[test]
    fn sen_bounds_are_the_ranks_of_the_sorted_slopes() {
        let mut state = 5u64;
        for n in 3..40 {
            let ys: Vec<(f64, f64)> = (0..n)
                .map(|x| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x as f64, ((state >> 33) % 7) as f64)
                })
                .collect();
            let mut all: Vec<f64> = Vec::new();
            for i in 0..n {
                for j in i + 1..n {
                    all.push((ys[j].1 - ys[i].1) / (ys[j].0 - ys[i].0));
                }
            }
            all.sort_by(f64::total_cmp);
            let (pairs, nf) = (all.len() as f64, n as f64);
            let c = 1.96 * (nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0).sqrt();
            let lo = (((pairs - c) / 2.0).floor() as isize - 1).clamp(0, all.len() as isize - 1) as usize;
            let hi = (((pairs + c) / 2.0).ceil() as usize).min(all.len() - 1);
            let s = theil_sen(&ys, 1.96).unwrap();
            assert_eq!((s.low, s.high), (all[lo], all[hi]), "n = {n}");
            assert_eq!(s.slope, median_of_sorted(&all).unwrap(), "n = {n}");
        }
    }

    #[test]
    fn the_bounded_grid_search_chooses_what_running_every_candidate_chooses() {
        // seasonal, damped-holt, noisy with spikes and gaps, and flat (every loss 0: the
        // first candidate in grid order must win, as it would without the bound)
        let mut noisy = seasonal(24 * 5 + 7, 24, 50.0, -0.05);
        let mut state = 17u64;
        for (t, v) in noisy.iter_mut().enumerate() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *v += ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 4.0;
            if t % 37 == 5 {
                *v += 40.0;
            }
            if t % 29 == 3 {
                *v = f64::NAN;
            }
        }
        let cases = [
            (seasonal(24 * 4, 24, 10.0, 0.2), 24),
            (seasonal(30, 24, 10.0, 0.2), 24),
            (noisy.clone(), 24),
            (noisy[..40].to_vec(), 24),
            (vec![3.0; 60], 24),
        ];
        for (y, m) in cases {
            let fitted = fit(&y, m, 6, 6).unwrap();
            let m = fitted.m;
            let init = initial_state(&y, m);
            let scale = robust_scale(&y, m);
            let recency = recency(y.len());
            let horizons = [2, 4, 6];
            let mut best: Option<(f64, Weights)> = None;
            for w in grid(m) {
                let loss = run(&y, m, w, &init, scale, &horizons, &recency, None).unwrap().loss;
                if best.is_none_or(|(l, _)| loss < l) {
                    best = Some((loss, w));
                }
            }
            assert_eq!(fitted.weights, best.unwrap().1, "{} points, m = {m}", y.len());
        }
    }
}
