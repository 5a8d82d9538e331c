"""The Apache Kafka Java CLI tools (4.x, Maven Central) against Sluice."""

from conftest import kafka_tool

TOPICS = "org.apache.kafka.tools.TopicCommand"
CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"


def test_kafka_topics_create_list_describe(broker):
    bs = ["--bootstrap-server", broker.bootstrap]
    r = kafka_tool(TOPICS, *bs, "--create", "--topic", "business.payments.completed",
                   "--partitions", "3", "--replication-factor", "1",
                   "--config", "retention.ms=86400000", "--config", "compression.type=lz4")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Created topic business.payments.completed." in r.stdout

    r = kafka_tool(TOPICS, *bs, "--create", "--topic", "business.payments.completed",
                   "--partitions", "1")
    assert r.returncode != 0 and "already exists" in (r.stdout + r.stderr)

    r = kafka_tool(TOPICS, *bs, "--create", "--topic", "bad", "--replication-factor", "3")
    assert r.returncode != 0 and "replication factor" in (r.stdout + r.stderr).lower()

    r = kafka_tool(TOPICS, *bs, "--list")
    assert r.returncode == 0, r.stderr
    assert "business.payments.completed" in r.stdout.split()

    r = kafka_tool(TOPICS, *bs, "--describe", "--topic", "business.payments.completed")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PartitionCount: 3" in r.stdout
    assert "ReplicationFactor: 1" in r.stdout
    assert "retention.ms=86400000" in r.stdout
    for p in range(3):
        assert f"Partition: {p}\tLeader: 0" in r.stdout

    r = kafka_tool(TOPICS, *bs, "--delete", "--topic", "business.payments.completed")
    assert r.returncode == 0, r.stdout + r.stderr
    r = kafka_tool(TOPICS, *bs, "--list")
    assert "business.payments.completed" not in r.stdout.split()


def test_console_producer_consumer_roundtrip(broker):
    bs = ["--bootstrap-server", broker.bootstrap]
    lines = [f"order {i} created" for i in range(200)]
    r = kafka_tool(CONSOLE_PRODUCER, *bs, "--topic", "orders.console",
                   input_text="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stdout + r.stderr
    r = kafka_tool(CONSOLE_CONSUMER, *bs, "--topic", "orders.console", "--partition", "0",
                   "--offset", "earliest", "--max-messages", str(len(lines)),
                   "--timeout-ms", "30000")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == lines


def test_get_offsets_earliest_latest_and_max_timestamp(broker):
    bs = ["--bootstrap-server", broker.bootstrap]
    r = kafka_tool(TOPICS, *bs, "--create", "--topic", "audit.orders.placed", "--partitions", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [f"audit {i}" for i in range(25)]
    r = kafka_tool(CONSOLE_PRODUCER, *bs, "--topic", "audit.orders.placed",
                   input_text="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stdout + r.stderr
    offsets = {}
    for spec in ("earliest", "latest", "max-timestamp"):
        r = kafka_tool("org.apache.kafka.tools.GetOffsetShell", *bs, "--topic",
                       "audit.orders.placed", "--time", spec)
        assert r.returncode == 0, r.stdout + r.stderr
        offsets[spec] = int(r.stdout.strip().split(":")[-1])
    assert offsets["earliest"] == 0
    assert offsets["latest"] == 25
    assert 0 <= offsets["max-timestamp"] < 25


def test_cluster_tool_reads_the_cluster_id_through_describe_cluster(broker):
    # The Java admin client describes the cluster with DescribeCluster whenever the
    # broker offers it (Metadata otherwise), so the tool runs through our handler.
    r = kafka_tool("org.apache.kafka.tools.BrokerApiVersionsCommand",
                   "--bootstrap-server", broker.bootstrap)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "DescribeCluster(60): 0 to 2 [usable: 2]" in r.stdout, r.stdout
    r = kafka_tool("org.apache.kafka.tools.ClusterTool", "cluster-id",
                   "--bootstrap-server", broker.bootstrap)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Cluster ID: sluice-cluster" in r.stdout
