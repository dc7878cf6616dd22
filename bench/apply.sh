#!/usr/bin/env bash
# Push-mode apply benchmark: `ferry apply --no-wait` against `kubectl apply --server-side`
# on the same generated manifests, first apply into a fresh namespace and then a no-op
# re-apply, on the project's own test bed (etcd + kube-apiserver + controllers + kwok).
#
#   bench/apply.sh                       # OBJECTS=1000 RUNS=5
#   OBJECTS=200 RUNS=3 bench/apply.sh
#
# Parameters (environment):
#   OBJECTS  objects to apply (40% ConfigMaps, 30% headless Services, 30% Deployments)  [1000]
#   RUNS     measured runs; each runs every tool once, in rotating order                [5]
#   TOOLS    what to measure, among: ferry kubectl kubectl-novalidate
#            (kubectl-novalidate is kubectl with --validate=false: see bench/RESULTS.md)
#            [ferry kubectl kubectl-novalidate]
#   RESULTS_DIR  where the JSON goes                                                    [bench/results]
#   FERRY_TESTBED_NODES  fake nodes (110 pods each)                                     [4]
#   FERRY_SRC  head: build the committed HEAD (clean export); worktree: the working tree [head]
#   FERRY_BIN  a ferry binary to use instead of building one
#
# Every measured command runs under /usr/bin/time -v (wall time, peak RSS, CPU); around it
# the script also takes the kube-apiserver's and etcd's CPU time from /proc and the
# apiserver's request counters (/metrics) for the benchmarked kinds. Between the first
# apply and the re-apply it waits for the Deployments to be Available, so the re-apply
# does not compete with the controllers' reaction to the first. After each tool's trial
# its namespace (and ferry's inventory ConfigMap) is deleted and waited for.
#
# Writes $RESULTS_DIR/apply-<UTC date>.json and prints a table. Starts its own test bed
# (state $HOME/.cache/ferry/testbed-bench) and stops it on exit.
set -euo pipefail

OBJECTS=${OBJECTS:-1000}
RUNS=${RUNS:-5}
TOOLS=${TOOLS:-"ferry kubectl kubectl-novalidate"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench/results}
export FERRY_TESTBED_STATE=$HOME/.cache/ferry/testbed-bench
export FERRY_TESTBED_NODES=${FERRY_TESTBED_NODES:-4}
FERRY_SRC=${FERRY_SRC:-head}
TARGET=$HOME/.cache/ferry/target
APP=bench

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

[[ $OBJECTS =~ ^[1-9][0-9]*$ ]] || die "OBJECTS must be a positive number"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number"
read -r -a TOOL_LIST <<<"$TOOLS"
for t in "${TOOL_LIST[@]}"; do
  case $t in ferry | kubectl | kubectl-novalidate) ;; *) die "unknown tool '$t' in TOOLS" ;; esac
done
command -v kubectl >/dev/null || die "kubectl is needed"
command -v python3 >/dev/null || die "python3 is needed (statistics and JSON)"
command -v git >/dev/null || die "git is needed"
if [ ! -x /usr/bin/time ]; then
  log "installing GNU time"
  apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi

WORK=$(mktemp -d -t ferry-bench.XXXXXX)
cleanup() {
  local rc=$?
  set +e
  log "stopping the test bed"
  "$ROOT/testbed/down" >&2
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build ferry, start the test bed --------------------------------------------------------
# FERRY_SRC=head (default) builds the committed HEAD from a clean export, so that other
# people's half-done edits in the working tree neither break nor colour the numbers;
# FERRY_SRC=worktree builds the working tree as it is, into the usual target dir. The binary is copied into $WORK so
# that a concurrent build into the shared target directory cannot swap it mid-run.
mode=${FERRY_BIN:+bin}
case ${mode:-$FERRY_SRC} in
  bin)
    log "using the ferry binary $FERRY_BIN"
    TARGET=$(mktemp -d -t ferry-bin.XXXXXX)
    mkdir -p "$TARGET/release"
    cp "$FERRY_BIN" "$TARGET/release/ferry"
    ;;
  head)
    log "building ferry (release) from HEAD ($(git -C "$ROOT" rev-parse --short HEAD))"
    # Its own target dir: cargo hashes workspace crates by their path inside the workspace
    # and judges freshness by mtimes, so two source trees sharing one target dir can each
    # take the other's artifacts for fresh. The export is re-stamped with the current time
    # whenever HEAD moved, so that nothing older is taken for fresh either.
    src=$HOME/.cache/ferry/bench-src
    TARGET=$HOME/.cache/ferry/target-bench
    head=$(git -C "$ROOT" rev-parse HEAD)
    if [ "$(cat "$src.commit" 2>/dev/null)" != "$head" ]; then
      rm -rf "$src"
      mkdir -p "$src"
      git -C "$ROOT" archive "$head" | tar -x -C "$src"
      find "$src" -type f -exec touch {} +
      echo "$head" >"$src.commit"
    fi
    (cd "$src" && CARGO_TARGET_DIR=$TARGET cargo build --release -p ferry) >&2
    ;;
  worktree)
    log "building ferry (release) from the working tree"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release -p ferry) >&2
    ;;
  *) die "FERRY_SRC must be head or worktree, not '$FERRY_SRC'" ;;
esac
cp "$TARGET/release/ferry" "$WORK/ferry"
FERRY=$WORK/ferry
ferry_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "${FERRY_BIN:-}" ]; then
  ferry_commit="$ferry_commit(FERRY_BIN)"
elif [ "$FERRY_SRC" = head ]; then
  ferry_commit=$(git -C "$ROOT" rev-parse --short "$head")
elif [ -n "$(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ]; then
  ferry_commit="$ferry_commit+dirty"
fi

t_start=$EPOCHREALTIME
log "starting the test bed ($FERRY_TESTBED_NODES nodes)"
eval "$("$ROOT/testbed/up")"
[ -n "${KUBECONFIG:-}" ] || die "testbed/up printed no KUBECONFIG"
export KUBECONFIG

pid_of() { cat "$FERRY_TESTBED_STATE/pids/$1.pid"; }
APISERVER_PID=$(pid_of kube-apiserver)
ETCD_PID=$(pid_of etcd)
TCK=$(getconf CLK_TCK)

# --- the manifests, in a Git repository -------------------------------------------------------
REPO=$WORK/repo
log "generating $OBJECTS objects into $REPO/apps/bench"
"$ROOT/bench/gen-objects.sh" "$REPO/apps/bench" "$OBJECTS"
"$ROOT/bench/gen-objects.sh" "$REPO/apps/warmup" 10
git -C "$REPO" init -q
git -C "$REPO" add -A
git -C "$REPO" -c user.name=bench -c user.email=bench@localhost commit -qm "bench: $OBJECTS objects"
DIR=$REPO/apps/bench

# --- measuring --------------------------------------------------------------------------------
# cpu_s <pid>: user+system CPU seconds of a process so far.
cpu_s() { awk -v t="$TCK" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

# requests: "get apply dry_run other" request counts so far, for the benchmarked kinds'
# single-object endpoints (configmaps, services, deployments; no subresources).
requests() {
  kubectl get --raw /metrics | awk '
    /^apiserver_request_total\{/ && /resource="(configmaps|services|deployments)"/ && /scope="resource"/ && /subresource=""/ {
      v = $NF
      if ($0 ~ /verb="GET"/) get += v
      else if ($0 ~ /verb="APPLY"/ && $0 ~ /dry_run="All"/) dry += v
      else if ($0 ~ /verb="APPLY"/) apply += v
      else other += v
    }
    END { printf "%d %d %d %d\n", get, apply, dry, other }'
}

# command_for <tool> <ns>: prints the command (one word per line) that applies $DIR to <ns>.
command_for() {
  case $1 in
    ferry) printf '%s\n' env "FERRY_CACHE=$WORK/ferry-cache" "$FERRY" apply "$APP" --repo "$REPO" --path apps/bench -n "$2" --no-wait ;;
    kubectl) printf '%s\n' kubectl apply --server-side --field-manager=bench -f "$DIR" -n "$2" ;;
    kubectl-novalidate) printf '%s\n' kubectl apply --server-side --field-manager=bench --validate=false -f "$DIR" -n "$2" ;;
  esac
}

RECORDS=$WORK/records.jsonl
: >"$RECORDS"

# measure <run> <tool> <phase> <ns>: runs the tool once and appends a JSON record.
measure() {
  local run=$1 tool=$2 phase=$3 ns=$4 cmd out tv r0 r1 a0 a1 e0 e1 t0 t1 rc=0
  mapfile -t cmd < <(command_for "$tool" "$ns")
  out=$WORK/out-$run-$tool-$phase
  tv=$WORK/time-$run-$tool-$phase
  read -r -a r0 <<<"$(requests)"
  a0=$(cpu_s "$APISERVER_PID")
  e0=$(cpu_s "$ETCD_PID")
  t0=$EPOCHREALTIME
  /usr/bin/time -v -o "$tv" "${cmd[@]}" >"$out" 2>&1 || rc=$?
  t1=$EPOCHREALTIME
  a1=$(cpu_s "$APISERVER_PID")
  e1=$(cpu_s "$ETCD_PID")
  read -r -a r1 <<<"$(requests)"
  if [ "$rc" != 0 ]; then
    tail -20 "$out" >&2
    die "$tool ($phase, run $run) exited $rc"
  fi
  # The run must have done what it is supposed to: a benchmark of a failed apply is no benchmark.
  case $tool in
    ferry)
      if [ "$phase" = first ]; then
        grep -q "($OBJECTS to create, 0 to update, 0 to prune, 0 unchanged)" "$out" ||
          { tail -5 "$out" >&2; die "ferry's first apply did not create $OBJECTS objects"; }
      else
        grep -q "(0 to create, 0 to update, 0 to prune, $OBJECTS unchanged)" "$out" ||
          { tail -5 "$out" >&2; die "ferry's re-apply was not a no-op"; }
      fi
      ;;
    kubectl*)
      local n
      n=$(grep -c ' serverside-applied$' "$out" || true)
      [ "$n" = "$OBJECTS" ] || { tail -5 "$out" >&2; die "kubectl applied $n objects, not $OBJECTS"; }
      ;;
  esac
  python3 - "$tv" "$run" "$tool" "$phase" "$t0" "$t1" "$a0" "$a1" "$e0" "$e1" \
    "${r0[*]}" "${r1[*]}" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RECORDS" <<'PY'
import json, re, sys
tv, run, tool, phase, t0, t1, a0, a1, e0, e1, r0, r1, load = sys.argv[1:]
text = open(tv).read()
def field(name):
    m = re.search(r"^\s*" + re.escape(name) + r": (.*)$", text, re.M)
    return m.group(1).strip() if m else None
r0 = [int(x) for x in r0.split()]
r1 = [int(x) for x in r1.split()]
d = [b - a for a, b in zip(r0, r1)]
print(json.dumps({
    "run": int(run), "tool": tool, "phase": phase,
    "wall_s": round(float(t1) - float(t0), 3),
    "max_rss_kb": int(field("Maximum resident set size (kbytes)")),
    "user_s": float(field("User time (seconds)")),
    "sys_s": float(field("System time (seconds)")),
    "apiserver_cpu_s": round(float(a1) - float(a0), 2),
    "etcd_cpu_s": round(float(e1) - float(e0), 2),
    "requests": {"get": d[0], "apply": d[1], "apply_dry_run": d[2], "other": d[3]},
    "loadavg_after": load,
}))
PY
  python3 -c 'import json,sys; r=json.loads(sys.stdin.readlines()[-1]); print("[bench] run %(run)d %(tool)-18s %(phase)-5s %(wall_s)7.2f s  rss %(max_rss_kb)6d KB  apiserver cpu %(apiserver_cpu_s)5.2f s  requests %(requests)s" % r)' <"$RECORDS" >&2
}

# delete_inventory: deletes ferry's inventory of $APP (its head and any shards), so that the
# next first apply starts from none; fails when some is left.
delete_inventory() {
  local left
  kubectl get configmap -n ferry-system -o name | grep "^configmap/ferry-inventory[-.]ferry-system\.$APP\b" |
    xargs -r kubectl delete -n ferry-system --wait >/dev/null
  left=$(kubectl get configmap -n ferry-system -o name | grep -c "^configmap/ferry-inventory[-.]ferry-system\.$APP\b" || true)
  [ "$left" = 0 ] || die "ferry's inventory of $APP is still in ferry-system ($left ConfigMaps)"
}

# trial <run> <tool>: fresh namespace, first apply, settle, no-op re-apply, clean up.
trial() {
  local run=$1 tool=$2 ns
  ns=bench-$tool-$run-$RANDOM
  kubectl create namespace "$ns" >/dev/null
  measure "$run" "$tool" first "$ns"
  if ! kubectl wait --for=condition=Available deployment --all -n "$ns" --timeout=300s >/dev/null; then
    log "warning: the Deployments in $ns were not all Available within 300 s"
  fi
  measure "$run" "$tool" noop "$ns"
  kubectl delete namespace "$ns" --wait --timeout=600s >/dev/null
  if [ "$tool" = ferry ]; then
    delete_inventory
  fi
}

# Warm-up (not measured): ferry's Git mirror, kubectl's discovery and OpenAPI caches, and
# the apiserver's first requests for each kind.
log "warm-up"
ns=bench-warmup-$RANDOM
kubectl create namespace "$ns" >/dev/null
env "FERRY_CACHE=$WORK/ferry-cache" "$FERRY" apply "$APP" --repo "$REPO" --path apps/warmup -n "$ns" --no-wait >/dev/null 2>&1 ||
  die "ferry's warm-up apply failed"
kubectl apply --server-side --field-manager=bench -f "$REPO/apps/warmup" -n "$ns" >/dev/null
kubectl delete namespace "$ns" --wait --timeout=600s >/dev/null
delete_inventory

for ((run = 1; run <= RUNS; run++)); do
  n=${#TOOL_LIST[@]}
  for ((i = 0; i < n; i++)); do
    tool=${TOOL_LIST[$(((i + run - 1) % n))]}
    trial "$run" "$tool"
  done
done
t_end=$EPOCHREALTIME

# --- report -----------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
stamp=$(date -u +%Y-%m-%dT%H%MZ)
json=$RESULTS_DIR/apply-$stamp.json
server_version=$(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')
kubectl_version=$(kubectl version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')
ferry_version=$("$FERRY" --version)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_gib=$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)

python3 - "$RECORDS" "$json" <<PY
import json, statistics, sys
records = [json.loads(l) for l in open(sys.argv[1])]
objects = $OBJECTS
meta = {
    "benchmark": "push-mode apply",
    "objects": objects,
    "mix": {"ConfigMap": objects * 4 // 10, "Service (headless)": objects * 3 // 10,
            "Deployment (1 replica)": objects - objects * 4 // 10 - objects * 3 // 10},
    "runs": $RUNS,
    "tools": "$TOOLS".split(),
    "command": "OBJECTS=$OBJECTS RUNS=$RUNS bench/apply.sh",
    "ferry_source": "$FERRY_SRC",
    "duration_s": round($t_end - $t_start, 1),
    "machine": {"cpus": $(nproc), "cpu_model": "$cpu_model", "mem_gib": $mem_gib,
                "kernel": "$(uname -r)",
                "note": "shared with other workers' builds and tests: noisy, hence medians"},
    "kubernetes": "$server_version", "kubectl": "$kubectl_version",
    "ferry": "$ferry_version", "ferry_commit": "$ferry_commit",
    "testbed_nodes": $FERRY_TESTBED_NODES,
}
summary = {}
for tool in meta["tools"]:
    for phase in ("first", "noop"):
        rs = [r for r in records if r["tool"] == tool and r["phase"] == phase]
        if not rs:
            continue
        med = lambda k: statistics.median(r[k] for r in rs)
        walls = [r["wall_s"] for r in rs]
        summary[f"{tool}/{phase}"] = {
            "n": len(rs),
            "wall_s_median": round(med("wall_s"), 3),
            "wall_s_min": min(walls), "wall_s_max": max(walls),
            "objects_per_s": round(objects / med("wall_s"), 1),
            "max_rss_kb_median": int(med("max_rss_kb")),
            "cpu_s_median": round(statistics.median(r["user_s"] + r["sys_s"] for r in rs), 2),
            "apiserver_cpu_s_median": round(med("apiserver_cpu_s"), 2),
            "etcd_cpu_s_median": round(med("etcd_cpu_s"), 2),
            "requests_median": {k: statistics.median(r["requests"][k] for r in rs)
                                for k in ("get", "apply", "apply_dry_run", "other")},
        }
# Two views of "kubectl time / ferry time": the ratio of the medians, and the median of the
# per-run ratios (each run measures both tools minutes apart, so it cancels slow drift).
ratios, paired = {}, {}
for base in ("kubectl", "kubectl-novalidate"):
    for phase in ("first", "noop"):
        f, b = summary.get(f"ferry/{phase}"), summary.get(f"{base}/{phase}")
        if f and b:
            ratios[f"{base}/ferry {phase}"] = round(b["wall_s_median"] / f["wall_s_median"], 2)
            wall = {(r["run"], r["tool"]): r["wall_s"] for r in records if r["phase"] == phase}
            per_run = [wall[(n, base)] / wall[(n, "ferry")] for n in sorted({r["run"] for r in records})
                       if (n, base) in wall and (n, "ferry") in wall]
            paired[f"{base}/ferry {phase}"] = {"median": round(statistics.median(per_run), 2),
                                               "per_run": [round(x, 2) for x in per_run]}
targets = {}
for base in ("kubectl", "kubectl-novalidate"):
    if f"{base}/ferry first" in ratios:
        targets[f"first apply no slower than {base}"] = ratios[f"{base}/ferry first"] >= 1.0
    if f"{base}/ferry noop" in ratios:
        targets[f"no-op re-apply >= 5x faster than {base}"] = ratios[f"{base}/ferry noop"] >= 5.0
json.dump({"meta": meta, "summary": summary, "ratios": ratios, "paired_ratios": paired,
           "targets_met": targets,
           "records": records}, open(sys.argv[2], "w"), indent=2)
print()
print(f"push-mode apply, {objects} objects, {meta['runs']} runs, medians "
      f"({meta['machine']['cpus']} cores, {meta['kubernetes']}, kubectl {meta['kubectl']})")
print()
print("| tool | phase | wall s (min-max) | objects/s | peak RSS MiB | client CPU s | apiserver CPU s | requests GET/APPLY/dry-run |")
print("|---|---|---|---|---|---|---|---|")
for key, s in summary.items():
    tool, phase = key.split("/")
    q = s["requests_median"]
    print(f"| {tool} | {phase} | {s['wall_s_median']:.2f} ({s['wall_s_min']:.2f}-{s['wall_s_max']:.2f}) "
          f"| {s['objects_per_s']:.0f} | {s['max_rss_kb_median'] / 1024:.0f} | {s['cpu_s_median']:.2f} "
          f"| {s['apiserver_cpu_s_median']:.2f} | {q['get']:.0f}/{q['apply']:.0f}/{q['apply_dry_run']:.0f} |")
print()
for k, v in ratios.items():
    print(f"ratio {k} (wall, >1 = ferry faster): {v} of medians; "
          f"{paired[k]['median']} median of per-run ratios {paired[k]['per_run']}")
for k, v in targets.items():
    print(f"target {k}: {'met' if v else 'NOT met'}")
print(f"\nwrote {sys.argv[2]} ({meta['duration_s']} s)")
PY
