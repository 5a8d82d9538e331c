"""A three-broker Sluice cluster on 127.0.0.1 for the replication tests, and the
queue checker (in the spirit of Jepsen's): idempotent acks=all producers write
keyed records while a consumer group reads; afterwards every acknowledged record
must be in the log exactly once, in each producer's order per key, consumed by the
group, and nothing may appear that was never sent."""

import pathlib
import shutil
import socket
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, free_port


class Cluster:
    def __init__(self, root, size=3, extra_args=()):
        self.root = pathlib.Path(root)
        raft_ports = [free_port() for _ in range(size)]
        self.peers = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(raft_ports))
        self.brokers = {}
        for i in range(size):
            node = i + 1
            args = ["--node-id", str(node), "--raft-listen", f"127.0.0.1:{raft_ports[i]}",
                    "--peers", self.peers, *extra_args]
            self.brokers[node] = Broker(self.root / f"node-{node}" / "data", extra_args=args)
            self.brokers[node].data_dir.parent.mkdir(parents=True, exist_ok=True)

    @property
    def bootstrap(self):
        return ",".join(b.bootstrap for b in self.brokers.values())

    def start(self):
        # A broker listens for clients once the cluster metadata caught up, which
        # needs its peers: start them together.
        errors = []

        def run(b):
            try:
                b.start(timeout_s=60)
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(b,)) for b in self.brokers.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self.wait_for_brokers(len(self.brokers))
        return self

    def stop(self):
        for b in self.brokers.values():
            if b.proc is not None:
                b.kill()

    def admin(self):
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def wait_for_brokers(self, n, timeout_s=30):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                md = self.admin().list_topics(timeout=2)
                if len(md.brokers) >= n:
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise AssertionError(f"fewer than {n} brokers registered")

    def create_topic(self, name, partitions=3, config=None, rf=3):
        admin = self.admin()
        fs = admin.create_topics([NewTopic(name, partitions, rf, config=config or {})],
                                 operation_timeout=30)
        fs[name].result(timeout=40)
        self.wait_for_leaders(name, partitions)

    def leaders(self, topic):
        md = self.admin().list_topics(topic=topic, timeout=5)
        return {p.id: p.leader for p in md.topics[topic].partitions.values()}

    def wait_for_leaders(self, topic, partitions, exclude=(), timeout_s=30):
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.leaders(topic)
                if len(last) == partitions and all(l > 0 and l not in exclude for l in last.values()):
                    return last
            except Exception:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{topic}: no leaders outside {exclude} within {timeout_s}s: {last}")

    def busiest_leader(self, topic):
        counts = {}
        for leader in self.leaders(topic).values():
            counts[leader] = counts.get(leader, 0) + 1
        return max(counts, key=counts.get)

    def wipe(self, node):
        shutil.rmtree(self.brokers[node].data_dir, ignore_errors=True)

    def partition_logs(self, node, topic, partition):
        """The bytes of every segment of a partition on one broker, in order."""
        d = self.brokers[node].data_dir / f"{topic}-{partition}"
        return b"".join(p.read_bytes() for p in sorted(d.glob("*.log")))


class QueueWorkload:
    """Producers send `p<producer>-k<key>-<seq>` values with acks=all and
    idempotence; a consumer group reads the topic. `check()` runs the checker."""

    def __init__(self, cluster, topic, producers=2, keys=12, rate_per_s=400):
        self.cluster, self.topic = cluster, topic
        self.producers, self.keys, self.rate = producers, keys, rate_per_s
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.sent, self.acked, self.errors = set(), set(), []
        self.consumed = []
        self.group = f"verifier-{topic}"
        self.threads = []
        self.consumer_stop = threading.Event()

    def start(self):
        for p in range(self.producers):
            t = threading.Thread(target=self._produce, args=(p,), daemon=True)
            t.start()
            self.threads.append(t)
        self.consumer_thread = threading.Thread(target=self._consume, daemon=True)
        self.consumer_thread.start()
        return self

    def _produce(self, pid):
        producer = Producer({
            "bootstrap.servers": self.cluster.bootstrap, "acks": "all",
            "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 120000,
        })

        def done(err, msg):
            with self.lock:
                if err is None:
                    self.acked.add(msg.value().decode())
                else:
                    self.errors.append(str(err))

        seq = 0
        while not self.stop_flag.is_set():
            key = f"k{seq % self.keys}"
            value = f"p{pid}-{key}-{seq}"
            with self.lock:
                self.sent.add(value)
            while True:
                try:
                    producer.produce(self.topic, key=key, value=value, on_delivery=done)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            seq += 1
            time.sleep(1.0 / self.rate)
        left = producer.flush(120)
        assert left == 0, f"producer {pid}: {left} records never answered"

    def _consume(self):
        consumer = Consumer({
            "bootstrap.servers": self.cluster.bootstrap, "group.id": self.group,
            "auto.offset.reset": "earliest", "enable.auto.commit": True,
            "auto.commit.interval.ms": 500, "session.timeout.ms": 10000,
        })
        consumer.subscribe([self.topic])
        while not self.consumer_stop.is_set():
            m = consumer.poll(0.2)
            if m is None or m.error():
                continue
            with self.lock:
                self.consumed.append(m.value().decode())
        consumer.close()

    def stop_producers(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=180)

    def wait_consumed(self, timeout_s=90):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                missing = self.acked - set(self.consumed)
            if not missing:
                break
            time.sleep(0.2)
        self.consumer_stop.set()
        self.consumer_thread.join(timeout=30)

    def read_log(self, partitions):
        """Every value in the topic, per partition in log order (assign, no group)."""
        consumer = Consumer({"bootstrap.servers": self.cluster.bootstrap,
                             "group.id": "log-reader", "enable.auto.commit": False,
                             "auto.offset.reset": "error"})
        md = consumer.list_topics(self.topic, timeout=10)
        ends = {}
        for p in range(partitions):
            _, hi = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
            ends[p] = hi
        consumer.assign([TopicPartition(self.topic, p, 0) for p in range(partitions)])
        logs = {p: [] for p in range(partitions)}
        done = {p for p, hi in ends.items() if hi == 0}
        last = {}
        errors = []
        deadline = time.monotonic() + 60
        while len(done) < partitions and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error():
                errors.append(str(m.error()))
            elif m is not None:
                logs[m.partition()].append(m.value().decode())
                last[m.partition()] = m.offset()
            # The position, not the last record: a log may end in Raft control
            # batches (a new leader's first entry), which consumers skip.
            for tp in consumer.position([TopicPartition(self.topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    done.add(tp.partition)
        leaders = {p.id: p.leader for p in consumer.list_topics(self.topic, timeout=10)
                   .topics[self.topic].partitions.values()}
        consumer.close()
        assert len(done) == partitions, (
            f"could not read the log to its end: ends {ends}, last offsets read {last}, "
            f"leaders {leaders} (were {md_leaders(md, self.topic)}), errors {errors[:5]}")
        return logs

    def check(self, partitions):
        logs = self.read_log(partitions)
        in_log = [v for vs in logs.values() for v in vs]
        counts = {}
        for v in in_log:
            counts[v] = counts.get(v, 0) + 1
        twice = [v for v, n in counts.items() if n > 1]
        assert not twice, f"{len(twice)} records stored twice, e.g. {twice[:5]}"
        never_sent = set(in_log) - self.sent
        assert not never_sent, f"records never sent: {sorted(never_sent)[:5]}"
        lost = self.acked - set(in_log)
        assert not lost, f"{len(lost)} acknowledged records lost, e.g. {sorted(lost)[:5]}"
        for p, values in logs.items():
            last = {}
            for v in values:
                producer, key, seq = v.split("-")
                seq = int(seq)
                assert seq > last.get((producer, key), -1), f"partition {p}: {v} out of order"
                last[(producer, key)] = seq
        unconsumed = self.acked - set(self.consumed)
        assert not unconsumed, f"{len(unconsumed)} acknowledged records never consumed by the group"
        assert not (set(self.consumed) - self.sent), "the group consumed records never sent"
        assert len(self.acked) > 100, f"too little traffic to check: {len(self.acked)} acked"
        return logs


def md_leaders(md, topic):
    return {p.id: p.leader for p in md.topics[topic].partitions.values()}


def wait_until(what, f, timeout_s=60, interval_s=0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if f():
                return
        except Exception:
            pass
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what}")


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False
