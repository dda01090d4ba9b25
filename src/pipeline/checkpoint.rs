//! Checkpoints: the pipeline's whole state (open SQL windows, series detectors, template
//! miner, log anomalies, open incidents, trend periods, event-time marks) with the input
//! offsets it corresponds to, in one file that is replaced atomically.
//!
//! The protocol, in [`super::run_kafka`]: a batch's offsets are *delivered* once every
//! output derived from it is acknowledged; every `interval` the state after the last
//! delivered batch is written here with those offsets, and only then are the offsets
//! stored for Kafka to commit. So the committed offsets never pass the checkpoint. At
//! start the checkpoint is restored and the source skips what it holds already (records
//! below its offsets, read again when the commit lagged it); what follows is processed
//! again from the same state, which gives the same incident ids and `seq` (repeats are
//! dropped downstream by key). A checkpoint made by another pipeline (a changed
//! `pipeline.toml` or SQL file), or for another Kafka cluster or consumer group, is not
//! used: the state starts empty at the committed offsets, and the log says so.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::correlate::CorrelatorState;
use crate::decode::Stream;
use crate::logs::anomaly::LogAnomalyState;
use crate::logs::miner::MinerState;
use crate::model::DetectorsState;
use crate::report::TrendState;
use crate::sql::stream::FileState;

/// The checkpoint file in the pipeline's state directory.
pub const FILE: &str = "checkpoint.cbor";

/// Bumped when what a checkpoint holds changes meaning.
const FORMAT: u32 = 1;

pub use crate::source::Offsets;

/// Everything [`super::Processor`] needs to go on where it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessorState {
    pub watermark: i64,
    pub marks: Vec<((Stream, String, i32), i64)>,
    pub trend_mark: Option<i64>,
    pub miner: MinerState,
    pub log_anomalies: LogAnomalyState,
    pub windows: BTreeMap<String, FileState>,
    pub detectors: DetectorsState,
    pub correlator: CorrelatorState,
    pub trends: Option<TrendState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u32,
    /// The pipeline's name and a hash of its files: a checkpoint of another is not used.
    pub pipeline: String,
    pub pipeline_hash: String,
    /// Whose offsets these are: the Kafka cluster's id and the consumer group. Offsets
    /// of another cluster or group mean nothing here.
    pub scope: String,
    /// Wall time it was written (ms since the epoch), for logs.
    pub written_at: i64,
    pub offsets: Offsets,
    pub state: ProcessorState,
}

impl Checkpoint {
    pub fn new(
        pipeline: &str,
        pipeline_hash: &str,
        scope: &str,
        offsets: Offsets,
        state: ProcessorState,
    ) -> Checkpoint {
        Checkpoint {
            format: FORMAT,
            pipeline: pipeline.to_string(),
            pipeline_hash: pipeline_hash.to_string(),
            scope: scope.to_string(),
            written_at: chrono::Utc::now().timestamp_millis(),
            offsets,
            state,
        }
    }

    /// Writes to `path` (see [`write_file`]).
    pub fn save(&self, path: &Path) -> std::io::Result<usize> {
        write_file(path, &self.to_bytes()?)
    }

    /// The checkpoint as bytes (CBOR).
    pub fn to_bytes(&self) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        ciborium::into_writer(self, &mut bytes).map_err(std::io::Error::other)?;
        Ok(bytes)
    }

    /// Reads a checkpoint from bytes; `origin` names where they came from in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Checkpoint, String> {
        let c: Checkpoint = ciborium::from_reader(bytes)
            .map_err(|e| format!("{origin}: not a Lookout checkpoint ({e}); remove it to start empty"))?;
        if c.format != FORMAT {
            return Err(format!(
                "{origin}: checkpoint format {} (this Lookout writes {FORMAT}); remove it to start empty",
                c.format
            ));
        }
        Ok(c)
    }

    /// Reads a checkpoint file; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<Checkpoint>, String> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Checkpoint::from_bytes(&bytes, &path.display().to_string()).map(Some)
    }
}

/// Writes checkpoint bytes to `path` through a temporary file that is synced and
/// renamed over it, so that a crash leaves the old checkpoint or the new one, never
/// half of one.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<usize> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("cbor.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(bytes.len())
}

/// A hash of the files that define a pipeline (`*.toml`, `*.sql` in its directory):
/// state built by other SQL or settings does not fit this one.
pub fn pipeline_hash(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "toml" || e == "sql"));
    files.sort();
    let mut parts = Vec::new();
    for f in &files {
        parts.push(
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        parts.push(std::fs::read_to_string(f).unwrap_or_default());
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    format!("{:016x}", crate::correlate::alert::fnv1a(&refs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_checkpoint_is_none_and_a_corrupt_one_says_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        assert!(Checkpoint::load(&path).unwrap().is_none());
        std::fs::write(&path, b"not cbor at all").unwrap();
        let err = Checkpoint::load(&path).unwrap_err();
        assert!(err.contains("checkpoint.cbor") && err.contains("remove it"), "{err}");
    }

    #[test]
    fn the_pipeline_hash_follows_its_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pipeline.toml"), "name = \"a\"\n").unwrap();
        let a = pipeline_hash(dir.path());
        std::fs::write(dir.path().join("notes.md"), "not part of it").unwrap();
        assert_eq!(pipeline_hash(dir.path()), a);
        std::fs::write(dir.path().join("rule.sql"), "SELECT 1").unwrap();
        assert_ne!(pipeline_hash(dir.path()), a);
    }
}
