"""DeleteRecords, DescribeLogDirs, ElectLeaders and DescribeProducers through
confluent-kafka's AdminClient and Apache Kafka's kafka-delete-records,
kafka-log-dirs, kafka-leader-election and kafka-transactions."""

import json

import pytest
from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import Cluster, wait_until
from conftest import kafka_tool


def produce(bootstrap, topic, n, partition=0, **config):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    for i in range(n):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=partition)
    assert p.flush(30) == 0


def watermarks(bootstrap, topic, partition=0):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def first_offset(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "first", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        for _ in range(30):
            m = c.poll(1.0)
            if m is not None and not m.error():
                return m.offset()
    finally:
        c.close()
    raise AssertionError("nothing consumed")


def tool(main_class, broker, *args):
    """Runs a Kafka tool; returns its exit code and its output without the
    client's own log lines."""
    out = kafka_tool(main_class, "--bootstrap-server", broker.bootstrap, *args)
    text = "\n".join(line for line in (out.stdout + out.stderr).splitlines()
                     if not line.startswith(("[", "\t")))
    return out.returncode, text


def test_delete_records_moves_the_low_watermark(broker, tmp_path):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = "business.orders.repartition"
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    produce(broker.bootstrap, topic, 100)
    produce(broker.bootstrap, topic, 10, partition=1)

    tp = TopicPartition(topic, 0, 60)
    result = admin.delete_records([tp])[tp].result(30)
    assert result.low_watermark == 60
    assert watermarks(broker.bootstrap, topic) == (60, 100)
    assert first_offset(broker.bootstrap, topic) == 60

    # Past the high watermark: refused, nothing moves.
    tp = TopicPartition(topic, 0, 500)
    with pytest.raises(KafkaException) as e:
        admin.delete_records([tp])[tp].result(30)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    assert watermarks(broker.bootstrap, topic) == (60, 100)

    # kafka-delete-records, -1: up to the high watermark.
    offsets = tmp_path / "offsets.json"
    offsets.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 1, "offset": -1}]}))
    rc, out = tool("org.apache.kafka.tools.DeleteRecordsCommand", broker,
                   "--offset-json-file", str(offsets))
    assert rc == 0, out
    assert "low_watermark: 10" in out, out
    assert watermarks(broker.bootstrap, topic, 1) == (10, 10)

    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (60, 100)
    assert watermarks(broker.bootstrap, topic, 1) == (10, 10)


def test_kafka_log_dirs_lists_each_partition_with_its_size(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = "business.payments.sized"
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    produce(broker.bootstrap, topic, 50)
    rc, out = tool("org.apache.kafka.tools.LogDirsCommand", broker,
                   "--describe", "--topic-list", topic)
    assert rc == 0, out
    report = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    [b] = report["brokers"]
    assert b["broker"] == 0
    [log_dir] = b["logDirs"]
    assert log_dir["error"] is None
    sizes = {p["partition"]: p["size"] for p in log_dir["partitions"]}
    assert set(sizes) == {f"{topic}-0", f"{topic}-1"}, sizes
    assert sizes[f"{topic}-0"] > 50 * 4 and sizes[f"{topic}-1"] == 0, sizes


def test_leader_election_on_one_broker_needs_none_and_unclean_is_refused(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = "business.inventory.elected"
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    # Every partition: none needs an election, so none is listed.
    rc, out = tool("org.apache.kafka.tools.LeaderElectionCommand", broker,
                   "--election-type", "preferred", "--all-topic-partitions")
    assert rc == 0 and "Error" not in out, out
    rc, out = tool("org.apache.kafka.tools.LeaderElectionCommand", broker,
                   "--election-type", "preferred", "--topic", topic, "--partition", "1")
    assert rc == 0, out
    assert f"Valid replica already elected for partitions {topic}-1" in out, out
    rc, out = tool("org.apache.kafka.tools.LeaderElectionCommand", broker,
                   "--election-type", "unclean", "--topic", topic, "--partition", "0")
    assert rc != 0
    assert "unclean leader election is refused" in out, out


def test_describe_producers_shows_each_idempotent_producer(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = "business.customers.produced"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    produce(broker.bootstrap, topic, 25, **{"enable.idempotence": True, "acks": "all"})
    rc, out = tool("org.apache.kafka.tools.TransactionsCommand", broker,
                   "describe-producers", "--topic", topic, "--partition", "0")
    assert rc == 0, out
    rows = [line.split() for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert len(rows) == 1, out
    # ProducerId ProducerEpoch LatestCoordinatorEpoch LastSequence LastTimestamp ...
    assert rows[0][3] == "24", out


def test_preferred_leader_election_moves_leadership_back(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text("[cluster]\nauto_leader_rebalance_enable = false\n")
    cluster = Cluster(tmp_path, extra_args=["--config", str(config)]).start()
    try:
        topic = "business.delivery.elected"
        cluster.create_topic(topic, partitions=1, rf=3)
        produce(cluster.bootstrap, topic, 20, acks="all")
        preferred = cluster.leaders(topic)[0]
        cluster.brokers[preferred].kill()
        cluster.wait_for_leaders(topic, 1, exclude=(preferred,))
        cluster.brokers[preferred].start(timeout_s=60)
        produce(cluster.bootstrap, topic, 20, acks="all")
        assert cluster.leaders(topic)[0] != preferred
        admin = cluster.admin()

        def elected():
            from confluent_kafka import ElectionType
            f = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)])
            f.result(30)
            return cluster.leaders(topic)[0] == preferred

        wait_until("the preferred replica leads again", elected, timeout_s=30, interval_s=0.5)
        end = watermarks(cluster.bootstrap, topic)[1]
        assert end >= 40

        # DeleteRecords on a replicated partition: every replica's log starts at
        # the batch holding the offset (never above it), and so does the next
        # leader's.
        tp = TopicPartition(topic, 0, end - 5)
        low = admin.delete_records([tp])[tp].result(30).low_watermark
        assert 0 < low <= end - 5, (low, end)
        assert watermarks(cluster.bootstrap, topic) == (low, end)
        cluster.brokers[preferred].kill()
        cluster.wait_for_leaders(topic, 1, exclude=(preferred,))
        seen = []

        def same_start():
            seen.append(watermarks(cluster.bootstrap, topic))
            # A new leader's first entry takes an offset: the end may grow.
            return seen[-1][0] == low

        try:
            wait_until("the new leader's log starts there too", same_start, timeout_s=30)
        except AssertionError:
            raise AssertionError(f"expected the log to start at {low}, saw {seen[-3:]}")
    finally:
        cluster.stop()
