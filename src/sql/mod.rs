//! The analysts' SQL: every `*.sql` file of a pipeline directory, planned once at start
//! on DataFusion and run on each batch.
//!
//! The three input streams are tables `logs`, `metrics` and `events` whose contents are
//! swapped for each batch; `catalog` is a static table of the service catalog. Views
//! are registered under their file names in dependency order (cycles are refused).
//! Stateless alert rules run on each batch; windowed files (signals, and alert rules
//! with a window in `GROUP BY`) fold each batch into their windows ([`stream`],
//! [`windowed`]) and emit the windows their watermark ([`watermark`]) has passed: a
//! signal's rows become [`SignalPoint`]s for the detectors, a rule's rows [`Alert`]s, and
//! either is a table for the files that read it. Errors point at file:line:column with
//! DataFusion's message.

pub mod file;
mod rows;
pub mod stream;
mod swap;
pub mod watermark;
pub mod window;
pub mod windowed;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::view::ViewTable;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{LogicalPlan, ScalarUDF};
use datafusion::prelude::{SessionConfig, SessionContext};

pub use file::{FileError, FileKind, Header, LatePolicy, SqlFile};
pub use watermark::Watermarks;

use crate::config::Catalog;
use crate::correlate::Alert;
use crate::decode::Stream;
use crate::model::{Direction, Role};
use rows::{rows_to_alerts, rows_to_points, TITLE_FIELD};
use stream::WindowedFile;
use swap::{Query, SwapTable};

/// An error while running planned SQL on a batch: a bug or resource problem, not the
/// input's fault (input was validated at start).
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("{rule}: {source}")]
    Execute {
        rule: String,
        source: datafusion::error::DataFusionError,
    },
}

struct Rule {
    file: SqlFile,
    query: Query,
}

/// One file that runs: a stateless rule, or a windowed signal or rule.
enum Step {
    Rule(Box<Rule>),
    Window(Box<WindowedFile>),
}

/// A point of a signal's series, for the anomaly detectors.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalPoint {
    /// `file.column`, then `{key=value,...}` for keys other than service and host.
    pub series: String,
    pub service: String,
    pub host: String,
    pub ts: i64,
    pub value: f64,
    pub direction: Direction,
    pub role: Role,
}

/// What one step of the SQL produced.
#[derive(Debug, Default)]
pub struct SqlOutput {
    pub alerts: Vec<Alert>,
    pub points: Vec<SignalPoint>,
}

/// The planned SQL of one pipeline.
pub struct SqlEngine {
    ctx: SessionContext,
    inputs: Vec<(Stream, Arc<SwapTable>)>,
    steps: Vec<Step>,
    views: Vec<SqlFile>,
    catalog: Arc<SwapTable>,
    /// The table columns that the files read (`None`: any of them).
    reads: Option<BTreeSet<(String, String)>>,
}

impl SqlEngine {
    /// Reads and plans every `*.sql` file in `dir` (sorted by name). Every problem found
    /// is returned, not only the first.
    /// `functions` are registered before planning (the pipeline's `log_template`).
    pub async fn load(dir: &Path, catalog: &Catalog, functions: Vec<ScalarUDF>) -> Result<SqlEngine, Vec<FileError>> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| {
                vec![FileError {
                    file: dir.display().to_string(),
                    line: 0,
                    column: 0,
                    message: e.to_string(),
                    hint: None,
                }]
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        paths.sort();
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for p in paths {
            match SqlFile::read(&p) {
                Ok(f) => files.push(f),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        SqlEngine::plan(files, catalog, functions).await
    }

    /// Plans parsed files.
    pub async fn plan(
        files: Vec<SqlFile>,
        catalog: &Catalog,
        functions: Vec<ScalarUDF>,
    ) -> Result<SqlEngine, Vec<FileError>> {
        // Plans are run again on each step's batches (see `swap`): a filter that one run
        // derives for the next (a join's build-side bounds, a top-k's threshold) would
        // hold the last step's values.
        // One partition: a step's batch is a few thousand rows, and the other core is
        // decoding the next. With two, each aggregate and join repartitioned its input
        // across tasks: `lookout bench` spent 0.22 µs of wall time per event in SQL, 0.06
        // with one.
        let mut config = SessionConfig::new().with_target_partitions(1);
        let o = &mut config.options_mut().optimizer;
        o.enable_dynamic_filter_pushdown = false;
        o.enable_join_dynamic_filter_pushdown = false;
        o.enable_topk_dynamic_filter_pushdown = false;
        o.enable_aggregate_dynamic_filter_pushdown = false;
        let ctx = SessionContext::new_with_config(config);
        for f in functions.into_iter().chain(window::functions()) {
            ctx.register_udf(f);
        }
        let mut inputs = Vec::new();
        for s in Stream::ALL {
            let t = Arc::new(SwapTable::new(s.schema(), vec![]));
            ctx.register_table(s.name(), t.clone()).expect("fresh context");
            inputs.push((s, t));
        }
        let catalog_table = Arc::new(SwapTable::new(CATALOG_SCHEMA.clone(), vec![catalog_batch(catalog)]));
        ctx.register_table("catalog", catalog_table.clone())
            .expect("fresh context");

        let mut errors = Vec::new();
        let mut parsed = Vec::new();
        let mut names = BTreeSet::new();
        for f in files {
            if !names.insert(f.name.clone()) || ["logs", "metrics", "events", "catalog"].contains(&f.name.as_str()) {
                errors.push(f.error_at(1, 1, format!("the name {} is already taken", f.name), None));
                continue;
            }
            match parse_statement(&ctx, &f) {
                Ok(refs) => parsed.push((f, refs)),
                Err(e) => errors.push(e),
            }
        }
        let order = match dependency_order(&parsed) {
            Ok(o) => o,
            Err(e) => {
                errors.push(e);
                return Err(errors);
            }
        };
        let mut steps = Vec::new();
        let mut views = Vec::new();
        let mut reads = Some(BTreeSet::new());
        // How far behind its streams' watermark each windowed file's rows are.
        let mut delays: BTreeMap<String, i64> = BTreeMap::new();
        for i in order {
            let f = &parsed[i].0;
            let plan = match ctx.state().create_logical_plan(&f.sql).await {
                Ok(p) => p,
                Err(e) => {
                    errors.push(locate_error(f, &e));
                    continue;
                }
            };
            match (columns_read(&ctx, &plan), &mut reads) {
                (Some(columns), Some(all)) => all.extend(columns),
                _ => reads = None,
            }
            let analysed =
                match ctx
                    .state()
                    .analyzer()
                    .execute_and_check(plan.clone(), ctx.state().config_options(), |_, _| {})
                {
                    Ok(p) => p,
                    Err(e) => {
                        errors.push(locate_error(f, &e));
                        continue;
                    }
                };
            let windowed = match WindowedFile::new(f, &analysed, &ctx) {
                Ok(w) => w,
                Err(e) => {
                    let at = window::WINDOW_FUNCTIONS
                        .iter()
                        .find_map(|w| f.locate(&format!("{w}(")))
                        .unwrap_or((1, 1));
                    errors.push(f.error_at(at.0, at.1, e, Some(WINDOW_HINT.into())));
                    continue;
                }
            };
            match (f.header.kind, windowed) {
                (FileKind::View, None) => {
                    let view = ViewTable::new(plan, Some(f.sql.clone()));
                    if let Err(e) = ctx.register_table(f.name.as_str(), Arc::new(view)) {
                        errors.push(f.error_at(1, 1, e.to_string(), None));
                    }
                    views.push(f.clone());
                }
                (FileKind::View, Some(_)) => {
                    let (l, c) = f.locate("GROUP BY").unwrap_or((1, 1));
                    errors.push(f.error_at(
                        l,
                        c,
                        "a view is stateless; a windowed GROUP BY belongs in a signal or an alert file".into(),
                        None,
                    ));
                }
                (FileKind::Signal, None) => errors.push(f.error_at(
                    1,
                    1,
                    "a signal is a windowed aggregate: GROUP BY tumble(...), hop(...) or session(...)".into(),
                    Some(WINDOW_HINT.into()),
                )),
                (kind, Some(mut w)) => {
                    if kind == FileKind::Alert {
                        if let Err(e) = check_alert_schema(f, plan.schema().as_arrow()) {
                            errors.push(e);
                            continue;
                        }
                    }
                    let (streams, upstream) = streams_of(&f.name, &parsed, &delays);
                    w.streams = streams;
                    let own = match w.window.kind {
                        window::WindowKind::Tumble { size } | window::WindowKind::Hop { size, .. } => size,
                        window::WindowKind::Session { gap } => gap,
                    };
                    w.lateness = f.lateness_ms + upstream;
                    delays.insert(f.name.clone(), w.lateness + own);
                    if kind == FileKind::Signal {
                        if let Err(e) = ctx.register_table(f.name.as_str(), w.output.clone()) {
                            errors.push(f.error_at(1, 1, e.to_string(), None));
                        }
                    }
                    if let Err(e) = w.prepare(&ctx).await {
                        errors.push(locate_error(f, &e));
                        continue;
                    }
                    steps.push(Step::Window(Box::new(w)));
                }
                (_, None) => {
                    if let Err(e) = check_alert_schema(f, plan.schema().as_arrow()) {
                        errors.push(e);
                        continue;
                    }
                    let mut query = Query::new(plan);
                    if let Err(e) = query.prepare(&ctx).await {
                        errors.push(locate_error(f, &e));
                        continue;
                    }
                    steps.push(Step::Rule(Box::new(Rule { file: f.clone(), query })));
                }
            }
        }
        if errors.is_empty() {
            Ok(SqlEngine {
                ctx,
                inputs,
                steps,
                views,
                catalog: catalog_table,
                reads,
            })
        } else {
            Err(errors)
        }
    }

    /// Whether any file reads `column` of `table` (the optimiser has left in each
    /// file's plan only the columns it uses, `SELECT *` being all of them).
    pub fn reads(&self, table: &str, column: &str) -> bool {
        self.reads
            .as_ref()
            .is_none_or(|r| r.contains(&(table.to_string(), column.to_string())))
    }

    /// Replaces the contents of the `catalog` table (plans stay valid: same schema).
    pub async fn set_catalog(&self, c: &Catalog) {
        self.catalog.set(vec![catalog_batch(c)]);
    }

    fn files(&self, kind: FileKind) -> Vec<&SqlFile> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Rule(r) => &r.file,
                Step::Window(w) => &w.file,
            })
            .filter(|f| f.header.kind == kind)
            .collect()
    }

    pub fn rule_names(&self) -> Vec<&str> {
        self.files(FileKind::Alert)
            .into_iter()
            .map(|f| f.name.as_str())
            .collect()
    }

    pub fn signal_names(&self) -> Vec<&str> {
        self.files(FileKind::Signal)
            .into_iter()
            .map(|f| f.name.as_str())
            .collect()
    }

    pub fn view_names(&self) -> Vec<&str> {
        self.views.iter().map(|v| v.name.as_str()).collect()
    }

    /// Whether any file keeps windows (then SQL runs even on batches without rows, so
    /// that windows close as time passes).
    pub fn has_windows(&self) -> bool {
        self.windowed().next().is_some()
    }

    /// Rows later than their window, over every windowed file.
    pub fn late_rows(&self) -> u64 {
        self.windowed().map(|w| w.window.late_rows).sum()
    }

    /// Closed windows emitted again with late rows.
    pub fn corrections(&self) -> u64 {
        self.windowed().map(|w| w.window.corrections).sum()
    }

    /// Open (window, key) slots over every windowed file.
    pub fn open_slots(&self) -> usize {
        self.windowed().map(|w| w.window.slots()).sum()
    }

    fn windowed(&self) -> impl Iterator<Item = &WindowedFile> {
        self.steps.iter().filter_map(|s| match s {
            Step::Window(w) => Some(w.as_ref()),
            Step::Rule(_) => None,
        })
    }

    /// The window and watermark settings of a file, for `lookout explain`.
    pub fn window_settings(&self, name: &str) -> Option<String> {
        let w = self.windowed().find(|w| w.file.name == name)?;
        let streams: Vec<&str> = w.streams.iter().map(|s| s.name()).collect();
        let mut s = format!(
            "window: {}\nwatermark: newest event of {} (the slowest active partition) minus lateness {}\nlate rows: {}",
            w.window.kind.describe(),
            streams.join(", "),
            window::human(w.lateness),
            match w.file.header.late {
                LatePolicy::Drop => "dropped and counted".to_string(),
                LatePolicy::Update => format!(
                    "folded into the closed window for {} and emitted again as a correction",
                    window::human(w.window.keep_closed())
                ),
            }
        );
        if let Some(n) = w.file.header.for_windows {
            s.push_str(&format!(
                "\nfires: when a key is returned in {n} of the last {} windows",
                w.file.header.of_last.unwrap_or(n)
            ));
        }
        Some(s)
    }

    /// The logical and physical plan of a file, for `lookout explain`.
    pub async fn explain(&self, name: &str) -> Option<String> {
        let sql = self
            .files(FileKind::Alert)
            .into_iter()
            .chain(self.files(FileKind::Signal))
            .chain(self.views.iter())
            .find(|f| f.name == name)?
            .sql
            .clone();
        let df = self.ctx.sql(&format!("EXPLAIN {sql}")).await.ok()?;
        let batches = df.collect().await.ok()?;
        Some(arrow::util::pretty::pretty_format_batches(&batches).ok()?.to_string())
    }

    /// Runs every file on one batch of each stream: stateless rules on the batch,
    /// windowed files fold it in and emit the windows that `marks` has closed.
    pub async fn run(
        &mut self,
        logs: &RecordBatch,
        metrics: &RecordBatch,
        events: &RecordBatch,
        watermark: i64,
        marks: &Watermarks,
        now: Instant,
    ) -> Result<SqlOutput, SqlError> {
        self.set_inputs(logs, metrics, events).await;
        let fresh = logs.num_rows() + metrics.num_rows() + events.num_rows() > 0;
        self.step(fresh, watermark, |w| marks.for_streams(&w.streams, w.lateness, now))
            .await
    }

    /// Closes every open window (the end of recorded input) and runs what reads them.
    pub async fn flush(&mut self, watermark: i64) -> Result<SqlOutput, SqlError> {
        let empty = |s: Stream| RecordBatch::new_empty(s.schema());
        self.set_inputs(&empty(Stream::Logs), &empty(Stream::Metrics), &empty(Stream::Events))
            .await;
        self.step(false, watermark, |_| Some(i64::MAX)).await
    }

    async fn set_inputs(&self, logs: &RecordBatch, metrics: &RecordBatch, events: &RecordBatch) {
        for (s, table) in &self.inputs {
            let b = match s {
                Stream::Logs => logs,
                Stream::Metrics => metrics,
                Stream::Events => events,
            };
            table.set(if b.num_rows() == 0 { vec![] } else { vec![b.clone()] });
        }
    }

    async fn step(
        &mut self,
        fresh: bool,
        watermark: i64,
        close_at: impl Fn(&WindowedFile) -> Option<i64>,
    ) -> Result<SqlOutput, SqlError> {
        let mut out = SqlOutput::default();
        // Whether any windowed file emitted rows in this step (its readers must run).
        let mut emitted = false;
        for step in &mut self.steps {
            match step {
                Step::Rule(r) => {
                    if !fresh && !emitted {
                        continue;
                    }
                    let err = |source| SqlError::Execute {
                        rule: r.file.name.clone(),
                        source,
                    };
                    for b in r.query.run(&self.ctx).await.map_err(err)? {
                        out.alerts.extend(rows_to_alerts(&r.file, &b, watermark));
                    }
                }
                Step::Window(w) => {
                    let name = w.file.name.clone();
                    let err = |source| SqlError::Execute {
                        rule: name.clone(),
                        source,
                    };
                    if fresh || emitted {
                        w.update(&self.ctx).await.map_err(err)?;
                    }
                    let wm = close_at(w);
                    let closed = if wm == Some(i64::MAX) {
                        w.flush(&self.ctx).await
                    } else {
                        w.close(&self.ctx, wm).await
                    }
                    .map_err(err)?;
                    for e in closed {
                        emitted = true;
                        match w.file.header.kind {
                            FileKind::Signal => out.points.extend(rows_to_points(&w.file, &e.batch, e.end)),
                            _ => {
                                let alerts = rows_to_alerts(&w.file, &e.batch, e.end);
                                out.alerts
                                    .extend(alerts.into_iter().filter(|a| w.sustained(&a.fingerprint, e.end)));
                                w.prune_sustain(e.end);
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The state of every windowed file, by name, for checkpoints.
    pub fn checkpoint(&mut self) -> Result<BTreeMap<String, stream::FileState>, SqlError> {
        let mut out = BTreeMap::new();
        for s in &mut self.steps {
            if let Step::Window(w) = s {
                let state = w.checkpoint().map_err(|source| SqlError::Execute {
                    rule: w.file.name.clone(),
                    source,
                })?;
                out.insert(w.file.name.clone(), state);
            }
        }
        Ok(out)
    }

    /// Continues windowed files from a checkpoint; files not in it start empty.
    pub fn restore(&mut self, mut states: BTreeMap<String, stream::FileState>) -> Result<(), SqlError> {
        for s in &mut self.steps {
            if let Step::Window(w) = s {
                if let Some(state) = states.remove(&w.file.name) {
                    w.restore(state).map_err(|source| SqlError::Execute {
                        rule: w.file.name.clone(),
                        source,
                    })?;
                }
            }
        }
        Ok(())
    }
}

const WINDOW_HINT: &str = "windows are GROUP BY tumble(ts, INTERVAL '1 minute'), hop(ts, INTERVAL '5 minutes', INTERVAL '1 minute') or session(ts, INTERVAL '2 minutes'); see README \"Writing a pipeline\"";

/// The streams a file reads through the files it selects from, and how far behind the
/// streams' watermark the windowed files among those emit (their lateness and length).
fn streams_of(name: &str, files: &[(SqlFile, BTreeSet<String>)], delays: &BTreeMap<String, i64>) -> (Vec<Stream>, i64) {
    let mut streams = BTreeSet::new();
    let mut delay = 0;
    let mut todo = vec![name.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(n) = todo.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if n != name {
            if let Some(d) = delays.get(&n) {
                delay = delay.max(*d);
            }
        }
        if let Some(s) = Stream::ALL.into_iter().find(|s| s.name() == n) {
            streams.insert(s.name());
            continue;
        }
        if let Some((_, refs)) = files.iter().find(|(f, _)| f.name == n) {
            todo.extend(refs.iter().cloned());
        }
    }
    let streams = Stream::ALL.into_iter().filter(|s| streams.contains(s.name())).collect();
    (streams, delay)
}

fn parse_statement(ctx: &SessionContext, f: &SqlFile) -> Result<BTreeSet<String>, FileError> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let statements = datafusion::sql::parser::DFParser::parse_sql_with_dialect(
        &f.sql,
        datafusion::sql::sqlparser::dialect::dialect_from_str(dialect)
            .expect("the default dialect exists")
            .as_ref(),
    )
    .map_err(|e| locate_error(f, &e))?;
    if statements.len() != 1 {
        return Err(f.error_at(
            1,
            1,
            format!(
                "a pipeline file holds exactly one statement, this one has {}",
                statements.len()
            ),
            Some("split it into one file per statement".into()),
        ));
    }
    let stmt = statements.into_iter().next().expect("one statement");
    let refs = state.resolve_table_references(&stmt).map_err(|e| locate_error(f, &e))?;
    Ok(refs.into_iter().map(|r| r.table().to_string()).collect())
}

/// Views first, each after the views it reads; a cycle is an error.
fn dependency_order(files: &[(SqlFile, BTreeSet<String>)]) -> Result<Vec<usize>, FileError> {
    let index: BTreeMap<&str, usize> = files
        .iter()
        .enumerate()
        .map(|(i, (f, _))| (f.name.as_str(), i))
        .collect();
    let mut state = vec![0u8; files.len()]; // 0 new, 1 visiting, 2 done
    let mut order = Vec::new();
    fn visit(
        i: usize,
        files: &[(SqlFile, BTreeSet<String>)],
        index: &BTreeMap<&str, usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
        stack: &mut Vec<String>,
    ) -> Result<(), FileError> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                stack.push(files[i].0.name.clone());
                return Err(files[i].0.error_at(
                    1,
                    1,
                    format!("views depend on each other in a cycle: {}", stack.join(" -> ")),
                    None,
                ));
            }
            _ => {}
        }
        state[i] = 1;
        stack.push(files[i].0.name.clone());
        for dep in &files[i].1 {
            if let Some(&j) = index.get(dep.as_str()) {
                if files[j].0.header.kind == FileKind::Alert {
                    let (l, c) = files[i].0.locate(dep).unwrap_or((1, 1));
                    return Err(files[i].0.error_at(
                        l,
                        c,
                        format!("{dep} is an alert rule; only views and signals can be selected from"),
                        None,
                    ));
                }
                visit(j, files, index, state, order, stack)?;
            }
        }
        stack.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..files.len() {
        visit(i, files, &index, &mut state, &mut order, &mut Vec::new())?;
    }
    Ok(order)
}

/// Turns a DataFusion error into a located file error with a hint.
fn locate_error(f: &SqlFile, e: &datafusion::error::DataFusionError) -> FileError {
    let msg = e.to_string();
    let pos = regex::Regex::new(r"Line: (\d+), Column: (\d+)").expect("static regex");
    if let Some(c) = pos.captures(&msg) {
        let line = c[1].parse().unwrap_or(1);
        let col = c[2].parse().unwrap_or(1);
        return f.error_at(line, col, msg, Some("check the syntax near this position".into()));
    }
    if let Some(w) = window::WINDOW_FUNCTIONS.iter().find(|w| msg.contains(&format!("{w}:"))) {
        let (l, c) = f.locate(&format!("{w}(")).unwrap_or((1, 1));
        return f.error_at(l, c, msg, Some(WINDOW_HINT.into()));
    }
    let field = regex::Regex::new(r#"(?:No field named|column|table) '?"?([A-Za-z_][A-Za-z0-9_.]*)"?'?"#)
        .expect("static regex");
    let (line, col, hint) = match field.captures(&msg) {
        Some(c) => {
            let name = c[1]
                .trim_end_matches('.')
                .rsplit('.')
                .next()
                .unwrap_or(&c[1])
                .to_string();
            let (l, col) = f.locate(&name).unwrap_or((1, 1));
            let hint = if msg.contains("not found") && msg.contains("table") {
                "tables are logs, metrics, events, catalog and the views of this pipeline".to_string()
            } else {
                "columns: logs(ts, service, host, level, message, trace_id, attrs); metrics(ts, name, value, service, host, labels); events(ts, kind, source, service, host, severity, status, title, fingerprint, labels)".to_string()
            };
            (l, col, Some(hint))
        }
        None => (1, 1, None),
    };
    f.error_at(line, col, msg, hint)
}

fn check_alert_schema(f: &SqlFile, schema: &Schema) -> Result<(), FileError> {
    let at = |col: &str, m: String| {
        let (l, c) = f.locate(col).unwrap_or((1, 1));
        f.error_at(l, c, m, None)
    };
    if let Ok(field) = schema.field_with_name("ts") {
        if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
            return Err(at(
                "ts",
                format!("column ts must be a timestamp, it is {}", field.data_type()),
            ));
        }
    }
    for name in ["service", "host", "severity"] {
        if let Ok(field) = schema.field_with_name(name) {
            if !matches!(
                field.data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            ) {
                return Err(at(
                    name,
                    format!("column {name} must be text, it is {}", field.data_type()),
                ));
            }
        }
    }
    for k in f.header.keys.iter().flatten() {
        if schema.field_with_name(k).is_err() {
            return Err(f.error_at(
                1,
                1,
                format!("key column {k} is not in the rule's output"),
                Some(format!(
                    "output columns: {}",
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ));
        }
    }
    if let Some(t) = &f.header.title {
        for cap in TITLE_FIELD.captures_iter(t) {
            if schema.field_with_name(&cap[1]).is_err() {
                return Err(f.error_at(
                    1,
                    1,
                    format!("title uses {{{}}}, which is not an output column", &cap[1]),
                    None,
                ));
            }
        }
    }
    Ok(())
}

/// The service catalog as a table: name, owner, tier, kind, depends_on (comma list).
static CATALOG_SCHEMA: std::sync::LazyLock<arrow::datatypes::SchemaRef> = std::sync::LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("owner", DataType::Utf8, true),
        Field::new("tier", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, true),
        Field::new("depends_on", DataType::Utf8, false),
    ]))
});

fn catalog_batch(c: &Catalog) -> RecordBatch {
    let svcs: Vec<_> = c.services().collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(svcs.iter().map(|s| s.name.as_str()))),
        Arc::new(StringArray::from_iter(svcs.iter().map(|s| s.owner.as_deref()))),
        Arc::new(arrow::array::Int64Array::from_iter_values(
            svcs.iter().map(|s| i64::from(s.tier)),
        )),
        Arc::new(StringArray::from_iter(svcs.iter().map(|s| s.kind.as_deref()))),
        Arc::new(StringArray::from_iter_values(
            svcs.iter().map(|s| s.depends_on.join(",")),
        )),
    ];
    RecordBatch::try_new(CATALOG_SCHEMA.clone(), cols).expect("columns match the schema")
}

/// The `(table, column)` pairs that `plan`'s scans read once optimised (projections
/// pushed into the scans); `None` when it does not optimise.
fn columns_read(ctx: &SessionContext, plan: &LogicalPlan) -> Option<Vec<(String, String)>> {
    let optimised = ctx.state().optimize(plan).ok()?;
    let mut out = Vec::new();
    optimised
        .apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                let table = scan.table_name.table().to_string();
                let filtered = scan.filters.iter().flat_map(|f| f.column_refs());
                for name in scan
                    .projected_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .chain(filtered.map(|c| c.name.clone()))
                {
                    out.push((table.clone(), name));
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod window_tests;

#[cfg(test)]
mod tests;
