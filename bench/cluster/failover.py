# Time from kill -9 of partition 0's leader to the first successful produce to it.
import os, signal, subprocess, sys, time, threading
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
bs = sys.argv[1]
a = AdminClient({'bootstrap.servers': bs})
a.create_topics([NewTopic('fo', 1, 3)])['fo'].result(timeout=60)
time.sleep(2)
p = Producer({'bootstrap.servers': bs, 'acks': 'all', 'enable.idempotence': True, 'linger.ms': 0,
              'message.timeout.ms': 60000})
ok = []
def cb(err, msg):
    if err is None: ok.append(time.monotonic())
stop = False
def run():
    while not stop:
        p.produce('fo', value=b'x' * 100, partition=0, on_delivery=cb); p.poll(0); time.sleep(0.002)
    p.flush(60)
t = threading.Thread(target=run); t.start()
time.sleep(3)
leader = a.list_topics('fo', timeout=5).topics['fo'].partitions[0].leader
pid = int(subprocess.check_output(['pgrep', '-f', f'serve --node-id {leader} ']).split()[0])
os.kill(pid, signal.SIGKILL); killed = time.monotonic()
time.sleep(15); stop = True; t.join()
after = [x for x in ok if x > killed + 0.05]
print(f"kill -9 of leader {leader}: first produce acknowledged {after[0]-killed:.2f} s later" if after else "no produce after the kill")
