#!/usr/bin/env bash
# The demo: builds ferry, starts the local test bed (a real control plane with kwok
# nodes), puts examples/hello into a fresh Git repository and deploys it with ferry:
# diff, apply with health wait, a new commit, diff again, apply with prune, roll back.
# Leaves the test bed running and says how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
root=$PWD

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

scripts/setup.sh
say "building ferry and the test bed (first run: ~25 min of Go builds, then cached)"
cargo build --release -p ferry
ferry="$CARGO_TARGET_DIR/release/ferry"
eval "$(testbed/up)"
"$ferry" cluster-info

say "a Git repository holding examples/hello"
repo="$FERRY_CACHE/demo/hello"
rm -rf "$repo" && mkdir -p "$repo" && cp -r examples/hello/. "$repo/"
cd "$repo"
git init -q -b main
git add -A && git -c user.name=demo -c user.email=demo@ferry.dev commit -qm "hello: first release"
first=$(git rev-parse HEAD)

say "ferry diff: what would change (exit 1 = changes pending)"
"$ferry" diff hello || true

say "ferry apply: server-side apply, then wait for health"
"$ferry" apply hello

say "a new commit: scale to 3, change the greeting, drop the Service"
sed -i 's/replicas: 2/replicas: 3/' deploy/app.yaml
sed -i 's/Hello from ferry/Hello again/' deploy/config.yaml
python3 - <<'PY'
text = open("deploy/app.yaml").read()
open("deploy/app.yaml", "w").write(text.split("\n---\n")[0] + "\n")
PY
git -c user.name=demo -c user.email=demo@ferry.dev commit -qam "hello: 3 replicas, new greeting, no Service"

say "ferry diff --revision HEAD --against $first: the pull-request preview, no cluster"
KUBECONFIG=/dev/null "$ferry" diff hello --revision HEAD --against "$first" || true

say "ferry apply: update and prune"
"$ferry" apply hello

say "ferry apply --revision ${first:0:7}: roll back to the first release"
"$ferry" apply hello --revision "$first"
kubectl get deploy,svc,cm -n hello

cd "$root"
say "done"
cat <<MSG
The test bed is still running. Try:
  export KUBECONFIG=$KUBECONFIG
  $ferry diff hello -f $repo/ferry.yaml
Stop it with:
  testbed/down
MSG
