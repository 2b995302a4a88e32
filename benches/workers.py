#!/usr/bin/env python3
"""Ferry's worker-group benchmark (not a test), on the dev Kafka.

    benches/workers.sh [--records N] [--partitions P] [--repeat R] [--failovers F] [--out FILE]

1. Aggregate backup throughput with 1, 2 and 3 workers: a snapshot pipeline (raw format)
   of a topic of N x 1 KiB records on P partitions, submitted through the REST API; timed
   from the PUT to status FINISHED. kcat -C to /dev/null reads the same topic in the same
   rounds, in alternating order (kcat first in odd rounds). Medians of R rounds. Check: the
   backup's manifests hold N records (`ferry ls --json`).
2. Failover: 3 workers run a continuous backup of the topic; one is killed (SIGKILL); timed
   from the kill until /workers shows every unit on the two live workers and the status
   shows them RUNNING. Median of F kills (each with a fresh worker started in its place).

All workers run on this one machine (2 cores): the figure shows the coordination works and
what it costs, not a scale-out speed-up, which needs workers on separate machines.
"""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def log(*a):
    print("workers:", *a, file=sys.stderr, flush=True)


def http(port, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=body.encode() if body else None,
                                 headers={"Content-Type": "application/yaml"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Worker:
    def __init__(self, ferry, brokers, group, port, work):
        self.port = port
        self.logf = open(os.path.join(work, f"worker-{port}.log"), "w")
        self.proc = subprocess.Popen([ferry, "worker", "--brokers", brokers, "--group", group,
                                      "--listen", f"127.0.0.1:{port}", "--session-timeout", "6s"],
                                     stdout=subprocess.DEVNULL, stderr=self.logf,
                                     env={**os.environ, "FERRY_LOG": "warn"})
        wait(lambda: self.get("/healthz").get("member") is True, 60, f"worker {port} joined")

    def get(self, path):
        try:
            return http(self.port, "GET", path)[1] or {}
        except OSError:
            return {}

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.kill()


def wait(cond, limit, what, every=0.1):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if cond():
            return time.monotonic() - start
        time.sleep(every)
    raise SystemExit(f"workers: ERROR: {what} did not happen within {limit}s")


def end_offsets_sum(python, brokers, topic):
    code = ("import sys\nfrom confluent_kafka import Consumer, TopicPartition\n"
            "c=Consumer({'bootstrap.servers':sys.argv[1],'group.id':'x'})\n"
            "md=c.list_topics(sys.argv[2],timeout=30)\n"
            "print(sum(c.get_watermark_offsets(TopicPartition(sys.argv[2],p),timeout=30)[1] for p in md.topics[sys.argv[2]].partitions))")
    return int(subprocess.check_output([python, "-c", code, brokers, topic]).strip())


def backup_records(ferry, folder):
    out = json.loads(subprocess.check_output([ferry, "ls", "--json", folder]))
    total = 0
    def walk(v):
        nonlocal total
        if isinstance(v, dict):
            if "records" in v and isinstance(v["records"], int) and "partition" in v:
                total += v["records"]
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(out)
    return total


def pipeline(name, brokers, topic, folder, stop):
    return (f"name: {name}\nsource: {{type: kafka, brokers: [\"{brokers}\"], topics: [{topic}], stop: {stop}}}\n"
            f"sink: {{type: storage, uri: \"file://{folder}\"}}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", time.strftime("workers-%Y-%m-%d.md")))
    a = ap.parse_args()
    brokers, kcat, python = os.environ["FERRY_KAFKA"], os.environ["FERRY_KCAT"], os.environ["FERRY_PYTHON"]
    ferry = os.environ.get("FERRY_BIN", "/var/tmp/ferry-target/release/ferry")
    home = os.environ.get("FERRY_BENCH_HOME", "/var/tmp/ferry-bench")
    inp = os.path.join(home, f"input-{a.records}-1024.txt")
    if not os.path.exists(inp):
        raise SystemExit(f"workers: ERROR: {inp} missing: run benches/e2e.sh --records {a.records} once (it generates it)")
    work = tempfile.mkdtemp(prefix="workers-", dir=home)
    stamp = str(int(time.time()))
    topic = f"bench-workers-{stamp}"
    subprocess.check_call([ferry, "topics", "--brokers", brokers], stdout=subprocess.DEVNULL)
    admin = ("import sys\nfrom confluent_kafka.admin import AdminClient, NewTopic\n"
             "a=AdminClient({'bootstrap.servers':sys.argv[1]})\n"
             "a.create_topics([NewTopic(sys.argv[2],int(sys.argv[3]),1)])[sys.argv[2]].result()")
    subprocess.check_call([python, "-c", admin, brokers, topic, str(a.partitions)])
    with open(inp, "rb") as f:
        subprocess.check_call([kcat, "-b", brokers, "-P", "-t", topic, "-q"], stdin=f)
    n = end_offsets_sum(python, brokers, topic)
    assert n == a.records, f"topic holds {n} records, want {a.records}"
    gb = os.path.getsize(inp) / 1e9
    log(f"topic {topic}: {n} records, {a.partitions} partitions")

    rows = {}
    kcat_times = []
    port = 18700
    for r in range(a.repeat):
        for workers in (1, 2, 3):
            def kcat_read():
                t0 = time.monotonic()
                subprocess.check_call([kcat, "-b", brokers, "-C", "-t", topic, "-e", "-q", "-o", "beginning"],
                                      stdout=subprocess.DEVNULL)
                kcat_times.append(time.monotonic() - t0)
            if r % 2 == 0:
                kcat_read()
            group = f"bench-wg-{stamp}-{r}-{workers}"
            ws = []
            for i in range(workers):
                port += 1
                ws.append(Worker(ferry, brokers, group, port, work))
            time.sleep(1)
            folder = os.path.join(work, f"backup-{r}-{workers}")
            t0 = time.monotonic()
            code, body = http(ws[0].port, "PUT", "/pipelines/snap", pipeline("snap", brokers, topic, folder, "high_watermark"))
            assert code == 201, body
            wait(lambda: ws[0].get("/pipelines/snap/status").get("state") == "FINISHED", 900, "snapshot FINISHED", 0.05)
            took = time.monotonic() - t0
            for w in ws:
                w.stop()
            got = backup_records(ferry, folder)
            assert got == a.records, f"backup holds {got} records, want {a.records}"
            shutil.rmtree(folder)
            rows.setdefault(workers, []).append(took)
            log(f"round {r + 1}: {workers} worker(s): {took:.2f}s ({gb / took:.2f} GB/s)")
            if r % 2 == 1:
                kcat_read()

    # Failover.
    failovers = []
    group = f"bench-wg-{stamp}-failover"
    ws = []
    for i in range(3):
        port += 1
        ws.append(Worker(ferry, brokers, group, port, work))
    folder = os.path.join(work, "backup-failover")
    code, body = http(ws[0].port, "PUT", "/pipelines/cont", pipeline("cont", brokers, topic, folder, "never"))
    assert code == 201, body
    def spread(ws_live):
        urls = {f"http://127.0.0.1:{w.port}" for w in ws_live}
        view = ws_live[0].get("/workers")
        members = view.get("workers", [])
        units = sum(len(m["units"]) for m in members)
        st = ws_live[0].get("/pipelines/cont/status")
        running = {t["worker"] for t in st.get("tasks", []) if t.get("state") == "RUNNING"}
        return ({m["worker"] for m in members} == urls and units == a.partitions
                and all(len(m["units"]) > 0 for m in members) and running == urls)
    wait(lambda: spread(ws), 120, "3 workers running the backup")
    for k in range(a.failovers):
        victim = ws.pop(k % len(ws))
        t0 = time.monotonic()
        victim.kill()
        wait(lambda: spread(ws), 120, "partitions moved after a kill", 0.05)
        failovers.append(time.monotonic() - t0)
        log(f"failover {k + 1}: {failovers[-1]:.2f}s")
        port += 1
        ws.append(Worker(ferry, brokers, group, port, work))
        wait(lambda: spread(ws), 120, "3 workers again")
    for w in ws:
        w.stop()

    kmed = statistics.median(kcat_times)
    lines = [f"# Worker group benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"Command: `benches/workers.sh --records {a.records} --partitions {a.partitions} --repeat {a.repeat} --failovers {a.failovers}`; "
             f"{a.records} x 1 KiB records ({gb:.2f} GB) on {a.partitions} partitions, one Kafka broker, all on one 2-core machine.", "",
             "| what | median s | GB/s | vs kcat -C > /dev/null |", "|---|---|---|---|",
             f"| kcat -C > /dev/null | {kmed:.2f} | {gb / kmed:.2f} | 1.00x |"]
    for workers, times in sorted(rows.items()):
        m = statistics.median(times)
        lines.append(f"| snapshot backup, {workers} worker(s) (PUT → FINISHED) | {m:.2f} | {gb / m:.2f} | {kmed / m:.2f}x |")
    lines += ["", f"Failover (SIGKILL of one of 3 workers → its partitions running on the others; session timeout 6 s): "
              f"median {statistics.median(failovers):.2f} s of {len(failovers)} (" + ", ".join(f"{x:.1f}" for x in failovers) + ").", "",
              "Checks: every backup's manifests hold every record (`ferry ls --json`)."]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    shutil.rmtree(work, ignore_errors=True)
    subprocess.call([python, "-c", "import sys\nfrom confluent_kafka.admin import AdminClient\nAdminClient({'bootstrap.servers':sys.argv[1]}).delete_topics([sys.argv[2]])", brokers, topic])


if __name__ == "__main__":
    main()
