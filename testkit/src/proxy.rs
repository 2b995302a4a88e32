//! A fault proxy: a small TCP proxy on loopback that passes bytes through, or, on command,
//! stalls them, slows them to a bandwidth, refuses new connections, answers new HTTP
//! connections with an error status such as `503 Service Unavailable` or `500 Internal Server
//! Error` (an object store having a bad moment), or cuts the live ones.
//!
//! Kafka clients learn broker addresses from metadata, so one proxy in front of a bootstrap
//! address is not enough: every broker needs its own proxy and must advertise the proxy's
//! address. `scripts/dev-env cluster-up` gives each node a second client listener, `PROXIED`,
//! bound on 2939N and advertised as 2929N (N = 2, 3, 4 for nodes 1, 2, 3); a test starts one
//! [`FaultProxy`] per node from 2929N to 2939N and bootstraps through them, so every request
//! of the client under test crosses a proxy. The same works for an S3 endpoint (one address).
//!
//! Plain threads, no async runtime: the proxy must keep working while the code under test
//! blocks its own runtime, and the test kit stays free of dependencies.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bytes pass through as they come.
    Pass,
    /// Connections stay open but no byte moves either way (a broker that stopped answering).
    Stall,
    /// Bytes pass at most this many per second each way (a slow link).
    Slow(u64),
    /// New connections are accepted and closed at once (the peer looks down); live ones
    /// keep their state.
    Refuse,
    /// New connections get, once their first request's head has arrived, an HTTP `503 Service
    /// Unavailable` with `Connection: close` (an object store shedding load); live ones pass.
    /// [`FaultProxy::cut`] first so that clients holding connections open new ones. The same
    /// as `Http(503)`.
    Http503,
    /// Like [`Fault::Http503`] with this status instead: `Http(500)` is an object store's
    /// `500 Internal Server Error` (S3's `InternalError`, which AWS asks clients to retry).
    Http(u16),
}

impl Fault {
    /// The HTTP status new connections are answered with, if this fault answers them.
    fn http_status(self) -> Option<u16> {
        match self {
            Fault::Http503 => Some(503),
            Fault::Http(status) => Some(status),
            _ => None,
        }
    }
}

struct Shared {
    fault: Mutex<Fault>,
    live: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
    accepted: AtomicU64,
    forwarded: AtomicU64,
    /// Connections answered with an HTTP error status by [`Fault::Http503`] or [`Fault::Http`].
    http_errors: AtomicU64,
}

/// A running proxy from `listen` to `upstream`; stops when dropped.
pub struct FaultProxy {
    listen: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    /// The accept thread; joined on drop so the port is free once the proxy is gone.
    acceptor: Option<thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:listen_port` (0: any free port) to `upstream`.
    pub fn start(listen_port: u16, upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", listen_port))?;
        listener.set_nonblocking(true)?;
        let listen = listener.local_addr()?;
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::Pass),
            live: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            http_errors: AtomicU64::new(0),
        });
        let s = shared.clone();
        let acceptor = thread::Builder::new()
            .name(format!("fault-proxy-{}", listen.port()))
            .spawn(move || accept_loop(listener, upstream, s))?;
        Ok(FaultProxy {
            listen,
            upstream,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Sets what happens to traffic from now on (live connections included).
    pub fn set(&self, fault: Fault) {
        *lock(&self.shared.fault) = fault;
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        *lock(&self.shared.fault)
    }

    /// Closes every live connection, both sides, mid-stream.
    pub fn cut(&self) {
        for s in lock(&self.shared.live).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far, both directions.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// Requests answered with an HTTP error status so far ([`Fault::Http503`], [`Fault::Http`]),
    /// so a test can tell its fault was met rather than passing without it.
    pub fn http_errors(&self) -> u64 {
        self.shared.http_errors.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let fault = *lock(&shared.fault);
        if fault == Fault::Refuse {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        if let Some(status) = fault.http_status() {
            let s = shared.clone();
            let _ = thread::Builder::new()
                .name(format!("fault-proxy-{status}"))
                .spawn(move || answer_http(client, status, &s));
            continue;
        }
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let pair = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        );
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = pair else {
            continue;
        };
        lock(&shared.live).extend([c3, s3]);
        let (a, b) = (shared.clone(), shared.clone());
        let _ = thread::Builder::new()
            .name("fault-proxy-up".into())
            .spawn(move || pump(client, server, a));
        let _ = thread::Builder::new()
            .name("fault-proxy-down".into())
            .spawn(move || pump(s2, c2, b));
    }
}

/// Reads a request head (up to its blank line, 64 KiB or 2 s) and answers `status` with an
/// S3-style error body.
fn answer_http(mut client: TcpStream, status: u16, shared: &Shared) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while head.len() < 64 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let (reason, code) = match status {
        500 => ("Internal Server Error", "InternalError"),
        503 => ("Service Unavailable", "SlowDown"),
        _ => ("Error", "ProxyFault"),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>the fault proxy answers {status}</Message></Error>"
    );
    let written = write!(
        client,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if written.is_ok() && client.flush().is_ok() {
        shared.http_errors.fetch_add(1, Ordering::SeqCst);
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Moves bytes from `from` to `to` under the current fault until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let fault = *lock(&shared.fault);
            let step = match fault {
                Fault::Stall => {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
                // About 20 slices a second at the asked rate.
                Fault::Slow(bps) => (bps / 20).max(1) as usize,
                Fault::Pass | Fault::Refuse | Fault::Http503 | Fault::Http(_) => chunk.len(),
            };
            let step = step.min(chunk.len());
            if to.write_all(&chunk[..step]).is_err() {
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
            shared.forwarded.fetch_add(step as u64, Ordering::SeqCst);
            chunk = &chunk[step..];
            if matches!(fault, Fault::Slow(_)) {
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An upstream that echoes what it reads.
    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn passes_stalls_slows_refuses_and_cuts() {
        let proxy = FaultProxy::start(0, echo_server()).unwrap();
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        assert_eq!(round_trip(&mut c, b"hello").unwrap(), b"hello");

        proxy.set(Fault::Stall);
        let e = round_trip(&mut c, b"stalled").unwrap_err();
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        );
        // Held, not lost: the bytes arrive once traffic passes again.
        proxy.set(Fault::Pass);
        let mut got = vec![0u8; 7];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, b"stalled");

        proxy.set(Fault::Slow(2_000));
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        let msg = vec![7u8; 1_000];
        assert_eq!(round_trip(&mut c, &msg).unwrap(), msg);
        // 1000 bytes at 2000 B/s: half a second each way (the two directions overlap, as
        // the echo starts sending back while the rest still arrives).
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");

        proxy.set(Fault::Pass);
        proxy.cut();
        let mut buf = [0u8; 1];
        let after_cut = c.read(&mut buf);
        assert!(matches!(after_cut, Ok(0) | Err(_)), "{after_cut:?}");

        proxy.set(Fault::Refuse);
        let mut refused = TcpStream::connect(proxy.addr()).unwrap();
        refused
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let r = round_trip(&mut refused, b"x");
        assert!(r.is_err(), "{r:?}");
        assert!(proxy.accepted() >= 2);
        assert!(proxy.forwarded() >= 2 * 1_012);

        proxy.set(Fault::Http503);
        let mut http = TcpStream::connect(proxy.addr()).unwrap();
        http.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        http.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");

        proxy.set(Fault::Http(500));
        let mut http = TcpStream::connect(proxy.addr()).unwrap();
        http.write_all(b"PUT /x HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        http.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 500 "), "{answer}");
        assert!(answer.contains("<Code>InternalError</Code>"), "{answer}");
        assert_eq!(proxy.http_errors(), 2);
    }
}
