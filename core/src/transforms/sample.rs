//! `sample`: keeps a deterministic share of records.
//!
//! ```yaml
//! transforms:
//!   - type: sample
//!     percent: 10.0      # keep ~10% of keys, the same keys on every run
//! # or
//!   - type: sample
//!     every: 100         # keep offsets 0, 100, 200, ... of each partition
//! ```
//!
//! With `percent`, a record is kept when `h(key) mod 10000 < round(percent * 100)`, where
//! `h` is 64-bit FNV-1a of the key bytes followed by MurmurHash3's `fmix64` finalizer (which
//! spreads FNV's weak low bits). The decision depends only on the key bytes, so a key is
//! kept or dropped on every run, in every topic and partition alike (samples of related
//! topics join). A null key hashes the record's offset (8 bytes, big-endian) instead.
//! With `every: N`, a record is kept when `offset % N == 0`. Exactly one of the two.
//! Control records always pass; empty batches keep their offset span.

use super::{config_error, retain_records};
use crate::batch::Batch;
use crate::component::Transform;
use crate::record::Record;
use crate::registry::{BuildContext, TransformFactory};
use crate::Result;
use serde::Deserialize;

const NAME: &str = "sample";

/// Configuration of the `sample` transform: give exactly one of `percent` and `every`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Share of keys to keep, 0 to 100 with a resolution of 0.01 (e.g. `10.0`); decided by a
    /// stable hash of the key, so the same key gets the same decision on every run.
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<f64>,
    /// Keep every N-th offset (`offset % N == 0`); N >= 1.
    #[schemars(range(min = 1))]
    pub every: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Keep when the hash bucket (0..10000) is below this.
    Percent(u64),
    Every(i64),
}

/// The `sample` transform.
#[derive(Debug)]
pub struct Sample {
    mode: Mode,
}

/// 64-bit FNV-1a.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finalizer.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The sampling bucket (0..10000) of a record: from its key, or its offset when the key
/// is null.
pub fn bucket(r: &Record) -> u64 {
    let h = match &r.key {
        Some(k) => fnv1a64(k),
        None => fnv1a64(&r.offset.to_be_bytes()),
    };
    fmix64(h) % 10_000
}

impl Sample {
    /// Checks the configuration: exactly one of `percent` (0..=100) and `every` (>= 1).
    pub fn new(config: &SampleConfig) -> Result<Self> {
        let mode = match (config.percent, config.every) {
            (Some(p), None) => {
                if !p.is_finite() || !(0.0..=100.0).contains(&p) {
                    return Err(config_error(
                        NAME,
                        format!("option `percent` must be between 0 and 100, not {p}"),
                    ));
                }
                // In range 0..=10000 after the check above, so the cast is exact.
                Mode::Percent((p * 100.0).round() as u64)
            }
            (None, Some(n)) => {
                let n = i64::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                    config_error(
                        NAME,
                        format!("option `every` must be at least 1 (and fit i64), not {n}"),
                    )
                })?;
                Mode::Every(n)
            }
            (Some(_), Some(_)) => {
                return Err(config_error(
                    NAME,
                    "give either `percent` or `every`, not both",
                ))
            }
            (None, None) => {
                return Err(config_error(
                    NAME,
                    "give `percent` (e.g. 10.0) or `every` (e.g. 100)",
                ))
            }
        };
        Ok(Sample { mode })
    }

    /// Whether a (non-control) record is kept.
    pub fn keeps(&self, r: &Record) -> bool {
        match self.mode {
            Mode::Percent(threshold) => bucket(r) < threshold,
            Mode::Every(n) => r.offset.rem_euclid(n) == 0,
        }
    }
}

impl Transform for Sample {
    /// Drops the records outside the sample; control records stay, the span never changes.
    fn apply(&mut self, mut batch: Batch) -> Result<Option<Batch>> {
        retain_records(&mut batch, |r| self.keeps(r))?;
        Ok(Some(batch))
    }
}

/// Factory of the `sample` transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct SampleFactory;

impl TransformFactory for SampleFactory {
    type Config = SampleConfig;

    fn name(&self) -> &'static str {
        NAME
    }

    fn description(&self) -> &'static str {
        "Keeps a deterministic sample: `percent` of keys by a stable key hash (same key, \
         same decision on every run), or `every` N-th offset."
    }

    fn validate(&self, config: &SampleConfig) -> Result<()> {
        Sample::new(config).map(drop)
    }

    fn build(&self, config: SampleConfig, _ctx: &BuildContext) -> Result<Box<dyn Transform>> {
        Ok(Box::new(Sample::new(&config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn sample(yaml: &str) -> Sample {
        let config: SampleConfig = serde_saphyr::from_str(yaml).expect("config parses");
        Sample::new(&config).expect("config is valid")
    }

    fn keyed_batch(first: i64, n: i64) -> Batch {
        let recs = (first..first + n)
            .map(|i| rec("t", i, Some(&format!("customer-{i}")), Some("v")))
            .collect();
        batch("t", first, first + n, recs)
    }

    fn kept_keys(s: &mut Sample, b: Batch) -> Vec<Option<bytes::Bytes>> {
        let out = s.apply(b).expect("apply").expect("batch");
        records(&out).into_iter().map(|r| r.key).collect()
    }

    #[test]
    fn known_hash_values_are_stable() {
        // FNV-1a 64 reference values; the sampling decision must never change across
        // releases, or resumed samples would disagree with earlier runs.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        let mut r = rec("t", 0, Some("user-42"), None);
        let b = bucket(&r);
        r.topic = std::sync::Arc::from("other");
        r.partition = 3;
        r.offset = 999;
        assert_eq!(bucket(&r), b, "bucket depends on the key only");
    }

    #[test]
    fn same_keys_same_decision_across_runs() {
        let first = kept_keys(&mut sample("percent: 30"), keyed_batch(0, 2000));
        let second = kept_keys(&mut sample("percent: 30"), keyed_batch(0, 2000));
        assert_eq!(first, second);
        assert!(!first.is_empty());
        // Same keys at other offsets, in another batch: same decisions.
        let recs = (0..2000)
            .map(|i| rec("u", 50_000 + i, Some(&format!("customer-{i}")), None))
            .collect();
        let third = kept_keys(&mut sample("percent: 30"), batch("u", 50_000, 52_000, recs));
        assert_eq!(first, third);
    }

    #[test]
    fn fraction_is_close_to_the_requested_percent() {
        for (pct, yaml) in [
            (10.0, "percent: 10.0"),
            (25.0, "percent: 25"),
            (50.0, "percent: 50"),
        ] {
            let kept = kept_keys(&mut sample(yaml), keyed_batch(0, 10_000)).len() as f64;
            let share = kept / 100.0;
            assert!(
                (share - pct).abs() <= 2.0,
                "{pct}% requested, {share}% kept"
            );
        }
        assert!(kept_keys(&mut sample("percent: 0"), keyed_batch(0, 1000)).is_empty());
        assert_eq!(
            kept_keys(&mut sample("percent: 100"), keyed_batch(0, 1000)).len(),
            1000
        );
    }

    #[test]
    fn null_keys_sample_by_offset() {
        let recs: Vec<Record> = (0..10_000).map(|i| rec("t", i, None, Some("v"))).collect();
        let mut s = sample("percent: 20");
        let out = s
            .apply(batch("t", 0, 10_000, recs.clone()))
            .expect("apply")
            .expect("batch");
        let share = out.record_count() as f64 / 100.0;
        assert!((share - 20.0).abs() <= 2.0, "{share}%");
        let again = s
            .apply(batch("t", 0, 10_000, recs))
            .expect("apply")
            .expect("batch");
        assert_eq!(offsets(&out), offsets(&again));
    }

    #[test]
    fn every_n_keeps_offsets_divisible_by_n() {
        let mut s = sample("every: 3");
        let out = s.apply(keyed_batch(10, 8)).expect("apply").expect("batch");
        assert_eq!(offsets(&out), vec![12, 15]);
        assert_eq!((out.first_offset, out.next_offset), (10, 18));
    }

    #[test]
    fn empty_result_keeps_span_and_control_records() {
        let mut s = sample("every: 1000");
        let mut marker = rec("t", 7, None, None);
        marker.is_control = true;
        let b = batch("t", 1, 9, vec![rec("t", 1, Some("a"), None), marker]);
        let out = s.apply(b).expect("apply").expect("batch");
        assert_eq!(offsets(&out), vec![7]);
        let out = s.apply(keyed_batch(1, 5)).expect("apply").expect("batch");
        assert_eq!(out.record_count(), 0);
        assert_eq!((out.first_offset, out.next_offset), (1, 6));
    }

    #[test]
    fn config_errors() {
        let bad = |yaml: &str| {
            let config: SampleConfig = serde_saphyr::from_str(yaml).expect("parses");
            Sample::new(&config).expect_err("invalid").to_string()
        };
        assert!(bad("{ percent: 10, every: 2 }").contains("not both"));
        assert!(bad("{}").contains("transform `sample`"));
        assert!(bad("percent: 100.5").contains("between 0 and 100"));
        assert!(bad("percent: -1").contains("between 0 and 100"));
        assert!(bad("every: 0").contains("at least 1"));
    }
}
