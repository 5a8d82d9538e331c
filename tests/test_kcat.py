"""kcat (Debian's, librdkafka 2.0) against Sluice."""

import subprocess


def kcat(*args, input_text=None, timeout_s=60):
    return subprocess.run(["kcat", *args], input=input_text, capture_output=True,
                          text=True, timeout=timeout_s)


def test_kcat_lists_broker_and_topics(broker):
    r = kcat("-b", broker.bootstrap, "-P", "-t", "notifications.email", input_text="hello\n")
    assert r.returncode == 0, r.stderr
    r = kcat("-b", broker.bootstrap, "-L")
    assert r.returncode == 0, r.stderr
    assert f"broker 0 at {broker.bootstrap}" in r.stdout
    assert 'topic "notifications.email" with 1 partitions' in r.stdout


def test_kcat_produce_consume_roundtrip(broker):
    lines = [f"key{i}:value {i}" for i in range(500)]
    r = kcat("-b", broker.bootstrap, "-P", "-t", "delivery.events", "-K:", "-z", "lz4",
             input_text="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    r = kcat("-b", broker.bootstrap, "-C", "-t", "delivery.events", "-o", "beginning", "-e",
             "-f", "%k:%s\\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == lines
