//! Decoding throughput per stream and encoding: records of the built-in scenario (which
//! writes every encoding Lookout reads) grouped by encoding, up to 8,192 per batch,
//! decoded into Arrow batches as the pipeline does (`Decoder::decode`: a batch of 2,048
//! records or more in two halves on two threads, a smaller one on one), with every
//! column built: what leaving the logs' `attrs` empty saves is `examples/attrs_cost`.
//!
//! `cargo bench --bench decode`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lookout::decode::{DecodeConfig, Decoder, Stream};
use lookout::source::scenario::Scenario;
use lookout::source::RawRecord;

/// The allocator the `lookout` binary uses; decoding's cost depends on it.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The encoding a scenario record is written in, by its look.
fn encoding(stream: Stream, p: &str) -> &'static str {
    match stream {
        Stream::Logs if p.starts_with('{') => "logs/json",
        Stream::Logs => "logs/logfmt",
        Stream::Metrics if p.starts_with('{') || p.starts_with('[') => "metrics/json",
        Stream::Metrics if p.contains("{service=") => "metrics/prometheus",
        Stream::Metrics => "metrics/influx",
        Stream::Events if p.contains("\"receiver\"") => "events/alertmanager",
        Stream::Events if p.contains("\"routing_key\"") => "events/pagerduty",
        Stream::Events if p.contains("\"specversion\"") => "events/cloudevents",
        Stream::Events => "events/json",
    }
}

fn bench(c: &mut Criterion) {
    let scenario = Scenario::new(1, 1_741_046_400_000);
    let mut groups: std::collections::BTreeMap<&'static str, Vec<RawRecord>> = Default::default();
    for m in 0..3000 {
        for g in scenario.minute(m) {
            let e = encoding(g.stream, &String::from_utf8_lossy(&g.payload));
            let batch = groups.entry(e).or_default();
            if batch.len() < 8192 {
                // as Kafka would: some events (PagerDuty resolves) carry no time
                batch.push(g.record());
            }
        }
    }
    let decoder = Decoder::new(DecodeConfig::default());
    let mut g = c.benchmark_group("decode");
    for (name, records) in &groups {
        let decoded = decoder.decode(records).expect("decodes");
        assert!(
            decoded.dead_letters.is_empty(),
            "{name}: {:?}",
            decoded.dead_letters.first()
        );
        g.throughput(Throughput::Elements(records.len() as u64));
        g.bench_function(*name, |b| b.iter(|| decoder.decode(records).expect("decodes")));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
