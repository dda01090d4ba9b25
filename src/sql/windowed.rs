//! Incremental event-time aggregation: the state of one windowed `GROUP BY`.
//!
//! Rows never stay: each one is folded into DataFusion's own grouped accumulators
//! (`GroupsAccumulator`, or an adapter over a plain `Accumulator`), one accumulator
//! group per open (window, key) *slot*, so memory grows with windows × keys, not with
//! events. When the watermark passes a window's end its slots are evaluated and
//! emitted as a batch in the aggregate's output schema; the rest of the query (HAVING,
//! projection, ORDER BY) runs on that batch in [`super::stream`].
//!
//! Late rows (their window already closed) are dropped and counted, or, with
//! `late = "update"`, folded into the closed window while it is kept (`keep_closed`),
//! which is emitted again as a correction. The whole state is a [`WindowState`]: slots
//! plus the accumulators' partial states as Arrow IPC, for checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::row::{RowConverter, SortField};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Aggregate, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use serde::{Deserialize, Serialize};

use super::file::LatePolicy;
use super::window::{window_of, WindowKind};

/// One aggregate of the `SELECT`: its expression, its FILTER, its live accumulator.
struct Agg {
    expr: Arc<AggregateFunctionExpr>,
    /// Arguments then ORDER BY expressions, as DataFusion feeds accumulators.
    inputs: Vec<Arc<dyn PhysicalExpr>>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    acc: Acc,
}

/// An accumulator that the pipeline can share between threads: it is only ever used
/// through `&mut`, so the mutex is never contended (accumulators are `Send`, not `Sync`).
struct Acc(std::sync::Mutex<Box<dyn GroupsAccumulator>>);

impl Acc {
    fn new(a: Box<dyn GroupsAccumulator>) -> Acc {
        Acc(std::sync::Mutex::new(a))
    }

    fn get(&mut self) -> &mut dyn GroupsAccumulator {
        self.0.get_mut().unwrap_or_else(|e| e.into_inner()).as_mut()
    }
}

impl Agg {
    fn fresh(&self) -> DfResult<Box<dyn GroupsAccumulator>> {
        new_accumulator(&self.expr)
    }
}

fn new_accumulator(expr: &Arc<AggregateFunctionExpr>) -> DfResult<Box<dyn GroupsAccumulator>> {
    if expr.groups_accumulator_supported() {
        expr.create_groups_accumulator()
    } else {
        let e = expr.clone();
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || e.create_accumulator())))
    }
}

/// One (window, key) and its accumulator group (its index in `slots`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Slot {
    start: i64,
    /// The latest row's time (sessions close `gap` after it).
    last: i64,
    /// The key columns in arrow's row format.
    key: Vec<u8>,
    emitted: bool,
    /// Updated by a late row since it was emitted.
    dirty: bool,
    /// A session merged into another slot by a row that bridged them.
    merged_into: Option<u32>,
}

/// Rows of closed windows, in the aggregate's output schema.
pub struct Closed {
    pub batch: RecordBatch,
    /// When the window closed: its end (for sessions, the latest end among them).
    pub end: i64,
    /// A window emitted before, again with late rows folded in.
    pub correction: bool,
}

/// The serializable state of a [`Windowed`] (for checkpoints).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowState {
    closed_through: i64,
    late_rows: u64,
    corrections: u64,
    slots: Vec<Slot>,
    /// Every accumulator's partial state, one row per slot, as an Arrow IPC stream.
    states: Vec<u8>,
}

pub struct Windowed {
    pub kind: WindowKind,
    ts: Arc<dyn PhysicalExpr>,
    /// Position of the window among the GROUP BY expressions.
    window_pos: usize,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    aggs: Vec<Agg>,
    converter: RowConverter,
    out_schema: SchemaRef,
    late: LatePolicy,
    keep_closed: i64,
    slots: Vec<Slot>,
    /// Tumbling and hopping: window start and key → slot.
    index: HashMap<Vec<u8>, u32>,
    /// Sessions: key → its open slots.
    sessions: HashMap<Vec<u8>, Vec<u32>>,
    /// Windows ending at or before this have been emitted.
    closed_through: i64,
    pub late_rows: u64,
    pub corrections: u64,
}

impl Windowed {
    /// The windowed aggregation of `agg`, or `Ok(None)` when its GROUP BY has no window.
    /// `keep_closed`: how long closed windows take late rows with `late = "update"`
    /// (default: one window; sessions none).
    pub fn new(
        agg: &Aggregate,
        state: &SessionState,
        late: LatePolicy,
        keep_closed: Option<i64>,
    ) -> Result<Option<Windowed>, String> {
        let mut window = None;
        let mut keys = Vec::new();
        for (i, g) in agg.group_expr.iter().enumerate() {
            match window_of(g) {
                Some(Ok(w)) if window.is_none() => window = Some((i, w)),
                Some(Ok(_)) => return Err("a GROUP BY has one window".into()),
                Some(Err(e)) => return Err(e),
                None => keys.push(g.clone()),
            }
        }
        let Some((window_pos, (kind, ts))) = window else {
            return Ok(None);
        };
        if matches!(
            agg.group_expr.first(),
            Some(datafusion::logical_expr::Expr::GroupingSet(_))
        ) {
            return Err("GROUPING SETS, CUBE and ROLLUP are not supported with windows".into());
        }
        let input_schema: &DFSchema = agg.input.schema();
        let physical_schema = input_schema.as_arrow();
        let props = state.execution_props();
        let df = |e: DataFusionError| e.to_string();
        let phys = |e: &datafusion::logical_expr::Expr| state.create_physical_expr(e.clone(), input_schema).map_err(df);
        let ts = phys(&ts)?;
        match ts.data_type(physical_schema).map_err(df)? {
            DataType::Timestamp(_, _) => {}
            other => return Err(format!("the window's time argument must be a timestamp, it is {other}")),
        }
        let keys: Vec<_> = keys.iter().map(phys).collect::<Result<_, _>>()?;
        let fields: Vec<SortField> = keys
            .iter()
            .map(|k| k.data_type(physical_schema).map(SortField::new))
            .collect::<DfResult<_>>()
            .map_err(df)?;
        let converter = RowConverter::new(fields).map_err(|e| e.to_string())?;
        let mut aggs = Vec::new();
        for e in &agg.aggr_expr {
            let planning = datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default();
            let lowered = datafusion::physical_expr::aggregate::LoweredAggregateBuilder::new(
                e,
                input_schema,
                physical_schema,
                props,
                &planning,
            )
            .build()
            .map_err(df)?;
            let (expr, filter) = (lowered.aggregate, lowered.filter);
            let mut inputs = expr.expressions();
            inputs.extend(lowered.order_bys.iter().map(|o| o.expr.clone()));
            let acc = Acc::new(new_accumulator(&expr).map_err(df)?);
            aggs.push(Agg {
                expr,
                inputs,
                filter,
                acc,
            });
        }
        Ok(Some(Windowed {
            kind,
            ts,
            window_pos,
            keys,
            aggs,
            converter,
            out_schema: Arc::new(agg.schema.as_arrow().clone()),
            late,
            keep_closed: keep_closed.unwrap_or(match kind {
                WindowKind::Tumble { size } | WindowKind::Hop { size, .. } => size,
                WindowKind::Session { .. } => 0,
            }),
            slots: Vec::new(),
            index: HashMap::new(),
            sessions: HashMap::new(),
            closed_through: i64::MIN,
            late_rows: 0,
            corrections: 0,
        }))
    }

    /// How long a closed window takes late rows (`late = "update"`).
    pub fn keep_closed(&self) -> i64 {
        self.keep_closed
    }

    /// Open and kept slots (windows × keys): what the state's size follows.
    pub fn slots(&self) -> usize {
        self.slots.iter().filter(|s| s.merged_into.is_none()).count()
    }

    /// Folds one batch of the aggregate's input into the open windows.
    pub fn update(&mut self, batch: &RecordBatch) -> DfResult<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let ts = self.ts.evaluate(batch)?.into_array(n)?;
        let ts = arrow::compute::cast(&ts, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
        let ts = ts.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        let key_cols: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|k| k.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<DfResult<_>>()?;
        let rows = self.converter.convert_columns(&key_cols)?;
        let mut values = Vec::with_capacity(self.aggs.len());
        let mut filters = Vec::with_capacity(self.aggs.len());
        for a in &self.aggs {
            let v: Vec<ArrayRef> = a
                .inputs
                .iter()
                .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
                .collect::<DfResult<_>>()?;
            values.push(v);
            filters.push(match &a.filter {
                Some(f) => Some(
                    f.evaluate(batch)?
                        .into_array(n)?
                        .as_boolean_opt()
                        .cloned()
                        .ok_or_else(|| DataFusionError::Execution("FILTER must be boolean".into()))?,
                ),
                None => None,
            });
        }
        let mut late = vec![false; n];
        let assignments: Vec<Vec<Option<u32>>> = match self.kind {
            WindowKind::Tumble { size } => vec![self.assign(ts, &rows, size, size, 0, &mut late)],
            WindowKind::Hop { size, slide } => (0..size / slide)
                .map(|j| self.assign(ts, &rows, size, slide, j, &mut late))
                .collect(),
            WindowKind::Session { gap } => vec![self.assign_sessions(ts, &rows, gap, &mut late)],
        };
        self.late_rows += late.iter().filter(|l| **l).count() as u64;
        let groups = self.slots.len();
        for slots in assignments {
            if slots.iter().all(Option::is_none) {
                continue;
            }
            let indices: Vec<usize> = slots.iter().map(|s| s.unwrap_or(0) as usize).collect();
            let keep = BooleanArray::from(slots.iter().map(|s| s.is_some()).collect::<Vec<_>>());
            for (a, (v, f)) in self.aggs.iter_mut().zip(values.iter().zip(&filters)) {
                let filter = match f {
                    Some(f) => arrow::compute::and(&keep, f)?,
                    None => keep.clone(),
                };
                a.acc.get().update_batch(v, &indices, Some(&filter), groups)?;
            }
        }
        Ok(())
    }

    /// Tumbling (slide = size) and hopping windows: the `j`-th window of every row.
    fn assign(
        &mut self,
        ts: &TimestampMillisecondArray,
        rows: &arrow::row::Rows,
        size: i64,
        slide: i64,
        j: i64,
        late: &mut [bool],
    ) -> Vec<Option<u32>> {
        let mut key = Vec::new();
        (0..ts.len())
            .map(|i| {
                if ts.is_null(i) {
                    return None;
                }
                let t = ts.value(i);
                let start = t - t.rem_euclid(slide) - j * slide;
                key.clear();
                key.extend_from_slice(&start.to_be_bytes());
                key.extend_from_slice(row_key(rows, i));
                let closed = start + size <= self.closed_through;
                if let Some(&s) = self.index.get(key.as_slice()) {
                    let slot = &mut self.slots[s as usize];
                    if slot.emitted {
                        late[i] = true;
                        slot.dirty = true;
                    }
                    slot.last = slot.last.max(t);
                    return Some(s);
                }
                // a closed window still kept takes the row as a correction of it, even
                // for a key it had no row of
                let kept = self.late == LatePolicy::Update && start + size + self.keep_closed > self.closed_through;
                if closed {
                    late[i] = true;
                    if !kept {
                        return None;
                    }
                }
                let s = self.slots.len() as u32;
                self.slots.push(Slot {
                    start,
                    last: t,
                    key: row_key(rows, i).to_vec(),
                    emitted: closed,
                    dirty: closed,
                    merged_into: None,
                });
                self.index.insert(key.clone(), s);
                Some(s)
            })
            .collect()
    }

    fn assign_sessions(
        &mut self,
        ts: &TimestampMillisecondArray,
        rows: &arrow::row::Rows,
        gap: i64,
        late: &mut [bool],
    ) -> Vec<Option<u32>> {
        (0..ts.len())
            .map(|i| {
                if ts.is_null(i) {
                    return None;
                }
                let t = ts.value(i);
                if t + gap <= self.closed_through {
                    late[i] = true;
                    return None;
                }
                let key = row_key(rows, i);
                let open = self.sessions.entry(key.to_vec()).or_default();
                let touching: Vec<u32> = open
                    .iter()
                    .copied()
                    .filter(|&s| {
                        let s = &self.slots[s as usize];
                        s.start - gap < t && t < s.last + gap
                    })
                    .collect();
                let Some(&first) = touching.first() else {
                    let s = self.slots.len() as u32;
                    self.slots.push(Slot {
                        start: t,
                        last: t,
                        key: key.to_vec(),
                        emitted: false,
                        dirty: false,
                        merged_into: None,
                    });
                    open.push(s);
                    return Some(s);
                };
                // A row that bridges sessions joins them into the first.
                for &other in &touching[1..] {
                    let (start, last) = (self.slots[other as usize].start, self.slots[other as usize].last);
                    self.slots[other as usize].merged_into = Some(first);
                    let f = &mut self.slots[first as usize];
                    f.start = f.start.min(start);
                    f.last = f.last.max(last);
                    open.retain(|&s| s != other);
                }
                let f = &mut self.slots[first as usize];
                f.start = f.start.min(t);
                f.last = f.last.max(t);
                Some(first)
            })
            .collect()
    }

    fn close_at(&self, s: &Slot) -> i64 {
        match self.kind {
            WindowKind::Tumble { size } | WindowKind::Hop { size, .. } => s.start + size,
            WindowKind::Session { gap } => s.last + gap,
        }
    }

    fn root(&self, mut s: u32) -> u32 {
        while let Some(t) = self.slots[s as usize].merged_into {
            s = t;
        }
        s
    }

    /// Emits every window the watermark has passed (and corrections of kept windows
    /// that late rows updated), and forgets windows no longer kept.
    pub fn close(&mut self, watermark: i64) -> DfResult<Vec<Closed>> {
        if watermark <= self.closed_through {
            return self.corrections_only();
        }
        self.closed_through = watermark;
        self.compact()
    }

    fn corrections_only(&mut self) -> DfResult<Vec<Closed>> {
        if self.slots.iter().any(|s| s.dirty && s.merged_into.is_none()) {
            self.compact()
        } else {
            Ok(Vec::new())
        }
    }

    /// Evaluates the slots to emit and rebuilds the accumulators with the slots kept.
    fn compact(&mut self) -> DfResult<Vec<Closed>> {
        let wm = self.closed_through;
        let keep_closed = match self.late {
            LatePolicy::Drop => 0,
            LatePolicy::Update => self.keep_closed,
        };
        // (emit group, keep) for each root slot
        let mut emit: BTreeMap<(bool, i64), Vec<u32>> = BTreeMap::new();
        let mut keep = Vec::new();
        let mut changed = false;
        for (i, s) in self.slots.iter().enumerate() {
            if s.merged_into.is_some() {
                changed = true;
                continue;
            }
            let end = self.close_at(s);
            // sessions close at their own times: one batch for all, its end set below
            let session = matches!(self.kind, WindowKind::Session { .. });
            let group_end = if session { 0 } else { end };
            if !s.emitted && end <= wm {
                emit.entry((false, group_end)).or_default().push(i as u32);
            } else if s.emitted && s.dirty {
                emit.entry((true, group_end)).or_default().push(i as u32);
            }
            if end > wm || end + keep_closed > wm {
                keep.push(i as u32);
            } else {
                changed = true;
            }
        }
        if emit.is_empty() && !changed {
            return Ok(Vec::new());
        }
        // Every live slot's state, one row per slot; merged sessions go to their root.
        let states: Vec<Vec<ArrayRef>> = self
            .aggs
            .iter_mut()
            .map(|a| a.acc.get().state(EmitTo::All))
            .collect::<DfResult<_>>()?;
        let total = self.slots.len();
        let roots: Vec<u32> = (0..total as u32).map(|s| self.root(s)).collect();
        // (state row, target index) for every slot whose root is a target
        let rows_of = |targets: &[u32]| {
            let pos: HashMap<u32, usize> = targets.iter().enumerate().map(|(k, &t)| (t, k)).collect();
            let mut take = Vec::new();
            let mut group = Vec::new();
            for (i, r) in roots.iter().enumerate() {
                if let Some(&k) = pos.get(r) {
                    take.push(i as u32);
                    group.push(k);
                }
            }
            (UInt32Array::from(take), group)
        };
        let mut out = Vec::new();
        for ((correction, end), targets) in &emit {
            let (take, group) = rows_of(targets);
            let mut columns = self.group_columns(targets)?;
            for (a, st) in self.aggs.iter().zip(&states) {
                let mut acc = a.fresh()?;
                let values: Vec<ArrayRef> = st
                    .iter()
                    .map(|c| arrow::compute::take(c, &take, None))
                    .collect::<Result<_, _>>()?;
                acc.merge_batch(&values, &group, targets.len())?;
                columns.push(acc.evaluate(EmitTo::All)?);
            }
            let columns = columns
                .into_iter()
                .zip(self.out_schema.fields())
                .map(|(c, f)| {
                    if c.data_type() == f.data_type() {
                        Ok(c)
                    } else {
                        arrow::compute::cast(&c, f.data_type())
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            let batch = RecordBatch::try_new(relaxed(&self.out_schema), columns)?;
            if *correction {
                self.corrections += 1;
            }
            let end = match self.kind {
                WindowKind::Session { .. } => targets
                    .iter()
                    .map(|&t| self.close_at(&self.slots[t as usize]))
                    .max()
                    .unwrap_or(*end),
                _ => *end,
            };
            out.push(Closed {
                batch,
                end,
                correction: *correction,
            });
        }
        let (take, group) = rows_of(&keep);
        for (a, st) in self.aggs.iter_mut().zip(&states) {
            let mut acc = a.fresh()?;
            if !keep.is_empty() {
                let values: Vec<ArrayRef> = st
                    .iter()
                    .map(|c| arrow::compute::take(c, &take, None))
                    .collect::<Result<_, _>>()?;
                acc.merge_batch(&values, &group, keep.len())?;
            }
            a.acc = Acc::new(acc);
        }
        debug_assert!(total == self.slots.len());
        let emitted: std::collections::HashSet<u32> = emit.values().flatten().copied().collect();
        let slots: Vec<Slot> = keep
            .iter()
            .map(|&i| {
                let mut s = self.slots[i as usize].clone();
                if emitted.contains(&i) {
                    s.emitted = true;
                    s.dirty = false;
                }
                s
            })
            .collect();
        self.set_slots(slots);
        Ok(out)
    }

    /// Rebuilds the lookup tables for a new slot list (indices are accumulator groups).
    fn set_slots(&mut self, slots: Vec<Slot>) {
        self.index.clear();
        self.sessions.clear();
        for (i, s) in slots.iter().enumerate() {
            match self.kind {
                WindowKind::Session { .. } => {
                    if !s.emitted {
                        self.sessions.entry(s.key.clone()).or_default().push(i as u32);
                    }
                }
                _ => {
                    let mut k = s.start.to_be_bytes().to_vec();
                    k.extend_from_slice(&s.key);
                    self.index.insert(k, i as u32);
                }
            }
        }
        self.slots = slots;
    }

    /// The GROUP BY columns of some slots: the window start and the keys, in order.
    fn group_columns(&self, targets: &[u32]) -> DfResult<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        let mut keys = self
            .converter
            .convert_rows(targets.iter().map(|&t| parser.parse(&self.slots[t as usize].key)))?;
        let tz = match self.out_schema.field(self.window_pos).data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let starts: TimestampMillisecondArray = targets
            .iter()
            .map(|&t| Some(self.slots[t as usize].start))
            .collect::<TimestampMillisecondArray>()
            .with_timezone_opt(tz);
        keys.insert(self.window_pos, Arc::new(starts));
        Ok(keys)
    }

    /// The state, for a checkpoint. The accumulators are rebuilt from their state, so
    /// the window goes on exactly as before.
    pub fn checkpoint(&mut self) -> DfResult<WindowState> {
        let states: Vec<Vec<ArrayRef>> = self
            .aggs
            .iter_mut()
            .map(|a| a.acc.get().state(EmitTo::All))
            .collect::<DfResult<_>>()?;
        let groups: Vec<usize> = (0..self.slots.len()).collect();
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for (a, st) in self.aggs.iter_mut().zip(&states) {
            let mut acc = a.fresh()?;
            if !groups.is_empty() {
                acc.merge_batch(st, &groups, groups.len())?;
            }
            a.acc = Acc::new(acc);
            for (k, c) in st.iter().enumerate() {
                fields.push(Field::new(
                    format!("a{}_{k}", fields.len()),
                    c.data_type().clone(),
                    true,
                ));
                columns.push(c.clone());
            }
        }
        let mut bytes = Vec::new();
        if !columns.is_empty() {
            let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema())?;
            w.write(&batch)?;
            w.finish()?;
        }
        Ok(WindowState {
            closed_through: self.closed_through,
            late_rows: self.late_rows,
            corrections: self.corrections,
            slots: self.slots.clone(),
            states: bytes,
        })
    }

    /// Continues from a checkpoint of the same query.
    pub fn restore(&mut self, state: WindowState) -> DfResult<()> {
        let mut batches =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(state.states.as_slice()), None)
                .map(|r| r.collect::<Result<Vec<_>, _>>())
                .unwrap_or_else(|_| Ok(Vec::new()))?;
        let groups: Vec<usize> = (0..state.slots.len()).collect();
        let mut col = 0;
        for a in &mut self.aggs {
            let n = a.expr.state_fields()?.len();
            let mut acc = a.fresh()?;
            if let Some(b) = batches.first_mut() {
                if b.num_columns() < col + n || b.num_rows() != groups.len() {
                    return Err(DataFusionError::Execution(
                        "window state does not match the query".into(),
                    ));
                }
                acc.merge_batch(&b.columns()[col..col + n], &groups, groups.len())?;
            }
            col += n;
            a.acc = Acc::new(acc);
        }
        self.closed_through = state.closed_through;
        self.late_rows = state.late_rows;
        self.corrections = state.corrections;
        self.set_slots(state.slots);
        Ok(())
    }
}

/// A row's key bytes; a GROUP BY with only the window has one, empty, key.
fn row_key(rows: &arrow::row::Rows, i: usize) -> &[u8] {
    if i < rows.num_rows() {
        rows.row(i).data()
    } else {
        &[]
    }
}

/// The aggregate's schema with every field nullable (a window's key or aggregate may be
/// null where the planner proved it could not be for a whole table).
fn relaxed(s: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        s.fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}
