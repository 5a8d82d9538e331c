"""A consumer group across a coordinator failover on three brokers: the broker
coordinating the group (the leader of its __consumer_offsets partition) is killed
with -9; the member (librdkafka, the Java client, franz-go) finds the new
coordinator and the new partition leaders by itself, keeps consuming, and the
group keeps its committed offsets (they never go back) and its member."""

import time

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition

from cluster import Cluster
from group_members import compile_java_member, franz_member, java_member, librdkafka_member, wait_until

TOPIC = "orders.fulfilment"
PARTITIONS = 3


def produce(cluster, start, count):
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True})
    values = [f"v{i}" for i in range(start, start + count)]
    for i, v in enumerate(values):
        p.produce(TOPIC, value=v, partition=i % PARTITIONS)
    assert p.flush(60) == 0
    return values


def committed(cluster, group):
    admin = cluster.admin()
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
    result = admin.list_consumer_group_offsets([request])[group].result(timeout=20)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def coordinator(cluster, group):
    admin = cluster.admin()
    return admin.describe_consumer_groups([group])[group].result(timeout=20).coordinator.id


@pytest.mark.parametrize("client", ["librdkafka", "java", "franz-go"])
def test_a_group_keeps_offsets_and_members_across_a_coordinator_failover(tmp_path, client):
    cluster = Cluster(tmp_path).start()
    try:
        cluster.create_topic(TOPIC, PARTITIONS)
        group = f"fulfilment-{client}"
        if client == "librdkafka":
            member = librdkafka_member("m", cluster, group, TOPIC, tmp_path)
        elif client == "java":
            classes = compile_java_member(tmp_path / "classes")
            member = java_member("m", classes, cluster, group, TOPIC, tmp_path)
        else:
            member = franz_member("m", cluster, group, TOPIC, tmp_path)
        first = set(produce(cluster, 0, 300))
        seen = lambda: {e["value"] for e in member.of("record")}
        wait_until(lambda: first <= seen(), 90, "the first records to be consumed")
        wait_until(lambda: sum(committed(cluster, group).values()) >= 300, 30,
                   "the first offsets to be committed")
        before = committed(cluster, group)

        victim = coordinator(cluster, group)
        cluster.brokers[victim].kill()
        killed = time.monotonic()
        second = set(produce(cluster, 300, 300))
        wait_until(lambda: second <= seen(), 90, "the records after the failover to be consumed")
        print(f"{client}: consuming again {time.monotonic() - killed:.1f}s after kill -9 of coordinator {victim}")
        wait_until(lambda: sum(committed(cluster, group).values()) >= 600, 60,
                   "offsets after the failover to be committed")
        after = committed(cluster, group)
        assert all(after[p] >= before[p] for p in range(PARTITIONS)), (before, after)
        assert coordinator(cluster, group) != victim
        admin = cluster.admin()
        desc = admin.describe_consumer_groups([group])[group].result(timeout=20)
        assert len(desc.members) == 1, desc.members
        assert member.alive()
        member.stop()
    finally:
        cluster.stop()
