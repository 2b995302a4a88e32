//! The few S3 calls opendal does not make: the bucket's Object Lock and versioning state,
//! PutObjectRetention, an object version's retention (HeadObject), ListObjectVersions,
//! DeleteObject of one version, and ListMultipartUploads / AbortMultipartUpload (what a
//! crashed writer's unfinished uploads leave: invisible, but billed).
//!
//! They are signed like opendal's own requests (the same reqsign crates, the same
//! credential rules as [`super::s3_credentials`]: the URI's keys, then `AWS_*` variables and
//! the profile file, the instance-metadata endpoint only with `credentials=instance`) and
//! sent through opendal's HTTP transport (reqwest, rustls with ring), with a timeout and a
//! few retries of their own since opendal's layers do not wrap them.
//!
//! The retention of a version is read with HeadObject (its `x-amz-object-lock-*` headers,
//! which S3 returns to callers allowed `s3:GetObjectRetention`) rather than
//! GetObjectRetention: the answer is the same, and moto (the S3 emulator of the tests)
//! implements only the former.

use super::{persistent_cause, StorageUri};
use crate::error::{Error, Result};
use crate::object_lock::{
    lock_enabled_in, xml_elements, xml_text, ObjectVersion, Retention, VersionDelete,
};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use md5::Digest as _;
use opendal::{Buffer, HttpTransporter};
use reqsign_aws_v4::{
    Credential, DefaultCredentialProvider, RequestSigner, StaticCredentialProvider,
};
use reqsign_core::{Context, OsEnv, ProvideCredentialChain, Signer};
use std::fmt;
use std::time::Duration;

/// Attempts of one call (the first and the retries of a network failure or a 5xx answer).
const ATTEMPTS: u32 = 4;
/// The longest one attempt may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A signed S3 client for one bucket and key prefix.
pub struct S3Api {
    transport: HttpTransporter,
    signer: Signer<Credential>,
    /// `http://host:port/bucket` (path style) or `https://bucket.host` (virtual host style).
    base: String,
    /// The bucket, for the query of bucket-level calls in path style.
    bucket: String,
    /// The key prefix of the location, empty or ending in `/`.
    root: String,
    /// The location, safe to print.
    display: String,
}

impl fmt::Debug for S3Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3Api({})", self.display)
    }
}

/// An HTTP answer, body read.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn code(&self) -> String {
        xml_text(&String::from_utf8_lossy(&self.body), "Code").unwrap_or_default()
    }
}

/// Percent-encodes a key for a URI path: everything but unreserved characters and `/`.
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl S3Api {
    /// The client of an `s3://` location; touches no network.
    pub(super) fn new(parsed: &StorageUri, uri: &str) -> Result<S3Api> {
        let p = &parsed.params;
        let region = p
            .get("region")
            .cloned()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_string());
        // opendal's order: the URI's endpoint, else AWS_ENDPOINT_URL and its aliases, else AWS.
        let endpoint = p
            .get("endpoint")
            .cloned()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT").ok())
            .or_else(|| std::env::var("AWS_S3_ENDPOINT").ok())
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let endpoint = endpoint.trim_end_matches('/');
        let bucket = parsed.authority.clone();
        let base = if p.get("virtual_host_style").map(String::as_str) == Some("true") {
            match endpoint.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
                None => format!("https://{bucket}.{endpoint}"),
            }
        } else {
            format!("{endpoint}/{bucket}")
        };
        let root = parsed.path.trim_matches('/');
        let root = if root.is_empty() {
            String::new()
        } else {
            format!("{root}/")
        };

        // The credential chain of opendal's S3 service with the options Ferry gives it.
        let mut defaults = DefaultCredentialProvider::builder();
        if let Some(profile) = p.get("profile").filter(|v| !v.is_empty()) {
            defaults = defaults.with_profile(profile);
        }
        if p.get("credentials").map(String::as_str) != Some("instance") {
            defaults = defaults.no_imds();
        }
        let mut chain = ProvideCredentialChain::new().push(defaults.build());
        if let (Some(k), Some(s)) = (p.get("access_key_id"), p.get("secret_access_key")) {
            let fixed = match p.get("session_token") {
                Some(t) => StaticCredentialProvider::new(k, s).with_session_token(t),
                None => StaticCredentialProvider::new(k, s),
            };
            chain = chain.push_front(fixed);
        }
        let transport = HttpTransporter::default();
        let ctx = Context::new()
            .with_file_read(reqsign_file_read_tokio::TokioFileRead)
            .with_env(OsEnv)
            .with_http_send(transport.clone());
        Ok(S3Api {
            transport,
            signer: Signer::new(ctx, chain, RequestSigner::new("s3", &region)),
            base,
            bucket,
            root,
            display: super::redact_query(uri),
        })
    }

    /// Sends one signed request, retrying network failures and 5xx answers.
    async fn call(
        &self,
        method: Method,
        key: Option<&str>,
        query: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
        what: &str,
    ) -> Result<Answer> {
        let mut url = match key {
            Some(k) => format!(
                "{}/{}",
                self.base,
                encode(&format!("{}{k}", self.root), true)
            ),
            None => format!("{}/", self.base),
        };
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let payload = hex(ring::digest::digest(&ring::digest::SHA256, &body).as_ref());
        let mut delay = Duration::from_millis(250);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut builder = Request::builder()
                .method(method.clone())
                .uri(&url)
                .header("x-amz-content-sha256", &payload);
            if !body.is_empty() || method == Method::PUT {
                builder = builder.header(http::header::CONTENT_LENGTH, body.len());
            }
            for (name, value) in headers {
                builder = builder.header(*name, value);
            }
            let (mut parts, ()) = builder
                .body(())
                .map_err(|e| Error::internal(format!("{what}: building the request: {e}")))?
                .into_parts();
            if let Err(e) = self.signer.sign(&mut parts, None).await {
                if e.is_retryable() && attempt < ATTEMPTS {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    continue;
                }
                let cause = persistent_cause("signing credential", "s3").unwrap_or_default();
                return Err(Error::config(format!("{what}: {cause} ({e})")));
            }
            // reqwest sets Host from the URI (opendal does the same).
            parts.headers.remove(http::header::HOST);
            let request = Request::from_parts(parts, Buffer::from(body.clone()));
            match tokio::time::timeout(TIMEOUT, self.transport.send(request)).await {
                Ok(Ok(resp)) => {
                    let (parts, buf) = resp.into_parts();
                    let answer = Answer {
                        status: parts.status,
                        headers: parts.headers,
                        body: buf.to_bytes(),
                    };
                    let again = answer.status.is_server_error()
                        || answer.status == StatusCode::TOO_MANY_REQUESTS;
                    if !again || attempt >= ATTEMPTS {
                        return Ok(answer);
                    }
                }
                Ok(Err(e)) if !e.is_temporary() || attempt >= ATTEMPTS => {
                    return Err(Error::storage(what.to_string(), e))
                }
                // A temporary failure, tried again below.
                Ok(Err(_)) => {}
                Err(_) if attempt >= ATTEMPTS => {
                    return Err(Error::storage(
                        what.to_string(),
                        opendal::Error::new(
                            opendal::ErrorKind::Unexpected,
                            format!("no answer within {} s", TIMEOUT.as_secs()),
                        )
                        .set_temporary(),
                    ))
                }
                Err(_) => {}
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }

    /// The error of an answer that is not a success, with S3's code and message.
    fn failure(&self, what: &str, a: &Answer) -> Error {
        let body = String::from_utf8_lossy(&a.body);
        let code = xml_text(&body, "Code").unwrap_or_else(|| a.status.to_string());
        let message = xml_text(&body, "Message").unwrap_or_default();
        let text = format!("{code}: {message} (HTTP {})", a.status.as_u16());
        if let Some(cause) = persistent_cause(&text, "s3") {
            return Error::config(format!("{what}: {cause} ({text})"));
        }
        let kind = match a.status {
            StatusCode::FORBIDDEN => opendal::ErrorKind::PermissionDenied,
            StatusCode::NOT_FOUND => opendal::ErrorKind::NotFound,
            _ => opendal::ErrorKind::Unexpected,
        };
        let mut e = opendal::Error::new(kind, text);
        if a.status.is_server_error() || a.status == StatusCode::TOO_MANY_REQUESTS {
            e = e.set_temporary();
        }
        Error::storage(what.to_string(), e)
    }

    fn bucket_what(&self, call: &str) -> String {
        format!("{call} of bucket '{}' ({})", self.bucket, self.display)
    }

    /// Whether the bucket has Object Lock enabled (GetObjectLockConfiguration). A store
    /// that does not implement the call (`NotImplemented`) has none.
    pub async fn object_lock_enabled(&self) -> Result<bool> {
        let what = self.bucket_what("GetObjectLockConfiguration");
        let a = self
            .call(Method::GET, None, "object-lock=", &[], Bytes::new(), &what)
            .await?;
        if a.status.is_success() {
            return Ok(lock_enabled_in(&String::from_utf8_lossy(&a.body)));
        }
        match a.code().as_str() {
            "ObjectLockConfigurationNotFoundError" | "NotImplemented" => Ok(false),
            _ => Err(self.failure(&what, &a)),
        }
    }

    /// Whether the bucket keeps object versions (versioning enabled or suspended, so
    /// versions may exist): a DELETE without a version id then only adds a delete marker.
    pub async fn versioned(&self) -> Result<bool> {
        let what = self.bucket_what("GetBucketVersioning");
        let a = self
            .call(Method::GET, None, "versioning=", &[], Bytes::new(), &what)
            .await?;
        if !a.status.is_success() {
            return Err(self.failure(&what, &a));
        }
        let status = xml_text(&String::from_utf8_lossy(&a.body), "Status").unwrap_or_default();
        Ok(matches!(status.trim(), "Enabled" | "Suspended"))
    }

    /// Locks the current version of `path` (PutObjectRetention).
    pub async fn put_retention(&self, path: &str, retention: &Retention) -> Result<()> {
        let what = format!(
            "locking {}/{path} ({retention}, PutObjectRetention)",
            self.display
        );
        let body = Bytes::from(retention.to_xml());
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
        let headers = [
            ("content-md5", md5),
            ("content-type", "application/xml".to_string()),
        ];
        let a = self
            .call(Method::PUT, Some(path), "retention=", &headers, body, &what)
            .await?;
        if a.status.is_success() {
            return Ok(());
        }
        if a.code() == "InvalidRequest"
            && String::from_utf8_lossy(&a.body).contains("ObjectLockConfiguration")
        {
            return Err(Error::config(format!(
                "{what}: bucket '{}' does not have S3 Object Lock enabled",
                self.bucket
            )));
        }
        Err(self.failure(&what, &a))
    }

    /// The retention of `path`'s current version, or of one version; `None` when it has
    /// none, or the version is gone or a delete marker (HeadObject).
    pub async fn retention(&self, path: &str, version: Option<&str>) -> Result<Option<Retention>> {
        let what = format!("reading the retention of {}/{path}", self.display);
        let query = version.map_or(String::new(), |v| format!("versionId={}", encode(v, false)));
        let a = self
            .call(Method::HEAD, Some(path), &query, &[], Bytes::new(), &what)
            .await?;
        if a.status == StatusCode::NOT_FOUND || a.status == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(None);
        }
        if !a.status.is_success() {
            return Err(self.failure(&what, &a));
        }
        let header = |n: &str| a.headers.get(n).and_then(|v| v.to_str().ok());
        Ok(Retention::from_parts(
            header("x-amz-object-lock-mode"),
            header("x-amz-object-lock-retain-until-date"),
        ))
    }

    /// Every version and delete marker of exactly `path` (ListObjectVersions), each
    /// version with its retention.
    pub async fn versions(&self, path: &str) -> Result<Vec<ObjectVersion>> {
        let what = format!("listing the versions of {}/{path}", self.display);
        let full = format!("{}{path}", self.root);
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = format!("prefix={}&versions=", encode(&full, false));
            if let Some((k, v)) = &markers {
                query = format!(
                    "key-marker={}&prefix={}&version-id-marker={}&versions=",
                    encode(k, false),
                    encode(&full, false),
                    encode(v, false)
                );
            }
            let a = self
                .call(Method::GET, None, &query, &[], Bytes::new(), &what)
                .await?;
            if !a.status.is_success() {
                return Err(self.failure(&what, &a));
            }
            let xml = String::from_utf8_lossy(&a.body).into_owned();
            for (tag, delete_marker) in [("Version", false), ("DeleteMarker", true)] {
                for v in xml_elements(&xml, tag) {
                    if xml_text(v, "Key").as_deref() != Some(full.as_str()) {
                        continue;
                    }
                    let Some(id) = xml_text(v, "VersionId") else {
                        continue;
                    };
                    out.push(ObjectVersion {
                        version_id: id,
                        delete_marker,
                        retention: None,
                    });
                }
            }
            let truncated = xml_text(&xml, "IsTruncated").is_some_and(|t| t.trim() == "true");
            match (
                truncated,
                xml_text(&xml, "NextKeyMarker"),
                xml_text(&xml, "NextVersionIdMarker"),
            ) {
                (true, Some(k), Some(v)) if markers.as_ref() != Some(&(k.clone(), v.clone())) => {
                    markers = Some((k, v))
                }
                _ => break,
            }
        }
        for v in out.iter_mut().filter(|v| !v.delete_marker) {
            v.retention = self.retention(path, Some(&v.version_id)).await?;
        }
        Ok(out)
    }

    /// Multipart uploads under the location's prefix that were started and never completed
    /// or aborted (ListMultipartUploads): each key (relative to the location) with its
    /// upload id.
    pub async fn incomplete_uploads(&self) -> Result<Vec<(String, String)>> {
        let what = format!(
            "listing the unfinished multipart uploads of {}",
            self.display
        );
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = format!("prefix={}&uploads=", encode(&self.root, false));
            if let Some((k, u)) = &markers {
                query = format!(
                    "key-marker={}&prefix={}&upload-id-marker={}&uploads=",
                    encode(k, false),
                    encode(&self.root, false),
                    encode(u, false)
                );
            }
            let a = self
                .call(Method::GET, None, &query, &[], Bytes::new(), &what)
                .await?;
            if !a.status.is_success() {
                return Err(self.failure(&what, &a));
            }
            let xml = String::from_utf8_lossy(&a.body).into_owned();
            for u in xml_elements(&xml, "Upload") {
                if let (Some(key), Some(id)) = (xml_text(u, "Key"), xml_text(u, "UploadId")) {
                    if let Some(relative) = key.strip_prefix(&self.root) {
                        out.push((relative.to_string(), id));
                    }
                }
            }
            let truncated = xml_text(&xml, "IsTruncated").is_some_and(|t| t.trim() == "true");
            match (
                truncated,
                xml_text(&xml, "NextKeyMarker"),
                xml_text(&xml, "NextUploadIdMarker"),
            ) {
                (true, Some(k), Some(u)) if markers.as_ref() != Some(&(k.clone(), u.clone())) => {
                    markers = Some((k, u))
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Aborts one unfinished multipart upload of `path` (its parts are freed); one already
    /// gone is not an error.
    pub async fn abort_upload(&self, path: &str, upload_id: &str) -> Result<()> {
        let what = format!("aborting an unfinished upload of {}/{path}", self.display);
        let query = format!("uploadId={}", encode(upload_id, false));
        let a = self
            .call(Method::DELETE, Some(path), &query, &[], Bytes::new(), &what)
            .await?;
        if a.status.is_success() || a.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(self.failure(&what, &a))
    }

    /// Deletes one version (or delete marker) of `path` for good. A version S3 refuses to
    /// delete (locked, or no `s3:DeleteObjectVersion` permission) is
    /// [`VersionDelete::Refused`], not an error.
    pub async fn delete_version(&self, path: &str, version_id: &str) -> Result<VersionDelete> {
        let what = format!("deleting version {version_id} of {}/{path}", self.display);
        let query = format!("versionId={}", encode(version_id, false));
        let a = self
            .call(Method::DELETE, Some(path), &query, &[], Bytes::new(), &what)
            .await?;
        if a.status.is_success() || a.status == StatusCode::NOT_FOUND {
            return Ok(VersionDelete::Deleted);
        }
        if a.status == StatusCode::FORBIDDEN {
            let body = String::from_utf8_lossy(&a.body);
            let code = xml_text(&body, "Code").unwrap_or_else(|| "AccessDenied".into());
            let message = xml_text(&body, "Message").unwrap_or_default();
            return Ok(VersionDelete::Refused(format!("{code}: {message}")));
        }
        Err(self.failure(&what, &a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_query_values_are_percent_encoded() {
        assert_eq!(
            encode("topics/a.b_c-d~/0/0001.log", true),
            "topics/a.b_c-d~/0/0001.log"
        );
        assert_eq!(encode("a b/c+d", true), "a%20b/c%2Bd");
        assert_eq!(encode("p/x", false), "p%2Fx");
    }

    #[test]
    fn urls_follow_the_uri() {
        let api = |uri: &str| S3Api::new(&StorageUri::parse(uri).expect("uri"), uri).expect("api");
        let a = api("s3://bkt/pre/fix/?endpoint=http://127.0.0.1:19000/&region=eu-west-1");
        assert_eq!(a.base, "http://127.0.0.1:19000/bkt");
        assert_eq!(a.root, "pre/fix/");
        let v = api("s3://bkt?endpoint=https://s3.example.com&virtual_host_style=true");
        assert_eq!(v.base, "https://bkt.s3.example.com");
        assert_eq!(v.root, "");
    }
}
