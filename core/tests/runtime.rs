//! The runtime: backpressure, ack ordering in checkpoints, graceful shutdown, errors.

use ferry_core::checkpoint::CheckpointStore;
use ferry_core::testing::{AckMode, Counters, TestSink, TestSource};
use ferry_core::{run, Batch, Error, Offsets, Pipeline, Result, Storage};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn memory(name: &str) -> Storage {
    Storage::from_uri(&format!("memory://{name}")).unwrap()
}

async fn checkpoint(storage: &Storage, pipeline: &str) -> Option<Offsets> {
    CheckpointStore::new(storage.clone(), pipeline)
        .load()
        .await
        .unwrap()
        .map(|c| c.offsets)
}

#[tokio::test]
async fn slow_sink_and_small_budget_bound_bytes_in_flight() {
    let counters = Arc::new(Counters::default());
    let mut source = TestSource::new(200, 1);
    source.value_size = 900; // 964 bytes per batch with the record overhead
    source.emitted = Some(counters.clone());
    let mut sink = TestSink::new(AckMode::Immediate);
    sink.delay = Duration::from_millis(2);
    sink.counters = Some(counters.clone());
    let budget = 4096;
    let p = Pipeline::new("bp", Box::new(source), Vec::new(), Box::new(sink))
        .without_checkpoint()
        .with_max_in_flight_bytes(budget)
        // Channels far bigger than the budget: only the budget can hold the source back.
        .with_channel_capacity(1000);
    let s = run(p, std::future::pending()).await.unwrap();
    assert_eq!(s.records, 200);
    assert!(
        s.peak_in_flight_bytes <= budget,
        "{}",
        s.peak_in_flight_bytes
    );
    assert!(
        s.peak_in_flight_bytes >= 964 * 3,
        "the budget was used: {}",
        s.peak_in_flight_bytes
    );
    // Measured by the components themselves: emitted but not yet written. A batch is
    // counted as emitted just before it waits for the budget, hence one batch of slack.
    let max_gap = counters.max_gap.load(Ordering::SeqCst);
    assert!(
        max_gap <= budget + 964,
        "max in flight {max_gap} > budget {budget} + one batch"
    );
}

#[tokio::test]
async fn without_budget_pressure_the_source_runs_ahead() {
    // The control for the test above: same slow sink, generous budget.
    let counters = Arc::new(Counters::default());
    let mut source = TestSource::new(200, 1);
    source.value_size = 900;
    source.emitted = Some(counters.clone());
    let mut sink = TestSink::new(AckMode::Immediate);
    sink.delay = Duration::from_millis(2);
    sink.counters = Some(counters.clone());
    let p = Pipeline::new("bp2", Box::new(source), Vec::new(), Box::new(sink))
        .without_checkpoint()
        .with_channel_capacity(1000);
    run(p, std::future::pending()).await.unwrap();
    assert!(counters.max_gap.load(Ordering::SeqCst) > 50 * 964);
}

#[tokio::test]
async fn a_later_ack_never_moves_the_checkpoint_past_an_earlier_one() {
    let storage = memory("rt-ack-order");
    let mut source = TestSource::new(3, 10);
    source.endless = true;
    let sink = TestSink::new(AckMode::HoldUntilClose(0));
    let seen = sink.seen.clone();
    let p = Pipeline::new("order", Box::new(source), Vec::new(), Box::new(sink))
        .with_checkpoint_storage(storage.clone())
        .with_checkpoint_interval(Duration::from_millis(20));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(run(p, async move {
        let _ = stop_rx.await;
    }));
    // Let all three batches be written and several checkpoint ticks pass.
    for _ in 0..100 {
        if seen.lock().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(seen.lock().unwrap().len(), 3);
    // Batches 10..20 and 20..30 are durable, 0..10 is not: nothing may be committed.
    assert_eq!(checkpoint(&storage, "order").await, None);
    stop_tx.send(()).unwrap();
    let s = handle.await.unwrap().unwrap();
    assert!(s.interrupted);
    // close() resolved the held ack: now everything is committed.
    assert_eq!(checkpoint(&storage, "order").await.unwrap()["t"][&0], 30);
    assert_eq!(s.checkpoint.unwrap()["t"][&0], 30);
}

#[tokio::test]
async fn a_failed_ack_is_never_committed() {
    let storage = memory("rt-ack-fail");
    let source = TestSource::new(4, 10);
    let sink = TestSink::new(AckMode::Fail(10));
    let p = Pipeline::new("fail", Box::new(source), Vec::new(), Box::new(sink))
        .with_checkpoint_storage(storage.clone());
    run(p, std::future::pending()).await.unwrap();
    // 0..10 durable, 10..20 failed: the checkpoint stops at 10 although 20..40 resolved.
    assert_eq!(checkpoint(&storage, "fail").await.unwrap()["t"][&0], 10);
}

#[tokio::test]
async fn shutdown_drains_and_a_restart_resumes() {
    let storage = memory("rt-resume");
    let mut source = TestSource::new(1_000_000, 5);
    source.value_size = 10;
    let mut sink = TestSink::new(AckMode::Immediate);
    sink.delay = Duration::from_millis(1);
    let seen1 = sink.seen.clone();
    let p = Pipeline::new("resume", Box::new(source), Vec::new(), Box::new(sink))
        .with_checkpoint_storage(storage.clone())
        .with_checkpoint_interval(Duration::from_millis(30));
    let s1 = run(p, tokio::time::sleep(Duration::from_millis(150)))
        .await
        .unwrap();
    assert!(s1.interrupted);
    assert!(s1.records > 0);
    let cp1 = checkpoint(&storage, "resume").await.unwrap()["t"][&0];
    // Everything written was checkpointed on the way out.
    assert_eq!(cp1 as u64, s1.records);

    let sink = TestSink::new(AckMode::Immediate);
    let seen2 = sink.seen.clone();
    let p = Pipeline::new(
        "resume",
        Box::new(TestSource::new(1_000_000, 5)),
        Vec::new(),
        Box::new(sink),
    )
    .with_checkpoint_storage(storage.clone());
    let s2 = run(p, tokio::time::sleep(Duration::from_millis(50)))
        .await
        .unwrap();
    let first2 = seen2.lock().unwrap()[0].0;
    assert_eq!(
        first2, cp1,
        "the second run starts where the first committed"
    );
    // Across both runs every offset was written once, in order.
    let all: Vec<(i64, i64)> = seen1
        .lock()
        .unwrap()
        .iter()
        .chain(seen2.lock().unwrap().iter())
        .copied()
        .collect();
    for w in all.windows(2) {
        assert_eq!(w[0].1, w[1].0);
    }
    assert_eq!(
        checkpoint(&storage, "resume").await.unwrap()["t"][&0] as u64,
        s1.records + s2.records
    );
}

#[tokio::test]
async fn source_error_stops_the_run_after_writing_what_was_read() {
    let storage = memory("rt-src-err");
    let mut source = TestSource::new(10, 10);
    source.fail_at = Some(50);
    let p = Pipeline::new(
        "srcerr",
        Box::new(source),
        Vec::new(),
        Box::new(TestSink::new(AckMode::Immediate)),
    )
    .with_checkpoint_storage(storage.clone());
    let e = run(p, std::future::pending()).await.unwrap_err();
    assert!(e.to_string().contains("source broke"), "{e}");
    assert_eq!(checkpoint(&storage, "srcerr").await.unwrap()["t"][&0], 50);
}

#[tokio::test]
async fn sink_error_fails_the_run_and_commits_nothing_beyond_durable_data() {
    let storage = memory("rt-sink-err");
    let mut sink = TestSink::new(AckMode::Immediate);
    sink.fail_on_write = Some(30);
    let p = Pipeline::new(
        "sinkerr",
        Box::new(TestSource::new(10, 10)),
        Vec::new(),
        Box::new(sink),
    )
    .with_checkpoint_storage(storage.clone())
    .with_checkpoint_interval(Duration::from_secs(3600));
    let e = run(p, std::future::pending()).await.unwrap_err();
    assert!(e.to_string().contains("sink broke"), "{e}");
    // No checkpoint was due and the failed sink was not flushed: nothing committed.
    assert_eq!(checkpoint(&storage, "sinkerr").await, None);
}

/// A transform that fails on one batch and drops (resolving the ack of) another.
struct Picky {
    dropped: Arc<AtomicI64>,
}

impl ferry_core::Transform for Picky {
    fn apply(&mut self, batch: Batch) -> Result<Option<Batch>> {
        match batch.first_offset {
            20 => {
                self.dropped.fetch_add(1, Ordering::SeqCst);
                batch.ack.resolve();
                Ok(None)
            }
            70 => Err(Error::internal("transform broke")),
            _ => Ok(Some(batch)),
        }
    }
}

#[tokio::test]
async fn transform_can_drop_batches_and_its_error_stops_the_run() {
    let storage = memory("rt-transform");
    let dropped = Arc::new(AtomicI64::new(0));
    let sink = TestSink::new(AckMode::Immediate);
    let seen = sink.seen.clone();
    let p = Pipeline::new(
        "tr",
        Box::new(TestSource::new(10, 10)),
        vec![Box::new(Picky {
            dropped: dropped.clone(),
        })],
        Box::new(sink),
    )
    .with_checkpoint_storage(storage.clone());
    let e = run(p, std::future::pending()).await.unwrap_err();
    assert!(e.to_string().contains("transform broke"), "{e}");
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert!(!seen.lock().unwrap().iter().any(|(f, _)| *f == 20));
    // 0..70 went through (20..30 dropped, its ack resolved): committed up to 70.
    assert_eq!(checkpoint(&storage, "tr").await.unwrap()["t"][&0], 70);
}
