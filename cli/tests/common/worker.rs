//! `ferry worker` processes for the tests (worker.rs, console.rs): start one and wait until
//! it is a member, call its API over raw HTTP/1.1, stop or signal it, and produce records
//! to read.

use ferry_testkit::{run_python_args, TestEnv};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A worker process, killed (SIGKILL) when dropped unless stopped before.
pub struct Worker {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Worker {
    /// `ferry worker --brokers <env> --group <group> --listen 127.0.0.1:<port>` with `args`
    /// and the environment `vars` (`FERRY_LOG=info`), its log in `dir`; waits until it is a
    /// member of its group.
    pub fn start(
        env: &TestEnv,
        group: &str,
        port: u16,
        dir: &Path,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(["worker", "--brokers", &env.kafka, "--group", group])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("FERRY_LOG", "info")
            .envs(vars.iter().copied());
        Self::spawn(cmd, port, dir.join(format!("worker-{port}.log")))
    }

    /// Spawns `cmd` (a `ferry worker` listening on `port`), its stderr into `log`; waits until
    /// it answers `/healthz` as a member.
    pub fn spawn(mut cmd: Command, port: u16, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("ferry worker starts");
        let w = Worker { child, port, log };
        w.wait_until(
            Duration::from_secs(60),
            "answers /healthz as a member",
            |w| {
                w.get("/healthz", None)
                    .is_some_and(|(s, b)| s == 200 && b["member"] == true)
            },
        );
        w
    }

    /// One request (with the token, when given); `None` when nothing answers.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &str)>,
    ) -> Option<(u16, Value)> {
        let headers: Vec<String> = token
            .map(|t| format!("Authorization: Bearer {t}"))
            .into_iter()
            .collect();
        let resp = http(self.port, method, path, &headers, body)?;
        Some((resp.status, resp.json()))
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Option<(u16, Value)> {
        self.request("GET", path, token, None)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until `ok`; panics with the worker's log after `limit`.
    pub fn wait_until(&self, limit: Duration, what: &str, ok: impl Fn(&Worker) -> bool) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if ok(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "worker on port {} never {what} within {limit:?}; its log:\n{}",
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// SIGTERM and wait: the worker writes what it read and leaves the group.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(90) {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "worker exited {status:?}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("worker on port {} did not stop on SIGTERM", self.port);
    }

    /// Sends `sig` (`-STOP`, `-CONT`, …) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
pub struct Response {
    pub status: u16,
    /// The header lines, lowercased.
    pub headers: String,
    pub body: String,
}

impl Response {
    /// The body as JSON (a JSON string of the text when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::String(self.body.clone()))
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; `None` when nothing answers.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<(&str, &str)>,
) -> Option<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    let (ctype, text) = body.unwrap_or(("text/plain", ""));
    req.push_str(&format!(
        "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    ));
    s.write_all(req.as_bytes()).ok()?;
    read_response(&mut s)
}

/// Reads an answer: up to its `Content-Length` (chromedriver keeps the connection open), or
/// to the end when it has none.
fn read_response(s: &mut TcpStream) -> Option<Response> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let headers = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status: u16 = headers.split(' ').nth(1)?.parse().ok()?;
    let length = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut body = raw.split_off(head_end + 4);
    match length {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            s.read_to_end(&mut body).ok()?;
        }
    }
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Produces `count` records `k<i>`/`v<i>` (from `start`) spread over the topic's partitions,
/// idempotently.
pub fn produce(env: &TestEnv, topic: &str, start: u64, count: u64) {
    const SCRIPT: &str = r#"
import sys
from confluent_kafka import Producer
broker, topic, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
p = Producer({'bootstrap.servers': broker, 'linger.ms': 20, 'enable.idempotence': True})
for i in range(start, start + count):
    while True:
        try:
            p.produce(topic, key=b'k%d' % i, value=b'v%d' % i)
            break
        except BufferError:
            p.poll(0.1)
p.flush(60)
"#;
    run_python_args(
        env,
        SCRIPT,
        &[&env.kafka, topic, &start.to_string(), &count.to_string()],
        b"",
    );
}
