"""The bootstrap topics file: a fresh `sluice serve` creates the e-commerce topics
and their dead-letter topics from config/topics.toml, a second start changes
nothing, an edited file is applied on restart (never lowering anything), and a
bad file stops start-up naming the file, the topic and the key. Checked with
confluent-kafka's AdminClient and kafka-configs."""

import subprocess
import tomllib

import pytest

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from cluster import Cluster
from conftest import ROOT, SLUICE_BIN, Broker, kafka_tool


def shipped_topics():
    """{name: (partitions, configs)} as config/topics.toml describes them."""
    spec = tomllib.loads((ROOT / "config" / "topics.toml").read_text())
    d = spec["defaults"]
    out = {}
    for entry in spec["topics"]:
        configs = {**d.get("configs", {}), **entry.get("configs", {})}
        dlq_configs = {**configs, **d.get("dlq_configs", {}), **entry.get("dlq_configs", {})}
        for name in entry["names"]:
            out[name] = (entry.get("partitions", d["partitions"]), configs)
            if entry.get("dlq", d["dlq"]):
                out[f"{name}.dlq"] = (entry.get("dlq_partitions", d["dlq_partitions"]), dlq_configs)
    return out


def describe(admin, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([res])[res].result(30)


def topic_ids(admin, names):
    from confluent_kafka import TopicCollection
    futures = admin.describe_topics(TopicCollection(names))
    return {n: str(f.result(30).topic_id) for n, f in futures.items()}


def log_lines(broker, needle):
    return [line for line in broker.log_path.read_text(errors="replace").splitlines()
            if needle in line]


def test_a_fresh_broker_serves_every_bootstrap_topic_with_its_dlq(tmp_path):
    expected = shipped_topics()
    assert len(expected) > 50 and all(f"{t}.dlq" in expected for t in expected
                                      if not t.endswith(".dlq"))
    broker = Broker(tmp_path / "data", bootstrap=True).start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        md = admin.list_topics(timeout=10)
        for name, (partitions, _) in expected.items():
            assert name in md.topics, name
            assert len(md.topics[name].partitions) == partitions, name
        for name in ["business.orders.created", "business.orders.created.dlq",
                     "business.notifications.sent", "audit.payments.changed.dlq"]:
            configs = describe(admin, name)
            want = expected[name][1]
            assert configs["compression.type"].value == "lz4", name
            assert configs["retention.ms"].value == str(want["retention.ms"]), name
            # One broker: the replication factor, and min.insync.replicas with
            # it, is capped to 1 (one warning), so acks=all works.
            assert configs["min.insync.replicas"].value == "1", name
        orders = int(describe(admin, "business.orders.created")["retention.ms"].value)
        dlq = int(describe(admin, "business.orders.created.dlq")["retention.ms"].value)
        assert dlq > orders
        assert len(log_lines(broker, "capped to 1")) == 1

        out = kafka_tool("kafka.admin.ConfigCommand", "--bootstrap-server", broker.bootstrap,
                         "--entity-type", "topics", "--entity-name", "business.payments.captured",
                         "--describe")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "compression.type=lz4" in out.stdout and "retention.ms=604800000" in out.stdout, out.stdout

        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                      "enable.idempotence": True, "compression.type": "lz4"})
        acked = []
        p.produce("business.orders.created", key=b"order-1", value=b"{}",
                  on_delivery=lambda err, msg: acked.append(err))
        p.flush(30)
        assert acked == [None]

        # A second start changes nothing.
        ids = topic_ids(admin, list(expected))
        broker.restart()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        assert topic_ids(admin, list(expected)) == ids
        last = log_lines(broker, "bootstrap reconciled")[-1]
        assert "created=0" in last and "raised=0" in last and "reconfigured=0" in last, last
    finally:
        broker.stop()


SMALL = """
[defaults]
replication_factor = 3
partitions = {partitions}
dlq_partitions = 1
[defaults.configs]
"min.insync.replicas" = 2
"compression.type" = "lz4"
"retention.ms" = {retention}
[defaults.dlq_configs]
"retention.ms" = 1209600000

[[topics]]
names = ["business.orders.created", "business.orders.cancelled"]
"""


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_an_edited_file_is_applied_on_restart_and_nothing_is_lowered(tmp_path):
    topics = tmp_path / "topics.toml"
    topics.write_text(SMALL.format(partitions=2, retention=604800000))
    broker = Broker(tmp_path / "data", extra_args=["--topics", str(topics)]).start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        md = admin.list_topics(timeout=10)
        assert len(md.topics["business.orders.created"].partitions) == 2
        assert len(md.topics["business.orders.created.dlq"].partitions) == 1
        assert not any(t.startswith("business.payments") for t in md.topics)

        # An operator's own config is left as set (and logged as drift).
        res = ConfigResource(ConfigResource.Type.TOPIC, "business.orders.created",
                             set_config={"compression.type": "lz4", "min.insync.replicas": "1",
                                         "retention.ms": "604800000", "segment.ms": "3600000"})
        admin.alter_configs([res])[res].result(30)

        broker.stop()
        topics.write_text(SMALL.format(partitions=4, retention=259200000))
        broker.start()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        md = admin.list_topics(timeout=10)
        assert len(md.topics["business.orders.created"].partitions) == 4
        assert len(md.topics["business.orders.cancelled"].partitions) == 4
        configs = describe(admin, "business.orders.created")
        assert configs["retention.ms"].value == "259200000"
        assert configs["segment.ms"].value == "3600000"
        last = log_lines(broker, "bootstrap reconciled")[-1]
        assert "raised=2" in last, last
        assert log_lines(broker, "a config the file does not name")

        # A lower count in the file lowers nothing.
        broker.stop()
        topics.write_text(SMALL.format(partitions=3, retention=259200000))
        broker.start()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        md = admin.list_topics(timeout=10)
        assert len(md.topics["business.orders.created"].partitions) == 4
        assert log_lines(broker, "partition counts are never lowered")
        last = log_lines(broker, "bootstrap reconciled")[-1]
        assert "created=0" in last and "raised=0" in last and "reconfigured=0" in last, last
    finally:
        broker.stop()


def refused_start(tmp_path, text):
    topics = tmp_path / "bad.toml"
    topics.write_text(text)
    out = subprocess.run([str(SLUICE_BIN), "serve", "--listen", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "data"), "--topics", str(topics)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    return str(topics), out.stderr


def test_a_bad_file_stops_start_up_naming_the_file_the_topic_and_the_key(tmp_path):
    path, err = refused_start(tmp_path, SMALL.format(partitions=2, retention="\"a week\""))
    assert path in err and "topic business.orders.created" in err and "retention.ms" in err, err
    assert "a week" in err, err
    path, err = refused_start(tmp_path, SMALL.format(partitions=0, retention=1))
    assert path in err and "topic business.orders.created" in err and "partitions" in err, err
    path, err = refused_start(tmp_path, SMALL.format(partitions=2, retention=604800000).replace(
        '"retention.ms" = 1209600000', '"retention.ms" = 3600000'))
    assert "dlq_configs.retention.ms" in err and "longer" in err, err
    path, err = refused_start(tmp_path, "[[topics]]\nnames = [\"x\"]\nreplicas = 3\n")
    assert path in err and "replicas" in err, err
    # Nothing was created.
    assert not (tmp_path / "data" / "business.orders.created-0").exists()


def test_three_brokers_create_the_file_once_with_rf3(tmp_path):
    topics = tmp_path / "topics.toml"
    topics.write_text(SMALL.format(partitions=3, retention=604800000))
    cluster = Cluster(tmp_path, extra_args=["--topics", str(topics)]).start()
    try:
        for b in cluster.brokers.values():
            md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
            for name, partitions in [("business.orders.created", 3),
                                     ("business.orders.cancelled.dlq", 1)]:
                parts = md.topics[name].partitions
                assert len(parts) == partitions
                assert all(len(p.replicas) == 3 for p in parts.values()), name
        configs = describe(cluster.admin(), "business.orders.created")
        assert configs["min.insync.replicas"].value == "2"
        # Only the controller's leader created them; the others found them.
        created = [n for n, b in cluster.brokers.items()
                   if log_lines(b, "bootstrap: topic created")]
        assert len(created) == 1, created
    finally:
        cluster.stop()
