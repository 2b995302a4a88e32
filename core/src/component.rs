//! The three component traits a pipeline is made of: source → transforms → sink.

use crate::ack::{AckTracker, Offsets};
use crate::batch::Batch;
use crate::Error;
use async_trait::async_trait;
use std::sync::Arc;

/// What the runtime hands a source: where to resume and how to issue acks.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The pipeline's name (used in checkpoint keys and metrics labels).
    pub pipeline: String,
    /// The checkpoint loaded at start: next offset per topic-partition, if any was stored.
    pub checkpoint: Option<Offsets>,
    /// Issues the ack of every emitted batch; batches of a partition in offset order.
    pub acks: AckTracker,
}

impl SourceContext {
    /// A context with no checkpoint, for tests and one-off runs.
    pub fn new(pipeline: impl Into<String>) -> Self {
        SourceContext {
            pipeline: pipeline.into(),
            checkpoint: None,
            acks: AckTracker::new(),
        }
    }

    /// Stored next offset for a topic-partition, if the checkpoint has one.
    pub fn resume_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.checkpoint
            .as_ref()
            .and_then(|c| c.get(topic))
            .and_then(|p| p.get(&partition))
            .copied()
    }

    /// Issues the ack for a batch covering `first..next` of a partition.
    pub fn ack(&self, topic: &Arc<str>, partition: i32, first: i64, next: i64) -> crate::Ack {
        self.acks.issue(topic, partition, first, next)
    }
}

/// Produces batches. Pull-based, so the runtime controls backpressure.
#[async_trait]
pub trait Source: Send {
    /// The next batch, or `None` when the source is finished (a snapshot reached its end).
    /// Cancel-safe: the runtime may drop the future on shutdown.
    async fn next_batch(&mut self, ctx: &SourceContext) -> Result<Option<Batch>, Error>;

    /// Topic settings and consumer-group offsets the source can offer. The runtime asks
    /// before the first batch and after every checkpoint, and passes what it gets down the
    /// pipeline ahead of the following batches.
    async fn metadata(&mut self) -> Result<Option<crate::metadata::SourceMetadata>, Error> {
        Ok(None)
    }

    /// Called once after the last batch was made durable, to release connections.
    async fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Whether the source runs until it is stopped (a continuous backup) rather than to an
    /// end: such a pipeline is a service, restarted from its last durable point after a
    /// storage outage instead of failing (see `ferry run`).
    fn continuous(&self) -> bool {
        false
    }

    /// The partitions this source reads, when its work can be split by partition (a Kafka
    /// source: its topics' partitions now). A worker group spreads these over its members;
    /// `None` (the default) runs the whole pipeline as one task.
    async fn partitions(&mut self) -> Result<Option<Vec<(String, i32)>>, Error> {
        Ok(None)
    }

    /// Storage where this source would keep the pipeline's checkpoint when neither the
    /// pipeline file nor the sink names one (e.g. a restore keeps it beside the backup).
    fn checkpoint_storage(&self) -> Option<crate::storage::Storage> {
        None
    }
}

/// Changes batches in flight. Synchronous and cheap; runs on the pipeline's transform task.
pub trait Transform: Send {
    /// Returns the changed batch, or `None` when every record was dropped. A transform that
    /// drops a batch must resolve its ack (the records are done with, not lost).
    fn apply(&mut self, batch: Batch) -> Result<Option<Batch>, Error>;

    /// Changes metadata the same way as records (e.g. renames topics). Passes it unchanged
    /// by default.
    fn apply_metadata(
        &mut self,
        metadata: crate::metadata::SourceMetadata,
    ) -> crate::metadata::SourceMetadata {
        metadata
    }
}

/// Consumes batches and makes them durable.
#[async_trait]
pub trait Sink: Send {
    /// Prepares the sink before the first batch and reports offsets it already holds
    /// durably (e.g. backup segments whose manifests exist but whose checkpoint was not
    /// written before a crash). The runtime resumes the source from the larger of these and
    /// the stored checkpoint, so nothing is written twice.
    async fn open(&mut self) -> Result<Option<crate::ack::Offsets>, Error> {
        Ok(None)
    }

    /// Whether the offsets [`Sink::open`] reported are exactly where every part of the sink
    /// must resume, even where the stored checkpoint is further: a sink writing several
    /// copies (`fanout`) reports what all of them hold, so a copy that was lost or added
    /// later is filled again from there instead of skipped past. Asked after `open`.
    /// `false` (the default): the runtime resumes after the further of the two.
    fn open_offsets_are_exact(&self) -> bool {
        false
    }

    /// Accepts a batch. The sink owns its ack and resolves it once the batch is durable
    /// (at the latest in `flush`).
    async fn write(&mut self, batch: Batch) -> Result<(), Error>;

    /// Receives the source's metadata (topic settings, group offsets), always before the
    /// batches that follow it. Ignored by default.
    async fn write_metadata(
        &mut self,
        _metadata: crate::metadata::SourceMetadata,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// Makes everything written so far durable and resolves those acks.
    async fn flush(&mut self) -> Result<(), Error>;

    /// Flushes and releases resources; the pipeline is finished.
    async fn close(&mut self) -> Result<(), Error> {
        self.flush().await
    }

    /// Storage where the pipeline's checkpoint belongs when the pipeline file names none
    /// (a backup keeps `checkpoints/<pipeline>.json` beside its segments).
    fn checkpoint_storage(&self) -> Option<crate::storage::Storage> {
        None
    }

    /// Looks at the sink's targets for `topics` (names as it would write them) without
    /// writing anything: what each holds and every reason the sink would refuse to write
    /// there. `source_topics` are the source's topic settings (partition counts, configs), as
    /// its metadata carried them. Called after [`Sink::open`], instead of writing: a restore
    /// plan (`ferry restore --dry-run`, the console's wizard) shows it. `None` (the default):
    /// the sink has nothing to check.
    async fn plan_targets(
        &mut self,
        _source_topics: Vec<crate::metadata::TopicSettings>,
        _topics: &[String],
    ) -> Result<Option<crate::metadata::TargetReport>, Error> {
        Ok(None)
    }
}
