//! One broker connection: TCP (optionally TLS), ApiVersions negotiation, SASL, and request
//! pipelining (a writer task and a reader task; each response finds its waiter by correlation
//! id). A [`BrokerHandle`] owns the current connection to one broker and re-dials, with
//! backoff, when it broke.

use crate::error::{ClientError, KafkaCode, Result};
use crate::retry::RetryPolicy;
use crate::security::{self, SaslConfig};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

/// Largest response frame accepted; a length above it means a broken stream, not data.
const MAX_FRAME: usize = 1 << 30;

/// Byte stream a connection runs on: plain TCP or TLS over TCP.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// What every connection of a client shares.
#[derive(Clone)]
pub(crate) struct ConnConfig {
    pub client_id: StrBytes,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Delays between dials of a broker that could not be reached.
    pub retry: RetryPolicy,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<SaslConfig>,
}

type Waiter = oneshot::Sender<Result<Bytes>>;

/// A request frame as it goes to the writer task: slices written one after the other (big
/// ones as they are, small ones gathered), so large payloads need not be copied into one
/// buffer first.
type Frame = Vec<Bytes>;

/// Slices below this size are gathered into one buffer before writing; bigger ones are
/// written from where they are.
const GATHER_BELOW: usize = 64 * 1024;

struct State {
    pending: HashMap<i32, Waiter>,
    /// Set once the connection is dead; the reason every later request fails with.
    closed: Option<String>,
    tasks: Vec<AbortHandle>,
}

/// A live, pipelined connection to one broker.
pub(crate) struct Connection {
    addr: String,
    state: Arc<Mutex<State>>,
    writer: mpsc::UnboundedSender<Frame>,
    next_id: AtomicI32,
    client_id: StrBytes,
    request_timeout: Duration,
    /// Highest version per API key usable with this broker (both sides support it).
    versions: OnceLock<HashMap<i16, i16>>,
    /// Until when the broker asked (throttle_time_ms, a quota) not to be sent requests.
    throttled_until: Mutex<Option<Instant>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A poisoned lock only means another task panicked while holding it; the map is still valid.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn fail_all(state: &Mutex<State>, addr: &str, reason: &str) {
    let (waiters, tasks) = {
        let mut st = lock(state);
        if st.closed.is_none() {
            st.closed = Some(reason.to_string());
        }
        (
            std::mem::take(&mut st.pending),
            std::mem::take(&mut st.tasks),
        )
    };
    for (_, w) in waiters {
        let _ = w.send(Err(ClientError::ConnectionClosed {
            addr: addr.to_string(),
            reason: reason.to_string(),
        }));
    }
    for t in tasks {
        t.abort();
    }
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| format!("api {key}"))
}

impl Connection {
    /// Dials `addr`, negotiates versions and authenticates.
    pub(crate) async fn connect(addr: &str, cfg: &ConnConfig) -> Result<Arc<Connection>> {
        let connect_timeout = crate::retry::within_deadline(cfg.connect_timeout);
        let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout {
                addr: addr.to_string(),
                api: "connect".into(),
                after: connect_timeout,
            })?
            .map_err(|e| ClientError::Io {
                addr: addr.to_string(),
                context: "connect".into(),
                source: e,
            })?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match &cfg.tls {
            Some(tls) => {
                let s = tokio::time::timeout(
                    cfg.connect_timeout,
                    security::tls_connect(tls.clone(), addr, tcp),
                )
                .await
                .map_err(|_| ClientError::Timeout {
                    addr: addr.to_string(),
                    api: "TLS handshake".into(),
                    after: cfg.connect_timeout,
                })??;
                Box::new(s)
            }
            None => Box::new(tcp),
        };
        let conn = Arc::new(Self::start(addr, stream, cfg));
        conn.setup(cfg).await?;
        debug!(broker = addr, "connected");
        Ok(conn)
    }

    /// ApiVersions negotiation, then SASL when configured: what every new connection does
    /// before it carries requests.
    pub(crate) async fn setup(&self, cfg: &ConnConfig) -> Result<()> {
        self.negotiate().await?;
        if let Some(sasl) = &cfg.sasl {
            security::authenticate(self, sasl).await?;
        }
        Ok(())
    }

    /// Starts the reader and writer tasks on an established stream.
    pub(crate) fn start(addr: &str, stream: Box<dyn Stream>, cfg: &ConnConfig) -> Connection {
        let (rd, mut wr) = tokio::io::split(stream);
        let state = Arc::new(Mutex::new(State {
            pending: HashMap::new(),
            closed: None,
            tasks: Vec::new(),
        }));
        let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();

        let wstate = state.clone();
        let waddr = addr.to_string();
        let writer = tokio::spawn(async move {
            let res: std::io::Result<()> = async {
                let mut gathered = BytesMut::with_capacity(GATHER_BELOW);
                while let Some(frame) = rx.recv().await {
                    let mut frame = Some(frame);
                    // Drain what is queued before flushing: fewer syscalls under load.
                    while let Some(parts) = frame.take().or_else(|| rx.try_recv().ok()) {
                        for part in parts {
                            if part.len() < GATHER_BELOW {
                                gathered.extend_from_slice(&part);
                                if gathered.len() < GATHER_BELOW {
                                    continue;
                                }
                            } else if !gathered.is_empty() {
                                wr.write_all(&gathered).await?;
                                gathered.clear();
                            }
                            if gathered.is_empty() {
                                wr.write_all(&part).await?;
                            } else {
                                wr.write_all(&gathered).await?;
                                gathered.clear();
                            }
                        }
                    }
                    if !gathered.is_empty() {
                        wr.write_all(&gathered).await?;
                        gathered.clear();
                    }
                    wr.flush().await?;
                }
                let _ = wr.shutdown().await;
                Ok(())
            }
            .await;
            if let Err(e) = res {
                fail_all(&wstate, &waddr, &format!("write failed: {e}"));
            }
        });

        let rstate = state.clone();
        let raddr = addr.to_string();
        let reader = tokio::spawn(async move {
            let mut rd = BufReader::with_capacity(64 * 1024, rd);
            let reason = loop {
                let len = match rd.read_i32().await {
                    Ok(l) => l,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        break "closed by broker".to_string()
                    }
                    Err(e) => break format!("read failed: {e}"),
                };
                if len < 4 || len as usize > MAX_FRAME {
                    break format!("invalid response frame length {len}");
                }
                let mut buf = BytesMut::zeroed(len as usize);
                if let Err(e) = rd.read_exact(&mut buf).await {
                    break format!("read failed: {e}");
                }
                let frame = buf.freeze();
                let corr = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                let waiter = lock(&rstate).pending.remove(&corr);
                match waiter {
                    Some(w) => {
                        let _ = w.send(Ok(frame));
                    }
                    None => {
                        debug!(broker = %raddr, corr, "response for a request nobody waits for (timed out)")
                    }
                }
            };
            fail_all(&rstate, &raddr, &reason);
        });
        lock(&state).tasks = vec![writer.abort_handle(), reader.abort_handle()];

        Connection {
            addr: addr.to_string(),
            state,
            writer: tx,
            next_id: AtomicI32::new(1),
            client_id: cfg.client_id.clone(),
            request_timeout: cfg.request_timeout,
            versions: OnceLock::new(),
            throttled_until: Mutex::new(None),
        }
    }

    /// The broker's address.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Notes a response's `throttle_time_ms`: the broker (over its quota) wants no request on
    /// this connection for that long (KIP-219), so the next one waits.
    pub(crate) fn throttle(&self, throttle_time_ms: i32) {
        if throttle_time_ms <= 0 {
            return;
        }
        let until = Instant::now() + Duration::from_millis(throttle_time_ms as u64);
        let mut t = self
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if t.is_none_or(|old| old < until) {
            *t = Some(until);
        }
        debug!(broker = %self.addr, throttle_time_ms, "broker throttled this client");
    }

    /// Waits until the broker's last throttle has passed.
    pub(crate) async fn wait_throttle(&self) {
        let until = *self
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    /// Whether the connection can still carry requests.
    pub(crate) fn is_alive(&self) -> bool {
        lock(&self.state).closed.is_none()
    }

    /// Closes the connection, failing every waiting request.
    pub(crate) fn close(&self, reason: &str) {
        fail_all(&self.state, &self.addr, reason);
    }

    /// Highest version of `key` that both the broker and kafka-protocol support.
    pub(crate) fn version(&self, key: ApiKey) -> Result<i16> {
        self.versions
            .get()
            .and_then(|v| v.get(&(key as i16)).copied())
            .ok_or_else(|| ClientError::UnsupportedVersion {
                addr: self.addr.clone(),
                api: format!("{key:?}"),
            })
    }

    /// Like [`Connection::version`], capped at `max`.
    pub(crate) fn version_capped(&self, key: ApiKey, max: i16) -> Result<i16> {
        let v = self.version(key)?;
        let min = key.valid_versions().min;
        if v.min(max) < min {
            return Err(ClientError::UnsupportedVersion {
                addr: self.addr.clone(),
                api: format!("{key:?}"),
            });
        }
        Ok(v.min(max))
    }

    /// The length prefix (left 0) and request header of a request.
    fn frame_start(&self, api: i16, version: i16, corr: i32) -> Result<BytesMut> {
        let key = ApiKey::try_from(api).map_err(|_| self.proto(api, "unknown api key".into()))?;
        let header = RequestHeader::default()
            .with_request_api_key(api)
            .with_request_api_version(version)
            .with_correlation_id(corr)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(64);
        buf.put_i32(0);
        header
            .encode(&mut buf, key.request_header_version(version))
            .map_err(|e| self.proto(api, format!("encoding request header: {e}")))?;
        Ok(buf)
    }

    fn encode_frame<R: Request>(&self, req: &R, version: i16, corr: i32) -> Result<Frame> {
        let api = R::KEY;
        let mut buf = self.frame_start(api, version, corr)?;
        req.encode(&mut buf, version)
            .map_err(|e| self.proto(api, format!("encoding v{version} request: {e}")))?;
        let len = buf.len() - 4;
        let len = i32::try_from(len).map_err(|_| self.proto(api, "request too large".into()))?;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        Ok(vec![buf.freeze()])
    }

    /// A frame whose body `R` the caller encoded itself, as slices.
    fn parts_frame<R: Request>(&self, body: Vec<Bytes>, version: i16, corr: i32) -> Result<Frame> {
        let api = R::KEY;
        let mut start = self.frame_start(api, version, corr)?;
        let len = start.len() - 4 + body.iter().map(Bytes::len).sum::<usize>();
        let len = i32::try_from(len).map_err(|_| self.proto(api, "request too large".into()))?;
        start[0..4].copy_from_slice(&len.to_be_bytes());
        let mut frame = Vec::with_capacity(body.len() + 1);
        frame.push(start.freeze());
        frame.extend(body);
        Ok(frame)
    }

    fn proto(&self, api: i16, message: String) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            api: api_name(api),
            message,
        }
    }

    /// Sends `req` at `version` and waits for its response (the client's request timeout).
    pub(crate) async fn send<R: Request>(&self, req: &R, version: i16) -> Result<R::Response> {
        self.send_timeout(req, version, self.request_timeout).await
    }

    /// Sends `req` at `version` and waits at most `timeout` for its response.
    pub(crate) async fn send_timeout<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        let frame = self.send_frame(req, version, timeout).await?;
        self.decode_response::<R>(frame, version)
    }

    /// Sends `req` and returns the response body undecoded (after the response header), for
    /// responses Ferry decodes itself.
    pub(crate) async fn send_raw_timeout<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<Bytes> {
        let mut frame = self.send_frame(req, version, timeout).await?;
        let api = R::KEY;
        let key = ApiKey::try_from(api).map_err(|_| self.proto(api, "unknown api key".into()))?;
        ResponseHeader::decode(&mut frame, key.response_header_version(version))
            .map_err(|e| self.proto(api, format!("decoding response header: {e}")))?;
        Ok(frame)
    }

    /// Sends a request the broker never answers (Produce with acks=0).
    pub(crate) fn send_no_response<R: Request>(&self, req: &R, version: i16) -> Result<()> {
        let corr = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode_frame(req, version, corr)?;
        if let Some(reason) = lock(&self.state).closed.clone() {
            return Err(ClientError::ConnectionClosed {
                addr: self.addr.clone(),
                reason,
            });
        }
        self.writer
            .send(frame)
            .map_err(|_| ClientError::ConnectionClosed {
                addr: self.addr.clone(),
                reason: "writer stopped".into(),
            })
    }

    async fn send_frame<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<Bytes> {
        self.wait_throttle().await;
        let (corr, rx) = self.enqueue(req, version)?;
        self.answer(R::KEY, corr, rx, timeout).await
    }

    /// Encodes `req`, registers the waiter of its correlation id and hands the frame to the
    /// writer task: the order of calls is the order on the wire.
    fn enqueue<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<(i32, oneshot::Receiver<Result<Bytes>>)> {
        let corr = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode_frame(req, version, corr)?;
        self.enqueue_frame(corr, frame)
    }

    /// Registers the waiter of `corr` and hands `frame` to the writer task.
    fn enqueue_frame(
        &self,
        corr: i32,
        frame: Frame,
    ) -> Result<(i32, oneshot::Receiver<Result<Bytes>>)> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = lock(&self.state);
            if let Some(reason) = &st.closed {
                return Err(ClientError::ConnectionClosed {
                    addr: self.addr.clone(),
                    reason: reason.clone(),
                });
            }
            st.pending.insert(corr, tx);
        }
        if self.writer.send(frame).is_err() {
            lock(&self.state).pending.remove(&corr);
            return Err(ClientError::ConnectionClosed {
                addr: self.addr.clone(),
                reason: "writer stopped".into(),
            });
        }
        Ok((corr, rx))
    }

    /// Puts a request on the wire now, its body of type `R` encoded by the caller as slices
    /// (see `produce_frame`) that go to the socket without being copied into one frame, and
    /// returns a future of its response. Requests started in sequence reach the broker in
    /// that order, so a caller can keep several in flight (pipelining) without awaiting each
    /// answer first.
    pub(crate) fn start_request_parts<R: Request>(
        self: &Arc<Self>,
        body: Vec<Bytes>,
        version: i16,
        timeout: Duration,
    ) -> Result<impl std::future::Future<Output = Result<R::Response>> + Send + 'static>
    where
        R::Response: Send + 'static,
    {
        let corr = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.parts_frame::<R>(body, version, corr)?;
        let (corr, rx) = self.enqueue_frame(corr, frame)?;
        let conn = self.clone();
        Ok(async move {
            let frame = conn.answer(R::KEY, corr, rx, timeout).await?;
            conn.decode_response::<R>(frame, version)
        })
    }

    /// Waits at most `timeout` for the response frame of request `corr`.
    async fn answer(
        &self,
        api: i16,
        corr: i32,
        rx: oneshot::Receiver<Result<Bytes>>,
        timeout: Duration,
    ) -> Result<Bytes> {
        // Not past the give-up time of the retry loop this request is a try of.
        let timeout = crate::retry::within_deadline(timeout);
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                lock(&self.state).pending.remove(&corr);
                // Like the Java client: a request that timed out leaves the connection in an
                // unknown state, so it is closed and re-dialed on next use. The reason carries
                // the wait: requests pipelined behind this one fail with it, and whichever
                // error reaches the user first must say how long the broker was silent.
                let api = api_name(api);
                self.close(&format!("{api} request timed out after {timeout:?}"));
                Err(ClientError::Timeout {
                    addr: self.addr.clone(),
                    api,
                    after: timeout,
                })
            }
            Ok(Err(_)) => Err(ClientError::ConnectionClosed {
                addr: self.addr.clone(),
                reason: lock(&self.state)
                    .closed
                    .clone()
                    .unwrap_or_else(|| "dropped".into()),
            }),
            Ok(Ok(r)) => r,
        }
    }

    fn decode_response<R: Request>(&self, frame: Bytes, version: i16) -> Result<R::Response> {
        crate::wire::decode_response::<R>(frame, version).map_err(|e| self.proto(R::KEY, e))
    }

    /// ApiVersions: v3, falling back to what the broker says it supports (or v0) when it
    /// answers UNSUPPORTED_VERSION.
    async fn negotiate(&self) -> Result<()> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("ferry"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = 3;
        let resp = loop {
            let frame = self.send_frame(&req, version, self.request_timeout).await?;
            // The broker answers UNSUPPORTED_VERSION in the v0 body format, whatever we asked.
            let mut body = frame.clone();
            if body.remaining() >= 6 {
                body.advance(4); // correlation id (ApiVersions responses always use header v0)
                let code = body.get_i16();
                if code == KafkaCode::UNSUPPORTED_VERSION.0 && version > 0 {
                    let mut b = frame.slice(4..);
                    let broker_max = ApiVersionsResponse::decode(&mut b, 0)
                        .ok()
                        .and_then(|r| {
                            r.api_keys
                                .iter()
                                .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                                .map(|k| k.max_version)
                        })
                        .unwrap_or(0);
                    let next = broker_max.clamp(0, version - 1);
                    debug!(broker = %self.addr, from = version, to = next, "ApiVersions version not supported, retrying");
                    version = next;
                    continue;
                }
            }
            break self.decode_response::<ApiVersionsRequest>(frame, version)?;
        };
        if let Some(code) = KafkaCode::from_code(resp.error_code) {
            return Err(ClientError::kafka("ApiVersions", "", code, None).with_addr(&self.addr));
        }
        let mut map = HashMap::new();
        for k in &resp.api_keys {
            if let Ok(key) = ApiKey::try_from(k.api_key) {
                let ours = key.valid_versions();
                let max = k.max_version.min(ours.max);
                let min = k.min_version.max(ours.min);
                if min <= max {
                    map.insert(k.api_key, max);
                }
            }
        }
        let _ = self.versions.set(map);
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        fail_all(&self.state, &self.addr, "connection dropped");
    }
}

/// The connection to one broker, dialed on first use and re-dialed (with exponential backoff
/// and jitter) after it broke.
pub(crate) struct BrokerHandle {
    addr: String,
    cfg: Arc<ConnConfig>,
    current: tokio::sync::Mutex<Option<Arc<Connection>>>,
    failures: Mutex<(u32, Option<Instant>)>,
    /// When an unreachable broker was last reported at warn level: once a minute at most,
    /// so an outage of hours does not flood the log.
    last_warned: Mutex<Option<Instant>>,
}

/// How often an unreachable broker is reported at warn level.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Gauge per broker address: 1 while Ferry holds a live connection, 0 after a dial failed.
pub const CONNECTED_GAUGE: &str = "ferry_kafka_connected";

impl BrokerHandle {
    pub(crate) fn new(addr: String, cfg: Arc<ConnConfig>) -> Self {
        BrokerHandle {
            addr,
            cfg,
            current: tokio::sync::Mutex::new(None),
            failures: Mutex::new((0, None)),
            last_warned: Mutex::new(None),
        }
    }

    /// The broker's address.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// A live connection, dialing one if needed.
    pub(crate) async fn get(&self) -> Result<Arc<Connection>> {
        let mut cur = self.current.lock().await;
        if let Some(c) = cur.as_ref() {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
        *cur = None;
        let (n, last) = *self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if n > 0 {
            // Dials of an unreachable broker are spaced by the retry policy, so the loops
            // above (each with their own backoff) never hammer a dead address.
            let wait = self.cfg.retry.delay(n - 1);
            let elapsed = last.map(|t| t.elapsed()).unwrap_or(wait);
            if elapsed < wait {
                tokio::time::sleep(crate::retry::within_deadline(wait - elapsed)).await;
            }
        }
        match Connection::connect(&self.addr, &self.cfg).await {
            Ok(c) => {
                if n > 0 {
                    info!(broker = %self.addr, failed_dials = n, "connected again");
                }
                *self.failures.lock().unwrap_or_else(|p| p.into_inner()) = (0, None);
                *self.last_warned.lock().unwrap_or_else(|p| p.into_inner()) = None;
                metrics::gauge!(CONNECTED_GAUGE, "broker" => self.addr.clone()).set(1.0);
                *cur = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                let failed = {
                    let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
                    *f = (f.0.saturating_add(1), Some(Instant::now()));
                    f.0
                };
                metrics::gauge!(CONNECTED_GAUGE, "broker" => self.addr.clone()).set(0.0);
                if self.due_for_warning() {
                    warn!(broker = %self.addr, failed_dials = failed, error = %e, "broker unreachable; retrying (reported once a minute while it lasts)");
                } else {
                    debug!(broker = %self.addr, failed_dials = failed, error = %e, "connecting failed");
                }
                Err(e)
            }
        }
    }

    /// Whether an unreachable broker should be reported at warn level now (the first
    /// failure, then once per [`OUTAGE_LOG_EVERY`]); notes the report.
    fn due_for_warning(&self) -> bool {
        let mut last = self.last_warned.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= OUTAGE_LOG_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}
