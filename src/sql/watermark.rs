//! Event-time progress: a watermark per input partition, combined per stream.
//!
//! A partition's watermark is the newest event time it has delivered. A stream's is the
//! oldest of its partitions' that are active, so one slow partition holds windows open
//! until its records arrive. A partition is idle, and holds nothing, when it has
//! delivered nothing for `idle` of wall time (a quiet topic in a live run) or when its
//! newest event is more than `idle` older than the newest of all partitions (a sparse
//! input in a replay, where wall time hardly passes: the same records give the same
//! windows however fast they are read). A stream whose partitions are all idle holds
//! nothing. A windowed file closes windows at the oldest watermark of the streams it
//! reads that are not idle, minus its declared lateness; when all of them are idle, time
//! moves on with the wall clock from the newest event, so that windows close when traffic
//! stops. Records of an idle partition that arrive later than that are late.

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

    /// Notes a partition assigned to this instance before it delivers anything: it holds
    /// [`Watermarks::settled`] until its first record, or until it has been quiet for
    /// `idle` (an empty partition).
    pub fn expect(&mut self, stream: Stream, topic: &str, partition: i32, now: Instant) {
        self.parts
            .entry((stream, topic.to_string(), partition))
            .or_insert(Part {
                newest: i64::MIN,
                seen: now,
            });
    }

    /// Each partition's newest event time, for checkpoints.
    pub fn state(&self) -> Vec<((Stream, String, i32), i64)> {
        let mut out: Vec<_> = self.parts.iter().map(|(k, p)| (k.clone(), p.newest)).collect();
        out.sort();
        out
    }

    /// Continues from checkpointed marks; each partition counts as seen `now`, so it holds
    /// event time as an assigned one does until it delivers or goes quiet.
    pub fn restore(&mut self, marks: Vec<((Stream, String, i32), i64)>, now: Instant) {
        self.parts = marks
            .into_iter()
            .map(|(k, newest)| (k, Part { newest, seen: now }))
            .collect();
    }

    fn newest(&self) -> Option<&Part> {
        self.parts.values().max_by_key(|p| p.newest)
    }

    fn active(&self, p: &Part, newest: i64, now: Instant) -> bool {
        now.saturating_duration_since(p.seen) < self.idle
            && newest.saturating_sub(p.newest) <= self.idle.as_millis() as i64
    }

    /// The watermark of one stream, or `None` before its first record or while all its
    /// partitions are idle.
    pub fn stream(&self, stream: Stream, now: Instant) -> Option<i64> {
        let newest = self.newest()?.newest;
        self.parts
            .iter()
            .filter(|((s, _, _), p)| *s == stream && self.active(p, newest, now))
            .map(|(_, p)| p.newest)
            .min()
    }

    /// The oldest newest event of the partitions that delivered within `idle` of wall
    /// time (event time alone idles nothing here: a partition behind the others in a
    /// backlog holds this until it catches up); with none, the newest event plus the
    /// wall time since it. What trend reports close periods on: a period is reported
    /// once, so it waits for the slowest live partition.
    pub fn settled(&self, now: Instant) -> Option<i64> {
        let live = self
            .parts
            .values()
            .filter(|p| now.saturating_duration_since(p.seen) < self.idle)
            .map(|p| p.newest)
            .min();
        live.or_else(|| self.newest().map(|p| clock_from(p, now)))
    }

    /// The watermark of a file reading `streams`: the oldest of the active ones', less
    /// `lateness`; with none active, the newest event plus the wall time since it.
    pub fn for_streams(&self, streams: &[Stream], lateness: i64, now: Instant) -> Option<i64> {
        let active = streams.iter().filter_map(|s| self.stream(*s, now)).min();
        let w = active.or_else(|| {
            self.parts
                .iter()
                .filter(|((s, _, _), _)| streams.contains(s))
                .map(|(_, p)| p)
                .max_by_key(|p| p.newest)
                .map(|p| clock_from(p, now))
        })?;
        Some(w.saturating_sub(lateness))
    }
}

/// Event time moving on with the wall clock from a partition's newest event, once
/// everything is quiet.
fn clock_from(p: &Part, now: Instant) -> i64 {
    let quiet = now.saturating_duration_since(p.seen).as_millis() as i64;
    p.newest.saturating_add(quiet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_waits_for_a_partition_behind_in_event_time_until_it_goes_quiet() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(30));
        assert_eq!(w.settled(t0), None);
        w.observe(Stream::Metrics, "metrics", 0, 7_200_000, t0);
        w.observe(Stream::Metrics, "metrics", 1, 3_600_000, t0);
        assert_eq!(w.settled(t0), Some(3_600_000));
        // quiet for longer than idle: the live one decides, then the clock
        w.observe(Stream::Metrics, "metrics", 0, 7_260_000, t0 + Duration::from_secs(31));
        assert_eq!(w.settled(t0 + Duration::from_secs(31)), Some(7_260_000));
        assert_eq!(w.settled(t0 + Duration::from_secs(71)), Some(7_300_000));
        // an assigned partition that has delivered nothing yet holds it too
        let mut w = Watermarks::new(Duration::from_secs(30));
        w.expect(Stream::Metrics, "metrics", 1, t0);
        w.observe(Stream::Metrics, "metrics", 0, 7_200_000, t0);
        assert_eq!(w.settled(t0), Some(i64::MIN));
        assert_eq!(w.stream(Stream::Metrics, t0), Some(7_200_000), "windows are not held");
        w.observe(Stream::Metrics, "metrics", 1, 3_600_000, t0);
        w.expect(Stream::Metrics, "metrics", 1, t0);
        assert_eq!(w.settled(t0), Some(3_600_000));
    }

    #[test]
    fn the_slowest_active_partition_holds_the_stream() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(30));
        assert_eq!(w.stream(Stream::Logs, t0), None);
        w.observe(Stream::Logs, "logs", 0, 30_000, t0);
        w.observe(Stream::Logs, "logs", 1, 24_000, t0);
        w.observe(Stream::Logs, "logs", 0, 29_000, t0);
        assert_eq!(w.stream(Stream::Logs, t0), Some(24_000));
        assert_eq!(w.for_streams(&[Stream::Logs], 1_000, t0), Some(23_000));
        // another stream holds a file that reads both, not this stream
        w.observe(Stream::Metrics, "metrics", 0, 10_000, t0);
        assert_eq!(w.stream(Stream::Logs, t0), Some(24_000));
        assert_eq!(w.for_streams(&[Stream::Logs, Stream::Metrics], 0, t0), Some(10_000));
    }

    #[test]
    fn partitions_quiet_in_wall_time_stop_holding_windows_open() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(30));
        w.observe(Stream::Logs, "logs", 0, 100_000, t0);
        w.observe(Stream::Logs, "logs", 1, 90_000, t0);
        let later = t0 + Duration::from_secs(20);
        w.observe(Stream::Logs, "logs", 0, 110_000, later);
        assert_eq!(w.stream(Stream::Logs, later), Some(90_000));
        // partition 1 has been quiet for 31 s: only partition 0 counts
        let t = t0 + Duration::from_secs(31);
        assert_eq!(w.stream(Stream::Logs, t), Some(110_000));
        // everything quiet: time goes on from the newest event
        let t = later + Duration::from_secs(45);
        assert_eq!(w.stream(Stream::Logs, t), None);
        assert_eq!(w.for_streams(&[Stream::Logs], 0, t), Some(155_000));
    }

    /// A replay reads fast: a sparse input (deploy events an hour apart) must not hold
    /// the windows of the busy ones, and the same records give the same watermarks.
    #[test]
    fn a_partition_far_behind_in_event_time_is_idle() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(30));
        w.observe(Stream::Events, "events", 0, 0, t0);
        w.observe(Stream::Logs, "logs", 0, 20_000, t0);
        assert_eq!(w.for_streams(&[Stream::Logs, Stream::Events], 0, t0), Some(0));
        w.observe(Stream::Logs, "logs", 0, 600_000, t0);
        assert_eq!(w.stream(Stream::Events, t0), None, "10 min behind: idle");
        assert_eq!(w.for_streams(&[Stream::Logs, Stream::Events], 0, t0), Some(600_000));
        w.observe(Stream::Events, "events", 0, 599_000, t0);
        assert_eq!(w.for_streams(&[Stream::Logs, Stream::Events], 0, t0), Some(599_000));
    }
}
