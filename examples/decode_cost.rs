//! The work of decoding log records, counted in instructions: this 2-core machine's
//! timings move by a third between runs, an instruction count does not. The built-in
//! scenario's first 16,384 log records (JSON and logfmt, as `lookout bench` produces
//! them) are decoded into rows and a logs batch `passes` times, with `attrs` left empty
//! as in the default pipeline. Run it under callgrind with 1 pass and with 4: the
//! difference over 3 × 16,384 is the instructions per record, setup left out.
//!
//! ```sh
//! cargo build --release --example decode_cost
//! for n in 1 4; do valgrind --tool=callgrind --callgrind-out-file=/tmp/dc-$n.out \
//!     target/release/examples/decode_cost $n 2>&1 | grep Collected; done
//! ```
//!
//! Without valgrind it prints the mean wall time per record of its passes.

use lookout::decode::{DecodeConfig, Decoder, Stream};
use lookout::source::scenario::Scenario;
use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let passes: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let scenario = Scenario::new(1, 1_741_046_400_000).with_log_lines(lookout::pipeline::bench::LOG_LINES);
    let mut records = Vec::new();
    for minute in 0.. {
        records.extend(
            scenario
                .minute(minute)
                .into_iter()
                .filter(|g| g.stream == Stream::Logs)
                .map(|g| g.record()),
        );
        if records.len() >= 16_384 {
            records.truncate(16_384);
            break;
        }
    }
    let mut cfg = DecodeConfig::default();
    cfg.logs.skip_attrs = true;
    let decoder = Decoder::new(cfg);
    let started = Instant::now();
    for _ in 0..passes {
        let (rows, dead) = decoder.decode_rows(&records);
        assert!(dead.is_empty());
        std::hint::black_box(lookout::decode::schema::logs_batch(&rows.logs).unwrap());
    }
    println!(
        "{} records, {passes} passes, {:.0} ns per record",
        records.len(),
        started.elapsed().as_secs_f64() * 1e9 / (passes * records.len()).max(1) as f64
    );
}
