#!/usr/bin/env python3
"""Reads `strace -f -tt -e trace=sendto,recvfrom -o FILE ferry restore ...` output and tells
how Produce requests went out on the busiest broker socket: how many, how many were sent
while an earlier one still waited for its answer (pipelining), and how much of the run had a
request outstanding.

    strace_produce.py FILE
"""
import collections
import re
import sys

lines = open(sys.argv[1]).read().splitlines()


def ts(line):
    h, m, s = line.split()[1].split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


fds = collections.Counter(m.group(1) for m in (re.search(r"sendto\((\d+),", l) for l in lines) if m)
fd = fds.most_common(1)[0][0]
outstanding = collections.deque()  # send times of requests waiting for an answer
busy_since = None
busy = 0.0
requests = overlapped = 0
sizes = []
for l in lines:
    if f"sendto({fd}," in l and "\\5ferry" in l:  # a request header (client id "ferry")
        m = re.search(r"\.\.\., (\d+), MSG", l)
        sizes.append(int(m.group(1)) if m else 0)
        requests += 1
        if outstanding:
            overlapped += 1
        else:
            busy_since = ts(l)
        outstanding.append(ts(l))
    elif f"recvfrom({fd}," in l and outstanding:
        # One answer per recv is an approximation (answers are small and rarely coalesce).
        outstanding.popleft()
        if not outstanding:
            busy += ts(l) - busy_since
t = [ts(l) for l in lines if re.match(r"^\d+\s+\d\d:", l)]
sizes.sort()
print(
    f"fd {fd}: {requests} requests, {overlapped} sent while another was outstanding; "
    f"run {t[-1] - t[0]:.2f}s, a request outstanding {busy:.2f}s; request bytes median "
    f"{sizes[len(sizes) // 2]}, >4MB {sum(s > 4e6 for s in sizes)}, 1-4MB "
    f"{sum(1e6 < s <= 4e6 for s in sizes)}, <=1MB {sum(s <= 1e6 for s in sizes)}"
)
