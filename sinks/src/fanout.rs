//! `fanout`: one pipeline writing every batch to several sinks at once — a backup kept in two
//! places (a local disk and S3, two regions, two clouds) from one read of the cluster.
//!
//! ```yaml
//! sink:
//!   type: fanout
//!   sinks:
//!     - { type: storage, uri: /var/backups/kafka }
//!     - { type: storage, uri: "s3://vault/kafka?region=eu-west-1", encryption: { key_file: k.key } }
//! ```
//!
//! **Exactly what every copy holds.** A batch's ack is split in one piece per sink and
//! resolves only when every sink has made it durable, so the checkpoint never passes what
//! any copy lacks. On start each sink reports what it already holds (a `storage` sink reads
//! its manifests) and the pipeline resumes from the *least* of them, per partition — not
//! from the checkpoint: a copy that was wiped, lost or added later is filled again from
//! there (from the topic's earliest offset when it holds nothing), while the others skip
//! what they already have. When a sink cannot say what it holds (e.g. a `kafka` sink), the
//! runtime's usual rule applies: resume after the further of the checkpoint and the
//! reports.
//!
//! **Failures.** A sink that fails stops the whole pipeline (a continuous backup restarts
//! from the last point every copy holds after storage outages, as any pipeline does); the
//! other copies keep what they wrote, and the next run refills the one that fell behind.
//!
//! **Checkpoint.** Kept where the first sink that offers one keeps it (a `storage` sink:
//! `checkpoints/<pipeline>.json` in its location).
//!
//! Each child is its own sink with its own options, lease and `ferry ls`-able layout; two
//! children may not name the same `uri`. Batches are written to all children at once, so the
//! slowest copy sets the pace.

use async_trait::async_trait;
use ferry_core::registry::{BuildContext, ConfigInput, SinkFactory};
use ferry_core::{
    Batch, Error, Offsets, Registry, Result, Sink, SourceMetadata, Storage, TargetReport,
    TopicSettings,
};
use futures::future::join_all;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// Options of the `fanout` sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FanoutConfig {
    /// The sinks every batch goes to (at least two), each a sink block with its own `type:`
    /// (any sink but `fanout`).
    pub sinks: Vec<Value>,
}

/// Builds `fanout` sinks from the sinks of an inner registry (every sink but `fanout`).
pub struct FanoutFactory {
    inner: Arc<Registry>,
}

impl FanoutFactory {
    /// A factory whose children are built by `inner`.
    pub fn new(inner: Arc<Registry>) -> Self {
        FanoutFactory { inner }
    }
}

/// The `type:` of child `index`, or a config error naming it.
fn child_type(index: usize, child: &Value) -> Result<&str> {
    let Some(block) = child.as_object() else {
        return Err(Error::config(format!(
            "sinks[{index}]: expected a sink block (a map with `type:`), got {child}"
        )));
    };
    match block.get("type") {
        Some(Value::String(t)) if t == "fanout" => Err(Error::config(format!(
            "sinks[{index}]: a fanout cannot contain another fanout; list every sink in one `sinks:`"
        ))),
        Some(Value::String(t)) => Ok(t),
        Some(other) => Err(Error::config(format!(
            "sinks[{index}].type: expected a sink type name, got {other}"
        ))),
        None => Err(Error::config(format!(
            "sinks[{index}]: missing `type:` (e.g. `type: storage`)"
        ))),
    }
}

/// A child's error with which child it is.
fn in_child(index: usize, type_name: &str, e: Error) -> Error {
    match e {
        Error::Config { message, .. } => {
            Error::config(format!("sinks[{index}] ({type_name}): {message}"))
        }
        other => other,
    }
}

impl SinkFactory for FanoutFactory {
    type Config = FanoutConfig;

    fn name(&self) -> &'static str {
        "fanout"
    }

    fn description(&self) -> &'static str {
        "every batch to several sinks at once (e.g. a backup in two storages); acked when all hold it"
    }

    fn validate(&self, config: &FanoutConfig) -> Result<()> {
        if config.sinks.len() < 2 {
            return Err(Error::config(format!(
                "sinks: a fanout needs at least two sinks, got {}; use the sink itself instead",
                config.sinks.len()
            )));
        }
        let mut uris: Vec<(usize, &str)> = Vec::new();
        for (i, child) in config.sinks.iter().enumerate() {
            let t = child_type(i, child)?;
            self.inner
                .check_sink(t, &ConfigInput::json(child))
                .map_err(|e| in_child(i, t, e))?;
            if let Some(uri) = child.get("uri").and_then(Value::as_str) {
                if let Some((j, _)) = uris.iter().find(|(_, u)| same_location(u, uri)) {
                    return Err(Error::config(format!(
                        "sinks[{i}].uri: '{uri}' is also sinks[{j}]'s location; each copy needs its own"
                    )));
                }
                uris.push((i, uri));
            }
        }
        Ok(())
    }

    fn build(&self, config: FanoutConfig, ctx: &BuildContext) -> Result<Box<dyn Sink>> {
        let mut children = Vec::with_capacity(config.sinks.len());
        for (i, child) in config.sinks.iter().enumerate() {
            let t = child_type(i, child)?;
            let sink = self
                .inner
                .build_sink(t, &ConfigInput::json(child), ctx)
                .map_err(|e| in_child(i, t, e))?;
            children.push(sink);
        }
        Ok(Box::new(FanoutSink::new(children)))
    }
}

/// Whether two storage URIs name the same place (a trailing `/` aside).
fn same_location(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The `fanout` sink: every batch to each child; acked when all of them hold it.
pub struct FanoutSink {
    children: Vec<Box<dyn Sink>>,
    /// Every child reported what it holds on open (so the reports are exact).
    all_reported: bool,
}

impl FanoutSink {
    /// A sink writing to every one of `children`.
    pub fn new(children: Vec<Box<dyn Sink>>) -> Self {
        FanoutSink {
            children,
            all_reported: false,
        }
    }
}

/// Per partition, the least of what every report holds; a partition missing from any report
/// is left out (that copy holds none of it).
fn least_held(reports: &[Offsets]) -> Offsets {
    let Some((first, rest)) = reports.split_first() else {
        return Offsets::new();
    };
    let mut out = Offsets::new();
    for (topic, parts) in first {
        for (&p, &next) in parts {
            let least = rest.iter().try_fold(next, |acc, r| {
                r.get(topic).and_then(|t| t.get(&p)).map(|&o| acc.min(o))
            });
            if let Some(least) = least {
                out.entry(topic.clone()).or_default().insert(p, least);
            }
        }
    }
    out
}

/// A copy of `batch`'s records with its own ack.
fn copy_with(batch: &Batch, ack: ferry_core::Ack) -> Batch {
    Batch {
        topic: batch.topic.clone(),
        partition: batch.partition,
        first_offset: batch.first_offset,
        next_offset: batch.next_offset,
        payload: batch.payload.clone(),
        ack,
    }
}

/// The first error of the children's results, if any.
fn first_error(results: Vec<Result<()>>) -> Result<()> {
    results.into_iter().collect()
}

#[async_trait]
impl Sink for FanoutSink {
    async fn open(&mut self) -> Result<Option<Offsets>> {
        let reports = join_all(self.children.iter_mut().map(|c| c.open())).await;
        let mut held = Vec::with_capacity(reports.len());
        for r in reports {
            held.push(r?);
        }
        let exact: Option<Vec<Offsets>> = held.iter().cloned().collect();
        self.all_reported = exact.is_some();
        Ok(match exact {
            Some(reports) => Some(least_held(&reports)),
            // Some child cannot say: the runtime resumes after the checkpoint too, so report
            // only what the children that can say hold in common.
            None => {
                let known: Vec<Offsets> = held.into_iter().flatten().collect();
                (!known.is_empty()).then(|| least_held(&known))
            }
        })
    }

    fn open_offsets_are_exact(&self) -> bool {
        self.all_reported
    }

    async fn write(&mut self, mut batch: Batch) -> Result<()> {
        let n = self.children.len();
        let mut acks = std::mem::take(&mut batch.ack).split(n);
        let last = acks.pop();
        let mut copies: Vec<Batch> = acks.into_iter().map(|a| copy_with(&batch, a)).collect();
        if let Some(ack) = last {
            batch.ack = ack;
            copies.push(batch);
        }
        let writes = self
            .children
            .iter_mut()
            .zip(copies)
            .map(|(c, b)| c.write(b));
        first_error(join_all(writes).await)
    }

    async fn write_metadata(&mut self, metadata: SourceMetadata) -> Result<()> {
        let writes = self
            .children
            .iter_mut()
            .map(|c| c.write_metadata(metadata.clone()));
        first_error(join_all(writes).await)
    }

    async fn flush(&mut self) -> Result<()> {
        first_error(join_all(self.children.iter_mut().map(|c| c.flush())).await)
    }

    async fn close(&mut self) -> Result<()> {
        first_error(join_all(self.children.iter_mut().map(|c| c.close())).await)
    }

    fn checkpoint_storage(&self) -> Option<Storage> {
        self.children.iter().find_map(|c| c.checkpoint_storage())
    }

    async fn plan_targets(
        &mut self,
        source_topics: Vec<TopicSettings>,
        topics: &[String],
    ) -> Result<Option<TargetReport>> {
        // A plan shows the first target that has one (a restore to two clusters at once is
        // planned against the first).
        for c in &mut self.children {
            if let Some(report) = c.plan_targets(source_topics.clone(), topics).await? {
                return Ok(Some(report));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{AckTracker, Record};
    use std::sync::Mutex;

    fn offsets(entries: &[(&str, i32, i64)]) -> Offsets {
        let mut o = Offsets::new();
        for (t, p, n) in entries {
            o.entry(t.to_string()).or_default().insert(*p, *n);
        }
        o
    }

    #[test]
    fn least_held_takes_the_minimum_and_drops_partitions_a_copy_lacks() {
        let a = offsets(&[("t", 0, 100), ("t", 1, 50), ("u", 0, 7)]);
        let b = offsets(&[("t", 0, 80), ("t", 1, 90)]);
        assert_eq!(least_held(&[a, b]), offsets(&[("t", 0, 80), ("t", 1, 50)]));
        assert_eq!(least_held(&[]), Offsets::new());
    }

    /// What a fake child saw and how it behaves.
    #[derive(Default)]
    struct Seen {
        offsets: Vec<(i64, i64, usize)>,
        flushes: usize,
    }

    struct FakeChild {
        seen: Arc<Mutex<Seen>>,
        holds: Option<Offsets>,
        /// Resolve acks on write (else they wait for flush).
        resolve_on_write: bool,
        pending: Vec<ferry_core::Ack>,
        fail_writes: bool,
    }

    #[async_trait]
    impl Sink for FakeChild {
        async fn open(&mut self) -> Result<Option<Offsets>> {
            Ok(self.holds.clone())
        }
        async fn write(&mut self, mut batch: Batch) -> Result<()> {
            if self.fail_writes {
                return Err(Error::internal("child refuses"));
            }
            let n = batch.records_mut()?.len();
            if let Ok(mut s) = self.seen.lock() {
                s.offsets.push((batch.first_offset, batch.next_offset, n));
            }
            let ack = std::mem::take(&mut batch.ack);
            if self.resolve_on_write {
                ack.resolve();
            } else {
                self.pending.push(ack);
            }
            Ok(())
        }
        async fn flush(&mut self) -> Result<()> {
            if let Ok(mut s) = self.seen.lock() {
                s.flushes += 1;
            }
            for a in self.pending.drain(..) {
                a.resolve();
            }
            Ok(())
        }
    }

    fn child(holds: Option<Offsets>, resolve_on_write: bool) -> (FakeChild, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        (
            FakeChild {
                seen: seen.clone(),
                holds,
                resolve_on_write,
                pending: Vec::new(),
                fail_writes: false,
            },
            seen,
        )
    }

    fn batch(tracker: &AckTracker, first: i64, next: i64) -> Batch {
        let topic: Arc<str> = Arc::from("t");
        let records = (first..next)
            .map(|o| {
                Record::new(
                    topic.clone(),
                    0,
                    o,
                    Some(bytes::Bytes::from(format!("v{o}"))),
                )
            })
            .collect();
        Batch::from_records(
            topic.clone(),
            0,
            first,
            next,
            records,
            tracker.issue(&topic, 0, first, next),
        )
    }

    #[tokio::test]
    async fn a_batch_is_acked_only_when_every_child_holds_it() {
        let tracker = AckTracker::new();
        tracker.seed(&Arc::from("t"), 0, 0);
        let (fast, fast_seen) = child(Some(Offsets::new()), true);
        let (slow, slow_seen) = child(Some(Offsets::new()), false);
        let mut sink = FanoutSink::new(vec![Box::new(fast), Box::new(slow)]);
        sink.open().await.expect("open");
        sink.write(batch(&tracker, 0, 3)).await.expect("write");
        // The fast copy holds it, the slow one not yet: the watermark must not move.
        assert!(
            tracker
                .watermarks()
                .get("t")
                .and_then(|p| p.get(&0))
                .is_none_or(|&w| w == 0),
            "watermark moved before the slow copy held the batch: {:?}",
            tracker.watermarks()
        );
        sink.flush().await.expect("flush");
        assert_eq!(tracker.watermarks()["t"][&0], 3);
        for seen in [&fast_seen, &slow_seen] {
            let s = seen.lock().expect("lock");
            assert_eq!(
                s.offsets,
                vec![(0, 3, 3)],
                "each child gets the whole batch"
            );
        }
        assert_eq!(slow_seen.lock().expect("lock").flushes, 1);
    }

    #[tokio::test]
    async fn resume_is_the_least_every_child_holds_and_exact_only_when_all_report() {
        let (a, _) = child(Some(offsets(&[("t", 0, 10)])), true);
        let (b, _) = child(Some(offsets(&[("t", 0, 4)])), true);
        let mut sink = FanoutSink::new(vec![Box::new(a), Box::new(b)]);
        assert_eq!(
            sink.open().await.expect("open"),
            Some(offsets(&[("t", 0, 4)]))
        );
        assert!(sink.open_offsets_are_exact());

        let (a, _) = child(Some(offsets(&[("t", 0, 10)])), true);
        let (b, _) = child(None, true);
        let mut sink = FanoutSink::new(vec![Box::new(a), Box::new(b)]);
        assert_eq!(
            sink.open().await.expect("open"),
            Some(offsets(&[("t", 0, 10)]))
        );
        assert!(!sink.open_offsets_are_exact());
    }

    #[tokio::test]
    async fn a_failing_child_fails_the_write_and_its_piece_of_the_ack() {
        let tracker = AckTracker::new();
        tracker.seed(&Arc::from("t"), 0, 0);
        let (ok, _) = child(Some(Offsets::new()), true);
        let (mut bad, _) = child(Some(Offsets::new()), true);
        bad.fail_writes = true;
        let mut sink = FanoutSink::new(vec![Box::new(ok), Box::new(bad)]);
        sink.open().await.expect("open");
        let err = sink
            .write(batch(&tracker, 0, 2))
            .await
            .expect_err("must fail");
        assert!(err.to_string().contains("child refuses"), "{err}");
        assert!(
            tracker
                .watermarks()
                .get("t")
                .and_then(|p| p.get(&0))
                .is_none_or(|&w| w == 0),
            "a batch one copy lacks must not be checkpointed: {:?}",
            tracker.watermarks()
        );
    }

    fn factory() -> FanoutFactory {
        let mut inner = Registry::new();
        crate::register_leaves(&mut inner);
        FanoutFactory::new(Arc::new(inner))
    }

    fn config(yaml: &str) -> FanoutConfig {
        ConfigInput::yaml(yaml, "test.yaml")
            .deserialize()
            .expect("config")
    }

    #[test]
    fn validation_names_the_child_and_field_at_fault() {
        let f = factory();
        let one = config("sinks: [{type: stdout}]");
        assert!(f
            .validate(&one)
            .expect_err("one")
            .to_string()
            .contains("at least two"));
        let nested = config("sinks: [{type: stdout}, {type: fanout, sinks: []}]");
        assert!(f
            .validate(&nested)
            .expect_err("nested")
            .to_string()
            .contains("sinks[1]"));
        let unknown = config("sinks: [{type: stdout}, {type: storage, uri: /tmp/x, formt: raw}]");
        let e = f.validate(&unknown).expect_err("unknown field").to_string();
        assert!(
            e.contains("sinks[1] (storage)") && e.contains("formt"),
            "{e}"
        );
        let same = config("sinks: [{type: storage, uri: /tmp/x}, {type: storage, uri: /tmp/x/}]");
        let e = f.validate(&same).expect_err("same uri").to_string();
        assert!(e.contains("sinks[1].uri") && e.contains("sinks[0]"), "{e}");
        let missing = config("sinks: [{type: stdout}, {uri: /tmp/x}]");
        assert!(f
            .validate(&missing)
            .expect_err("no type")
            .to_string()
            .contains("sinks[1]: missing `type:`"));
        let fine = config("sinks: [{type: storage, uri: /tmp/a}, {type: storage, uri: /tmp/b}]");
        f.validate(&fine).expect("two storages are fine");
    }
}
