//! What leaving the logs' `attrs` empty saves in decoding (`StreamDecoding::skip_attrs`,
//! set when no SQL file reads them): the built-in scenario's JSON and logfmt log lines,
//! 8,192 of each, decoded into rows and a logs batch on one thread, with attrs kept and
//! left empty in turn, 60 times each; the fastest of each is printed. Timed as
//! `benches/decode` times decoding (two halves on two threads started per batch, one
//! setting after the other), the difference moved by a third between runs on the
//! 2-core machine; on one thread, interleaved, it holds.
//!
//! `cargo run --release --example attrs_cost`

use lookout::decode::{DecodeConfig, Decoder, Stream};
use lookout::source::scenario::Scenario;
use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let scenario = Scenario::new(1, 1_741_046_400_000);
    let (mut json, mut logfmt) = (Vec::new(), Vec::new());
    for m in 0..3000 {
        for g in scenario.minute(m) {
            if g.stream != Stream::Logs {
                continue;
            }
            let v = if g.payload.starts_with(b"{") {
                &mut json
            } else {
                &mut logfmt
            };
            if v.len() < 8192 {
                v.push(g.record());
            }
        }
    }
    let keep = Decoder::new(DecodeConfig::default());
    let mut cfg = DecodeConfig::default();
    cfg.logs.skip_attrs = true;
    let skip = Decoder::new(cfg);
    for (name, recs) in [("json", &json), ("logfmt", &logfmt)] {
        let mut best = [f64::MAX; 2];
        for _ in 0..60 {
            for (i, d) in [&keep, &skip].into_iter().enumerate() {
                let t = Instant::now();
                let (rows, _) = d.decode_rows(recs);
                let b = lookout::decode::schema::logs_batch(&rows.logs).unwrap();
                std::hint::black_box(b);
                drop(rows);
                best[i] = best[i].min(t.elapsed().as_secs_f64());
            }
        }
        println!(
            "{name}: keep {:.0} ns/record, skip {:.0} ns/record, {:.1}% less",
            best[0] * 1e9 / recs.len() as f64,
            best[1] * 1e9 / recs.len() as f64,
            100.0 * (1.0 - best[1] / best[0])
        );
    }
}
