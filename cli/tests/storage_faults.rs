//! Object-store faults during a backup, against the dev moto S3 server behind the test kit's
//! fault proxy: connections cut mid-request, `503 Service Unavailable` and `500 Internal
//! Server Error` answers, and the server unreachable for seconds (as during a restart). The backup rides them out (opendal's
//! retries) and is exact: `ferry verify` passes and the restore equals the topic.

mod common;

use common::{create_topic, ferry_success};
use ferry_testkit::proxy::{Fault, FaultProxy};
use ferry_testkit::{dump_topic, py_produce_to, unique, DumpedRecord, KcatMsg};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

fn sorted(mut v: Vec<DumpedRecord>) -> Vec<DumpedRecord> {
    v.sort_by_key(|r| (r.partition, r.offset));
    v
}

#[test]
fn s3_errors_cut_connections_and_a_restart_during_a_backup_leave_it_exact() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("s3-faults");
    create_topic(&env, &topic, 3, &[("retention.ms", "-1")]);
    let value = vec![b's'; 4000];
    for p in 0..3 {
        let msgs: Vec<KcatMsg> = (0..2500)
            .map(|i: i64| KcatMsg::new(Some(format!("{p}-{i}").as_bytes()), Some(&value)))
            .collect();
        py_produce_to(&env, &env.kafka, &topic, Some(p), &msgs, "none", false);
    }
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    assert_eq!(source.len(), 7500);

    let (proxy, via_proxy, direct) = proxied_s3(&env, "");
    // Small segments and multipart chunks: many requests for the faults to hit.
    let yaml = format!(
        "name: s3-faults\nsource: {{ type: kafka, brokers: [\"{}\"], topics: [\"{topic}\"], stop: high_watermark, partition_max_bytes: 256KiB }}\nsink: {{ type: storage, uri: \"{via_proxy}\", roll: {{ max_bytes: 1MiB }}, chunk_size: 5MiB }}\n",
        env.kafka
    );
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("faults.yaml");
    std::fs::write(&file, yaml).expect("write");
    let log = dir.path().join("ferry.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", file.to_str().expect("path")])
        .env("FERRY_LOG", "info")
        .envs(env.aws_vars().iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("ferry runs");
    let wait_forwarded = |bytes: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while proxy.forwarded() < bytes {
            assert!(
                Instant::now() < deadline,
                "the backup wrote nothing through the proxy"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // 1. Live connections cut mid-request, three times.
    for n in 1..=3u64 {
        wait_forwarded(n * 2_000_000);
        proxy.cut();
    }
    // 2. The server sheds load: every new connection answered 503 for a moment.
    wait_forwarded(8_000_000);
    proxy.set(Fault::Http503);
    proxy.cut();
    std::thread::sleep(Duration::from_millis(700));
    proxy.set(Fault::Pass);
    // 3. A restart: nothing answers for 3 s.
    wait_forwarded(12_000_000);
    proxy.set(Fault::Refuse);
    proxy.cut();
    std::thread::sleep(Duration::from_secs(3));
    proxy.set(Fault::Pass);

    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the backup did not finish within 180 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "the backup failed under storage faults:\n{text}"
    );
    assert!(
        proxy.forwarded() > 30_000_000,
        "the backup went through the proxy"
    );
    assert_restores_equal(&env, &direct, &topic, &source);
}

/// 500 records keyed and valued by their number from `from` (the outage tests' batches).
fn five_hundred(from: i64) -> Vec<KcatMsg> {
    (from..from + 500)
        .map(|i| {
            KcatMsg::new(
                Some(format!("k{i}").as_bytes()),
                Some(format!("v{i}").as_bytes()),
            )
        })
        .collect()
}

/// Records `ferry ls --json` counts in a backup.
fn backed_up(uri: &str, vars: &[(&str, &str)]) -> u64 {
    let out = common::ferry_output(&["ls", uri, "--json"], vars);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["topics"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .flat_map(|t| t["partitions"].as_array().cloned().unwrap_or_default())
                .map(|p| p["records"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// A continuous backup of a fresh 2-partition topic into S3 behind a fault proxy, run by
/// `ferry run` or by a worker: the storage away for at least 8 s (`retries=1`, so longer
/// than the storage's own retries) while records keep arriving.
struct Outage {
    env: ferry_testkit::TestEnv,
    topic: String,
    proxy: FaultProxy,
    direct: String,
    dir: tempfile::TempDir,
    /// The pipeline file (`name: outage`), writing through the proxy.
    yaml: String,
}

impl Outage {
    fn new(env: ferry_testkit::TestEnv, name: &str) -> Self {
        let topic = unique(name);
        create_topic(&env, &topic, 2, &[("retention.ms", "-1")]);
        let (proxy, via_proxy, direct) = proxied_s3(&env, "retries=1");
        let yaml = format!(
            "name: outage\nsource: {{ type: kafka, brokers: [\"{}\"], topics: [\"{topic}\"] }}\nsink: {{ type: storage, uri: \"{via_proxy}\", commit_interval: 1s }}\ndelivery: {{ checkpoint_interval: 1s }}\n",
            env.kafka
        );
        let o = Outage {
            topic,
            proxy,
            direct,
            dir: tempfile::tempdir().expect("dir"),
            yaml,
            env,
        };
        o.produce(0);
        o
    }

    fn produce(&self, from: i64) {
        let env = &self.env;
        py_produce_to(
            env,
            &env.kafka,
            &self.topic,
            None,
            &five_hundred(from),
            "none",
            false,
        );
    }

    /// Waits until the backup holds `want` records; fails with `log` after 120 s.
    fn wait_for(&self, want: u64, what: &str, log: &std::path::Path) {
        let vars = self.env.aws_vars();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = backed_up(&self.direct, &vars);
            if n == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {n} of {want} records backed up after 120 s:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// 500 records backed up, then the storage goes away while 500 more arrive; `during`
    /// runs then and must take at least 8 s; then 500 more, and the backup must hold all.
    fn run(&self, log: &std::path::Path, during: impl FnOnce()) {
        self.wait_for(500, "before the outage", log);
        self.proxy.set(Fault::Refuse);
        self.proxy.cut();
        self.produce(500);
        let started = Instant::now();
        during();
        if let Some(rest) = Duration::from_secs(8).checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
        self.proxy.set(Fault::Pass);
        self.produce(1000);
        self.wait_for(1500, "after the outage", log);
    }

    /// The backup verifies and restores equal to the topic, every record once.
    fn assert_exact(&self) {
        let source = sorted(dump_topic(&self.env, &self.env.kafka, &self.topic));
        assert_eq!(source.len(), 1500);
        assert_restores_equal(&self.env, &self.direct, &self.topic, &source);
    }
}

#[test]
fn a_continuous_backup_outlives_a_storage_outage_longer_than_its_retries() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let o = Outage::new(env, "s3-outage");
    let file = o.dir.path().join("outage.yaml");
    std::fs::write(&file, &o.yaml).expect("write");
    let log = o.dir.path().join("ferry.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", file.to_str().expect("path")])
        .env("FERRY_LOG", "info")
        .envs(o.env.aws_vars().iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("ferry runs");
    o.run(&log, || {
        std::thread::sleep(Duration::from_secs(8));
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the continuous backup exited during the outage"
        );
    });
    // SIGTERM: a graceful stop.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("reaped");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{text}");
    assert!(
        text.contains("storage unavailable"),
        "the outage was reported:\n{text}"
    );
    o.assert_exact();
}

/// A topic of `per_partition` records of 4 KB on each of 3 partitions; returns its dump.
fn filled_topic(
    env: &ferry_testkit::TestEnv,
    topic: &str,
    per_partition: i64,
) -> Vec<DumpedRecord> {
    create_topic(env, topic, 3, &[("retention.ms", "-1")]);
    let value = vec![b't'; 4000];
    for p in 0..3 {
        let msgs: Vec<KcatMsg> = (0..per_partition)
            .map(|i: i64| KcatMsg::new(Some(format!("{p}-{i}").as_bytes()), Some(&value)))
            .collect();
        py_produce_to(env, &env.kafka, topic, Some(p), &msgs, "none", false);
    }
    sorted(dump_topic(env, &env.kafka, topic))
}

/// moto behind a fault proxy, and the backup URIs through it (with `params`) and direct.
fn proxied_s3(env: &ferry_testkit::TestEnv, params: &str) -> (FaultProxy, String, String) {
    let upstream = env
        .s3_endpoint
        .trim_start_matches("http://")
        .to_socket_addrs()
        .expect("S3 endpoint address")
        .next()
        .expect("an address");
    let proxy = FaultProxy::start(0, upstream).expect("proxy");
    let prefix = unique("proxied");
    let via_proxy = format!(
        "s3://{}/{prefix}?endpoint=http://{}&region={}{}{params}",
        env.s3_bucket,
        proxy.addr(),
        env.aws_region,
        if params.is_empty() { "" } else { "&" }
    );
    let direct = format!(
        "s3://{}/{prefix}?endpoint={}&region={}",
        env.s3_bucket, env.s3_endpoint, env.aws_region
    );
    (proxy, via_proxy, direct)
}

/// `ferry run` of a snapshot backup of `topic` to `uri` (1 MiB segments: many requests).
fn spawn_backup(
    env: &ferry_testkit::TestEnv,
    dir: &std::path::Path,
    topic: &str,
    uri: &str,
) -> (std::process::Child, std::path::PathBuf) {
    let yaml = format!(
        "name: s3-stall\nsource: {{ type: kafka, brokers: [\"{}\"], topics: [\"{topic}\"], stop: high_watermark, partition_max_bytes: 256KiB }}\nsink: {{ type: storage, uri: \"{uri}\", roll: {{ max_bytes: 1MiB }}, chunk_size: 5MiB }}\n",
        env.kafka
    );
    let file = dir.join("stall.yaml");
    std::fs::write(&file, yaml).expect("write");
    let log = dir.join("ferry.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", file.to_str().expect("path")])
        .env("FERRY_LOG", "info")
        .envs(env.aws_vars().iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("ferry runs");
    (child, log)
}

/// Waits until the proxy forwarded `bytes` while `child` runs.
fn wait_forwarded(proxy: &FaultProxy, child: &mut std::process::Child, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.forwarded() < bytes {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the backup ended before the stall: make it larger"
        );
        assert!(
            Instant::now() < deadline,
            "the backup wrote {} of {bytes} bytes through the proxy in 60 s",
            proxy.forwarded()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for `child` to exit within `limit`; kills it and fails otherwise.
fn wait_exit(
    child: &mut std::process::Child,
    limit: Duration,
    log: &std::path::Path,
) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return (s, std::fs::read_to_string(log).unwrap_or_default());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the backup still ran after {limit:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Restores `uri` under a new name and compares it with `source`.
fn assert_restores_equal(
    env: &ferry_testkit::TestEnv,
    uri: &str,
    topic: &str,
    source: &[DumpedRecord],
) {
    let vars = env.aws_vars();
    let (v, _) = ferry_success(&["verify", uri], &vars);
    assert!(v.contains("all good"), "{v}");
    let target = format!("{topic}-restored");
    ferry_success(
        &[
            "restore",
            "--from",
            uri,
            "--brokers",
            &env.kafka,
            "--topic",
            topic,
            "--rename",
            &format!("{topic}={target}"),
        ],
        &vars,
    );
    let restored = sorted(dump_topic(env, &env.kafka, &target));
    assert_eq!(restored.len(), source.len(), "every record once");
    assert!(restored == source, "the restore equals the topic");
}

#[test]
fn an_s3_stall_shorter_than_the_retries_times_out_retries_and_the_backup_completes() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("s3-stall");
    let source = filled_topic(&env, &topic, 1500);
    // Each request may take 2 s; three retries (backoff 1 s, 2 s, 4 s, with jitter) outlast
    // a 5 s stall.
    let (proxy, via_proxy, direct) = proxied_s3(&env, "timeout=2s&retries=3");
    let dir = tempfile::tempdir().expect("dir");
    let (mut child, log) = spawn_backup(&env, dir.path(), &topic, &via_proxy);
    wait_forwarded(&proxy, &mut child, 4_000_000);
    // The server accepts and reads but answers nothing, on live and new connections.
    proxy.set(Fault::Stall);
    std::thread::sleep(Duration::from_secs(5));
    proxy.set(Fault::Pass);
    let (status, text) = wait_exit(&mut child, Duration::from_secs(120), &log);
    assert!(
        status.success(),
        "the backup failed after a 5 s stall:\n{text}"
    );
    assert!(
        text.contains("timeout") || text.contains("timed out"),
        "the timeout fired and the request was retried:\n{text}"
    );
    assert_restores_equal(&env, &direct, &topic, &source);
}

#[test]
fn an_s3_stall_longer_than_the_retries_fails_with_one_line_and_a_rerun_completes() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("s3-stall-long");
    let source = filled_topic(&env, &topic, 1500);
    let (proxy, via_proxy, direct) = proxied_s3(&env, "timeout=1s&retries=1");
    let dir = tempfile::tempdir().expect("dir");
    let (mut child, log) = spawn_backup(&env, dir.path(), &topic, &via_proxy);
    wait_forwarded(&proxy, &mut child, 4_000_000);
    proxy.set(Fault::Stall);
    let stalled = Instant::now();
    let (status, text) = wait_exit(&mut child, Duration::from_secs(60), &log);
    let took = stalled.elapsed();
    eprintln!("the backup gave up {took:?} after S3 stalled");
    assert!(
        !status.success(),
        "a backup whose storage never answers exited 0:\n{text}"
    );
    // One request of 1 s and one retry after a backoff of about 1 s: well under 30 s.
    assert!(
        took < Duration::from_secs(30),
        "gave up after {took:?}:\n{text}"
    );
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        last.contains("/topics/") || last.contains("ferry.json") || last.contains("/lease/"),
        "the last line names the object:\n{text}"
    );
    assert!(
        last.contains("did not answer in time") && last.contains("timeout reached"),
        "the last line says the store did not answer in time:\n{text}"
    );
    proxy.set(Fault::Pass);
    eprintln!("its last line: {last}");
    // Nothing half-written claims data: what the failed run left verifies (a segment object
    // the stall interrupted before its manifest is reported as a warning, and ignored).
    let vars = env.aws_vars();
    let (v, _) = ferry_success(&["verify", &direct], &vars);
    assert!(v.contains("all good") || v.contains("no damage"), "{v}");
    // A re-run (straight to moto) completes the backup exactly.
    let dir2 = tempfile::tempdir().expect("dir");
    let (mut child, log) = spawn_backup(&env, dir2.path(), &topic, &direct);
    let (status, text) = wait_exit(&mut child, Duration::from_secs(120), &log);
    assert!(status.success(), "the re-run failed:\n{text}");
    assert_restores_equal(&env, &direct, &topic, &source);
}

#[test]
fn s3_answering_500_for_a_while_during_a_backup_is_retried_and_the_backup_is_exact() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("s3-500");
    let source = filled_topic(&env, &topic, 1500);
    // The default retries, spelled out: five, backing off from 1 s (with jitter), so a
    // request answered 500 twice succeeds on its third try.
    let (proxy, via_proxy, direct) = proxied_s3(&env, "retries=5");
    let dir = tempfile::tempdir().expect("dir");
    let (mut child, log) = spawn_backup(&env, dir.path(), &topic, &via_proxy);
    wait_forwarded(&proxy, &mut child, 4_000_000);
    // S3's `InternalError`: every new connection is answered 500 until two requests met it
    // (a request and its first retry, or two requests); cutting the live connections makes
    // the backup's next requests (and the retries of the cut ones) meet it.
    proxy.set(Fault::Http(500));
    proxy.cut();
    let started = Instant::now();
    while proxy.http_errors() < 2 && started.elapsed() < Duration::from_secs(30) {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the backup exited while S3 answered 500:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.set(Fault::Pass);
    let answered = proxy.http_errors();
    eprintln!(
        "S3 answered 500 to {answered} requests for {:?}",
        started.elapsed()
    );
    assert!(
        answered >= 2,
        "only {answered} requests met the 500s in 30 s"
    );
    let (status, text) = wait_exit(&mut child, Duration::from_secs(120), &log);
    assert!(
        status.success(),
        "the backup failed after S3 answered 500:\n{text}"
    );
    // The store's answer reached the retry layer as what it was, and was retried.
    assert!(
        text.contains("will retry") && text.contains("InternalError"),
        "the 500s were retried:\n{text}"
    );
    assert!(
        proxy.forwarded() > 18_000_000,
        "the backup went on through the proxy after the 500s ({} bytes)",
        proxy.forwarded()
    );
    assert_restores_equal(&env, &direct, &topic, &source);
}

/// The same outage under `ferry worker`: the task is restarted from its last durable point
/// as `ferry run` does, its status shows the outage as its error meanwhile, and the backup
/// holds every record once.
#[test]
fn a_worker_task_outlives_a_storage_outage_longer_than_its_retries() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let o = Outage::new(env, "s3-outage-worker");
    let pipelines = o.dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).expect("pipelines folder");
    std::fs::write(pipelines.join("outage.yaml"), &o.yaml).expect("write");
    let w = common::worker::Worker::start(
        &o.env,
        &unique("outage-group"),
        18651,
        o.dir.path(),
        &["--pipelines", pipelines.to_str().expect("path")],
        &o.env.aws_vars(),
    );
    o.run(&w.log, || {
        // The outage shows in the task's status while it lasts.
        w.wait_until(
            Duration::from_secs(30),
            "shows the outage in its status",
            |w| {
                w.get("/pipelines/outage/status", None)
                    .is_some_and(|(_, s)| s.to_string().contains("storage unavailable"))
            },
        );
    });
    w.stop();
    o.assert_exact();
}
