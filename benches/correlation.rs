//! Correlation throughput with many incidents open: 10,000 open incidents (one per
//! service, so that nothing groups by accident), then batches of 1,000 alerts of which
//! nine in ten repeat an open alert and one in ten is new. Prints alerts per second.
//!
//! `cargo bench --bench correlation`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lookout::config::{Catalog, Correlation};
use lookout::correlate::{Alert, Correlator};
use lookout::decode::{Severity, Status};

const OPEN: usize = 10_000;
const BATCH: usize = 1_000;

fn alert(i: usize, ts: i64) -> Alert {
    Alert {
        fingerprint: format!("fp-{i}"),
        source: "bench".into(),
        service: Some(format!("svc-{}", i % OPEN)),
        host: Some(format!("host-{}", i % OPEN)),
        severity: Severity::Critical,
        status: Status::Firing,
        title: format!("HighErrorRate: svc-{} error ratio 30%", i % OPEN),
        ts,
        labels: vec![("alertname".into(), "HighErrorRate".into())],
    }
}

fn loaded() -> Correlator {
    let mut c = Correlator::new(Correlation::default(), Catalog::default());
    let alerts: Vec<Alert> = (0..OPEN).map(|i| alert(i, 1_000)).collect();
    c.ingest(alerts, vec![]);
    assert_eq!(c.open_incidents(), OPEN);
    c
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("correlation");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    let mut round = 0usize;
    g.bench_function("1000 alerts, 10000 open incidents", |b| {
        b.iter_batched(
            || {
                round += 1;
                let ts = 2_000 + round as i64;
                let batch: Vec<Alert> = (0..BATCH)
                    .map(|k| {
                        if k % 10 == 0 {
                            alert(OPEN + round * BATCH + k, ts)
                        } else {
                            alert((round * 7919 + k) % OPEN, ts)
                        }
                    })
                    .collect();
                (loaded(), batch)
            },
            // The correlator is returned so that dropping it is not timed.
            |(mut corr, batch)| {
                let out = corr.ingest(batch, vec![]);
                (corr, out)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
