# Reads a whole topic, every partition from its log start to its end, with
# confluent-kafka (librdkafka), independent of Ferry. argv: broker topic
# isolation(read_committed|read_uncommitted) timeout_s.
# Prints one JSON object per record; bytes as base64, None as null.
import base64
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

broker, topic, isolation, timeout_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
deadline = time.monotonic() + timeout_s


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


c = Consumer({
    "bootstrap.servers": broker,
    "group.id": "ferry-testkit-dump",  # never joined: assign() + no commits
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": True,
    "auto.offset.reset": "earliest",
    "isolation.level": isolation,
    "check.crcs": True,
})
md = c.list_topics(topic, timeout=max(1.0, deadline - time.monotonic()))
t = md.topics.get(topic)
if t is None or t.error is not None:
    sys.exit(f"dump: topic {topic!r} not found: {t.error if t else 'missing'}")

MOVING_LEADER = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


def watermarks(p):
    # Right after a broker restart the metadata can still name the old leader:
    # NOT_LEADER_FOR_PARTITION and friends are retriable, so ask again until
    # the deadline (the fault tests read topics whose leaders just moved).
    while True:
        try:
            return c.get_watermark_offsets(TopicPartition(topic, p), timeout=max(1.0, deadline - time.monotonic()))
        except KafkaException as e:
            err = e.args[0]
            if not (err.retriable() or err.code() in MOVING_LEADER) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


pending = set()
assignment = []
for p in sorted(t.partitions):
    lo, hi = watermarks(p)
    if hi > lo:
        assignment.append(TopicPartition(topic, p, lo))
        pending.add(p)
c.assign(assignment)
ts_types = {0: "none", 1: "create", 2: "log_append"}
out = sys.stdout
while pending:
    if time.monotonic() > deadline:
        sys.exit(f"dump: timed out, partitions {sorted(pending)} not read to the end")
    m = c.poll(0.5)
    if m is None:
        continue
    err = m.error()
    if err is not None:
        if err.code() == KafkaError._PARTITION_EOF:
            pending.discard(m.partition())
            continue
        sys.exit(f"dump: {err}")
    ts_type, ts = m.timestamp()
    out.write(json.dumps({
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp": ts,
        "timestamp_type": ts_types.get(ts_type, str(ts_type)),
        "key": b64(m.key()),
        "value": b64(m.value()),
        "headers": [[k, b64(v)] for (k, v) in (m.headers() or [])],
    }) + "\n")
c.close()
