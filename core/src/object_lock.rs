//! S3 Object Lock: what a writer asks for (`object_lock: {mode, days}`), the retention an
//! object version has, and the small XML documents of the S3 calls about them.
//!
//! **Why per-object retention, set after the write.** The storage sink locks each segment
//! and each manifest it writes with a PutObjectRetention of its own, right after the
//! object is complete (the segment before its manifest is written, the manifest right after):
//!
//! - *Per object, not the bucket's default retention*: a default retention would also lock
//!   every version of the lease, the checkpoints and the pending markers, which Ferry
//!   rewrites and deletes all the time (each rewrite a new locked version, kept for N days).
//!   Only segments and manifests are the backup's data; they are written once.
//! - *A call after the write, not the `x-amz-object-lock-*` headers of the PutObject*:
//!   opendal (the storage layer) owns the upload (single PUT or multipart, its retries) and
//!   cannot add headers to it, and S3 refuses unsigned `x-amz-*` headers, so taking over the
//!   upload would mean a second uploader. The cost is a window of one request between the
//!   object's completion and its lock. A crash inside it leaves an unlocked segment without
//!   manifest, which the next run deletes and writes again (locked); or an unlocked manifest,
//!   which the next run finds and locks when it opens (the newest manifest and segment of
//!   each partition are checked).
//!
//! **What a lock means in S3.** Object Lock works on object *versions* of a versioned bucket:
//! a locked version cannot be deleted or overwritten until its retain-until date (in
//! governance mode, unless the caller has `s3:BypassGovernanceRetention` and asks to; in
//! compliance mode not even by the root account). A DELETE without a version id still
//! "succeeds": it adds a delete marker, hiding the object while the locked version stays.
//! So a stolen credential can hide a backup's objects but not destroy them: the versions
//! are restored by deleting the markers.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The Object Lock retention mode of the objects a writer locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can still shorten the lock or delete the
    /// version (asking for it explicitly); everyone else cannot.
    Governance,
    /// Nobody, not even the account's root user, can shorten the lock or delete the version
    /// before its date.
    Compliance,
}

impl LockMode {
    /// The mode as S3 writes it (`GOVERNANCE`, `COMPLIANCE`).
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// The mode from S3's spelling (any case).
    pub fn from_s3(s: &str) -> Option<LockMode> {
        match s.trim().to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        })
    }
}

/// The storage sink's `object_lock:` option: lock every segment and manifest written for
/// `days` days in `mode` (S3 Object Lock; the bucket must have it enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockConfig {
    /// `governance` or `compliance`.
    pub mode: LockMode,
    /// How long each object stays locked after it is written, in days (1 to 36500).
    pub days: u32,
}

/// The longest retention Ferry asks for: 100 years (S3 itself allows more).
pub const MAX_DAYS: u32 = 36_500;

const DAY_MS: i64 = 86_400_000;

impl ObjectLockConfig {
    /// Checks the days and that the location is an S3 bucket; `field` names the option in
    /// errors (`object_lock` in YAML, `--object-lock` on the command line).
    pub fn validate(&self, uri: &str, field: &str) -> Result<()> {
        if self.days == 0 || self.days > MAX_DAYS {
            return Err(Error::config(format!(
                "{field}: days must be between 1 and {MAX_DAYS}, got {}",
                self.days
            )));
        }
        let parsed = crate::storage::StorageUri::parse(uri)?;
        if parsed.scheme != "s3" {
            return Err(Error::config(format!(
                "{field}: S3 Object Lock needs an s3:// location, but the location is {}://…; remove {field} or write to an S3 bucket that has Object Lock enabled",
                parsed.scheme
            )));
        }
        Ok(())
    }

    /// The retention of an object written at `now_ms` (milliseconds since the epoch),
    /// rounded up to a whole second: never shorter than asked.
    pub fn retention_from(&self, now_ms: i64) -> Retention {
        let until = now_ms.saturating_add(i64::from(self.days) * DAY_MS);
        Retention {
            mode: self.mode,
            until_ms: until.div_euclid(1000).saturating_add(1) * 1000,
        }
    }
}

impl FromStr for ObjectLockConfig {
    type Err = String;

    /// `MODE:DAYS`, e.g. `governance:30d` or `compliance:365` (the `d` is optional).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let usage = "give MODE:DAYS, e.g. governance:30d or compliance:365d (mode governance or compliance, days 1 to 36500)";
        let Some((mode, days)) = s.split_once(':') else {
            return Err(format!("'{s}': {usage}"));
        };
        let mode = LockMode::from_s3(mode)
            .ok_or_else(|| format!("'{s}': mode '{mode}' is not governance or compliance"))?;
        let digits = days.trim().strip_suffix('d').unwrap_or(days.trim());
        let days: u32 = digits
            .parse()
            .map_err(|_| format!("'{s}': '{days}' is not a number of days; {usage}"))?;
        if days == 0 || days > MAX_DAYS {
            return Err(format!(
                "'{s}': days must be between 1 and {MAX_DAYS}, got {days}"
            ));
        }
        Ok(ObjectLockConfig { mode, days })
    }
}

/// The retention of one object version: its mode and the time it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Governance or compliance.
    pub mode: LockMode,
    /// When the lock ends, milliseconds since the epoch.
    pub until_ms: i64,
}

impl Retention {
    /// Whether the lock still holds at `now_ms`.
    pub fn in_force(&self, now_ms: i64) -> bool {
        self.until_ms > now_ms
    }

    /// The retain-until date as S3 takes it: RFC 3339 in UTC, whole seconds.
    pub fn until_rfc3339(&self) -> String {
        format_date(self.until_ms)
    }

    /// The PutObjectRetention body.
    pub fn to_xml(&self) -> String {
        format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            self.mode.as_s3(),
            self.until_rfc3339()
        )
    }

    /// A retention from the `x-amz-object-lock-mode` and
    /// `x-amz-object-lock-retain-until-date` of a HeadObject, or the `Mode` and
    /// `RetainUntilDate` of a GetObjectRetention; `None` when either is missing or not
    /// understood.
    pub fn from_parts(mode: Option<&str>, until: Option<&str>) -> Option<Retention> {
        let mode = LockMode::from_s3(mode?)?;
        let until = OffsetDateTime::parse(until?.trim(), &Rfc3339).ok()?;
        let until_ms = i64::try_from(until.unix_timestamp_nanos() / 1_000_000).ok()?;
        Some(Retention { mode, until_ms })
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} until {}", self.mode.as_s3(), self.until_rfc3339())
    }
}

/// One version (or delete marker) of an object in a versioned bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// S3's version id.
    pub version_id: String,
    /// A delete marker, not data.
    pub delete_marker: bool,
    /// The version's Object Lock retention, if it has one (even one that has ended).
    pub retention: Option<Retention>,
}

/// What became of deleting one object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionDelete {
    /// The version is gone (or was already).
    Deleted,
    /// The store refused (the version is locked, or the credentials may not delete
    /// versions); S3's code and message.
    Refused(String),
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (whole seconds, UTC).
fn format_date(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// The text of the first `<tag>…</tag>` in `xml`, entities decoded.
pub(crate) fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(xml_unescape(&xml[start..start + len]))
}

/// Every `<tag>…</tag>` element of `xml`, inner text as it is.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) fn xml_elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let body = &rest[i + open.len()..];
        let Some(j) = body.find(&close) else { break };
        out.push(&body[..j]);
        rest = &body[j + close.len()..];
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Whether a GetObjectLockConfiguration answer says Object Lock is enabled.
pub fn lock_enabled_in(xml: &str) -> bool {
    xml_text(xml, "ObjectLockEnabled").is_some_and(|v| v.trim() == "Enabled")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_takes_mode_and_days() {
        let c: ObjectLockConfig = "governance:30d".parse().expect("parses");
        assert_eq!(
            c,
            ObjectLockConfig {
                mode: LockMode::Governance,
                days: 30
            }
        );
        let c: ObjectLockConfig = "COMPLIANCE:365".parse().expect("parses");
        assert_eq!(c.mode, LockMode::Compliance);
        assert_eq!(c.days, 365);
        for bad in [
            "governance",
            "legal:30d",
            "governance:0d",
            "governance:x",
            "compliance:36501d",
            ":3",
        ] {
            let e = bad.parse::<ObjectLockConfig>().expect_err(bad);
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn yaml_block_and_its_checks() {
        let c: ObjectLockConfig =
            serde_json::from_str(r#"{"mode":"compliance","days":7}"#).expect("parses");
        assert_eq!(c.mode, LockMode::Compliance);
        assert!(
            serde_json::from_str::<ObjectLockConfig>(r#"{"mode":"GOVERNANCE","days":7}"#).is_err()
        );
        assert!(serde_json::from_str::<ObjectLockConfig>(
            r#"{"mode":"governance","days":7,"x":1}"#
        )
        .is_err());
        assert!(c
            .validate("s3://b/p?endpoint=http://h", "object_lock")
            .is_ok());
        let e = c.validate("/tmp/backup", "object_lock").expect_err("local");
        assert!(
            e.to_string().contains(
                "object_lock: S3 Object Lock needs an s3:// location, but the location is file://"
            ),
            "{e}"
        );
        let e = c.validate("gs://b/p", "--object-lock").expect_err("gcs");
        assert!(e.to_string().starts_with("--object-lock:"), "{e}");
        let zero = ObjectLockConfig { days: 0, ..c };
        assert!(zero
            .validate("s3://b/p", "object_lock")
            .unwrap_err()
            .to_string()
            .contains("between 1 and 36500"));
    }

    #[test]
    fn retention_xml_and_dates() {
        let c = ObjectLockConfig {
            mode: LockMode::Governance,
            days: 1,
        };
        // 2026-12-07T13:53:40.250Z + 1 day, rounded up to the second.
        let r = c.retention_from(1_796_651_620_250);
        assert_eq!(r.until_ms, 1_796_738_021_000);
        assert_eq!(r.until_rfc3339(), "2026-12-08T13:53:41Z");
        assert_eq!(
            r.to_xml(),
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>GOVERNANCE</Mode><RetainUntilDate>2026-12-08T13:53:41Z</RetainUntilDate></Retention>"
        );
        assert!(r.in_force(1_796_738_020_999) && !r.in_force(1_796_738_021_000));
        // What moto and S3 answer: fractions, or none.
        let parsed = Retention::from_parts(Some("GOVERNANCE"), Some("2026-12-07T13:53:41.583493Z"))
            .expect("parses");
        assert_eq!(parsed.until_ms, 1_796_651_621_583);
        assert_eq!(
            Retention::from_parts(Some("COMPLIANCE"), Some("2026-12-07T13:53:41Z")),
            Some(Retention {
                mode: LockMode::Compliance,
                until_ms: 1_796_651_621_000
            })
        );
        assert_eq!(Retention::from_parts(Some("GOVERNANCE"), None), None);
        assert_eq!(
            Retention::from_parts(Some("LEGAL"), Some("2026-12-07T13:53:41Z")),
            None
        );
        assert_eq!(
            Retention::from_parts(Some("GOVERNANCE"), Some("tomorrow")),
            None
        );
    }

    #[test]
    fn xml_answers() {
        assert!(lock_enabled_in("<?xml version=\"1.0\"?><ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>"));
        assert!(!lock_enabled_in(
            "<ObjectLockConfiguration></ObjectLockConfiguration>"
        ));
        let xml = "<ListVersionsResult><Version><Key>a&amp;b</Key><VersionId>1</VersionId></Version><DeleteMarker><Key>a&amp;b</Key><VersionId>2</VersionId></DeleteMarker><Version><Key>c</Key><VersionId>3</VersionId></Version></ListVersionsResult>";
        let versions = xml_elements(xml, "Version");
        assert_eq!(versions.len(), 2);
        assert_eq!(xml_text(versions[0], "Key").as_deref(), Some("a&b"));
        assert_eq!(xml_text(versions[1], "VersionId").as_deref(), Some("3"));
        assert_eq!(xml_elements(xml, "DeleteMarker").len(), 1);
        assert_eq!(xml_text(xml, "Missing"), None);
    }
}
