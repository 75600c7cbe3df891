#!/usr/bin/env bash
# Starts the PostgreSQL server the tests use (installing it on a Debian machine that lacks it),
# makes their role and database, and prints their URL on stdout (everything else goes to
# stderr). Idempotent: run it as often as you like. scripts/test.sh exports the URL as
# SLUICE_TEST_POSTGRES; the PostgreSQL store's tests fail without it.
set -euo pipefail

as_postgres() {
  if [ "$(id -u)" = 0 ]; then su postgres -c "$*"; else sudo -u postgres sh -c "$*"; fi
}

if ! command -v pg_lsclusters >/dev/null; then
  echo "installing PostgreSQL (Debian's postgresql package)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
  else sudo apt-get update -qq >&2 && sudo apt-get install -y -qq postgresql >&2; fi
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$version main"; then
  if [ "$(id -u)" = 0 ]; then pg_createcluster "$version" main >&2; else sudo pg_createcluster "$version" main >&2; fi
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
  if [ "$(id -u)" = 0 ]; then pg_ctlcluster "$version" main start >&2; else sudo pg_ctlcluster "$version" main start >&2; fi
fi
for _ in $(seq 1 50); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.2
done
pg_isready -q -h 127.0.0.1 -p "$port" || { echo "PostgreSQL $version did not start on port $port: see /var/log/postgresql/" >&2; exit 1; }

as_postgres "psql -q -p $port -v ON_ERROR_STOP=1 -c \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sluice_test') THEN CREATE ROLE sluice_test LOGIN PASSWORD 'sluice_test'; END IF; END \\\$\\\$;\"" >&2
if ! as_postgres "psql -p $port -tAc \"SELECT 1 FROM pg_database WHERE datname = 'sluice_test'\"" | grep -q 1; then
  as_postgres "createdb -p $port -O sluice_test sluice_test" >&2
fi
echo "postgres://sluice_test:sluice_test@127.0.0.1:$port/sluice_test"
