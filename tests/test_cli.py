"""The `sluice` command's client side against a running broker: topics, groups
and cluster commands, their JSON output (parsed here), their tables, and their
errors (non-zero exit, one line on stderr). What the commands change is checked
through confluent-kafka, not only through the command itself."""

import json
import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from conftest import SLUICE_BIN, free_port


def sluice(broker, *args, timeout="10s"):
    """Runs `sluice ARGS` against `broker`; returns (exit code, stdout, stderr)."""
    out = subprocess.run([str(SLUICE_BIN), *args, "--bootstrap-server", broker.bootstrap,
                          "--timeout", timeout], capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout, out.stderr


def ok_json(broker, *args):
    rc, out, err = sluice(broker, *args, "--output", "json")
    assert rc == 0, err
    return json.loads(out)


def failed(broker, *args, timeout="10s"):
    """A command that must fail: non-zero exit and a one-line message."""
    rc, out, err = sluice(broker, *args, timeout=timeout)
    assert rc != 0, out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sluice: "), err
    return lines[0]


def test_topics_commands_and_their_errors(broker):
    topic = "business.orders.cli"
    created = ok_json(broker, "topics", "create", topic, "--partitions", "3",
                      "--config", "retention.ms=3600000", "--config", "compression.type=lz4")
    assert created == {"created": topic, "partitions": 3, "replication_factor": 1}
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 3

    listed = ok_json(broker, "topics", "list")
    assert {"name": topic, "partitions": 3, "replication_factor": 1, "internal": False} in listed
    rc, out, _ = sluice(broker, "topics", "list")
    assert rc == 0 and out.splitlines()[0].split() == ["TOPIC", "PARTITIONS", "REPLICATION"]
    assert any(line.split() == [topic, "3", "1"] for line in out.splitlines()), out

    described = ok_json(broker, "topics", "describe", topic)
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert all(p["leader"] == 0 and p["replicas"] == [0] and p["isr"] == [0]
               for p in described["partitions"])
    assert described["configs"] == {"compression.type": "lz4", "retention.ms": "3600000"}
    rc, out, _ = sluice(broker, "topics", "describe", topic)
    assert rc == 0 and "Configs: compression.type=lz4,retention.ms=3600000" in out, out

    ok_json(broker, "topics", "alter-config", topic, "--set", "retention.ms=7200000",
            "--delete", "compression.type")
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(30)
    assert configs["retention.ms"].value == "7200000"
    assert configs["compression.type"].value == "producer"

    assert ok_json(broker, "topics", "add-partitions", topic, "--count", "5")["partitions"] == 5
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 5

    # Errors: one line naming what went wrong.
    assert "TopicAlreadyExists" in failed(broker, "topics", "create", topic)
    assert "UnknownTopicOrPartition" in failed(broker, "topics", "describe", "no.such.topic")
    line = failed(broker, "topics", "alter-config", topic, "--set", "retention.ms=soon")
    assert "InvalidConfig" in line and "retention.ms" in line and "soon" in line, line
    assert "InvalidPartitions" in failed(broker, "topics", "add-partitions", topic, "--count", "2")
    assert "KEY=VALUE" in failed(broker, "topics", "create", "x", "--config", "novalue")

    assert ok_json(broker, "topics", "delete", topic) == {"deleted": topic}
    assert topic not in admin.list_topics(timeout=10).topics
    assert "UnknownTopicOrPartition" in failed(broker, "topics", "delete", topic)


def test_an_unreachable_broker_fails_within_the_timeout():
    port = free_port()

    class Nowhere:
        bootstrap = f"127.0.0.1:{port}"

    start = time.monotonic()
    line = failed(Nowhere, "topics", "list", timeout="2s")
    assert "cannot reach" in line and str(port) in line, line
    assert time.monotonic() - start < 10


def test_cluster_info_on_one_broker(broker):
    ok_json(broker, "topics", "create", "business.payments.cli", "--partitions", "4")
    info = ok_json(broker, "cluster", "info")
    assert info["controller"] == 0 and info["cluster_id"] == "sluice-cluster"
    [b] = info["brokers"]
    assert b["id"] == 0 and b["controller"] and b["leaders"] == b["replicas"] >= 4
    assert info["under_replicated_partitions"] == 0 and info["offline_partitions"] == 0
    rc, out, _ = sluice(broker, "cluster", "info")
    assert rc == 0 and out.splitlines()[0].startswith("Cluster: sluice-cluster"), out


def test_groups_describe_shows_lag_and_members(broker):
    topic = "business.inventory.cli"
    group = "inventory-service-consumer-group"
    ok_json(broker, "topics", "create", topic, "--partitions", "1")
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(1000):
        p.produce(topic, value=str(i).encode())
    p.flush(30)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 30
    while got < 500 and time.monotonic() < deadline:
        for m in c.consume(num_messages=500 - got, timeout=1.0):
            if not m.error():
                got += 1
    assert got == 500
    c.commit(offsets=[TopicPartition(topic, 0, 500)], asynchronous=False)

    assert {"group": group, "state": "Stable", "protocol_type": "consumer"} in \
        ok_json(broker, "groups", "list")
    described = ok_json(broker, "groups", "describe", group)
    assert described["state"] == "Stable"
    [member] = described["members"]
    assert member["assignment"] == [{"topic": topic, "partitions": [0]}]
    [row] = described["offsets"]
    assert (row["committed"], row["log_end"], row["lag"]) == (500, 1000, 500)
    assert row["member"] == member["member_id"]
    rc, out, _ = sluice(broker, "groups", "describe", group)
    assert rc == 0
    assert any(line.split()[:5] == [topic, "0", "500", "1000", "500"] for line in out.splitlines()), out

    assert "NonEmptyGroup" in failed(broker, "groups", "delete", group)
    line = failed(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-earliest")
    assert "stop its consumers" in line, line
    c.close()

    def reset(*how):
        plan = ok_json(broker, "groups", "reset-offsets", group, "--topic", topic, *how)
        [row] = plan["offsets"]
        return row["current"], row["new"]

    def committed():
        reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
        try:
            return reader.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
        finally:
            reader.close()

    # A dry run shows the plan and commits nothing.
    assert reset("--to-earliest") == (500, 0)
    assert committed() == 500
    assert reset("--to-offset", "200", "--execute") == (500, 200)
    assert committed() == 200
    assert reset("--shift-by", "-50", "--execute") == (200, 150)
    assert reset("--to-offset", "5000", "--execute") == (150, 1000)
    assert reset("--to-datetime", "1970-01-01T00:00:00Z", "--execute") == (1000, 0)
    assert reset("--to-datetime", "2999-01-01T00:00:00Z") == (0, 1000)
    assert reset("--to-latest", "--execute") == (0, 1000)
    assert committed() == 1000
    rc, out, _ = sluice(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-earliest")
    assert rc == 0 and "Dry run" in out, out
    assert "no partition 7" in failed(broker, "groups", "reset-offsets", group, "--topic", topic,
                                      "--partition", "7", "--to-earliest")
    assert "required" in failed(broker, "groups", "reset-offsets", group, "--topic", topic)
    assert ok_json(broker, "groups", "delete", group) == {"deleted": group}
    assert group not in [g["group"] for g in ok_json(broker, "groups", "list")]
    assert "does not exist" in failed(broker, "groups", "describe", group)


def sluice_input(broker, text, *args):
    out = subprocess.run([str(SLUICE_BIN), *args, "--bootstrap-server", broker.bootstrap],
                         input=text, capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout, out.stderr


def test_produce_and_consume_keys_headers_partitions_and_groups(broker):
    topic, twin = "business.customers.cli", "business.customers.twin"
    ok_json(broker, "topics", "create", topic, "--partitions", "6")
    ok_json(broker, "topics", "create", twin, "--partitions", "6")
    keys = [f"customer-{i}" for i in range(40)]
    lines = "".join(f"{k}|value-{i}\n" for i, k in enumerate(keys))
    rc, out, err = sluice_input(broker, lines, "produce", topic, "--key-separator", "|",
                                "--header", "source=cli", "--output", "json")
    assert rc == 0, err
    assert json.loads(out)["produced"] == 40

    # The same keys through librdkafka's murmur2 partitioner (the Java client's
    # default) land in the same partitions.
    p = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"})
    for i, k in enumerate(keys):
        p.produce(twin, key=k, value=f"value-{i}")
    p.flush(30)

    def read(name):
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"check-{name}",
                      "auto.offset.reset": "earliest"})
        c.subscribe([name])
        got, deadline = {}, time.monotonic() + 30
        while len(got) < 40 and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and not m.error():
                got[m.key().decode()] = (m.partition(), m.value().decode(), m.headers())
        c.close()
        return got

    ours, theirs = read(topic), read(twin)
    assert len(ours) == 40
    assert {k: v[0] for k, v in ours.items()} == {k: v[0] for k, v in theirs.items()}
    assert all(v[2] == [("source", b"cli")] for v in ours.values())
    assert ours["customer-7"][1] == "value-7"

    # Consume: JSON lines, every record once, headers included.
    rc, out, err = sluice(broker, "consume", topic, "--from-beginning", "--output", "json")
    assert rc == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["key"] for r in records) == sorted(keys)
    assert all(r["headers"] == {"source": "cli"} for r in records)
    rc, out, _ = sluice(broker, "consume", topic, "--from-beginning", "--partition",
                        str(ours["customer-7"][0]), "--format", "%k\\t%v\\n")
    assert "customer-7\tvalue-7" in out.splitlines(), out

    # JSON input names partitions and headers.
    rows = [json.dumps({"key": "order-1", "value": "paid", "partition": 5,
                        "headers": {"dlq.error": "timeout"}}),
            json.dumps({"key": None, "value": "no key", "partition": 5})]
    rc, _, err = sluice_input(broker, "\n".join(rows) + "\n", "produce", topic, "--input", "json")
    assert rc == 0, err
    rc, out, _ = sluice(broker, "consume", topic, "--partition", "5", "--offset",
                        str(sum(1 for v in ours.values() if v[0] == 5)), "--output", "json")
    tail = [json.loads(line) for line in out.splitlines()]
    assert [(r["key"], r["value"], r["headers"]) for r in tail] == [
        ("order-1", "paid", {"dlq.error": "timeout"}), (None, "no key", {})]

    # A group: the first read commits where it stopped, the second goes on.
    rc, first, _ = sluice(broker, "consume", topic, "--group", "cli-reader", "--from-beginning",
                          "--count", "10")
    rc2, second, _ = sluice(broker, "consume", topic, "--group", "cli-reader")
    assert rc == 0 and rc2 == 0
    assert len(first.splitlines()) == 10 and len(second.splitlines()) == 32
    assert not set(first.splitlines()) & set(second.splitlines())

    # Errors: one line each.
    rc, _, err = sluice_input(broker, "x\n", "produce", "no.such.topic")
    assert rc != 0 and "UnknownTopicOrPartition" in err and len(err.strip().splitlines()) == 1, err
    rc, _, err = sluice_input(broker, "{not json\n", "produce", topic, "--input", "json")
    assert rc != 0 and "line 1" in err, err
    rc, _, err = sluice_input(broker, "novalue\n", "produce", topic, "--key-separator", "|")
    assert rc != 0 and "line 1" in err and "separator" in err, err
