# Produces messages with confluent-kafka (librdkafka), independent of Ferry.
# argv: broker topic codec idempotent(0|1) partition(-1 = partitioner).
# stdin: a JSON list of {"key", "value", "headers": [[k, v]], "timestamp"}
# with bytes as base64 and null for None. Prints a JSON list of
# [partition, offset], one per message, in input order.
import base64
import json
import sys

from confluent_kafka import Producer

broker, topic, codec, idempotent, partition = sys.argv[1:6]
partition = int(partition)


def unb64(s):
    return None if s is None else base64.b64decode(s)


msgs = json.load(sys.stdin)
p = Producer({
    "bootstrap.servers": broker,
    "compression.type": codec,
    "enable.idempotence": idempotent == "1",
    "acks": "all",
    "linger.ms": 20,
    "message.max.bytes": 16 * 1024 * 1024,
    "message.timeout.ms": 60000,
})
results = [None] * len(msgs)
errors = []


def report(i):
    def cb(err, msg):
        if err is not None:
            errors.append(f"message {i}: {err}")
        else:
            results[i] = [msg.partition(), msg.offset()]
    return cb


for i, m in enumerate(msgs):
    kw = {
        "key": unb64(m.get("key")),
        "value": unb64(m.get("value")),
        "headers": [(k, unb64(v)) for (k, v) in m.get("headers") or []],
        "on_delivery": report(i),
    }
    if partition >= 0:
        kw["partition"] = partition
    if m.get("timestamp") is not None:
        kw["timestamp"] = m["timestamp"]
    while True:
        try:
            p.produce(topic, **kw)
            break
        except BufferError:
            p.poll(0.1)
    p.poll(0)
left = p.flush(90)
if left:
    sys.exit(f"produce: {left} messages not delivered in time")
if errors:
    sys.exit("produce: " + "; ".join(errors[:10]))
json.dump(results, sys.stdout)
