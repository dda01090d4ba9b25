//! Template mining throughput on one core.
//!
//! - `templates/loghub`: the messages of the Loghub-2k systems in ../shared/data/loghub
//!   (each system's line format applied), mined by a warm miner per system, default
//!   configuration. Drain3 mines about 113,000 lines/s on one core of the same machine
//!   (the measurement); the target is 20 times that.
//! - `templates/count/N`: messages of N distinct templates with fresh values in every
//!   message: the per-message cost must stay flat as N grows.
//!
//! `cargo bench --bench templates`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lookout::logs::{loghub, Miner, MinerConfig};

fn loghub_messages() -> Vec<Vec<String>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/loghub");
    let Ok(systems) = loghub::systems(&dir) else {
        eprintln!("SKIPPED templates/loghub: ../shared/data/loghub not found");
        return Vec::new();
    };
    systems
        .iter()
        .map(|s| {
            let format = s.options().expect("benchmark formats parse").format.expect("a format");
            std::fs::read_to_string(s.log_path())
                .expect("log readable")
                .lines()
                .map(|l| format.content(l).0.to_string())
                .collect()
        })
        .collect()
}

/// A word of letters only, different for every `i` (digits would make it a value).
fn letters(mut i: usize) -> String {
    let mut s = String::new();
    loop {
        s.push(char::from(b'a' + (i % 26) as u8));
        i /= 26;
        if i == 0 {
            return s;
        }
    }
}

/// Messages of `n` templates that differ in two words (so no two merge), with values
/// that change in every message.
fn synthetic(n: usize, count: usize) -> Vec<String> {
    (0..count)
        .map(|k| {
            let t = k % n;
            format!(
                "svc{} request {} from 10.{}.{}.{} handled by worker-{} op{} in {} ms status ok",
                letters(t),
                k * 7919,
                k % 256,
                (k / 256) % 256,
                k % 7,
                k % 64,
                letters(t + 1000),
                k % 997
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("templates");
    g.sample_size(20);
    let systems = loghub_messages();
    let lines: usize = systems.iter().map(Vec::len).sum();
    if lines > 0 {
        let mut miners: Vec<Miner> = systems
            .iter()
            .map(|msgs| {
                let mut m = Miner::new(MinerConfig::default());
                for msg in msgs {
                    m.mine(msg);
                }
                m
            })
            .collect();
        g.throughput(Throughput::Elements(lines as u64));
        g.bench_function("loghub", |b| {
            b.iter(|| {
                let mut ids = 0u64;
                for (m, msgs) in miners.iter_mut().zip(&systems) {
                    for msg in msgs {
                        let mined = m.mine(msg);
                        ids = ids.wrapping_add(m.template(mined).id);
                    }
                }
                ids
            })
        });
    }
    for n in [100, 1_000, 10_000] {
        let msgs = synthetic(n, 20_000.max(n));
        let mut m = Miner::new(MinerConfig::default());
        for msg in &msgs {
            m.mine(msg);
        }
        assert_eq!(m.len(), n, "one template per synthetic pattern");
        g.throughput(Throughput::Elements(msgs.len() as u64));
        g.bench_function(format!("count/{n}"), |b| {
            b.iter(|| {
                let mut ids = 0u64;
                for msg in &msgs {
                    let mined = m.mine(msg);
                    ids = ids.wrapping_add(m.template(mined).id);
                }
                ids
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
