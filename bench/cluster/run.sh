#!/usr/bin/env bash
# Three brokers on this machine (RF=3, acks=all, idempotent, lz4, 1 KiB records):
# kafka-producer-perf-test and librdkafka at full speed and at 10,000 msg/s, idle
# CPU of one broker holding 300 partition replicas, kill -9 of a leader to the next
# acknowledged produce, and the catch-up of a wiped broker. Needs tests/setup.sh
# (venv, Kafka tools) and a release build; SLUICE_BIN overrides the binary.
# Arguments name the parts to run (perf idle failover); none runs all three.
set -u
PARTS=${*:-perf idle failover}
want() { [[ " $PARTS " == *" $1 "* ]]; }
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${SLUICE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice}
LIBS=$ROOT/.tools/kafka-libs
PY=$ROOT/.venv/bin/python
WORK=$(mktemp -d)
trap 'pkill -f "serve --node-id [123] .*$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

start_node() { # start_node I BASE DIR
    local i=$1 b=$2 d=$3
    local peers="1@127.0.0.1:$((b+100)),2@127.0.0.1:$((b+101)),3@127.0.0.1:$((b+102))"
    mkdir -p "$d/node-$i"
    "$BIN" serve --node-id "$i" --listen "127.0.0.1:$((b+i-1))" --raft-listen "127.0.0.1:$((b+100+i-1))" \
        --peers "$peers" --data-dir "$d/node-$i" --no-bootstrap >> "$d/node-$i.log" 2>&1 &
}
cluster() { # cluster BASE DIR: three brokers, waits for them
    for i in 1 2 3; do start_node "$i" "$1" "$2"; done
    sleep 4
}
stop_all() { pkill -f "serve --node-id [123] .*$WORK" ; sleep 2; pkill -9 -f "serve --node-id [123] .*$WORK"; }
topics() { # topics BOOTSTRAP PARTITIONS NAME...
    local bs=$1 n=$2; shift 2
    "$PY" - "$bs" "$n" "$@" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
bs, n, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
a = AdminClient({'bootstrap.servers': bs})
for t in names:
    a.create_topics([NewTopic(t, n, 3)], operation_timeout=60)[t].result(timeout=120)
PY
}

if want perf; then
B=39092; BS=127.0.0.1:$B,127.0.0.1:$((B+1)),127.0.0.1:$((B+2)); D=$WORK/perf
cluster $B "$D"
topics "$BS" 3 perf perf-rate rdk rdk-rate
perf() { java -Xmx512m -cp "$LIBS/*" org.apache.kafka.tools.ProducerPerformance --topic "$1" \
    --num-records "$2" --record-size 1024 --throughput "$3" --producer-props bootstrap.servers="$BS" \
    acks=all enable.idempotence=true compression.type=lz4 2>&1 | tail -1; }
echo "== kafka-producer-perf-test, full speed, 1M"; perf perf 1000000 -1
echo "== kafka-producer-perf-test, 10,000 msg/s, 300k"; perf perf-rate 300000 10000
echo "== librdkafka, full speed, 500k"; "$PY" bench/cluster/rdk_perf.py "$BS" rdk 500000 1024 0
echo "== librdkafka, 10,000 msg/s, 200k"; "$PY" bench/cluster/rdk_perf.py "$BS" rdk-rate 200000 1024 10000
stop_all
fi

if want idle; then
B=49092; BS=127.0.0.1:$B,127.0.0.1:$((B+1)),127.0.0.1:$((B+2)); D=$WORK/idle
cluster $B "$D"
topics "$BS" 10 $(for i in $(seq 0 29); do echo idle-$i; done)
sleep 20
PID=$(pgrep -f "serve --node-id 2 .*$D" | head -1)
t1=$(awk '{print $14+$15}' /proc/$PID/stat); sleep 30; t2=$(awk '{print $14+$15}' /proc/$PID/stat)
echo "== idle CPU of one broker with 300 partition replicas: $(awk -v d=$((t2 - t1)) 'BEGIN {printf "%.1f", d / 30}')% of a core"
stop_all
fi

if want failover; then
B=59092; BS=127.0.0.1:$B,127.0.0.1:$((B+1)),127.0.0.1:$((B+2)); D=$WORK/failover
cluster $B "$D"
echo "== kill -9 of a leader"; "$PY" bench/cluster/failover.py "$BS" 2>&1 | grep -v '^%'
for i in 1 2 3; do pgrep -f "serve --node-id $i .*$D" > /dev/null || start_node "$i" $B "$D"; done
sleep 5
"$PY" - "$BS" <<'PY' 2>&1 | grep -v '^%'
import os, sys, time
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
bs = sys.argv[1]
admin = AdminClient({'bootstrap.servers': bs})
admin.create_topics([NewTopic('cu', 3, 3)])['cu'].result(timeout=60)
time.sleep(2)
p = Producer({'bootstrap.servers': bs, 'acks': 'all', 'linger.ms': 5, 'queue.buffering.max.kbytes': 1048576})
payloads = [os.urandom(1024) for _ in range(1000)]
for i in range(200000):
    while True:
        try:
            p.produce('cu', value=payloads[i % 1000]); break
        except BufferError:
            p.poll(0.01)
    p.poll(0)
p.flush(120)
PY
pkill -9 -f "serve --node-id 3 .*$D"; sleep 0.5; rm -rf "$D/node-3"
size() { du -sb "$D/$1"/cu-* 2>/dev/null | awk '{s+=$1} END {print s+0}'; }
T=$(size node-1)
[ "$T" -gt 0 ] || { echo "catch-up: nothing was written"; exit 1; }
t0=$(date +%s.%N); start_node 3 $B "$D"
while [ "$(size node-3)" -lt "$T" ]; do sleep 0.2; done
t1=$(date +%s.%N)
echo "== wiped broker caught up $T bytes in $(echo "$t1 - $t0" | bc) s ($(echo "scale=1; $T / ($t1 - $t0) / 1000000" | bc) MB/s, from process start)"
stop_all
fi
