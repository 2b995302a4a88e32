//! Test doubles shared by the tests of every crate: a source that emits numbered records
//! and resumes from its checkpoint, and a sink that records what it was given and decides
//! what happens to the acks. Built only with the cargo feature `test-util` (and for this
//! crate's own unit tests); nothing in a normal build uses it.
//!
//! ```
//! use ferry_core::testing::{AckMode, TestSink, TestSource};
//! let source = TestSource::new(10, 100); // 10 batches of 100 records on `t`/0
//! let sink = TestSink::new(AckMode::Immediate);
//! let seen = sink.seen.clone();
//! ```

use crate::{Ack, Batch, Error, Header, Record, Result, Sink, Source, SourceContext};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Timestamp of offset 0 of [`varied_record`]: 2025-12-01T00:00:00Z.
pub const VARIED_T0: i64 = 1_764_547_200_000;

/// Makes the record at an offset: `(topic, partition, offset, value_size)`.
pub type MakeRecord = fn(&Arc<str>, i32, i64, usize) -> Record;

/// A record whose value is `value_size` bytes of `x`, nothing else set.
pub fn plain_record(topic: &Arc<str>, partition: i32, offset: i64, value_size: usize) -> Record {
    Record::new(
        topic.clone(),
        partition,
        offset,
        Some(Bytes::from(vec![b'x'; value_size])),
    )
}

/// A record with every field a function of its coordinates, so a reader can check what it
/// got back: key `k-P-O`, a JSON value, two headers (one null), a timestamp one second per
/// offset after [`VARIED_T0`]. Every 7th record has a null key, every 11th a null value.
pub fn varied_record(topic: &Arc<str>, partition: i32, offset: i64, _value_size: usize) -> Record {
    let mut r = Record::new(topic.clone(), partition, offset, None);
    if offset % 7 != 3 {
        r.key = Some(Bytes::from(format!("k-{partition}-{offset}")));
    }
    if offset % 11 != 5 {
        r.value = Some(Bytes::from(format!(
            "{{\"partition\":{partition},\"offset\":{offset},\"text\":\"value {offset}\"}}"
        )));
    }
    r.headers = vec![
        Header::new("h", Some(Bytes::from(format!("v{offset}")))),
        Header::new("null", None),
    ];
    r.timestamp = VARIED_T0 + offset * 1000;
    r
}

/// Byte counts a source and a sink share, to measure what is in flight between them.
#[derive(Default, Debug)]
pub struct Counters {
    /// Bytes of the batches the source emitted.
    pub emitted_bytes: AtomicU64,
    /// Bytes of the batches the sink was given.
    pub written_bytes: AtomicU64,
    /// The most emitted-but-not-written bytes seen.
    pub max_gap: AtomicU64,
}

impl Counters {
    /// Notes the current gap between emitted and written bytes.
    pub fn observe(&self) {
        let gap = self
            .emitted_bytes
            .load(Ordering::SeqCst)
            .saturating_sub(self.written_bytes.load(Ordering::SeqCst));
        self.max_gap.fetch_max(gap, Ordering::SeqCst);
    }
}

/// Emits `batches` batches of `per_batch` records on each of `partitions` partitions of
/// `topic` (partitions take turns), resuming each from the checkpoint; then finishes, or
/// waits forever when `endless`.
pub struct TestSource {
    /// Topic of the records (`t` by default).
    pub topic: Arc<str>,
    /// Partitions 0..partitions (1 by default).
    pub partitions: i32,
    /// Batches per partition.
    pub batches: i64,
    /// Records per batch.
    pub per_batch: i64,
    /// Passed to [`TestSource::record`] (value bytes of [`plain_record`]; 10 by default).
    pub value_size: usize,
    /// Builds each record ([`plain_record`] by default).
    pub record: MakeRecord,
    /// Wait forever instead of finishing.
    pub endless: bool,
    /// Start this many offsets before the resume offset (as a source that re-reads after a
    /// restart does), so a sink must drop what it already holds.
    pub replay: i64,
    /// Fail when partition 0 reaches this offset.
    pub fail_at: Option<i64>,
    /// Counts the bytes emitted.
    pub emitted: Option<Arc<Counters>>,
    next: Vec<Option<i64>>,
    turn: usize,
}

impl TestSource {
    /// `batches` batches of `per_batch` plain records on partition 0 of topic `t`.
    pub fn new(batches: i64, per_batch: i64) -> Self {
        TestSource {
            topic: Arc::from("t"),
            partitions: 1,
            batches,
            per_batch,
            value_size: 10,
            record: plain_record,
            endless: false,
            replay: 0,
            fail_at: None,
            emitted: None,
            next: Vec::new(),
            turn: 0,
        }
    }

    /// [`varied_record`]s on `partitions` partitions of `topic`.
    pub fn varied(topic: &str, partitions: i32, batches: i64, per_batch: i64) -> Self {
        TestSource {
            topic: Arc::from(topic),
            partitions,
            record: varied_record,
            ..TestSource::new(batches, per_batch)
        }
    }

    /// Offsets each partition ends at.
    pub fn end_offset(&self) -> i64 {
        self.batches * self.per_batch
    }

    /// The next offset of `partition`, from the checkpoint on first use.
    fn next_of(&mut self, partition: i32, ctx: &SourceContext) -> i64 {
        if self.next.is_empty() {
            self.next = vec![None; self.partitions.max(0) as usize];
        }
        let replay = self.replay;
        let topic = self.topic.clone();
        *self.next[partition as usize].get_or_insert_with(|| {
            ctx.resume_offset(&topic, partition)
                .map_or(0, |o| (o - replay).max(0))
        })
    }

    /// A partition (taking turns) that has records left.
    fn pick_partition(&mut self, ctx: &SourceContext) -> Option<i32> {
        for _ in 0..self.partitions {
            let p = (self.turn % self.partitions.max(1) as usize) as i32;
            self.turn += 1;
            if self.next_of(p, ctx) < self.end_offset() {
                return Some(p);
            }
        }
        None
    }
}

#[async_trait]
impl Source for TestSource {
    async fn next_batch(&mut self, ctx: &SourceContext) -> Result<Option<Batch>> {
        let Some(partition) = self.pick_partition(ctx) else {
            if self.endless {
                std::future::pending::<()>().await;
            }
            return Ok(None);
        };
        let next = self.next_of(partition, ctx);
        if partition == 0 && Some(next) == self.fail_at {
            return Err(Error::internal("source broke"));
        }
        let end = (next + self.per_batch).min(self.end_offset());
        let records: Vec<Record> = (next..end)
            .map(|o| (self.record)(&self.topic, partition, o, self.value_size))
            .collect();
        let ack = ctx.ack(&self.topic, partition, next, end);
        let batch = Batch::from_records(self.topic.clone(), partition, next, end, records, ack);
        if let Some(c) = &self.emitted {
            c.emitted_bytes
                .fetch_add(batch.size_bytes() as u64, Ordering::SeqCst);
            c.observe();
        }
        self.next[partition as usize] = Some(end);
        Ok(Some(batch))
    }
}

/// What a [`TestSink`] does with acks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// Resolve on write.
    Immediate,
    /// Hold the ack of the batch starting at this offset until close; resolve others.
    HoldUntilClose(i64),
    /// Drop (fail) the ack of the batch starting at this offset; resolve others.
    Fail(i64),
}

/// Notes every batch it is given (`seen`: first and next offset; `records`: the records,
/// decoded, when collecting) and acks them as its [`AckMode`] says.
pub struct TestSink {
    /// Wait this long in each write (a slow sink).
    pub delay: Duration,
    /// What happens to acks.
    pub mode: AckMode,
    /// `(first_offset, next_offset)` of each batch written, in order.
    pub seen: Arc<Mutex<Vec<(i64, i64)>>>,
    /// Every record written, in order, when collecting ([`TestSink::collecting`]).
    pub records: Option<Arc<Mutex<Vec<Record>>>>,
    /// Counts the bytes written.
    pub counters: Option<Arc<Counters>>,
    /// Fail the write of the batch starting at this offset.
    pub fail_on_write: Option<i64>,
    held: VecDeque<Ack>,
}

impl TestSink {
    /// A sink that acks as `mode` says.
    pub fn new(mode: AckMode) -> Self {
        TestSink {
            delay: Duration::ZERO,
            mode,
            seen: Arc::default(),
            records: None,
            counters: None,
            fail_on_write: None,
            held: VecDeque::new(),
        }
    }

    /// A sink that acks on write and keeps every record (decoded) it is given; returns it and
    /// the records.
    pub fn collecting() -> (Self, Arc<Mutex<Vec<Record>>>) {
        let records = Arc::<Mutex<Vec<Record>>>::default();
        let sink = TestSink {
            records: Some(records.clone()),
            ..TestSink::new(AckMode::Immediate)
        };
        (sink, records)
    }
}

/// Locks a mutex even when a panicking test thread poisoned it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl Sink for TestSink {
    async fn write(&mut self, mut batch: Batch) -> Result<()> {
        if Some(batch.first_offset) == self.fail_on_write {
            return Err(Error::internal("sink broke"));
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some(c) = &self.counters {
            c.written_bytes
                .fetch_add(batch.size_bytes() as u64, Ordering::SeqCst);
        }
        lock(&self.seen).push((batch.first_offset, batch.next_offset));
        if let Some(store) = &self.records {
            let records = batch.records_mut()?.clone();
            lock(store).extend(records);
        }
        match self.mode {
            AckMode::HoldUntilClose(o) if o == batch.first_offset => self.held.push_back(batch.ack),
            AckMode::Fail(o) if o == batch.first_offset => batch.ack.fail(),
            _ => batch.ack.resolve(),
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        while let Some(a) = self.held.pop_front() {
            a.resolve();
        }
        Ok(())
    }
}
