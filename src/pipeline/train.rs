//! `lookout train`: fits a pipeline's models from recorded input into
//! `models/<pipeline>/`.
//!
//! The input is read as `replay` reads it (files or directories, merged by event time)
//! and decoded with the pipeline's settings; logs are mined with the pipeline's template
//! miner, starting from the saved `templates.json` when there is one so that template
//! ids stay what they were. Log lines inside `[since, until)` count towards the windows
//! of the log-pattern model ([`crate::logs::patterns`]). Writes `templates.json` (the
//! ids the model's dimensions refer to) and `log_patterns.json` (with its manifest).
//!
//! Metrics and logs inside `[since, until)` also go through the pipeline's series
//! detectors, which are saved as they end up (`series.json`, [`crate::model::saved`]),
//! and their one-minute windows per service fit the service-signals model
//! (`service_signals.json`, [`crate::model::services`]) when some service has enough.

use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, TimestampMillisecondArray};

use crate::config::PipelineConfig;
use crate::decode::Decoder;
use crate::logs::patterns::{self, PatternModel, PatternParams, Windows};
use crate::logs::{self, Miner};
use crate::model::saved::{self, SeriesFile};
use crate::model::services::{self, ServiceSignalModel, VectorParams};
use crate::model::SignalDetectors;
use crate::source::file::FileSource;

/// What to train on.
pub struct TrainInput<'a> {
    pub paths: &'a [PathBuf],
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// What training wrote.
pub struct Trained {
    pub records: u64,
    pub templates: usize,
    pub model: PatternModel,
    pub templates_path: PathBuf,
    pub model_path: PathBuf,
    /// The series detectors saved, and where.
    pub series: SeriesFile,
    pub series_path: PathBuf,
    /// The service-signals model and its file, or why there is none.
    pub signals: Result<(ServiceSignalModel, PathBuf), String>,
}

/// Trains the models of `cfg` into `dir` (`models/<pipeline>`); `progress` is called
/// about once a second with the records read so far.
pub fn train(
    cfg: &PipelineConfig,
    input: &TrainInput,
    dir: &Path,
    params: PatternParams,
    vector_params: VectorParams,
    mut progress: impl FnMut(u64, u64, usize),
) -> Result<Trained, String> {
    let mut detectors = SignalDetectors::new(&cfg.spec.detect, cfg.spec.detection.clone());
    detectors.record_windows();
    let (mut episodes, mut points) = (0u64, 0u64);
    let mut span: (Option<i64>, Option<i64>) = (None, None);
    let templates_path = dir.join("templates.json");
    let mut miner = if templates_path.exists() {
        Miner::load(cfg.miner.clone(), &templates_path)?
    } else {
        Miner::new(cfg.miner.clone())
    };
    let decoder = Decoder::new(cfg.decode.clone());
    let mut source = FileSource::open(input.paths, None, cfg.spec.batch.max_records).map_err(|e| e.to_string())?;
    let mut windows = Windows::default();
    let window_ms = params.window_s as i64 * 1000;
    let (mut records, mut logs_seen) = (0u64, 0u64);
    let mut last_report = Instant::now();
    while let Some(batch) = source.next_batch().map_err(|e| e.to_string())? {
        records += batch.len() as u64;
        let decoded = decoder.decode(&batch).map_err(|e| e.to_string())?;
        if decoded.logs.num_rows() > 0 {
            let (enriched, _) = logs::enrich(&mut miner, &decoded.logs, false).map_err(|e| e.to_string())?;
            logs_seen += enriched.num_rows() as u64;
            count(&enriched, input, window_ms, &mut windows);
        }
        let (logs_in, metrics_in) = (in_range(&decoded.logs, input)?, in_range(&decoded.metrics, input)?);
        for b in [&logs_in, &metrics_in] {
            if let Some((lo, hi)) = ts_range(b) {
                span = (
                    Some(span.0.map_or(lo, |x| x.min(lo))),
                    Some(span.1.map_or(hi, |x| x.max(hi))),
                );
            }
        }
        points += metrics_in.num_rows() as u64;
        episodes += detectors.observe(&logs_in, &metrics_in).anomalies.len() as u64;
        if last_report.elapsed().as_secs() >= 1 {
            progress(records, logs_seen, miner.len());
            last_report = Instant::now();
        }
    }
    progress(records, logs_seen, miner.len());
    let trained_at = crate::decode::time::format_ms(now_ms());
    let model = patterns::fit(&windows, params, trained_at.clone())?;
    let fmt = |t: Option<i64>| t.map(crate::decode::time::format_ms).unwrap_or_default();
    let (from, to) = (fmt(span.0), fmt(span.1));
    let detection = &cfg.spec.detection;
    let series = SeriesFile::new(
        saved::Manifest {
            kind: saved::KIND.into(),
            version: saved::VERSION,
            trained_at: trained_at.clone(),
            data_from: from.clone(),
            data_to: to.clone(),
            detector: detection.model,
            parameters: serde_json::json!({
                "z": detection.z, "confirm": detection.confirm, "history": detection.history,
                "log_errors": detection.log_errors,
            }),
            evaluation: saved::Evaluation {
                series: detectors.series_count(),
                episodes,
                points,
            },
            checksum: String::new(),
        },
        detectors.export_series(),
    );
    let series_path = dir.join("series.json");
    series
        .save(&series_path)
        .map_err(|e| format!("{}: {e}", series_path.display()))?;
    let signals_path = dir.join("service_signals.json");
    let signals = match services::fit(&detectors.take_recorded(), vector_params, trained_at, (from, to)) {
        Ok(m) => {
            m.save(&signals_path)
                .map_err(|e| format!("{}: {e}", signals_path.display()))?;
            Ok((m, signals_path))
        }
        Err(why) => {
            // A stale model from an earlier training would not match these series.
            let _ = std::fs::remove_file(&signals_path);
            Err(why)
        }
    };
    miner
        .save(&templates_path)
        .map_err(|e| format!("{}: {e}", templates_path.display()))?;
    let model_path = dir.join("log_patterns.json");
    model
        .save(&model_path)
        .map_err(|e| format!("{}: {e}", model_path.display()))?;
    Ok(Trained {
        records,
        templates: miner.len(),
        model,
        templates_path,
        model_path,
        series,
        series_path,
        signals,
    })
}

/// The rows of a batch inside `[since, until)` (all of them when neither is set).
fn in_range(batch: &RecordBatch, input: &TrainInput) -> Result<RecordBatch, String> {
    if input.since.is_none() && input.until.is_none() {
        return Ok(batch.clone());
    }
    let Some(ts) = batch
        .column_by_name("ts")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
    else {
        return Ok(batch.clone());
    };
    let keep: BooleanArray = ts
        .iter()
        .map(|t| t.map(|t| input.since.is_none_or(|s| t >= s) && input.until.is_none_or(|u| t < u)))
        .collect();
    arrow::compute::filter_record_batch(batch, &keep).map_err(|e| e.to_string())
}

fn ts_range(batch: &RecordBatch) -> Option<(i64, i64)> {
    let ts = batch
        .column_by_name("ts")?
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()?;
    let lo = ts.iter().flatten().min()?;
    let hi = ts.iter().flatten().max()?;
    Some((lo, hi))
}

fn count(logs: &arrow::array::RecordBatch, input: &TrainInput, window_ms: i64, windows: &mut Windows) {
    let text = |name: &str| logs.column_by_name(name).and_then(|c| c.as_string_opt::<i32>());
    let (Some(ts), Some(service), Some(id), Some(template)) = (
        logs.column_by_name("ts")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>()),
        text("service"),
        text("template_id"),
        text("template"),
    ) else {
        return;
    };
    for i in 0..logs.num_rows() {
        let t = ts.value(i);
        let inside = input.since.is_none_or(|s| t >= s) && input.until.is_none_or(|u| t < u);
        if inside && !id.is_null(i) {
            windows.add(service.value(i), t, id.value(i), template.value(i), window_ms);
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
