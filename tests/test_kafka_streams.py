"""A Kafka Streams application (org.apache.kafka:kafka-streams, at-least-once)
with a repartition step and a state store runs unchanged against Sluice: its
internal topics are created, its repartition topic is purged through
DeleteRecords, and after a restart without its local state it restores the store
from the changelog and resumes from its committed offsets."""

import os
import random
import shutil
import signal
import subprocess
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from conftest import KAFKA_LIBS, ROOT, read_to_end

INPUT = "business.orders.created"
OUTPUT = "analytics.customers.totals"
APP = "order-totals"


def compile_app(out_dir):
    src = ROOT / "tests" / "java" / "OrderTotals.java"
    subprocess.run(["javac", "-cp", f"{KAFKA_LIBS}/*", "-d", str(out_dir), str(src)],
                   check=True, capture_output=True, text=True)


def start_app(classes, broker, state_dir, log_path):
    log = open(log_path, "ab")
    return subprocess.Popen(
        ["java", "-Xmx384m", "-cp", f"{classes}{os.pathsep}{KAFKA_LIBS}/*",
         "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
         "OrderTotals", broker.bootstrap, INPUT, OUTPUT, str(state_dir)],
        stdout=log, stderr=log)


def produce_orders(bootstrap, first, count, totals, rng):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5})
    for i in range(first, first + count):
        customer = f"customer-{rng.randrange(5)}"
        amount = rng.randrange(1, 100)
        totals[customer] = totals.get(customer, 0) + amount
        p.produce(INPUT, key=f"order-{i}", value=f"{customer}:{amount}")
    assert p.flush(30) == 0


def latest_totals(bootstrap):
    """The last total written per customer."""
    parts = AdminClient({"bootstrap.servers": bootstrap}).list_topics(OUTPUT, timeout=10) \
        .topics[OUTPUT].partitions
    records = read_to_end(bootstrap, [TopicPartition(OUTPUT, p, OFFSET_BEGINNING) for p in parts],
                          timeout_s=20)
    return {m.key().decode(): int(m.value().decode()) for m in records}


def wait_for_totals(bootstrap, expected, app, log_path, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        assert app.poll() is None, f"the application exited: {log_path.read_text()[-3000:]}"
        seen = latest_totals(bootstrap)
        if seen == expected:
            return
        time.sleep(1)
    raise AssertionError(f"totals {seen} != {expected}: {log_path.read_text()[-3000:]}")


def stop(app):
    app.send_signal(signal.SIGTERM)
    app.wait(timeout=60)


def test_streams_app_repartitions_purges_restores_and_resumes(broker, tmp_path):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for name in (INPUT, OUTPUT):
        admin.create_topics([NewTopic(name, 3, 1)])[name].result(30)
    classes = tmp_path / "classes"
    compile_app(classes)
    state = tmp_path / "state"
    log_path = tmp_path / "streams.log"
    rng = random.Random(11)
    print("seed 11")
    totals = {}
    produce_orders(broker.bootstrap, 0, 300, totals, rng)

    app = start_app(classes, broker, state, log_path)
    try:
        wait_for_totals(broker.bootstrap, totals, app, log_path)
        topics = admin.list_topics(timeout=10).topics
        repartition = f"{APP}-by-customer-repartition"
        changelog = f"{APP}-totals-changelog"
        assert repartition in topics and changelog in topics, sorted(topics)
        res = ConfigResource(ConfigResource.Type.TOPIC, changelog)
        assert admin.describe_configs([res])[res].result(30)["cleanup.policy"].value == "compact"

        # The repartition topic is purged up to what the application committed.
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
        deadline = time.monotonic() + 30
        purged = 0
        while time.monotonic() < deadline and purged == 0:
            purged = sum(c.get_watermark_offsets(TopicPartition(repartition, p), timeout=10)[0]
                         for p in topics[repartition].partitions)
            time.sleep(0.5)
        c.close()
        assert purged > 0, "the repartition topic was never purged"
    finally:
        stop(app)

    # Restart without local state: the store comes back from its changelog and
    # the application goes on from its committed offsets (a clean stop commits:
    # no order is counted twice).
    shutil.rmtree(state)
    produce_orders(broker.bootstrap, 300, 150, totals, rng)
    app = start_app(classes, broker, state, log_path)
    try:
        wait_for_totals(broker.bootstrap, totals, app, log_path)
    finally:
        stop(app)
