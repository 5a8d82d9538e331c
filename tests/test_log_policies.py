"""Retention and compaction through the broker, observed with librdkafka."""

import subprocess
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, kafka_tool

FAST_CLEANER = """
[log]
cleaner_backoff_ms = 200
retention_check_interval_ms = 200
"""


def fast_broker(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text(FAST_CLEANER)
    return Broker(tmp_path / "data", extra_args=["--config", str(config)]).start()


def read_all(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "policies",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                break
            raise AssertionError(m.error())
        out.append((m.offset(), m.key(), m.value()))
    c.close()
    return out


def test_compacted_topic_keeps_latest_value_per_key_at_original_offsets(tmp_path):
    broker = fast_broker(tmp_path)
    try:
        topic = "customers.profile"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1, config={
            "cleanup.policy": "compact", "segment.bytes": "8192"})])[topic].result(30)
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2,
                      "compression.type": "lz4", "batch.size": 4096})
        offsets = {}

        def report(err, msg):
            assert err is None, err
            offsets[msg.value()] = msg.offset()

        for rnd in range(100):
            for k in range(20):
                value = f"customer-{k}-version-{rnd}".encode() + b"." * 60
                p.produce(topic, key=f"customer-{k}".encode(), value=value, on_delivery=report)
            p.poll(0)
        assert p.flush(30) == 0
        total = len(offsets)
        assert total == 2000

        deadline = time.monotonic() + 30
        records = read_all(broker.bootstrap, topic)
        while len(records) > total // 4 and time.monotonic() < deadline:
            time.sleep(0.5)
            records = read_all(broker.bootstrap, topic)
        assert len(records) <= total // 4, f"not compacted: {len(records)} records remain"

        # Old librdkafka (kcat) and the Java consumer read past the emptied batches too.
        r = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning",
                            "-e", "-q", "-f", "%o\n"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert [int(o) for o in r.stdout.split()] == [o for o, _, _ in records]
        r = kafka_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server",
                       broker.bootstrap, "--topic", topic, "--partition", "0", "--offset",
                       "earliest", "--max-messages", str(len(records)), "--timeout-ms", "30000")
        assert r.returncode == 0, r.stderr[-2000:]
        assert len(r.stdout.splitlines()) == len(records)

        latest = {}
        for offset, key, value in records:
            assert offsets[value] == offset, "a kept record moved to another offset"
            latest[key] = value
        for k in range(20):
            assert latest[f"customer-{k}".encode()].startswith(f"customer-{k}-version-99".encode())
        # Offsets keep increasing for new writes.
        p.produce(topic, key=b"customer-0", value=b"after", on_delivery=report)
        p.flush(10)
        assert offsets[b"after"] == total
    finally:
        broker.stop()


def test_time_retention_advances_the_log_start(tmp_path):
    broker = fast_broker(tmp_path)
    try:
        topic = "notifications.sent"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1, config={
            "retention.ms": "60000", "segment.bytes": "4096"})])[topic].result(30)
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "batch.size": 2048})
        old = int(time.time() * 1000) - 3_600_000
        for i in range(200):
            p.produce(topic, value=b"x" * 100, timestamp=old + i)
        p.flush(10)
        for i in range(5):
            p.produce(topic, value=b"fresh")
        p.flush(10)
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "retention"})
        deadline = time.monotonic() + 20
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        while low < 150 and time.monotonic() < deadline:
            time.sleep(0.3)
            low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.close()
        assert high == 205
        # Whole segments go: the last expired records share the active segment with
        # the fresh ones and stay until it expires too.
        assert 150 <= low <= 200, f"expired segments not deleted: log start {low}"
        fresh = [m for m in read_all(broker.bootstrap, topic) if m[0] >= 200]
        assert [v for (_, _, v) in fresh] == [b"fresh"] * 5
    finally:
        broker.stop()


def test_flush_messages_topic_syncs_each_append_and_serves_consumers(broker):
    """flush.messages=1 makes every append sync before it is answered (the inline
    path, not the group-commit flusher); consumers still see everything."""
    topic = "payments.flushed"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"flush.messages": "1"})])[topic].result(30)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "1", "linger.ms": 0})
    delivered = []
    for i in range(200):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                  on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
        if i % 20 == 0:
            p.flush(10)
    assert p.flush(30) == 0
    assert all(err is None for err, _ in delivered), delivered[:3]
    assert sorted(o for _, o in delivered) == list(range(200))
    values = [v for (_, _, v) in read_all(broker.bootstrap, topic)]
    assert values == [f"v{i}".encode() for i in range(200)]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "flushed"})
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 200)
    c.close()
