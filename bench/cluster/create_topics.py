"""Time to create topics on a running cluster: N topics of P partitions (RF 3),
one CreateTopics per topic, then N more in one request.

    .venv/bin/python bench/cluster/create_topics.py BOOTSTRAP N P
"""
import sys
import time

from confluent_kafka.admin import AdminClient, NewTopic


def main():
    bootstrap, n, parts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    t0 = time.time()
    for i in range(n):
        name = f"create-a{i}"
        admin.create_topics([NewTopic(name, parts, 3)], operation_timeout=120)[name].result(timeout=180)
    t1 = time.time()
    futures = admin.create_topics([NewTopic(f"create-b{i}", parts, 3) for i in range(n)],
                                  operation_timeout=120)
    for f in futures.values():
        f.result(timeout=300)
    t2 = time.time()
    per = (t1 - t0) / (n * parts) * 1000
    print(f"{n} topics x {parts} partitions one by one: {t1 - t0:.1f} s ({per:.0f} ms/partition); "
          f"{n} more in one request: {t2 - t1:.1f} s")


if __name__ == "__main__":
    main()
