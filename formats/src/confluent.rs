//! Confluent Schema-Registry Avro values (`value: {as: avro, …}` of the `parquet` and `avro`
//! formats): the wire format, the writer schemas, and the decoding of record values into
//! Avro values of one reader schema per topic.
//!
//! ```yaml
//! value:
//!   as: avro
//!   registry:                      # a Confluent Schema Registry (or compatible)
//!     url: http://registry:8081
//!     username: ${REGISTRY_USER}   # optional: HTTP basic auth
//!     password: ${REGISTRY_PASSWORD}
//!   schemas: /etc/ferry/schemas    # and/or writer schemas as <id>.avsc files (air-gapped)
//!   schema_id: 42                  # optional: the reader schema (default: see below)
//!   # subject: orders-value        # or: the latest version of a registry subject
//!   column: value_avro             # the default
//!   on_error: "null"               # or: fail, dead_letter
//! ```
//!
//! **Wire format.** A value is the magic byte `0`, the writer schema id (4 bytes, big
//! endian) and the Avro binary datum. The datum is decoded with the writer schema and then
//! resolved to the reader schema (Avro schema resolution: fields matched by name, missing
//! ones take their defaults, extra ones are dropped, numbers are promoted, enum symbols
//! matched by name, union branches chosen by type). Bytes left after the datum make the
//! value undecodable (they mean a wrong writer schema).
//!
//! **Schemas.** A writer schema is looked up by id in `schemas:` (`<dir>/<id>.avsc`) first,
//! then in the registry (`GET {url}/schemas/ids/{id}`), once per id and run (cached).
//! Named types defined inside a schema may be referred to by name anywhere in it; Schema
//! Registry `references` (types of other subjects) are not supported, and neither are
//! PROTOBUF or JSON schemas: values with such ids are errors, handled by `on_error`.
//! Registry lookups happen in [`AvroValues::prepare`], which the storage sink awaits before
//! it encodes a batch (encoders are synchronous); `schemas:` files are also read by the
//! encoders themselves when a schema is missing from the cache.
//!
//! **Reader schema.** `schema_id: N` names it, or `subject: S`: the latest version of the
//! registry subject S (`GET {url}/subjects/S/versions/latest`, once per run; an unknown
//! subject stops the pipeline); without either, the reader schema of a topic is
//! the writer schema of the first value of that topic this run decodes, and stays fixed for
//! the run (logged at info). Its fields become the typed columns (it must be a record), so
//! setting `schema_id` keeps the columns the same from run to run. A segment written
//! entirely before its topic had a reader schema (only tombstones and undecodable values
//! so far) has no typed column.
//!
//! **Errors.** A null value (a tombstone) gives a null struct, never an error. A value not
//! in the wire format, with an unknown schema id, that does not decode or does not resolve
//! to the reader schema: with `on_error: null` (the default) a null struct; with
//! `on_error: fail` the segment fails, naming topic, partition, offset and the reason; with
//! `on_error: dead_letter` a null struct, and the record goes with the reason to the
//! storage sink's dead-letter files. The raw `value` is kept in every case. Transport
//! failures and refused credentials of the registry are not value errors: they fail the
//! pipeline (after three attempts for transient failures).

use crate::parquet::json::OnError;
use apache_avro::types::Value;
use apache_avro::Schema;
use ferry_core::{Batch, Error, Record, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

/// The magic byte that starts a value in the Confluent wire format.
pub const MAGIC: u8 = 0;

/// Length of the wire-format header: the magic byte and the 4-byte schema id.
pub const HEADER_LEN: usize = 5;

/// Default name of the struct column (Parquet) or field (Avro) of the decoded values.
pub const DEFAULT_COLUMN: &str = "value_avro";

fn default_column() -> String {
    DEFAULT_COLUMN.to_string()
}

/// Where a Confluent Schema Registry is, and how to log in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL, `http://` or `https://` (e.g. `http://registry:8081`, or with a path
    /// prefix); schemas are read from `{url}/schemas/ids/{id}`.
    pub url: String,
    /// User name of HTTP basic auth (e.g. a Confluent Cloud API key).
    #[serde(default)]
    pub username: Option<String>,
    /// Password of HTTP basic auth (e.g. a Confluent Cloud API secret).
    #[serde(default)]
    pub password: Option<String>,
}

/// Options of `value: {as: avro}`: Confluent-wire-format Avro values decoded into typed
/// columns (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AvroValueColumns {
    /// The Schema Registry to read writer schemas from.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    /// A directory of writer schemas named `<id>.avsc` (read before the registry).
    #[serde(default)]
    pub schemas: Option<PathBuf>,
    /// Id of the reader schema, whose fields become the columns; by default the writer
    /// schema of the first value of each topic decoded in the run.
    #[serde(default)]
    pub schema_id: Option<u32>,
    /// Instead of `schema_id`: a registry subject (e.g. `orders-value`) whose latest
    /// version is the reader schema, looked up once per run.
    #[serde(default)]
    pub subject: Option<String>,
    /// Name of the column (Parquet struct column, Avro field) that holds the decoded
    /// values (default `value_avro`).
    #[serde(default = "default_column")]
    pub column: String,
    /// What a value that cannot be decoded gives: `null` (default), `fail` or
    /// `dead_letter`.
    #[serde(default)]
    pub on_error: OnError,
}

impl AvroValueColumns {
    /// Checks the options: a schema source, the registry URL, the credentials and the
    /// column name (not one of `reserved`, the envelope's names). `what` names the option
    /// block in messages (e.g. `parquet value`).
    pub fn validate(&self, what: &str, reserved: &[&str]) -> Result<()> {
        let bad = |m: String| Error::config(format!("{what} (as: avro): {m}"));
        if self.registry.is_none() && self.schemas.is_none() {
            return Err(bad(
                "needs `registry: {url: http://…}` (a Confluent Schema Registry) or `schemas: <dir>` (writer schemas as <id>.avsc files), or both".into(),
            ));
        }
        if self.schema_id.is_some() && self.subject.is_some() {
            return Err(bad(
                "`schema_id` and `subject` both name the reader schema: keep one".into(),
            ));
        }
        if self.subject.is_some() && self.registry.is_none() {
            return Err(bad(
                "`subject` is looked up in the registry: it needs `registry: {url: …}`".into(),
            ));
        }
        if self.subject.as_deref() == Some("") {
            return Err(bad("`subject` is empty".into()));
        }
        if let Some(r) = &self.registry {
            let url = reqwest::Url::parse(&r.url)
                .map_err(|e| bad(format!("registry url `{}`: {e}", r.url)))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad(format!(
                    "registry url `{}`: must start with http:// or https://",
                    r.url
                )));
            }
            if r.password.is_some() && r.username.as_deref().unwrap_or("").is_empty() {
                return Err(bad("registry `password` is set without a `username`".into()));
            }
        }
        if self
            .schemas
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(bad("`schemas` is an empty path".into()));
        }
        if self.column.is_empty() || reserved.contains(&self.column.as_str()) {
            return Err(bad(format!(
                "`column: {}` must be a new column name (not one of {})",
                self.column,
                reserved.join(", ")
            )));
        }
        Ok(())
    }
}

/// Splits a value in the Confluent wire format into its schema id and Avro datum; the
/// error says why the value is not in that format.
pub fn parse_wire(value: &[u8]) -> std::result::Result<(u32, &[u8]), String> {
    match value {
        [] => Err("the value is empty: not in the Confluent wire format (magic byte 0, 4-byte schema id, Avro datum)".into()),
        [first, ..] if *first != MAGIC => Err(format!(
            "the value starts with byte 0x{first:02x}, not the magic byte 0 of the Confluent wire format"
        )),
        [_, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        _ => Err(format!(
            "the value is {} bytes, shorter than the 5-byte header of the Confluent wire format",
            value.len()
        )),
    }
}

/// A parsed Avro schema and the id it has in the registry or schema files.
#[derive(Debug, Clone)]
pub struct IdSchema {
    /// Schema id.
    pub id: u32,
    /// The schema.
    pub schema: Schema,
}

/// The result of looking a writer schema up: the schema, or why values with that id
/// cannot be decoded (unknown id, not Avro, Schema Registry references, does not parse).
pub type Lookup = std::result::Result<Arc<IdSchema>, Arc<str>>;

/// The reply of `GET /schemas/ids/{id}`.
#[derive(Deserialize)]
struct SchemaReply {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

/// Attempts of one registry request that fails transiently (connection, timeout, 5xx,
/// 429), with these pauses between them.
const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(1000)];

/// A client of the Confluent Schema Registry REST API (only what decoding needs).
#[derive(Debug)]
pub struct SchemaRegistry {
    base: String,
    username: Option<String>,
    password: Option<String>,
    client: reqwest::Client,
}

impl SchemaRegistry {
    /// A client of the registry at `config.url` (nothing is fetched yet).
    pub fn new(config: &RegistryConfig) -> Result<Self> {
        // reqwest is built without a crypto provider of its own: install Ferry's first.
        ferry_core::tls::init();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::component("schema registry", e))?;
        Ok(SchemaRegistry {
            base: config.url.trim_end_matches('/').to_string(),
            username: config.username.clone().filter(|u| !u.is_empty()),
            password: config.password.clone(),
            client,
        })
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The schema id of the latest version of `subject` (`GET
    /// {url}/subjects/{subject}/versions/latest`).
    pub async fn latest_id(&self, subject: &str) -> Result<u32> {
        let url = format!(
            "{}/subjects/{}/versions/latest",
            self.base,
            subject.replace('%', "%25").replace('/', "%2F")
        );
        let mut req = self.client.get(&url).header(
            reqwest::header::ACCEPT,
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some(user) = &self.username {
            req = req.basic_auth(user, self.password.as_ref());
        }
        let resp = req.send().await.map_err(|e| get_failed(&url, &e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| get_failed(&url, &e))?;
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        if status.as_u16() == 404 && error_code(&body) == Some(40401) {
            return Err(Error::config(format!(
                "value (as: avro): subject `{subject}` is not in the schema registry {}: check `subject`",
                self.base
            )));
        }
        if !status.is_success() {
            return Err(Error::connection(
                "schema registry",
                true,
                format!("GET {url}: {status}: {}", text.trim()),
            ));
        }
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("id")?.as_u64())
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| {
                Error::connection(
                    "schema registry",
                    true,
                    format!("GET {url}: the answer has no schema id: {}", text.trim()),
                )
            })
    }

    /// Fetches and parses the schema of `id`. `Ok(Err(reason))`: the registry answered but
    /// values with this id cannot be decoded (unknown id, a PROTOBUF or JSON schema,
    /// references to other subjects, an Avro schema that does not parse). `Err`: the
    /// registry cannot be used (unreachable after retries, credentials refused, an
    /// unexpected answer).
    pub async fn fetch(&self, id: u32) -> Result<Lookup> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let mut attempt = 0;
        let (status, body) = loop {
            let mut req = self.client.get(&url).header(
                reqwest::header::ACCEPT,
                "application/vnd.schemaregistry.v1+json, application/json",
            );
            if let Some(user) = &self.username {
                req = req.basic_auth(user, self.password.as_ref());
            }
            let result = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    resp.bytes().await.map(|b| (status, b))
                }
                Err(e) => Err(e),
            };
            let transient = match &result {
                Ok((status, _)) => status.is_server_error() || status.as_u16() == 429,
                Err(_) => true,
            };
            if transient && attempt < RETRY_PAUSES.len() {
                tracing::warn!(url = %url, attempt = attempt + 1, "schema registry request failed; retrying");
                tokio::time::sleep(RETRY_PAUSES[attempt]).await;
                attempt += 1;
                continue;
            }
            break result.map_err(|e| get_failed(&url, &e))?;
        };
        let text = String::from_utf8_lossy(&body);
        let short: String = text.chars().take(300).collect();
        match status.as_u16() {
            200 => {}
            404 if error_code(&body) == Some(40403) => {
                return Ok(Err(Arc::from(format!(
                    "schema id {id} is not in the schema registry {} ({})",
                    self.base,
                    short.trim()
                ))))
            }
            404 => {
                return Err(Error::config(format!(
                    "schema registry: GET {url}: 404 without error code 40403 (schema not found): is registry.url the registry's base URL? {}",
                    short.trim()
                )))
            }
            401 | 403 => {
                return Err(Error::config(format!(
                    "schema registry: GET {url}: {status}: the registry refused the credentials (registry username/password): {}",
                    short.trim()
                )))
            }
            _ => {
                return Err(Error::connection("schema registry", true, format!(
                    "GET {url}: {status}: {}",
                    short.trim()
                )))
            }
        }
        let reply: SchemaReply = serde_json::from_slice(&body).map_err(|e| {
            Error::connection(
                "schema registry",
                true,
                format!(
                    "GET {url}: the answer is not a schema ({e}): {}",
                    short.trim()
                ),
            )
        })?;
        Ok(reply_schema(id, reply, &self.base))
    }
}

/// The `error_code` of a registry error reply.
fn error_code(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("error_code")?
        .as_i64()
}

/// Turns a registry reply into a schema, or the reason its values cannot be decoded.
fn reply_schema(id: u32, reply: SchemaReply, base: &str) -> Lookup {
    if let Some(ty) = reply.schema_type.as_deref() {
        if !ty.eq_ignore_ascii_case("AVRO") {
            return Err(Arc::from(format!(
                "schema id {id} is a {ty} schema, not Avro (only Avro values are decoded)"
            )));
        }
    }
    if !reply.references.is_empty() {
        let names: Vec<String> = reply
            .references
            .iter()
            .map(|r| {
                r.get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or("?")
                    .to_string()
            })
            .collect();
        return Err(Arc::from(format!(
            "schema id {id} uses Schema Registry references ({}), which Ferry does not support",
            names.join(", ")
        )));
    }
    match Schema::parse_str(&reply.schema) {
        Ok(schema) => Ok(Arc::new(IdSchema { id, schema })),
        Err(e) => Err(Arc::from(format!(
            "schema id {id} from the schema registry {base} is not a valid Avro schema: {e}"
        ))),
    }
}

/// A request to the registry that got no answer (or an unreadable one).
fn get_failed(url: &impl std::fmt::Display, e: &reqwest::Error) -> Error {
    Error::connection(
        "schema registry",
        true,
        format!("GET {url}: {}", ferry_core::error::error_chain(e)),
    )
}

/// A record value decoded (or not) with the reader schema of its topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// The value is null (a tombstone): a null struct, not an error.
    Null,
    /// The value resolved to the reader schema.
    Value(Value),
    /// Why the value cannot be decoded.
    Rejected(String),
}

/// The outcome of a record after `on_error`: the decoded value (`None`: a null struct) and
/// the reason to dead-letter it, if so.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    /// The decoded value; `None` is a null.
    pub value: Option<Value>,
    /// Why the record goes to the dead-letter files (`on_error: dead_letter`).
    pub rejected: Option<String>,
}

/// The decoding state of one pipeline: the options, the writer schemas fetched so far (by
/// id) and the reader schema of each topic. Shared by the encoders of a format.
pub struct AvroValues {
    config: AvroValueColumns,
    registry: Mutex<Option<Arc<SchemaRegistry>>>,
    writers: RwLock<HashMap<u32, Lookup>>,
    readers: RwLock<HashMap<String, Arc<IdSchema>>>,
    fixed: OnceLock<Arc<IdSchema>>,
    /// The schema id `subject` resolved to.
    subject_id: OnceLock<u32>,
    dir_checked: OnceLock<()>,
}

impl std::fmt::Debug for AvroValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroValues")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn lock_err<T>(e: std::sync::PoisonError<T>) -> T {
    e.into_inner()
}

impl AvroValues {
    /// The state of a run with these options (nothing is fetched or read yet).
    pub fn new(config: AvroValueColumns) -> Self {
        AvroValues {
            config,
            registry: Mutex::new(None),
            writers: RwLock::new(HashMap::new()),
            readers: RwLock::new(HashMap::new()),
            fixed: OnceLock::new(),
            subject_id: OnceLock::new(),
            dir_checked: OnceLock::new(),
        }
    }

    /// The options.
    pub fn config(&self) -> &AvroValueColumns {
        &self.config
    }

    fn registry(&self) -> Result<Option<Arc<SchemaRegistry>>> {
        let Some(config) = &self.config.registry else {
            return Ok(None);
        };
        let mut slot = self.registry.lock().unwrap_or_else(lock_err);
        if let Some(r) = &*slot {
            return Ok(Some(r.clone()));
        }
        let r = Arc::new(SchemaRegistry::new(config)?);
        *slot = Some(r.clone());
        Ok(Some(r))
    }

    fn cached(&self, id: u32) -> Option<Lookup> {
        self.writers
            .read()
            .unwrap_or_else(lock_err)
            .get(&id)
            .cloned()
    }

    fn remember(&self, id: u32, lookup: Lookup) -> Lookup {
        self.writers
            .write()
            .unwrap_or_else(lock_err)
            .entry(id)
            .or_insert(lookup)
            .clone()
    }

    /// Reads `<dir>/<id>.avsc`: `None` when there is no such file (or no `schemas:`).
    fn read_file(&self, id: u32) -> Result<Option<Lookup>> {
        let Some(dir) = &self.config.schemas else {
            return Ok(None);
        };
        if self.dir_checked.get().is_none() {
            if !dir.is_dir() {
                return Err(Error::config(format!(
                    "value (as: avro): `schemas: {}` is not a directory",
                    dir.display()
                )));
            }
            let _ = self.dir_checked.set(());
        }
        let path = dir.join(format!("{id}.avsc"));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::config(format!(
                    "value (as: avro): reading {}: {e}",
                    path.display()
                )))
            }
        };
        let schema = Schema::parse_str(&text).map_err(|e| {
            Error::config(format!(
                "value (as: avro): {} is not a valid Avro schema: {e}",
                path.display()
            ))
        })?;
        Ok(Some(Ok(Arc::new(IdSchema { id, schema }))))
    }

    fn not_found(&self, id: u32, dir: &Path) -> Lookup {
        Err(Arc::from(format!(
            "schema id {id}: no file {id}.avsc in {}",
            dir.display()
        )))
    }

    /// The writer schema of `id` without waiting: the cache, then `schemas:` files. `None`
    /// when only the registry can tell (see [`AvroValues::prepare`]).
    fn lookup_now(&self, id: u32) -> Result<Option<Lookup>> {
        if let Some(l) = self.cached(id) {
            return Ok(Some(l));
        }
        if let Some(l) = self.read_file(id)? {
            return Ok(Some(self.remember(id, l)));
        }
        match (&self.config.registry, &self.config.schemas) {
            (None, Some(dir)) => Ok(Some(self.remember(id, self.not_found(id, dir)))),
            _ => Ok(None),
        }
    }

    /// The writer schema of `id`: the cache, `schemas:` files, then the registry.
    pub async fn lookup(&self, id: u32) -> Result<Lookup> {
        if let Some(l) = self.lookup_now(id)? {
            return Ok(l);
        }
        let Some(registry) = self.registry()? else {
            // lookup_now answers whenever there is no registry.
            return Err(Error::internal(format!("schema id {id}: no schema source")));
        };
        let l = registry.fetch(id).await?;
        if let Err(why) = &l {
            tracing::warn!(schema_id = id, "{why}");
        }
        Ok(self.remember(id, l))
    }

    /// Loads what the values of `batch` need before they are encoded: the reader schema
    /// (`schema_id`), the writer schema of every schema id not seen yet, and the reader
    /// schema of the topic when this batch is its first decodable one. Errors are those of
    /// the registry (unreachable, credentials), of `schemas:` files, or a reader schema
    /// that cannot be used; values that cannot be decoded are not errors here.
    pub async fn prepare(&self, batch: &Batch) -> Result<()> {
        self.fixed_reader().await?;
        let (ids, first) = {
            let records = batch.records()?;
            let mut ids: Vec<u32> = Vec::new();
            let mut first: Option<(u32, i64)> = None;
            for r in records.iter().filter(|r| !r.is_control) {
                if let Some(Ok((id, _))) = r.value.as_deref().map(parse_wire) {
                    if !ids.contains(&id) && self.cached(id).is_none() {
                        ids.push(id);
                    }
                    first.get_or_insert((id, r.offset));
                }
            }
            (ids, first.is_some())
        };
        for id in ids {
            let _cached: Lookup = self.lookup(id).await?;
        }
        if first && self.fixed.get().is_none() && self.topic_reader(&batch.topic).is_none() {
            let records = batch.records()?;
            for r in records.iter().filter(|r| !r.is_control) {
                if let Some(Ok((id, _))) = r.value.as_deref().map(parse_wire) {
                    if let Some(Ok(w)) = self.cached(id) {
                        self.establish(&batch.topic, r, w)?;
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The id of the reader schema the options name: `schema_id`, or what `subject`
    /// resolved to.
    fn fixed_id(&self) -> Option<u32> {
        self.config
            .schema_id
            .or_else(|| self.subject_id.get().copied())
    }

    /// Loads the `schema_id` (or `subject`) reader schema (once).
    async fn fixed_reader(&self) -> Result<Option<Arc<IdSchema>>> {
        if let (Some(subject), None) = (&self.config.subject, self.subject_id.get()) {
            if let Some(registry) = self.registry()? {
                let id = registry.latest_id(subject).await?;
                if self.subject_id.set(id).is_ok() {
                    tracing::info!(subject = %subject, schema_id = id, "value (as: avro): reader schema is the latest version of the subject");
                }
            }
        }
        let Some(id) = self.fixed_id() else {
            return Ok(None);
        };
        if let Some(r) = self.fixed.get() {
            return Ok(Some(r.clone()));
        }
        let schema = self.lookup(id).await?;
        self.set_fixed(id, schema).map(Some)
    }

    fn set_fixed(&self, id: u32, schema: Lookup) -> Result<Arc<IdSchema>> {
        let schema = schema
            .map_err(|why| Error::config(format!("value (as: avro): schema_id {id}: {why}")))?;
        check_reader(&schema, &format!("schema_id {id}"))?;
        if self.fixed.set(schema.clone()).is_ok() {
            tracing::info!(
                schema_id = id,
                schema = %schema_name(&schema.schema),
                "value (as: avro): reader schema from schema_id"
            );
        }
        Ok(self.fixed.get().cloned().unwrap_or(schema))
    }

    fn topic_reader(&self, topic: &str) -> Option<Arc<IdSchema>> {
        self.readers
            .read()
            .unwrap_or_else(lock_err)
            .get(topic)
            .cloned()
    }

    /// Makes `writer` the reader schema of `topic` unless it has one; returns the topic's.
    fn establish(&self, topic: &str, r: &Record, writer: Arc<IdSchema>) -> Result<Arc<IdSchema>> {
        let mut readers = self.readers.write().unwrap_or_else(lock_err);
        if let Some(existing) = readers.get(topic) {
            return Ok(existing.clone());
        }
        check_reader(
            &writer,
            &format!(
                "topic {topic}: schema id {} of its first value (partition {}, offset {})",
                writer.id, r.partition, r.offset
            ),
        )?;
        tracing::info!(
            topic = %topic,
            schema_id = writer.id,
            schema = %schema_name(&writer.schema),
            partition = r.partition,
            offset = r.offset,
            "value (as: avro): reader schema of the topic is the writer schema of its first value (set schema_id to choose it)"
        );
        readers.insert(topic.to_string(), writer.clone());
        Ok(writer)
    }

    /// The reader schema of `topic` if known, else the one `r` establishes (its writer
    /// schema, when known and usable).
    fn reader_for(&self, topic: &str, r: &Record) -> Result<Option<Arc<IdSchema>>> {
        if self.config.subject.is_some() && self.fixed_id().is_none() {
            return Err(Error::internal(
                "value (as: avro): `subject` was not looked up in the registry (the format's prepare step did not run)",
            ));
        }
        if let Some(id) = self.fixed_id() {
            if let Some(f) = self.fixed.get() {
                return Ok(Some(f.clone()));
            }
            return match self.lookup_now(id)? {
                Some(l) => self.set_fixed(id, l).map(Some),
                None => Err(Error::internal(format!(
                    "value (as: avro): schema_id {id} was not fetched from the registry (the format's prepare step did not run)"
                ))),
            };
        }
        if let Some(reader) = self.topic_reader(topic) {
            return Ok(Some(reader));
        }
        if let Some(Ok((id, _))) = r.value.as_deref().map(parse_wire) {
            if let Some(Ok(w)) = self.lookup_now(id)? {
                return self.establish(topic, r, w).map(Some);
            }
        }
        Ok(None)
    }

    /// Decodes the value of `r` (a record of `topic`) with the topic's reader schema.
    /// Returns the reader schema (`None`: the topic has none yet, so the value is null or
    /// rejected) and the outcome. Errors are not about the value (a schema that was not
    /// fetched, an unusable reader schema).
    pub fn decode(&self, topic: &str, r: &Record) -> Result<(Option<Arc<IdSchema>>, Decoded)> {
        let reader = self.reader_for(topic, r)?;
        let Some(bytes) = r.value.as_deref() else {
            return Ok((reader, Decoded::Null));
        };
        let (id, mut datum) = match parse_wire(bytes) {
            Ok(x) => x,
            Err(why) => return Ok((reader, Decoded::Rejected(why))),
        };
        let writer = match self.lookup_now(id)? {
            Some(Ok(w)) => w,
            Some(Err(why)) => return Ok((reader, Decoded::Rejected(why.to_string()))),
            None => {
                return Err(Error::internal(format!(
                    "value (as: avro): schema id {id} (topic {topic}, partition {}, offset {}) was not fetched from the registry (the format's prepare step did not run)",
                    r.partition, r.offset
                )))
            }
        };
        let Some(reader) = reader else {
            // Only reachable when the writer schema is known but cannot be a reader, which
            // `reader_for` reports as an error.
            return Ok((
                None,
                Decoded::Rejected(format!("schema id {id}: the topic has no reader schema")),
            ));
        };
        Ok((
            Some(reader.clone()),
            decode_datum(&writer, &reader, &mut datum),
        ))
    }

    /// Applies `on_error` to a decoded value of `r`.
    pub fn settle(&self, r: &Record, decoded: Decoded) -> Result<Settled> {
        match decoded {
            Decoded::Null => Ok(Settled {
                value: None,
                rejected: None,
            }),
            Decoded::Value(v) => Ok(Settled {
                value: Some(v),
                rejected: None,
            }),
            Decoded::Rejected(why) => match self.config.on_error {
                OnError::Null => Ok(Settled {
                    value: None,
                    rejected: None,
                }),
                OnError::DeadLetter => Ok(Settled {
                    value: None,
                    rejected: Some(why),
                }),
                OnError::Fail => Err(Error::invalid_data(format!(
                    "value (as: avro, on_error: fail): topic {} partition {} offset {}: {why}",
                    r.topic, r.partition, r.offset
                ))),
            },
        }
    }
}

/// Decodes `datum` with the writer schema and resolves it to the reader schema.
pub fn decode_datum(writer: &IdSchema, reader: &IdSchema, datum: &mut &[u8]) -> Decoded {
    let value = match apache_avro::from_avro_datum(&writer.schema, datum, None) {
        Ok(v) => v,
        Err(e) => {
            return Decoded::Rejected(format!(
                "the datum does not decode with writer schema id {}: {e}",
                writer.id
            ))
        }
    };
    if !datum.is_empty() {
        return Decoded::Rejected(format!(
            "{} bytes are left after the datum decoded with writer schema id {} (a wrong schema id?)",
            datum.len(),
            writer.id
        ));
    }
    // apache-avro decodes a string cut short as a null: the value is checked.
    if !value.validate(&writer.schema) {
        return Decoded::Rejected(format!(
            "the datum does not decode with writer schema id {}: it ends too early",
            writer.id
        ));
    }
    // One id is one schema in a run (the cache holds one per id): nothing to resolve.
    if writer.id == reader.id {
        return Decoded::Value(value);
    }
    let mut value = value;
    resize_decimals(&mut value, &|b| sign_extend(b, DECIMAL_RESOLVE_BYTES));
    match value.resolve(&reader.schema) {
        Ok(mut v) => {
            resize_decimals(&mut v, &shortest);
            Decoded::Value(v)
        }
        Err(e) => Decoded::Rejected(format!(
            "writer schema id {} does not resolve to reader schema id {}: {e}",
            writer.id, reader.id
        )),
    }
}

/// apache-avro's resolution refuses a `bytes` decimal whose byte length could not hold
/// the reader's whole precision, yet writers use the fewest bytes: decimals are
/// sign-extended to this many bytes (room for precision 76) before resolving, and
/// shortened again after.
const DECIMAL_RESOLVE_BYTES: usize = 32;

/// Rewrites the bytes of every decimal inside `v`.
fn resize_decimals(v: &mut Value, f: &dyn Fn(&[u8]) -> Vec<u8>) {
    match v {
        Value::Decimal(d) => {
            if let Ok(bytes) = Vec::<u8>::try_from(&*d) {
                *d = apache_avro::Decimal::from(f(&bytes));
            }
        }
        Value::Union(_, inner) => resize_decimals(inner, f),
        Value::Array(items) => items.iter_mut().for_each(|x| resize_decimals(x, f)),
        Value::Map(m) => m.values_mut().for_each(|x| resize_decimals(x, f)),
        Value::Record(fields) => fields.iter_mut().for_each(|(_, x)| resize_decimals(x, f)),
        _ => {}
    }
}

/// Big-endian two's-complement bytes sign-extended to at least `len` bytes.
fn sign_extend(b: &[u8], len: usize) -> Vec<u8> {
    if b.len() >= len {
        return b.to_vec();
    }
    let fill = if b.first().is_some_and(|x| x & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut out = vec![fill; len - b.len()];
    out.extend_from_slice(b);
    out
}

/// The same two's-complement number in the fewest bytes (at least one).
fn shortest(b: &[u8]) -> Vec<u8> {
    let mut start = 0;
    while start + 1 < b.len() {
        let (x, next) = (b[start], b[start + 1]);
        let redundant = (x == 0 && next & 0x80 == 0) || (x == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    if b.is_empty() {
        return vec![0];
    }
    b[start..].to_vec()
}

/// A reader schema must be a record: its fields become the columns.
fn check_reader(schema: &IdSchema, what: &str) -> Result<()> {
    match &schema.schema {
        Schema::Record(r) if !r.fields.is_empty() => Ok(()),
        Schema::Record(_) => Err(Error::config(format!(
            "value (as: avro): {what} is a record without fields: there are no columns to make (set schema_id to a record schema)"
        ))),
        other => Err(Error::config(format!(
            "value (as: avro): {what} is a `{}` schema, not a record: typed columns need a record schema (set schema_id to one)",
            schema_name(other)
        ))),
    }
}

/// The full name of a named schema, else its type.
pub fn schema_name(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => r.name.fullname(None),
        Schema::Enum(e) => e.name.fullname(None),
        Schema::Fixed(f) => f.name.fullname(None),
        Schema::Ref { name } => name.fullname(None),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
    }
}

#[cfg(test)]
mod tests;
