#!/usr/bin/env bash
# The dashboard's speed in a real Chromium: the first chart of a 24 h × 1-minute metric with 10
# keys (14,400 points), and redrawing it while live updates arrive (bench/dashboard.mjs says
# how). Builds the release binary, starts it on a temporary data dir and prints one JSON line.
#   scripts/bench-dashboard.sh [RUNS] [SCREENSHOT_DIR]     (RUNS: first-chart runs, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
shots="${2:-}"
browser_env="$(scripts/browser.sh)"
eval "$browser_env"
cargo build --release --locked --quiet
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
write="wk_bench_dashboard_$RANDOM$RANDOM"
read_key="rk_bench_dashboard_$RANDOM$RANDOM"
admin="ak_bench_dashboard_$RANDOM$RANDOM"
cat > "$dir/sluice.toml" <<TOML
admin-keys = ["$admin"]
[[tenants]]
name = "bench"
write-keys = ["$write"]
read-keys = ["$read_key"]
requests-per-second = 0
[[metrics]]
sql = """CREATE METRIC pages AS SELECT properties.url AS url, COUNT(*) AS views,
  COUNT(DISTINCT user_id) AS users FROM events WHERE event = 'Page Viewed'
  GROUP BY url, TUMBLE(timestamp, INTERVAL '1' MINUTE)"""
TOML
target/release/sluice serve --config "$dir/sluice.toml" --data-dir "$dir/data" \
  --listen 127.0.0.1:0 > "$dir/out" 2> "$dir/err" &
pid=$!
for _ in $(seq 100); do
  addr="$(sed -n 's|^sluice listening on ||p' "$dir/out")"
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$dir/err"; exit 1; }
node bench/dashboard.mjs "$addr" "$write" "$read_key" "$admin" "$runs" ${shots:+"$shots"}
