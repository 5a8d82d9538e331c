# librdkafka producer: N records of SIZE bytes, acks=all, idempotent, lz4;
# rate 0 = unthrottled. Prints records/s, MB/s and delivery latency percentiles.
import sys, time
from confluent_kafka import Producer
boot, topic, n, size, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
p = Producer({'bootstrap.servers': boot, 'acks': 'all', 'enable.idempotence': True,
              'compression.type': 'lz4', 'linger.ms': 5, 'queue.buffering.max.messages': 1000000,
              'queue.buffering.max.kbytes': 1048576})
lat = []
payload = bytes(size)
def cb(err, msg, t0):
    if err is None:
        lat.append(time.monotonic() - t0)
start = time.monotonic()
for i in range(n):
    if rate:
        due = start + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
    t0 = time.monotonic()
    while True:
        try:
            p.produce(topic, value=payload, on_delivery=lambda e, m, t0=t0: cb(e, m, t0)); break
        except BufferError:
            p.poll(0.001)
    p.poll(0)
p.flush(120)
el = time.monotonic() - start
lat.sort()
q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000
print(f"librdkafka: {len(lat)} acked of {n}, {len(lat)/el:.0f} rec/s, {len(lat)*size/el/1e6:.1f} MB/s, "
      f"p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, p99.9 {q(0.999):.1f} ms, max {lat[-1]*1000:.1f} ms")
