"""Consumer-group member processes for tests, and the checks made on what they saw.

Each member (tests/group_member.py for librdkafka, tests/java/GroupConsumer.java for
the Java client) prints JSON events; a reader thread collects them with the time they
arrived."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import Producer

from conftest import KAFKA_LIBS, ROOT


class Member:
    def __init__(self, name, cmd, log_dir):
        self.name = name
        self.events = []
        self._lock = threading.Lock()
        self.stderr = open(log_dir / f"member-{name}.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            event["t"] = time.monotonic()
            with self._lock:
                self.events.append(event)

    def snapshot(self):
        with self._lock:
            return list(self.events)

    def owned(self):
        """Partitions owned now: assignments minus revocations (eager or incremental)."""
        owned = set()
        for e in self.snapshot():
            if e["event"] == "assigned":
                owned |= set(e["partitions"])
            elif e["event"] in ("revoked", "lost"):
                owned -= set(e["partitions"])
            elif e["event"] == "closed":
                owned = set()
        return owned

    def of(self, kind, since=0.0):
        return [e for e in self.snapshot() if e["event"] == kind and e["t"] >= since]

    def kill(self):
        """SIGKILL: no LeaveGroup, no commit."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout_s=30):
        """SIGTERM: the consumer closes (dynamic members leave the group)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=5)

    def alive(self):
        return self.proc.poll() is None


def librdkafka_member(name, broker, group, topic, log_dir, *overrides):
    cmd = [sys.executable, str(ROOT / "tests" / "group_member.py"),
           broker.bootstrap, group, topic, *overrides]
    return Member(name, cmd, log_dir)


def compile_java_member(out_dir):
    src = ROOT / "tests" / "java" / "GroupConsumer.java"
    subprocess.run(["javac", "-cp", f"{KAFKA_LIBS}/*", "-d", str(out_dir), str(src)],
                   check=True, capture_output=True, text=True)
    return out_dir


def java_member(name, classes, broker, group, topic, log_dir, *overrides):
    cmd = ["java", "-Xmx256m", "-cp", f"{classes}{os.pathsep}{KAFKA_LIBS}/*",
           "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
           "GroupConsumer", broker.bootstrap, group, topic, *overrides]
    return Member(name, cmd, log_dir)


def franz_member(name, broker, group, topic, log_dir):
    binary = ROOT / ".tools" / "franz-member"
    assert binary.exists(), "run tests/setup.sh first"
    return Member(name, [str(binary), broker.bootstrap, group, topic], log_dir)


def wait_until(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def assignment_exact(members, partitions):
    """Every partition owned by exactly one live member."""
    owned = [p for m in members for p in m.owned()]
    return sorted(owned) == list(range(partitions))


def produce(broker, topic, produced, per_partition):
    """Appends `per_partition` records to every partition; values are "p:i"."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for partition, values in produced.items():
        for _ in range(per_partition):
            value = f"{partition}:{len(values)}"
            values.append(value)
            p.produce(topic, value=value, partition=partition)
    assert p.flush(30) == 0


def consumed(members):
    return {e["value"] for m in members for e in m.of("record")}


def all_consumed(members, produced):
    wanted = {v for values in produced.values() for v in values}
    return wanted <= consumed(members)


def check_no_loss_no_duplicates(members, produced):
    """Every produced record was seen, and a record was seen twice only if the member
    that saw it first never committed past it (the uncommitted tail)."""
    wanted = {v for values in produced.values() for v in values}
    seen = consumed(members)
    assert wanted <= seen, f"records never consumed: {sorted(wanted - seen)[:20]}"
    occurrences = {}
    for m in members:
        events = m.snapshot()
        for i, e in enumerate(events):
            if e["event"] != "record":
                continue
            committed = any(later["event"] == "committed"
                            and later["partition"] == e["partition"]
                            and later["offset"] > e["offset"]
                            for later in events[i:])
            occurrences.setdefault(e["value"], []).append((e["t"], m.name, committed))
    for value, seen_by in occurrences.items():
        seen_by.sort()
        for t, name, committed in seen_by[:-1]:
            assert not committed, (
                f"{value} was committed by {name} and consumed again: {seen_by}")
