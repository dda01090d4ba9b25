//! Tables whose rows are replaced at each step, and queries planned once over them.
//!
//! A [`SwapTable`] is read when a query runs, not when it is planned, so a file's query
//! is optimised and given a physical plan once, at start ([`Query::prepare`]), and each
//! step only executes it. Planning it again for every batch cost more than running it
//! (5% of Lookout's CPU in `lookout bench`). Before each run the plan's state is reset
//! ([`reset_plan_states`]: a join's collected build side, a repartition's channels), as
//! DataFusion does for the iterations of a recursive query.
//!
//! Two kinds of query are still planned at every run: one that calls a stable function
//! such as `now()`, whose value DataFusion fixes when it plans, and one that reads a
//! table of another kind.

use std::sync::{Arc, RwLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::{source_as_provider, TableType};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{reset_plan_states, Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use datafusion::prelude::SessionContext;

/// A table of one partition whose batches are swapped between steps.
#[derive(Debug)]
pub struct SwapTable {
    schema: SchemaRef,
    batches: Arc<RwLock<Vec<RecordBatch>>>,
}

impl SwapTable {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> SwapTable {
        SwapTable {
            schema,
            batches: Arc::new(RwLock::new(batches)),
        }
    }

    /// What the next runs of every query over this table read.
    pub fn set(&self, batches: Vec<RecordBatch>) {
        *self.batches.write().unwrap_or_else(|e| e.into_inner()) = batches;
    }
}

#[async_trait::async_trait]
impl TableProvider for SwapTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(SwapExec {
            schema,
            projection: projection.cloned(),
            batches: self.batches.clone(),
            properties: Arc::new(properties),
        }))
    }
}

/// The scan of a [`SwapTable`]: the batches it holds when executed.
#[derive(Debug)]
struct SwapExec {
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    batches: Arc<RwLock<Vec<RecordBatch>>>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for SwapExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "SwapExec: projection={:?}", self.projection)
    }
}

impl ExecutionPlan for SwapExec {
    fn name(&self) -> &'static str {
        "SwapExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(datafusion::error::DataFusionError::Internal(format!(
                "SwapExec has one partition, not {partition}"
            )));
        }
        let batches = self.batches.read().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(Box::pin(MemoryStream::try_new(
            batches,
            self.schema.clone(),
            self.projection.clone(),
        )?))
    }
}

/// A file's query: its logical plan, and its physical plan once prepared.
pub struct Query {
    logical: LogicalPlan,
    physical: Option<Arc<dyn ExecutionPlan>>,
}

impl Query {
    pub fn new(logical: LogicalPlan) -> Query {
        Query {
            logical,
            physical: None,
        }
    }

    /// Plans the query for every later run, where that gives the same rows as planning
    /// it at each run (see the module notes). Errors are DataFusion's.
    pub async fn prepare(&mut self, ctx: &SessionContext) -> Result<()> {
        if plan_once(&self.logical)? {
            self.physical = Some(ctx.state().create_physical_plan(&self.logical).await?);
        }
        Ok(())
    }

    /// Runs the query on what its tables hold now.
    pub async fn run(&self, ctx: &SessionContext) -> Result<Vec<RecordBatch>> {
        let plan = match &self.physical {
            Some(p) => reset_plan_states(p.clone())?,
            None => ctx.state().create_physical_plan(&self.logical).await?,
        };
        datafusion::physical_plan::collect(plan, ctx.task_ctx()).await
    }
}

/// Whether a plan may be planned once: every table it scans is a [`SwapTable`], or a
/// view of such tables, and no expression calls a stable function.
fn plan_once(plan: &LogicalPlan) -> Result<bool> {
    let mut once = true;
    plan.apply_with_subqueries(|n| {
        if let LogicalPlan::TableScan(scan) = n {
            let provider = source_as_provider(&scan.source)?;
            once &= match provider.get_logical_plan() {
                Some(view) => plan_once(&view)?,
                None => provider.is::<SwapTable>(),
            };
        }
        n.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    once &= f.func.signature().volatility != Volatility::Stable;
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if once {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    })?;
    Ok(once)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::catalog::view::ViewTable;

    async fn once(sql: &str) -> bool {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        ctx.register_table("swap", Arc::new(SwapTable::new(schema.clone(), vec![])))
            .unwrap();
        let mem = datafusion::catalog::MemTable::try_new(schema, vec![vec![]]).unwrap();
        ctx.register_table("mem", Arc::new(mem)).unwrap();
        let view = ctx.state().create_logical_plan("SELECT x FROM swap").await.unwrap();
        ctx.register_table("view", Arc::new(ViewTable::new(view, None)))
            .unwrap();
        plan_once(&ctx.state().create_logical_plan(sql).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn what_is_planned_once() {
        assert!(once("SELECT x + 1 FROM swap WHERE x > 0").await);
        assert!(once("SELECT x FROM view WHERE x IN (SELECT x FROM swap)").await);
        // volatile functions are evaluated per row at each run; stable ones when planning
        assert!(once("SELECT x, random() FROM swap").await);
        assert!(!once("SELECT x FROM swap WHERE to_timestamp(x) > now()").await);
        assert!(!once("SELECT x FROM swap WHERE x IN (SELECT x FROM mem)").await);
        assert!(!once("SELECT x FROM view UNION ALL SELECT x FROM mem").await);
    }
}
