"""AlterConfigs, IncrementalAlterConfigs and DescribeConfigs v3+ through real
clients (confluent-kafka's AdminClient and Apache Kafka's kafka-configs): topic
configs take effect on a running broker, dynamic broker configs are the defaults
topics inherit, refusals name the key and the value, and everything survives a
restart."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
)

from conftest import Broker, kafka_tool

FAST_CLEANER = """
[log]
retention_check_interval_ms = 200
"""

TOPIC = ConfigResource.Type.TOPIC
BROKER = ConfigResource.Type.BROKER


def incremental(admin, kind, name, *ops):
    """Runs one IncrementalAlterConfigs on a resource; ops are (op, key, value)."""
    entries = [ConfigEntry(key, value, incremental_operation=op) for (op, key, value) in ops]
    res = ConfigResource(kind, name, incremental_configs=entries)
    return admin.incremental_alter_configs([res])[res].result(30)


def describe(admin, kind, name):
    res = ConfigResource(kind, name)
    return admin.describe_configs([res])[res].result(30)


def refusal(admin, kind, name, *ops):
    with pytest.raises(KafkaException) as e:
        incremental(admin, kind, name, *ops)
    return e.value.args[0]


def produce_one(bootstrap, topic, value, **config):
    """Produces one record and returns its delivery error (None: delivered)."""
    outcome = []
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, **config})
    p.produce(topic, value=value, on_delivery=lambda err, msg: outcome.append(err))
    p.flush(30)
    assert outcome, "no delivery report"
    return outcome[0]


def watermarks(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


SET, DELETE, APPEND, SUBTRACT = (AlterConfigOpType.SET, AlterConfigOpType.DELETE,
                                 AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT)


def test_topic_configs_change_live_and_survive_a_restart(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text(FAST_CLEANER)
    broker = Broker(tmp_path / "data", extra_args=["--config", str(config)]).start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        topic = "business.orders.altered"
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)

        # Records an hour old in one large segment: nothing expires by default.
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        old = int(time.time() * 1000) - 3_600_000
        for i in range(200):
            p.produce(topic, value=b"x" * 100, timestamp=old + i)
        p.flush(10)
        time.sleep(0.6)
        assert watermarks(broker.bootstrap, topic) == (0, 200)

        # Small segments and a one-minute retention, set on the running broker:
        # the next append rolls the old segment, which then expires.
        incremental(admin, TOPIC, topic, (SET, "segment.bytes", "4096"),
                    (SET, "retention.ms", "60000"))
        assert produce_one(broker.bootstrap, topic, b"fresh") is None
        deadline = time.monotonic() + 20
        while watermarks(broker.bootstrap, topic)[0] < 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert watermarks(broker.bootstrap, topic) == (200, 201)

        # max.message.bytes: a batch over it is refused, and accepted once deleted.
        incremental(admin, TOPIC, topic, (SET, "max.message.bytes", "1000"))
        err = produce_one(broker.bootstrap, topic, b"y" * 3000)
        assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
        incremental(admin, TOPIC, topic, (DELETE, "max.message.bytes", None))
        assert produce_one(broker.bootstrap, topic, b"y" * 3000) is None

        # min.insync.replicas above the single replica refuses acks=all writes.
        incremental(admin, TOPIC, topic, (SET, "min.insync.replicas", "2"))
        err = produce_one(broker.bootstrap, topic, b"z", acks="all",
                          **{"message.timeout.ms": 3000, "retries": 0})
        assert err is not None and err.code() in (
            KafkaError.NOT_ENOUGH_REPLICAS, KafkaError._MSG_TIMED_OUT), err
        incremental(admin, TOPIC, topic, (DELETE, "min.insync.replicas", None))
        assert produce_one(broker.bootstrap, topic, b"z", acks="all") is None

        # Lists: APPEND starts from the value in force (the default delete).
        incremental(admin, TOPIC, topic, (APPEND, "cleanup.policy", "compact"))
        assert describe(admin, TOPIC, topic)["cleanup.policy"].value == "delete,compact"
        incremental(admin, TOPIC, topic, (SUBTRACT, "cleanup.policy", "delete"))
        assert describe(admin, TOPIC, topic)["cleanup.policy"].value == "compact"
        incremental(admin, TOPIC, topic, (SET, "cleanup.policy", "delete"))

        # Refusals name the key and the value; nothing changes.
        e = refusal(admin, TOPIC, topic, (SET, "retention.mss", "5"))
        assert e.code() == KafkaError.INVALID_CONFIG
        assert "retention.mss" in e.str() and '"5"' in e.str(), e.str()
        e = refusal(admin, TOPIC, topic, (SET, "retention.ms", "soon"))
        assert e.code() == KafkaError.INVALID_CONFIG
        assert "retention.ms" in e.str() and "soon" in e.str(), e.str()
        e = refusal(admin, TOPIC, topic, (APPEND, "retention.ms", "5"))
        assert e.code() == KafkaError.INVALID_CONFIG and "retention.ms" in e.str()
        e = refusal(admin, TOPIC, "no.such.topic", (SET, "retention.ms", "5"))
        assert e.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        # validate_only checks and changes nothing.
        res = ConfigResource(TOPIC, topic, incremental_configs=[
            ConfigEntry("retention.ms", "1", incremental_operation=SET)])
        admin.incremental_alter_configs([res], validate_only=True)[res].result(30)
        assert describe(admin, TOPIC, topic)["retention.ms"].value == "60000"

        broker.restart()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        configs = describe(admin, TOPIC, topic)
        assert configs["retention.ms"].value == "60000"
        assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
        assert configs["segment.bytes"].value == "4096"
        assert configs["cleanup.policy"].value == "delete"
        assert configs["max.message.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    finally:
        broker.stop()


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_legacy_alter_configs_replaces_the_whole_set(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = "business.payments.replaced"
    admin.create_topics([NewTopic(topic, 1, 1, config={
        "retention.ms": "86400000", "compression.type": "lz4"})])[topic].result(30)
    res = ConfigResource(TOPIC, topic, set_config={"retention.ms": "3600000"})
    admin.alter_configs([res])[res].result(30)
    configs = describe(admin, TOPIC, topic)
    assert configs["retention.ms"].value == "3600000"
    assert configs["compression.type"].value == "producer"
    assert configs["compression.type"].source == ConfigSource.DEFAULT_CONFIG.value
    bad = ConfigResource(TOPIC, topic, set_config={"compression.type": "brotli"})
    with pytest.raises(KafkaException) as e:
        admin.alter_configs([bad])[bad].result(30)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert "brotli" in e.value.args[0].str()


def test_dynamic_broker_configs_are_the_defaults_topics_inherit(broker):
    # librdkafka cannot name the cluster-wide default (an empty resource name):
    # the kafka-configs test below sets it.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = "business.inventory.inherits"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)

    incremental(admin, BROKER, "0", (SET, "log.retention.ms", "654321"))
    entry = describe(admin, TOPIC, topic)["retention.ms"]
    assert (entry.value, entry.source) == ("654321", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    # confluent-kafka keys synonyms by name (the layers of one name collapse);
    # kafka-configs below shows each layer.
    assert "log.retention.ms" in entry.synonyms
    own = describe(admin, BROKER, "0")
    assert own["log.retention.ms"].value == "654321"
    assert not own["log.retention.ms"].is_read_only
    assert own["broker.id"].is_read_only

    e = refusal(admin, BROKER, "0", (SET, "num.io.threads", "4"))
    assert e.code() == KafkaError.INVALID_CONFIG and "num.io.threads" in e.str()
    e = refusal(admin, BROKER, "0", (SET, "log.segment.bytes", "-5"))
    assert e.code() == KafkaError.INVALID_CONFIG and "-5" in e.str()

    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    entry = describe(admin, TOPIC, topic)["retention.ms"]
    assert (entry.value, entry.source) == ("654321", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    incremental(admin, BROKER, "0", (DELETE, "log.retention.ms", None))
    entry = describe(admin, TOPIC, topic)["retention.ms"]
    assert (entry.value, entry.source) == ("604800000", ConfigSource.DEFAULT_CONFIG.value)


def configs_tool(broker, *args):
    return kafka_tool("kafka.admin.ConfigCommand", "--bootstrap-server", broker.bootstrap, *args)


def test_kafka_configs_describe_alter_add_and_delete_config(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = "business.shipping.tooled"
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    entity = ["--entity-type", "topics", "--entity-name", topic]

    out = configs_tool(broker, *entity, "--alter", "--add-config",
                       "retention.ms=3600000,cleanup.policy=[compact,delete]")
    assert out.returncode == 0, out.stdout + out.stderr
    out = configs_tool(broker, *entity, "--describe")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "retention.ms=3600000" in out.stdout, out.stdout
    assert "cleanup.policy=compact,delete" in out.stdout, out.stdout

    out = configs_tool(broker, *entity, "--alter", "--delete-config", "retention.ms")
    assert out.returncode == 0, out.stdout + out.stderr
    out = configs_tool(broker, *entity, "--describe", "--all")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "retention.ms=604800000" in out.stdout and "DEFAULT_CONFIG" in out.stdout, out.stdout

    out = configs_tool(broker, *entity, "--alter", "--add-config", "retention.mss=1")
    assert out.returncode != 0
    assert "retention.mss" in out.stdout + out.stderr

    out = configs_tool(broker, "--entity-type", "brokers", "--entity-default", "--alter",
                       "--add-config", "log.retention.ms=7200000")
    assert out.returncode == 0, out.stdout + out.stderr
    out = configs_tool(broker, "--entity-type", "brokers", "--entity-default", "--describe")
    assert "log.retention.ms=7200000" in out.stdout, out.stdout
    out = configs_tool(broker, *entity, "--describe", "--all")
    assert "retention.ms=7200000" in out.stdout, out.stdout
    assert "DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=7200000" in out.stdout, out.stdout
    out = configs_tool(broker, "--entity-type", "brokers", "--entity-name", "0", "--describe", "--all")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "log.retention.ms=7200000" in out.stdout, out.stdout
    assert "broker.id=0" in out.stdout, out.stdout


def test_compression_type_applies_to_the_next_batch(broker):
    # kafka.tools.DumpLogSegments reads the segment file as Kafka would.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = "business.products.compressed"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    assert produce_one(broker.bootstrap, topic, b"plain " * 50, **{"compression.type": "none"}) is None
    incremental(admin, TOPIC, topic, (SET, "compression.type", "lz4"))
    assert produce_one(broker.bootstrap, topic, b"packed " * 50, **{"compression.type": "none"}) is None
    segment = broker.data_dir / f"{topic}-0" / "00000000000000000000.log"
    out = kafka_tool("kafka.tools.DumpLogSegments", "--files", str(segment))
    assert out.returncode == 0, out.stderr
    codecs = [line.split("compresscodec: ")[1].split()[0]
              for line in out.stdout.splitlines() if "compresscodec: " in line]
    assert codecs == ["none", "lz4"], out.stdout
