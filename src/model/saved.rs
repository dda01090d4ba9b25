//! `series.json`: every series detector of a pipeline as `lookout train` left it, so that
//! `lookout run` starts warm (the detectors already know each series' level, cycles and
//! noise) instead of learning for the first `[detection] warmup` points.
//!
//! The file has a manifest (kind, version, trained_at, the data range, the detector kind
//! and its parameters, how many series and episodes training saw, a checksum) and is
//! checked on load (the checksum as [`super::file::checksum_saved`] explains).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::file::{self, checksum_loaded, checksum_saved, Manifested};
use super::series::SeriesDetector;
use super::DetectorKind;

/// A series' detector as `lookout train` saves it (`series.json`), to start warm.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedSeries {
    pub metric: String,
    pub service: String,
    pub host: String,
    pub(crate) state: SeriesDetector,
}

pub const KIND: &str = "series-detectors";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesFile {
    pub manifest: Manifest,
    pub series: Vec<SavedSeries>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub kind: String,
    pub version: u32,
    pub trained_at: String,
    pub data_from: String,
    pub data_to: String,
    pub detector: DetectorKind,
    pub parameters: serde_json::Value,
    pub evaluation: Evaluation,
    /// FNV-1a 64 of the series' JSON as it reads back, as 16 hex digits.
    pub checksum: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    pub series: usize,
    /// Anomaly episodes the detectors started on the training data.
    pub episodes: u64,
    pub points: u64,
}

impl SeriesFile {
    pub fn new(manifest: Manifest, series: Vec<SavedSeries>) -> SeriesFile {
        let checksum = checksum_saved(&series);
        SeriesFile {
            manifest: Manifest { checksum, ..manifest },
            series,
        }
    }

    pub fn load(path: &Path) -> Result<SeriesFile, String> {
        file::load(path)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        file::save(self, path)
    }
}

impl Manifested for SeriesFile {
    const KIND: &'static str = KIND;
    const VERSION: u32 = VERSION;
    const WHAT: &'static str = "series-detectors file";

    fn stamp(&self) -> (&str, u32, &str) {
        (&self.manifest.kind, self.manifest.version, &self.manifest.checksum)
    }

    fn checksum(&self) -> String {
        checksum_loaded(&self.series)
    }
}
