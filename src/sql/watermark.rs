//! Event-time progress: a watermark per input partition, combined per stream.
//!
//! A partition's watermark is the newest event time it has delivered. A stream's is the
//! oldest of its partitions' that are still active, so one slow partition holds windows
//! open until its records arrive. A partition that delivers nothing for `idle` (wall
//! time) stops holding anything; when every partition of a stream is idle, its
//! watermark moves on with the wall clock from the newest event, so that windows close
//! even when traffic stops. A windowed file closes windows at the oldest watermark of
//! the streams it reads, minus its declared lateness.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::decode::Stream;

struct Part {
    newest: i64,
    seen: Instant,
}

pub struct Watermarks {
    parts: HashMap<(Stream, String, i32), Part>,
    idle: Duration,
}

impl Watermarks {
    pub fn new(idle: Duration) -> Watermarks {
        Watermarks {
            parts: HashMap::new(),
            idle,
        }
    }

    /// Notes that a partition delivered an event of time `ts` at `now`.
    pub fn observe(&mut self, stream: Stream, topic: &str, partition: i32, ts: i64, now: Instant) {
        match self.parts.get_mut(&(stream, topic.to_string(), partition)) {
            Some(p) => {
                p.newest = p.newest.max(ts);
                p.seen = now;
            }
            None => {
                self.parts
                    .insert((stream, topic.to_string(), partition), Part { newest: ts, seen: now });
            }
        }
    }

    /// The watermark of one stream, or `None` before its first record.
    pub fn stream(&self, stream: Stream, now: Instant) -> Option<i64> {
        let parts: Vec<&Part> = self
            .parts
            .iter()
            .filter(|((s, _, _), _)| *s == stream)
            .map(|(_, p)| p)
            .collect();
        let active = parts
            .iter()
            .filter(|p| now.saturating_duration_since(p.seen) < self.idle)
            .map(|p| p.newest)
            .min();
        active.or_else(|| {
            let newest = parts.iter().max_by_key(|p| p.newest)?;
            let quiet = now.saturating_duration_since(newest.seen).as_millis() as i64;
            Some(newest.newest.saturating_add(quiet))
        })
    }

    /// The watermark of a file reading `streams`: the oldest of theirs, less `lateness`.
    /// Streams that have delivered nothing yet hold nothing.
    pub fn for_streams(&self, streams: &[Stream], lateness: i64, now: Instant) -> Option<i64> {
        streams
            .iter()
            .filter_map(|s| self.stream(*s, now))
            .min()
            .map(|w| w.saturating_sub(lateness))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_active_partition_holds_the_stream() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(30));
        assert_eq!(w.stream(Stream::Logs, t0), None);
        w.observe(Stream::Logs, "logs", 0, 10_000, t0);
        w.observe(Stream::Logs, "logs", 1, 4_000, t0);
        w.observe(Stream::Logs, "logs", 0, 9_000, t0);
        assert_eq!(w.stream(Stream::Logs, t0), Some(4_000));
        assert_eq!(w.for_streams(&[Stream::Logs], 1_000, t0), Some(3_000));
        // another stream does not hold this one
        w.observe(Stream::Metrics, "metrics", 0, 1_000, t0);
        assert_eq!(w.stream(Stream::Logs, t0), Some(4_000));
        assert_eq!(w.for_streams(&[Stream::Logs, Stream::Metrics], 0, t0), Some(1_000));
    }

    #[test]
    fn idle_partitions_stop_holding_windows_open() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(30));
        w.observe(Stream::Logs, "logs", 0, 100_000, t0);
        w.observe(Stream::Logs, "logs", 1, 40_000, t0);
        let later = t0 + Duration::from_secs(20);
        w.observe(Stream::Logs, "logs", 0, 120_000, later);
        assert_eq!(w.stream(Stream::Logs, later), Some(40_000));
        // partition 1 has been quiet for 31 s: only partition 0 counts
        let t = t0 + Duration::from_secs(31);
        assert_eq!(w.stream(Stream::Logs, t), Some(120_000));
        // everything quiet: time goes on from the newest event
        let t = later + Duration::from_secs(45);
        assert_eq!(w.stream(Stream::Logs, t), Some(165_000));
    }
}
