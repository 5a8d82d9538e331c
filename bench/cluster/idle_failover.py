"""Failover of idle (quiet) partitions: on a running three-broker cluster whose
brokers were started as in bench/cluster/run.sh (client ports BASE..BASE+2, data
directories under DIR), creates 3 topics x 10 partitions (RF 3), waits until they
are idle for longer than the quiet delay, kill -9s the broker leading the most of
them and reports when every partition is led elsewhere (Metadata from another
broker) and when one acks=all record to each partition is acknowledged.

    .venv/bin/python bench/cluster/idle_failover.py BASE DIR
"""
import subprocess
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

TOPICS = ["idle-a", "idle-b", "idle-c"]


def leaders(admin):
    md = admin.list_topics(timeout=5)
    return {(t, p): pm.leader for t in TOPICS for p, pm in md.topics[t].partitions.items()}


def main():
    base, data_dir = int(sys.argv[1]), sys.argv[2]
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{base}"})
    for t in TOPICS:
        admin.create_topics([NewTopic(t, 10, 3)], operation_timeout=60)[t].result(timeout=120)
    time.sleep(12)  # idle for longer than the 5 s quiet delay
    before = leaders(admin)
    victim = max((1, 2, 3), key=lambda b: sum(1 for v in before.values() if v == b))
    led = sum(1 for v in before.values() if v == victim)
    pid = subprocess.check_output(["pgrep", "-f", f"serve --node-id {victim} .*{data_dir}"]).split()[0]
    other = next(b for b in (1, 2, 3) if b != victim)
    bootstrap = f"127.0.0.1:{base + other - 1}"
    watcher = AdminClient({"bootstrap.servers": bootstrap})
    t0 = time.time()
    subprocess.call(["kill", "-9", pid])
    while True:
        try:
            if all(v not in (victim, -1) for v in leaders(watcher).values()):
                break
        except Exception:
            pass
        time.sleep(0.05)
    moved = time.time() - t0
    acked = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for t in TOPICS:
        for p in range(10):
            producer.produce(t, value=b"x", partition=p,
                             on_delivery=lambda err, _m: acked.append(err is None))
    producer.flush(30)
    print(f"broker {victim} led {led} idle partitions; all led elsewhere after {moved:.2f} s; "
          f"{sum(acked)}/{len(TOPICS) * 10} acknowledged after {time.time() - t0:.2f} s")


if __name__ == "__main__":
    main()
