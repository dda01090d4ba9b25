//! Wiring: a source's batch goes through decode → SQL → correlation, the outputs are
//! published, and only when the sink has acknowledged all of them are the batch's
//! offsets handed back to the source. One batch is in flight at a time, so offsets
//! advance in order per partition and a crash at any point re-reads from the last
//! acknowledged batch (at-least-once; incident ids and `seq` are deterministic, so
//! downstream drops repeats by (`incident_id`, `seq`)).
//!
//! [`Processor`] is the pure part (records in, messages out) and is what tests and
//! `replay` drive directly; [`run_kafka`] and [`replay`] add sources, sinks, shutdown.

pub mod bench;
pub mod bench_rate;
pub mod checkpoint;
pub mod diff;
pub mod embedded;
pub mod state_topic;
pub mod tasks;
pub mod train;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use arrow::array::{Array, RecordBatch, TimestampMillisecondArray};
use datafusion::logical_expr::ScalarUDF;
use tokio_util::sync::CancellationToken;

use crate::config::{Catalog, PipelineConfig};
use crate::correlate::{self, Correlator};
use crate::decode::Decoder;
use crate::logs::patterns::PatternModel;
use crate::logs::{self, LogAnomalies, LogTemplateUdf, Miner, MinerConfig, SharedMiner, TemplateChange};
use crate::model::saved::SeriesFile;
use crate::model::services::ServiceSignalModel;
use crate::model::{Detections, SignalDetectors};
use crate::observe::board::Board;
use crate::observe::{Health, Snapshot};
use crate::report::Trends;
use crate::sink::{Message, Sent, Sink, SinkError, Topic};
use crate::source::file::FileSource;
use crate::source::kafka::{KafkaSource, Predecoded};
use crate::source::{RawRecord, SourceError};
use crate::sql::{FileError, SqlEngine, SqlError, SqlOutput, Watermarks};
use checkpoint::{Checkpoint, Offsets, ProcessorState};

/// Why the pipeline could not start: the user's configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Sql(Vec<FileError>),
}

/// Why a running pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("saving state: {0}")]
    State(String),
    #[error("building a batch (a bug): {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Counters of what the pipeline has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub batches: u64,
    pub records_in: u64,
    pub logs: u64,
    pub metrics: u64,
    pub events: u64,
    pub dead_letters: u64,
    pub rule_alerts: u64,
    pub anomalies: u64,
    pub catalog_reloads: u64,
    pub incident_updates: u64,
    pub template_changes: u64,
    pub model_reloads: u64,
    /// Series not watched because `[detection] max_series` were watched already.
    pub dropped_series: u64,
    /// Points the detectors saw older than their series' newest (scored all the same).
    pub out_of_order_points: u64,
    /// Rows of windowed SQL later than their window (dropped, or folded into a kept
    /// window with `late = "update"`).
    pub late_records: u64,
    /// Closed windows emitted again because late rows changed them.
    pub window_corrections: u64,
    /// Points of SQL signals handed to the detectors.
    pub signal_points: u64,
    /// Trend report messages published.
    pub trend_reports: u64,
    /// Values trend reports left out: for a period already reported, or of series past
    /// `[trends] max_series`.
    pub trend_late_values: u64,
    pub trend_dropped_values: u64,
    /// Checkpoints written, failed, and the size of the latest.
    pub checkpoints: u64,
    pub checkpoint_failures: u64,
    pub checkpoint_bytes: u64,
    /// Records skipped at start because the restored checkpoint holds them already.
    pub skipped_records: u64,
    /// Where processing time went.
    pub time: StageTimes,
}

/// Wall time spent in each stage of [`Processor::process`], in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    pub decode: u64,
    /// Template mining and log anomalies.
    pub templates: u64,
    pub sql: u64,
    pub detectors: u64,
    /// Correlation and the output messages.
    pub correlation: u64,
}

impl Stats {
    /// Adds another processor's counters (the tasks of one instance).
    pub fn add(&mut self, o: &Stats) {
        let Stats {
            batches,
            records_in,
            logs,
            metrics,
            events,
            dead_letters,
            rule_alerts,
            anomalies,
            catalog_reloads,
            incident_updates,
            template_changes,
            model_reloads,
            dropped_series,
            out_of_order_points,
            late_records,
            window_corrections,
            signal_points,
            trend_reports,
            trend_late_values,
            trend_dropped_values,
            checkpoints,
            checkpoint_failures,
            checkpoint_bytes,
            skipped_records,
            time,
        } = *o;
        self.batches += batches;
        self.records_in += records_in;
        self.logs += logs;
        self.metrics += metrics;
        self.events += events;
        self.dead_letters += dead_letters;
        self.rule_alerts += rule_alerts;
        self.anomalies += anomalies;
        self.catalog_reloads += catalog_reloads;
        self.incident_updates += incident_updates;
        self.template_changes += template_changes;
        self.model_reloads += model_reloads;
        self.dropped_series += dropped_series;
        self.out_of_order_points += out_of_order_points;
        self.late_records += late_records;
        self.window_corrections += window_corrections;
        self.signal_points += signal_points;
        self.trend_reports += trend_reports;
        self.trend_late_values += trend_late_values;
        self.trend_dropped_values += trend_dropped_values;
        self.checkpoints += checkpoints;
        self.checkpoint_failures += checkpoint_failures;
        self.checkpoint_bytes += checkpoint_bytes;
        self.skipped_records += skipped_records;
        self.time.decode += time.decode;
        self.time.templates += time.templates;
        self.time.sql += time.sql;
        self.time.detectors += time.detectors;
        self.time.correlation += time.correlation;
    }
}

fn lap(clock: &mut Instant) -> u64 {
    let ns = clock.elapsed().as_nanos() as u64;
    *clock = Instant::now();
    ns
}

/// How often a running pipeline saves its template state.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Decode, SQL and correlation for one pipeline.
pub struct Processor {
    decoder: Decoder,
    /// Shared with SQL's `log_template()`; locked by one stage at a time.
    miner: SharedMiner,
    miner_config: MinerConfig,
    /// Where the template state is kept, and when it was last saved.
    templates_state: Option<(PathBuf, Instant)>,
    /// Some SQL file reads the logs' `params` column: mining fills it.
    params: bool,
    log_anomalies: LogAnomalies,
    /// The model files that are reloaded when they change, checked on every batch.
    model_watch: Vec<(Watched, ModelFile)>,
    sql: SqlEngine,
    detectors: SignalDetectors,
    correlator: Correlator,
    watermark: i64,
    /// Event-time progress per input partition, for windowed SQL.
    marks: Watermarks,
    /// Detectors and incident expiry wait for event time to pass on every live input
    /// partition (see [`Processor::read_partitions`]).
    hold_event_time: bool,
    /// The catalog file, checked on every batch.
    catalog_watch: Option<Watched>,
    /// Where each batch's snapshot goes for `/metrics` and `/ready`.
    health: Option<Arc<Health>>,
    /// Where and how often the whole state is checkpointed (`lookout run` on Kafka).
    checkpoints: Option<Checkpoints>,
    /// A hash of the pipeline's files, which a checkpoint must match.
    pipeline_hash: String,
    /// What the web view shows, and when it was last rendered.
    board: Option<BoardState>,
    /// Trend reports (None when `[trends] enabled = false`).
    trends: Option<Trends>,
    /// Event time up to which trend periods may close: the oldest live input partition.
    trend_mark: Option<i64>,
    /// The input partition number this processor is the task of (partitioned state).
    task: Option<i32>,
    name: String,
    pub stats: Stats,
}

impl Processor {
    pub async fn build(cfg: &PipelineConfig) -> Result<Processor, BuildError> {
        let miner: SharedMiner = Arc::new(Mutex::new(Miner::new(cfg.miner.clone())));
        let functions = vec![ScalarUDF::new_from_impl(LogTemplateUdf::new(miner.clone()))];
        let sql = SqlEngine::load(&cfg.dir, &cfg.catalog, functions)
            .await
            .map_err(BuildError::Sql)?;
        // DESIGN.md keeps a record's other fields in `attrs`: for the SQL, which is the
        // only reader of decoded logs; with no file reading them, none is collected.
        // The same for the template parameters that mining cuts out of each message.
        let mut decode = cfg.decode.clone();
        decode.logs.skip_attrs = !sql.reads("logs", "attrs");
        let params = sql.reads("logs", "params");
        for (column, unread) in [("attrs", decode.logs.skip_attrs), ("params", !params)] {
            if unread {
                tracing::info!(
                    pipeline = %cfg.spec.name,
                    "no SQL file reads the logs' {column}: they are left empty"
                );
            }
        }
        Ok(Processor {
            decoder: Decoder::new(decode),
            miner,
            miner_config: cfg.miner.clone(),
            templates_state: None,
            params,
            log_anomalies: LogAnomalies::new(cfg.spec.log_anomalies.clone()),
            model_watch: Vec::new(),
            sql,
            detectors: SignalDetectors::new(&cfg.spec.detect, cfg.spec.detection.clone()),
            correlator: Correlator::new(cfg.spec.correlation.clone(), cfg.catalog.clone()),
            watermark: i64::MIN,
            marks: Watermarks::new(std::time::Duration::from_millis(cfg.spec.windows.idle_ms())),
            hold_event_time: false,
            catalog_watch: cfg.catalog_path.clone().map(Watched::new),
            health: None,
            board: None,
            checkpoints: None,
            pipeline_hash: checkpoint::pipeline_hash(&cfg.dir),
            trends: match cfg.spec.trends.enabled {
                true => Some(Trends::new(&cfg.spec.trends).map_err(|message| {
                    BuildError::Config(crate::config::ConfigError::Invalid {
                        file: cfg.dir.join("pipeline.toml").display().to_string(),
                        message,
                    })
                })?),
                false => None,
            },
            trend_mark: None,
            task: None,
            name: cfg.spec.name.clone(),
            stats: Stats::default(),
        })
    }

    /// Says that input comes from Kafka partitions, which a consumer reads unevenly: in a
    /// backlog one partition can run far ahead of another in event time. Detectors then
    /// score points and incidents expire on the oldest event time of the live partitions
    /// ([`Watermarks::settled`]), not on the newest event (see [`SignalDetectors::hold`],
    /// [`Correlator::hold`]). Replayed files are merged by event time and need no holding.
    pub fn read_partitions(&mut self) {
        self.hold_event_time = true;
    }

    /// Tells event-time tracking which input partitions this instance reads, before they
    /// deliver anything, so that trend periods wait for them.
    pub fn expect_partitions(&mut self, parts: &[(crate::decode::Stream, String, i32)]) {
        let now = Instant::now();
        for (stream, topic, partition) in parts {
            self.marks.expect(*stream, topic, *partition, now);
        }
    }

    /// Makes this the task of input partition `partition` (see [`tasks`]): its snapshot
    /// counts into the instance's sum, its operations report is named by the partition,
    /// and its template state lives in its checkpoints, not in `templates.json`.
    pub fn set_task(&mut self, partition: i32) {
        self.task = Some(partition);
        self.templates_state = None;
        if let Some(t) = &mut self.trends {
            t.for_partition(partition);
        }
    }

    pub fn sql(&self) -> &SqlEngine {
        &self.sql
    }

    pub fn correlator(&self) -> &Correlator {
        &self.correlator
    }

    /// The log-pattern model in use, if any.
    pub fn log_model(&self) -> Option<&PatternModel> {
        self.log_anomalies.model()
    }

    /// Publishes a snapshot into `health` after every batch (metrics and readiness).
    pub fn report_to(&mut self, health: Arc<Health>) {
        self.health = Some(health);
        self.board = Some(BoardState {
            board: Board::default(),
            rendered: Instant::now(),
            changed: true,
        });
    }

    /// Publishes the snapshot for `/metrics` and, when something changed (or a second
    /// passed), the web view's state.
    fn publish_health(&mut self) {
        if let (Some(h), Some(b)) = (&self.health, &mut self.board) {
            if b.changed || b.rendered.elapsed() >= std::time::Duration::from_secs(1) {
                let points: Vec<Vec<(i64, f64)>> = b
                    .board
                    .series_keys()
                    .iter()
                    .map(|k| self.detectors.recent_points(k))
                    .collect();
                let t = &self.stats;
                let counters = serde_json::json!({
                    "pipeline": self.name,
                    "records": t.records_in,
                    "logs": t.logs,
                    "metrics": t.metrics,
                    "events": t.events,
                    "dead_letters": t.dead_letters,
                    "incident_updates": t.incident_updates,
                    "open_incidents": self.correlator.open_incidents(),
                    "anomalies": t.anomalies,
                    "late_records": t.late_records,
                    "watermark": (self.watermark > i64::MIN).then(|| crate::decode::time::format_ms(self.watermark)),
                });
                h.set_board(self.task, b.board.render(counters, &points));
                b.rendered = Instant::now();
                b.changed = false;
            }
        }
        // a task's snapshot goes into its instance's sum, which [`tasks`] publishes
        if let (Some(h), None) = (&self.health, self.task) {
            h.publish(self.snapshot());
        }
    }

    /// What `/metrics` shows of this processor now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            stats: self.stats,
            open_incidents: self.correlator.open_incidents(),
            watched_series: self.detectors.series_count(),
            held_points: self.detectors.held_points(),
            templates: self.miner().len(),
            open_windows: self.sql.open_slots(),
            models: vec![
                ("log_patterns", self.log_model().is_some()),
                ("service_signals", self.signal_model().is_some()),
            ],
        }
    }

    /// The service-signals model in use, if any.
    pub fn signal_model(&self) -> Option<&ServiceSignalModel> {
        self.detectors.vector_model()
    }

    /// The template miner, locked: keep the guard short, and take it once per
    /// expression (a second lock in the same statement waits forever).
    pub fn miner(&self) -> MutexGuard<'_, Miner> {
        self.miner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Uses a pipeline's models directory (`models/<pipeline>`): starts template mining
    /// from `templates.json` when it exists (template ids carry over restarts) and saves
    /// it every minute and when the pipeline stops; starts the series detectors from
    /// `series.json` when it exists; loads the log-pattern model `log_patterns.json` and
    /// the service-signals model `service_signals.json` when they exist, and reloads them
    /// when their files change (a bad replacement keeps the model in use and says why).
    /// A file that is not what it should be fails here, at start.
    pub fn use_models(&mut self, dir: &Path) -> Result<(), String> {
        let state = dir.join("templates.json");
        if state.exists() {
            let restored = Miner::load(self.miner_config.clone(), &state)?;
            tracing::info!(file = %state.display(), templates = restored.len(), "log templates restored");
            *self.miner() = restored;
            self.log_anomalies.skip_warmup();
        }
        self.templates_state = Some((state.clone(), Instant::now()));
        let model = dir.join("log_patterns.json");
        if model.exists() {
            if !state.exists() {
                return Err(format!(
                    "{}: the model's template ids come from {}, which is missing; run `lookout train` again",
                    model.display(),
                    state.display()
                ));
            }
            self.log_anomalies.set_model(Some(PatternModel::load(&model)?));
        }
        let series = dir.join("series.json");
        if series.exists() {
            let file = SeriesFile::load(&series)?;
            let n = self
                .detectors
                .import_series(file.series)
                .map_err(|e| format!("{}: {e}; run `lookout train` again", series.display()))?;
            tracing::info!(file = %series.display(), series = n, "series detectors restored");
        }
        let signals = dir.join("service_signals.json");
        if signals.exists() {
            self.detectors
                .set_vector_model(Some(ServiceSignalModel::load(&signals)?));
        }
        self.model_watch = vec![
            (Watched::new(model), ModelFile::LogPatterns),
            (Watched::new(signals), ModelFile::ServiceSignals),
        ];
        Ok(())
    }

    /// Reloads a model whose file changed.
    fn reload_models(&mut self) {
        for (watched, kind) in &mut self.model_watch {
            if !watched.changed() || !watched.path.exists() {
                continue;
            }
            let path = &watched.path;
            let loaded = match kind {
                ModelFile::LogPatterns => PatternModel::load(path).map(|m| {
                    tracing::info!(file = %path.display(), services = m.services.len(), "log-pattern model reloaded");
                    self.log_anomalies.set_model(Some(m));
                }),
                ModelFile::ServiceSignals => ServiceSignalModel::load(path).map(|m| {
                    tracing::info!(file = %path.display(), services = m.services.len(), "service-signals model reloaded");
                    self.detectors.set_vector_model(Some(m));
                }),
            };
            match loaded {
                Ok(()) => self.stats.model_reloads += 1,
                Err(e) => tracing::warn!(error = %e, "model not reloaded; keeping the one in use"),
            }
        }
    }

    /// The whole state, for a checkpoint.
    pub fn state(&mut self) -> Result<ProcessorState, PipelineError> {
        let miner = self.miner().state();
        Ok(ProcessorState {
            watermark: self.watermark,
            marks: self.marks.state(),
            trend_mark: self.trend_mark,
            miner,
            log_anomalies: self.log_anomalies.state(),
            windows: self.sql.checkpoint()?,
            detectors: self.detectors.state(),
            correlator: self.correlator.state(),
            trends: self.trends.as_ref().map(Trends::state),
        })
    }

    /// Goes on from a checkpointed state.
    pub fn restore(&mut self, s: ProcessorState) -> Result<(), String> {
        let miner = Miner::restore(self.miner_config.clone(), s.miner)?;
        match (&mut self.trends, s.trends) {
            (Some(t), Some(state)) => t.restore(state)?,
            (Some(_), None) | (None, Some(_)) => return Err("trend reports were enabled or disabled since".into()),
            (None, None) => {}
        }
        self.sql.restore(s.windows).map_err(|e| e.to_string())?;
        *self.miner() = miner;
        self.log_anomalies.restore(s.log_anomalies);
        self.detectors.restore(s.detectors);
        self.correlator.restore(s.correlator);
        self.watermark = s.watermark;
        self.marks.restore(s.marks, Instant::now());
        self.trend_mark = s.trend_mark;
        Ok(())
    }

    /// Checkpoints the state into `dir` every `every` (see [`checkpoint`]) and resumes
    /// from the checkpoint there. Returns the input offsets the restored state has
    /// processed up to (empty when there was none, or it belongs to another pipeline).
    /// A checkpoint that cannot be read fails here, at start.
    /// `scope` names whose offsets they are (the cluster id and consumer group).
    pub fn checkpoint_to(&mut self, dir: &Path, every: std::time::Duration, scope: &str) -> Result<Offsets, String> {
        let path = dir.join(checkpoint::FILE);
        let found = Checkpoint::load(&path)?;
        let origin = path.display().to_string();
        self.checkpoint_every(found, &origin, Some(path), every, scope)
    }

    /// [`Processor::checkpoint_to`] for checkpoints that go to the state topic, in
    /// transactions or per task (`found`: the latest there, read from `origin`); the
    /// caller writes them.
    pub fn checkpoint_to_topic(
        &mut self,
        found: Option<Checkpoint>,
        origin: &str,
        every: std::time::Duration,
        scope: &str,
    ) -> Result<Offsets, String> {
        self.checkpoint_every(found, origin, None, every, scope)
    }

    /// Restores `found` (when it is of this pipeline and scope) and checkpoints every
    /// `every` from now on, to `path` or (without one) to the state topic.
    fn checkpoint_every(
        &mut self,
        found: Option<Checkpoint>,
        origin: &str,
        path: Option<PathBuf>,
        every: std::time::Duration,
        scope: &str,
    ) -> Result<Offsets, String> {
        let offsets = self.resume(found, origin, scope)?;
        self.checkpoints = Some(Checkpoints {
            path,
            every,
            last: Instant::now(),
            scope: scope.to_string(),
        });
        Ok(offsets)
    }

    /// Restores a checkpoint of this pipeline and scope; returns its offsets.
    fn resume(&mut self, found: Option<Checkpoint>, origin: &str, scope: &str) -> Result<Offsets, String> {
        let Some(c) = found else {
            return Ok(Offsets::new());
        };
        if c.pipeline != self.name || c.pipeline_hash != self.pipeline_hash {
            tracing::warn!(
                checkpoint = %origin,
                "the checkpoint was made by another version of this pipeline's files; starting with empty state at the committed offsets"
            );
            return Ok(Offsets::new());
        }
        if c.scope != scope {
            tracing::warn!(
                checkpoint = %origin,
                of = %c.scope,
                now = %scope,
                "the checkpoint is of another Kafka cluster or consumer group; starting with empty state at the committed offsets"
            );
            return Ok(Offsets::new());
        }
        let written = crate::decode::time::format_ms(c.written_at);
        self.restore(c.state)
            .map_err(|e| format!("{origin}: {e}; remove it to start empty"))?;
        tracing::info!(
            checkpoint = %origin,
            %written,
            task = ?self.task,
            partitions = c.offsets.len(),
            open_incidents = self.correlator.open_incidents(),
            open_windows = self.sql.open_slots(),
            "state restored from the checkpoint"
        );
        Ok(c.offsets)
    }

    /// True when the state should be checkpointed now (`force`: at a clean stop).
    fn checkpoint_due(&self, force: bool) -> bool {
        self.checkpoints
            .as_ref()
            .is_some_and(|c| force || c.last.elapsed() >= c.every)
    }

    /// The state with the offsets it has processed up to, as checkpoint bytes.
    fn encode_checkpoint(&mut self, offsets: &Offsets) -> Result<Vec<u8>, PipelineError> {
        let scope = self.checkpoints.as_ref().map(|c| c.scope.clone()).unwrap_or_default();
        let state = self.state()?;
        let c = Checkpoint::new(&self.name, &self.pipeline_hash, &scope, offsets.clone(), state);
        c.to_bytes().map_err(|e| PipelineError::State(e.to_string()))
    }

    /// Counts a checkpoint written or committed; the next is due an interval later.
    fn checkpoint_done(&mut self, bytes: usize) {
        if let Some(cp) = &mut self.checkpoints {
            cp.last = Instant::now();
        }
        self.stats.checkpoints += 1;
        self.stats.checkpoint_bytes = bytes as u64;
    }

    /// Writes the state with the offsets it has processed up to, to the checkpoint file.
    fn write_checkpoint(&mut self, offsets: &Offsets) -> Result<(), PipelineError> {
        let Some(path) = self.checkpoints.as_ref().and_then(|c| c.path.clone()) else {
            return Ok(());
        };
        let started = Instant::now();
        let bytes = self.encode_checkpoint(offsets)?;
        let bytes = checkpoint::write_file(&path, &bytes)
            .map_err(|e| PipelineError::State(format!("{}: {e}", path.display())))?;
        self.checkpoint_done(bytes);
        tracing::debug!(bytes, ms = started.elapsed().as_millis() as u64, "checkpoint written");
        Ok(())
    }

    pub fn save_state(&mut self) -> std::io::Result<()> {
        if let Some((path, saved)) = &mut self.templates_state {
            self.miner.lock().unwrap_or_else(|e| e.into_inner()).save(path)?;
            *saved = Instant::now();
        }
        Ok(())
    }

    /// Processes one batch of records into the messages to publish.
    /// Reloads the service catalog when its file changed; a bad file keeps the old
    /// catalog and says why.
    async fn reload_catalog(&mut self) {
        let Some(watched) = &mut self.catalog_watch else {
            return;
        };
        if !watched.changed() {
            return;
        }
        let path = &watched.path;
        match Catalog::load(path) {
            Ok(c) => {
                tracing::info!(file = %path.display(), services = c.services().count(), "service catalog reloaded");
                self.sql.set_catalog(&c).await;
                self.correlator.set_catalog(c);
                self.stats.catalog_reloads += 1;
            }
            Err(e) => tracing::warn!(error = %e, "service catalog not reloaded; keeping the previous one"),
        }
    }

    pub async fn process(&mut self, records: &[RawRecord]) -> Result<Vec<Message>, PipelineError> {
        self.process_read(records, None).await
    }

    /// [`Processor::process_read`] of the batch `source` handed over last: the partitions
    /// it is assigned hold event time back before they deliver, and its batch may have
    /// been decoded as it was read.
    pub async fn process_from(
        &mut self,
        records: &[RawRecord],
        source: &mut KafkaSource,
    ) -> Result<Vec<Message>, PipelineError> {
        self.expect_partitions(&source.assigned());
        self.process_read(records, source.take_decoded()).await
    }

    /// [`Processor::process`] of a batch that may have been decoded as it was read
    /// ([`KafkaSource::decode_ahead`]); its decoding time counts as the decode stage.
    pub async fn process_read(
        &mut self,
        records: &[RawRecord],
        decoded: Option<Predecoded>,
    ) -> Result<Vec<Message>, PipelineError> {
        self.reload_catalog().await;
        self.reload_models();
        let mut clock = Instant::now();
        let mut d = match decoded {
            Some(p) => {
                self.stats.time.decode += p.took.as_nanos() as u64;
                p.decoded?
            }
            None => {
                let d = self.decoder.decode(records)?;
                self.stats.time.decode += lap(&mut clock);
                d
            }
        };
        let mut log_detections = Detections::default();
        if d.logs.num_rows() > 0 {
            let (logs, changes) = logs::enrich(&mut self.miner(), &d.logs, self.params)?;
            d.logs = logs;
            self.stats.template_changes += changes.len() as u64;
            let mut created = HashSet::new();
            for c in &changes {
                tracing::debug!(change = ?c, "log templates changed");
                if let TemplateChange::Created { id } = c {
                    created.insert(format!("{id:016x}"));
                }
            }
            log_detections = self.log_anomalies.observe(&d.logs, &created);
        }
        if self
            .templates_state
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() >= SAVE_EVERY)
        {
            if let Err(e) = self.save_state() {
                tracing::warn!(error = %e, "log template state not saved; will retry");
            }
        }
        self.stats.batches += 1;
        self.stats.records_in += records.len() as u64;
        self.stats.logs += d.logs.num_rows() as u64;
        self.stats.metrics += d.metrics.num_rows() as u64;
        self.stats.events += d.events.num_rows() as u64;
        self.stats.dead_letters += d.dead_letters.len() as u64;
        for b in [&d.logs, &d.metrics, &d.events] {
            if let Some(t) = max_ts(b) {
                self.watermark = self.watermark.max(t);
            }
        }
        let now = Instant::now();
        for p in &d.partitions {
            self.marks.observe(p.stream, &p.topic, p.partition, p.newest, now);
        }
        if self.hold_event_time {
            let settled = self.marks.settled(now).unwrap_or(i64::MIN);
            self.correlator.hold(settled);
            self.detectors.hold(settled);
        }
        if let Some(t) = &mut self.trends {
            t.observe_metrics(&d.metrics);
            t.observe_events(&d.events);
            self.trend_mark = self.marks.settled(now).or(self.trend_mark);
        }
        self.stats.time.templates += lap(&mut clock);
        let sql = if d.rows() > 0 || self.sql.has_windows() {
            self.sql
                .run(&d.logs, &d.metrics, &d.events, self.watermark, &self.marks, now)
                .await?
        } else {
            SqlOutput::default()
        };
        self.stats.time.sql += lap(&mut clock);
        let mut detections = self.detectors.observe(&d.logs, &d.metrics);
        detections.alerts.append(&mut log_detections.alerts);
        detections.anomalies.append(&mut log_detections.anomalies);
        let mut out: Vec<Message> = d.dead_letters.iter().map(Message::dead_letter).collect();
        out.extend(self.conclude(sql, detections, &d.events, &mut clock, false));
        self.publish_health();
        Ok(out)
    }

    /// Closes every open SQL window, for the end of recorded input, and publishes
    /// what that gives.
    pub async fn finish(&mut self) -> Result<Vec<Message>, PipelineError> {
        let mut clock = Instant::now();
        let sql = self.sql.flush(self.watermark).await?;
        self.stats.time.sql += lap(&mut clock);
        self.correlator.release();
        let held = self.detectors.release();
        let empty = RecordBatch::new_empty(crate::decode::Stream::Events.schema());
        let out = self.conclude(sql, held, &empty, &mut clock, true);
        self.publish_health();
        Ok(out)
    }

    /// From SQL's alerts and signal points, the detectors' findings and the batch's
    /// events to the anomaly, incident and trend-report messages (`finish`: the input
    /// has ended, every trend period closes).
    fn conclude(
        &mut self,
        sql: SqlOutput,
        mut detections: Detections,
        events: &RecordBatch,
        clock: &mut Instant,
        finish: bool,
    ) -> Vec<Message> {
        let mut alerts = sql.alerts;
        self.stats.rule_alerts += alerts.len() as u64;
        self.stats.late_records = self.sql.late_rows();
        self.stats.window_corrections = self.sql.corrections();
        self.stats.signal_points += sql.points.len() as u64;
        let signals = self.detectors.observe_points(&sql.points);
        detections.alerts.extend(signals.alerts);
        detections.anomalies.extend(signals.anomalies);
        self.stats.dropped_series = self.detectors.dropped_series;
        self.stats.out_of_order_points = self.detectors.out_of_order;
        self.stats.anomalies += detections.anomalies.len() as u64;
        alerts.extend(detections.alerts);
        self.stats.time.detectors += lap(clock);
        // alerts from SQL and the detectors in event-time order, each before the first
        // event later than it; the events in the order they arrived
        alerts.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.fingerprint.cmp(&b.fingerprint)));
        let external = correlate::alert::from_events(events);
        if let Some(t) = &mut self.trends {
            t.observe_points(&sql.points);
            t.observe_alerts(&alerts);
            for input in &external {
                if let correlate::Input::Alert(a) = input {
                    t.observe_alerts(std::slice::from_ref(a));
                }
            }
        }
        let inputs = correlate::interleave(external, alerts.into_iter().map(correlate::Input::Alert));
        let mut updates = self.correlator.ingest_in_order(inputs);
        if self.watermark > i64::MIN {
            updates.extend(self.correlator.advance(self.watermark));
        }
        let reports = match &mut self.trends {
            Some(t) => {
                for u in &updates {
                    t.observe_summary(&u.incident_id, &u.summary);
                }
                match (finish, self.trend_mark) {
                    (true, _) => t.finish(),
                    (false, Some(mark)) => t.advance(mark),
                    (false, None) => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        self.stats.trend_reports += reports.len() as u64;
        if let Some(t) = &self.trends {
            self.stats.trend_late_values = t.stats.late;
            self.stats.trend_dropped_values = t.stats.dropped;
        }
        self.stats.incident_updates += updates.len() as u64;
        if let Some(b) = &mut self.board {
            let incidents: Vec<serde_json::Value> = updates.iter().map(correlate::IncidentUpdate::json).collect();
            b.changed |= b.board.take(incidents.iter(), detections.anomalies.iter());
        }
        let mut out = Vec::new();
        out.extend(
            detections
                .anomalies
                .iter()
                .map(|a| Message::json(Topic::Anomalies, a["fingerprint"].as_str().map(str::to_string), a)),
        );
        out.extend(
            updates
                .into_iter()
                .map(|u| Message::text(Topic::Incidents, Some(u.incident_id), u.text)),
        );
        out.extend(
            reports
                .iter()
                .map(|r| Message::json(Topic::TrendReports, r["report_id"].as_str().map(str::to_string), r)),
        );
        self.stats.time.correlation += lap(clock);
        out
    }
}

/// Where and how often a running pipeline checkpoints.
struct Checkpoints {
    /// The checkpoint file; `None` when they go to the state topic.
    path: Option<PathBuf>,
    every: std::time::Duration,
    last: Instant,
    scope: String,
}

/// The web view's state and when it was last rendered for `/api/state`.
struct BoardState {
    board: Board,
    rendered: Instant,
    /// Incidents or anomalies arrived since.
    changed: bool,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// A file checked for changes by its modification time.
struct Watched {
    path: PathBuf,
    seen: Option<SystemTime>,
}

impl Watched {
    fn new(path: PathBuf) -> Watched {
        let seen = modified(&path);
        Watched { path, seen }
    }

    /// True once for every change of the modification time (appearing and vanishing
    /// included).
    fn changed(&mut self) -> bool {
        let now = modified(&self.path);
        let changed = now != self.seen;
        self.seen = now;
        changed
    }
}

/// The models that `use_models` watches.
#[derive(Debug, Clone, Copy)]
enum ModelFile {
    LogPatterns,
    ServiceSignals,
}

fn max_ts(b: &RecordBatch) -> Option<i64> {
    let ts = b
        .column_by_name("ts")?
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()?;
    arrow::compute::max(ts)
}

/// Called with every message once it is published (printing, tests).
pub type OnPublish<'a> = &'a mut (dyn FnMut(&Message) + Send);

/// Runs until `cancel` fires: consume, process, publish, acknowledge. Returns after the
/// last batch is acknowledged and offsets are committed. With a transactional sink the
/// outputs, the checkpoint and the offsets are committed together every interval.
pub async fn run_kafka(
    processor: &mut Processor,
    source: &mut KafkaSource,
    sink: &mut Sink,
    cancel: &CancellationToken,
    on_publish: OnPublish<'_>,
) -> Result<Stats, PipelineError> {
    let transactional = sink.transactional_id().is_some();
    processor.read_partitions();
    source.decode_ahead(processor.decoder.clone());
    // anything to commit since the last transaction
    let mut pending = false;
    // The last batch, its outputs sent and not yet acknowledged: they are awaited after
    // the next batch is processed, and only then are its offsets stored.
    let mut in_flight: Option<InFlight> = None;
    let result = async {
        while let Some(batch) = source.next_batch(cancel).await? {
            let started = Instant::now();
            let messages = processor.process_from(&batch, source).await?;
            if let Some(before) = in_flight.take() {
                settle(before, processor, source, sink, on_publish).await?;
            }
            pending |= !batch.is_empty() || !messages.is_empty();
            if !batch.is_empty() {
                tracing::debug!(
                    records = batch.len(),
                    outputs = messages.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "batch processed"
                );
            }
            in_flight = Some(InFlight {
                sent: sink.send(messages),
                batch,
                started,
            });
            // A checkpoint holds the state as of the delivered batches, which must then
            // be every batch processed: this one is settled first.
            let checkpoint = if transactional {
                pending && processor.checkpoint_due(false)
            } else {
                processor.checkpoints.is_some() && processor.checkpoint_due(false)
            };
            if checkpoint {
                if let Some(this) = in_flight.take() {
                    settle(this, processor, source, sink, on_publish).await?;
                }
                if transactional {
                    commit_transaction(processor, source, sink).await?;
                    pending = false;
                } else {
                    checkpoint_and_store(processor, source);
                }
            }
            processor.stats.skipped_records = source.skipped();
            if let Some(h) = &processor.health {
                h.set_lag(source.lag());
            }
        }
        if let Some(last) = in_flight.take() {
            settle(last, processor, source, sink, on_publish).await?;
        }
        if transactional && pending {
            commit_transaction(processor, source, sink).await?;
        }
        Ok::<(), PipelineError>(())
    }
    .await;
    if transactional {
        if result.is_err() {
            // the next start goes on from the last committed transaction
            sink.abort().await;
        }
    } else {
        // What was delivered is checkpointed (when checkpointing) and committed. After
        // an error the state may hold a batch that was not delivered: no checkpoint
        // then, and the next start goes on from the last one.
        if result.is_ok() && processor.checkpoint_due(true) {
            checkpoint_and_store(processor, source);
        }
        source.commit();
    }
    sink.close().await?;
    processor
        .save_state()
        .map_err(|e| PipelineError::State(e.to_string()))?;
    result.map(|_| processor.stats)
}

/// A batch whose outputs were sent and are not yet acknowledged.
struct InFlight {
    sent: Sent,
    batch: Vec<RawRecord>,
    /// When the batch was handed over for processing.
    started: Instant,
}

/// Waits for a batch's outputs to be acknowledged; then its offsets count as delivered
/// (stored for commit unless checkpoints store them) and its buffers go back to the
/// source.
async fn settle(
    f: InFlight,
    processor: &mut Processor,
    source: &mut KafkaSource,
    sink: &mut Sink,
    on_publish: OnPublish<'_>,
) -> Result<(), PipelineError> {
    let messages = sink.settle(f.sent).await?;
    source.delivered(&f.batch);
    if processor.checkpoints.is_none() && sink.transactional_id().is_none() {
        source.store_delivered();
    }
    if let Some(h) = &processor.health {
        if !f.batch.is_empty() {
            h.observe_batch(f.started.elapsed().as_secs_f64());
        }
    }
    for m in &messages {
        on_publish(m);
    }
    source.recycle(f.batch);
    Ok(())
}

/// Commits the open transaction: what was published since the last, the checkpoint of
/// the state after it, and the input offsets that state has processed.
async fn commit_transaction(
    processor: &mut Processor,
    source: &KafkaSource,
    sink: &mut Sink,
) -> Result<(), PipelineError> {
    let offsets = source.delivered_offsets().clone();
    let bytes = processor.encode_checkpoint(&offsets)?;
    let group = source
        .group_metadata()
        .ok_or_else(|| PipelineError::State("the consumer has no group metadata for the transaction".into()))?;
    if let Err(e) = sink.commit(&bytes, &offsets, group).await {
        processor.stats.checkpoint_failures += 1;
        return Err(e.into());
    }
    processor.checkpoint_done(bytes.len());
    Ok(())
}

/// Writes a checkpoint of what was delivered and then stores its offsets for Kafka to
/// commit. A checkpoint that cannot be written is retried at the next interval, and its
/// offsets are not stored meanwhile: the input is read again rather than lost.
fn checkpoint_and_store(processor: &mut Processor, source: &mut KafkaSource) {
    match processor.write_checkpoint(source.delivered_offsets()) {
        Ok(()) => source.store_delivered(),
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint not written; offsets not committed until one is");
            processor.stats.checkpoint_failures += 1;
            if let Some(c) = &mut processor.checkpoints {
                c.last = Instant::now();
            }
        }
    }
}

/// Runs a pipeline over files as fast as it can.
pub async fn replay(
    processor: &mut Processor,
    source: &mut FileSource,
    sink: &mut Sink,
    on_publish: OnPublish<'_>,
) -> Result<Stats, PipelineError> {
    replay_with_progress(processor, source, sink, on_publish, &mut |_| {}).await
}

/// [`replay`], calling `on_batch` with the counters after every batch.
pub async fn replay_with_progress(
    processor: &mut Processor,
    source: &mut FileSource,
    sink: &mut Sink,
    on_publish: OnPublish<'_>,
    on_batch: &mut (dyn FnMut(&Stats) + Send),
) -> Result<Stats, PipelineError> {
    while let Some(batch) = source.next_batch()? {
        let messages = processor.process(&batch).await?;
        sink.publish(&messages).await?;
        for m in &messages {
            on_publish(m);
        }
        on_batch(&processor.stats);
    }
    // The input has ended: every window is complete.
    let messages = processor.finish().await?;
    sink.publish(&messages).await?;
    for m in &messages {
        on_publish(m);
    }
    sink.close().await?;
    processor
        .save_state()
        .map_err(|e| PipelineError::State(e.to_string()))?;
    Ok(processor.stats)
}

/// One readable line for an incident message, as `lookout run` prints them.
pub fn describe_incident(m: &Message) -> Option<String> {
    if m.topic != Topic::Incidents {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&m.payload).ok()?;
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let list = |k: &str| {
        v[k].as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    let root = v["root_cause"][0]["service"].as_str().unwrap_or("?");
    let changes: Vec<String> = v["suspected_changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{} {}",
                        c["kind"].as_str().unwrap_or(""),
                        c["service"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut line = format!(
        "{:<9} {} #{:<3} {} {:<8} {} | services={} alerts={} root={}",
        format!("[{}]", s("status")),
        s("incident_id"),
        v["seq"],
        s("priority"),
        s("severity"),
        s("title"),
        list("services"),
        v["alert_count"],
        root,
    );
    if !changes.is_empty() {
        line.push_str(&format!(" suspected={}", changes.join(";")));
    }
    Some(line)
}
