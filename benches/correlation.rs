//! Correlation throughput with many incidents open: 10,000 open incidents (one per
//! service, so that nothing groups by accident), then batches of 1,000 alerts of which
//! nine in ten repeat an open alert and one in ten is new. Prints alerts per second.
//!
//! And with one large incident (500 alerts on one service, so that an update lists 200
//! of them): batches of 100 alerts that each change it (a new alert joins, or a listed
//! one resolves), so that each publishes an update.
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
    ingesting(c, "1000 alerts, 10000 open incidents", BATCH, |round| {
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
    });
    let (mut corr, batch) = large_round(0);
    let updates = corr.ingest(batch, vec![]).len();
    assert_eq!(updates, LARGE_BATCH, "every alert of a round updates the incident");
    ingesting(c, "100 updates of a 500-alert incident", LARGE_BATCH, large_round);
}

/// The large incident and a batch for it: half new alerts joining, half listed ones
/// resolving.
fn large_round(round: usize) -> (Correlator, Vec<Alert>) {
    let batch: Vec<Alert> = (0..LARGE_BATCH)
        .map(|k| {
            let ts = 10_000_000 + (round * LARGE_BATCH + k) as i64;
            if k % 2 == 0 {
                member(LARGE + round * LARGE_BATCH + k, ts, Status::Firing)
            } else {
                member(LARGE - 1 - k, ts, Status::Resolved)
            }
        })
        .collect();
    (large(), batch)
}

/// Times the ingestion of a batch of `alerts` alerts that `setup` makes for each round,
/// with the correlator to ingest it.
fn ingesting(c: &mut Criterion, name: &str, alerts: usize, mut setup: impl FnMut(usize) -> (Correlator, Vec<Alert>)) {
    let mut g = c.benchmark_group("correlation");
    g.throughput(Throughput::Elements(alerts as u64));
    g.sample_size(20);
    let mut round = 0usize;
    g.bench_function(name, |b| {
        b.iter_batched(
            || {
                round += 1;
                setup(round)
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

const LARGE: usize = 500;
const LARGE_BATCH: usize = 100;

/// A member of the large incident: a critical alert on one service.
fn member(i: usize, ts: i64, status: Status) -> Alert {
    Alert {
        fingerprint: format!("fp-{i}"),
        source: "bench".into(),
        service: Some("db".into()),
        host: Some(format!("db-{}", i % 3)),
        severity: Severity::Critical,
        status,
        title: format!("HighLatency: db query {i} slower than 2 s"),
        ts,
        labels: vec![("alertname".into(), "HighLatency".into())],
    }
}

/// One open incident of [`LARGE`] alerts, each published once.
fn large() -> Correlator {
    let mut c = Correlator::new(Correlation::default(), Catalog::default());
    for i in 0..LARGE {
        c.ingest(vec![member(i, 10_000_000 - 5_000 + i as i64, Status::Firing)], vec![]);
    }
    assert_eq!(c.open_incidents(), 1);
    c
}

criterion_group!(benches, bench);
criterion_main!(benches);
