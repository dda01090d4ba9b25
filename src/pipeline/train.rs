//! `lookout train`: fits a pipeline's models from recorded input into
//! `models/<pipeline>/`.
//!
//! The input is read as `replay` reads it (files or directories, merged by event time)
//! and decoded with the pipeline's settings; logs are mined with the pipeline's template
//! miner, starting from the saved `templates.json` when there is one so that template
//! ids stay what they were. Log lines inside `[since, until)` count towards the windows
//! of the log-pattern model ([`crate::logs::patterns`]). Writes `templates.json` (the
//! ids the model's dimensions refer to) and `log_patterns.json` (with its manifest).

use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::{Array, AsArray, TimestampMillisecondArray};

use crate::config::PipelineConfig;
use crate::decode::Decoder;
use crate::logs::patterns::{self, PatternModel, PatternParams, Windows};
use crate::logs::{self, Miner};
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
}

/// Trains the models of `cfg` into `dir` (`models/<pipeline>`); `progress` is called
/// about once a second with the records read so far.
pub fn train(
    cfg: &PipelineConfig,
    input: &TrainInput,
    dir: &Path,
    params: PatternParams,
    mut progress: impl FnMut(u64, u64, usize),
) -> Result<Trained, String> {
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
            let (enriched, _) = logs::enrich(&mut miner, &decoded.logs).map_err(|e| e.to_string())?;
            logs_seen += enriched.num_rows() as u64;
            count(&enriched, input, window_ms, &mut windows);
        }
        if last_report.elapsed().as_secs() >= 1 {
            progress(records, logs_seen, miner.len());
            last_report = Instant::now();
        }
    }
    progress(records, logs_seen, miner.len());
    let model = patterns::fit(&windows, params, crate::decode::time::format_ms(now_ms()))?;
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
    })
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
