//! The values that cross the source boundary: a raw record with where it came from, and
//! a dead letter (a raw record that a stage could not process, with the reason).

/// Where a record came from, so that offsets can be acknowledged and dead letters say
/// exactly which input they were.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordMeta {
    /// Kafka topic, or the file path for file sources.
    pub topic: String,
    pub partition: i32,
    /// Kafka offset, or the line number (from 0) for files.
    pub offset: i64,
    /// The Kafka record timestamp, used when the payload carries none.
    pub kafka_ts: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record's size when the source kept only the start of its payload (a record
    /// over `limits.max_record_bytes`, bound for dead letters).
    pub cut_from: Option<usize>,
}

/// One input record, before decoding.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub stream: crate::decode::Stream,
    pub payload: Vec<u8>,
    pub meta: RecordMeta,
}

/// A batch's records in runs of one partition each. A fetch delivers a partition's
/// records together, so bookkeeping per partition looks each one up once per run rather
/// than once per record (8,192 lookups of a (topic, partition) key per batch were 9% of
/// the processing thread's time in `lookout bench`).
pub fn partition_runs(records: &[RawRecord]) -> impl Iterator<Item = &[RawRecord]> {
    records.chunk_by(|a, b| a.meta.partition == b.meta.partition && a.meta.topic == b.meta.topic)
}

/// A record that could not be processed. It keeps the original bytes and says why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub payload: Vec<u8>,
    pub meta: RecordMeta,
    /// The stage that refused it: `decode`, `sql`, ...
    pub stage: &'static str,
    pub error: String,
    /// Size of the original payload when `payload` had to be cut to fit the output.
    pub original_len: usize,
}

impl DeadLetter {
    /// Cuts the payload to `max` bytes so that the dead letter itself can be published.
    pub fn new(record: &RawRecord, stage: &'static str, error: String, max: usize) -> DeadLetter {
        let original_len = record.meta.cut_from.unwrap_or(record.payload.len());
        let keep = record.payload.len().min(max);
        DeadLetter {
            payload: record.payload[..keep].to_vec(),
            meta: record.meta.clone(),
            stage,
            error,
            original_len,
        }
    }

    /// The headers a dead letter carries on Kafka: the original headers, then ours.
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut h = self.meta.headers.clone();
        h.push(("error".into(), self.error.clone().into_bytes()));
        h.push(("stage".into(), self.stage.as_bytes().to_vec()));
        h.push(("topic".into(), self.meta.topic.clone().into_bytes()));
        h.push(("partition".into(), self.meta.partition.to_string().into_bytes()));
        h.push(("offset".into(), self.meta.offset.to_string().into_bytes()));
        if self.original_len > self.payload.len() {
            h.push(("truncated_from".into(), self.original_len.to_string().into_bytes()));
        }
        h
    }
}

/// The JSON-lines form of a dead letter (`lookout.dead_letter.v1`), used by file sinks,
/// from the message Kafka would carry: the original bytes and our headers (the last of
/// each name: ours follow the record's own). The payload is text when it is UTF-8, else
/// hex, so that nothing is lost.
pub fn dead_letter_json(payload: &[u8], headers: &[(String, Vec<u8>)]) -> serde_json::Value {
    let header = |k: &str| {
        headers
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let number = |k: &str| header(k).parse::<i64>().ok();
    let body = match std::str::from_utf8(payload) {
        Ok(s) => serde_json::json!({ "text": s }),
        Err(_) => serde_json::json!({ "hex": hex(payload) }),
    };
    serde_json::json!({
        "schema": "lookout.dead_letter.v1",
        "error": header("error"),
        "stage": header("stage"),
        "topic": header("topic"),
        "partition": number("partition").unwrap_or(0),
        "offset": number("offset").unwrap_or(0),
        "original_len": number("truncated_from").unwrap_or(payload.len() as i64),
        "payload": body,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
