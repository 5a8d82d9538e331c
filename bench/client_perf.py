#!/usr/bin/env python3
"""Produce and consume throughput of one librdkafka client (confluent-kafka) against a
Sluice broker, and the broker's resident memory idle and under that load.

Starts its own broker from SLUICE_BIN (default target/release/sluice) on a free
loopback port with a fresh data dir, unless --bootstrap names a running one.

    .venv/bin/python bench/client_perf.py --records 500000 --record-size 1024
"""

import argparse
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = pathlib.Path(__file__).resolve().parent.parent


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.05)


def start_broker(data_dir, *extra_args):
    binary = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "release" / "sluice"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}",
                             "--data-dir", str(data_dir), "--no-bootstrap", *extra_args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("broker did not start")


def produce(bootstrap, topic, records, size, acks, compression="none"):
    if compression == "none":
        payload = os.urandom(size)
    else:
        # Half random hex, half repetitive text: compresses about 3:1, like JSON events.
        payload = (os.urandom(size // 4).hex() + '"status":"CREATED",' * size)[:size].encode()
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
                  "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000,
                  "compression.type": compression})
    failed = []

    def report(err, _msg):
        if err is not None:
            failed.append(err)

    start = time.perf_counter()
    for i in range(records):
        while True:
            try:
                p.produce(topic, payload, key=str(i % 1000).encode(), on_delivery=report)
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(120)
    elapsed = time.perf_counter() - start
    if failed:
        sys.exit(f"{len(failed)} produce errors, first: {failed[0]}")
    return elapsed


def consume(bootstrap, topic, partitions, records):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench",
                  "enable.auto.commit": False, "fetch.max.bytes": 52428800,
                  "max.partition.fetch.bytes": 10485760})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, start = 0, time.perf_counter()
    while got < records:
        for m in c.consume(num_messages=100_000, timeout=1.0):
            if m.error() and m.error().code() != KafkaError._PARTITION_EOF:
                sys.exit(f"consume error: {m.error()}")
            if not m.error():
                got += 1
    elapsed = time.perf_counter() - start
    c.close()
    return elapsed


def consume_kcat(bootstrap, topic, records, size):
    """The same read with kcat (librdkafka in C, no Python per-message cost)."""
    if not shutil.which("kcat"):
        return None
    start = time.perf_counter()
    out = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                          "-X", "fetch.max.bytes=52428800", "-f", "%o\\n"],
                         capture_output=True, check=True)
    elapsed = time.perf_counter() - start
    got = out.stdout.count(b"\n")
    if got != records:
        sys.exit(f"kcat read {got} of {records} records")
    return elapsed


def line(kind, records, size, elapsed):
    mb = records * size / elapsed / (1 << 20)
    return f"{kind}: {records} records, {records / elapsed:,.0f} records/sec ({mb:.1f} MB/sec)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--bootstrap", help="use a running broker (no RSS figures)")
    ap.add_argument("--reencode", action="store_true",
                    help="also compare gzip produce into a compression.type=producer topic "
                         "(stored as sent) with an lz4 topic (re-encoded by the broker)")
    args = ap.parse_args()

    data_dir, proc = None, None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        data_dir = pathlib.Path(tempfile.mkdtemp(prefix="sluice-bench-"))
        proc, bootstrap = start_broker(data_dir)
        time.sleep(1)
        print(f"broker idle RSS: {rss_kib(proc.pid) / 1024:.1f} MiB")
    sampler = RssSampler(proc.pid) if proc else None
    if sampler:
        sampler.start()
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for acks in ("1", "all"):
            topic = f"bench-acks-{acks}"
            admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(30)
            elapsed = produce(bootstrap, topic, args.records, args.record_size, acks)
            print(line(f"produce acks={acks}", args.records, args.record_size, elapsed))
            elapsed = consume(bootstrap, topic, args.partitions, args.records)
            print(line(f"consume (acks={acks} topic)", args.records, args.record_size, elapsed))
            elapsed = consume_kcat(bootstrap, topic, args.records, args.record_size)
            if elapsed:
                print(line(f"consume with kcat (acks={acks} topic)", args.records, args.record_size, elapsed))
        if args.reencode:
            for kind in ("producer", "lz4"):
                topic = f"bench-gzip-into-{kind}"
                admin.create_topics([NewTopic(topic, args.partitions, 1,
                                              config={"compression.type": kind})])[topic].result(30)
                elapsed = produce(bootstrap, topic, args.records, args.record_size, "1", "gzip")
                label = "passthrough" if kind == "producer" else "re-encoded to lz4"
                print(line(f"produce gzip, acks=1, {label}", args.records, args.record_size, elapsed))
        if sampler:
            sampler.running = False
            sampler.join()
            print(f"broker peak RSS under load: {sampler.peak / 1024:.1f} MiB")
            time.sleep(2)
            print(f"broker RSS after load: {rss_kib(proc.pid) / 1024:.1f} MiB")
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
