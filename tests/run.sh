#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (kcat, a Python venv with confluent-kafka, the Kafka Java tools), checks formatting
# and lints, runs the Rust tests, builds the release broker and runs the integration
# tests that drive it with real Kafka clients.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "setup"
bash tests/setup.sh
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "cargo build --release"
cargo build --release --locked -p sluice-broker
export SLUICE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/sluice"

step "integration tests (librdkafka, kcat, Java client and tools)"
.venv/bin/pytest -q -p no:cacheprovider tests/
