#!/usr/bin/env bash
# API list benchmark: answer time of the agent's `GET /api/v1/apps` (what the dashboard's
# overview loads) with APPS apps, each synced for real (its own namespace and ConfigMap)
# on the project's test bed, measured with curl from the same machine.
#
#   bench/api-list.sh                # APPS=1000 RUNS=50
#   APPS=200 RUNS=20 bench/api-list.sh
#
# Parameters (environment):
#   APPS     apps in the agent's ferry.yaml                                   [1000]
#   RUNS     measured requests per query (after 5 warm-up requests)          [50]
#   PROFILE  release or debug build of ferry                                  [release]
#   SYNC_TIMEOUT  seconds to wait for every app to be Synced                  [600]
#
# Queries: the whole list (limit=1000), a page (limit=100&offset=500), a search (q=) and
# a state filter (sync=Synced&health=Current). Prints median, p95 and max answer time in
# ms (curl's time_total), the agent's CPU time per answer (from /proc, so other load on
# the machine does not count) and the answer size; the list must answer well under 100 ms. Starts its own test bed (state
# $HOME/.cache/ferry/testbed-bench-api) and agent, and stops both on exit.
set -euo pipefail

APPS=${APPS:-1000}
RUNS=${RUNS:-50}
PROFILE=${PROFILE:-release}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-600}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}
export FERRY_TESTBED_STATE=$HOME/.cache/ferry/testbed-bench-api
TOKEN=bench-operator-token-$RANDOM$RANDOM$RANDOM

log() { echo "[api-list] $*" >&2; }

WORK=$(mktemp -d)
AGENT_PID=""
cleanup() {
  if [ -n "$AGENT_PID" ]; then kill "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; fi
  "$ROOT/testbed/down" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$PROFILE" = release ]; then
  log "building ferry (release) from the working tree"
  (cd "$ROOT" && cargo build --release -p ferry) >&2
else
  (cd "$ROOT" && cargo build -p ferry) >&2
fi
FERRY=$CARGO_TARGET_DIR/$PROFILE/ferry

log "starting a test bed"
eval "$("$ROOT/testbed/up")"

# One repository, one ConfigMap; each app syncs it into its own namespace.
mkdir -p "$WORK/repo/app"
cat > "$WORK/repo/app/cfg.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  greeting: hello
EOF
git -C "$WORK/repo" init --quiet --initial-branch=main
git -C "$WORK/repo" add --all
git -C "$WORK/repo" -c user.name=bench -c user.email=bench@ferry.invalid -c commit.gpgsign=false \
  commit --quiet -m "bench: one ConfigMap"
{
  echo "apps:"
  for i in $(seq -f %04g 0 $((APPS - 1))); do
    cat <<EOF
  - name: app-$i
    source: {repo: "$WORK/repo", path: app}
    destination: {namespace: bench-api-$i, createNamespace: true}
    interval: 1h
EOF
  done
} > "$WORK/ferry.yaml"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
log "starting ferry agent with $APPS apps on $URL"
FERRY_CACHE=$WORK/cache FERRY_CONTEXT=ferry-testbed "$FERRY" agent --file "$WORK/ferry.yaml" \
  --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --token "operator:$TOKEN" \
  > "$WORK/agent.log" 2>&1 &
AGENT_PID=$!

get() { curl -sf -H "Authorization: Bearer $TOKEN" "$URL$1"; }
start=$SECONDS
until get /healthz >/dev/null 2>&1; do
  kill -0 "$AGENT_PID" 2>/dev/null || { cat "$WORK/agent.log" >&2; exit 1; }
  sleep 0.2
done
synced=0
while :; do
  synced=$(get "/api/v1/apps?sync=Synced&limit=0" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
  [ "$synced" -ge "$APPS" ] && break
  if [ $((SECONDS - start)) -ge "$SYNC_TIMEOUT" ]; then
    log "only $synced of $APPS apps Synced after ${SYNC_TIMEOUT}s; measuring anyway"
    break
  fi
  sleep 2
done
log "$synced of $APPS apps Synced after $((SECONDS - start)) s"

# CPU time (user + system) the agent has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$AGENT_PID/stat"; }
TICKS=$(getconf CLK_TCK)

measure() {
  local name=$1 path=$2
  for _ in 1 2 3 4 5; do get "$path" >/dev/null; done
  local times=() before after
  before=$(cpu_ticks)
  for _ in $(seq "$RUNS"); do
    times+=("$(curl -sf -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $TOKEN" "$URL$path")")
  done
  after=$(cpu_ticks)
  local size items
  size=$(get "$path" | wc -c)
  items=$(get "$path" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
  printf '%s\n' "${times[@]}" | python3 -c "
import sys, statistics
t = sorted(float(x) * 1000 for x in sys.stdin)
p95 = t[min(len(t) - 1, int(round(0.95 * (len(t) - 1))))]
cpu = (int(sys.argv[5]) - int(sys.argv[6])) * 1000 / int(sys.argv[7]) / len(t)
print(f'| {sys.argv[1]} | \`{sys.argv[2]}\` | {sys.argv[3]} | {int(sys.argv[4]) // 1024} KiB | {statistics.median(t):.1f} | {p95:.1f} | {t[-1]:.1f} | {cpu:.1f} |')
" "$name" "$path" "$items" "$size" "$after" "$before" "$TICKS"
}

echo
echo "$APPS apps ($synced Synced), $RUNS requests per query, ferry $PROFILE build, $(nproc) cores," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| query | path | items | size | median ms | p95 ms | max ms | agent CPU ms/answer |"
echo "|---|---|---|---|---|---|---|---|"
measure "whole list" "/api/v1/apps?limit=1000"
measure "one page" "/api/v1/apps?limit=100&offset=500"
measure "search" "/api/v1/apps?q=app-09&limit=1000"
measure "state filter" "/api/v1/apps?sync=Synced&health=Current&limit=1000"
