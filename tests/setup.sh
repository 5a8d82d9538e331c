#!/usr/bin/env bash
# Installs what the integration tests need on a fresh machine. Idempotent.
#   - kcat (Debian package)
#   - a Python venv in .venv with confluent-kafka (librdkafka) and pytest
#   - the Apache Kafka Java client and CLI tools in .tools/kafka-libs (Maven Central)
#   - a franz-go consumer-group member in .tools/franz-member (Go module proxy)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kcat >/dev/null; then
    echo "setup: installing kcat"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kcat >/dev/null
fi

if [ ! -x .venv/bin/pytest ] || ! .venv/bin/python -c 'import confluent_kafka' 2>/dev/null; then
    echo "setup: creating the Python venv"
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r tests/requirements.txt
fi

if [ ! -f .tools/kafka-libs/.complete ] || [ tests/java/pom.xml -nt .tools/kafka-libs/.complete ]; then
    echo "setup: resolving Kafka Java client and tools from Maven Central"
    mkdir -p .tools/kafka-libs
    mvn -q -f tests/java/pom.xml dependency:copy-dependencies \
        -DoutputDirectory="$PWD/.tools/kafka-libs" -DincludeScope=runtime
    touch .tools/kafka-libs/.complete
fi
if [ ! -x .tools/franz-member ] || [ tests/franz/main.go -nt .tools/franz-member ]; then
    echo "setup: building the franz-go group member"
    mkdir -p .tools
    (cd tests/franz && go build -o ../../.tools/franz-member .)
fi
echo "setup: done"
