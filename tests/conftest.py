"""Fixtures for integration tests that drive the real `sluice` binary with real
Kafka clients (librdkafka via confluent-kafka, kcat, the Apache Kafka Java tools)."""

import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SLUICE_BIN = pathlib.Path(os.environ.get("SLUICE_BIN", ROOT / "target" / "release" / "sluice"))
KAFKA_LIBS = ROOT / ".tools" / "kafka-libs"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One `sluice serve` process on a free 127.0.0.1 port with its own data dir."""

    def __init__(self, data_dir, port=None, extra_args=(), bootstrap=False):
        """`bootstrap`: create the shipped bootstrap topics (off unless a test
        is about them: every start would create hundreds of partitions)."""
        self.data_dir = pathlib.Path(data_dir)
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        if not bootstrap and not any(a in ("--topics", "--no-bootstrap") for a in self.extra_args):
            self.extra_args.append("--no-bootstrap")
        self.proc = None
        self.log_path = self.data_dir.parent / f"broker-{self.port}.log"

    @property
    def data_dir_path(self):
        return self.data_dir

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s=30):
        assert SLUICE_BIN.exists(), f"{SLUICE_BIN} is missing: run cargo build --release"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(SLUICE_BIN), "serve", "--listen", self.bootstrap,
             "--data-dir", str(self.data_dir), *self.extra_args],
            stdout=log, stderr=log,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"broker did not listen within {timeout_s}s: {self.log()}")

    def stop(self, timeout_s=30):
        """Clean shutdown with SIGTERM; the exit status must be 0."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=timeout_s)
            assert self.proc.returncode == 0, f"unclean exit {self.proc.returncode}: {self.log()}"
        self.proc = None

    def kill(self):
        """kill -9: no chance to flush anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "data").start()
    yield b
    if b.proc is not None:
        b.stop()


def kafka_tool(main_class, *args, input_text=None, timeout_s=120):
    """Runs an Apache Kafka CLI tool (from Maven Central) in-process-free: `java -cp`."""
    assert (KAFKA_LIBS / ".complete").exists(), "run tests/setup.sh first"
    cmd = ["java", "-Xmx256m", "-cp", f"{KAFKA_LIBS}/*", main_class, *args]
    return subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout_s)


def read_to_end(bootstrap, assignments, timeout_s=30):
    """Every record from the given TopicPartition positions to the end of each
    partition (librdkafka, reading until end-of-partition on all of them)."""
    from confluent_kafka import Consumer, KafkaError
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "read-to-end",
                  "enable.partition.eof": True, "enable.auto.commit": False})
    c.assign(assignments)
    out, eof, deadline = [], set(), time.monotonic() + timeout_s
    while len(eof) < len(assignments) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add((m.topic(), m.partition()))
                continue
            raise AssertionError(m.error())
        out.append(m)
    c.close()
    return out
