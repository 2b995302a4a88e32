#!/usr/bin/env python3
"""Runs a command and samples, every --interval seconds, its CPU and RSS, the Kafka broker's
CPU and the whole machine's busy/idle share: a `top` for one benchmark step (perf-free).

    procsample.py [--interval 0.25] [--broker-pid PID] [--timeline] -- CMD ARGS...

The broker is found from $FERRY_DEV_HOME/run/kafka.pid (default /var/tmp/ferry-dev) unless
--broker-pid is given. Prints to stderr a summary: wall time, the command's CPU% (100% = one
core) and peak RSS, the broker's CPU%, the machine's CPU% (200% = both cores of a 2-core
machine) and what other processes used; with --timeline also one line per sample. Exits
with the command's exit code.
"""

import argparse
import os
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_cpu(pid):
    """utime+stime of pid and its waited-for children, in seconds (None when gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is state (field 3); utime is field 14, stime 15, cutime 16, cstime 17
        return sum(int(x) for x in fields[11:15]) / TICK
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def proc_rss(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError):
        return None


def descendants(pid):
    kids = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except FileNotFoundError:
        pass
    out = []
    for k in kids:
        out.append(k)
        out.extend(descendants(k))
    return out


def machine_cpu():
    """(busy, total) jiffies over all cores."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    total = sum(v[:8])
    return total - idle, total


def broker_pid(given):
    if given:
        return given
    home = os.environ.get("FERRY_DEV_HOME", "/var/tmp/ferry-dev")
    try:
        with open(os.path.join(home, "run", "kafka.pid")) as f:
            pid = int(f.read().split()[0])
        return pid if proc_cpu(pid) is not None else None
    except (FileNotFoundError, ValueError, IndexError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--broker-pid", type=int)
    ap.add_argument("--timeline", action="store_true")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command given")
    bpid = broker_pid(a.broker_pid)
    ncpu = os.cpu_count() or 1

    t0 = time.monotonic()
    b0 = proc_cpu(bpid) if bpid else None
    m0 = machine_cpu()
    child = subprocess.Popen(cmd)
    peak_rss = 0
    last = (t0, 0.0, b0, m0)
    lines = []
    while True:
        try:
            rc = child.wait(timeout=a.interval)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        pids = [child.pid] + descendants(child.pid)
        cpu = sum(c for c in (proc_cpu(p) for p in pids) if c is not None)
        rss = sum(r for r in (proc_rss(p) for p in pids) if r is not None)
        peak_rss = max(peak_rss, rss)
        b = proc_cpu(bpid) if bpid else None
        m = machine_cpu()
        dt = now - last[0]
        if a.timeline and dt > 0:
            bcpu = (b - last[2]) / dt * 100 if b is not None and last[2] is not None else float("nan")
            mb = (m[0] - last[3][0]) / max(1, m[1] - last[3][1]) * 100 * ncpu
            lines.append(
                f"{now - t0:7.2f}s  cmd {((cpu - last[1]) / dt) * 100:5.0f}%  rss {rss / 2**20:7.1f} MiB"
                f"  broker {bcpu:5.0f}%  machine {mb:5.0f}%"
            )
        last = (now, cpu, b, m)
    wall = time.monotonic() - t0
    cpu_total = None
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_total = r.ru_utime + r.ru_stime
        peak_rss = max(peak_rss, r.ru_maxrss * 1024)
    except Exception:
        pass
    b1 = proc_cpu(bpid) if bpid else None
    m1 = machine_cpu()
    machine = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * 100 * ncpu
    out = sys.stderr
    for l in lines:
        print(l, file=out)
    cmd_pct = cpu_total / wall * 100 if cpu_total is not None and wall > 0 else float("nan")
    broker_pct = (b1 - b0) / wall * 100 if b0 is not None and b1 is not None else float("nan")
    other = machine - cmd_pct - (broker_pct if broker_pct == broker_pct else 0)
    print(
        f"procsample: wall {wall:.2f}s; command CPU {cmd_pct:.0f}% ({cpu_total:.2f}s), peak RSS "
        f"{peak_rss / 2**20:.1f} MiB; broker CPU {broker_pct:.0f}%; machine {machine:.0f}% of "
        f"{ncpu * 100}% (others {other:.0f}%)",
        file=out,
    )
    sys.exit(rc)


if __name__ == "__main__":
    main()
