#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs or starts what the tests need, then runs
# the quality gates and every test. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install "$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "python: Segment's SDK, Confluent's clients and DuckDB for the compatibility tests"
command -v python3 >/dev/null || { echo "python3 is required (Debian: apt-get install python3 python3-venv)"; exit 1; }
venv="target/test-python"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c "import segment.analytics" 2>/dev/null \
  || "$venv/bin/pip" install --quiet --disable-pip-version-check "segment-analytics-python==2.4.0"
"$venv/bin/python" -c "import confluent_kafka.schema_registry.avro, confluent_kafka.schema_registry.json_schema" 2>/dev/null \
  || "$venv/bin/pip" install --quiet --disable-pip-version-check "confluent-kafka[avro,json,schemaregistry]==2.16.2"
"$venv/bin/python" -c "import duckdb" 2>/dev/null \
  || "$venv/bin/pip" install --quiet --disable-pip-version-check "duckdb==2.0.1"
export SLUICE_TEST_PYTHON="$PWD/$venv/bin/python"

step "browser: Chromium, node and Segment's browser SDK for the browser tests"
# Debian's Chromium (playwright-core drives it; no browser is downloaded) and node for the
# driver; the npm packages are pinned by the lock file and installed outside the work tree.
browser_env="$(scripts/browser.sh)"
eval "$browser_env"

step "postgres: the server the PostgreSQL store's tests use"
SLUICE_TEST_POSTGRES="$(scripts/postgres.sh)"
export SLUICE_TEST_POSTGRES

step "kafka: the broker the Kafka backend's tests use (tansu; built once into ~/.cargo/bin)"
SLUICE_TEST_KAFKA="$(scripts/kafka.sh)"
export SLUICE_TEST_KAFKA

step "s3: the S3-protocol servers the archive's S3 tests use (moto's server mode, from PyPI)"
s3_env="$(scripts/s3.sh)"
eval "$s3_env"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo machete (no unused dependencies)"
# Installed once into ~/.cargo/bin (outside the work tree), so later runs start at once.
command -v cargo-machete >/dev/null || cargo install --locked --quiet cargo-machete@0.9.2
cargo machete

step "cargo clippy --all-targets -- -D warnings"
# The Kafka backend (feature `kafka` of sluice-log) is in the default build of the binary, so
# the workspace's features include it.
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
# This includes the log contract against the broker (the workspace's features include `kafka`)
# and the three-node cluster test on the broker and PostgreSQL.
cargo test --workspace --locked
