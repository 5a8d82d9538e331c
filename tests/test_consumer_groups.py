"""Consumer groups against the group coordinator: librdkafka and the Java client
rebalancing (eager, cooperative-sticky, static membership), offsets surviving broker
restarts, and the kafka-consumer-groups tool."""

import re
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, kafka_tool
from group_members import (
    assignment_exact, all_consumed, check_no_loss_no_duplicates, compile_java_member,
    franz_member, java_member, librdkafka_member, produce, wait_until,
)

GROUPS_TOOL = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
COOPERATIVE = ("partition.assignment.strategy="
               "org.apache.kafka.clients.consumer.CooperativeStickyAssignor")
CONFIG = """
[group_coordinator]
group_initial_rebalance_delay_ms = 300
offsets_topic_num_partitions = 10
"""


@pytest.fixture
def group_broker(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text(CONFIG)
    b = Broker(tmp_path / "data", extra_args=["--config", str(config)]).start()
    yield b
    if b.proc is not None:
        b.stop()


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory):
    return compile_java_member(tmp_path_factory.mktemp("java"))


def create_topic(broker, name, partitions):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)


def stop_all(members):
    for m in members:
        if m.alive():
            m.kill()


def test_librdkafka_members_rebalance_and_resume_after_restarts(group_broker, tmp_path):
    b, group, topic = group_broker, "order-service-consumer-group", "business.orders.created"
    create_topic(b, topic, 6)
    produced = {p: [] for p in range(6)}
    produce(b, topic, produced, 30)
    members = [librdkafka_member(f"m{i}", b, group, topic, tmp_path) for i in range(3)]
    try:
        wait_until(lambda: assignment_exact(members, 6), 30, "3 members to share 6 partitions")
        assert [len(m.owned()) for m in members] == [2, 2, 2]
        wait_until(lambda: all_consumed(members, produced), 30, "the first records")

        # Killed without leaving: its partitions move after the session timeout (6 s).
        victim, survivors = members[0], members[1:]
        killed_at = time.monotonic()
        victim.kill()
        produce(b, topic, produced, 30)
        moved_at = wait_until(lambda: assignment_exact(survivors, 6), 30,
                              "the killed member's partitions to be reassigned")
        assert 5.0 <= moved_at - killed_at <= 20, moved_at - killed_at
        wait_until(lambda: all_consumed(members, produced), 30, "records after the kill")

        # Leaving: the group rebalances at once, well inside the session timeout.
        leaver, last = survivors
        left_at = time.monotonic()
        leaver.stop()
        moved_at = wait_until(lambda: last.owned() == set(range(6)), 30,
                              "the leaver's partitions to be reassigned")
        assert moved_at - left_at < 4.0, moved_at - left_at
        produce(b, topic, produced, 30)
        wait_until(lambda: all_consumed(members, produced), 30, "records after the leave")

        # A clean broker restart under a live member: it goes on from where it was.
        b.restart()
        produce(b, topic, produced, 30)
        wait_until(lambda: all_consumed(members, produced), 60, "records after a restart")
        last.stop()

        # kill -9 of the broker, then a new member: it starts at the committed offsets.
        produce(b, topic, produced, 30)
        b.kill()
        b.start()
        newcomer = librdkafka_member("m3", b, group, topic, tmp_path)
        members.append(newcomer)
        wait_until(lambda: all_consumed(members, produced), 60, "the newcomer to catch up")
        check_no_loss_no_duplicates(members, produced)
        first = {e["partition"]: e["offset"] for e in reversed(newcomer.of("record"))}
        assert first == {p: 120 for p in range(6)}, first
    finally:
        stop_all(members)


def test_java_cooperative_sticky_rebalances_incrementally(group_broker, java_classes, tmp_path):
    b, group, topic = group_broker, "inventory-service-consumer-group", "business.inventory"
    create_topic(b, topic, 6)
    produced = {p: [] for p in range(6)}
    produce(b, topic, produced, 20)
    members = []
    try:
        for i in range(3):
            members.append(java_member(f"j{i}", java_classes, b, group, topic, tmp_path,
                                       COOPERATIVE))
            wait_until(lambda: assignment_exact(members, 6)
                       and all(len(m.owned()) == 6 // len(members) for m in members),
                       60, f"{len(members)} cooperative members to balance")
        wait_until(lambda: all_consumed(members, produced), 30, "the first records")
        for m in members:
            # Incremental: a revocation gives up only the partitions that move; an
            # eager rebalance would revoke everything the member owns.
            owned = set()
            for e in m.snapshot():
                if e["event"] == "assigned":
                    owned |= set(e["partitions"])
                elif e["event"] in ("revoked", "lost"):
                    assert e["event"] == "revoked" and set(e["partitions"]) < owned, (
                        f"{m.name} gave up all it owned: {m.snapshot()}")
                    owned -= set(e["partitions"])

        killed = members.pop()
        killed_at = time.monotonic()
        killed.kill()
        produce(b, topic, produced, 20)
        wait_until(lambda: assignment_exact(members, 6), 60, "partitions of the killed member")
        for m in members:
            assert not m.of("revoked", killed_at) + m.of("lost", killed_at), (
                f"{m.name} lost partitions when another member died: {m.snapshot()}")
        wait_until(lambda: all_consumed(members + [killed], produced), 30, "records after the kill")
        check_no_loss_no_duplicates(members + [killed], produced)
    finally:
        stop_all(members)


def test_java_static_members_restart_without_rebalance(group_broker, java_classes, tmp_path):
    b, group, topic = group_broker, "payment-service-consumer-group", "business.payments"
    create_topic(b, topic, 6)
    produced = {p: [] for p in range(6)}
    produce(b, topic, produced, 10)

    def static(i, name):
        return java_member(name, java_classes, b, group, topic, tmp_path,
                           f"group.instance.id=payment-{i}", "session.timeout.ms=20000")

    members = [static(0, "s0"), static(1, "s1")]
    try:
        wait_until(lambda: assignment_exact(members, 6), 60, "two static members to balance")
        wait_until(lambda: all_consumed(members, produced), 30, "the first records")
        before = members[0].owned()
        quiet_since = time.monotonic()
        members[0].kill()
        restarted = static(0, "s0-restarted")
        members.append(restarted)
        wait_until(lambda: restarted.owned() == before, 60, "the restarted member's partitions")
        produce(b, topic, produced, 10)
        wait_until(lambda: all_consumed(members, produced), 30, "records after the restart")
        other = members[1]
        moves = [e for e in other.snapshot()
                 if e["event"] in ("assigned", "revoked", "lost") and e["t"] >= quiet_since]
        assert not moves, f"the other static member saw a rebalance: {moves}"
        check_no_loss_no_duplicates(members, produced)

        r = kafka_tool(GROUPS_TOOL, "--bootstrap-server", b.bootstrap, "--describe",
                       "--group", group, "--members")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "payment-0" in r.stdout and "payment-1" in r.stdout, r.stdout
    finally:
        stop_all(members)


def test_franz_go_members_share_and_take_over_partitions(group_broker, tmp_path):
    """franz-go's default balancer is cooperative-sticky."""
    b, group, topic = group_broker, "analytics-consumer-group", "business.clicks"
    create_topic(b, topic, 6)
    produced = {p: [] for p in range(6)}
    produce(b, topic, produced, 20)
    members = [franz_member(f"f{i}", b, group, topic, tmp_path) for i in range(3)]
    try:
        wait_until(lambda: assignment_exact(members, 6)
                   and all(len(m.owned()) == 2 for m in members), 60, "three balanced members")
        wait_until(lambda: all_consumed(members, produced), 30, "the first records")
        killed = members.pop()
        killed.kill()
        produce(b, topic, produced, 20)
        wait_until(lambda: assignment_exact(members, 6), 60, "partitions of the killed member")
        leaver, last = members
        leaver.stop()
        wait_until(lambda: last.owned() == set(range(6)), 30, "partitions of the leaver")
        produce(b, topic, produced, 20)
        everyone = members + [killed]
        wait_until(lambda: all_consumed(everyone, produced), 30, "every record")
        check_no_loss_no_duplicates(everyone, produced)
    finally:
        stop_all(members)


def tool_rows(output, first_column):
    """The whitespace-split rows of a kafka-consumer-groups table."""
    return [line.split() for line in output.splitlines() if line.startswith(first_column + " ")]


def test_kafka_consumer_groups_describe_and_reset(group_broker):
    b, group, topic = group_broker, "shipping-service-consumer-group", "business.shipping"
    bs = ["--bootstrap-server", b.bootstrap]
    create_topic(b, topic, 3)
    produced = {p: [] for p in range(3)}
    produce(b, topic, produced, 10)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "client.id": "shipping-1"})
    c.subscribe([topic])
    try:
        wait_until(lambda: c.poll(0.1) is None and len(c.assignment()) == 3, 30, "assignment")
        c.commit(offsets=[TopicPartition(topic, p, 4, metadata="batch-7", leader_epoch=0)
                          for p in range(3)], asynchronous=False)
        committed = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        assert [(tp.offset, tp.metadata, tp.leader_epoch) for tp in committed] == \
            [(4, "batch-7", 0)] * 3

        r = kafka_tool(GROUPS_TOOL, *bs, "--describe", "--group", group)
        assert r.returncode == 0, r.stdout + r.stderr
        rows = {int(row[2]): row for row in tool_rows(r.stdout, group)}
        assert sorted(rows) == [0, 1, 2], r.stdout
        for row in rows.values():
            # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
            assert row[1] == topic and row[3:6] == ["4", "10", "6"], row
            assert row[6].startswith("shipping-1-") and row[7] == "/127.0.0.1", row
            assert row[8] == "shipping-1", row

        r = kafka_tool(GROUPS_TOOL, *bs, "--describe", "--group", group, "--members", "--verbose")
        assert r.returncode == 0, r.stdout + r.stderr
        (member,) = tool_rows(r.stdout, group)
        assert f"{topic}:0,1,2" in member and member[4] == "3", r.stdout

        r = kafka_tool(GROUPS_TOOL, *bs, "--describe", "--group", group, "--state")
        assert r.returncode == 0 and re.search(r"\brange\s+Stable\s+1\b", r.stdout), r.stdout

        r = kafka_tool(GROUPS_TOOL, *bs, "--list", "--state", "Stable")
        assert r.returncode == 0 and group in r.stdout.split(), r.stdout + r.stderr

        r = kafka_tool(GROUPS_TOOL, *bs, "--reset-offsets", "--group", group, "--topic", topic,
                       "--to-earliest", "--execute")
        assert "inactive" in r.stdout + r.stderr, r.stdout + r.stderr

        r = kafka_tool(GROUPS_TOOL, *bs, "--delete-offsets", "--group", group, "--topic", topic)
        assert "GroupSubscribedToTopicException" in r.stdout, r.stdout + r.stderr
    finally:
        c.close()

    # The stored records are Kafka's own format: its offsets formatter reads them.
    # (confluent-kafka sends the metadata string with its C terminator.)
    r = kafka_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", *bs,
                   "--topic", "__consumer_offsets", "--from-beginning", "--timeout-ms", "3000",
                   "--formatter", "org.apache.kafka.tools.consumer.OffsetsMessageFormatter")
    stored = (f'{{"key":{{"type":1,"data":{{"group":"{group}","topic":"{topic}","partition":0}}}},'
              f'"value":{{"version":3,"data":{{"offset":4,"leaderEpoch":0,"metadata":"batch-7')
    assert stored in r.stdout, r.stdout + r.stderr

    r = kafka_tool(GROUPS_TOOL, *bs, "--describe", "--group", group, "--state")
    assert re.search(r"\bEmpty\s+0\b", r.stdout), r.stdout
    r = kafka_tool(GROUPS_TOOL, *bs, "--reset-offsets", "--group", group, "--topic", topic,
                   "--to-earliest", "--execute")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [row[3] for row in tool_rows(r.stdout, group)] == ["0", "0", "0"], r.stdout
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
    committed = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    c.close()
    assert [tp.offset for tp in committed] == [0, 0, 0]

    r = kafka_tool(GROUPS_TOOL, *bs, "--delete-offsets", "--group", group, "--topic", f"{topic}:2")
    assert r.returncode == 0 and "Successful" in r.stdout, r.stdout + r.stderr
    r = kafka_tool(GROUPS_TOOL, *bs, "--describe", "--group", group)
    assert sorted(int(row[2]) for row in tool_rows(r.stdout, group)) == [0, 1], r.stdout

    r = kafka_tool(GROUPS_TOOL, *bs, "--delete", "--group", group)
    assert r.returncode == 0 and "successful" in r.stdout, r.stdout + r.stderr
    r = kafka_tool(GROUPS_TOOL, *bs, "--describe", "--group", group)
    assert "does not exist" in r.stdout + r.stderr, r.stdout + r.stderr


def test_ten_members_joining_at_once_converge_to_one_generation(group_broker):
    """Eight partitions for ten members: two members get an empty assignment."""
    b, group, topic = group_broker, "notification-service-consumer-group", "business.notify"
    create_topic(b, topic, 8)
    assigned = {i: [] for i in range(10)}
    consumers = []
    start = time.monotonic()
    for i in range(10):
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                      "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
        c.subscribe([topic], on_assign=lambda _c, ps, i=i: assigned[i].append(
            sorted(p.partition for p in ps)))
        consumers.append(c)
    try:
        def converged():
            for c in consumers:
                c.poll(0.01)
            return all(assigned.values())
        done = wait_until(converged, 60, "ten members to be assigned")
        print(f"\nten members converged in {done - start:.2f}s")
        for c in consumers:  # a second generation would show as another assignment
            c.poll(0.3)
        assert all(len(calls) == 1 for calls in assigned.values()), assigned
        assert sorted(p for calls in assigned.values() for p in calls[0]) == list(range(8))
        assert sorted(len(calls[0]) for calls in assigned.values()) == [0, 0] + [1] * 8
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(timeout=30)
        assert str(desc.state).endswith("STABLE") and len(desc.members) == 10, desc
    finally:
        for c in consumers:
            c.close()
