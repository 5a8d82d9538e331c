"""Three brokers on 127.0.0.1, every partition replicated on all of them by Raft:
under a queue workload (idempotent acks=all producers, a consumer group), a broker
is killed, restarted, wiped or restarted in turn; the checker then asserts that
every acknowledged record is in the log exactly once and in order, and that the
group consumed it."""

import time

import pytest

from cluster import Cluster, QueueWorkload, wait_until

TOPIC = "orders"
PARTITIONS = 3


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path).start()
    yield c
    c.stop()


def logs_identical(cluster, nodes, topic=TOPIC, partitions=PARTITIONS):
    for p in range(partitions):
        contents = {n: cluster.partition_logs(n, topic, p) for n in nodes}
        if len(set(contents.values())) != 1:
            return False
    return True


def test_three_brokers_serve_metadata_and_replicate_every_partition(cluster):
    cluster.create_topic(TOPIC, PARTITIONS)
    md = cluster.admin().list_topics(topic=TOPIC, timeout=5)
    assert sorted(md.brokers) == [1, 2, 3]
    parts = md.topics[TOPIC].partitions
    assert len(parts) == PARTITIONS
    for p in parts.values():
        assert sorted(p.replicas) == [1, 2, 3]
        assert p.leader in (1, 2, 3)
    # Preferred leaders (first replicas) spread over the brokers.
    assert sorted(p.replicas[0] for p in parts.values()) == [1, 2, 3]
    # Every broker answers Metadata from its own copy, with the same leaders.
    from confluent_kafka.admin import AdminClient
    for b in cluster.brokers.values():
        one = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(topic=TOPIC, timeout=5)
        assert {p.id: p.leader for p in one.topics[TOPIC].partitions.values()} == \
            {p.id: p.leader for p in parts.values()}


def test_kill_9_of_the_busiest_leader_loses_no_acknowledged_record(cluster):
    cluster.create_topic(TOPIC, PARTITIONS)
    work = QueueWorkload(cluster, TOPIC).start()
    time.sleep(3)
    victim = cluster.busiest_leader(TOPIC)
    cluster.brokers[victim].kill()
    killed_at = time.monotonic()
    cluster.wait_for_leaders(TOPIC, PARTITIONS, exclude=(victim,))
    acked_at_kill = len(work.acked)
    wait_until("writes to continue after the kill",
               lambda: len(work.acked) > acked_at_kill + 200, timeout_s=30)
    print(f"writes continued {time.monotonic() - killed_at:.1f}s after kill -9 of broker {victim}")
    time.sleep(2)
    work.stop_producers()
    work.wait_consumed()
    work.check(PARTITIONS)

    # The killed broker comes back and catches up: its logs end up identical.
    cluster.brokers[victim].start()
    survivors = [n for n in cluster.brokers if n != victim]
    wait_until("the restarted broker's logs to match the others'",
               lambda: logs_identical(cluster, [victim, *survivors]), timeout_s=60)


def test_a_wiped_broker_rejoins_and_catches_up(cluster):
    cluster.create_topic(TOPIC, PARTITIONS)
    work = QueueWorkload(cluster, TOPIC).start()
    time.sleep(2)
    victim = 3
    cluster.brokers[victim].kill()
    cluster.wipe(victim)
    time.sleep(1)
    cluster.brokers[victim].start()
    time.sleep(3)
    work.stop_producers()
    work.wait_consumed()
    work.check(PARTITIONS)
    wait_until("the wiped broker's logs to match the others'",
               lambda: logs_identical(cluster, [1, 2, 3]), timeout_s=60)


def test_rolling_restart_of_all_three_brokers_loses_nothing(cluster):
    cluster.create_topic(TOPIC, PARTITIONS)
    work = QueueWorkload(cluster, TOPIC).start()
    time.sleep(2)
    for node in (1, 2, 3):
        cluster.brokers[node].stop()  # SIGTERM: leadership is handed over first
        cluster.wait_for_leaders(TOPIC, PARTITIONS, exclude=(node,))
        cluster.brokers[node].start()
        cluster.wait_for_brokers(3)
        time.sleep(2)
    work.stop_producers()
    work.wait_consumed()
    work.check(PARTITIONS)
    assert not work.errors, f"producers saw errors: {work.errors[:3]}"


def test_topic_changes_through_any_broker_are_visible_on_all_before_the_answer(cluster):
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
    controller = cluster.admin().list_topics(timeout=5).controller_id
    via = next(b for n, b in cluster.brokers.items() if n != controller)
    admin = AdminClient({"bootstrap.servers": via.bootstrap})
    admin.create_topics([NewTopic("payments", 2, 3)])["payments"].result(timeout=40)
    for b in cluster.brokers.values():
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(topic="payments", timeout=5)
        assert len(md.topics["payments"].partitions) == 2, b.bootstrap
    admin.create_partitions([NewPartitions("payments", 5)])["payments"].result(timeout=40)
    for b in cluster.brokers.values():
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(topic="payments", timeout=5)
        assert len(md.topics["payments"].partitions) == 5, b.bootstrap
    with pytest.raises(KafkaException, match="INVALID_PARTITIONS|must be higher"):
        admin.create_partitions([NewPartitions("payments", 3)])["payments"].result(timeout=40)
    cluster.wait_for_leaders("payments", 5)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    p.produce("payments", value=b"new partition", partition=4)
    assert p.flush(30) == 0
    admin.delete_topics(["payments"])["payments"].result(timeout=40)
    for b in cluster.brokers.values():
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5)
        assert "payments" not in md.topics, b.bootstrap
