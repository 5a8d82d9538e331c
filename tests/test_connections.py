"""Connection limits and idle connections with a real client (librdkafka): an idle
connection the broker closes is reopened by the client without an error, and a
client refused by a connection limit gets in once a place is free, while the
clients already connected are served throughout."""

import logging
import socket
import struct
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import Broker


def broker_with(tmp_path, toml):
    config = tmp_path / "sluice.toml"
    config.write_text(toml)
    return Broker(tmp_path / "data", extra_args=["--config", str(config)]).start()


def api_versions(sock, correlation_id):
    """Sends ApiVersions v0 on a raw socket and returns the response's error code."""
    client = b"raw"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client)) + client
    sock.sendall(struct.pack(">i", len(body)) + body)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    payload = recv_exact(sock, size)
    got_id, error = struct.unpack(">ih", payload[:6])
    assert got_id == correlation_id
    return error


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, "connection closed"
        out += chunk
    return out


def served_connection(port, timeout_s=10):
    """A raw connection the broker admitted and answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        s = socket.create_connection(("127.0.0.1", port))
        try:
            assert api_versions(s, 0) == 0
            return s
        except (AssertionError, OSError):
            s.close()
            assert time.monotonic() < deadline, "no connection was admitted"
            time.sleep(0.1)


def test_librdkafka_reconnects_after_the_broker_closes_an_idle_connection(tmp_path):
    broker = broker_with(tmp_path, "connections_max_idle_ms = 1000\n")
    try:
        errors = []
        closes = []

        class Closes(logging.Handler):
            def emit(self, record):
                if "closed by peer" in record.getMessage():
                    closes.append(record.getMessage())

        log = logging.getLogger("rdkafka-idle")
        log.addHandler(Closes())
        log.setLevel(logging.DEBUG)
        log.propagate = False
        p = Producer({"bootstrap.servers": broker.bootstrap, "logger": log,
                      "error_cb": lambda e: errors.append(e)})
        delivered = []
        p.produce("orders.idle", value=b"before", on_delivery=lambda e, m: delivered.append(e))
        assert p.flush(30) == 0
        # librdkafka reconnects at once, so the broker's socket count stays put:
        # what the client sees is the broker closing its idle connections.
        deadline = time.monotonic() + 10
        while not closes and time.monotonic() < deadline:
            p.poll(0.2)
        assert closes, "the broker never closed an idle connection"
        p.produce("orders.idle", value=b"after", on_delivery=lambda e, m: delivered.append(e))
        assert p.flush(30) == 0
        assert delivered == [None, None]
        # A disconnect librdkafka recovers from is at most reported, never fatal.
        assert not [e for e in errors if e.fatal()], errors

        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "idle-check"})
        c.assign([TopicPartition("orders.idle", 0, 0)])
        values = []
        deadline = time.monotonic() + 30
        while len(values) < 2 and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and not m.error():
                values.append(m.value())
        c.close()
        assert values == [b"before", b"after"]
    finally:
        broker.stop()


def test_a_client_refused_by_max_connections_gets_in_once_a_place_is_free(tmp_path):
    broker = broker_with(tmp_path, "max_connections = 3\n")
    try:
        # The start-up probe's connection may still hold a place for a moment.
        held = [served_connection(broker.port) for _ in range(3)]
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        try:
            admin.list_topics(timeout=3)
            refused = False
        except KafkaException:
            refused = True
        assert refused, "a fourth connection was admitted"
        # The connected clients are served all along.
        for i, s in enumerate(held):
            assert api_versions(s, 10 + i) == 0
        for s in held:
            s.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                metadata = admin.list_topics(timeout=3)
                break
            except KafkaException:
                assert time.monotonic() < deadline, "the client never got in"
        assert metadata.brokers
    finally:
        broker.stop()
