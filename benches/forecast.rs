//! Trend-report forecasts: a fit from the whole weight grid, which a series makes when
//! its first report closes and then once a season, and a refresh with the weights it
//! has, which it makes at every other period close.
//!
//! - `forecast/grid/336`: two weeks of hourly levels (the default history), daily season:
//!   378 weight combinations.
//! - `forecast/grid/130`: five and a half days of them, as the series of `lookout bench
//!   --events 1000000` have on average when their periods close.
//! - `forecast/refresh/336`: one pass with the weights of an earlier fit.
//!
//! `cargo bench --bench forecast`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lookout::report::forecast::{fit, fit_with};

/// Hourly levels: a daily cycle, a slow rise, noise, a spike a day and a few gaps.
fn levels(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            if i % 97 == 40 {
                return f64::NAN;
            }
            let phase = (i % 24) as f64 / 24.0 * std::f64::consts::TAU;
            let noise = ((i as u64).wrapping_mul(6_364_136_223_846_793_005) >> 40) as f64 / (1u64 << 24) as f64;
            let spike = if i % 24 == 13 && i % 5 == 0 { 30.0 } else { 0.0 };
            100.0 + 0.05 * i as f64 + 20.0 * phase.sin() + 4.0 * noise + spike
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("forecast");
    g.throughput(Throughput::Elements(1));
    for n in [336, 130] {
        let y = levels(n);
        g.bench_function(format!("grid/{n}"), |b| b.iter(|| fit(&y, 24, 6, 6).unwrap()));
    }
    let y = levels(336);
    let earlier = fit(&y, 24, 6, 6).unwrap();
    g.bench_function("refresh/336", |b| {
        b.iter(|| fit_with(&y, 24, 6, 6, Some((earlier.method, earlier.weights))).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
