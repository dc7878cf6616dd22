#!/usr/bin/env bash
# The demo, unattended: builds ferry and the local test bed (a real control plane with
# kwok nodes), puts examples/llm-app in a fresh Git repository, previews a change in push
# mode, then runs `ferry agent` with the app set (dev, staging, production) and shows a
# commit reaching the cluster, a manual kubectl edit healed, and `ferry promote`.
# Leaves the test bed running and says how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
root=$PWD

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# wait_for <seconds> <description> <command...>: polls until the command succeeds.
wait_for() {
  local limit=$1 what=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start > limit)); then
      echo "demo: timed out after ${limit}s waiting for $what; agent log: $log" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    sleep 1
  done
  echo "   ($what after $((SECONDS - start)) s)"
}

scripts/setup.sh
say "building ferry and the test bed (first run: ~20 min of Go builds, cached afterwards)"
cargo build --release -p ferry
ferry="$CARGO_TARGET_DIR/release/ferry"
export FERRY_TESTBED_STATE="$FERRY_CACHE/testbed-demo"
eval "$(testbed/up)"
"$ferry" cluster-info

say "a Git repository holding examples/llm-app"
repo="$FERRY_CACHE/demo/llm-app"
rm -rf "$repo" && mkdir -p "$repo" && cp -r examples/llm-app/. "$repo/"
cd "$repo"
git init -q -b main
git add -A && git -c user.name=demo -c user.email=demo@ferry.dev commit -qm "llm-app: first release"
commit() { git -c user.name=demo -c user.email=demo@ferry.dev commit -qam "$1"; git rev-parse --short HEAD; }
export FERRY_CACHE="$FERRY_CACHE/demo/cache"

say "ferry apps: the app set expands to one app per environment"
"$ferry" apps -f appset.yaml

say "push mode: ferry diff llm-dev (exit 1 = changes pending)"
"$ferry" diff llm-dev -f appset.yaml | tail -n 3 || true

say "pull mode: ferry agent with the app set"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export FERRY_SERVER="http://127.0.0.1:$port"
log="$FERRY_CACHE/agent.log"
mkdir -p "$FERRY_CACHE"
"$ferry" agent -f appset.yaml --listen "127.0.0.1:$port" --data-dir "$FERRY_CACHE/agent" >"$log" 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null || true' EXIT
all_healthy() {
  "$ferry" get apps -o json | python3 -c '
import json, sys
apps = json.load(sys.stdin)["items"]
sys.exit(0 if len(apps) == 3 and all(a["sync"] == "Synced" and a["health"] == "Current" for a in apps) else 1)'
}
wait_for 180 "dev, staging and production Synced and Healthy" all_healthy
"$ferry" get apps
echo "   dashboard and API: $FERRY_SERVER   metrics: $FERRY_SERVER/metrics"

say "a commit to infra/dev: LOG_LEVEL=INFO"
sed -i 's/LOG_LEVEL=DEBUG/LOG_LEVEL=INFO/' infra/dev/kustomization.yaml
sha=$(commit "dev: log at INFO")
dev_at() { "$ferry" get app llm-dev -o json | grep -q "\"revision\": \"$sha"; }
wait_for 60 "commit $sha applied to llm-dev" dev_at
kubectl -n llm-dev get configmap -o name | sed 's/^/   /'

say "a manual change: kubectl scale deployment llm-app --replicas=5 in llm-staging"
kubectl -n llm-staging scale deployment llm-app --replicas=5
healed() { [ "$(kubectl -n llm-staging get deployment llm-app -o jsonpath='{.spec.replicas}')" = 2 ]; }
wait_for 30 "drift detected and healed back to 2 replicas" healed
"$ferry" history llm-staging | head -n 4

say "ferry promote llm --from dev --to staging: copy dev's image tag to staging and commit"
"$ferry" promote llm --from dev --to staging -f appset.yaml
staging_tag() { kubectl -n llm-staging get deployment llm-app -o jsonpath='{.spec.template.spec.containers[0].image}' | grep -q ':0.3.0$'; }
wait_for 60 "staging running registry.example/llm-app:0.3.0" staging_tag
"$ferry" get apps

kill "$agent" && wait "$agent" 2>/dev/null || true
trap - EXIT
cd "$root"
say "done"
cat <<MSG
The test bed is still running. Try:
  export KUBECONFIG=$KUBECONFIG
  cd $repo && $ferry agent -f appset.yaml     # then open http://127.0.0.1:8080
Stop the test bed with:
  FERRY_TESTBED_STATE=$FERRY_TESTBED_STATE testbed/down
MSG
