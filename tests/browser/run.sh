#!/usr/bin/env bash
# Browser tests of the dashboard: installs Chromium if missing, installs playwright-core
# (npm ci), builds ferry, starts a test bed unless KUBECONFIG already reaches one, runs
# `node --test`, and exits non-zero when a test fails. Screenshots: artifacts/browser/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
  echo "[browser] installing chromium" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y chromium || { $sudo apt-get update && $sudo apt-get install -y chromium; }
fi

echo "[browser] npm ci" >&2
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

echo "[browser] cargo build -p ferry" >&2
(cd "$root" && cargo build -p ferry)
export FERRY_BIN="$CARGO_TARGET_DIR/debug/ferry"

started=""
stop() { if [ -n "$started" ]; then "$root/testbed/down" || true; fi; }
trap stop EXIT
if [ -z "${KUBECONFIG:-}" ] || ! kubectl --context ferry-testbed version --request-timeout=5s >/dev/null 2>&1; then
  export FERRY_TESTBED_STATE=${FERRY_TESTBED_STATE:-$HOME/.cache/ferry/testbed-browser}
  echo "[browser] starting a test bed ($FERRY_TESTBED_STATE)" >&2
  eval "$("$root/testbed/up")"
  started=1
fi

cd "$here"
node --test --test-concurrency=1 --test-reporter=spec dashboard.test.mjs
