#!/usr/bin/env bash
# Chromium, node and the browser tests' npm packages, for the browser tests and the dashboard
# benchmark: installs what is missing (Debian's chromium, nodejs and npm; the npm packages pinned
# by crates/sluice/tests/browser/package-lock.json, into target/test-browser, outside the work
# tree's sources) and prints the three variables that point at them, for `eval` (assigned
# first, so that a failure stops a `set -e` script):
#   browser_env="$(scripts/browser.sh)"; eval "$browser_env"
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
src="crates/sluice/tests/browser"
dir="target/test-browser"
if ! cmp -s "$src/package-lock.json" "$dir/package-lock.json" || [ ! -d "$dir/node_modules" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  # No install scripts: esbuild's binary comes in its platform package, and playwright-core
  # downloads nothing.
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
fi
echo "export SLUICE_TEST_CHROMIUM='$(command -v chromium)'"
echo "export SLUICE_TEST_NODE='$(command -v node)'"
echo "export SLUICE_TEST_BROWSER_MODULES='$PWD/$dir/node_modules'"
