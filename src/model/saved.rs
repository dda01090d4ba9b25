//! `series.json`: every series detector of a pipeline as `lookout train` left it, so that
//! `lookout run` starts warm (the detectors already know each series' level, cycles and
//! noise) instead of learning for the first `[detection] warmup` points.
//!
//! The file has a manifest (kind, version, trained_at, the data range, the detector kind
//! and its parameters, how many series and episodes training saw, a checksum) and is
//! checked on load. Detector states hold floats; JSON reads a float back within an ulp,
//! so the checksum is taken over the states as they read back ([`checksum_saved`] on
//! save, [`checksum_loaded`] on load), which gives the same text on both sides.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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

fn hash(json: &str) -> String {
    format!("{:016x}", crate::correlate::alert::fnv1a(&[json]))
}

/// The checksum of a value about to be saved: of its JSON as it will read back.
pub fn checksum_saved<T: Serialize + DeserializeOwned>(v: &T) -> String {
    let json = serde_json::to_string(v).unwrap_or_default();
    let back: Option<T> = serde_json::from_str(&json).ok();
    hash(&back.and_then(|b| serde_json::to_string(&b).ok()).unwrap_or(json))
}

/// The checksum of a value read from a file.
pub fn checksum_loaded<T: Serialize>(v: &T) -> String {
    hash(&serde_json::to_string(v).unwrap_or_default())
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
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: SeriesFile = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a series-detectors file: {e}", path.display()))?;
        let m = &file.manifest;
        if m.kind != KIND || m.version != VERSION {
            return Err(format!(
                "{}: model kind {:?} version {}, expected {KIND:?} version {VERSION}",
                path.display(),
                m.kind,
                m.version
            ));
        }
        if checksum_loaded(&file.series) != m.checksum {
            return Err(format!(
                "{}: checksum does not match the model (edited or truncated?)",
                path.display()
            ));
        }
        Ok(file)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(tmp, path)
    }
}
