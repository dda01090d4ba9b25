//! The template columns of the logs batch, and SQL's `log_template(message)`.
//!
//! [`enrich`] mines every message of a decoded logs batch and fills `template_id` (16 hex
//! digits), `template` and `params`. [`LogTemplateUdf`] gives SQL the template a message
//! would get now, without learning from it: `log_template(message)` works on any string
//! column, not only the logs stream's.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, ListBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use datafusion::common::{exec_err, Result as DfResult};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use super::miner::{Miner, Prehashed, TemplateChange};

/// The miner shared by the enrich stage and the SQL function.
pub type SharedMiner = Arc<Mutex<Miner>>;

/// Fills the template columns of a logs batch; returns it with the changes to the set of
/// templates that mining it made. Without `with_params` (no SQL reads them), each message's
/// list of parameters is left empty instead of cut out of it.
pub fn enrich(
    miner: &mut Miner,
    logs: &RecordBatch,
    with_params: bool,
) -> Result<(RecordBatch, Vec<TemplateChange>), ArrowError> {
    let schema = logs.schema();
    let message = logs
        .column_by_name("message")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| ArrowError::SchemaError("logs batch without a string column `message`".into()))?;
    let n = logs.num_rows();
    let mut ids = StringBuilder::with_capacity(n, n * 16);
    let mut texts = StringBuilder::with_capacity(n, n * 48);
    let mut params = ListBuilder::new(StringBuilder::new());
    // Rendered once per template per batch.
    let mut rendered: HashMap<u64, (String, String), BuildHasherDefault<Prehashed>> = HashMap::default();
    for i in 0..n {
        if message.is_null(i) {
            ids.append_null();
            texts.append_null();
            params.append_null();
            continue;
        }
        let m = message.value(i);
        let mined = miner.mine(m);
        let t = miner.template(mined);
        let (id, text) = rendered.entry(t.id).or_insert_with(|| (t.id_hex(), t.text()));
        ids.append_value(id);
        texts.append_value(text);
        if with_params {
            for p in miner.params(m, mined) {
                params.values().append_value(p);
            }
        }
        params.append(true);
    }
    let mut columns: Vec<ArrayRef> = logs.columns().to_vec();
    for (name, array) in [
        ("template_id", Arc::new(ids.finish()) as ArrayRef),
        ("template", Arc::new(texts.finish())),
        ("params", Arc::new(params.finish())),
    ] {
        let (idx, _) = schema
            .column_with_name(name)
            .ok_or_else(|| ArrowError::SchemaError(format!("logs batch without a column `{name}`")))?;
        columns[idx] = array;
    }
    Ok((RecordBatch::try_new(schema, columns)?, miner.take_changes()))
}

/// `log_template(message)`: the template a message would get, or null when no template
/// covers it yet.
pub struct LogTemplateUdf {
    miner: SharedMiner,
    signature: Signature,
}

impl LogTemplateUdf {
    pub fn new(miner: SharedMiner) -> LogTemplateUdf {
        LogTemplateUdf {
            miner,
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Volatile),
        }
    }
}

impl std::fmt::Debug for LogTemplateUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("log_template")
    }
}

impl PartialEq for LogTemplateUdf {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.miner, &other.miner)
    }
}

impl Eq for LogTemplateUdf {}

impl std::hash::Hash for LogTemplateUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.miner).hash(state);
    }
}

impl ScalarUDFImpl for LogTemplateUdf {
    fn name(&self) -> &str {
        "log_template"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("log_template takes one argument, the message");
        };
        let array = arg.to_array(args.number_rows)?;
        let Some(messages) = array.as_string_opt::<i32>() else {
            return exec_err!("log_template takes a string, not {}", array.data_type());
        };
        let miner = self.miner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = StringBuilder::with_capacity(messages.len(), messages.len() * 48);
        for m in messages.iter() {
            out.append_option(m.and_then(|m| miner.lookup(m)).map(|t| t.text()));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::schema::{logs_batch, Level, LogRow};
    use crate::logs::MinerConfig;
    use arrow::array::ListArray;

    #[test]
    fn params_are_cut_out_only_when_asked_for() {
        let rows: Vec<LogRow> = ["user alice logged in from 10.0.0.1", "user bob logged in from 10.0.0.2"]
            .iter()
            .enumerate()
            .map(|(i, m)| LogRow {
                ts: i as i64,
                service: "api".into(),
                host: None,
                level: Level::Info,
                message: (*m).into(),
                trace_id: None,
                attrs: Vec::new(),
            })
            .collect();
        let logs = logs_batch(&rows).unwrap();
        let mined = |params| {
            let (b, _) = enrich(&mut Miner::new(MinerConfig::default()), &logs, params).unwrap();
            let text = |c: &str| b.column_by_name(c).unwrap().as_string::<i32>().value(1).to_string();
            let list = b
                .column_by_name("params")
                .unwrap()
                .as_any()
                .downcast_ref::<ListArray>()
                .unwrap()
                .clone();
            let second: Vec<String> = list
                .value(1)
                .as_string::<i32>()
                .iter()
                .map(|p| p.unwrap().to_string())
                .collect();
            (text("template_id"), text("template"), second, list.is_null(1))
        };
        let (with, without) = (mined(true), mined(false));
        assert!(with.2.iter().any(|p| p == "10.0.0.2"), "{:?}", with.2);
        assert!(without.2.is_empty() && !without.3, "an empty list, not null");
        assert_eq!((&with.0, &with.1), (&without.0, &without.1), "the same template");
    }
}
