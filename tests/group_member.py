"""A consumer-group member process for tests (librdkafka via confluent-kafka).

Usage: group_member.py BOOTSTRAP GROUP TOPIC [config.key=value ...]

Subscribes and prints one JSON line per event: assigned / revoked / lost (partition
lists), record (partition, offset, value), committed (partition, next offset). Each
record is committed synchronously after it is printed. SIGTERM closes the consumer,
which leaves the group; SIGKILL does not.
"""

import json
import signal
import sys

from confluent_kafka import Consumer, KafkaException


def emit(**event):
    print(json.dumps(event), flush=True)


def main():
    bootstrap, group, topic, *overrides = sys.argv[1:]
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    }
    for kv in overrides:
        key, value = kv.split("=", 1)
        config[key] = value
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    consumer = Consumer(config)

    def partitions(ps):
        return sorted(p.partition for p in ps)

    consumer.subscribe(
        [topic],
        on_assign=lambda _c, ps: emit(event="assigned", partitions=partitions(ps)),
        on_revoke=lambda _c, ps: emit(event="revoked", partitions=partitions(ps)),
        on_lost=lambda _c, ps: emit(event="lost", partitions=partitions(ps)),
    )
    emit(event="started")
    while running[0]:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            emit(event="error", error=str(msg.error()))
            continue
        emit(event="record", partition=msg.partition(), offset=msg.offset(),
             value=msg.value().decode())
        try:
            consumer.commit(message=msg, asynchronous=False)
            emit(event="committed", partition=msg.partition(), offset=msg.offset() + 1)
        except KafkaException as e:
            emit(event="commit_failed", partition=msg.partition(), error=str(e))
    consumer.close()
    emit(event="closed")


if __name__ == "__main__":
    main()
