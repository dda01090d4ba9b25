//! Files and stdin, for replay: one record per line.
//!
//! A directory is read as a recording: `logs.jsonl`, `metrics.jsonl` and `events.jsonl`
//! (any that exist). A file's stream is given by the caller or guessed from its name
//! (`metric…` → metrics, `event…` / `alert…` → events, else logs); `-` is stdin. Several
//! inputs are merged by event time (a k-way merge on each line's timestamp, read cheaply
//! without decoding the record), so that alerts, metrics and logs interleave as they did
//! live; a line whose time cannot be read keeps its place in its own file.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::{RawRecord, RecordMeta, SourceError};
use crate::decode::Stream;

struct Input {
    stream: Stream,
    name: String,
    lines: Box<dyn BufRead + Send>,
    line_no: i64,
    head: Option<(i64, Vec<u8>, i64)>,
    last_ts: i64,
}

impl Input {
    fn fill(&mut self) -> Result<(), SourceError> {
        if self.head.is_some() {
            return Ok(());
        }
        loop {
            let mut buf = Vec::new();
            let n = self
                .lines
                .read_until(b'\n', &mut buf)
                .map_err(|error| SourceError::Io {
                    file: self.name.clone(),
                    error,
                })?;
            if n == 0 {
                return Ok(());
            }
            let no = self.line_no;
            self.line_no += 1;
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Some(ts) = sniff_ts(&buf) {
                self.last_ts = ts;
            }
            self.head = Some((self.last_ts, buf, no));
            return Ok(());
        }
    }
}

/// Reads the event time of a JSON line without decoding the rest.
pub fn sniff_ts(line: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Ts<'a> {
        #[serde(borrow, alias = "timestamp", alias = "@timestamp", alias = "time")]
        ts: Option<crate::decode::value::Value<'a>>,
    }
    if line.first() != Some(&b'{') {
        return None;
    }
    let t: Ts = serde_json::from_slice(line).ok()?;
    crate::decode::time::parse_json(&t.ts?)
}

pub struct FileSource {
    inputs: Vec<Input>,
    max_records: usize,
}

impl FileSource {
    /// Opens the inputs. `stream` forces the stream of plain files and stdin.
    pub fn open(paths: &[PathBuf], stream: Option<Stream>, max_records: usize) -> Result<FileSource, SourceError> {
        let mut inputs = Vec::new();
        for p in paths {
            if p == Path::new("-") {
                inputs.push(input(
                    stream.unwrap_or(Stream::Logs),
                    "-".into(),
                    Box::new(BufReader::new(std::io::stdin())),
                ));
            } else if p.is_dir() {
                let mut found = false;
                for s in Stream::ALL {
                    let f = p.join(format!("{}.jsonl", s.name()));
                    if f.exists() {
                        inputs.push(open_file(&f, s)?);
                        found = true;
                    }
                }
                if !found {
                    return Err(SourceError::Config(format!(
                        "{}: no logs.jsonl, metrics.jsonl or events.jsonl in this directory",
                        p.display()
                    )));
                }
            } else {
                inputs.push(open_file(p, stream.unwrap_or_else(|| guess_stream(p)))?);
            }
        }
        if inputs.is_empty() {
            return Err(SourceError::Config("no input given".into()));
        }
        Ok(FileSource {
            inputs,
            max_records: max_records.max(1),
        })
    }

    /// The next batch in event-time order, or `None` at the end of every input.
    pub fn next_batch(&mut self) -> Result<Option<Vec<RawRecord>>, SourceError> {
        let mut out = Vec::with_capacity(self.max_records);
        while out.len() < self.max_records {
            for i in self.inputs.iter_mut() {
                i.fill()?;
            }
            let next = self
                .inputs
                .iter_mut()
                .filter(|i| i.head.is_some())
                .min_by_key(|i| i.head.as_ref().map(|h| h.0));
            let Some(input) = next else { break };
            let (_, payload, line) = input.head.take().expect("filtered on head");
            out.push(RawRecord {
                stream: input.stream,
                payload,
                meta: RecordMeta {
                    topic: input.name.clone(),
                    partition: 0,
                    offset: line,
                    ..Default::default()
                },
            });
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

fn input(stream: Stream, name: String, lines: Box<dyn BufRead + Send>) -> Input {
    Input {
        stream,
        name,
        lines,
        line_no: 0,
        head: None,
        last_ts: i64::MIN,
    }
}

fn open_file(p: &Path, stream: Stream) -> Result<Input, SourceError> {
    let f = File::open(p).map_err(|error| SourceError::Io {
        file: p.display().to_string(),
        error,
    })?;
    Ok(input(
        stream,
        p.display().to_string(),
        Box::new(BufReader::with_capacity(1 << 20, f)),
    ))
}

/// The stream a file holds, from its name.
pub fn guess_stream(p: &Path) -> Stream {
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if name.contains("metric") {
        Stream::Metrics
    } else if name.contains("event") || name.contains("alert") {
        Stream::Events
    } else {
        Stream::Logs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_streams_by_event_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("logs.jsonl"),
            "{\"ts\":1000,\"message\":\"a\"}\n{\"ts\":3000,\"message\":\"c\"}\nnot json\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("events.jsonl"), "{\"ts\":2000,\"title\":\"b\"}\n\n").unwrap();
        let mut s = FileSource::open(&[dir.path().to_path_buf()], None, 2).unwrap();
        let first = s.next_batch().unwrap().unwrap();
        let second = s.next_batch().unwrap().unwrap();
        assert!(s.next_batch().unwrap().is_none());
        let order: Vec<_> = first.iter().chain(&second).map(|r| (r.stream, r.meta.offset)).collect();
        assert_eq!(
            order,
            vec![
                (Stream::Logs, 0),
                (Stream::Events, 0),
                (Stream::Logs, 1),
                (Stream::Logs, 2)
            ]
        );
    }

    #[test]
    fn names_tell_streams() {
        assert_eq!(guess_stream(Path::new("x/metrics-2025.jsonl")), Stream::Metrics);
        assert_eq!(guess_stream(Path::new("alerts.json")), Stream::Events);
        assert_eq!(guess_stream(Path::new("app.log")), Stream::Logs);
    }
}
