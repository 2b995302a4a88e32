//! Storage through opendal: one URI names a place (local folder, S3, GCS, Azure, memory),
//! and every component reads and writes it through [`Storage`].
//!
//! URIs:
//! - `/path`, `./path`, `file:///path` — a local folder
//! - `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1` — credentials from
//!   the URI (`access_key_id`, `secret_access_key`, `session_token`), else the `AWS_*`
//!   environment variables, else the profile file (`~/.aws/credentials`, `profile=` or
//!   `AWS_PROFILE`); the instance-metadata endpoint only with `credentials=instance`
//! - `gs://bucket/prefix?credential_path=/key.json` — else `GOOGLE_APPLICATION_CREDENTIALS`,
//!   else gcloud's application-default file; the GCE metadata server only with
//!   `credentials=instance`; `endpoint=` and `anonymous=true` for an emulator (fake-gcs-server)
//! - `azblob://container/prefix?account_name=...` — endpoint `https://ACCOUNT.blob.core.windows.net`
//!   unless `endpoint=` (Azurite: `http://127.0.0.1:10000/devstoreaccount1`); key from
//!   `account_key=` or `AZURE_STORAGE_KEY`, or `sas_token=`, or `anonymous=true`, or Azure's
//!   default chain with `credentials=instance`
//! - `memory://name` — in-process, shared by every `Storage` of the same name (tests, demos)

use crate::error::{Error, Result};
use crate::object_lock::{ObjectVersion, Retention, VersionDelete};
use bytes::Bytes;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

#[cfg(feature = "s3")]
mod s3api;

/// A storage location and the operator that reaches it.
///
/// A local folder is not touched until it is written to: reading a folder that does not
/// exist finds nothing (and creates nothing); the folder and its `.ferry-tmp/` are made by
/// the first write. A storage opened with [`Storage::open_read_only`] never writes.
#[derive(Clone)]
pub struct Storage {
    /// The operator; for a local folder, built on first write or once the folder exists.
    op: Arc<OnceLock<Operator>>,
    /// A local folder's path and mode (`None` for every other scheme).
    local: Option<Arc<LocalRoot>>,
    /// The scheme (`file`, `s3`, `gs`, `azblob`, `memory`): a missing credential is named
    /// in its store's words.
    scheme: &'static str,
    /// The URI with its query string removed, safe to print.
    display: String,
    /// An S3 location's client for the calls opendal does not make (Object Lock, versions).
    #[cfg(feature = "s3")]
    s3: Option<Arc<s3api::S3Api>>,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Storage({})", self.display)
    }
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// Folder of a local storage where writes are staged before their rename into place.
pub const TMP_DIR: &str = ".ferry-tmp";

/// A local folder behind a [`Storage`].
#[derive(Debug)]
struct LocalRoot {
    root: PathBuf,
    read_only: bool,
}

impl LocalRoot {
    /// The opendal operator of this folder. A writable one creates the folder and its
    /// `.ferry-tmp/` (opendal does so when building it).
    fn build(&self) -> opendal::Result<Operator> {
        let mut b = opendal::services::Fs::default().root(&self.root.to_string_lossy());
        if !self.read_only {
            // Writes go to a temporary file that is renamed into place when complete, so a
            // crash never leaves a half-written checkpoint, manifest or segment.
            b = b.atomic_write_dir(&self.root.join(TMP_DIR).to_string_lossy());
        }
        Ok(with_layers(Operator::new(b)?, LOCAL_LIMITS))
    }
}

/// Limits of a local folder: the default timeout and no retries. opendal marks every I/O
/// error it has no kind for as temporary, a full disk and a read-only file system among
/// them, so its retry layer would retry each for about a minute (five times, backing off
/// from 1 s), logging a dump per try, before the error no retry fixes reached the user. A
/// local file system has no transient faults worth that wait (the kernel already retries a
/// hard-mounted NFS share); a continuous pipeline is restarted by the runtime anyway.
const LOCAL_LIMITS: Limits = Limits {
    retries: 0,
    timeout: DEFAULT_TIMEOUT,
};

/// Timeouts and retries every operator gets.
/// Retries of a failed request by default (URI parameter `retries`): with the layer's
/// exponential backoff from 1 s, about half a minute of trouble is ridden out per request.
pub const DEFAULT_RETRIES: usize = 5;

/// How long one request may take by default (URI parameter `timeout`): a store that accepts
/// a request and never answers fails it after this long, and the retry layer tries again.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Limits of one request: the whole of a non-streaming operation, and each read or write
/// step of a streaming one (the I/O timeout, at most 30 s and never above the whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    retries: usize,
    timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            retries: DEFAULT_RETRIES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

fn with_layers(op: Operator, limits: Limits) -> Operator {
    // The timeout layer sits inside the retry layer, so a timed-out request is retried
    // (opendal marks its timeout errors temporary) rather than failing the operation.
    let op = op.layer(
        TimeoutLayer::new()
            .with_timeout(limits.timeout)
            .with_io_timeout(limits.timeout.min(Duration::from_secs(30))),
    );
    if limits.retries == 0 {
        return op;
    }
    op.layer(
        RetryLayer::new()
            .with_max_times(limits.retries)
            .with_jitter(),
    )
}

/// The `retries` and `timeout` URI parameters.
fn limits(parsed: &StorageUri, uri: &str) -> Result<Limits> {
    let timeout = match parsed.params.get("timeout") {
        None => DEFAULT_TIMEOUT,
        Some(v) => match humantime::parse_duration(v) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                return Err(Error::config(format!(
                    "{}: timeout={v} must be a duration such as 30s or 2m (how long one request may take before it is retried; default 60s)",
                    redact_query(uri)
                )))
            }
        },
    };
    Ok(Limits {
        retries: retries(parsed, uri)?,
        timeout,
    })
}

/// The `retries` URI parameter (default [`DEFAULT_RETRIES`]).
fn retries(parsed: &StorageUri, uri: &str) -> Result<usize> {
    match parsed.params.get("retries") {
        None => Ok(DEFAULT_RETRIES),
        Some(v) => v.parse().map_err(|_| {
            Error::config(format!(
                "{}: retries={v} must be a whole number (how often a failed request is retried; default {DEFAULT_RETRIES})",
                redact_query(uri)
            ))
        }),
    }
}

/// Whether a local read should find nothing: the folder does not exist (yet).
enum Reach<'a> {
    Operator(&'a Operator),
    Missing,
}

/// A storage URI split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageUri {
    /// `file`, `s3`, `gs`, `azblob` or `memory`.
    pub scheme: String,
    /// Bucket, container or memory name; empty for `file`.
    pub authority: String,
    /// Path (local folder for `file`, key prefix otherwise).
    pub path: String,
    /// Query parameters.
    pub params: BTreeMap<String, String>,
}

impl StorageUri {
    /// Parses a storage URI or a plain local path.
    pub fn parse(uri: &str) -> Result<StorageUri> {
        let uri = uri.trim();
        if uri.is_empty() {
            return Err(Error::config("storage URI is empty"));
        }
        let Some((scheme, rest)) = uri.split_once("://") else {
            // A plain path: a local folder.
            return Ok(StorageUri {
                scheme: "file".into(),
                authority: String::new(),
                path: uri.to_string(),
                params: BTreeMap::new(),
            });
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let mut params = BTreeMap::new();
        if let Some(q) = query {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                params.insert(percent_decode(k)?, percent_decode(v)?);
            }
        }
        let scheme = scheme.to_ascii_lowercase();
        let (authority, path) = if scheme == "file" {
            (String::new(), rest.to_string())
        } else {
            match rest.split_once('/') {
                Some((a, p)) => (a.to_string(), p.to_string()),
                None => (rest.to_string(), String::new()),
            }
        };
        match scheme.as_str() {
            "file" | "s3" | "gs" | "gcs" | "azblob" | "memory" => {}
            other => {
                return Err(Error::config(format!(
                    "unsupported storage scheme '{other}://' in '{}': use a local path, file://, s3://, gs://, azblob:// or memory://",
                    redact_query(uri)
                )))
            }
        }
        if scheme != "file" && scheme != "memory" && authority.is_empty() {
            return Err(Error::config(format!(
                "storage URI '{}' names no bucket: write {scheme}://BUCKET/prefix",
                redact_query(uri)
            )));
        }
        if scheme == "file" && rest.is_empty() {
            return Err(Error::config(
                "file:// URI has no path: write file:///absolute/folder",
            ));
        }
        Ok(StorageUri {
            scheme,
            authority,
            path,
            params,
        })
    }
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
            let v = u8::from_str_radix(hex, 16).map_err(|_| {
                Error::config(format!("bad percent escape in storage URI near '{s}'"))
            })?;
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::config("storage URI query is not UTF-8"))
}

/// The URI without its query string (which may carry credentials).
pub fn redact_query(uri: &str) -> String {
    match uri.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => uri.to_string(),
    }
}

fn memory_operators() -> &'static Mutex<HashMap<String, Operator>> {
    static MEM: OnceLock<Mutex<HashMap<String, Operator>>> = OnceLock::new();
    MEM.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Where an S3 storage takes its credentials from, in this order: `access_key_id` and
/// `secret_access_key` (and `session_token`) in the URI; the `AWS_*` environment variables;
/// the profile file (`~/.aws/credentials`, `AWS_PROFILE` or the URI's `profile`). The
/// cloud's instance-metadata endpoint is asked only when the URI says `credentials=instance`:
/// a run must not reach out to an address the user did not give.
#[cfg(feature = "s3")]
fn s3_credentials(
    mut b: opendal::services::S3,
    p: &BTreeMap<String, String>,
    uri: &str,
) -> Result<opendal::services::S3> {
    match (p.get("access_key_id"), p.get("secret_access_key")) {
        (Some(k), Some(s)) => {
            b = b.access_key_id(k).secret_access_key(s);
            if let Some(t) = p.get("session_token") {
                b = b.session_token(t);
            }
        }
        (None, None) => {}
        _ => {
            return Err(Error::config(format!(
                "storage URI '{}' has only one of access_key_id and secret_access_key: give both, or neither to use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials",
                redact_query(uri)
            )))
        }
    }
    if let Some(profile) = p.get("profile") {
        b = b.profile(profile);
    }
    match p.get("credentials").map(String::as_str) {
        Some("instance") => Ok(b),
        None | Some("static" | "env" | "profile") => Ok(b.disable_ec2_metadata()),
        Some(other) => Err(Error::config(format!(
            "storage URI '{}': credentials={other} is not one of: instance (ask the cloud's instance-metadata endpoint); leave it out to use the URI's keys, AWS_* variables or ~/.aws/credentials",
            redact_query(uri)
        ))),
    }
}

/// Whether a `true`/`false` URI option is set; anything else is a config error.
#[cfg_attr(not(any(feature = "gcs", feature = "azblob")), allow(dead_code))]
fn flag(p: &BTreeMap<String, String>, key: &str, uri: &str) -> Result<bool> {
    match p.get(key).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true" | "") => Ok(true),
        Some(other) => Err(Error::config(format!(
            "storage URI '{}': {key}={other} is not true or false",
            redact_query(uri)
        ))),
    }
}

/// `credentials=instance` (ask the cloud's instance-metadata endpoint) or nothing.
#[cfg_attr(not(any(feature = "gcs", feature = "azblob")), allow(dead_code))]
fn instance_credentials(p: &BTreeMap<String, String>, uri: &str, what: &str) -> Result<bool> {
    match p.get("credentials").map(String::as_str) {
        Some("instance") => Ok(true),
        None => Ok(false),
        Some(other) => Err(Error::config(format!(
            "storage URI '{}': credentials={other} is not one of: instance ({what}); leave it out to use the key the URI or the environment gives",
            redact_query(uri)
        ))),
    }
}

/// A GCS bucket (or an emulator such as fake-gcs-server with `endpoint=` and
/// `anonymous=true`). Credentials: `credential_path=` (a service-account or authorized-user
/// JSON file), else `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's application-default
/// credentials file; the GCE metadata server only with `credentials=instance`.
#[cfg(feature = "gcs")]
fn gcs_operator(parsed: &StorageUri, uri: &str) -> Result<Operator> {
    let p = &parsed.params;
    let mut b = opendal::services::Gcs::default()
        .bucket(&parsed.authority)
        .root(&format!("/{}", parsed.path));
    if let Some(e) = p.get("endpoint") {
        b = b.endpoint(e);
    }
    if let Some(c) = p.get("credential_path") {
        b = b.credential_path(c);
    }
    if flag(p, "anonymous", uri)? {
        // Unsigned requests: an emulator, or a public bucket.
        b = b.skip_signature();
    }
    if !instance_credentials(p, uri, "ask the GCE metadata server for a token")? {
        b = b.disable_vm_metadata();
    }
    Operator::new(b).map_err(|e| build_err(uri, e))
}

/// An Azure Blob container. The endpoint defaults to
/// `https://ACCOUNT.blob.core.windows.net`; an emulator such as Azurite is
/// `endpoint=http://127.0.0.1:10000/devstoreaccount1`. Credentials: `sas_token=`, else the
/// account key (`account_key=` or `AZURE_STORAGE_KEY`), else unsigned requests with
/// `anonymous=true`, else Azure's default chain (service principal variables, workload
/// identity, the Azure CLI, managed identity) with `credentials=instance`. Without any of
/// them the URI is refused: a run must not ask an endpoint the user did not name.
#[cfg(feature = "azblob")]
fn azblob_operator(parsed: &StorageUri, uri: &str) -> Result<Operator> {
    let p = &parsed.params;
    let mut b = opendal::services::Azblob::default()
        .container(&parsed.authority)
        .root(&format!("/{}", parsed.path));
    let account = p.get("account_name").cloned().or_else(|| {
        std::env::var("AZURE_STORAGE_ACCOUNT")
            .ok()
            .filter(|a| !a.is_empty())
    });
    match (p.get("endpoint"), &account) {
        (Some(e), _) => b = b.endpoint(e),
        (None, Some(a)) => b = b.endpoint(&format!("https://{a}.blob.core.windows.net")),
        (None, None) => {
            return Err(Error::config(format!(
                "storage URI '{}' names no Azure storage account: add account_name=NAME (or endpoint=URL), or set AZURE_STORAGE_ACCOUNT",
                redact_query(uri)
            )))
        }
    }
    if let Some(a) = &account {
        b = b.account_name(a);
    }
    let key = p.get("account_key").cloned().or_else(|| {
        std::env::var("AZURE_STORAGE_KEY")
            .ok()
            .filter(|k| !k.is_empty())
    });
    let endpoint_names_account = p
        .get("endpoint")
        .is_some_and(|e| e.contains(".blob.core.windows.net"));
    if key.is_some() && account.is_none() && !endpoint_names_account {
        return Err(Error::config(format!(
            "storage URI '{}': an account key needs the account's name: add account_name=NAME",
            redact_query(uri)
        )));
    }
    let sas = p.get("sas_token");
    let anonymous = flag(p, "anonymous", uri)?;
    let instance = instance_credentials(
        p,
        uri,
        "Azure's default chain: service principal, workload identity, Azure CLI, managed identity",
    )?;
    if let Some(t) = sas {
        b = b.sas_token(t);
    } else if let Some(k) = &key {
        b = b.account_key(k);
    } else if anonymous {
        b = b.skip_signature();
    } else if !instance {
        return Err(Error::config(format!(
            "storage URI '{}' gives no Azure credentials: set AZURE_STORAGE_KEY (or account_key=… in the URI), give sas_token=…, add anonymous=true for a public container or an emulator without keys, or credentials=instance to use Azure's default chain (managed identity and the like)",
            redact_query(uri)
        )));
    }
    Operator::new(b).map_err(|e| build_err(uri, e))
}

fn build_err(uri: &str, e: opendal::Error) -> Error {
    Error::storage(format!("opening {}", redact_query(uri)), e)
}

impl Storage {
    /// Opens the storage a URI (or plain local path) names, to read and write. Touches
    /// neither the network nor the disk; call [`Storage::check`] to fail fast on bad
    /// credentials.
    pub fn from_uri(uri: &str) -> Result<Storage> {
        Self::open(uri, false)
    }

    /// Opens the storage a URI names for reading only (`ls`, `verify`, the `backup`
    /// source): a local folder gets no `.ferry-tmp/`, a missing one is not created, and
    /// every write is refused.
    pub fn open_read_only(uri: &str) -> Result<Storage> {
        Self::open(uri, true)
    }

    fn open(uri: &str, read_only: bool) -> Result<Storage> {
        // Installs the TLS provider and the HTTP transport object stores need (idempotent).
        crate::tls::init();
        let parsed = StorageUri::parse(uri)?;
        let display = redact_query(uri);
        if parsed.scheme == "file" {
            let root = std::path::absolute(&parsed.path).map_err(|e| {
                Error::config(format!("cannot resolve local path '{}': {e}", parsed.path))
            })?;
            return Ok(Storage {
                op: Arc::default(),
                local: Some(Arc::new(LocalRoot { root, read_only })),
                scheme: "file",
                display,
                #[cfg(feature = "s3")]
                s3: None,
            });
        }
        let op = with_layers(remote_operator(&parsed, uri)?, limits(&parsed, uri)?);
        #[cfg(feature = "s3")]
        let s3 = match parsed.scheme.as_str() {
            "s3" => Some(Arc::new(s3api::S3Api::new(&parsed, uri)?)),
            _ => None,
        };
        Ok(Storage {
            op: Arc::new(OnceLock::from(op)),
            local: None,
            scheme: match parsed.scheme.as_str() {
                "s3" => "s3",
                "gs" | "gcs" => "gs",
                "azblob" => "azblob",
                _ => "memory",
            },
            display,
            #[cfg(feature = "s3")]
            s3,
        })
    }

    /// The operator, for reading: `Missing` when this is a local folder that does not
    /// exist (nothing to read, and nothing is created).
    fn reach(&self) -> Result<Reach<'_>> {
        if let Some(op) = self.op.get() {
            return Ok(Reach::Operator(op));
        }
        match &self.local {
            Some(l) if !l.root.exists() => Ok(Reach::Missing),
            _ => self.built().map(Reach::Operator),
        }
    }

    /// The operator, for writing: builds a local folder's (creating it) on first use.
    fn writable(&self) -> Result<&Operator> {
        if self.local.as_ref().is_some_and(|l| l.read_only) {
            return Err(Error::config(format!(
                "{} is opened read-only: this command does not write",
                self.display
            )));
        }
        self.built()
    }

    fn built(&self) -> Result<&Operator> {
        if let Some(op) = self.op.get() {
            return Ok(op);
        }
        let Some(local) = &self.local else {
            return Err(Error::internal(format!("{}: no operator", self.display)));
        };
        if local.read_only && !local.root.exists() {
            // opendal would create it: a reading command must not.
            return Err(Error::config(format!(
                "{}: the folder does not exist",
                self.display
            )));
        }
        let op = local
            .build()
            .map_err(|e| self.fail(format!("opening {}", self.display), e))?;
        Ok(self.op.get_or_init(|| op))
    }

    /// The underlying opendal operator (a local folder's is built, and the folder created
    /// unless read-only, on first use).
    pub fn operator(&self) -> Result<&Operator> {
        match &self.local {
            Some(l) if l.read_only => self.built(),
            _ => self.writable(),
        }
    }

    /// The error of a failed operation. A missing S3 credential becomes a config error that
    /// says how to give one (opendal's says only that signing failed).
    ///
    /// Errors that retrying cannot fix (a missing bucket, no permission, a read-only or full
    /// disk) become one line naming the object, the cause and what to do, instead of the
    /// operator's dump of request details.
    ///
    /// Public so that writers outside this type (the storage sink's segment writers) report
    /// their failures the same way.
    pub fn fail(&self, context: String, e: opendal::Error) -> Error {
        match persistent_cause(&e.to_string(), self.scheme) {
            Some(cause) => Error::config(format!("{context}: {cause}")),
            None => Error::storage(context, e),
        }
    }

    /// The local folder this storage is, if it is one.
    pub fn local_root(&self) -> Option<&Path> {
        self.local.as_deref().map(|l| l.root.as_path())
    }

    /// Verifies the storage answers (credentials, bucket) before any work starts. A local
    /// folder that does not exist yet passes (the first write creates it).
    pub async fn check(&self) -> Result<()> {
        match self.reach()? {
            Reach::Missing => Ok(()),
            Reach::Operator(op) => op
                .check()
                .await
                .map_err(|e| self.fail(format!("checking {}", self.display), e)),
        }
    }

    /// Reads a whole object.
    pub async fn read(&self, path: &str) -> Result<Bytes> {
        let result = match self.reach()? {
            Reach::Operator(op) => op.read(path).await.map(|b| b.to_bytes()),
            Reach::Missing => Err(opendal::Error::new(
                ErrorKind::NotFound,
                "the folder does not exist",
            )),
        };
        result.map_err(|e| self.fail(format!("reading {}/{path}", self.display), e))
    }

    /// Reads an object, or `None` if it does not exist.
    pub async fn read_opt(&self, path: &str) -> Result<Option<Bytes>> {
        let Reach::Operator(op) = self.reach()? else {
            return Ok(None);
        };
        match op.read(path).await {
            Ok(b) => Ok(Some(b.to_bytes())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail(format!("reading {}/{path}", self.display), e)),
        }
    }

    /// The size of an object in bytes, or `None` if it does not exist.
    pub async fn size(&self, path: &str) -> Result<Option<u64>> {
        let Reach::Operator(op) = self.reach()? else {
            return Ok(None);
        };
        match op.stat(path).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail(format!("checking {}/{path}", self.display), e)),
        }
    }

    /// A writer of an object too large to hold at once: object stores upload it in parts
    /// of `part_size` bytes, a local folder stages it and renames it into place on
    /// `close` (an `abort` leaves nothing). Report its failures with [`Storage::fail`].
    pub async fn writer(&self, path: &str, part_size: usize) -> Result<opendal::Writer> {
        let mut w = self.writable()?.writer_with(path);
        if self.local.is_none() {
            w = w.chunk(part_size);
        }
        w.await
            .map_err(|e| self.fail(format!("opening {}/{path}", self.display), e))
    }

    /// Writes (or replaces) an object.
    pub async fn write(&self, path: &str, data: impl Into<Bytes>) -> Result<()> {
        let data: Bytes = data.into();
        self.writable()?
            .write(path, data)
            .await
            .map(|_| ())
            .map_err(|e| self.fail(format!("writing {}/{path}", self.display), e))
    }

    /// Writes an object only if none exists under that name. Returns `false` when one does
    /// with other bytes.
    ///
    /// An object that exists with exactly `data` counts as written (`true`): a create whose
    /// answer was lost (a timeout while the store had already stored it) is sent again by
    /// the retry layer and then finds its own object; that is not another writer.
    pub async fn write_new(&self, path: &str, data: impl Into<Bytes>) -> Result<bool> {
        let data: Bytes = data.into();
        match self
            .writable()?
            .write_with(path, data.clone())
            .if_not_exists(true)
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.kind() == ErrorKind::ConditionNotMatch
                    || e.kind() == ErrorKind::AlreadyExists =>
            {
                let ours = self.read_opt(path).await?.is_some_and(|held| held == data);
                if ours {
                    tracing::debug!(object = %format!("{}/{path}", self.display), "create found the object already holding these bytes (an earlier attempt's answer was lost)");
                }
                Ok(ours)
            }
            Err(e) => Err(self.fail(format!("creating {}/{path}", self.display), e)),
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, path: &str) -> Result<bool> {
        let Reach::Operator(op) = self.reach()? else {
            return Ok(false);
        };
        op.exists(path)
            .await
            .map_err(|e| self.fail(format!("checking {}/{path}", self.display), e))
    }

    /// Deletes an object (no error if it is already gone).
    pub async fn delete(&self, path: &str) -> Result<()> {
        if let Reach::Missing = self.reach()? {
            return Ok(());
        }
        self.writable()?
            .delete(path)
            .await
            .map_err(|e| self.fail(format!("deleting {}/{path}", self.display), e))
    }

    /// Every object under a folder prefix (ending in `/`), recursively, as full paths, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let Reach::Operator(op) = self.reach()? else {
            return Ok(Vec::new());
        };
        let entries = match op.list_with(prefix).recursive(true).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.fail(format!("listing {}/{prefix}", self.display), e)),
        };
        let mut out: Vec<String> = entries
            .into_iter()
            .filter(|e| !e.path().ends_with('/'))
            .map(|e| e.path().to_string())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Whether this is an S3 location (the only kind with Object Lock and the calls below).
    pub fn is_s3(&self) -> bool {
        self.scheme == "s3"
    }

    #[cfg(feature = "s3")]
    fn s3(&self, doing: &str) -> Result<&s3api::S3Api> {
        self.s3.as_deref().ok_or_else(|| {
            Error::config(format!(
                "{}: {doing} needs an s3:// location (S3 Object Lock)",
                self.display
            ))
        })
    }

    #[cfg(not(feature = "s3"))]
    fn s3(&self, _doing: &str) -> Result<std::convert::Infallible> {
        Err(not_built("s3", "s3"))
    }

    /// Aborts the multipart uploads under this S3 location that were started and never
    /// completed (a writer that crashed mid-segment leaves its parts stored and billed, and
    /// opendal does not list them); returns how many. Call it only while no other writer can
    /// be uploading here (under the location's lease). Nothing to do on other storages.
    pub async fn abort_incomplete_uploads(&self) -> Result<usize> {
        if !self.is_s3() {
            return Ok(0);
        }
        #[cfg(feature = "s3")]
        {
            let api = self.s3("aborting unfinished uploads")?;
            let uploads = api.incomplete_uploads().await?;
            for (key, id) in &uploads {
                api.abort_upload(key, id).await?;
            }
            Ok(uploads.len())
        }
        #[cfg(not(feature = "s3"))]
        match self.s3("aborting unfinished uploads")? {}
    }

    /// Whether the bucket has S3 Object Lock enabled; `false` for any other kind of storage.
    pub async fn object_lock_enabled(&self) -> Result<bool> {
        if !self.is_s3() {
            return Ok(false);
        }
        #[cfg(feature = "s3")]
        return self.s3("checking Object Lock")?.object_lock_enabled().await;
        #[cfg(not(feature = "s3"))]
        match self.s3("checking Object Lock")? {}
    }

    /// Whether the bucket keeps object versions (S3 versioning enabled or suspended), so
    /// that [`Storage::delete`] only hides an object behind a delete marker; `false` for
    /// any other kind of storage.
    pub async fn versioned(&self) -> Result<bool> {
        if !self.is_s3() {
            return Ok(false);
        }
        #[cfg(feature = "s3")]
        return self.s3("checking versioning")?.versioned().await;
        #[cfg(not(feature = "s3"))]
        match self.s3("checking versioning")? {}
    }

    /// Locks the current version of an object until `retention.until_ms` (S3
    /// PutObjectRetention); an error on any other storage.
    #[cfg_attr(not(feature = "s3"), allow(unused_variables))]
    pub async fn lock(&self, path: &str, retention: &Retention) -> Result<()> {
        #[cfg(feature = "s3")]
        return self
            .s3("locking objects")?
            .put_retention(path, retention)
            .await;
        #[cfg(not(feature = "s3"))]
        match self.s3("locking objects")? {}
    }

    /// The Object Lock retention of an object's current version (`None`: none, or no such
    /// object, or not S3).
    #[cfg_attr(not(feature = "s3"), allow(unused_variables))]
    pub async fn retention(&self, path: &str) -> Result<Option<Retention>> {
        if !self.is_s3() {
            return Ok(None);
        }
        #[cfg(feature = "s3")]
        return self.s3("reading retention")?.retention(path, None).await;
        #[cfg(not(feature = "s3"))]
        match self.s3("reading retention")? {}
    }

    /// Every version and delete marker of an object in a versioned S3 bucket, each version
    /// with its retention; an error on any other storage.
    #[cfg_attr(not(feature = "s3"), allow(unused_variables))]
    pub async fn versions(&self, path: &str) -> Result<Vec<ObjectVersion>> {
        #[cfg(feature = "s3")]
        return self.s3("listing versions")?.versions(path).await;
        #[cfg(not(feature = "s3"))]
        match self.s3("listing versions")? {}
    }

    /// Deletes one version of an object for good (versioned S3 buckets); a refusal of the
    /// store (a locked version) is [`VersionDelete::Refused`].
    #[cfg_attr(not(feature = "s3"), allow(unused_variables))]
    pub async fn delete_version(&self, path: &str, version_id: &str) -> Result<VersionDelete> {
        if self.local.as_ref().is_some_and(|l| l.read_only) {
            return Err(Error::config(format!(
                "{} is opened read-only: this command does not write",
                self.display
            )));
        }
        #[cfg(feature = "s3")]
        return self
            .s3("deleting versions")?
            .delete_version(path, version_id)
            .await;
        #[cfg(not(feature = "s3"))]
        match self.s3("deleting versions")? {}
    }
}

/// What to tell the user about an error no retry fixes, from the operator's message;
/// `None` for any other error (it keeps its details).
fn persistent_cause(message: &str, scheme: &str) -> Option<&'static str> {
    let has = |needle: &str| message.contains(needle);
    if has("signing credential") {
        match scheme {
            "s3" => return Some("no S3 credentials found: give access_key_id=…&secret_access_key=… in the URI, set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a profile of ~/.aws/credentials (profile=NAME or AWS_PROFILE); add credentials=instance to the URI to ask the cloud's instance-metadata endpoint"),
            "gs" => return Some("no GCS credentials found: give credential_path=/key.json in the URI, set GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth application-default login`; add credentials=instance to the URI to ask the GCE metadata server, or anonymous=true for an emulator or a public bucket"),
            "azblob" => return Some("no Azure credentials found: set AZURE_STORAGE_KEY (or account_key=… in the URI), give sas_token=…, or add anonymous=true for an emulator or a public container"),
            _ => {}
        }
    }
    if has("NoSuchBucket") {
        return Some("the bucket does not exist: create it, or fix the bucket name in the URI");
    }
    if has("AccessDenied")
        || has("InvalidAccessKeyId")
        || has("SignatureDoesNotMatch")
        || has("AuthorizationFailure")
        || has("AuthenticationFailed")
    {
        return Some("access denied by the object store: check the credentials and that they may read and write this bucket and prefix");
    }
    if has("No space left on device") || has("os error 28") {
        return Some("the disk is full: free space there, or write to another location");
    }
    if has("Read-only file system") || has("os error 30") {
        return Some("the file system is read-only: write to a writable location");
    }
    if has("Permission denied")
        || has("Operation not permitted")
        || has("os error 13")
        || has("os error 1)")
    {
        return Some("permission denied: make the folder writable for this user, or write to another location");
    }
    None
}

/// The error for an object store this build was compiled without.
#[allow(dead_code)] // used only when a store's feature is off
fn not_built(scheme: &str, feature: &str) -> Error {
    Error::config(format!(
        "this build of Ferry cannot open {scheme}:// storage: build ferry-core with the cargo feature `{feature}` (on by default)"
    ))
}

/// The operator of an object store (or the in-process memory store).
fn remote_operator(parsed: &StorageUri, uri: &str) -> Result<Operator> {
    #[cfg_attr(not(feature = "s3"), allow(unused_variables))]
    let p = &parsed.params;
    let op = match parsed.scheme.as_str() {
        #[cfg(feature = "s3")]
        "s3" => {
            let mut b = opendal::services::S3::default()
                .bucket(&parsed.authority)
                .root(&format!("/{}", parsed.path));
            if let Some(e) = p.get("endpoint") {
                b = b.endpoint(e);
            }
            let region = p
                .get("region")
                .cloned()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .unwrap_or_else(|| "us-east-1".to_string());
            b = b.region(&region);
            if p.get("virtual_host_style").map(String::as_str) == Some("true") {
                b = b.enable_virtual_host_style();
            }
            b = s3_credentials(b, p, uri)?;
            Operator::new(b).map_err(|e| build_err(uri, e))?
        }
        #[cfg(feature = "gcs")]
        "gs" | "gcs" => gcs_operator(parsed, uri)?,
        #[cfg(feature = "azblob")]
        "azblob" => azblob_operator(parsed, uri)?,
        "memory" => {
            let key = format!("{}/{}", parsed.authority, parsed.path);
            let mut mem = memory_operators().lock().unwrap_or_else(|p| p.into_inner());
            match mem.get(&key) {
                Some(op) => op.clone(),
                None => {
                    let op = Operator::new(opendal::services::Memory::default())
                        .map_err(|e| build_err(uri, e))?;
                    mem.insert(key, op.clone());
                    op
                }
            }
        }
        #[cfg(not(feature = "s3"))]
        "s3" => return Err(not_built("s3", "s3")),
        #[cfg(not(feature = "gcs"))]
        "gs" | "gcs" => return Err(not_built(&parsed.scheme, "gcs")),
        #[cfg(not(feature = "azblob"))]
        "azblob" => return Err(not_built("azblob", "azblob")),
        other => return Err(Error::config(format!("unsupported storage scheme {other}"))),
    };
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uris() {
        let u =
            StorageUri::parse("s3://b/pre/fix?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu")
                .unwrap();
        assert_eq!(u.scheme, "s3");
        assert_eq!(u.authority, "b");
        assert_eq!(u.path, "pre/fix");
        assert_eq!(u.params["endpoint"], "http://127.0.0.1:9000");
        assert_eq!(StorageUri::parse("/tmp/x").unwrap().scheme, "file");
        assert_eq!(StorageUri::parse("file:///tmp/x").unwrap().path, "/tmp/x");
        assert!(StorageUri::parse("ftp://x").is_err());
        assert!(StorageUri::parse("s3:///nobucket").is_err());
        assert_eq!(redact_query("s3://b/p?secret=1"), "s3://b/p?…");
    }

    #[test]
    fn gcs_and_azure_options_are_checked_when_opening() {
        let err = |uri: &str| Storage::from_uri(uri).unwrap_err().to_string();
        assert!(Storage::from_uri("gs://b/p?endpoint=http://127.0.0.1:1&anonymous=true").is_ok());
        assert!(err("gs://b/p?anonymous=maybe").contains("anonymous=maybe is not true or false"));
        assert!(err("gs://b/p?credentials=vm").contains("credentials=vm is not one of"));
        assert!(Storage::from_uri("azblob://c/p?account_name=a&anonymous=true").is_ok());
        assert!(Storage::from_uri(
            "azblob://c/p?endpoint=http://127.0.0.1:1/dev&account_name=dev&account_key=a2V5"
        )
        .is_ok());
        assert!(
            err("azblob://c/p?endpoint=http://127.0.0.1:1/dev&account_key=a2V5")
                .contains("add account_name=NAME")
        );
        if std::env::var_os("AZURE_STORAGE_ACCOUNT").is_none() {
            assert!(err("azblob://c/p").contains("names no Azure storage account"));
        }
        if std::env::var_os("AZURE_STORAGE_KEY").is_none() {
            assert!(err("azblob://c/p?account_name=a").contains("gives no Azure credentials"));
        }
    }

    #[tokio::test]
    async fn memory_is_shared_by_name_and_create_only_refuses_twice() {
        let a = Storage::from_uri("memory://shared-test").unwrap();
        let b = Storage::from_uri("memory://shared-test").unwrap();
        assert!(a.write_new("x/1.json", "one").await.unwrap());
        assert!(!b.write_new("x/1.json", "two").await.unwrap());
        assert_eq!(b.read("x/1.json").await.unwrap(), Bytes::from("one"));
        assert_eq!(b.list("x/").await.unwrap(), vec!["x/1.json".to_string()]);
        assert_eq!(a.read_opt("nope").await.unwrap(), None);
    }

    #[test]
    fn retries_and_timeout_come_from_the_uri() {
        let limits_of = |uri: &str| limits(&StorageUri::parse(uri).unwrap(), uri);
        assert_eq!(limits_of("s3://b/p").unwrap(), Limits::default());
        let l = limits_of("s3://b/p?timeout=2s&retries=1").unwrap();
        assert_eq!((l.timeout, l.retries), (Duration::from_secs(2), 1));
        for bad in ["s3://b/p?timeout=soon", "s3://b/p?timeout=0s"] {
            let e = limits_of(bad).unwrap_err().to_string();
            assert!(e.contains("timeout=") && e.contains("duration"), "{e}");
        }
    }

    #[test]
    fn persistent_errors_get_one_line_with_what_to_do() {
        let bucket = "ConfigInvalid (persistent) at list, context: { uri: http://h/b } => S3Error { code: \"NoSuchBucket\" }";
        assert!(persistent_cause(bucket, "s3")
            .unwrap()
            .contains("create it"));
        let full = "Unexpected at write => io error, source: No space left on device (os error 28)";
        assert!(persistent_cause(full, "file")
            .unwrap()
            .contains("disk is full"));
        let ro =
            "Unexpected => create root dir failed, source: Read-only file system (os error 30)";
        assert!(persistent_cause(ro, "file").unwrap().contains("read-only"));
        let perm =
            "Unexpected => create root dir failed, source: Operation not permitted (os error 1)";
        assert!(persistent_cause(perm, "file")
            .unwrap()
            .contains("permission denied"));
        let creds = "PermissionDenied => failed to load signing credential";
        assert!(persistent_cause(creds, "s3")
            .unwrap()
            .contains("AWS_ACCESS_KEY_ID"));
        assert_eq!(
            persistent_cause("Unexpected (temporary) => 503 Slow Down", "s3"),
            None
        );
        let gcs = "Unexpected (persistent) at read => signing http request, source: failed to load signing credential";
        assert!(persistent_cause(gcs, "gs")
            .unwrap()
            .contains("GOOGLE_APPLICATION_CREDENTIALS"));
        let azure = "PermissionDenied (persistent) at read => AzblobError { code: \"AuthorizationFailure\" }";
        assert!(persistent_cause(azure, "azblob")
            .unwrap()
            .contains("access denied"));
    }

    #[tokio::test]
    async fn reading_a_missing_folder_creates_nothing_and_writing_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("later");
        let s = Storage::from_uri(root.to_str().unwrap()).unwrap();
        s.check().await.unwrap();
        assert_eq!(s.read_opt("ferry.json").await.unwrap(), None);
        assert!(s.list("topics/").await.unwrap().is_empty());
        assert!(!root.exists(), "reading created the folder");
        let ro = Storage::open_read_only(root.to_str().unwrap()).unwrap();
        assert!(
            ro.write("x", "y").await.is_err(),
            "a read-only storage wrote"
        );
        assert!(!root.exists());
        s.write("a/b", "c").await.unwrap();
        assert!(root.join("a/b").is_file() && root.join(TMP_DIR).is_dir());
        assert_eq!(ro.read("a/b").await.unwrap(), Bytes::from("c"));
    }

    #[tokio::test]
    async fn local_folder_create_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::from_uri(dir.path().to_str().unwrap()).unwrap();
        assert!(s.write_new("a/b.bin", vec![1u8, 2]).await.unwrap());
        assert!(!s.write_new("a/b.bin", vec![3u8]).await.unwrap());
        // The same bytes again: a retried create whose first answer was lost.
        assert!(s.write_new("a/b.bin", vec![1u8, 2]).await.unwrap());
        assert_eq!(s.read("a/b.bin").await.unwrap(), Bytes::from(vec![1u8, 2]));
        assert_eq!(s.list("a/").await.unwrap(), vec!["a/b.bin".to_string()]);
        assert_eq!(
            std::fs::read(dir.path().join("a/b.bin")).unwrap(),
            vec![1, 2]
        );
    }
}
