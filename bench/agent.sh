#!/usr/bin/env bash
# Pull-mode benchmark of `ferry agent` on the project's own test bed (etcd + kube-apiserver +
# controller-manager + scheduler + kwok):
#
#   1. commit → applied latency, by webhook (interval 1h, a signed GitHub push to
#      /hooks/github) and by Git polling (interval $POLL_INTERVAL);
#   2. live drift → healed latency (a ConfigMap value patched, or a Deployment scaled to 3),
#      round-robin over $DRIFT_APPS apps so that no heal backoff applies;
#   3. N apps from one Git repo and one ferry.yaml (each: Deployment with $REPLICAS
#      replicas, ServiceAccount, headless Service, ConfigMap; apps spread over $NAMESPACES
#      shared namespaces): cold start until every app is Synced and Current (times to 10,
#      50, 90, 100 %), the agent's peak RSS and CPU seconds and the API server's and etcd's
#      CPU seconds, then $IDLE_SECONDS of no changes (CPU s per minute, extrapolated per
#      hour), then $NOOP_ROUNDS rounds of a forced no-op reconcile of every app (the
#      steady-state cost a periodic resync would have); then (BASELINE=1) the apps'
#      namespaces are deleted and the same objects applied with `kubectl apply
#      --server-side`, watched until every Deployment is available (times to 10, 50, 100 %,
#      kubectl's and the API server's and etcd's CPU seconds): the test bed's own floor for
#      the cold start. The report gives agent/kubectl ratios of the time to 100 % and of
#      the API server + etcd CPU seconds.
#
#   bench/agent.sh                                  # the defaults below (~20-25 min)
#   TRIALS=10 SCALE_RUNS="100:8" IDLE_SECONDS=60 bench/agent.sh   # a quick look
#   PHASES=scale SCALE_RUNS="1000:8" REPLICAS=0 bench/agent.sh     # Flux's benchmark's app shape
#   PHASES=scale SCALE_RUNS="1000:8" REPLICAS=0 KCM_QPS=200 KCM_BURST=400 bench/agent.sh
#                                                   # the same, controllers not the bottleneck
#
# Parameters (environment):
#   PHASES          which parts to run: latency scale render                       [latency scale render]
#                   (render: `ferry render` of one app from repos of RENDER_SIZES apps, no cluster;
#                   the agent checks out each app's revision the same way)
#   RENDER_SIZES    repo sizes for the render phase                               [1,10,100,1000]
#   TRIALS          trials per latency measurement (webhook, poll, drift)          [20]
#   POLL_INTERVAL   the poll app's interval                                        [2s]
#   DRIFT_APPS      apps the drift trials go round (≥ 2; keeps heals > 10 s apart) [10]
#   SETTLE          seconds between latency trials                                 [0.5]
#   SCALE_RUNS      APPS:CONCURRENCY pairs; each is a fresh agent and fresh apps   [100:8 100:16 1000:8]
#   NAMESPACES      shared namespaces per scale run (apps round-robin)             [10]
#   REPLICAS        replicas of each scale app's Deployment (0: the shape of Flux's
#                   published benchmark; nothing to schedule, no pods)             [1]
#   APP_INTERVAL    the scale apps' Git poll interval                              [1m]
#   IDLE_SECONDS    idle period measured after each cold start                     [120]
#   NOOP_ROUNDS     then rounds of a forced no-op reconcile of every app (POST sync) [3]
#   BASELINE        1: after each scale run, the same objects by `kubectl apply
#                   --server-side` on a clean slate, until all Deployments are available [1]
#   COLD_TIMEOUT    give up on a cold start after this many seconds                [900]
#   FERRY_BIN       a ferry binary to use instead of building one
#   FERRY_SRC       worktree: build the working tree (default); head: a clean export of HEAD
#   RESULTS_DIR     where the JSON goes                                            [bench/results]
#   KEEP_LOGS       a directory to copy the agents' logs into (default: not kept; on failure
#                   they go to $RESULTS_DIR/agent-failed-logs)
#   FERRY_TESTBED_NODES  fake nodes, 110 pods each (the scale runs need REPLICAS pods per app) [14]
#   KCM_QPS, KCM_BURST   kube-controller-manager's --kube-api-qps / --kube-api-burst (testbed/up's
#                   FERRY_TESTBED_KCM_QPS / _BURST), e.g. 200 and 400 so that the tools, not
#                   the controllers' client rate limits, set the pace   [unset: its defaults, 20/30]
#
# Latency is measured from a Python helper (bench/agent/bench.py): a watch on the object is
# opened first, then the commit (or patch) is made, and the watch event carrying the new
# (or restored) value is timestamped on arrival. Each webhook/poll trial then waits until
# the agent reports the new revision, so trials do not overlap; poll trials start at a
# random phase of the poll loop.
#
# Writes $RESULTS_DIR/agent-<UTC date>.json and prints the tables. Starts its own test bed
# (state $HOME/.cache/ferry/testbed-agent-bench) and stops it on exit.
set -euo pipefail

PHASES=${PHASES:-"latency scale render"}
RENDER_SIZES=${RENDER_SIZES:-1,10,100,1000}
TRIALS=${TRIALS:-20}
POLL_INTERVAL=${POLL_INTERVAL:-2s}
DRIFT_APPS=${DRIFT_APPS:-10}
SETTLE=${SETTLE:-0.5}
SCALE_RUNS=${SCALE_RUNS:-"100:8 100:16 1000:8"}
NAMESPACES=${NAMESPACES:-10}
REPLICAS=${REPLICAS:-1}
KCM_QPS=${KCM_QPS:-${FERRY_TESTBED_KCM_QPS:-}}
KCM_BURST=${KCM_BURST:-${FERRY_TESTBED_KCM_BURST:-}}
APP_INTERVAL=${APP_INTERVAL:-1m}
IDLE_SECONDS=${IDLE_SECONDS:-120}
NOOP_ROUNDS=${NOOP_ROUNDS:-3}
BASELINE=${BASELINE:-1}
COLD_TIMEOUT=${COLD_TIMEOUT:-900}
FERRY_SRC=${FERRY_SRC:-worktree}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench/results}
export FERRY_TESTBED_STATE=${FERRY_TESTBED_STATE:-$HOME/.cache/ferry/testbed-agent-bench}
export FERRY_TESTBED_NODES=${FERRY_TESTBED_NODES:-14}
TARGET=$HOME/.cache/ferry/target
HELPER=$ROOT/bench/agent/bench.py
SECRET=bench-webhook-secret-$RANDOM$RANDOM
LAT_NS=agent-bench-lat

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

for v in TRIALS DRIFT_APPS NAMESPACES IDLE_SECONDS COLD_TIMEOUT NOOP_ROUNDS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number"
done
[ "$DRIFT_APPS" -ge 2 ] || die "DRIFT_APPS must be at least 2"
[[ $BASELINE =~ ^[01]$ ]] || die "BASELINE must be 0 or 1"
[[ $REPLICAS =~ ^[0-9]+$ ]] || die "REPLICAS must be a number"
for v in KCM_QPS KCM_BURST; do
  [[ ${!v:-1} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number"
done
# testbed/up reads these; exported empty, they mean its defaults.
export FERRY_TESTBED_KCM_QPS=$KCM_QPS FERRY_TESTBED_KCM_BURST=$KCM_BURST
for r in $SCALE_RUNS; do
  [[ $r =~ ^[1-9][0-9]*:[1-9][0-9]*$ ]] || die "SCALE_RUNS entries are APPS:CONCURRENCY, not '$r'"
done
for p in $PHASES; do
  case $p in latency | scale | render) ;; *) die "unknown phase '$p' in PHASES" ;; esac
done
poll_s=${POLL_INTERVAL%s}
[[ $poll_s =~ ^[0-9]+$ ]] || die "POLL_INTERVAL must be in seconds, like 2s"
for c in kubectl python3 git curl; do command -v "$c" >/dev/null || die "$c is needed"; done

WORK=$(mktemp -d -t ferry-agent-bench.XXXXXX)
AGENT_PID=
stop_agent() {
  [ -n "$AGENT_PID" ] || return 0
  kill -TERM "$AGENT_PID" 2>/dev/null || true
  for _ in $(seq 300); do
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=
}
cleanup() {
  local rc=$?
  set +e
  stop_agent
  log "stopping the test bed"
  "$ROOT/testbed/down" >&2
  if [ -n "${KEEP_LOGS:-}" ]; then
    mkdir -p "$KEEP_LOGS" && cp "$WORK"/logs/* "$KEEP_LOGS"/ 2>/dev/null && log "agent logs copied to $KEEP_LOGS"
  fi
  if [ "$rc" != 0 ]; then
    log "agent logs kept in $WORK/logs"
    mkdir -p "$RESULTS_DIR/agent-failed-logs" && cp -r "$WORK/logs" "$RESULTS_DIR/agent-failed-logs/" 2>/dev/null
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/logs" "$WORK/records"

# --- ferry ------------------------------------------------------------------------------------
# The binary is copied into $WORK so that a concurrent build cannot swap it mid-run.
if [ -n "${FERRY_BIN:-}" ]; then
  cp "$FERRY_BIN" "$WORK/ferry"
  ferry_commit="$(git -C "$ROOT" rev-parse --short HEAD)(FERRY_BIN)"
else
  case $FERRY_SRC in
    worktree)
      log "building ferry (release) from the working tree"
      (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release -p ferry) >&2
      ferry_commit=$(git -C "$ROOT" rev-parse --short HEAD)
      [ -z "$(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock)" ] || ferry_commit+="+dirty"
      ;;
    head)
      log "building ferry (release) from HEAD"
      mkdir -p "$WORK/src"
      git -C "$ROOT" archive HEAD | tar -x -C "$WORK/src"
      (cd "$WORK/src" && CARGO_TARGET_DIR=$TARGET cargo build --release -p ferry) >&2
      ferry_commit=$(git -C "$ROOT" rev-parse --short HEAD)
      ;;
    *) die "FERRY_SRC must be worktree or head" ;;
  esac
  cp "$TARGET/release/ferry" "$WORK/ferry"
fi
FERRY=$WORK/ferry

t_start=$EPOCHREALTIME
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before the test bed: $load_start (on $(nproc) cores)"
server_version=none
if [[ " $PHASES " == *" latency "* || " $PHASES " == *" scale "* ]]; then
  log "starting the test bed ($FERRY_TESTBED_NODES nodes, state $FERRY_TESTBED_STATE)"
  eval "$("$ROOT/testbed/up")"
  [ -n "${KUBECONFIG:-}" ] || die "testbed/up printed no KUBECONFIG"
  export KUBECONFIG
  pid_of() { cat "$FERRY_TESTBED_STATE/pids/$1.pid"; }
  APISERVER_PID=$(pid_of kube-apiserver)
  ETCD_PID=$(pid_of etcd)
  CM_PID=$(pid_of kube-controller-manager)
  # What kube-controller-manager really runs with (a reused test bed would have other flags).
  kcm_flags=$(tr '\0' '\n' <"/proc/$CM_PID/cmdline" | grep -E '^--kube-api-(qps|burst)=' | tr '\n' ' ' || true)
  log "kube-controller-manager API limits: ${kcm_flags:-its defaults (20/30)}"
  server_version=$(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_agent <name> <ferry.yaml> <concurrency> [extra flags…]: starts `ferry agent` in the
# background with its own cache and data dir; sets AGENT_PID, AGENT_URL, AGENT_T0 (epoch s).
start_agent() {
  local name=$1 file=$2 conc=$3 port
  shift 3
  port=$(free_port)
  mkdir -p "$WORK/agent-$name/cache" "$WORK/agent-$name/data"
  AGENT_URL=http://127.0.0.1:$port
  AGENT_T0=$EPOCHREALTIME
  env FERRY_CACHE="$WORK/agent-$name/cache" NO_COLOR=1 \
    "$FERRY" agent --file "$file" --listen "127.0.0.1:$port" --data-dir "$WORK/agent-$name/data" \
    --concurrency "$conc" "$@" </dev/null >/dev/null 2>"$WORK/logs/agent-$name.log" &
  AGENT_PID=$!
  log "agent '$name' pid $AGENT_PID on $AGENT_URL (concurrency $conc, log $WORK/logs/agent-$name.log)"
}

# ensure_namespaces <ns…>
ensure_namespaces() {
  local ns
  for ns in "$@"; do printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\n' "$ns"; done |
    kubectl apply -f - >/dev/null
}

scale_meta='[]'

# --- 1 + 2: latency ---------------------------------------------------------------------------
if [[ " $PHASES " == *" latency "* ]]; then
  log "latency: generating 3 repos (webhook, poll, $DRIFT_APPS drift apps)"
  python3 "$HELPER" gen-latency "$WORK/lat" "$DRIFT_APPS" "$POLL_INTERVAL" "$LAT_NS"
  ensure_namespaces "$LAT_NS"
  start_agent latency "$WORK/lat/ferry.yaml" 8 --webhook-secret "$SECRET"
  n=$((DRIFT_APPS + 2))
  python3 "$HELPER" cold "$WORK/records/cold-latency-setup.json" "$AGENT_URL" "$AGENT_PID" "$AGENT_T0" \
    "$n" 300 "$APISERVER_PID" "$ETCD_PID" "$CM_PID"
  python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["timed_out"])' \
    "$WORK/records/cold-latency-setup.json" || die "the latency apps did not become Synced and Current"
  sleep 2
  for mode in webhook poll drift; do
    log "latency: $mode, $TRIALS trials"
    python3 "$HELPER" latency "$mode" "$WORK/records/latency.jsonl" "$FERRY_TESTBED_STATE" "$AGENT_URL" \
      "$WORK/lat" "$LAT_NS" "$TRIALS" "$SECRET" "$poll_s" "$SETTLE"
  done
  cp "$WORK/logs/agent-latency.log" "$WORK/records/" 2>/dev/null || true
  stop_agent
fi

# --- 3: scale ---------------------------------------------------------------------------------
if [[ " $PHASES " == *" scale "* ]]; then
  runs=$(wc -w <<<"$SCALE_RUNS") run_no=0
  for r in $SCALE_RUNS; do
    run_no=$((run_no + 1))
    apps=${r%%:*} conc=${r##*:}
    prefix=s${apps}c${conc}
    log "scale: $apps apps of $REPLICAS replicas, concurrency $conc (prefix $prefix)"
    read -r -a nss <<<"$(python3 "$HELPER" gen-scale "$WORK/$prefix" "$prefix" "$apps" "$NAMESPACES" "$APP_INTERVAL" "$REPLICAS")"
    ensure_namespaces "${nss[@]}"
    sleep 2
    start_agent "$prefix" "$WORK/$prefix.ferry.yaml" "$conc"
    python3 "$HELPER" cold "$WORK/records/cold-$prefix.json" "$AGENT_URL" "$AGENT_PID" "$AGENT_T0" \
      "$apps" "$COLD_TIMEOUT" "$APISERVER_PID" "$ETCD_PID" "$CM_PID"
    if python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["timed_out"])' "$WORK/records/cold-$prefix.json"; then
      # Let the last status updates and the controllers' reactions die down before idling.
      sleep 10
      log "scale: idle for $IDLE_SECONDS s"
      python3 "$HELPER" idle "$WORK/records/idle-$prefix.json" "$AGENT_URL" "$AGENT_PID" "$IDLE_SECONDS" \
        "$APISERVER_PID" "$ETCD_PID"
      log "scale: $NOOP_ROUNDS rounds of a forced no-op reconcile of every app"
      python3 "$HELPER" noop "$WORK/records/noop-$prefix.json" "$AGENT_URL" "$AGENT_PID" "$NOOP_ROUNDS" \
        "$APISERVER_PID" "$ETCD_PID"
    else
      log "scale: the cold start did not finish within $COLD_TIMEOUT s; the idle period is not measured"
    fi
    # Where the time went: the slowest reconciles and the log's warnings.
    grep -c ' WARN ' "$WORK/logs/agent-$prefix.log" >"$WORK/records/warn-count-$prefix" || true
    stop_agent
    if [ "$BASELINE" = 1 ]; then
      # The same objects through `kubectl apply --server-side` on a clean slate: what the
      # test bed itself needs to run them (controllers, scheduler, kwok), as a baseline.
      log "baseline: deleting the $apps apps' namespaces"
      kubectl delete namespace "${nss[@]}" --wait=true --timeout=900s >/dev/null
      kprefix=k${apps}
      read -r -a knss <<<"$(python3 "$HELPER" gen-scale "$WORK/$kprefix" "$kprefix" "$apps" "$NAMESPACES" "$APP_INTERVAL" "$REPLICAS" kubectl)"
      ensure_namespaces "${knss[@]}"
      sleep 2
      log "baseline: kubectl apply --server-side of the same $((apps * 4)) objects, then until all $apps Deployments are available"
      python3 "$HELPER" baseline "$WORK/records/baseline-$prefix.json" "$FERRY_TESTBED_STATE" \
        "$WORK/$kprefix/apps" "$kprefix" "$apps" "$COLD_TIMEOUT" "$APISERVER_PID" "$ETCD_PID" "$CM_PID"
      # Waited for before the next run, so that its CPU seconds do not include this deletion.
      if [ "$run_no" -lt "$runs" ]; then
        log "baseline: deleting the kubectl-applied namespaces"
        kubectl delete namespace "${knss[@]}" --wait=true --timeout=900s >/dev/null
      fi
    fi
    scale_meta=$(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); m.append({"apps":int(sys.argv[2]),"concurrency":int(sys.argv[3]),"prefix":sys.argv[4],"namespaces":int(sys.argv[5]),"replicas":int(sys.argv[7]),"warnings":int(open(sys.argv[6]).read().strip() or 0)}); print(json.dumps(m))' \
      "$scale_meta" "$apps" "$conc" "$prefix" "$NAMESPACES" "$WORK/records/warn-count-$prefix" "$REPLICAS")
  done
fi
# --- render cost (no cluster) -----------------------------------------------------------------
if [[ " $PHASES " == *" render "* ]]; then
  log "render: one app from repos of $RENDER_SIZES apps"
  python3 "$HELPER" render-cost "$WORK/records/render.json" "$FERRY" "$WORK" "$RENDER_SIZES" 5
fi
t_end=$EPOCHREALTIME

# --- report -----------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
stamp=$(date -u +%Y-%m-%dT%H%MZ)
json=$RESULTS_DIR/agent-$stamp.json
python3 - "$WORK/meta.json" <<PY
import json, sys
json.dump({
    "benchmark": "ferry agent (pull mode)",
    "command": "PHASES='$PHASES' TRIALS=$TRIALS COLD_TIMEOUT=$COLD_TIMEOUT POLL_INTERVAL=$POLL_INTERVAL DRIFT_APPS=$DRIFT_APPS "
               "SCALE_RUNS='$SCALE_RUNS' NAMESPACES=$NAMESPACES REPLICAS=$REPLICAS IDLE_SECONDS=$IDLE_SECONDS NOOP_ROUNDS=$NOOP_ROUNDS BASELINE=$BASELINE"
               "${KCM_QPS:+ KCM_QPS=$KCM_QPS}${KCM_BURST:+ KCM_BURST=$KCM_BURST} bench/agent.sh",
    "params": {"trials": $TRIALS, "poll_interval": "$POLL_INTERVAL", "drift_apps": $DRIFT_APPS,
               "settle_s": $SETTLE, "namespaces_per_scale_run": $NAMESPACES,
               "app_interval": "$APP_INTERVAL", "idle_seconds": $IDLE_SECONDS, "noop_rounds": $NOOP_ROUNDS, "baseline": $BASELINE,
               "replicas": $REPLICAS, "kcm_qps": ${KCM_QPS:-None}, "kcm_burst": ${KCM_BURST:-None}},
    "kcm_flags_running": "${kcm_flags:-}".split(),
    "scale_runs": json.loads('''$scale_meta'''),
    "app": "Deployment ($REPLICAS replicas; the latency apps' 1) + ServiceAccount + headless Service + ConfigMap",
    "duration_s": round($t_end - $t_start, 1),
    "loadavg_start": "$load_start",
    "loadavg_end": open("/proc/loadavg").read().split()[:3],
    "machine": {"cpus": $(nproc), "cpu_model": "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)",
                "mem_gib": $(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo),
                "kernel": "$(uname -r)",
                "note": "shared with other workers' builds and tests: loaded and noisy, hence medians"},
    "kubernetes": "$server_version", "testbed_nodes": $FERRY_TESTBED_NODES,
    "ferry": "$("$FERRY" --version)", "ferry_commit": "$ferry_commit",
}, open(sys.argv[1], "w"), indent=2)
PY
python3 "$HELPER" report "$WORK/records" "$json" "$WORK/meta.json"
