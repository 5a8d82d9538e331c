"""A dead-letter round trip: a librdkafka consumer dead-letters the orders it
cannot process to `{topic}.dlq` with the README's `dlq.*` headers; `sluice dlq
list` shows the depth, `inspect` shows the dead letters, `replay` sends them back
(a dry run first), and a consumer of the original topic receives each exactly
once, also when a replay is killed half-way and started again."""

import json
import random
import signal
import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import SLUICE_BIN, read_to_end

TOPIC = "business.orders.created"
DLQ = f"{TOPIC}.dlq"


def sluice(broker, *args):
    out = subprocess.run([str(SLUICE_BIN), *args, "--bootstrap-server", broker.bootstrap],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def end_offsets(broker, topic, partitions):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ends"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)]
    finally:
        c.close()


def read_from(broker, topic, starts):
    """Every record of `topic` after `starts` (one offset per partition)."""
    return read_to_end(broker.bootstrap, [TopicPartition(topic, p, o) for p, o in enumerate(starts)])


def test_dead_letters_are_listed_inspected_and_replayed_once(broker):
    sluice(broker, "topics", "create", TOPIC, "--partitions", "3")
    sluice(broker, "topics", "create", DLQ, "--partitions", "3")
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    failing = sorted(rng.sample(range(200), 30))
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for i in range(200):
        p.produce(TOPIC, key=f"order-{i}", value=json.dumps({"order": i, "bad": i in failing}))
    p.flush(30)

    # The order service: a message that keeps failing goes to the DLQ with
    # where it came from, why, and how often it was tried.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "order-service-consumer-group",
                  "auto.offset.reset": "earliest"})
    c.subscribe([TOPIC])
    dlq = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    seen, deadline = 0, time.monotonic() + 30
    while seen < 200 and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        seen += 1
        if json.loads(m.value())["bad"]:
            dlq.produce(DLQ, key=m.key(), value=m.value(), headers=[
                ("dlq.original.topic", m.topic()), ("dlq.original.partition", str(m.partition())),
                ("dlq.original.offset", str(m.offset())), ("dlq.error", "payment service timeout"),
                ("dlq.retry.count", "3"), ("dlq.failed.at", str(int(time.time() * 1000)))])
    dlq.flush(30)
    c.close()
    assert seen == 200

    [listed] = [d for d in json.loads(sluice(broker, "dlq", "list", "--output", "json"))
                if d["dlq"] == DLQ]
    assert listed["depth"] == 30 and listed["source_topic"] == TOPIC and listed["source_exists"]
    assert 0 <= listed["oldest_age_ms"] < 60_000 and 0 <= listed["newest_age_ms"] < 60_000
    table = sluice(broker, "dlq", "list")
    assert any(line.split()[:2] == [DLQ, "30"] for line in table.splitlines()), table

    inspected = json.loads(sluice(broker, "dlq", "inspect", DLQ, "--output", "json"))
    assert sorted(int(r["key"].split("-")[1]) for r in inspected) == failing
    assert all(r["headers"]["dlq.error"] == "payment service timeout"
               and r["headers"]["dlq.original.topic"] == TOPIC for r in inspected)
    table = sluice(broker, "dlq", "inspect", DLQ)
    assert "payment service timeout" in table and f"{TOPIC}-" in table

    before = end_offsets(broker, TOPIC, 3)
    dry = json.loads(sluice(broker, "dlq", "replay", DLQ, "--dry-run", "--output", "json"))
    assert len(dry["records"]) == 30 and dry["replayed"] == 0

    # Filters, seen through dry runs: one key, an offset range, a time.
    key = f"order-{failing[0]}"
    one = json.loads(sluice(broker, "dlq", "replay", DLQ, "--dry-run", "--key", key,
                            "--output", "json"))
    assert [r["key"] for r in one["records"]] == [key] and one["filtered"] == 29
    ranged = json.loads(sluice(broker, "dlq", "replay", DLQ, "--dry-run", "--from-offset", "2",
                               "--to-offset", "5", "--output", "json"))
    assert all(2 <= r["offset"] < 5 for r in ranged["records"]) and ranged["records"]
    later = json.loads(sluice(broker, "dlq", "replay", DLQ, "--dry-run", "--since",
                              "2999-01-01T00:00:00Z", "--output", "json"))
    assert later["records"] == [] and later["filtered"] == 30
    assert end_offsets(broker, TOPIC, 3) == before

    # A replay killed half-way, then run again to the end.
    proc = subprocess.Popen([str(SLUICE_BIN), "dlq", "replay", DLQ, "--rate", "20",
                             "--bootstrap-server", broker.bootstrap],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.7)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    half = len(read_from(broker, TOPIC, before))
    assert 0 < half < 30, f"the kill did not land half-way ({half} of 30 replayed)"
    # The worst moment to die: published, progress not committed. Put the
    # group's offsets back to the start (keeping the run's metadata): the next
    # run must find what was published and skip it.
    group = f"sluice-replay-{DLQ}"
    g = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    committed = g.committed([TopicPartition(DLQ, p) for p in range(3)], timeout=10)
    assert any(tp.offset > 0 for tp in committed) and committed[0].metadata
    g.commit(offsets=[TopicPartition(DLQ, p, 0, committed[0].metadata) for p in range(3)],
             asynchronous=False)
    g.close()
    summary = json.loads(sluice(broker, "dlq", "replay", DLQ, "--output", "json"))
    assert summary["replayed"] == 30 - half, summary

    replayed = read_from(broker, TOPIC, before)
    keys = [int(m.key().decode().split("-")[1]) for m in replayed]
    assert sorted(keys) == failing, "each dead letter exactly once"
    for m in replayed:
        headers = dict(m.headers())
        assert "dlq.error" not in headers
        assert headers["dlq.replay.source"].decode().startswith(f"{DLQ}/")
        # Back in the partition it came from.
        original = [r for r in inspected if r["key"] == m.key().decode()][0]
        assert m.partition() == int(original["headers"]["dlq.original.partition"])

    # Errors: one line each, nothing published.
    for args in (["dlq", "inspect", "no.such.topic.dlq"], ["dlq", "replay", TOPIC]):
        out = subprocess.run([str(SLUICE_BIN), *args, "--bootstrap-server", broker.bootstrap],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert len(read_from(broker, TOPIC, before)) == 30

    # Nothing left: a third run replays nothing.
    again = json.loads(sluice(broker, "dlq", "replay", DLQ, "--output", "json"))
    assert again["replayed"] == 0
    assert len(read_from(broker, TOPIC, before)) == 30
