//! A windowed file (a signal, or an alert rule with a window): its query split around
//! the windowed `GROUP BY`, and what happens when windows close.
//!
//! The part below the aggregate (scans, joins with the catalog, WHERE) runs on every
//! batch and feeds [`Windowed`]; the part above (HAVING, the SELECT list, ORDER BY)
//! runs on the rows of each closed window, read from a table that holds just them.
//! What the file emits is then visible to the files that select from it, for that step.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::Column;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, Projection};
use datafusion::prelude::SessionContext;

use super::file::SqlFile;
use super::swap::{Query, SwapTable};
use super::window::{window_of, WindowKind};
use super::windowed::{Closed, WindowState, Windowed};
use crate::decode::Stream;

pub struct WindowedFile {
    pub file: SqlFile,
    /// The aggregate's input, run on each batch.
    input: Query,
    /// The query with the aggregate replaced by a scan of `closed`.
    above: Query,
    closed: Arc<SwapTable>,
    closed_schema: SchemaRef,
    /// The rows emitted in this step, for files that select from this one.
    pub output: Arc<SwapTable>,
    pub window: Windowed,
    /// Streams the file reads, directly or through views and signals.
    pub streams: Vec<Stream>,
    /// How far behind its streams' watermark windows close: the declared lateness,
    /// plus the delay of the windowed files it reads.
    pub lateness: i64,
    /// Alert rules: which windows each key fired in, for `for_windows` / `of_last`.
    sustain: HashMap<String, (i64, u64)>,
}

/// What closing windows gave.
pub struct Emitted {
    pub batch: RecordBatch,
    pub end: i64,
    pub correction: bool,
}

impl WindowedFile {
    /// Splits an analysed plan; `Ok(None)` when it has no windowed GROUP BY.
    pub fn new(file: &SqlFile, plan: &LogicalPlan, ctx: &SessionContext) -> Result<Option<WindowedFile>, String> {
        let mut aggregates: Vec<Aggregate> = Vec::new();
        plan.apply(|n| {
            if let LogicalPlan::Aggregate(a) = n {
                aggregates.push(a.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|e| e.to_string())?;
        let windowed: Vec<&Aggregate> = aggregates
            .iter()
            .filter(|a| a.group_expr.iter().any(|g| window_of(g).is_some()))
            .collect();
        let agg = match windowed.as_slice() {
            [] => return Ok(None),
            [one] => (*one).clone(),
            _ => return Err("one windowed GROUP BY per file; put the other in its own signal".into()),
        };
        let mut inner = false;
        agg.input
            .apply(|n| {
                inner |= matches!(n, LogicalPlan::Aggregate(_));
                Ok(TreeNodeRecursion::Continue)
            })
            .map_err(|e| e.to_string())?;
        if inner {
            return Err(
                "the windowed GROUP BY must read rows, not another aggregate; make that a view or signal".into(),
            );
        }
        let state = ctx.state();
        let window =
            Windowed::new(&agg, &state, file.header.late, file.keep_closed_ms)?.expect("the aggregate has a window");
        if file.header.for_windows.is_some() && matches!(window.kind, WindowKind::Session { .. }) {
            return Err("for_windows counts fixed windows; sessions have no sequence".into());
        }
        let closed_schema = Arc::new(Schema::new(
            agg.schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| Field::new(format!("c{i}"), f.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let closed = Arc::new(SwapTable::new(closed_schema.clone(), vec![]));
        let scan = LogicalPlanBuilder::scan("__closed", provider_as_source(closed.clone()), None)
            .and_then(|b| b.build())
            .map_err(|e| e.to_string())?;
        let exprs: Vec<Expr> = agg
            .schema
            .iter()
            .enumerate()
            .map(|(i, (q, f))| {
                Expr::Column(Column::new(Some("__closed"), format!("c{i}"))).alias_qualified(q.cloned(), f.name())
            })
            .collect();
        let projection =
            LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(scan)).map_err(|e| e.to_string())?);
        let above = plan
            .clone()
            .transform_up(|n| match n {
                LogicalPlan::Aggregate(ref a) if *a == agg => Ok(Transformed::yes(projection.clone())),
                other => Ok(Transformed::no(other)),
            })
            .map_err(|e| e.to_string())?
            .data;
        let out_schema = Arc::new(plan.schema().as_arrow().clone());
        let output = Arc::new(SwapTable::new(out_schema, vec![]));
        Ok(Some(WindowedFile {
            file: file.clone(),
            input: Query::new((*agg.input).clone()),
            above: Query::new(above),
            closed,
            closed_schema,
            output,
            window,
            streams: Vec::new(),
            lateness: file.lateness_ms,
            sustain: HashMap::new(),
        }))
    }

    /// Plans the part below the aggregate and the part above it, for every step.
    pub async fn prepare(&mut self, ctx: &SessionContext) -> datafusion::error::Result<()> {
        self.input.prepare(ctx).await?;
        self.above.prepare(ctx).await
    }

    /// Folds a step's input rows into the windows.
    pub async fn update(&mut self, ctx: &SessionContext) -> datafusion::error::Result<()> {
        for b in self.input.run(ctx).await? {
            self.window.update(&b)?;
        }
        Ok(())
    }

    /// Closes what the watermark has passed and runs the rest of the query on it. The
    /// emitted rows also become this file's table for this step.
    pub async fn close(
        &mut self,
        ctx: &SessionContext,
        watermark: Option<i64>,
    ) -> datafusion::error::Result<Vec<Emitted>> {
        let closed = match watermark {
            Some(w) => self.window.close(w)?,
            None => Vec::new(),
        };
        self.finish(ctx, closed).await
    }

    /// Closes every window (the end of a replay).
    pub async fn flush(&mut self, ctx: &SessionContext) -> datafusion::error::Result<Vec<Emitted>> {
        let closed = self.window.close(i64::MAX)?;
        self.finish(ctx, closed).await
    }

    async fn finish(&mut self, ctx: &SessionContext, closed: Vec<Closed>) -> datafusion::error::Result<Vec<Emitted>> {
        let mut out = Vec::new();
        for c in closed {
            let b = RecordBatch::try_new(self.closed_schema.clone(), c.batch.columns().to_vec())?;
            self.closed.set(vec![b]);
            for batch in self.above.run(ctx).await? {
                if batch.num_rows() > 0 {
                    out.push(Emitted {
                        batch,
                        end: c.end,
                        correction: c.correction,
                    });
                }
            }
        }
        self.closed.set(vec![]);
        self.output.set(out.iter().map(|e| e.batch.clone()).collect());
        Ok(out)
    }

    /// For windowed alert rules with `for_windows`: whether the key with this
    /// fingerprint has now fired in enough of the last windows.
    pub fn sustained(&mut self, fingerprint: &str, end: i64) -> bool {
        let Some(n) = self.file.header.for_windows else {
            return true;
        };
        let m = self.file.header.of_last.unwrap_or(n);
        let step = match self.window.kind {
            WindowKind::Tumble { size } => size,
            WindowKind::Hop { slide, .. } => slide,
            WindowKind::Session { .. } => return true,
        };
        let idx = end.div_euclid(step);
        let (last, mask) = self.sustain.entry(fingerprint.to_string()).or_insert((idx, 0));
        if idx >= *last {
            let shift = idx - *last;
            *mask = if shift >= 64 { 0 } else { *mask << shift };
            *mask |= 1;
            *last = idx;
        } else if *last - idx < 64 {
            *mask |= 1 << (*last - idx);
        }
        let window = if m >= 64 { u64::MAX } else { (1u64 << m) - 1 };
        (*mask & window).count_ones() >= n
    }

    /// Forgets keys that have not fired within `of_last` windows of `end`.
    pub fn prune_sustain(&mut self, end: i64) {
        let (Some(n), WindowKind::Tumble { size: step } | WindowKind::Hop { slide: step, .. }) =
            (self.file.header.for_windows, self.window.kind)
        else {
            return;
        };
        let m = i64::from(self.file.header.of_last.unwrap_or(n));
        let idx = end.div_euclid(step);
        self.sustain.retain(|_, (last, _)| idx - *last < m);
    }

    /// The file's state: its windows, and for `for_windows` which windows each key
    /// fired in.
    pub fn checkpoint(&mut self) -> datafusion::error::Result<FileState> {
        let mut sustain: Vec<(String, i64, u64)> = self
            .sustain
            .iter()
            .map(|(k, (last, mask))| (k.clone(), *last, *mask))
            .collect();
        sustain.sort();
        Ok(FileState {
            window: self.window.checkpoint()?,
            sustain,
        })
    }

    pub fn restore(&mut self, state: FileState) -> datafusion::error::Result<()> {
        self.sustain = state.sustain.into_iter().map(|(k, l, m)| (k, (l, m))).collect();
        self.window.restore(state.window)
    }
}

/// The serializable state of a windowed file (for checkpoints).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FileState {
    pub window: WindowState,
    /// (alert fingerprint, last window index, windows fired as bits)
    pub sustain: Vec<(String, i64, u64)>,
}
