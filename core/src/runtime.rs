//! The runtime: runs a [`Pipeline`] as one task per stage joined by bounded channels.
//!
//! ```text
//! source task ──(batch, budget permit)──▶ transform task ─▶ … ─▶ sink task ── flush ─▶ checkpoint
//! ```
//!
//! - **Backpressure.** Each channel holds `channel_capacity` batches, and a global budget of
//!   `max_in_flight_bytes` is taken by every batch (its [`crate::Batch::size_bytes`]) before
//!   it leaves the source task and given back once the sink's `write` returned. A slow sink
//!   therefore stops the source from pulling more.
//! - **Checkpoints.** Every `checkpoint_interval` the sink task calls `sink.flush()` and then
//!   writes `checkpoints/<pipeline>.json` from the ack tracker's contiguous watermarks laid
//!   over the checkpoint loaded at start: only what is durable is ever committed. A final
//!   checkpoint follows `sink.close()`.
//! - **Shutdown.** When the `shutdown` future completes (SIGINT/SIGTERM with
//!   [`run_until_signal`]), the source's pending `next_batch` is dropped and nothing more is
//!   pulled; batches already in the channels are written, the sink is closed, the final
//!   checkpoint written and the run returns `Ok`. A source returning `None` ends the same way.
//! - **Errors.** A stage error stops the pipeline and is returned. Batches still in the
//!   channels after a source or transform error are written and checkpointed (they are
//!   durable like any other); after a sink error nothing more is written and the last
//!   checkpoint holds only what earlier flushes made durable.

use crate::ack::{AckTracker, Offsets};
use crate::batch::Batch;
use crate::checkpoint::{merge_offsets, CheckpointStore};
use crate::component::{Sink, Source, SourceContext, Transform};
use crate::config::{CheckpointTarget, Pipeline};
use crate::error::{Error, Result};
use crate::metadata::SourceMetadata;
use crate::metrics::{self, StageMetrics};
use crate::storage::Storage;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// What a finished run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// The pipeline's name.
    pub pipeline: String,
    /// Records the sink accepted.
    pub records: u64,
    /// Batches the sink accepted.
    pub batches: u64,
    /// Bytes (record size estimates) the sink accepted.
    pub bytes: u64,
    /// Wall time from start to the final checkpoint.
    pub duration: Duration,
    /// The last checkpoint written, if the pipeline keeps one.
    pub checkpoint: Option<Offsets>,
    /// The run was stopped by the shutdown future rather than by the source finishing.
    pub interrupted: bool,
    /// The most bytes that were in flight at once (bounded by `max_in_flight_bytes`, except
    /// that a single batch bigger than the budget still passes alone).
    pub peak_in_flight_bytes: u64,
}

/// A batch on its way to the sink, with its share of the in-flight budget.
/// What travels between stages: batches with their budget, and metadata ahead of the
/// batches it describes.
enum Item {
    Batch { batch: Batch, budget: InFlight },
    Metadata(SourceMetadata),
}

/// Budget taken by one batch; given back when dropped.
struct InFlight {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
    shared: Arc<FlowState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self
            .shared
            .in_flight
            .fetch_sub(self.bytes, Ordering::SeqCst)
            - self.bytes;
        self.shared.gauge.set(now as f64);
    }
}

struct FlowState {
    semaphore: Arc<Semaphore>,
    /// Budget in bytes (at most `u32::MAX`: a semaphore takes at most that many permits at
    /// once, and one batch must always fit).
    limit: u64,
    in_flight: AtomicU64,
    peak: AtomicU64,
    gauge: ::metrics::Gauge,
}

impl FlowState {
    async fn acquire(self: &Arc<Self>, bytes: u64) -> InFlight {
        // A batch bigger than the whole budget takes all of it and so passes alone.
        let take = bytes.min(self.limit) as u32;
        let permit = self
            .semaphore
            .clone()
            .acquire_many_owned(take)
            .await
            .expect("the budget semaphore is never closed");
        let now = self.in_flight.fetch_add(take as u64, Ordering::SeqCst) + take as u64;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.gauge.set(now as f64);
        InFlight {
            _permit: permit,
            bytes: take as u64,
            shared: self.clone(),
        }
    }
}

/// Completes on SIGINT or SIGTERM (Ctrl-C elsewhere than Unix).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received: draining"),
                    _ = int.recv() => tracing::info!("SIGINT received: draining"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received: draining");
    }
}

/// Runs `pipeline` until its source finishes or SIGINT/SIGTERM arrives, then drains.
pub async fn run_until_signal(pipeline: Pipeline) -> Result<RunSummary> {
    run(pipeline, shutdown_signal()).await
}

/// Waits until the stop flag is set (forever if its sender is gone without setting it).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn join_error(stage: &str, e: tokio::task::JoinError) -> Error {
    Error::internal(format!("{stage} task failed: {e}"))
}

/// Runs `pipeline` until its source finishes, `shutdown` completes, or a stage fails.
///
/// Must be called inside a tokio runtime (stages are spawned as tasks). The returned future
/// is `Send` when `shutdown` is, so it can itself be spawned. Returns the run's summary on a
/// clean finish or a drained shutdown, and the first stage error otherwise, with values
/// interpolated from the environment redacted.
pub async fn run(mut pipeline: Pipeline, shutdown: impl Future<Output = ()>) -> Result<RunSummary> {
    let secrets = std::mem::take(&mut pipeline.secrets);
    let name = pipeline.name.clone();
    // Errors may quote configuration (a URI, a path); values from the environment never show.
    run_inner(pipeline, shutdown).await.map_err(|e| {
        let e = secrets.redact_error(e);
        if is_broken_pipe(&e) {
            // The reader of stdout went away (`ferry run x.yaml | head`): not a failure to
            // shout about; the CLI exits quietly.
            tracing::debug!(pipeline = %name, error = %e, "output closed by its reader");
        } else {
            tracing::error!(pipeline = %name, error = %e, "pipeline failed");
        }
        e
    })
}

/// First wait before a continuous pipeline restarts after a storage outage; it doubles up
/// to [`RESTART_BACKOFF_MAX`].
pub const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between restarts (so an outage is reported about once a minute).
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Runs `pipeline` until it finishes or `stop` is set, as [`run`] does — and when it is a
/// service (its source is [`Source::continuous`]) that failed with a storage error (an
/// outage longer than the storage's own retries), builds it again with `rebuild` and
/// restarts it after a backoff ([`RESTART_BACKOFF_MIN`] doubling to
/// [`RESTART_BACKOFF_MAX`]) for as long as the storage stays away. A restart is the kill -9
/// path — reopen, reconcile, resume from what the storage holds — so it is exact by the same
/// argument. `on_restart` hears of each restart (error, wait) before the wait. Snapshots and
/// every other error end the run as [`run`] does.
pub async fn run_restarting<B, R>(
    mut pipeline: Pipeline,
    rebuild: B,
    stop: watch::Receiver<bool>,
    on_restart: R,
) -> Result<RunSummary>
where
    B: Fn() -> Result<Pipeline> + Send,
    R: Fn(&Error, Duration) + Send,
{
    let name = pipeline.name.clone();
    let mut backoff = RESTART_BACKOFF_MIN;
    loop {
        let continuous = pipeline.source.continuous();
        let mut rx = stop.clone();
        let until_stopped = async move { stopped(&mut rx).await };
        let started = Instant::now();
        let e = match run(pipeline, until_stopped).await {
            Err(e) if continuous && e.kind() == crate::error::ErrorKind::Storage => e,
            other => return other,
        };
        if *stop.borrow() {
            return Err(e);
        }
        if started.elapsed() > RESTART_BACKOFF_MAX * 2 {
            // It ran a good while: a new outage starts the backoff again.
            backoff = RESTART_BACKOFF_MIN;
        }
        tracing::warn!(
            pipeline = %name,
            error = %crate::error::error_chain(&e),
            retry_in_s = backoff.as_secs(),
            "storage unavailable: the continuous pipeline stopped and restarts from its last durable point once the wait is over"
        );
        ::metrics::counter!("ferry_pipeline_restarts_total", "pipeline" => name.clone())
            .increment(1);
        on_restart(&e, backoff);
        let mut rx = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut rx) => return Err(e),
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
        pipeline = rebuild()?;
    }
}

/// Whether an error comes from writing to a pipe whose reader has gone.
pub fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

async fn run_inner(pipeline: Pipeline, shutdown: impl Future<Output = ()>) -> Result<RunSummary> {
    let started = Instant::now();
    let Pipeline {
        name,
        source,
        transforms,
        sink,
        delivery,
        telemetry,
        secrets: _,
    } = pipeline;
    metrics::describe();
    if let Some(addr) = telemetry.prometheus {
        metrics::install_prometheus(addr)?;
    }
    let store = checkpoint_storage(&name, &delivery.checkpoint, sink.as_ref(), source.as_ref())?
        .map(|s| CheckpointStore::new(s, name.clone()).shared(delivery.shared_checkpoint));
    let mut sink = sink;
    let loaded = resume_point(&name, sink.as_mut(), store.as_ref()).await?;

    let tracker = AckTracker::new();
    let ctx = SourceContext {
        pipeline: name.clone(),
        checkpoint: loaded.clone(),
        acks: tracker.clone(),
    };
    let limit = delivery.max_in_flight_bytes.clamp(1, u32::MAX as u64);
    let flow = Arc::new(FlowState {
        semaphore: Arc::new(Semaphore::new(limit as usize)),
        limit,
        in_flight: AtomicU64::new(0),
        peak: AtomicU64::new(0),
        gauge: metrics::in_flight(&name),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let cap = delivery.channel_capacity.max(1);

    // Stages, last to first, so each knows its output channel.
    let (tx, rx) = mpsc::channel::<Item>(cap);
    let source_task: JoinHandle<(Box<dyn Source>, Result<()>)> = tokio::spawn(source_stage(
        source,
        ctx,
        tx,
        flow.clone(),
        stop_rx.clone(),
        StageMetrics::new(&name, "source"),
        delivery.checkpoint_interval,
    ));
    let (transform_tasks, rx) = spawn_transforms(&name, transforms, rx, cap);
    let sink_state = SinkStage {
        pipeline: name.clone(),
        rx,
        store: store.clone(),
        loaded: loaded.unwrap_or_default(),
        tracker: tracker.clone(),
        interval: delivery.checkpoint_interval,
        metrics: StageMetrics::new(&name, "sink"),
        progress: delivery.progress.clone(),
    };
    let mut sink_task = tokio::spawn(sink_state.run(sink));

    tracing::info!(pipeline = %name, "pipeline started");
    let mut interrupted = false;
    let sink_result = tokio::select! {
        r = &mut sink_task => r,
        _ = shutdown => {
            interrupted = true;
            tracing::info!(pipeline = %name, "stopping: no more reads from the source, draining");
            let _ = stop_tx.send(true);
            sink_task.await
        }
    };
    // The sink is done (or failed): make sure the source stops too, then collect.
    let _ = stop_tx.send(true);
    let outcome = collect_stages(&name, source_task, transform_tasks, sink_result).await?;
    let summary = RunSummary {
        pipeline: name.clone(),
        records: outcome.records,
        batches: outcome.batches,
        bytes: outcome.bytes,
        duration: started.elapsed(),
        checkpoint: outcome.checkpoint,
        interrupted,
        peak_in_flight_bytes: flow.peak.load(Ordering::SeqCst),
    };
    tracing::info!(
        pipeline = %name,
        records = summary.records,
        batches = summary.batches,
        bytes = summary.bytes,
        seconds = summary.duration.as_secs_f64(),
        interrupted,
        "pipeline finished"
    );
    Ok(summary)
}

/// Where the checkpoint lives: disabled, given, or (by default) the sink's storage, else the
/// source's.
fn checkpoint_storage(
    name: &str,
    target: &CheckpointTarget,
    sink: &dyn Sink,
    source: &dyn Source,
) -> Result<Option<Storage>> {
    Ok(match target {
        CheckpointTarget::Disabled => None,
        CheckpointTarget::Storage(s) => Some(s.clone()),
        CheckpointTarget::Uri(u) => Some(Storage::from_uri(u)?),
        CheckpointTarget::Auto => {
            let s = sink
                .checkpoint_storage()
                .or_else(|| source.checkpoint_storage());
            if s.is_none() {
                tracing::warn!(
                    pipeline = %name,
                    "no checkpoint storage: neither the sink nor the source offers one and delivery.checkpoint is not set; progress will not be saved"
                );
            }
            s
        }
    })
}

/// Opens the sink and loads the checkpoint; resumes after whichever is further per
/// partition, since the sink may hold data the checkpoint does not cover (a crash between
/// its write and the checkpoint).
async fn resume_point(
    name: &str,
    sink: &mut dyn Sink,
    store: Option<&CheckpointStore>,
) -> Result<Option<Offsets>> {
    let durable = sink.open().await?;
    let mut loaded: Option<Offsets> = match store {
        Some(st) => st.load().await?.map(|c| c.offsets),
        None => None,
    };
    if sink.open_offsets_are_exact() {
        if let Some(d) = durable {
            if let Some(c) = loaded.as_ref().filter(|c| **c != d) {
                tracing::info!(
                    pipeline = %name,
                    checkpoint_partitions = c.values().map(|p| p.len()).sum::<usize>(),
                    "resuming from what every copy of the sink holds, not from the checkpoint (a copy is behind it)"
                );
            }
            return Ok(Some(d).filter(|d| !d.is_empty()));
        }
    }
    if let Some(d) = durable.filter(|d| !d.is_empty()) {
        let mut merged = loaded.take().unwrap_or_default();
        for (topic, parts) in d {
            let t = merged.entry(topic).or_default();
            for (p, o) in parts {
                let e = t.entry(p).or_insert(o);
                *e = (*e).max(o);
            }
        }
        loaded = Some(merged);
    }
    if let Some(st) = store {
        let checkpoint = format!("{}/{}", st.storage(), st.key());
        match &loaded {
            Some(o) => tracing::info!(
                pipeline = %name,
                checkpoint = %checkpoint,
                partitions = o.values().map(|p| p.len()).sum::<usize>(),
                "resuming from checkpoint"
            ),
            None => tracing::info!(
                pipeline = %name,
                checkpoint = %checkpoint,
                "no checkpoint yet: starting fresh"
            ),
        }
    }
    Ok(loaded)
}

/// A spawned transform stage and its position in the pipeline (0-based).
type TransformTask = (usize, JoinHandle<Result<()>>);

/// Spawns one task per transform, chained from `rx`; returns them and the last output.
fn spawn_transforms(
    name: &str,
    transforms: Vec<Box<dyn Transform>>,
    mut rx: mpsc::Receiver<Item>,
    cap: usize,
) -> (Vec<TransformTask>, mpsc::Receiver<Item>) {
    let mut tasks = Vec::new();
    for (i, t) in transforms.into_iter().enumerate() {
        let (tx, next_rx) = mpsc::channel::<Item>(cap);
        let stage = transform_stage(t, rx, tx, StageMetrics::new(name, "transform"));
        tasks.push((i, tokio::spawn(stage)));
        rx = next_rx;
    }
    (tasks, rx)
}

/// Waits for every stage, closes the source, and returns the sink's outcome or the first
/// error (the sink's own first: it is usually why upstream stopped).
async fn collect_stages(
    name: &str,
    source_task: JoinHandle<(Box<dyn Source>, Result<()>)>,
    transform_tasks: Vec<TransformTask>,
    sink_result: std::result::Result<Result<SinkOutcome>, tokio::task::JoinError>,
) -> Result<SinkOutcome> {
    let mut first_error: Option<Error> = None;
    let (mut source, source_result) = source_task.await.map_err(|e| join_error("source", e))?;
    if let Err(e) = source_result {
        metrics::error(name, "source");
        first_error.get_or_insert(e);
    }
    for (i, t) in transform_tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                metrics::error(name, "transform");
                let kind = e.kind();
                first_error.get_or_insert(Error::component_of(
                    kind,
                    format!("transform #{}", i + 1),
                    e,
                ));
            }
            Err(e) => {
                first_error.get_or_insert(join_error("transform", e));
            }
        }
    }
    let outcome = match sink_result {
        Ok(Ok(o)) => Some(o),
        Ok(Err(e)) => {
            first_error = Some(e);
            None
        }
        Err(e) => {
            first_error = Some(join_error("sink", e));
            None
        }
    };
    if let Err(e) = source.close().await {
        tracing::warn!(pipeline = %name, error = %e, "closing the source failed");
        first_error.get_or_insert(e);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(outcome.unwrap_or_default()),
    }
}

async fn source_stage(
    mut source: Box<dyn Source>,
    ctx: SourceContext,
    tx: mpsc::Sender<Item>,
    flow: Arc<FlowState>,
    mut stop: watch::Receiver<bool>,
    m: StageMetrics,
    metadata_interval: Duration,
) -> (Box<dyn Source>, Result<()>) {
    // Metadata is asked for before the first batch goes out and then at most once per
    // interval, and always travels ahead of the batches that follow it.
    let mut next_metadata = Instant::now();
    loop {
        let next = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            r = source.next_batch(&ctx) => r,
        };
        let batch = match next {
            Ok(Some(b)) => b,
            Ok(None) => {
                tracing::debug!(pipeline = %ctx.pipeline, "source finished");
                // Last look, so a snapshot ends with the metadata of its end.
                match source.metadata().await {
                    Ok(Some(md)) => {
                        let _ = tx.send(Item::Metadata(md)).await;
                    }
                    Ok(None) => {}
                    Err(e) => return (source, Err(e)),
                }
                break;
            }
            Err(e) => return (source, Err(e)),
        };
        if Instant::now() >= next_metadata {
            next_metadata = Instant::now() + metadata_interval;
            // A slow metadata read must not hold up a shutdown.
            let md = tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                r = source.metadata() => r,
            };
            match md {
                Ok(Some(md)) => {
                    if tx.send(Item::Metadata(md)).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => return (source, Err(e)),
            }
        }
        let bytes = batch.size_bytes() as u64;
        let records = batch.record_count();
        // Waiting for budget can be interrupted too; the batch is then dropped unwritten,
        // which fails its ack, so no checkpoint passes it.
        let budget = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            b = flow.acquire(bytes) => b,
        };
        m.add(records, bytes);
        if tx.send(Item::Batch { batch, budget }).await.is_err() {
            // Downstream stopped (its error is reported by its own task).
            break;
        }
    }
    (source, Ok(()))
}

async fn transform_stage(
    mut t: Box<dyn Transform>,
    mut rx: mpsc::Receiver<Item>,
    tx: mpsc::Sender<Item>,
    m: StageMetrics,
) -> Result<()> {
    while let Some(item) = rx.recv().await {
        let (batch, budget) = match item {
            Item::Batch { batch, budget } => (batch, budget),
            Item::Metadata(md) => {
                if tx.send(Item::Metadata(t.apply_metadata(md))).await.is_err() {
                    return Ok(());
                }
                continue;
            }
        };
        match t.apply(batch)? {
            Some(batch) => {
                m.add(batch.record_count(), batch.size_bytes() as u64);
                if tx.send(Item::Batch { batch, budget }).await.is_err() {
                    return Ok(());
                }
            }
            None => drop(budget),
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct SinkOutcome {
    records: u64,
    batches: u64,
    bytes: u64,
    checkpoint: Option<Offsets>,
}

struct SinkStage {
    pipeline: String,
    rx: mpsc::Receiver<Item>,
    store: Option<CheckpointStore>,
    loaded: Offsets,
    tracker: AckTracker,
    interval: Duration,
    metrics: StageMetrics,
    /// Told when a checkpoint is written.
    progress: Option<Arc<crate::task::TaskProgress>>,
}

impl SinkStage {
    async fn run(mut self, mut sink: Box<dyn Sink>) -> Result<SinkOutcome> {
        let mut out = SinkOutcome::default();
        let mut last: Option<Offsets> = None;
        let mut failures_seen = 0;
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = ticker.tick() => {
                    sink.flush().await.inspect_err(|_| metrics::error(&self.pipeline, "sink"))?;
                    self.checkpoint(&mut last, &mut failures_seen).await?;
                }
                item = self.rx.recv() => {
                    let (batch, budget) = match item {
                        None => break,
                        Some(Item::Batch { batch, budget }) => (batch, budget),
                        Some(Item::Metadata(md)) => {
                            sink.write_metadata(md).await.inspect_err(|_| metrics::error(&self.pipeline, "sink"))?;
                            continue;
                        }
                    };
                    let (records, bytes) = (batch.record_count(), batch.size_bytes() as u64);
                    sink.write(batch).await.inspect_err(|_| metrics::error(&self.pipeline, "sink"))?;
                    // The budget comes back only once the sink holds the batch.
                    drop(budget);
                    self.metrics.add(records, bytes);
                    crate::progress::add(records, bytes);
                    out.records += records;
                    out.bytes += bytes;
                    out.batches += 1;
                }
            }
        }
        sink.close()
            .await
            .inspect_err(|_| metrics::error(&self.pipeline, "sink"))?;
        self.checkpoint(&mut last, &mut failures_seen).await?;
        out.checkpoint = last;
        Ok(out)
    }

    /// Writes the checkpoint if it moved since the last one.
    async fn checkpoint(&self, last: &mut Option<Offsets>, failures_seen: &mut u64) -> Result<()> {
        let failures = self.tracker.failures();
        if failures > *failures_seen {
            tracing::warn!(
                pipeline = %self.pipeline,
                failed = failures - *failures_seen,
                "some batches were not made durable; the checkpoint stays before them"
            );
            *failures_seen = failures;
        }
        let Some(store) = &self.store else {
            return Ok(());
        };
        let offsets = merge_offsets(&self.loaded, &self.tracker.watermarks());
        if last.as_ref() == Some(&offsets) || (last.is_none() && offsets.is_empty()) {
            return Ok(());
        }
        store.save(&offsets).await.inspect_err(|e| {
            metrics::error(&self.pipeline, "checkpoint");
            tracing::error!(pipeline = %self.pipeline, error = %e, "writing the checkpoint failed");
        })?;
        ::metrics::counter!(metrics::CHECKPOINTS_TOTAL, "pipeline" => self.pipeline.clone())
            .increment(1);
        for (topic, parts) in &offsets {
            for (p, o) in parts {
                metrics::checkpoint_offset(&self.pipeline, topic, *p, *o);
            }
        }
        tracing::debug!(pipeline = %self.pipeline, "checkpoint written");
        if let Some(p) = &self.progress {
            p.checkpointed(&offsets);
        }
        *last = Some(offsets);
        Ok(())
    }
}
