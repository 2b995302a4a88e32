#!/usr/bin/env python3
"""Topic admin for benches/e2e.sh, through confluent-kafka's AdminClient.

    kafka_admin.py BROKERS create TOPIC PARTITIONS [KEY=VALUE ...]
    kafka_admin.py BROKERS create-many PARTITIONS TOPIC [TOPIC ...]   (default configs)
    kafka_admin.py BROKERS delete TOPIC [TOPIC ...]     (missing topics are not an error)

Run it with the dev venv's Python ($FERRY_PYTHON), which has confluent-kafka.
"""

import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


def die(msg):
    print(f"kafka_admin: {msg}", file=sys.stderr)
    sys.exit(1)


def wait_metadata(admin, topic, partitions, present, timeout=30.0):
    """Waits until the topic is (present) or is not (not present) in the metadata."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=10)
        t = md.topics.get(topic)
        ok = t is not None and t.error is None and len(t.partitions) == partitions
        if present and ok and all(p.leader >= 0 for p in t.partitions.values()):
            return
        if not present and t is None:
            return
        time.sleep(0.2)
    die(f"topic {topic}: metadata did not show it {'created' if present else 'deleted'} in {timeout}s")


def main(argv):
    if len(argv) < 3:
        die(__doc__)
    brokers, cmd, args = argv[0], argv[1], argv[2:]
    admin = AdminClient({"bootstrap.servers": brokers})
    if cmd == "create":
        if len(args) < 2:
            die("create TOPIC PARTITIONS [KEY=VALUE ...]")
        topic, partitions = args[0], int(args[1])
        configs = dict(kv.split("=", 1) for kv in args[2:])
        fut = admin.create_topics([NewTopic(topic, partitions, config=configs)], operation_timeout=30)
        try:
            fut[topic].result()
        except KafkaException as e:
            die(f"creating topic {topic}: {e}")
        wait_metadata(admin, topic, partitions, present=True, timeout=120)
    elif cmd == "create-many":
        if len(args) < 2:
            die("create-many PARTITIONS TOPIC [TOPIC ...]")
        partitions, topics = int(args[0]), args[1:]
        # In requests of 50 topics: one request for thousands of partitions may time out.
        for i in range(0, len(topics), 50):
            chunk = topics[i : i + 50]
            futs = admin.create_topics([NewTopic(t, partitions) for t in chunk], operation_timeout=60)
            for t, f in futs.items():
                try:
                    f.result()
                except KafkaException as e:
                    die(f"creating topic {t}: {e}")
        for t in topics:
            wait_metadata(admin, t, partitions, present=True, timeout=120)
    elif cmd == "delete":
        existing = set(admin.list_topics(timeout=10).topics)
        topics = [t for t in args if t in existing]
        if not topics:
            return
        futs = admin.delete_topics(topics, operation_timeout=30)
        for t, f in futs.items():
            try:
                f.result()
            except KafkaException as e:
                print(f"kafka_admin: deleting topic {t}: {e}", file=sys.stderr)
    else:
        die(f"unknown command {cmd!r}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
