//! Partitioned state (`lookout run --partitioned-state`): one [`Processor`] per input
//! partition number, a *task* that reads partition p of every input topic, so that a
//! partition's state moves with it between the instances of a consumer group.
//!
//! The inputs must be co-partitioned: every input topic has the same partition count,
//! producers key records by a correlation key, and the consumer uses the range assignor,
//! which gives partition p of every topic to one member ([`check_topics`] refuses
//! anything else at start). What correlates must share a partition: incidents, windows
//! and detectors are per task.
//!
//! Every interval each task's checkpoint (its state with the offsets of its partitions)
//! goes to the state topic under `<group>/<pipeline>/<p>`, written by the ordinary
//! producer and acknowledged before the offsets it covers are stored for commit, as with
//! checkpoint files. When a rebalance revokes partitions their tasks are dropped (with
//! their records not yet processed, see [`KafkaSource::forget_revoked`]); when it
//! assigns partitions, their tasks are built and restored from the latest checkpoint
//! there, and the source skips what that state holds. The new owner goes on from the
//! state the old one checkpointed; what it reads again gives the same incident states
//! (repeats are dropped downstream by (`incident_id`, `seq`)).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

use super::checkpoint::{Checkpoint, Offsets};
use super::{state_topic, OnPublish, PipelineError, Processor, Stats};
use crate::config::PipelineConfig;
use crate::observe::{Health, Snapshot};
use crate::sink::kafka::KafkaSink;
use crate::sink::Message;
use crate::source::kafka::KafkaSource;
use crate::source::RawRecord;

/// How long reading the state topic may take before the instance gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where tasks checkpoint and what they are built from.
pub struct TaskConfig {
    pub pipeline: PipelineConfig,
    /// The pipeline's models directory (`models/<pipeline>`).
    pub models: PathBuf,
    /// For reading the state topic.
    pub client: ClientConfig,
    pub state_topic: String,
    pub group: String,
    /// Whose offsets the checkpoints hold (cluster id and group).
    pub scope: String,
    pub every: Duration,
    pub health: Option<Arc<Health>>,
}

/// The tasks of the partitions this instance owns now.
pub struct Tasks {
    cfg: TaskConfig,
    /// `<group>/<pipeline>`: the tasks' keys in the state topic begin with it.
    prefix: String,
    live: BTreeMap<i32, Processor>,
    /// Counters of the tasks handed away.
    retired: Stats,
    last_checkpoint: Instant,
    /// Tasks built so far, and how many of them restored a checkpoint.
    pub started: u64,
    pub restored: u64,
}

impl Tasks {
    pub fn new(cfg: TaskConfig) -> Tasks {
        Tasks {
            prefix: format!("{}/{}", cfg.group, cfg.pipeline.spec.name),
            cfg,
            live: BTreeMap::new(),
            retired: Stats::default(),
            last_checkpoint: Instant::now(),
            started: 0,
            restored: 0,
        }
    }

    /// The sum of the live tasks' snapshots, with the counters of those handed away
    /// (counters never go down): what `/metrics` shows of the instance.
    pub fn snapshot(&self) -> Snapshot {
        let mut sum = Snapshot {
            stats: self.retired,
            ..Snapshot::default()
        };
        for t in self.live.values() {
            sum.add(&t.snapshot());
        }
        sum
    }

    /// Follows the source's assignment: drops the tasks of revoked partitions, and
    /// builds, for each assigned partition without one, a task restored from its latest
    /// checkpoint in the state topic.
    pub async fn follow(&mut self, source: &mut KafkaSource) -> Result<(), PipelineError> {
        for (_, p) in source.take_revoked() {
            if let Some(t) = self.live.remove(&p) {
                self.retired.add(&t.stats);
                if let Some(h) = &self.cfg.health {
                    h.retire(p);
                }
                tracing::info!(partition = p, "partition revoked: its task is handed over");
            }
        }
        let assigned = source.assigned();
        let mut new: Vec<i32> = assigned
            .iter()
            .map(|(_, _, p)| *p)
            .filter(|p| !self.live.contains_key(p))
            .collect();
        new.sort_unstable();
        new.dedup();
        if !new.is_empty() {
            let (client, topic, prefix, wanted) = (
                self.cfg.client.clone(),
                self.cfg.state_topic.clone(),
                self.prefix.clone(),
                new.clone(),
            );
            let mut found = tokio::task::spawn_blocking(move || {
                state_topic::read_tasks(&client, &topic, &prefix, &wanted, READ_TIMEOUT)
            })
            .await
            .map_err(|e| PipelineError::State(e.to_string()))?
            .map_err(PipelineError::State)?;
            for p in new {
                let origin = format!("state topic {} ({}/{p})", self.cfg.state_topic, self.prefix);
                let checkpoint = found
                    .remove(&p)
                    .map(|b| Checkpoint::from_bytes(&b, &origin))
                    .transpose()
                    .map_err(PipelineError::State)?;
                let had = checkpoint.is_some();
                let mut task = self.build(p).await?;
                let offsets = task
                    .checkpoint_to_topic(checkpoint, &origin, self.cfg.every, &self.cfg.scope)
                    .map_err(PipelineError::State)?;
                // a checkpoint of other pipeline files or another group is not used
                let restored = had && !offsets.is_empty();
                self.restored += u64::from(restored);
                self.started += 1;
                tracing::info!(partition = p, restored, "partition assigned: its task starts");
                source.restart_partition(p, &offsets);
                self.live.insert(p, task);
            }
        }
        for (p, task) in &mut self.live {
            let mine: Vec<_> = assigned.iter().filter(|(_, _, q)| q == p).cloned().collect();
            task.expect_partitions(&mine);
        }
        Ok(())
    }

    /// A task's processor, built and set up as `lookout run` sets up its one.
    async fn build(&self, partition: i32) -> Result<Processor, PipelineError> {
        let mut task = Processor::build(&self.cfg.pipeline)
            .await
            .map_err(|e| PipelineError::State(e.to_string()))?;
        task.use_models(&self.cfg.models).map_err(PipelineError::State)?;
        task.set_task(partition);
        task.read_partitions();
        if let Some(h) = &self.cfg.health {
            task.report_to(h.clone());
        }
        Ok(task)
    }

    /// Processes a batch, each record by the task of its partition (every task runs,
    /// with nothing when it has nothing, so that event time and idle windows move).
    /// Returns the messages and the records each task processed.
    pub async fn process(
        &mut self,
        batch: Vec<RawRecord>,
    ) -> Result<(Vec<Message>, Vec<Vec<RawRecord>>), PipelineError> {
        let mut parts: BTreeMap<i32, Vec<RawRecord>> = self.live.keys().map(|p| (*p, Vec::new())).collect();
        for r in batch {
            match parts.get_mut(&r.meta.partition) {
                Some(v) => v.push(r),
                // not assigned here (any more): its owner reads it
                None => {
                    tracing::debug!(topic = %r.meta.topic, partition = r.meta.partition, "record of a partition without a task left")
                }
            }
        }
        let mut out = Vec::new();
        for (p, records) in &parts {
            if let Some(task) = self.live.get_mut(p) {
                out.extend(task.process(records).await?);
            }
        }
        Ok((out, parts.into_values().collect()))
    }

    fn checkpoint_due(&self) -> bool {
        self.last_checkpoint.elapsed() >= self.cfg.every
    }

    /// Writes every task's checkpoint to the state topic and then stores the delivered
    /// offsets for commit. A checkpoint that cannot be written is retried at the next
    /// interval, and no offset is stored meanwhile: the input is read again, not lost.
    async fn checkpoint(&mut self, source: &KafkaSource, sink: &mut KafkaSink) -> Result<(), PipelineError> {
        self.last_checkpoint = Instant::now();
        let delivered = source.delivered_offsets();
        for (p, task) in &mut self.live {
            let offsets: Offsets = delivered
                .iter()
                .filter(|((_, q), _)| q == p)
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let bytes = task.encode_checkpoint(&offsets)?;
            let key = format!("{}/{p}", self.prefix);
            if let Err(e) = sink.write_state(&self.cfg.state_topic, &key, &bytes).await {
                tracing::warn!(error = %e, partition = p, "checkpoint not written; offsets not committed until one is");
                task.stats.checkpoint_failures += 1;
                return Ok(());
            }
            task.checkpoint_done(bytes.len());
        }
        source.store_delivered();
        Ok(())
    }
}

/// [`super::run_kafka`] with partitioned state: runs until `cancel` fires, then
/// checkpoints every task, commits and returns the counters.
pub async fn run(
    tasks: &mut Tasks,
    source: &mut KafkaSource,
    sink: &mut KafkaSink,
    cancel: &CancellationToken,
    on_publish: OnPublish<'_>,
) -> Result<Stats, PipelineError> {
    source.forget_revoked();
    let result = async {
        while let Some(mut batch) = source.next_batch(cancel).await? {
            let started = Instant::now();
            tasks.follow(source).await?;
            // read before a task restored what holds them
            source.drop_held(&mut batch);
            let processed = !batch.is_empty();
            let (messages, parts) = tasks.process(batch).await?;
            sink.publish(&messages).await?;
            for part in &parts {
                source.delivered(part);
            }
            if tasks.checkpoint_due() {
                tasks.checkpoint(source, sink).await?;
            }
            if let Some(h) = &tasks.cfg.health {
                if processed {
                    h.observe_batch(started.elapsed().as_secs_f64());
                }
                h.set_lag(source.lag());
                h.publish(tasks.snapshot());
            }
            for m in &messages {
                on_publish(m);
            }
        }
        Ok::<(), PipelineError>(())
    }
    .await;
    // after an error a task may hold a batch that was not delivered: no checkpoint then
    if result.is_ok() {
        tasks.checkpoint(source, sink).await?;
    }
    source.commit();
    sink.flush().await?;
    let mut stats = tasks.snapshot().stats;
    stats.skipped_records = source.skipped();
    result.map(|_| stats)
}

/// Checks at start that the input topics are co-partitioned (one partition count) and
/// that the state topic exists; returns the partition count.
pub fn check_topics(
    client: &ClientConfig,
    inputs: &[&str],
    state_topic: &str,
    timeout: Duration,
) -> Result<usize, String> {
    let consumer: BaseConsumer = client.create().map_err(|e| e.to_string())?;
    let metadata = consumer.fetch_metadata(None, timeout).map_err(|e| e.to_string())?;
    let count = |name: &str| {
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().len())
            .filter(|n| *n > 0)
    };
    if count(state_topic).is_none() {
        return Err(format!(
            "state topic {state_topic} does not exist; create it (cleanup.policy=compact) or name another with --state-topic"
        ));
    }
    let counts: Vec<(&str, Option<usize>)> = inputs.iter().map(|t| (*t, count(t))).collect();
    let first = counts[0].1;
    if counts.iter().any(|(_, n)| n.is_none() || *n != first) {
        let said: Vec<String> = counts
            .iter()
            .map(|(t, n)| match n {
                Some(n) => format!("{t}: {n}"),
                None => format!("{t}: missing"),
            })
            .collect();
        return Err(format!(
            "--partitioned-state needs every input topic to exist with the same number of partitions ({})",
            said.join(", ")
        ));
    }
    Ok(first.unwrap_or(0))
}
