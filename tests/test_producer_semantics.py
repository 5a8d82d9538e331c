"""Idempotent producers, compression and batch validation, with librdkafka and the
Java client."""

import pathlib
import socket
import struct
import threading
import time

from confluent_kafka import (OFFSET_BEGINNING, TIMESTAMP_LOG_APPEND_TIME, Consumer,
                             KafkaError, Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, free_port, kafka_tool

CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def create(bootstrap, name, partitions=1, **config):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1, config=config)])[name].result(30)


def consume_values(bootstrap, topic, partitions=1, expected=None, timeout_s=60):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "semantics",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out, eof = [], set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if expected is not None and len(out) >= expected and len(eof) == partitions:
            break
        if expected is None and len(eof) == partitions:
            break
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            raise AssertionError(m.error())
        out.append(m)
    c.close()
    return out


def stored_codecs(data_dir, topic):
    """Compression codec of every batch stored in the topic's segment files."""
    codecs = []
    for log in sorted(pathlib.Path(data_dir).glob(f"{topic}-*/*.log")):
        data = log.read_bytes()
        at = 0
        while at + 61 <= len(data):
            length = struct.unpack(">i", data[at + 8:at + 12])[0]
            attributes = struct.unpack(">h", data[at + 21:at + 23])[0]
            codecs.append(attributes & 7)
            at += 12 + length
    return codecs


def test_java_producer_perf_test_with_default_idempotent_config(broker):
    topic = "orders.perf"
    r = kafka_tool("org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
                   "--num-records", "200000", "--record-size", "1024", "--throughput", "-1",
                   "--producer-props", f"bootstrap.servers={broker.bootstrap}", timeout_s=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "200000 records sent" in r.stdout, out[-3000:]
    assert "Exception" not in out and "ERROR" not in out, out[-3000:]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "perf"})
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 200000)
    c.close()


class FlakyProxy:
    """Forwards TCP to the broker and cuts every connection after a random amount of
    response bytes, so producers see requests whose answers never arrive."""

    def __init__(self, port, upstream_port, seed=7):
        import random
        self.rng = random.Random(seed)
        self.upstream_port = upstream_port
        self.cuts = 0
        self.chaos = True
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            budget = self.rng.randrange(300, 3_000)
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, budget), daemon=True).start()

    def _pump(self, src, dst, budget):
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if budget is not None and self.chaos and sent + len(data) > budget:
                    self.cuts += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.server.close()


def test_librdkafka_idempotent_producer_survives_cut_connections(tmp_path):
    proxy_port = free_port()
    broker = Broker(tmp_path / "data", extra_args=["--advertised-listener", f"127.0.0.1:{proxy_port}"])
    broker.start()
    proxy = FlakyProxy(proxy_port, broker.port)
    try:
        topic = "payments.idempotent"
        create(broker.bootstrap, topic, partitions=3)
        p = Producer({"bootstrap.servers": f"127.0.0.1:{proxy_port}", "enable.idempotence": True,
                      "linger.ms": 2, "batch.num.messages": 200, "message.timeout.ms": 120000,
                      "compression.type": "lz4"})
        errors = []
        keys = [f"payment-{k}".encode() for k in range(20)]
        per_key = 2000
        for i in range(per_key):
            for key in keys:
                value = f"{key.decode()}:{i}".encode()
                while True:
                    try:
                        p.produce(topic, key=key, value=value,
                                  on_delivery=lambda err, msg: err and errors.append(err))
                        break
                    except BufferError:
                        p.poll(0.05)
            p.poll(0)
        assert p.flush(120) == 0, "undelivered messages"
        assert not errors, errors[:3]
        assert proxy.cuts >= 3, f"the proxy cut only {proxy.cuts} connections"
        proxy.chaos = False

        got = consume_values(broker.bootstrap, topic, partitions=3, expected=per_key * len(keys))
        seen = {}
        for m in got:
            key, seq = m.value().decode().rsplit(":", 1)
            seen.setdefault(key, []).append(int(seq))
        assert sum(len(v) for v in seen.values()) == per_key * len(keys), "duplicates or losses"
        for key, seqs in seen.items():
            assert seqs == list(range(per_key)), f"{key}: out of order, duplicated or missing"
    finally:
        proxy.close()
        broker.stop()


def test_every_codec_from_every_client_into_producer_and_lz4_topics(broker):
    bs = broker.bootstrap
    create(bs, "codecs.passthrough", **{"compression.type": "producer"})
    create(bs, "codecs.lz4", **{"compression.type": "lz4"})
    expected = []
    for codec in CODECS:
        p = Producer({"bootstrap.servers": bs, "compression.type": codec, "linger.ms": 5})
        for topic in ("codecs.passthrough", "codecs.lz4"):
            for i in range(300):
                p.produce(topic, key=f"k{i}".encode(), value=f"librdkafka {codec} {i} ".encode() * 8)
        assert p.flush(30) == 0
        lines = [f"java {codec} {i}" for i in range(100)]
        for topic in ("codecs.passthrough", "codecs.lz4"):
            r = kafka_tool("org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bs,
                           "--topic", topic, "--compression-codec", codec,
                           input_text="\n".join(lines) + "\n")
            assert r.returncode == 0, r.stdout + r.stderr
        expected += [f"librdkafka {codec} {i} ".encode() * 8 for i in range(300)]
        expected += [line.encode() for line in lines]

    for topic in ("codecs.passthrough", "codecs.lz4"):
        got = [m.value() for m in consume_values(bs, topic, expected=len(expected))]
        assert sorted(got) == sorted(expected), f"{topic}: consumed data differs"

    # Java reads the broker's LZ4 frames too.
    r = kafka_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", bs,
                   "--topic", "codecs.lz4", "--partition", "0", "--offset", "earliest",
                   "--max-messages", str(len(expected)), "--timeout-ms", "30000")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(r.stdout.splitlines()) == len(expected)

    assert set(stored_codecs(broker.data_dir, "codecs.lz4")) == {CODECS["lz4"]}
    # Stored as sent: every codec is there (clients may send a batch uncompressed
    # when compressing would not shrink it).
    assert set(CODECS.values()) <= set(stored_codecs(broker.data_dir, "codecs.passthrough"))


def test_log_append_time_and_keyless_records_on_compacted_topics(broker):
    bs = broker.bootstrap
    create(bs, "audit.appendtime", **{"message.timestamp.type": "LogAppendTime"})
    create(bs, "customers.compacted", **{"cleanup.policy": "compact"})
    p = Producer({"bootstrap.servers": bs})
    before = int(time.time() * 1000)
    p.produce("audit.appendtime", value=b"stamped", timestamp=1000)
    p.flush(10)
    (m,) = consume_values(bs, "audit.appendtime", expected=1)
    kind, ts = m.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= int(time.time() * 1000) + 1000

    errors = []
    p.produce("customers.compacted", value=b"no key",
              on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)  # a batch is accepted or refused whole: send the keyed one apart
    p.produce("customers.compacted", key=b"c1", value=b"keyed",
              on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors
    assert errors[1] is None


def test_java_producer_fails_exactly_the_keyless_records_of_a_mixed_batch(broker, tmp_path):
    """Produce v8+ record_errors as the Java client reads them: the keyless records
    of a batch on a compacted topic fail with InvalidRecordException naming the
    reason; the keyed records of the same batch fail with the client's generic
    "part of a batch" error, so the application can retry exactly those."""
    import json
    import subprocess
    from conftest import KAFKA_LIBS, ROOT

    create(broker.bootstrap, "customers.profiles", **{"cleanup.policy": "compact"})
    src = ROOT / "tests" / "java" / "MixedBatchProducer.java"
    subprocess.run(["javac", "-cp", f"{KAFKA_LIBS}/*", "-d", str(tmp_path), str(src)],
                   check=True, capture_output=True, text=True)
    run = subprocess.run(
        ["java", "-Xmx256m", "-cp", f"{tmp_path}:{KAFKA_LIBS}/*",
         "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
         "MixedBatchProducer", broker.bootstrap, "customers.profiles", "k-kk-"],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    outcomes = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [o["index"] for o in outcomes] == [0, 1, 2, 3, 4]
    for i in (1, 4):
        assert outcomes[i]["error"] == "org.apache.kafka.common.InvalidRecordException", outcomes
        assert "Compacted topic cannot accept message without key" in outcomes[i]["message"]
    for i in (0, 2, 3):
        assert outcomes[i]["error"] == "org.apache.kafka.common.KafkaException", outcomes
        assert "part of a batch" in outcomes[i]["message"], outcomes
    # Nothing of the refused batch was stored.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "mixed-check"})
    low, high = c.get_watermark_offsets(TopicPartition("customers.profiles", 0), timeout=10)
    c.close()
    assert (low, high) == (0, 0)
