#!/usr/bin/env python3
"""How long N librdkafka consumers that join one group at once take to converge: from
the first subscribe until every member has its assignment, and how many assignments
each saw (1 = one generation).

Starts its own broker (SLUICE_BIN, default target/release/sluice) with
`group_initial_rebalance_delay_ms` set as asked (Kafka's default is 3000 ms).

    .venv/bin/python bench/group_converge.py --members 10 --partitions 10 --delay-ms 3000
"""

import argparse
import pathlib
import shutil
import tempfile
import time

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from client_perf import start_broker


def converge(bootstrap, members, topic, group):
    assigned = {i: [] for i in range(members)}
    consumers = []
    start = time.monotonic()
    for i in range(members):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
        c.subscribe([topic], on_assign=lambda _c, ps, i=i: assigned[i].append(len(ps)))
        consumers.append(c)
    while not all(assigned.values()):
        for c in consumers:
            c.poll(0.005)
    elapsed = time.monotonic() - start
    settle = time.monotonic() + 2
    while time.monotonic() < settle:
        for c in consumers:
            c.poll(0.01)
    generations = max(len(a) for a in assigned.values())
    for c in consumers:
        c.close()
    return elapsed, generations


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=10)
    ap.add_argument("--delay-ms", type=int, default=3000,
                    help="group_initial_rebalance_delay_ms")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="sluice-group-bench-"))
    config = tmp / "sluice.toml"
    config.write_text(f"[group_coordinator]\ngroup_initial_rebalance_delay_ms = {args.delay_ms}\n")
    proc, bootstrap = start_broker(tmp / "data", "--config", str(config))
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("converge", args.partitions, 1)])["converge"].result()
        for run in range(args.runs):
            elapsed, generations = converge(bootstrap, args.members, "converge", f"g{run}")
            print(f"{args.members} members, {args.partitions} partitions, initial delay "
                  f"{args.delay_ms} ms: converged in {elapsed:.2f} s, "
                  f"{generations} assignment(s) per member at most")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
