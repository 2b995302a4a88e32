//! Test helpers for Ferry's integration tests (a dev-dependency only).
//!
//! The services come from `scripts/dev-env up` (or `scripts/test`): an Apache
//! Kafka broker, a Tansu broker, a moto S3 server, Azurite (Azure Blob),
//! fake-gcs-server (GCS), Apache Iceberg's REST catalog, kcat and a Python venv
//! with confluent-kafka. [`env_or_skip()`] finds them (or skips the test, printing
//! why, when they are not there and `FERRY_REQUIRE_ENV` is not `1`;
//! [`TestEnv::iceberg_rest_or_skip`] does the same for the catalog);
//! [`py_produce`] and [`dump_topic`] write and read topics with a client that
//! is independent of Ferry (librdkafka through confluent-kafka), so tests can
//! check Ferry against it.
//!
//! ```no_run
//! let Some(env) = ferry_testkit::env_or_skip() else { return };
//! let topic = ferry_testkit::unique("restore");
//! ferry_testkit::py_produce(
//!     &env,
//!     &env.kafka,
//!     &topic,
//!     &[ferry_testkit::KcatMsg::new(Some(b"k"), Some(b"v"))],
//!     "zstd",
//!     true,
//! );
//! let records = ferry_testkit::dump_topic(&env, &env.kafka, &topic);
//! assert_eq!(records.len(), 1);
//! ```
//!
//! Compression note for both producers: librdkafka sends a batch uncompressed
//! when compressing does not make it smaller, so a test that needs a compressed
//! batch on the wire must send compressible data (e.g. a few KiB of repeats).

pub mod proxy;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

/// The message [`env()`] panics with when the dev environment is not there.
pub const NO_ENV_MESSAGE: &str =
    "integration tests need the dev environment: run scripts/dev-env up (or scripts/test)";

/// The variable that turns a missing dev environment from a skip into a failure
/// (`scripts/test` and CI set it to `1`).
pub const REQUIRE_ENV_VAR: &str = "FERRY_REQUIRE_ENV";

/// Where the dev environment's services are, as written by `scripts/dev-env up`
/// to `$FERRY_DEV_HOME/env.sh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestEnv {
    /// Apache Kafka bootstrap address, `host:port` (`FERRY_KAFKA`).
    pub kafka: String,
    /// The same Kafka's SASL_PLAINTEXT listener (`FERRY_KAFKA_SASL`, `127.0.0.1:19094` by
    /// default): mechanism PLAIN, user `ferry`, password `ferry-secret`.
    pub kafka_sasl: String,
    /// The same Kafka's SSL listener (`FERRY_KAFKA_TLS`, `127.0.0.1:19095` by default).
    pub kafka_tls: String,
    /// The CA that signed that listener's certificate, PEM (`FERRY_KAFKA_TLS_CA`).
    pub kafka_tls_ca: String,
    /// Tansu bootstrap address, `host:port` (`FERRY_TANSU`).
    pub tansu: String,
    /// S3-compatible endpoint URL (`FERRY_S3_ENDPOINT`), e.g. `http://127.0.0.1:19000`.
    pub s3_endpoint: String,
    /// A bucket that exists on that endpoint (`FERRY_S3_BUCKET`).
    pub s3_bucket: String,
    /// The kcat to run (`FERRY_KCAT`): a wrapper that uses a current librdkafka.
    pub kcat: String,
    /// Python of the dev venv (`FERRY_PYTHON`), with confluent-kafka, kafka-python,
    /// pyarrow, duckdb, fastavro, boto3.
    pub python: String,
    /// Folder with Kafka's jars (`FERRY_KAFKA_LIBS`): `java -cp "$DIR/*" ...`.
    pub kafka_libs: String,
    /// The java binary that runs the broker (`FERRY_JAVA`).
    pub java: String,
    /// S3 access key (`AWS_ACCESS_KEY_ID`, `test` by default).
    pub aws_access_key_id: String,
    /// S3 secret key (`AWS_SECRET_ACCESS_KEY`, `test` by default).
    pub aws_secret_access_key: String,
    /// S3 region (`AWS_REGION`, `us-east-1` by default).
    pub aws_region: String,
    /// Apache Iceberg's REST catalog, a base URL (`FERRY_ICEBERG_REST`,
    /// `http://127.0.0.1:19181` by default), run by `scripts/dev-env`. Not probed with the
    /// rest: a test that uses it calls [`TestEnv::iceberg_rest_or_skip`].
    pub iceberg_rest: String,
    /// Azurite's blob endpoint, account included (`FERRY_AZURE_ENDPOINT`,
    /// `http://127.0.0.1:19010/devstoreaccount1` by default).
    pub azure_endpoint: String,
    /// The Azure storage account (`FERRY_AZURE_ACCOUNT`, `devstoreaccount1` by default).
    pub azure_account: String,
    /// Its key (`FERRY_AZURE_KEY`, Azurite's well-known development key by default).
    pub azure_key: String,
    /// A container that exists there (`FERRY_AZURE_CONTAINER`, `ferry-test` by default).
    pub azure_container: String,
    /// fake-gcs-server's endpoint (`FERRY_GCS_ENDPOINT`, `http://127.0.0.1:19020` by default).
    pub gcs_endpoint: String,
    /// A bucket that exists there (`FERRY_GCS_BUCKET`, `ferry-test` by default).
    pub gcs_bucket: String,
}

/// Azurite's development account key: public, the same in every Azurite.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl TestEnv {
    /// The S3 credentials of the dev server as environment variables for a child process
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`): Ferry takes S3
    /// credentials only from the URI, these variables or a profile file.
    pub fn aws_vars(&self) -> [(&'static str, &str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", self.aws_access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.aws_secret_access_key.as_str()),
            ("AWS_REGION", self.aws_region.as_str()),
        ]
    }

    /// The Iceberg REST catalog's URL ([`TestEnv::iceberg_rest`]) when it accepts
    /// connections; otherwise `None` after printing `skipped: TEST: REASON`, or a panic
    /// with the reason under `FERRY_REQUIRE_ENV=1`, as [`env_or_skip`] does.
    pub fn iceberg_rest_or_skip(&self) -> Option<String> {
        match probe_tcp(&self.iceberg_rest) {
            Ok(()) => Some(self.iceberg_rest.clone()),
            Err(e) => {
                let reason = format!(
                    "the Iceberg REST catalog (FERRY_ICEBERG_REST) at {}: {e} (scripts/dev-env up starts it)",
                    self.iceberg_rest
                );
                if env_required() {
                    panic!("{REQUIRE_ENV_VAR}=1 but the dev environment is not usable: {reason}");
                }
                print_skip(&reason);
                None
            }
        }
    }

    /// An `s3://` URI under `prefix` in the dev bucket (credentials from [`TestEnv::aws_vars`]).
    pub fn s3_uri(&self, prefix: &str) -> String {
        format!(
            "s3://{}/{prefix}?endpoint={}&region={}",
            self.s3_bucket, self.s3_endpoint, self.aws_region
        )
    }

    /// An `azblob://` URI under `prefix` in Azurite's test container (key from
    /// [`TestEnv::azure_vars`]).
    pub fn azure_uri(&self, prefix: &str) -> String {
        format!(
            "azblob://{}/{prefix}?endpoint={}&account_name={}",
            self.azure_container, self.azure_endpoint, self.azure_account
        )
    }

    /// Azurite's key as the variable Ferry reads it from (`AZURE_STORAGE_KEY`).
    pub fn azure_vars(&self) -> [(&'static str, &str); 1] {
        [("AZURE_STORAGE_KEY", self.azure_key.as_str())]
    }

    /// A `gs://` URI under `prefix` in fake-gcs-server's test bucket (unsigned requests).
    pub fn gcs_uri(&self, prefix: &str) -> String {
        format!(
            "gs://{}/{prefix}?endpoint={}&anonymous=true",
            self.gcs_bucket, self.gcs_endpoint
        )
    }

    /// The variables every object store of the dev environment needs, for a child process
    /// ([`TestEnv::aws_vars`] and [`TestEnv::azure_vars`]; GCS needs none).
    pub fn store_vars(&self) -> Vec<(&'static str, &str)> {
        let mut v = self.aws_vars().to_vec();
        v.extend(self.azure_vars());
        v
    }
}

/// The dev environment of this machine, or `None` when it is not there, so that
/// a test can skip itself:
///
/// ```no_run
/// #[test]
/// fn backs_up_a_topic() {
///     let Some(env) = ferry_testkit::env_or_skip() else { return };
///     // ... use env.kafka, env.s3_endpoint ...
/// }
/// ```
///
/// "Not there" means: no env file and no `FERRY_*` variables, a variable the
/// env file should hold is missing, a service (Kafka, Tansu, the S3 server, Azurite,
/// fake-gcs-server)
/// does not accept connections, or a tool (Python, kcat, java) is not at its
/// path. Then it prints `skipped: TEST: REASON` to the terminal (past the test
/// harness's output capture, so `cargo test` shows it) and returns `None`.
///
/// With `FERRY_REQUIRE_ENV=1` (set by `scripts/test` and CI) it panics instead,
/// naming what is missing, so a run that must test against the services can
/// never pass by skipping them. The check runs once per test process.
pub fn env_or_skip() -> Option<TestEnv> {
    match probed_env() {
        Ok(env) => Some(env.clone()),
        Err(reason) if env_required() => {
            panic!("{REQUIRE_ENV_VAR}=1 but the dev environment is not usable: {reason}")
        }
        Err(reason) => {
            print_skip(reason);
            None
        }
    }
}

/// The dev environment of this machine; panics naming what is missing when it
/// is not there. Prefer [`env_or_skip`] in tests, which skips instead.
///
/// Reads `FERRY_KAFKA`, `FERRY_TANSU`, `FERRY_S3_ENDPOINT`, `FERRY_S3_BUCKET`,
/// `FERRY_KCAT`, `FERRY_PYTHON`, `FERRY_KAFKA_LIBS`, `FERRY_JAVA`, `FERRY_ICEBERG_REST` and `AWS_*`
/// from the process environment; whatever is not set there is taken from
/// `${FERRY_DEV_HOME:-/var/tmp/ferry-dev}/env.sh`.
pub fn env() -> TestEnv {
    match probed_env() {
        Ok(env) => env.clone(),
        Err(reason) => panic!("{reason}"),
    }
}

/// Whether `FERRY_REQUIRE_ENV` asks for the dev environment (`1`, `true`, `yes`).
pub fn env_required() -> bool {
    std::env::var(REQUIRE_ENV_VAR)
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// Reads and probes the dev environment once per process: the answer does not
/// change while tests run, and probing costs a few connects.
fn probed_env() -> &'static Result<TestEnv, String> {
    static PROBED: OnceLock<Result<TestEnv, String>> = OnceLock::new();
    PROBED.get_or_init(|| {
        let file = std::fs::read_to_string(env_file_path())
            .map(|text| parse_env_file(&text))
            .unwrap_or_default();
        let env = env_from(|k| std::env::var(k).ok().filter(|v| !v.is_empty()), &file)?;
        let unusable = unusable_parts(&env);
        if unusable.is_empty() {
            Ok(env)
        } else {
            Err(format!("{} ({NO_ENV_MESSAGE})", unusable.join("; ")))
        }
    })
}

/// Writes `skipped: TEST: REASON` straight to stderr: libtest captures what
/// `eprintln!` prints in a passing test, and a skip must be seen.
fn print_skip(reason: &str) {
    let current = std::thread::current();
    let test = current.name().unwrap_or("test");
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {reason}");
}

/// What of the environment cannot be used: services that refuse connections
/// and tools that are not at their paths. Empty when everything is there.
fn unusable_parts(env: &TestEnv) -> Vec<String> {
    let mut out = Vec::new();
    let services = [
        ("Kafka (FERRY_KAFKA)", env.kafka.as_str()),
        ("Tansu (FERRY_TANSU)", env.tansu.as_str()),
        (
            "the S3 server (FERRY_S3_ENDPOINT)",
            env.s3_endpoint.as_str(),
        ),
        (
            "Azurite (FERRY_AZURE_ENDPOINT)",
            env.azure_endpoint.as_str(),
        ),
        (
            "fake-gcs-server (FERRY_GCS_ENDPOINT)",
            env.gcs_endpoint.as_str(),
        ),
    ];
    for (what, address) in services {
        if let Err(e) = probe_tcp(address) {
            out.push(format!("{what} at {address}: {e}"));
        }
    }
    let tools = [
        ("FERRY_PYTHON", env.python.as_str()),
        ("FERRY_KCAT", env.kcat.as_str()),
        ("FERRY_JAVA", env.java.as_str()),
    ];
    for (var, path) in tools {
        if !Path::new(path).exists() {
            out.push(format!("{var}={path} does not exist"));
        }
    }
    out
}

/// Connects once to `address` (`host:port` or an `http://host:port/...` URL)
/// within 2 s.
fn probe_tcp(address: &str) -> Result<(), String> {
    let host_port = address
        .split_once("://")
        .map_or(address, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let addrs: Vec<_> = host_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("connect: {e}"),
        }
    }
    Err(last)
}

/// `${FERRY_DEV_HOME:-/var/tmp/ferry-dev}/env.sh`.
pub fn env_file_path() -> PathBuf {
    let home = std::env::var("FERRY_DEV_HOME")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "/var/tmp/ferry-dev".to_string());
    PathBuf::from(home).join("env.sh")
}

fn env_from(
    var: impl Fn(&str) -> Option<String>,
    file: &HashMap<String, String>,
) -> Result<TestEnv, String> {
    let get = |k: &str| var(k).or_else(|| file.get(k).cloned());
    if get("FERRY_KAFKA").is_none() {
        return Err(format!(
            "no dev environment: {} does not name FERRY_KAFKA and the variable is not set ({NO_ENV_MESSAGE})",
            env_file_path().display()
        ));
    }
    let required = [
        "FERRY_KAFKA",
        "FERRY_TANSU",
        "FERRY_S3_ENDPOINT",
        "FERRY_S3_BUCKET",
        "FERRY_KCAT",
        "FERRY_PYTHON",
        "FERRY_KAFKA_LIBS",
        "FERRY_JAVA",
    ];
    let missing: Vec<&str> = required.into_iter().filter(|k| get(k).is_none()).collect();
    if !missing.is_empty() {
        return Err(format!("{NO_ENV_MESSAGE} ({} not set)", missing.join(", ")));
    }
    let need = |k: &str| get(k).unwrap_or_default();
    Ok(TestEnv {
        kafka: need("FERRY_KAFKA"),
        kafka_sasl: get("FERRY_KAFKA_SASL").unwrap_or_else(|| "127.0.0.1:19094".into()),
        kafka_tls: get("FERRY_KAFKA_TLS").unwrap_or_else(|| "127.0.0.1:19095".into()),
        kafka_tls_ca: get("FERRY_KAFKA_TLS_CA")
            .unwrap_or_else(|| "/var/tmp/ferry-dev/kafka/tls/ca.pem".into()),
        tansu: need("FERRY_TANSU"),
        s3_endpoint: need("FERRY_S3_ENDPOINT"),
        s3_bucket: need("FERRY_S3_BUCKET"),
        kcat: need("FERRY_KCAT"),
        python: need("FERRY_PYTHON"),
        kafka_libs: need("FERRY_KAFKA_LIBS"),
        java: need("FERRY_JAVA"),
        aws_access_key_id: get("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "test".into()),
        aws_secret_access_key: get("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "test".into()),
        aws_region: get("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
        iceberg_rest: get("FERRY_ICEBERG_REST").unwrap_or_else(|| "http://127.0.0.1:19181".into()),
        azure_endpoint: get("FERRY_AZURE_ENDPOINT")
            .unwrap_or_else(|| "http://127.0.0.1:19010/devstoreaccount1".into()),
        azure_account: get("FERRY_AZURE_ACCOUNT").unwrap_or_else(|| "devstoreaccount1".into()),
        azure_key: get("FERRY_AZURE_KEY").unwrap_or_else(|| AZURITE_KEY.into()),
        azure_container: get("FERRY_AZURE_CONTAINER").unwrap_or_else(|| "ferry-test".into()),
        gcs_endpoint: get("FERRY_GCS_ENDPOINT").unwrap_or_else(|| "http://127.0.0.1:19020".into()),
        gcs_bucket: get("FERRY_GCS_BUCKET").unwrap_or_else(|| "ferry-test".into()),
    })
}

/// Parses the `export K=V` (or `K=V`) lines of a shell env file such as the one
/// `scripts/dev-env` writes. Blank lines and `#` comments are skipped; a value
/// in matching single or double quotes loses them. Later lines win.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let v = v.trim();
        let v = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|&(a, b)| {
                (v.len() >= 2 && v.starts_with(a) && v.ends_with(b)).then(|| &v[1..v.len() - 1])
            })
            .unwrap_or(v);
        out.insert(k.to_string(), v.to_string());
    }
    out
}

/// A name no other test (of this or another process) uses: `PREFIX-PID-MILLIS-N`,
/// made of characters valid in topic and group names and object paths.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{prefix}-{}-{ms}-{n}", std::process::id())
}

/// A message to produce with [`py_produce`] or [`kcat_produce`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KcatMsg {
    /// The key; `None` is a null key.
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in order; keys may repeat; `None` is a null header value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// CreateTime in ms since the epoch; `None` lets the producer use the current
    /// time. (confluent-kafka also takes `Some(0)` as "now".)
    pub timestamp: Option<i64>,
}

impl KcatMsg {
    /// A message with this key and value, no headers, the current time.
    pub fn new(key: Option<&[u8]>, value: Option<&[u8]>) -> Self {
        KcatMsg {
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Adds a header (repeat keys freely).
    pub fn header(mut self, key: &str, value: Option<&[u8]>) -> Self {
        self.headers
            .push((key.to_string(), value.map(<[u8]>::to_vec)));
        self
    }

    /// Sets the CreateTime (ms since the epoch).
    pub fn at(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }
}

/// A record as an independent client (librdkafka) reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedRecord {
    /// Partition number.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp in ms since the epoch.
    pub timestamp: i64,
    /// `"create"` (CreateTime) or `"log_append"` (LogAppendTime).
    pub timestamp_type: String,
    /// The key; `None` is a null key (distinct from an empty one).
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a null value (distinct from an empty one).
    pub value: Option<Vec<u8>>,
    /// Headers in order; `None` is a null header value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

fn b64(b: &Option<Vec<u8>>) -> Value {
    match b {
        Some(b) => Value::String(B64.encode(b)),
        None => Value::Null,
    }
}

fn unb64(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(
            B64.decode(s)
                .unwrap_or_else(|e| panic!("bad base64 {s:?}: {e}")),
        ),
        other => panic!("expected base64 string or null, got {other}"),
    }
}

const PRODUCE_PY: &str = include_str!("py/produce.py");
const DUMP_PY: &str = include_str!("py/dump.py");

/// Produces `msgs` in order to `topic` on `broker` with confluent-kafka's
/// Producer, through librdkafka's default partitioner (`consistent_random`:
/// CRC32 of the key, not Java's murmur2; use [`py_produce_to`] to pick a
/// partition).
///
/// `codec` is `compression.type` (`none`, `gzip`, `snappy`, `lz4`, `zstd`);
/// `idempotent` sets `enable.idempotence`. Everything a record can hold is
/// expressible: null keys and values, null header values, repeated header
/// keys, explicit timestamps. Returns `(partition, offset)` of each message, in
/// input order. Panics (with the Python error) when a message is not delivered.
pub fn py_produce(
    env: &TestEnv,
    broker: &str,
    topic: &str,
    msgs: &[KcatMsg],
    codec: &str,
    idempotent: bool,
) -> Vec<(i32, i64)> {
    py_produce_to(env, broker, topic, None, msgs, codec, idempotent)
}

/// [`py_produce`] to one partition (`Some(p)`) or through the partitioner (`None`).
pub fn py_produce_to(
    env: &TestEnv,
    broker: &str,
    topic: &str,
    partition: Option<i32>,
    msgs: &[KcatMsg],
    codec: &str,
    idempotent: bool,
) -> Vec<(i32, i64)> {
    let input: Vec<Value> = msgs
        .iter()
        .map(|m| {
            json!({
                "key": b64(&m.key),
                "value": b64(&m.value),
                "headers": m.headers.iter().map(|(k, v)| json!([k, b64(v)])).collect::<Vec<_>>(),
                "timestamp": m.timestamp,
            })
        })
        .collect();
    let stdin = serde_json::to_vec(&input).expect("json");
    let part = partition.unwrap_or(-1).to_string();
    let idem = if idempotent { "1" } else { "0" };
    let out = run_python_args(
        env,
        PRODUCE_PY,
        &[broker, topic, codec, idem, &part],
        &stdin,
    );
    let results: Vec<(i32, i64)> = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "produce.py printed no result list ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(results.len(), msgs.len(), "one delivery report per message");
    results
}

/// Produces `msgs` with kcat (`kcat -P`), which is librdkafka too but through
/// its command line. One kcat run sends consecutive messages that share their
/// headers; messages travel on stdin split by delimiters that the data does not
/// contain, so keys and values may be any bytes.
///
/// kcat 1.7 limits (it panics on these; use [`py_produce`] instead):
/// - no per-message timestamps (`timestamp` must be `None`);
/// - header values cannot contain NUL bytes and header keys cannot contain `=`
///   (headers go on the command line as `-H k=v`; a null value is `-H k`);
/// - a null value is sent with `-Z`, which also turns an empty key into a null
///   one, so a message cannot have an empty key and a null value.
///
/// `partition`: `Some(p)` is `-p p`, `None` is librdkafka's default partitioner.
/// `codec` is `-z` (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
pub fn kcat_produce(
    env: &TestEnv,
    broker: &str,
    topic: &str,
    partition: Option<i32>,
    codec: &str,
    msgs: &[KcatMsg],
) {
    for m in msgs {
        assert!(
            m.timestamp.is_none(),
            "kcat_produce cannot set timestamps (kcat 1.7): use py_produce"
        );
        assert!(
            !(m.value.is_none() && m.key.as_deref() == Some(&[][..])),
            "kcat_produce cannot send an empty key with a null value: use py_produce"
        );
        for (k, v) in &m.headers {
            assert!(
                !k.contains('=') && !k.contains('\0'),
                "kcat_produce: header key {k:?} cannot contain '=' or NUL: use py_produce"
            );
            assert!(
                !v.as_deref().unwrap_or_default().contains(&0),
                "kcat_produce: header values cannot contain NUL bytes: use py_produce"
            );
        }
    }
    // Group consecutive messages by headers and by whether they need `-Z`
    // (a null value) or must not have it (an empty key or value).
    let mut start = 0;
    while start < msgs.len() {
        let headers = &msgs[start].headers;
        let mut z: Option<bool> = None;
        let mut end = start;
        while end < msgs.len() && msgs[end].headers == *headers {
            let m = &msgs[end];
            let need = m.value.is_none();
            let forbid = m.value.as_deref() == Some(&[][..]) || m.key.as_deref() == Some(&[][..]);
            match (z, need, forbid) {
                (Some(false), true, _) | (Some(true), _, true) => break,
                (None, true, _) => z = Some(true),
                (None, _, true) => z = Some(false),
                _ => {}
            }
            end += 1;
        }
        kcat_run(
            env,
            broker,
            topic,
            partition,
            codec,
            &msgs[start..end],
            z == Some(true),
        );
        start = end;
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn kcat_run(
    env: &TestEnv,
    broker: &str,
    topic: &str,
    partition: Option<i32>,
    codec: &str,
    msgs: &[KcatMsg],
    null_empty: bool,
) {
    // Pick delimiters that occur exactly where we put them.
    let mut nonce = 0u32;
    let (md, kd, input) = loop {
        let md = format!("~FeRrY-mD-{nonce}~").into_bytes();
        let kd = format!("~FeRrY-kD-{nonce}~").into_bytes();
        let mut input = Vec::new();
        let mut keyed = 0;
        for m in msgs {
            if let Some(k) = &m.key {
                input.extend_from_slice(k);
                input.extend_from_slice(&kd);
                keyed += 1;
            }
            input.extend_from_slice(m.value.as_deref().unwrap_or_default());
            input.extend_from_slice(&md);
        }
        if count(&input, &md) == msgs.len() && count(&input, &kd) == keyed {
            break (md, kd, input);
        }
        nonce += 1;
    };
    let mut args: Vec<OsString> = vec![
        "-P".into(),
        "-b".into(),
        broker.into(),
        "-t".into(),
        topic.into(),
        "-z".into(),
        codec.into(),
        "-D".into(),
        String::from_utf8(md).expect("ascii").into(),
        "-K".into(),
        String::from_utf8(kd).expect("ascii").into(),
        "-X".into(),
        "acks=all".into(),
    ];
    if let Some(p) = partition {
        args.push("-p".into());
        args.push(p.to_string().into());
    }
    if null_empty {
        args.push("-Z".into());
    }
    for (k, v) in &msgs[0].headers {
        let mut h: OsString = k.into();
        if let Some(v) = v {
            use std::os::unix::ffi::OsStrExt;
            h.push("=");
            h.push(std::ffi::OsStr::from_bytes(v));
        }
        args.push("-H".into());
        args.push(h);
    }
    run(&env.kcat, &args, &input);
}

/// Reads all of `topic` on `broker`, every partition from its log start to its
/// end (the high watermark, or the last stable offset: this reads
/// `read_committed`, like a default consumer), with confluent-kafka's Consumer
/// (assign, no group join, no commits). Returns the records sorted by
/// (partition, offset); control records and aborted records are not included.
/// Panics when the topic does not exist or cannot be read within 120 s.
pub fn dump_topic(env: &TestEnv, broker: &str, topic: &str) -> Vec<DumpedRecord> {
    dump_topic_with(env, broker, topic, true)
}

/// [`dump_topic`] with a choice of isolation: `read_committed = false` also
/// returns records of aborted and open transactions (up to the high watermark).
pub fn dump_topic_with(
    env: &TestEnv,
    broker: &str,
    topic: &str,
    read_committed: bool,
) -> Vec<DumpedRecord> {
    let iso = if read_committed {
        "read_committed"
    } else {
        "read_uncommitted"
    };
    let out = run_python_args(env, DUMP_PY, &[broker, topic, iso, "120"], b"");
    let mut records: Vec<DumpedRecord> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let v: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!(
                    "dump.py printed a bad line ({e}): {}",
                    String::from_utf8_lossy(line)
                )
            });
            DumpedRecord {
                partition: v["partition"].as_i64().expect("partition") as i32,
                offset: v["offset"].as_i64().expect("offset"),
                timestamp: v["timestamp"].as_i64().expect("timestamp"),
                timestamp_type: v["timestamp_type"]
                    .as_str()
                    .expect("timestamp_type")
                    .to_string(),
                key: unb64(&v["key"]),
                value: unb64(&v["value"]),
                headers: v["headers"]
                    .as_array()
                    .expect("headers")
                    .iter()
                    .map(|h| (h[0].as_str().expect("header key").to_string(), unb64(&h[1])))
                    .collect(),
            }
        })
        .collect();
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// Runs `script` with the dev venv's Python (`python -c script`), feeding it
/// `stdin`; returns its stdout. Panics with its stderr when it fails. Its stderr
/// is passed on to this process's stderr when it succeeds.
pub fn run_python(env: &TestEnv, script: &str, stdin: &[u8]) -> Vec<u8> {
    run_python_args(env, script, &[], stdin)
}

/// [`run_python`] with arguments (`sys.argv[1:]`).
pub fn run_python_args(env: &TestEnv, script: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut all: Vec<OsString> = vec!["-c".into(), script.into()];
    all.extend(args.iter().map(OsString::from));
    run(&env.python, &all, stdin)
}

/// Runs `program args...` with `stdin`, returns stdout; panics with stderr on failure.
fn run(program: &str, args: &[OsString], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} ({NO_ENV_MESSAGE})"));
    let mut child_stdin = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // A child that exits early closes its stdin: that shows in its status.
        let _ = child_stdin.write_all(&input);
    });
    let mut err = Vec::new();
    let mut stderr = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let _ = stderr.read_to_end(&mut err);
        err
    });
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read stdout");
    let status = child.wait().expect("wait");
    let _ = writer.join();
    let err = err_reader.join().unwrap_or_default();
    let short: String = args
        .iter()
        .filter(|a| a.len() < 200)
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if !status.success() {
        panic!(
            "{program} {short} failed ({status}):\n{}",
            String::from_utf8_lossy(&err)
        );
    }
    if !err.is_empty() {
        eprint!("{}", String::from_utf8_lossy(&err));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# Written by scripts/dev-env up\n\
        export FERRY_KAFKA=127.0.0.1:19092\n\
        export FERRY_TANSU=127.0.0.1:19192\n\
        \n\
        export FERRY_S3_ENDPOINT=http://127.0.0.1:19000\n\
        export FERRY_S3_BUCKET='ferry-test'\n\
        export FERRY_KCAT=\"/var/tmp/ferry-dev/bin/kcat\"\n\
        FERRY_PYTHON=/v/venv/bin/python\n\
          export   FERRY_KAFKA_LIBS=/v/kafka/libs-4.4.0  \n\
        export FERRY_JAVA=/usr/bin/java\n\
        export AWS_ACCESS_KEY_ID=k=with=equals\n\
        not a line\n\
        export BAD-NAME=x\n";

    #[test]
    fn parses_env_file() {
        let m = parse_env_file(FILE);
        assert_eq!(m["FERRY_KAFKA"], "127.0.0.1:19092");
        assert_eq!(m["FERRY_S3_BUCKET"], "ferry-test");
        assert_eq!(m["FERRY_KCAT"], "/var/tmp/ferry-dev/bin/kcat");
        assert_eq!(m["FERRY_PYTHON"], "/v/venv/bin/python");
        assert_eq!(m["FERRY_KAFKA_LIBS"], "/v/kafka/libs-4.4.0");
        assert_eq!(m["AWS_ACCESS_KEY_ID"], "k=with=equals");
        assert!(!m.contains_key("BAD-NAME"));
        assert_eq!(m.len(), 9);
    }

    #[test]
    fn env_from_file_and_vars() {
        let file = parse_env_file(FILE);
        let e = env_from(
            |k| (k == "FERRY_KAFKA").then(|| "10.0.0.1:9092".to_string()),
            &file,
        )
        .expect("complete env");
        assert_eq!(e.kafka, "10.0.0.1:9092", "process env wins");
        assert_eq!(e.tansu, "127.0.0.1:19192");
        assert_eq!(e.s3_endpoint, "http://127.0.0.1:19000");
        assert_eq!(e.java, "/usr/bin/java");
        assert_eq!(e.aws_secret_access_key, "test", "default");
        assert_eq!(e.aws_region, "us-east-1", "default");
        assert_eq!(e.iceberg_rest, "http://127.0.0.1:19181", "default");
        assert_eq!(e.azure_endpoint, "http://127.0.0.1:19010/devstoreaccount1");
        assert_eq!(
            e.gcs_uri("p"),
            "gs://ferry-test/p?endpoint=http://127.0.0.1:19020&anonymous=true"
        );
    }

    #[test]
    fn env_missing_names_what_is_missing() {
        let none = env_from(|_| None, &HashMap::new()).expect_err("no env");
        assert!(none.contains("FERRY_KAFKA"), "{none}");
        assert!(none.contains("scripts/dev-env up"), "{none}");
        let partial = env_from(
            |k| (k == "FERRY_KAFKA").then(|| "127.0.0.1:1".to_string()),
            &HashMap::new(),
        )
        .expect_err("partial env");
        assert!(
            partial.contains("FERRY_TANSU, FERRY_S3_ENDPOINT"),
            "{partial}"
        );
    }

    #[test]
    fn unusable_parts_name_the_service_and_the_tool() {
        // Port 1 on loopback: nothing listens there on a test machine.
        let file = parse_env_file(FILE);
        let mut e = env_from(
            |k| (k == "FERRY_KAFKA").then(|| "127.0.0.1:1".into()),
            &file,
        )
        .expect("complete env");
        e.tansu = "127.0.0.1:1".into();
        e.s3_endpoint = "http://127.0.0.1:1/".into();
        e.azure_endpoint = "http://127.0.0.1:1/devstoreaccount1".into();
        e.gcs_endpoint = "http://127.0.0.1:1".into();
        e.python = "/nonexistent/python".into();
        let parts = unusable_parts(&e).join("; ");
        assert!(
            parts.contains("Kafka (FERRY_KAFKA) at 127.0.0.1:1: connect"),
            "{parts}"
        );
        assert!(
            parts.contains("S3 server (FERRY_S3_ENDPOINT) at http://127.0.0.1:1/"),
            "{parts}"
        );
        assert!(
            parts.contains("Azurite (FERRY_AZURE_ENDPOINT) at http://127.0.0.1:1/devstoreaccount1"),
            "{parts}"
        );
        assert!(
            parts.contains("fake-gcs-server (FERRY_GCS_ENDPOINT) at http://127.0.0.1:1"),
            "{parts}"
        );
        assert!(
            parts.contains("FERRY_PYTHON=/nonexistent/python does not exist"),
            "{parts}"
        );
    }

    #[test]
    fn probe_accepts_a_listening_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert_eq!(probe_tcp(&format!("127.0.0.1:{port}")), Ok(()));
        assert_eq!(
            probe_tcp(&format!("http://127.0.0.1:{port}/bucket")),
            Ok(())
        );
    }

    #[test]
    fn unique_names_differ_and_are_valid() {
        let a = unique("t");
        let b = unique("t");
        assert_ne!(a, b);
        assert!(a.starts_with("t-"));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'));
    }

    #[test]
    fn delimiter_count() {
        assert_eq!(count(b"a~x~b~x~", b"~x~"), 2);
        assert_eq!(count(b"", b"~x~"), 0);
    }
}
