//! Streaming detector throughput on one core, and memory per series.
//!
//! - `detectors/surprise/one`: one series of 1,000,000 points (a daily cycle, noise, a
//!   few spikes), one warm state: the per-point cost when the state is in cache.
//! - `detectors/surprise/10000-series`: the same points dealt round-robin over 10,000
//!   series, so every point touches a different state (about 37 MB of state in all):
//!   the cost when states come from memory, as in a pipeline watching many series.
//! - `detectors/median-mad/one`: the earlier detector (median and MAD of a 60-point
//!   history) on the same points, as a baseline in the same run.
//!
//! The target is 1,000,000 points per second per core for the default detector. Memory
//! per series is printed first: `Surprise::STATE_BYTES`, fixed whatever the series does.
//!
//! `cargo bench --bench detectors`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lookout::model::surprise::{Surprise, SurpriseParams};
use lookout::model::{Detector, DetectorParams, Direction};

const POINTS: usize = 1_000_000;

fn series() -> Vec<(i64, f64)> {
    (0..POINTS)
        .map(|i| {
            let t = i as i64 * 60_000;
            let phase = (i % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
            let noise = ((i as u64).wrapping_mul(6_364_136_223_846_793_005) >> 40) as f64 / (1u64 << 24) as f64;
            let spike = if i % 50_000 == 49_999 { 200.0 } else { 0.0 };
            (t, 100.0 + 40.0 * phase.sin() + 5.0 * noise + spike)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    println!(
        "memory per series: Surprise {} bytes (fixed); median-MAD detector {} bytes + 60 × 8 of history",
        Surprise::STATE_BYTES,
        std::mem::size_of::<Detector>()
    );
    let points = series();
    let p = SurpriseParams::default();
    let mut g = c.benchmark_group("detectors");
    g.throughput(Throughput::Elements(POINTS as u64));
    g.sample_size(10);
    g.bench_function("surprise/one", |b| {
        b.iter(|| {
            let mut d = Surprise::default();
            let mut flagged = 0usize;
            for (t, x) in &points {
                flagged += (d.observe(*t, *x, &p).score >= 0.5) as usize;
            }
            flagged
        })
    });
    const SERIES: usize = 10_000;
    g.bench_function("surprise/10000-series", |b| {
        let mut states = vec![Surprise::default(); SERIES];
        b.iter(|| {
            let mut flagged = 0usize;
            for (i, (t, x)) in points.iter().enumerate() {
                flagged += (states[i % SERIES].observe(*t, *x, &p).score >= 0.5) as usize;
            }
            flagged
        })
    });
    let mp = DetectorParams::default();
    g.bench_function("median-mad/one", |b| {
        b.iter(|| {
            let mut d = Detector::default();
            let mut starts = 0usize;
            for (_, x) in &points {
                starts += matches!(
                    d.observe(*x, Direction::Both, &mp),
                    lookout::model::Verdict::Start { .. }
                ) as usize;
            }
            starts
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
