"""A network partition that isolates a leader from its two peers while clients
still reach every broker (network namespaces and veth pairs, the recipe of
TESTING.md; blackhole routes cut the inter-broker links). The isolated leader must
stop counting itself leader and acknowledging; the majority elects new leaders and
the workload continues; after healing, the old leader rejoins as a follower with
its uncommitted tail truncated, and nothing acknowledged is lost."""

import os
import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient

from cluster import QueueWorkload, wait_until
from conftest import SLUICE_BIN, Broker

TOPIC = "orders"
PARTITIONS = 3


def sh(script):
    subprocess.run(["bash", "-euc", script], check=True, capture_output=True, text=True)


class Netns:
    def __init__(self):
        self.p = f"t{os.getpid() % 100000}"

    def up(self):
        p = self.p
        sh(f"""
P={p}
for i in 1 2 3; do
  ip netns add sl$P-$i; ip -n sl$P-$i link set lo up
  ip -n sl$P-$i addr add 10.77.0.$i/32 dev lo
done
link() {{
  ip link add l$P-$1$2 type veth peer name l$P-$2$1
  ip link set l$P-$1$2 netns sl$P-$1; ip link set l$P-$2$1 netns sl$P-$2
  ip -n sl$P-$1 addr add 10.77.$1$2.1/30 dev l$P-$1$2; ip -n sl$P-$2 addr add 10.77.$1$2.2/30 dev l$P-$2$1
  ip -n sl$P-$1 link set l$P-$1$2 up; ip -n sl$P-$2 link set l$P-$2$1 up
  ip -n sl$P-$1 route add 10.77.0.$2/32 via 10.77.$1$2.2 src 10.77.0.$1
  ip -n sl$P-$2 route add 10.77.0.$1/32 via 10.77.$1$2.1 src 10.77.0.$2
}}
client() {{
  ip link add c$P-$1 type veth peer name b$P-$1; ip link set b$P-$1 netns sl$P-$1
  ip addr add 10.77.10$1.1/30 dev c$P-$1; ip -n sl$P-$1 addr add 10.77.10$1.2/30 dev b$P-$1
  ip link set c$P-$1 up; ip -n sl$P-$1 link set b$P-$1 up
  ip route add 10.77.0.$1/32 via 10.77.10$1.2 src 10.77.10$1.1
  ip -n sl$P-$1 route add 10.77.10$1.1/32 dev b$P-$1 src 10.77.0.$1
}}
link 1 2; link 1 3; link 2 3; for i in 1 2 3; do client $i; done
""")

    def down(self):
        subprocess.run(["bash", "-c", f"for i in 1 2 3; do ip netns del sl{self.p}-$i; done"],
                       capture_output=True)

    def isolate(self, v):
        others = [j for j in (1, 2, 3) if j != v]
        sh("\n".join(
            f"ip -n sl{self.p}-{v} route replace blackhole 10.77.0.{j}/32\n"
            f"ip -n sl{self.p}-{j} route replace blackhole 10.77.0.{v}/32" for j in others))

    def heal(self, v):
        cmds = []
        for j in (1, 2, 3):
            if j == v:
                continue
            a, b = min(v, j), max(v, j)
            # In link A B, A's end is .1 and B's end is .2.
            via_from_v = f"10.77.{a}{b}.{2 if v == a else 1}"
            via_from_j = f"10.77.{a}{b}.{2 if j == a else 1}"
            cmds.append(f"ip -n sl{self.p}-{v} route replace 10.77.0.{j}/32 via {via_from_v} src 10.77.0.{v}")
            cmds.append(f"ip -n sl{self.p}-{j} route replace 10.77.0.{v}/32 via {via_from_j} src 10.77.0.{j}")
        sh("\n".join(cmds))


class NsBroker(Broker):
    """A broker inside namespace `ns`, listening on its identity address."""

    def __init__(self, data_dir, ns, node, peers):
        super().__init__(data_dir, port=9092, extra_args=[
            "--node-id", str(node), "--raft-listen", f"10.77.0.{node}:9192", "--peers", peers])
        self.ns, self.host = ns, f"10.77.0.{node}"
        self.log_path = self.data_dir.parent / f"broker-{node}.log"

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def start(self, timeout_s=60):
        import socket
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, str(SLUICE_BIN), "serve", "--listen", self.bootstrap,
             "--data-dir", str(self.data_dir), *self.extra_args], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited: {self.log()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"broker did not listen: {self.log()}")


class NsCluster:
    def __init__(self, root, net):
        peers = ",".join(f"{i}@10.77.0.{i}:9192" for i in (1, 2, 3))
        self.brokers = {}
        for i in (1, 2, 3):
            d = root / f"node-{i}" / "data"
            d.parent.mkdir(parents=True)
            self.brokers[i] = NsBroker(d, f"sl{net.p}-{i}", i, peers)

    @property
    def bootstrap(self):
        return ",".join(b.bootstrap for b in self.brokers.values())

    def partition_logs(self, node, topic, partition):
        d = self.brokers[node].data_dir / f"{topic}-{partition}"
        return b"".join(p.read_bytes() for p in sorted(d.glob("*.log")))


def leaders_seen_by(broker):
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(topic=TOPIC, timeout=5)
    return {p.id: p.leader for p in md.topics[TOPIC].partitions.values()}


@pytest.fixture
def ns_cluster(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    net = Netns()
    net.down()
    net.up()
    c = NsCluster(tmp_path, net)
    try:
        import threading
        threads = [threading.Thread(target=b.start) for b in c.brokers.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        yield c, net
    finally:
        for b in c.brokers.values():
            if b.proc is not None and b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait()
        net.down()


def test_an_isolated_leader_stops_acknowledging_and_rejoins_as_a_follower(ns_cluster):
    cluster, net = ns_cluster
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    from confluent_kafka.admin import NewTopic
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)])[TOPIC].result(timeout=40)
    wait_until("leaders", lambda: all(l > 0 for l in leaders_seen_by(cluster.brokers[1]).values())
               and len(leaders_seen_by(cluster.brokers[1])) == PARTITIONS, timeout_s=30)
    work = QueueWorkload(cluster, TOPIC).start()
    time.sleep(3)
    counts = {}
    for leader in leaders_seen_by(cluster.brokers[1]).values():
        counts[leader] = counts.get(leader, 0) + 1
    victim = max(counts, key=counts.get)
    others = [n for n in cluster.brokers if n != victim]
    net.isolate(victim)
    # The majority elects leaders among themselves; the isolated broker, still
    # reachable by clients, stops presenting itself as any partition's leader.
    wait_until("new leaders on the majority side",
               lambda: all(l in others for l in leaders_seen_by(cluster.brokers[others[0]]).values()),
               timeout_s=30)
    wait_until("the isolated broker to stop leading",
               lambda: victim not in leaders_seen_by(cluster.brokers[victim]).values(),
               timeout_s=30)
    acked = len(work.acked)
    wait_until("writes to continue during the partition",
               lambda: len(work.acked) > acked + 200, timeout_s=30)
    net.heal(victim)
    time.sleep(3)
    work.stop_producers()
    work.wait_consumed()
    work.check(PARTITIONS)

    def identical():
        return all(len({cluster.partition_logs(n, TOPIC, p) for n in (1, 2, 3)}) == 1
                   for p in range(PARTITIONS))
    wait_until("the healed broker's logs to match the majority's", identical, timeout_s=60)
