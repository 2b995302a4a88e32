"""Ferry's kill -9 campaign (run through benches/chaos.sh; not a test).

Fills one topic with Ferry's generator, then runs randomized trials:
  backup   a snapshot backup into a fresh folder, killed with SIGKILL 1..K times at random
           moments (the first kill waits for a first commit, later ones at random delays),
           then run to the end; every partition's manifests must cover exactly the
           source's offsets, each once (lost = offsets missing, duplicated = offsets stored
           twice), and `ferry verify` must pass.
  restore  one complete backup restored into a fresh topic, killed the same way, then run to
           the end; the restored topic read with librdkafka must hold every source record
           once (lost / duplicated counted per (partition, key, value, timestamp)).
With --cluster (the 3-node cluster of `scripts/dev-env cluster-up`, replication factor 3,
min.insync.replicas 2), every trial also kills one broker node with SIGKILL at a random
moment while Ferry runs and is being killed, and starts it again a few seconds later: Ferry's
kills and leader changes combined. Before the next trial every partition is fully replicated
again.
Prints one line per trial and a Markdown table at the end (also written to --out).
"""

import argparse
import base64
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def log(msg):
    print(f"chaos: {msg}", file=sys.stderr, flush=True)


def run_ferry(ferry, yaml_path, quiet=True):
    return subprocess.Popen(
        [ferry, "run", yaml_path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if quiet else None,
        env={**os.environ, "FERRY_LOG": "warn"},
    )


def create_topic(broker, name, partitions, replicas=1):
    admin = AdminClient({"bootstrap.servers": broker})
    fut = admin.create_topics(
        [NewTopic(name, partitions, replicas, config={"retention.ms": "-1"})]
    )[name]
    fut.result(30)


class BrokerFaults:
    """Kills one node of the dev-env 3-node cluster during a trial and starts it again."""

    def __init__(self, run_dir, dev_env, broker, rng):
        self.run_dir, self.dev_env, self.broker, self.rng = run_dir, dev_env, broker, rng
        self.thread = None
        self.note = ""

    def start(self):
        node = self.rng.randint(1, 3)
        after = self.rng.uniform(0.0, 1.5)
        down_for = self.rng.uniform(2.0, 8.0)
        self.thread = threading.Thread(target=self._fault, args=(node, after, down_for))
        self.thread.start()

    def _fault(self, node, after, down_for):
        time.sleep(after)
        with open(os.path.join(self.run_dir, f"cluster-{node}.pid")) as fh:
            pid = int(fh.read().strip())
        os.kill(pid, signal.SIGKILL)
        log(f"killed broker node {node} {after:.2f} s into the trial; down for {down_for:.1f} s")
        time.sleep(down_for)
        subprocess.run([self.dev_env, "cluster-start-node", str(node)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.note = f"node {node} at {after:.1f} s for {down_for:.1f} s"

    def finish(self, topics, timeout_s=180):
        """Waits for the node to be back and every partition of `topics` fully replicated."""
        if self.thread is None:
            return
        self.thread.join()
        self.thread = None
        admin = AdminClient({"bootstrap.servers": self.broker})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            md = admin.list_topics(timeout=30)
            parts = [p for t in topics if t in md.topics for p in md.topics[t].partitions.values()]
            if parts and all(p.leader >= 0 and len(p.isrs) == len(p.replicas) for p in parts):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{topics} not fully replicated {timeout_s} s after the broker came back")


def dump(broker, topic, timeout_s=60):
    """Every record of every partition, as a Counter of (partition, key, value, timestamp)."""
    c = Consumer({
        "bootstrap.servers": broker,
        "group.id": "ferry-chaos-dump",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
    md = c.list_topics(topic, timeout=30).topics[topic]
    parts = sorted(md.partitions)
    ends = {}
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        ends[p] = hi
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    seen = collections.Counter()
    done = {p for p in parts if ends[p] == 0}
    deadline = time.monotonic() + timeout_s
    while len(done) < len(parts) and time.monotonic() < deadline:
        for m in c.consume(1000, 1.0):
            if m.error():
                if m.error().code() == -191:  # partition EOF
                    done.add(m.partition())
                continue
            seen[(m.partition(), m.key(), m.value(), m.timestamp()[1])] += 1
            if m.offset() + 1 >= ends[m.partition()]:
                done.add(m.partition())
    c.close()
    return seen, ends


def kill_run(ferry, yaml_path, kills, progress, rng, timeout_s=120, faults=None):
    """Runs the pipeline, killing it `kills` times; returns how many kills landed after the
    run had committed progress of its own. Then one last run to the end. `faults` (a
    BrokerFaults) starts with the first run."""
    landed = 0
    if faults:
        faults.start()
    for i in range(kills):
        before = progress()
        proc = run_ferry(ferry, yaml_path)
        start = time.monotonic()
        if i == 0:
            # The first kill waits for a commit of this run, then a random moment more.
            while proc.poll() is None and progress() <= before:
                if time.monotonic() - start > timeout_s:
                    proc.kill()
                    raise RuntimeError("no progress within the time limit")
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.05))
        else:
            time.sleep(rng.uniform(0.02, 0.4))
        if proc.poll() is not None:
            break  # finished before the kill
        committed = progress() > before
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        landed += committed
    last = run_ferry(ferry, yaml_path, quiet=False)
    if last.wait(timeout_s) != 0:
        raise RuntimeError(f"the last run of {yaml_path} failed")
    return landed


def manifests(backup_dir, topic):
    out = collections.defaultdict(list)
    tdir = os.path.join(backup_dir, "topics", topic)
    if not os.path.isdir(tdir):
        return out
    for p in os.listdir(tdir):
        pdir = os.path.join(tdir, p)
        if not os.path.isdir(pdir):
            continue
        for f in os.listdir(pdir):
            if f.endswith(".json"):
                try:
                    with open(os.path.join(pdir, f)) as fh:
                        out[int(p)].append(json.load(fh))
                except (OSError, ValueError):
                    pass  # being written: counted on the next look
    return out


def committed_records(backup_dir, topic):
    return sum(m.get("record_count", 0) for ms in manifests(backup_dir, topic).values() for m in ms)


def backup_yaml(broker, topic, backup_dir):
    return f"""name: chaos-backup
source:
  type: kafka
  brokers: ["{broker}"]
  topics: ["{topic}"]
  stop: high_watermark
  start: earliest
  partition_max_bytes: 4KiB
  fetch_max_bytes: 16KiB
  max_wait_ms: 10
sink:
  type: storage
  uri: "{backup_dir}"
  format: raw
  roll: {{ max_records: 500 }}
delivery:
  checkpoint_interval: 20ms
  max_in_flight_bytes: 64KiB
"""


def restore_yaml(broker, backup_dir, topic, target, state):
    return f"""name: chaos-restore
source:
  type: backup
  uri: "{backup_dir}"
  read_chunk: 8KiB
transforms:
  - type: rename_topic
    map: {{ "{topic}": "{target}" }}
sink:
  type: kafka
  brokers: ["{broker}"]
  buffer_bytes: 4KiB
  state: "{state}"
delivery:
  checkpoint: "{state}"
  checkpoint_interval: 20ms
  max_in_flight_bytes: 32KiB
"""


def checkpoint_sum(path):
    try:
        with open(path) as fh:
            c = json.load(fh)
        return sum(o for parts in c.get("offsets", {}).values() for o in parts.values())
    except (OSError, ValueError):
        return 0


def backup_trial(ferry, broker, topic, ends, work, rng, kills, faults=None):
    d = tempfile.mkdtemp(prefix="backup-", dir=work)
    y = os.path.join(d, "backup.yaml")
    data = os.path.join(d, "data")
    with open(y, "w") as fh:
        fh.write(backup_yaml(broker, topic, data))
    landed = kill_run(ferry, y, kills, lambda: committed_records(data, topic), rng, faults=faults)
    if faults:
        faults.finish([topic])
    lost = dup = 0
    for p, end in ends.items():
        covered = collections.Counter()
        for m in manifests(data, topic).get(p, []):
            for o in range(m["first_offset"], m["next_offset"]):
                covered[o] += 1
        lost += sum(1 for o in range(end) if covered[o] == 0)
        dup += sum(n - 1 for n in covered.values() if n > 1)
    ok = subprocess.run([ferry, "verify", data], capture_output=True).returncode == 0
    return data, landed, lost, dup, ok


def restore_trial(ferry, broker, topic, backup_dir, source, work, rng, kills, n, faults=None):
    d = tempfile.mkdtemp(prefix="restore-", dir=work)
    target = f"{topic}-r{n}"
    state = os.path.join(d, "state")
    y = os.path.join(d, "restore.yaml")
    with open(y, "w") as fh:
        fh.write(restore_yaml(broker, backup_dir, topic, target, state))
    ckpt = os.path.join(state, "checkpoints", "chaos-restore.json")
    if faults:
        # Made beforehand with 3 replicas, so that a killed node holds some of its leaders.
        create_topic(broker, target, len({p for (p, _, _, _) in source}), 3)
    landed = kill_run(ferry, y, kills, lambda: checkpoint_sum(ckpt), rng, faults=faults)
    if faults:
        faults.finish([topic, target])
    copy, _ = dump(broker, target)
    lost = sum(max(0, n - copy[k]) for k, n in source.items())
    dup = sum(max(0, n - source[k]) for k, n in copy.items())
    return landed, lost, dup


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferry", required=True)
    ap.add_argument("--broker", required=True)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--records", type=int, default=30000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--max-kills", type=int, default=4)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--work", default="/var/tmp/ferry-chaos")
    ap.add_argument("--out", default="")
    ap.add_argument("--cluster", action="store_true",
                    help="--broker is the dev-env 3-node cluster: kill a node in every trial")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    replicas = 3 if a.cluster else 1

    def faults():
        if not a.cluster:
            return None
        return BrokerFaults(os.environ["FERRY_CLUSTER_RUN"], os.environ["FERRY_CLUSTER_DEV_ENV"],
                            a.broker, rng)
    os.makedirs(a.work, exist_ok=True)
    work = tempfile.mkdtemp(prefix="run-", dir=a.work)
    topic = f"chaos-{a.seed}"
    log(f"seed {a.seed}; filling {topic} with {a.records} records over {a.partitions} partitions")
    create_topic(a.broker, topic, a.partitions, replicas)
    fill = os.path.join(work, "fill.yaml")
    with open(fill, "w") as fh:
        fh.write(f"""name: chaos-fill
source: {{ type: generator, count: {a.records}, topic: "{topic}", partitions: {a.partitions}, key_space: 1000, payload_size: 100, batch_size: 50 }}
sink: {{ type: kafka, brokers: ["{a.broker}"], buffer_bytes: 8KiB }}
delivery: {{ checkpoint: none }}
""")
    if run_ferry(a.ferry, fill, quiet=False).wait() != 0:
        sys.exit("chaos: filling the topic failed")
    source, ends = dump(a.broker, topic)
    total = sum(source.values())
    if total != a.records:
        sys.exit(f"chaos: the source topic holds {total} records, not {a.records}")

    rows = []
    complete_backup = None
    for i in range(a.trials):
        kills = rng.randint(1, a.max_kills)
        f = faults()
        data, landed, lost, dup, ok = backup_trial(a.ferry, a.broker, topic, ends, work, rng, kills, f)
        complete_backup = complete_backup or data
        note = f.note if f else "-"
        rows.append(("backup", i + 1, kills, landed, lost, dup, "yes" if ok else "NO", note))
        log(f"backup trial {i + 1}: {landed}/{kills} kills after a commit, lost {lost}, duplicated {dup}, verify {'ok' if ok else 'FAILED'}; broker killed: {note}")
    for i in range(a.trials):
        kills = rng.randint(1, a.max_kills)
        f = faults()
        landed, lost, dup = restore_trial(a.ferry, a.broker, topic, complete_backup, source, work, rng, kills, i + 1, f)
        note = f.note if f else "-"
        rows.append(("restore", i + 1, kills, landed, lost, dup, "-", note))
        log(f"restore trial {i + 1}: {landed}/{kills} kills after a commit, lost {lost}, duplicated {dup}; broker killed: {note}")

    lines = [
        f"# Ferry kill -9 campaign, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{a.records} records over {a.partitions} partitions, seed {a.seed}; each trial kills the run 1..{a.max_kills} times (SIGKILL), then runs it to the end."
        + (" On the 3-node cluster (replication factor 3, min.insync.replicas 2): each trial also kills one broker node (SIGKILL) and starts it again." if a.cluster else ""),
        "",
        "| kind | trial | kills | kills after a commit | lost | duplicated | verify | broker killed |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    lines += [f"| {k} | {t} | {n} | {l} | {lo} | {d} | {v} | {b} |" for (k, t, n, l, lo, d, v, b) in rows]
    bad = [r for r in rows if r[4] or r[5] or r[6] == "NO"]
    lines += ["", f"Trials: {len(rows)}; lost {sum(r[4] for r in rows)}, duplicated {sum(r[5] for r in rows)}; failing trials: {len(bad)}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
