"""librdkafka (confluent-kafka) against Sluice: produce with acks=all and client-side
LZ4, consume back by assign, byte for byte, also after restarts and kill -9."""

import random

import pytest

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker

MESSAGES = 100_000
PARTITIONS = 3


def make_messages(n, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        key = f"order-{rng.randrange(10_000)}".encode()
        value = rng.randbytes(rng.randrange(0, 300)) + i.to_bytes(4, "big")
        headers = [("event-type", b"OrderCreated"), ("seq", str(i).encode())]
        out.append((key, value, headers))
    return out


def create_topic(bootstrap, name, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=30)


def produce_all(bootstrap, topic, messages, **conf):
    """Produces and returns {(partition, offset): message index} from delivery reports."""
    placed, errors = {}, []

    def report(err, msg, index):
        if err is not None:
            errors.append(err)
        else:
            placed[(msg.partition(), msg.offset())] = index

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "compression.type": "lz4",
                  "linger.ms": 5, **conf})
    for i, (key, value, headers) in enumerate(messages):
        while True:
            try:
                p.produce(topic, value=value, key=key, headers=headers,
                          on_delivery=lambda err, msg, i=i: report(err, msg, i))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0, "messages left undelivered"
    assert not errors, errors[:5]
    return placed


def consume_all(bootstrap, topic, partitions, expected_count, timeout_s=120):
    """Reads every partition from the beginning by assign (no group)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sluice-test-assign",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, eof = {}, set()
    import time
    deadline = time.monotonic() + timeout_s
    while (len(got) < expected_count or len(eof) < partitions) and time.monotonic() < deadline:
        for m in c.consume(num_messages=10_000, timeout=1.0):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                raise AssertionError(m.error())
            got[(m.partition(), m.offset())] = (m.key(), m.value(), m.headers() or [])
    c.close()
    return got


def check_identical(placed, got, messages):
    assert len(got) == len(placed), f"consumed {len(got)} of {len(placed)}"
    for pos, index in placed.items():
        key, value, headers = messages[index]
        assert got[pos] == (key, value, headers), f"mismatch at {pos}"


def test_100k_keyed_lz4_acks_all_roundtrip_survives_restart(broker):
    topic = "business.orders.created"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    messages = make_messages(MESSAGES, seed=7)
    placed = produce_all(broker.bootstrap, topic, messages)
    assert len(placed) == MESSAGES
    for p in range(PARTITIONS):
        offsets = sorted(o for (part, o) in placed if part == p)
        assert offsets == list(range(len(offsets))), f"offsets of partition {p} are not dense"
    check_identical(placed, consume_all(broker.bootstrap, topic, PARTITIONS, MESSAGES), messages)

    broker.restart()
    check_identical(placed, consume_all(broker.bootstrap, topic, PARTITIONS, MESSAGES), messages)


def test_acks_all_survives_kill_9(tmp_path):
    broker = Broker(tmp_path / "data").start()
    try:
        topic = "payments.kill9"
        create_topic(broker.bootstrap, topic, 2)
        messages = make_messages(20_000, seed=11)
        placed = produce_all(broker.bootstrap, topic, messages)
        broker.kill()
        broker.start()
        check_identical(placed, consume_all(broker.bootstrap, topic, 2, len(placed)), messages)
        # The log accepts new writes after recovery, at the next offsets.
        more = produce_all(broker.bootstrap, topic, make_messages(100, seed=12))
        for (p, o) in more:
            assert o >= len([1 for (q, _) in placed if q == p])
    finally:
        if broker.alive():
            broker.stop()


def test_auto_create_and_produce_acks_1(broker):
    topic = "inventory.auto"
    messages = make_messages(1000, seed=3)
    placed = produce_all(broker.bootstrap, topic, messages, acks="1", **{"compression.type": "none"})
    check_identical(placed, consume_all(broker.bootstrap, topic, 1, len(placed)), messages)


def test_offsets_for_times_and_watermarks(broker):
    topic = "customers.times"
    create_topic(broker.bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(10):
        p.produce(topic, value=b"x", timestamp=1_000_000 + i * 1000)
        p.flush(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "times"})
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 10)
    found = c.offsets_for_times([TopicPartition(topic, 0, 1_004_500)], timeout=10)
    assert found[0].offset == 5
    beyond = c.offsets_for_times([TopicPartition(topic, 0, 9_999_999_999)], timeout=10)
    assert beyond[0].offset == -1
    c.close()


def test_fetch_out_of_range_is_reported(broker):
    topic = "products.range"
    create_topic(broker.bootstrap, topic, 1)
    produce_all(broker.bootstrap, topic, make_messages(5, seed=1))
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "range",
                  "auto.offset.reset": "error"})
    c.assign([TopicPartition(topic, 0, 50)])
    errors = []
    import time
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error():
            errors.append(m.error())
    c.close()
    assert errors and errors[0].code() == KafkaError._AUTO_OFFSET_RESET, errors


def test_admin_create_validate_only_bad_configs_and_delete(broker):
    from confluent_kafka import KafkaException
    import pytest

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    # validate_only checks without creating.
    admin.create_topics([NewTopic("orders.validate", 6, 1)], validate_only=True)["orders.validate"].result(30)
    assert "orders.validate" not in admin.list_topics(timeout=10).topics

    cases = {
        "bad topic name!": (NewTopic("bad topic name!", 1, 1), 17),
        "orders.rf3": (NewTopic("orders.rf3", 1, 3), 38),
        "orders.zero": (NewTopic("orders.zero", 0, 1), 37),
        "orders.badcfg": (NewTopic("orders.badcfg", 1, 1, config={"retention.ms": "soon"}), 40),
        "orders.unknowncfg": (NewTopic("orders.unknowncfg", 1, 1, config={"retention.hours": "1"}), 40),
    }
    # Kafka error codes: 17 INVALID_TOPIC_EXCEPTION, 38 INVALID_REPLICATION_FACTOR,
    # 37 INVALID_PARTITIONS, 40 INVALID_CONFIG.
    for name, (topic, code) in cases.items():
        with pytest.raises(KafkaException) as e:
            admin.create_topics([topic])[name].result(30)
        assert e.value.args[0].code() == code, (name, e.value.args[0])

    admin.create_topics([NewTopic("orders.tmp", 2, 1, config={"cleanup.policy": "compact,delete"})])["orders.tmp"].result(30)
    with pytest.raises(KafkaException) as e:
        admin.create_topics([NewTopic("orders.tmp", 2, 1)])["orders.tmp"].result(30)
    assert e.value.args[0].code() == 36  # TOPIC_ALREADY_EXISTS
    admin.delete_topics(["orders.tmp"])["orders.tmp"].result(30)
    assert "orders.tmp" not in admin.list_topics(timeout=10).topics
    with pytest.raises(KafkaException) as e:
        admin.delete_topics(["orders.tmp"])["orders.tmp"].result(30)
    assert e.value.args[0].code() == 3  # UNKNOWN_TOPIC_OR_PARTITION


def test_offsets_for_times_finds_the_record_inside_its_batch(broker):
    """Two records in one batch, far apart in time: the lookup answers the record."""
    topic = "customers.straddle"
    create_topic(broker.bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 200})
    delivered = []
    for ts in (1234, 999_999_999_999):
        p.produce(topic, value=b"x", timestamp=ts,
                  on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    p.flush(10)
    assert [d[0] for d in delivered] == [None, None], delivered
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "straddle"})
    (found,) = c.offsets_for_times([TopicPartition(topic, 0, 999_999_999_999)], timeout=10)
    assert found.offset == 1
    (first,) = c.offsets_for_times([TopicPartition(topic, 0, 1000)], timeout=10)
    assert first.offset == 0
    c.close()


def test_clients_cannot_produce_to_internal_topics(broker):
    # A group commit creates __consumer_offsets; then try to write it directly.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "internal-check"})
    create_topic(broker.bootstrap, "customers.internal", 1)
    c.commit(offsets=[TopicPartition("customers.internal", 0, 1)], asynchronous=False)
    c.close()
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 5000})
    errors = []
    p.produce("__consumer_offsets", key=b"k", value=b"v", partition=0,
              on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None, errors
    assert errors[0].code() == KafkaError.TOPIC_EXCEPTION, errors[0]


def test_create_partitions_grows_a_topic_and_refuses_to_shrink_it(broker, tmp_path):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewPartitions
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("business.inventory.reserved", 1, 1)])["business.inventory.reserved"].result(10)
    admin.create_partitions([NewPartitions("business.inventory.reserved", 3)],
                            validate_only=True)["business.inventory.reserved"].result(10)
    md = admin.list_topics(topic="business.inventory.reserved", timeout=5)
    assert len(md.topics["business.inventory.reserved"].partitions) == 1
    admin.create_partitions([NewPartitions("business.inventory.reserved", 3)])["business.inventory.reserved"].result(10)
    md = admin.list_topics(topic="business.inventory.reserved", timeout=5)
    assert len(md.topics["business.inventory.reserved"].partitions) == 3
    for count in (3, 2):
        with pytest.raises(KafkaException, match="must be higher"):
            admin.create_partitions([NewPartitions("business.inventory.reserved", count)])[
                "business.inventory.reserved"].result(10)
    with pytest.raises(KafkaException, match="UNKNOWN_TOPIC|does not exist"):
        admin.create_partitions([NewPartitions("no.such.topic", 4)])["no.such.topic"].result(10)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("business.inventory.reserved", value=b"in partition 2", partition=2)
    assert p.flush(10) == 0
    # The new partitions survive a restart.
    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    md = admin.list_topics(topic="business.inventory.reserved", timeout=5)
    assert len(md.topics["business.inventory.reserved"].partitions) == 3


def test_describe_configs_shows_topic_overrides_defaults_and_the_capped_replication_factor(broker):
    from confluent_kafka.admin import ConfigResource, ConfigSource

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("orders.described", 2, 1, config={
        "retention.ms": "86400000", "compression.type": "lz4"})])["orders.described"].result(30)
    res = ConfigResource(ConfigResource.Type.TOPIC, "orders.described")
    configs = admin.describe_configs([res])[res].result(30)
    assert configs["retention.ms"].value == "86400000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["compression.type"].value == "lz4"
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value

    # One broker: the default replication factor (3) is what CreateTopics applies, 1.
    res = ConfigResource(ConfigResource.Type.BROKER, "0")
    configs = admin.describe_configs([res])[res].result(30)
    assert configs["default.replication.factor"].value == "1"


def test_describe_cluster_names_the_cluster_its_controller_and_brokers(broker):
    # librdkafka answers describe_cluster from Metadata; the Java tools test covers
    # the DescribeCluster API itself. Both must name the same cluster.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    desc = admin.describe_cluster(request_timeout=30).result(30)
    assert desc.cluster_id == "sluice-cluster"
    assert desc.controller.id == 0
    assert [(n.id, n.port) for n in desc.nodes] == [(0, int(broker.bootstrap.rsplit(":", 1)[1]))]
