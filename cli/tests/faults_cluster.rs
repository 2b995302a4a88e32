//! Faults on a three-node Apache Kafka cluster (`scripts/dev-env cluster-up`): the leader of a
//! partition is killed with SIGKILL during a snapshot backup, a restore and a continuous
//! backup, and restarted later. Ferry must carry on by itself (no restart of its own) and the
//! result must be exact: the restored copy, read back by an independent client
//! (`ferry_testkit::dump_topic`, librdkafka), equals the original partition by partition.
//!
//! Skipped with a printed reason when the cluster is not running, unless
//! `FERRY_REQUIRE_ENV=1` and `FERRY_CLUSTER=1` are both set (then it fails).

mod common;

use ferry_kafka::{Client, ClientConfig, NewTopic};
use ferry_testkit::{dump_topic, parse_env_file, unique, DumpedRecord, TestEnv};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests kill and restart brokers: one at a time.
static CLUSTER: Mutex<()> = Mutex::new(());

/// The running cluster, as `scripts/dev-env cluster-up` wrote it down.
struct Cluster {
    brokers: String,
    run_dir: PathBuf,
    dev_env: PathBuf,
}

/// The cluster when it runs; `None` (after saying why) when the test must skip.
fn cluster() -> Option<Cluster> {
    let home = std::env::var("FERRY_DEV_HOME").unwrap_or_else(|_| "/var/tmp/ferry-dev".into());
    let path = Path::new(&home).join("cluster.env.sh");
    let vars: HashMap<String, String> = std::fs::read_to_string(&path)
        .map(|t| parse_env_file(&t))
        .unwrap_or_default();
    let reachable = vars
        .get("FERRY_CLUSTER_BROKERS")
        .and_then(|b| b.split(',').next().map(str::to_string))
        .and_then(|b| b.parse().ok())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if !reachable {
        let reason = format!(
            "the 3-node cluster is not running ({} missing or its first broker unreachable): \
             start it with scripts/dev-env cluster-up",
            path.display()
        );
        let required = std::env::var("FERRY_REQUIRE_ENV").as_deref() == Ok("1")
            && std::env::var("FERRY_CLUSTER").as_deref() == Ok("1");
        assert!(!required, "FERRY_REQUIRE_ENV=1 FERRY_CLUSTER=1: {reason}");
        eprintln!("skipping: {reason}");
        return None;
    }
    Some(Cluster {
        brokers: vars["FERRY_CLUSTER_BROKERS"].clone(),
        run_dir: PathBuf::from(&vars["FERRY_CLUSTER_RUN"]),
        dev_env: PathBuf::from(&vars["FERRY_CLUSTER_DEV_ENV"]),
    })
}

impl Cluster {
    fn client(&self) -> Client {
        let brokers: Vec<String> = self.brokers.split(',').map(str::to_string).collect();
        common::rt()
            .block_on(Client::connect(ClientConfig::new(&brokers)))
            .expect("connect to the cluster")
    }

    /// A topic replicated on all three nodes (min.insync.replicas 2 from the brokers).
    fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, 3, &[]);
    }

    fn create_topic_with(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        extra: &[(&str, &str)],
    ) {
        let configs: BTreeMap<String, String> = common::ANY_TIMESTAMP
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        common::rt()
            .block_on(self.client().create_topics(&[NewTopic {
                name: name.to_string(),
                partitions,
                replication_factor,
                configs,
            }]))
            .expect("create topic");
        self.wait_fully_replicated(name);
    }

    fn partition_meta(&self, topic: &str) -> Vec<ferry_kafka::PartitionMetadata> {
        let md = common::rt()
            .block_on(self.client().metadata(Some(&[topic.to_string()])))
            .expect("metadata");
        md.topic(topic)
            .map(|t| t.partitions.clone())
            .unwrap_or_default()
    }

    fn leader_of(&self, topic: &str, partition: i32) -> i32 {
        self.partition_meta(topic)
            .iter()
            .find(|p| p.id == partition)
            .map(|p| p.leader)
            .expect("partition in metadata")
    }

    /// Waits until every partition of `topic` has a leader and all its replicas in sync.
    fn wait_fully_replicated(&self, topic: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let parts = self.partition_meta(topic);
            if !parts.is_empty()
                && parts
                    .iter()
                    .all(|p| p.leader >= 0 && p.isr.len() == p.replicas.len())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{topic} not fully replicated after 120 s: {parts:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// SIGKILL of node `id` (its pid from dev-env's pid file).
    fn kill_node(&self, id: i32) {
        let pid = std::fs::read_to_string(self.run_dir.join(format!("cluster-{id}.pid")))
            .expect("pid file of the node");
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -9 {pid}");
        eprintln!("killed node {id} (pid {})", pid.trim());
    }

    /// SIGTERM of node `id` (a controlled shutdown, as in a rolling upgrade), then waits
    /// until its process is gone.
    fn stop_node(&self, id: i32) {
        let pid = std::fs::read_to_string(self.run_dir.join(format!("cluster-{id}.pid")))
            .expect("pid file of the node");
        let pid = pid.trim().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(90);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                Instant::now() < deadline,
                "node {id} (pid {pid}) still running 90 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("stopped node {id} (pid {pid}) with SIGTERM");
    }

    /// A rolling restart: each node in turn stopped with SIGTERM, started again and waited
    /// for until every partition of `topics` has all three replicas in sync, then the next.
    /// `between` runs after each node is back (the test checks its run is still going).
    fn rolling_restart(&self, topics: &[&str], mut between: impl FnMut(i32)) {
        for node in 1..=3 {
            self.stop_node(node);
            Down {
                cluster: self,
                node,
                up: false,
            }
            .restart();
            for t in topics {
                self.wait_fully_replicated(t);
            }
            eprintln!("node {node} back and in sync");
            between(node);
        }
    }

    fn start_node(&self, id: i32) {
        let status = Command::new(&self.dev_env)
            .args(["cluster-start-node", &id.to_string()])
            .status()
            .expect("dev-env runs");
        assert!(status.success(), "dev-env cluster-start-node {id}");
    }
}

/// This build's `ferry`, or `FERRY_BIN` when set (a copy taken right after the build, when
/// a target directory shared by several checkouts may be rebuilt underneath).
fn ferry_bin() -> PathBuf {
    std::env::var_os("FERRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ferry")))
}

/// A running `ferry`, killed if the test fails while it runs (a continuous backup would
/// otherwise outlive the test).
struct Run(Child);

impl std::ops::Deref for Run {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Run {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_run(file: &Path, log: &Path) -> Run {
    let log = std::fs::File::create(log).expect("log file");
    Run(Command::new(ferry_bin())
        .args(["run"])
        .arg(file)
        // FERRY_TEST_LOG=debug to see more of a failing run.
        .env(
            "FERRY_LOG",
            std::env::var("FERRY_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("ferry runs"))
}

/// Waits for `child` to exit by itself within `limit`; kills it and fails otherwise.
fn wait_success(mut child: Run, limit: Duration, what: &str, log: &Path) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assert!(status.success(), "{what} exited {status:?}:\n{text}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} still running after {limit:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A node killed by a test; started again by [`Down::restart`], or on drop when the test
/// fails first, so the next test finds three nodes.
struct Down<'a> {
    cluster: &'a Cluster,
    node: i32,
    up: bool,
}

impl Down<'_> {
    fn restart(mut self) {
        self.cluster.start_node(self.node);
        self.up = true;
    }
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if !self.up {
            let _ = Command::new(&self.cluster.dev_env)
                .args(["cluster-start-node", &self.node.to_string()])
                .status();
        }
    }
}

/// Kills node `leader` (looked up before `child` started, so that no lookup eats into the
/// run) `after` the start of `child`. Fails when the run ended before the kill (the test
/// would show nothing).
fn kill_leader_during<'a>(
    c: &'a Cluster,
    child: &mut Run,
    leader: i32,
    after: Duration,
) -> Down<'a> {
    std::thread::sleep(after);
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the run finished before the leader was killed: make it slower"
    );
    c.kill_node(leader);
    Down {
        cluster: c,
        node: leader,
        up: false,
    }
}

fn by_partition(dump: &[DumpedRecord]) -> BTreeMap<i32, Vec<DumpedRecord>> {
    let mut m: BTreeMap<i32, Vec<DumpedRecord>> = BTreeMap::new();
    for r in dump {
        m.entry(r.partition).or_default().push(r.clone());
    }
    m
}

/// The copy holds every record of the original once, in order, per partition.
fn assert_same_records(env: &TestEnv, c: &Cluster, original: &str, copy: &str, total: usize) {
    let a = by_partition(&dump_topic(env, &c.brokers, original));
    let b = by_partition(&dump_topic(env, &c.brokers, copy));
    let count: usize = a.values().map(Vec::len).sum();
    assert_eq!(count, total, "the original holds what was produced");
    for (p, orig) in &a {
        let got = b.get(p).cloned().unwrap_or_default();
        let first_diff = orig
            .iter()
            .zip(got.iter())
            .position(|(x, y)| (&x.key, &x.value, x.timestamp) != (&y.key, &y.value, y.timestamp));
        if orig.len() != got.len() || first_diff.is_some() {
            // Say which records: doubled or missing, and where the copy first differs.
            let key = |r: &DumpedRecord| (r.key.clone(), r.value.clone(), r.timestamp);
            let mut want: HashMap<_, i64> = HashMap::new();
            for r in orig {
                *want.entry(key(r)).or_default() += 1;
            }
            for r in &got {
                *want.entry(key(r)).or_default() -= 1;
            }
            let missing: i64 = want.values().filter(|n| **n > 0).sum();
            let doubled: i64 = -want.values().filter(|n| **n < 0).sum::<i64>();
            let at = first_diff.unwrap_or(orig.len().min(got.len()));
            panic!(
                "partition {p}: copy has {} records, original {}: {missing} missing, {doubled} \
                 extra; first difference at index {at}: original {:?}, copy {:?}",
                got.len(),
                orig.len(),
                orig.get(at).map(|r| (r.offset, r.timestamp)),
                got.get(at).map(|r| (r.offset, r.timestamp)),
            );
        }
    }
}

/// Fills `topic` with `count` generated records through Ferry's kafka sink (small
/// requests, so later reads need many fetches).
fn fill(c: &Cluster, work: &Path, topic: &str, count: usize, name: &str) {
    fill_partitions(c, work, topic, 3, count, name);
}

/// [`fill`] for a topic of `partitions` partitions.
fn fill_partitions(
    c: &Cluster,
    work: &Path,
    topic: &str,
    partitions: i32,
    count: usize,
    name: &str,
) {
    let yaml = work.join(format!("{name}.yaml"));
    fill_file(c, &yaml, topic, partitions, count, name);
    let log = work.join(format!("{name}.log"));
    wait_success(spawn_run(&yaml, &log), Duration::from_secs(180), name, &log);
}

/// A fresh 3-partition topic named after `prefix`, filled with `total` records, and a raw
/// snapshot backup of it in `work/backup`.
fn backed_up_topic(c: &Cluster, work: &Path, prefix: &str, total: usize) -> (String, PathBuf) {
    let topic = unique(prefix);
    c.create_topic(&topic, 3);
    fill(c, work, &topic, total, "fill");
    let backup = work.join("backup");
    let yaml = work.join("backup.yaml");
    std::fs::write(&yaml, backup_yaml(c, &topic, &backup, "high_watermark")).unwrap();
    let log = work.join("backup.log");
    wait_success(
        spawn_run(&yaml, &log),
        Duration::from_secs(120),
        "backup",
        &log,
    );
    (topic, backup)
}

/// Writes the pipeline of [`fill`] to `yaml`.
fn fill_file(c: &Cluster, yaml: &Path, topic: &str, partitions: i32, count: usize, name: &str) {
    std::fs::write(
        yaml,
        format!(
            r#"name: {name}
source:
  type: generator
  count: {count}
  topic: "{topic}"
  partitions: {partitions}
  key_space: 100
  payload_size: 80
  batch_size: 20
sink:
  type: kafka
  brokers: ["{brokers}"]
  buffer_bytes: 4KiB
  # Later fills append to what earlier ones wrote (refused unless said).
  allow_existing: true
delivery:
  checkpoint: none
"#,
            brokers = c.brokers
        ),
    )
    .expect("write the fill pipeline");
}

fn backup_yaml(c: &Cluster, topic: &str, dir: &Path, stop: &str) -> String {
    format!(
        r#"name: fault-backup
source:
  type: kafka
  brokers: ["{brokers}"]
  topics: ["{topic}"]
  stop: {stop}
  partition_max_bytes: 2KiB
  fetch_max_bytes: 6KiB
  max_wait_ms: 10
  request_timeout: 10s
  retry: {{ deadline: 90s }}
sink:
  type: storage
  uri: "{dir}"
  format: raw
  roll: {{ max_records: 500, max_age: 1s }}
delivery:
  checkpoint_interval: 200ms
  max_in_flight_bytes: 64KiB
"#,
        brokers = c.brokers,
        dir = dir.display()
    )
}

fn restore_yaml(c: &Cluster, topic: &str, restored: &str, backup: &Path, state: &Path) -> String {
    format!(
        r#"name: fault-restore
source:
  type: backup
  uri: "{backup}"
  read_chunk: 4KiB
transforms:
  - type: rename_topic
    map: {{ "{topic}": "{restored}" }}
sink:
  type: kafka
  brokers: ["{brokers}"]
  buffer_bytes: 4KiB
  state: "{state}"
  request_timeout: 10s
  retry: {{ deadline: 90s }}
delivery:
  checkpoint: "{state}"
  checkpoint_interval: 200ms
  max_in_flight_bytes: 16KiB
"#,
        brokers = c.brokers,
        backup = backup.display(),
        state = state.display()
    )
}

#[test]
fn snapshot_backup_and_restore_ride_out_a_killed_leader() {
    let Some(c) = cluster() else { return };
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let topic = unique("fault-snap");
    let total = 3 * 6000;
    c.create_topic(&topic, 3);
    fill(&c, work.path(), &topic, total, "fill");

    // Both runs reach the nodes through proxies slowed to 150 KB/s per connection and
    // direction, so that each takes seconds (about 2 MB on the wire) and the kill lands
    // mid-run however fast the machine is; a killed node's proxy refuses to connect
    // onwards, as the node itself would.
    let proxies = Proxies::start();
    proxies.set(ferry_testkit::proxy::Fault::Slow(150_000));
    let slowed = proxies.cluster(&c);

    // Backup: the leader of partition 0 dies while the snapshot runs.
    let backup = work.path().join("backup");
    let yaml = work.path().join("backup.yaml");
    std::fs::write(
        &yaml,
        backup_yaml(&slowed, &topic, &backup, "high_watermark"),
    )
    .unwrap();
    let log = work.path().join("backup.log");
    let leader = c.leader_of(&topic, 0);
    let mut child = spawn_run(&yaml, &log);
    let down = kill_leader_during(&c, &mut child, leader, Duration::from_millis(400));
    wait_success(child, Duration::from_secs(180), "backup", &log);
    // Everything committed before the snapshot began, whichever leader answered.
    assert_eq!(
        backed_up(&backup),
        total as u64,
        "the snapshot holds every record:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    down.restart();
    c.wait_fully_replicated(&topic);

    // Restore into a topic made beforehand, so its leader can be killed mid-restore.
    let restored = format!("{topic}-r");
    c.create_topic(&restored, 3);
    let state = work.path().join("state");
    let yaml = work.path().join("restore.yaml");
    std::fs::write(
        &yaml,
        restore_yaml(&slowed, &topic, &restored, &backup, &state),
    )
    .unwrap();
    let log = work.path().join("restore.log");
    let leader = c.leader_of(&restored, 0);
    let mut child = spawn_run(&yaml, &log);
    let down = kill_leader_during(&c, &mut child, leader, Duration::from_millis(400));
    wait_success(child, Duration::from_secs(180), "restore", &log);
    down.restart();
    c.wait_fully_replicated(&restored);
    // What the runs said about the fault, for a failure below.
    for (what, log) in [("backup", "backup.log"), ("restore", "restore.log")] {
        let text = std::fs::read_to_string(work.path().join(log)).unwrap_or_default();
        for l in text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        {
            eprintln!("{what}: {l}");
        }
    }

    assert_same_records(&env, &c, &topic, &restored, total);
}

#[test]
fn continuous_backup_rides_out_a_killed_and_restarted_leader() {
    let Some(c) = cluster() else { return };
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let topic = unique("fault-cont");
    c.create_topic(&topic, 3);
    fill(&c, work.path(), &topic, 3000, "fill-1");

    let backup = work.path().join("backup");
    let yaml = work.path().join("backup.yaml");
    std::fs::write(&yaml, backup_yaml(&c, &topic, &backup, "never")).unwrap();
    let log = work.path().join("backup.log");
    let leader = c.leader_of(&topic, 0);
    let mut child = spawn_run(&yaml, &log);
    let down = kill_leader_during(&c, &mut child, leader, Duration::from_secs(2));
    // Written at once, while the leader's death is still being noticed and its leaderships
    // move (two replicas stay in sync, so acks=all succeeds): the producer's retries of
    // batches the dead leader had already replicated must not fail the fill.
    fill(&c, work.path(), &topic, 3000, "fill-2");
    std::thread::sleep(Duration::from_secs(3));
    down.restart();
    c.wait_fully_replicated(&topic);
    fill(&c, work.path(), &topic, 3000, "fill-3");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the continuous backup exited: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // A graceful stop writes out what it holds.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    wait_success(child, Duration::from_secs(60), "continuous backup", &log);

    let restored = format!("{topic}-r");
    c.create_topic(&restored, 3);
    let state = work.path().join("state");
    let yaml = work.path().join("restore.yaml");
    std::fs::write(&yaml, restore_yaml(&c, &topic, &restored, &backup, &state)).unwrap();
    let log = work.path().join("restore.log");
    wait_success(
        spawn_run(&yaml, &log),
        Duration::from_secs(180),
        "restore",
        &log,
    );
    assert_same_records(&env, &c, &topic, &restored, 9000);
}

/// One fault proxy per node, on the ports the nodes advertise for their PROXIED listener
/// (see `scripts/dev-env`): a client bootstrapped through them talks to the cluster only
/// through the proxies.
struct Proxies(Vec<ferry_testkit::proxy::FaultProxy>);

impl Proxies {
    fn start() -> Proxies {
        Proxies(
            (1..=3u16)
                .map(|n| {
                    let upstream = ([127, 0, 0, 1], 29391 + n).into();
                    ferry_testkit::proxy::FaultProxy::start(29291 + n, upstream)
                        .expect("proxy ports 29292-29294 free")
                })
                .collect(),
        )
    }

    /// `c` as a client bootstrapped through the proxies sees it.
    fn cluster(&self, c: &Cluster) -> Cluster {
        Cluster {
            brokers: self.brokers(),
            run_dir: c.run_dir.clone(),
            dev_env: c.dev_env.clone(),
        }
    }

    fn brokers(&self) -> String {
        self.0
            .iter()
            .map(|p| p.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn set(&self, fault: ferry_testkit::proxy::Fault) {
        for p in &self.0 {
            p.set(fault);
        }
    }

    fn cut(&self) {
        for p in &self.0 {
            p.cut();
        }
    }
}

/// `GET /metrics` of Ferry's Prometheus endpoint, empty when it does not answer.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn continuous_backup_rides_out_an_outage_longer_than_the_deadline() {
    let Some(c) = cluster() else { return };
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let proxies = Proxies::start();
    let work = tempfile::tempdir().unwrap();
    let topic = unique("fault-outage");
    c.create_topic(&topic, 3);
    fill(&c, work.path(), &topic, 3000, "fill-1");

    let metrics = "127.0.0.1:29490";
    let backup = work.path().join("backup");
    let yaml = work.path().join("backup.yaml");
    let through_proxies = proxies.cluster(&c);
    let text = backup_yaml(&through_proxies, &topic, &backup, "never")
        .replace("request_timeout: 10s", "request_timeout: 3s")
        .replace("retry: { deadline: 90s }", "retry: { deadline: 4s }")
        + &format!("telemetry:\n  prometheus: {metrics}\n");
    std::fs::write(&yaml, text).unwrap();
    let log = work.path().join("backup.log");
    let mut child = spawn_run(&yaml, &log);
    std::thread::sleep(Duration::from_secs(4));

    // Every broker unreachable for 20 s: five times the retry deadline a snapshot would use.
    proxies.set(ferry_testkit::proxy::Fault::Refuse);
    proxies.cut();
    fill(&c, work.path(), &topic, 3000, "fill-2");
    std::thread::sleep(Duration::from_secs(12));
    let during = scrape(metrics);
    assert!(
        during
            .lines()
            .any(|l| l.starts_with("ferry_kafka_connected{") && l.ends_with(" 0")),
        "no ferry_kafka_connected 0 during the outage:\n{during}"
    );
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the continuous backup exited during the outage: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    proxies.set(ferry_testkit::proxy::Fault::Pass);
    std::thread::sleep(Duration::from_secs(10));
    let after = scrape(metrics);
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("ferry_kafka_connected{") && l.ends_with(" 1")),
        "not connected again after the outage:\n{after}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    wait_success(child, Duration::from_secs(60), "continuous backup", &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let reports = text.matches("broker unreachable").count();
    // Once a minute per broker connection: the bootstrap address and the broker id are two
    // connections to the same broker, and a reconnect that fails at once starts a new report.
    assert!(
        (1..=9).contains(&reports),
        "{reports} outage reports in 20 s (once a minute per connection expected):\n{text}"
    );

    let restored = format!("{topic}-r");
    c.create_topic(&restored, 3);
    let state = work.path().join("state");
    let yaml = work.path().join("restore.yaml");
    std::fs::write(&yaml, restore_yaml(&c, &topic, &restored, &backup, &state)).unwrap();
    let log = work.path().join("restore.log");
    wait_success(
        spawn_run(&yaml, &log),
        Duration::from_secs(180),
        "restore",
        &log,
    );
    assert_same_records(&env, &c, &topic, &restored, 6000);
}

#[test]
fn snapshot_backup_gives_up_on_silent_brokers_after_its_deadline() {
    let Some(c) = cluster() else { return };
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let proxies = Proxies::start();
    let work = tempfile::tempdir().unwrap();
    let topic = unique("fault-silent");
    c.create_topic(&topic, 3);
    fill(&c, work.path(), &topic, 6000, "fill");

    let through_proxies = proxies.cluster(&c);
    let backup = work.path().join("backup");
    let yaml = work.path().join("backup.yaml");
    let text = backup_yaml(&through_proxies, &topic, &backup, "high_watermark")
        .replace("request_timeout: 10s", "request_timeout: 2s")
        .replace("retry: { deadline: 90s }", "retry: { deadline: 4s }");
    std::fs::write(&yaml, text).unwrap();
    let log = work.path().join("backup.log");
    // A slow link (about 60 KB/s) keeps the snapshot of ~600 KB running for a while.
    proxies.set(ferry_testkit::proxy::Fault::Slow(60_000));
    let mut child = spawn_run(&yaml, &log);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the backup finished before the brokers went silent: make it slower\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The brokers accept connections and read requests but never answer.
    proxies.set(ferry_testkit::proxy::Fault::Stall);
    let silent_since = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            silent_since.elapsed() < Duration::from_secs(60),
            "the snapshot backup did not give up within 60 s of silence"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = silent_since.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !status.success(),
        "a backup that could not finish exited 0:\n{text}"
    );
    eprintln!("the snapshot backup gave up {took:?} after the brokers went silent");
    // Request timeout 2 s, deadline 4 s: the client's nested retry loops (fetch, leader
    // lookup, metadata, re-dial) share the outermost one's give-up time, and requests are
    // cut to it, so giving up takes about the deadline (4.0-4.1 s in three runs here; 19-34 s
    // before the loops shared it). The bound leaves room for a loaded machine.
    assert!(
        took < Duration::from_secs(15),
        "gave up after {took:?}:\n{text}"
    );
    assert!(
        text.contains("timed out after") && text.contains("127.0.0.1:2929"),
        "the error names the silent broker and the timeout:\n{text}"
    );

    // Silent from the start: reported within the request timeout, not retried.
    let log = work.path().join("again.log");
    let started = Instant::now();
    let mut child = spawn_run(&yaml, &log);
    let status = child.wait().expect("wait");
    let took = started.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{text}");
    assert!(took < Duration::from_secs(10), "took {took:?}:\n{text}");
    assert!(text.contains("timed out after 2s"), "{text}");
}

/// Sum of the bytes the proxies forwarded, both directions.
fn forwarded(proxies: &Proxies) -> u64 {
    proxies.0.iter().map(|p| p.forwarded()).sum()
}

fn accepted(proxies: &Proxies) -> u64 {
    proxies.0.iter().map(|p| p.accepted()).sum()
}

/// Waits until the proxies forwarded `bytes` while `child` still runs; fails when the run
/// ended first (the fault would then hit nothing).
fn wait_forwarded(proxies: &Proxies, child: &mut Run, bytes: u64, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while forwarded(proxies) < bytes {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended before {what} ({} bytes forwarded): make it slower\n{}",
            forwarded(proxies),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {bytes} bytes forwarded after 120 s",
            forwarded(proxies)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn restore_through_cut_slowed_and_stalled_connections_is_exact() {
    use ferry_testkit::proxy::Fault;
    let Some(c) = cluster() else { return };
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let proxies = Proxies::start();
    let work = tempfile::tempdir().unwrap();
    let total = 3 * 6000;
    let (topic, backup) = backed_up_topic(&c, work.path(), "fault-cut", total);

    // The restore reaches every broker only through a proxy.
    let through_proxies = proxies.cluster(&c);
    let restored = format!("{topic}-r");
    c.create_topic(&restored, 3);
    let state = work.path().join("state");
    let yaml = work.path().join("restore.yaml");
    std::fs::write(
        &yaml,
        restore_yaml(&through_proxies, &topic, &restored, &backup, &state),
    )
    .unwrap();
    let log = work.path().join("restore.log");
    let started = Instant::now();
    let mut child = spawn_run(&yaml, &log);
    // 1. Every live connection reset, five times, while produce requests and their answers
    //    are on the wire (the restore keeps all three brokers busy, so a cut lands
    //    mid-request or mid-response).
    let mut at = 0;
    for n in 1..=5 {
        at += 150_000;
        wait_forwarded(&proxies, &mut child, at, &format!("cut {n}"), &log);
        proxies.cut();
    }
    let reconnects = accepted(&proxies);
    // 2. A slow link: 20 KB/s per broker each way for 3 s.
    at = forwarded(&proxies) + 100_000;
    wait_forwarded(&proxies, &mut child, at, "the slow link", &log);
    proxies.set(Fault::Slow(20_000));
    std::thread::sleep(Duration::from_secs(3));
    proxies.set(Fault::Pass);
    // 3. A stalled link: no byte moves for 4 s (below the 10 s request timeout, so the
    //    answers arrive late, not never).
    at = forwarded(&proxies) + 100_000;
    wait_forwarded(&proxies, &mut child, at, "the stall", &log);
    proxies.set(Fault::Stall);
    std::thread::sleep(Duration::from_secs(4));
    proxies.set(Fault::Pass);
    // 4. Reset once more right after the stall, when the delayed answers are in flight.
    std::thread::sleep(Duration::from_millis(50));
    proxies.cut();
    wait_success(child, Duration::from_secs(180), "restore", &log);
    eprintln!(
        "restore through faults took {:?}; {} bytes forwarded, {} connections accepted",
        started.elapsed(),
        forwarded(&proxies),
        accepted(&proxies)
    );
    assert!(
        reconnects > 3,
        "the cuts made the restore reconnect ({reconnects} connections)"
    );
    assert_same_records(&env, &c, &topic, &restored, total);
}

#[test]
fn restore_gives_up_on_silent_brokers_and_a_rerun_completes_it_exactly() {
    use ferry_testkit::proxy::Fault;
    let Some(c) = cluster() else { return };
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let proxies = Proxies::start();
    let work = tempfile::tempdir().unwrap();
    let total = 3 * 4000;
    let (topic, backup) = backed_up_topic(&c, work.path(), "fault-silent-r", total);

    let through_proxies = proxies.cluster(&c);
    let restored = format!("{topic}-r");
    c.create_topic(&restored, 3);
    let state = work.path().join("state");
    let yaml = work.path().join("restore.yaml");
    let text = restore_yaml(&through_proxies, &topic, &restored, &backup, &state)
        .replace("request_timeout: 10s", "request_timeout: 2s")
        .replace("retry: { deadline: 90s }", "retry: { deadline: 4s }");
    std::fs::write(&yaml, text).unwrap();
    let log = work.path().join("restore.log");
    // A slow link keeps the restore running until the brokers go silent.
    proxies.set(Fault::Slow(30_000));
    let mut child = spawn_run(&yaml, &log);
    wait_forwarded(&proxies, &mut child, 100_000, "the silence", &log);
    // The brokers accept connections and read requests but never answer.
    proxies.set(Fault::Stall);
    let silent_since = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            silent_since.elapsed() < Duration::from_secs(90),
            "the restore did not give up within 90 s of silence (request timeout 2 s, deadline 4 s)\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = silent_since.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !status.success(),
        "a restore that could not finish exited 0:\n{text}"
    );
    eprintln!("the restore gave up {took:?} after the brokers went silent");
    // A pipelined Produce waits its request timeout plus 5 s (the broker's own produce
    // timeout and the way back) before its failure is known; from that first failure the
    // call gives up by the deadline, its nested retry loops and requests included: 7 s + 4 s,
    // 10.8-11.1 s in four runs here (11-47 s before the loops shared one give-up time).
    assert!(
        took < Duration::from_secs(25),
        "gave up after {took:?}:\n{text}"
    );
    assert!(
        text.contains("timed out after") && text.contains("127.0.0.1:2929"),
        "the error names the silent broker and the timeout:\n{text}"
    );

    // A re-run, straight to the brokers, resumes from what the first run made durable. The
    // proxies still hold the request bytes the dead run sent into the silence; they are let
    // through only once the re-run is done, as a stalled network delivers them late. The
    // re-run continued the dead run's producer id with the next epoch, so the brokers
    // refuse them: the target holds every record once. (Before, a re-run had a new
    // producer id and such a late request landed as new records: one Produce request of 40
    // records doubled in one of four re-runs.)
    let direct = restore_yaml(&c, &topic, &restored, &backup, &state)
        .replace("request_timeout: 10s", "request_timeout: 2s")
        .replace("retry: { deadline: 90s }", "retry: { deadline: 4s }");
    let rerun_yaml = work.path().join("rerun.yaml");
    std::fs::write(&rerun_yaml, direct).unwrap();
    let log = work.path().join("rerun.log");
    wait_success(
        spawn_run(&rerun_yaml, &log),
        Duration::from_secs(120),
        "restore re-run",
        &log,
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for l in text.lines() {
        if l.contains("landed") || l.contains("WARN") || l.contains("epoch") {
            eprintln!("re-run: {l}");
        }
    }
    assert!(
        text.contains("continuing the earlier run's producer id"),
        "the re-run takes the dead run's producer id over:\n{text}"
    );
    let held = forwarded(&proxies);
    proxies.set(Fault::Pass);
    let deadline = Instant::now() + Duration::from_secs(10);
    while forwarded(&proxies) == held && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Time for the brokers to handle what arrived (and refuse it).
    std::thread::sleep(Duration::from_secs(2));
    let late = forwarded(&proxies) - held;
    eprintln!("the proxies delivered {late} bytes the dead run had left in them");
    assert!(
        late > 0,
        "the dead run left nothing in the stalled proxies: the fence was not tried"
    );
    assert_same_records(&env, &c, &topic, &restored, total);
}

/// Per partition, what the cluster holds (high watermark) and what the backup at `dir`
/// holds (its next offset): tells a backup that stalled on a partition from records the
/// cluster never kept.
fn where_short(c: &Cluster, topic: &str, dir: &Path) -> String {
    let ends = common::rt().block_on(c.client().list_offsets(
        topic,
        &[0, 1, 2],
        ferry_kafka::OffsetSpec::Latest,
    ));
    let held: Vec<(u64, u64, u64)> = backup_partitions(dir)
        .iter()
        .map(|p| {
            let get = |k: &str| p[k].as_u64().unwrap_or(0);
            (get("partition"), get("next_offset"), get("records"))
        })
        .collect();
    let meta = c.partition_meta(topic);
    format!(
        "high watermarks {ends:?}; backup (partition, next offset, records) {held:?}; \
         leaders {:?}",
        meta.iter()
            .map(|p| (p.id, p.leader, &p.isr))
            .collect::<Vec<_>>()
    )
}

/// The WARN and ERROR lines of the log at `path`.
fn warnings_in(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The partitions of every topic `ferry ls --json` lists for the backup at `dir`.
fn backup_partitions(dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(ferry_bin())
        .args(["ls", "--json"])
        .arg(dir)
        .output()
        .expect("ferry ls runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["topics"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .flat_map(|t| t["partitions"].as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// Records `ferry ls --json` counts in the backup at `dir`.
fn backed_up(dir: &Path) -> u64 {
    backup_partitions(dir)
        .iter()
        .map(|p| p["records"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn continuous_backup_and_restore_ride_out_rolling_restarts() {
    let Some(c) = cluster() else { return };
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let topic = unique("fault-roll");
    c.create_topic(&topic, 3);
    fill(&c, work.path(), &topic, 3000, "fill-1");

    let backup = work.path().join("backup");
    let yaml = work.path().join("backup.yaml");
    std::fs::write(&yaml, backup_yaml(&c, &topic, &backup, "never")).unwrap();
    let log = work.path().join("backup.log");
    let mut child = spawn_run(&yaml, &log);
    // Records keep arriving during the whole rolling restart: a fill runs beside it (its
    // producer rides out the restarts too), a second one after each node.
    let fill_yaml = |name: &str, count: usize| {
        let path = work.path().join(format!("{name}.yaml"));
        fill_file(&c, &path, &topic, 3, count, name);
        path
    };
    let during = fill_yaml("fill-during", 6000);
    let fill_log = work.path().join("fill-during.log");
    let filler = spawn_run(&during, &fill_log);
    let mut total = 3000 + 6000;
    let started = Instant::now();
    c.rolling_restart(&[&topic], |node| {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the continuous backup exited during the rolling restart (node {node}):\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        fill(&c, work.path(), &topic, 1000, &format!("fill-after-{node}"));
        total += 1000;
    });
    eprintln!(
        "rolling restart during the backup took {:?}",
        started.elapsed()
    );
    wait_success(filler, Duration::from_secs(120), "fill during", &fill_log);
    // Caught up: the backup holds as many records as were produced (exactness is checked
    // through the restore below).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = backed_up(&backup);
        if n == total as u64 {
            break;
        }
        assert!(
            n < total as u64,
            "the backup holds {n} records of {total}: some twice"
        );
        assert!(
            Instant::now() < deadline,
            "the backup holds {n} of {total} records 60 s after the rolling restart; {}\n\
             warnings of the fill that ran during it:\n{}\nthe backup's log:\n{}",
            where_short(&c, &topic, &backup),
            warnings_in(&fill_log),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    wait_success(child, Duration::from_secs(60), "continuous backup", &log);

    // The restore, during a second rolling restart.
    let restored = format!("{topic}-r");
    c.create_topic(&restored, 3);
    let state = work.path().join("state");
    let yaml = work.path().join("restore.yaml");
    // Through the proxies, slowed to 8 KB/s per connection and direction, so that the
    // restore (about 1.5 MB on the wire) outlasts the first two nodes' restarts. A
    // stopped node's proxy refuses to connect onwards, as the node itself would.
    let proxies = Proxies::start();
    proxies.set(ferry_testkit::proxy::Fault::Slow(8_000));
    let through_proxies = proxies.cluster(&c);
    std::fs::write(
        &yaml,
        restore_yaml(&through_proxies, &topic, &restored, &backup, &state),
    )
    .unwrap();
    let log = work.path().join("restore.log");
    let mut child = spawn_run(&yaml, &log);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the restore finished before the first node was stopped: make it slower"
    );
    let mut running_through = 0;
    c.rolling_restart(&[&topic, &restored], |node| {
        if child.try_wait().expect("wait").is_none() {
            running_through = node;
        }
    });
    eprintln!(
        "rolling restart during the restore took {:?}; the restore ran through node {running_through}'s restart",
        started.elapsed()
    );
    assert!(
        running_through >= 2,
        "the restore finished before the second node was back: make it slower"
    );
    proxies.set(ferry_testkit::proxy::Fault::Pass);
    wait_success(child, Duration::from_secs(180), "restore", &log);
    assert_same_records(&env, &c, &topic, &restored, total);
}

#[test]
fn a_continuous_backup_rides_out_a_log_truncated_by_an_unclean_leader_election() {
    let Some(c) = cluster() else { return };
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().unwrap();
    let topic = unique("fault-unclean");
    // Two replicas, one enough to write, and unclean elections allowed: a replica that
    // missed the last records can become leader.
    c.create_topic_with(
        &topic,
        1,
        2,
        &[
            ("min.insync.replicas", "1"),
            ("unclean.leader.election.enable", "true"),
        ],
    );
    let meta = c.partition_meta(&topic);
    let leader = meta[0].leader;
    let follower = *meta[0]
        .replicas
        .iter()
        .find(|r| **r != leader)
        .expect("a second replica");
    fill_partitions(&c, work.path(), &topic, 1, 1000, "fill-1");

    let backup = work.path().join("backup");
    let yaml = work.path().join("backup.yaml");
    std::fs::write(&yaml, backup_yaml(&c, &topic, &backup, "never")).unwrap();
    let log = work.path().join("backup.log");
    let mut child = spawn_run(&yaml, &log);
    let wait_backed_up = |want: u64, what: &str, child: &mut Run| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = backed_up(&backup);
            if n == want {
                return;
            }
            assert!(
                child.try_wait().expect("wait").is_none(),
                "{what}: the continuous backup exited:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            assert!(
                Instant::now() < deadline,
                "{what}: {n} of {want} records backed up after 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    wait_backed_up(1000, "before the faults", &mut child);

    // The follower stops; 1000 records land on the leader alone and are backed up.
    c.stop_node(follower);
    let follower_down = Down {
        cluster: &c,
        node: follower,
        up: false,
    };
    fill_partitions(&c, work.path(), &topic, 1, 1000, "fill-2");
    wait_backed_up(2000, "written to the leader alone", &mut child);
    // The leader dies; the follower comes back and, unclean, becomes leader with 1000
    // records: offsets 1000..2000, backed up, are gone from the cluster.
    c.kill_node(leader);
    let leader_down = Down {
        cluster: &c,
        node: leader,
        up: false,
    };
    follower_down.restart();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let p = c.partition_meta(&topic);
        if p.first().is_some_and(|p| p.leader == follower) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no unclean election of node {follower} within 90 s: {p:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // New records at offsets 1000..1500 (taken in the backup), then 1500..2500: the backup
    // must neither fail nor store them under taken offsets; it goes on at 2000.
    fill_partitions(&c, work.path(), &topic, 1, 500, "fill-3");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("an unclean leader election truncated it")
    {
        assert!(
            Instant::now() < deadline,
            "the truncation was not reported within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the continuous backup exited at the truncation:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    fill_partitions(&c, work.path(), &topic, 1, 1000, "fill-4");
    wait_backed_up(2500, "after the truncation", &mut child);
    leader_down.restart();
    c.wait_fully_replicated(&topic);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    wait_success(child, Duration::from_secs(60), "continuous backup", &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let report = text
        .lines()
        .find(|l| l.contains("an unclean leader election truncated it"))
        .unwrap_or_default();
    eprintln!("the report: {report}");
    assert!(
        report.contains("ERROR") && report.contains("backed_up_to=2000"),
        "one loud line with the range:\n{text}"
    );
    // Every offset of 0..2500 once: ferry verify checks the manifests cover each offset
    // once, without overlap.
    let out = Command::new(ferry_bin())
        .arg("verify")
        .arg(&backup)
        .output()
        .expect("ferry verify runs");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}");
    assert_eq!(backed_up(&backup), 2500);
}

/// A restore killed while its Produce requests wait for a follower that just died leaves
/// records the leaders appended above the high watermark (undecided until the follower drops
/// out of the in-sync replicas, 30 s by default). A re-run started at once must neither
/// write them again nor lose them: it waits until they are replicated, then resumes after
/// them. (Found by `benches/chaos.sh --cluster`: a batch of 50 records doubled in 2 of 10
/// restore trials when the re-run counted from the high watermark.)
#[test]
fn a_restore_rerun_waits_for_records_the_killed_run_left_unreplicated() {
    let Some(c) = cluster() else { return };
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let total = 3 * 3000;
    let (topic, backup) = backed_up_topic(&c, work.path(), "fault-limbo", total);

    // Whether the killed run leaves records above the high watermark depends on timing
    // (the proxies' pace against the follower's death); the scenario is set up again, on a
    // fresh target topic, until the re-run meets such records. Every attempt must restore
    // exactly, whether it met them or not.
    for attempt in 1..=3 {
        if restore_rerun_after_a_killed_run(&c, &env, work.path(), &topic, &backup, attempt) {
            return;
        }
        eprintln!("attempt {attempt}: the re-run met no unreplicated records; again");
    }
    panic!("in 3 attempts the re-run never met records above the high watermark");
}

/// One attempt of the test above: restores `backup` into a fresh topic through slowed
/// proxies, kills a follower and then the restore, re-runs it directly and checks the
/// records are exact. Returns whether the re-run met records left unreplicated.
fn restore_rerun_after_a_killed_run(
    c: &Cluster,
    env: &TestEnv,
    work: &Path,
    topic: &str,
    backup: &Path,
    attempt: u32,
) -> bool {
    use ferry_testkit::proxy::Fault;
    let total = 3 * 3000;
    let restored = format!("{topic}-r{attempt}");
    c.create_topic(&restored, 3);
    c.wait_fully_replicated(&restored);
    // A follower (not the leader) of partition 0: every partition has a replica on it.
    let meta = c.partition_meta(&restored);
    let p0 = meta.iter().find(|p| p.id == 0).expect("partition 0");
    let follower = *p0
        .replicas
        .iter()
        .find(|r| **r != p0.leader)
        .expect("a follower");
    // The first run goes through proxies slowed to 30 KB/s, so that it is still running
    // when the follower dies.
    let proxies = Proxies::start();
    proxies.set(Fault::Slow(30_000));
    let through_proxies = proxies.cluster(c);
    let state = work.join(format!("state-{attempt}"));
    let yaml = work.join(format!("restore-{attempt}.yaml"));
    std::fs::write(
        &yaml,
        restore_yaml(&through_proxies, topic, &restored, backup, &state),
    )
    .unwrap();
    let log = work.join(format!("restore-{attempt}.log"));
    let mut child = spawn_run(&yaml, &log);
    wait_forwarded(&proxies, &mut child, 60_000, "the follower's death", &log);
    let down = Down {
        cluster: c,
        node: follower,
        up: false,
    };
    c.kill_node(follower);
    // Produce requests reach the leaders and wait there for the dead follower.
    std::thread::sleep(Duration::from_secs(3));
    let _ = child.0.kill();
    let _ = child.0.wait();
    // What the killed run still had on the way is dropped, not delivered late.
    proxies.cut();
    proxies.set(Fault::Refuse);

    let rerun_yaml = work.join(format!("rerun-{attempt}.yaml"));
    std::fs::write(
        &rerun_yaml,
        restore_yaml(c, topic, &restored, backup, &state),
    )
    .unwrap();
    let log = work.join(format!("rerun-{attempt}.log"));
    wait_success(
        spawn_run(&rerun_yaml, &log),
        Duration::from_secs(180),
        "restore re-run",
        &log,
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for l in text.lines() {
        if l.contains("replicated") || l.contains("landed") || l.contains("WARN") {
            eprintln!("re-run {attempt}: {l}");
        }
    }
    down.restart();
    c.wait_fully_replicated(&restored);
    assert_same_records(env, c, topic, &restored, total);
    text.contains("not replicated yet")
}

/// A snapshot backup whose partition is truncated under it by an unclean leader election
/// (the log now ends below what the backup holds) ends that partition at what it holds, with
/// one loud line, instead of failing or storing other records under offsets it holds.
#[test]
fn a_snapshot_backup_ends_a_partition_truncated_under_it_at_what_it_holds() {
    use ferry_testkit::proxy::Fault;
    let Some(c) = cluster() else { return };
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().unwrap();
    let topic = unique("fault-unclean-snap");
    // Two replicas, one enough to write, unclean elections allowed (as in the continuous
    // test above).
    c.create_topic_with(
        &topic,
        1,
        2,
        &[
            ("min.insync.replicas", "1"),
            ("unclean.leader.election.enable", "true"),
        ],
    );
    let meta = c.partition_meta(&topic);
    let leader = meta[0].leader;
    let follower = *meta[0]
        .replicas
        .iter()
        .find(|r| **r != leader)
        .expect("a second replica");
    fill_partitions(&c, work.path(), &topic, 1, 1000, "fill-1");
    // The follower stops; 1000 more records land on the leader alone.
    c.stop_node(follower);
    let follower_down = Down {
        cluster: &c,
        node: follower,
        up: false,
    };
    fill_partitions(&c, work.path(), &topic, 1, 1000, "fill-2");

    // The snapshot (end: offset 2000) reads through proxies slowed to 20 KB/s.
    let proxies = Proxies::start();
    proxies.set(Fault::Slow(20_000));
    let backup = work.path().join("backup");
    let yaml = work.path().join("backup.yaml");
    std::fs::write(
        &yaml,
        backup_yaml(&proxies.cluster(&c), &topic, &backup, "high_watermark"),
    )
    .unwrap();
    let log = work.path().join("backup.log");
    let mut child = spawn_run(&yaml, &log);
    // Once it holds more than the follower has, the leader dies and the follower, back,
    // becomes leader with 1000 records: offsets 1000..2000 are gone from the cluster.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = backed_up(&backup);
        assert!(
            n < 2000 && child.try_wait().expect("wait").is_none(),
            "the snapshot finished before the truncation: make it slower"
        );
        if n > 1000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} records backed up after 90 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.kill_node(leader);
    let leader_down = Down {
        cluster: &c,
        node: leader,
        up: false,
    };
    follower_down.restart();
    wait_success(child, Duration::from_secs(180), "snapshot backup", &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let report = text
        .lines()
        .find(|l| l.contains("an unclean leader election truncated it"))
        .unwrap_or_default();
    eprintln!("the report: {report}");
    assert!(
        report.contains("ERROR") && report.contains("the snapshot ends this partition here"),
        "one loud line saying where the snapshot ends:\n{text}"
    );
    // It holds every offset it read once, and nothing more: 0 up to where it was.
    let held = backed_up(&backup);
    assert!(
        report.contains(&format!("backed_up_to={held}")),
        "the backup holds {held} records, ending where the report says:\n{report}"
    );
    assert!((1000..2000).contains(&held), "{held}");
    let out = Command::new(ferry_bin())
        .arg("verify")
        .arg(&backup)
        .output()
        .expect("ferry verify runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    leader_down.restart();
    c.wait_fully_replicated(&topic);
}

/// A new producer's first call routed to a leader that has just been stopped (its metadata
/// still names it), the next call to the new leader: Kafka takes a batch with any sequence
/// from a producer id it holds no state for (KIP-360), so the second call must not be put
/// on the wire before the first has landed, or the first's records are lost while its
/// retries are answered OUT_OF_ORDER_SEQUENCE_NUMBER, as if the broker had them. Every
/// record once, in order, or an error: never a success with records missing.
#[test]
fn a_new_producers_first_call_is_not_overtaken_by_the_next_when_its_leader_stops() {
    let Some(c) = cluster() else { return };
    let _one = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("fault-first-batch");
    c.create_topic(&topic, 1);
    let client = c.client();
    let leader = c.leader_of(&topic, 0);
    let rt = common::rt();
    // The client learns the leader now, and keeps it until told otherwise.
    rt.block_on(client.metadata(Some(std::slice::from_ref(&topic))))
        .expect("metadata");
    c.stop_node(leader);
    let down = Down {
        cluster: &c,
        node: leader,
        up: false,
    };
    let producer = client
        .producer(ferry_kafka::ProducerConfig {
            max_batch_bytes: 300,
            ..Default::default()
        })
        .expect("producer");
    let call = |first: usize| {
        let records = (first..first + 10)
            .map(|i| ferry_kafka::ProduceRecord {
                key: None,
                value: Some(bytes::Bytes::from(format!("record-{i:03}"))),
                headers: vec![],
                timestamp: 1_700_000_000_000 + i as i64,
            })
            .collect();
        producer
            .prepare(vec![ferry_kafka::ProduceBatch {
                topic: topic.clone(),
                partition: 0,
                records,
            }])
            .expect("prepare")
    };
    let outcome = rt.block_on(async {
        // Routed to the stopped node: nothing of it reaches a broker yet.
        let first = producer.start(call(0)).await?;
        // Metadata moves on: the next call is routed to the new leader, and finished side
        // by side with the first, as the kafka sink does.
        client.invalidate_topic(&topic, u64::MAX);
        let second = tokio::spawn(producer.start(call(10)).await?.finish());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let first = first.finish().await?;
        let second = second.await.expect("join")?;
        Ok::<_, ferry_kafka::ClientError>((first, second))
    });
    down.restart();
    c.wait_fully_replicated(&topic);
    let values: Vec<String> = dump_topic(&env, &c.brokers, &topic)
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap_or_default()).unwrap_or_default())
        .collect();
    match outcome {
        Ok((first, second)) => {
            let want: Vec<String> = (0..20).map(|i| format!("record-{i:03}")).collect();
            assert_eq!(
                values, want,
                "both calls succeeded: every record once, in order"
            );
            assert_eq!(first[0].offset_of(0), Some(0));
            assert_eq!(second[0].offset_of(0), Some(10));
        }
        Err(e) => panic!("the producer gave up ({e}); the topic holds {values:?}"),
    }
}
