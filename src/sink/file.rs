//! JSON-lines files (or stdout), one file per output topic: what `lookout replay` writes.
//! Dead letters are written as `lookout.dead_letter.v1` objects (original bytes as text
//! or hex, with the reason), since a JSON line cannot hold raw bytes and headers.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Message, SinkError, Topic};

pub struct FileSink {
    writers: BTreeMap<Topic, (PathBuf, Box<dyn Write + Send>)>,
}

impl FileSink {
    /// Incidents go to `incidents`; the other topics, when given, to their own files.
    pub fn new(paths: &BTreeMap<Topic, PathBuf>) -> Result<FileSink, SinkError> {
        let mut writers = BTreeMap::new();
        for (topic, path) in paths {
            let w: Box<dyn Write + Send> = if path == Path::new("-") {
                Box::new(std::io::stdout())
            } else {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|error| SinkError::Io {
                        file: dir.display().to_string(),
                        error,
                    })?;
                }
                let f = File::create(path).map_err(|error| SinkError::Io {
                    file: path.display().to_string(),
                    error,
                })?;
                Box::new(BufWriter::new(f))
            };
            writers.insert(*topic, (path.clone(), w));
        }
        Ok(FileSink { writers })
    }

    pub fn publish(&mut self, messages: &[Message]) -> Result<(), SinkError> {
        for m in messages {
            let Some((path, w)) = self.writers.get_mut(&m.topic) else {
                continue;
            };
            let io = |error| SinkError::Io {
                file: path.display().to_string(),
                error,
            };
            if m.topic == Topic::DeadLetters {
                // the reason travels in headers on Kafka; a file has none
                let line = crate::source::dead_letter_json(&m.payload, &m.headers).to_string();
                w.write_all(line.as_bytes()).map_err(io)?;
            } else {
                w.write_all(&m.payload).map_err(io)?;
            }
            w.write_all(b"\n").map_err(io)?;
        }
        self.flush()
    }

    pub fn flush(&mut self) -> Result<(), SinkError> {
        for (path, w) in self.writers.values_mut() {
            w.flush().map_err(|error| SinkError::Io {
                file: path.display().to_string(),
                error,
            })?;
        }
        Ok(())
    }
}
