#!/usr/bin/env bash
# Starts the Kafka-protocol broker the Kafka backend's tests use — tansu (crates.io,
# Apache-2.0) on SQLite storage, built once into ~/.cargo/bin (about 11 minutes on 2 cores) —
# unless one already answers, and prints its address (host:port) on stdout; everything else
# goes to stderr. Its data lives in ${SLUICE_TANSU_DIR:-/tmp/sluice-tansu}, emptied when it starts.
set -euo pipefail
port=${SLUICE_TANSU_PORT:-19092}
dir=${SLUICE_TANSU_DIR:-/tmp/sluice-tansu}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

if ! answers; then
  if ! command -v tansu >/dev/null; then
    echo "building tansu (once; about 11 minutes)" >&2
    cargo install --locked --quiet tansu --version 0.6.0 --features dynostore,libsql >&2
  fi
  mkdir -p "$dir"
  # A fresh store each start: tests name their topics per run and never read an earlier run's,
  # and tansu's SQLite storage slows down as it grows (1.3 GB of old topics made metadata
  # requests time out).
  rm -f "$dir"/tansu.db "$dir"/tansu.db-wal "$dir"/tansu.db-shm
  # Detached, in a session of its own, holding none of this shell's descriptors (a caller
  # reading this script's output through a pipe would otherwise wait for the broker to exit).
  python3 - "$dir" "$port" <<'PY'
import subprocess, sys
directory, port = sys.argv[1], sys.argv[2]
listener = f"tcp://127.0.0.1:{port}"
with open(f"{directory}/broker.log", "ab") as log:
    subprocess.Popen(
        ["tansu", "broker", "--listener-url", listener, "--advertised-listener-url", listener,
         "--storage-engine", "sqlite://tansu.db"],
        cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        close_fds=True, start_new_session=True)
PY
  for _ in $(seq 1 100); do
    answers && break
    sleep 0.1
  done
  answers || { echo "tansu did not start on port $port: see $dir/broker.log" >&2; exit 1; }
fi
echo "127.0.0.1:$port"
