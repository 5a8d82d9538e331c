"""Replication factors below the broker count: each partition lives on its
replicas only, and the brokers that do not host it still answer Metadata and
FindCoordinator with its leader, which its leader publishes through the
controller (and again after a failover)."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cluster import Cluster, QueueWorkload, wait_until


def partitions_seen_by_each_broker(cluster, topic):
    """{broker: {partition: (leader, replicas, isr)}} from every broker's own Metadata."""
    seen = {}
    for node, b in cluster.brokers.items():
        if not b.alive():
            continue
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(topic=topic, timeout=5)
        seen[node] = {p.id: (p.leader, list(p.replicas), sorted(p.isrs))
                      for p in md.topics[topic].partitions.values()}
    return seen


def agreed_leaders(cluster, topic, partitions, exclude=()):
    """The leaders every live broker reports, once they all agree and none is excluded."""
    seen = partitions_seen_by_each_broker(cluster, topic)
    views = list(seen.values())
    # Leaders and replicas must agree; the ISR each broker reports may lag.
    placement = [{p: v[:2] for p, v in view.items()} for view in views]
    if len(views[0]) != partitions or any(v != placement[0] for v in placement):
        return None
    if any(leader <= 0 or leader in exclude for leader, _, _ in views[0].values()):
        return None
    return views[0]


def high_watermark(consumer, topic, partition):
    """The partition's high watermark, asked again while leadership moves."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def three(tmp_path):
    c = Cluster(tmp_path).start()
    yield c
    c.stop()


def test_partitions_live_on_their_replicas_and_every_broker_names_their_leaders(three):
    cluster = three
    for topic, rf in (("audit.rf1", 1), ("audit.rf2", 2)):
        cluster.create_topic(topic, 6, rf=rf)
        view = None

        def agreed():
            nonlocal view
            view = agreed_leaders(cluster, topic, 6)
            return view is not None

        wait_until(f"every broker to name the same leaders of {topic}", agreed, timeout_s=30)
        for p, (leader, replicas, isr) in view.items():
            assert len(replicas) == rf, (topic, p, replicas)
            assert leader in replicas, (topic, p, leader, replicas)
            assert leader in isr
            # The log exists on the replicas only.
            for node, b in cluster.brokers.items():
                assert (b.data_dir / f"{topic}-{p}").is_dir() == (node in replicas), (topic, p, node)
        # Preferred leaders (first replicas) spread over the brokers.
        assert len({replicas[0] for _, replicas, _ in view.values()}) == 3

        # Leadership settles on the preferred replicas (moved there within a
        # rebalance interval); a move later would add the new leader's Raft entry
        # past the data and make the end-of-log check below meaningless.
        def on_preferred():
            nonlocal view
            view = agreed_leaders(cluster, topic, 6)
            return view is not None and all(l == r[0] for l, r, _ in view.values())

        wait_until(f"leaders of {topic} on their preferred replicas", on_preferred, timeout_s=40)

        # Records go to every partition through any bootstrap broker and come back.
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                             "enable.idempotence": True})
        for p in range(6):
            for i in range(20):
                producer.produce(topic, value=f"{p}-{i}".encode(), partition=p)
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"g-{topic}",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        got = set()
        deadline = time.monotonic() + 30
        while len(got) < 120 and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                got.add(m.value().decode())
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(6)], timeout=10)
        ends = [high_watermark(consumer, topic, p) for p in range(6)]
        consumer.close()
        assert len(got) == 120, f"{topic}: consumed {len(got)} of 120"
        # Committed at the end of each log (which starts with Raft's own entries).
        assert [tp.offset for tp in committed] == ends, (committed, ends)


def test_describe_cluster_and_configs_agree_on_every_broker(three):
    from confluent_kafka.admin import ConfigResource

    cluster = three
    for node, b in cluster.brokers.items():
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        desc = admin.describe_cluster(request_timeout=30).result(30)
        assert sorted(n.id for n in desc.nodes) == [1, 2, 3], (node, desc.nodes)
        assert desc.controller is not None and desc.controller.id in (1, 2, 3)
        res = ConfigResource(ConfigResource.Type.BROKER, str(node))
        configs = admin.describe_configs([res])[res].result(30)
        assert configs["default.replication.factor"].value == "3"


@pytest.fixture
def four(tmp_path):
    c = Cluster(tmp_path, size=4).start()
    yield c
    c.stop()


def test_four_brokers_rf3_kill_9_of_a_leader_every_broker_follows_the_new_leaders(four):
    cluster, topic, partitions = four, "orders", 4
    cluster.create_topic(topic, partitions, rf=3)
    wait_until("the brokers to agree on the leaders",
               lambda: agreed_leaders(cluster, topic, partitions) is not None, timeout_s=30)
    work = QueueWorkload(cluster, topic).start()
    time.sleep(3)
    victim = cluster.busiest_leader(topic)
    cluster.brokers[victim].kill()
    killed_at = time.monotonic()
    view = None

    def moved():
        nonlocal view
        view = agreed_leaders(cluster, topic, partitions, exclude=(victim,))
        return view is not None

    # The broker that hosts none of the victim's partitions learns the new leaders
    # from what they publish.
    wait_until("every live broker to name leaders other than the killed one", moved, timeout_s=30)
    print(f"all brokers agreed on new leaders {time.monotonic() - killed_at:.1f}s after kill -9 of {victim}")
    for leader, replicas, isr in view.values():
        assert leader in replicas and leader != victim
    acked = len(work.acked)
    wait_until("writes to continue after the kill", lambda: len(work.acked) > acked + 200, timeout_s=30)
    work.stop_producers()
    work.wait_consumed()
    work.check(partitions)


def test_config_changes_through_any_broker_apply_on_every_broker(three):
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ConfigSource)

    cluster = three
    topic = "business.orders.configured"
    cluster.create_topic(topic, partitions=1, rf=3)
    cluster.wait_for_leaders(topic, 1)

    def alter(via, kind, name, *ops):
        entries = [ConfigEntry(k, v, incremental_operation=op) for (op, k, v) in ops]
        res = ConfigResource(kind, name, incremental_configs=entries)
        admin = AdminClient({"bootstrap.servers": cluster.brokers[via].bootstrap})
        admin.incremental_alter_configs([res])[res].result(30)

    def described(node, kind=ConfigResource.Type.TOPIC, name=topic):
        admin = AdminClient({"bootstrap.servers": cluster.brokers[node].bootstrap})
        res = ConfigResource(kind, name)
        return admin.describe_configs([res])[res].result(30)

    # Answered once every live broker applied it: each one shows it at once.
    alter(2, ConfigResource.Type.TOPIC, topic,
          (AlterConfigOpType.SET, "retention.ms", "3600000"),
          (AlterConfigOpType.SET, "min.insync.replicas", "4"))
    for node in cluster.brokers:
        entry = described(node)["retention.ms"]
        assert (entry.value, entry.source) == ("3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    # A broker's own dynamic config is its own; the others keep theirs.
    alter(1, ConfigResource.Type.BROKER, "3", (AlterConfigOpType.SET, "log.segment.bytes", "1048576"))
    assert described(3, ConfigResource.Type.BROKER, "3")["log.segment.bytes"].value == "1048576"
    assert described(1, ConfigResource.Type.BROKER, "1")["log.segment.bytes"].value == "1073741824"

    def produce(**config):
        outcome = []
        p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 0,
                      **config})
        p.produce(topic, value=b"v", on_delivery=lambda err, msg: outcome.append(err))
        p.flush(30)
        return outcome[0]

    # More in-sync replicas asked for than the partition has: acks=all is refused.
    err = produce(**{"message.timeout.ms": 5000, "retries": 0})
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err

    # A broker that was down while configs changed replays them from the
    # metadata log.
    leader = cluster.leaders(topic)[0]
    down = next(n for n in cluster.brokers if n != leader)
    cluster.brokers[down].kill()
    alter(leader, ConfigResource.Type.TOPIC, topic,
          (AlterConfigOpType.DELETE, "min.insync.replicas", None))
    assert produce() is None
    cluster.brokers[down].start(timeout_s=60)
    # The restarted broker's first admin answer may wait on its client's
    # metadata; ask again until it answers (each ask bounded).
    answers = []

    def answered():
        admin = AdminClient({"bootstrap.servers": cluster.brokers[down].bootstrap})
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        answers.append(admin.describe_configs([res], request_timeout=5)[res].result(10))
        return True

    wait_until("the restarted broker describes the topic", answered, timeout_s=60)
    configs = answers[-1]
    assert configs["retention.ms"].value == "3600000"
    assert configs["min.insync.replicas"].value == "1"


def test_sluice_cluster_info_names_every_broker_and_its_leaders(three):
    import json
    import subprocess

    from conftest import SLUICE_BIN

    cluster = three
    cluster.create_topic("business.orders.info", partitions=3, rf=3)
    out = subprocess.run([str(SLUICE_BIN), "cluster", "info", "--output", "json",
                          "--bootstrap-server", cluster.bootstrap],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert sorted(b["id"] for b in info["brokers"]) == [1, 2, 3]
    assert [b["id"] for b in info["brokers"] if b["controller"]] == [info["controller"]]
    assert all(b["replicas"] == 3 for b in info["brokers"]), info
    assert sum(b["leaders"] for b in info["brokers"]) == 3, info
    assert info["partitions"] == 3 and info["offline_partitions"] == 0
