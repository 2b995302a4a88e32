//! Encryption of a storage sink (`encryption:`): which keys may continue a location.
//!
//! A location is all encrypted or all plain: an encrypted sink refuses a location that holds
//! plain segments (they would stay readable by anyone, unlike the user expects), and a plain
//! sink refuses an encrypted one. An encrypted sink also refuses a location whose newest
//! segments were written with none of its keys: a mistyped key file would otherwise start a
//! backup nobody can restore in one go. To rotate, give the new key first and the old one
//! after it (`key_files: [new, old]`) at least until each partition has written under the
//! new key. The segments' data keys are wrapped when they are opened (`segment.rs`).

use super::StorageSink;
use ferry_core::{Error, Result};
use ferry_formats::layout::SegmentManifest;
use std::collections::BTreeSet;

impl StorageSink {
    /// Checks the keys against the newest manifest of each partition; an error says what to
    /// change. Runs before the sink writes anything.
    pub(super) fn check_encryption<'a>(
        &self,
        newest: impl IntoIterator<Item = &'a SegmentManifest>,
    ) -> Result<()> {
        let mut plain: Option<&SegmentManifest> = None;
        let mut used: BTreeSet<&str> = BTreeSet::new();
        let mut example: Option<&SegmentManifest> = None;
        for m in newest {
            match &m.encryption {
                None => plain = plain.or(Some(m)),
                Some(e) => {
                    used.insert(e.key_id.as_str());
                    example = example.or(Some(m));
                }
            }
        }
        match (&self.keys, plain, example) {
            (None, _, Some(m)) => Err(Error::config(format!(
                "{} holds encrypted segments ({} and others, key id {}): give the key \
                 (sink `encryption: {{key_file: …}}`, `--encryption-key-file`) to continue it",
                self.storage,
                m.segment,
                used.iter().copied().collect::<Vec<_>>().join(", ")
            ))),
            (Some(_), Some(m), _) => Err(Error::config(format!(
                "{} holds segments that are not encrypted ({} and maybe others): an encrypted \
                 backup must start in a new location (or leave out `encryption:` to continue \
                 it unencrypted)",
                self.storage, m.segment
            ))),
            (Some(keys), None, Some(m)) if !used.iter().any(|id| keys.has_key(id)) => {
                Err(Error::config(format!(
                    "{}: its newest segments (e.g. {}) were encrypted with key id(s) {}, and \
                     none of the given keys is one of them ({}). Check the key file; to \
                     rotate keys, give the new key first and the old one after it \
                     (`key_files: [new, old]`, or --encryption-key-file twice)",
                    self.storage,
                    m.segment,
                    used.iter().copied().collect::<Vec<_>>().join(", "),
                    keys.describe()
                )))
            }
            _ => Ok(()),
        }
    }
}
