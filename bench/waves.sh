#!/usr/bin/env bash
# Sync-wave benchmark: `ferry apply --timeout 5m` of one app of OBJECTS objects in one wave
# against the same objects in three waves (ConfigMaps wave 0, Services wave 1,
# Deployments wave 2: each wave waits until the previous one is healthy), first apply into
# a fresh namespace and then a no-op re-apply (which must cost the same: no wave has work,
# so nothing waits), on the project's own test bed.
#
#   bench/waves.sh                      # OBJECTS=300 RUNS=3
#   FERRY_BIN=target/debug/ferry RUNS=1 bench/waves.sh
#
# Parameters (environment):
#   OBJECTS    objects per app (40% ConfigMaps, 30% headless Services, 30% Deployments) [300]
#   RUNS       measured runs; each applies both apps once, in rotating order            [3]
#   FERRY_BIN  a ferry binary to use instead of building one (release, working tree)
#   FERRY_TESTBED_NODES  fake nodes (110 pods each)                                      [4]
#
# Prints one line per apply (wall seconds) and the medians. Starts its own test bed
# (state $HOME/.cache/ferry/testbed-bench-waves) and stops it on exit.
set -euo pipefail

OBJECTS=${OBJECTS:-300}
RUNS=${RUNS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export FERRY_TESTBED_STATE=$HOME/.cache/ferry/testbed-bench-waves
export FERRY_TESTBED_NODES=${FERRY_TESTBED_NODES:-4}

log() { printf '[waves] %s\n' "$*" >&2; }
die() { printf '[waves] error: %s\n' "$*" >&2; exit 1; }

[[ $OBJECTS =~ ^[1-9][0-9]*$ ]] || die "OBJECTS must be a positive number"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number"
command -v kubectl >/dev/null || die "kubectl is needed"
command -v python3 >/dev/null || die "python3 is needed (medians)"

WORK=$(mktemp -d -t ferry-waves.XXXXXX)
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

if [ -n "${FERRY_BIN:-}" ]; then
  cp "$FERRY_BIN" "$WORK/ferry"
else
  log "building ferry (release) from the working tree"
  (cd "$ROOT" && cargo build --release -p ferry) >&2
  cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry" "$WORK/ferry"
fi
FERRY=$WORK/ferry

log "starting the test bed ($FERRY_TESTBED_NODES nodes)"
eval "$("$ROOT/testbed/up")"
export KUBECONFIG

# --- the two apps, in one Git repository -----------------------------------------------------
REPO=$WORK/repo
"$ROOT/bench/gen-objects.sh" "$REPO/apps/single" "$OBJECTS"
"$ROOT/bench/gen-objects.sh" "$REPO/apps/waves" "$OBJECTS"
for f in "$REPO"/apps/waves/*.yaml; do
  case $(basename "$f") in
    cm-*) wave=0 ;;
    svc-*) wave=1 ;;
    *) wave=2 ;;
  esac
  sed -i "0,/^metadata:/s//metadata:\n  annotations: {ferry.dev\/sync-wave: \"$wave\"}/" "$f"
done
git -C "$REPO" init -q
git -C "$REPO" add -A
git -C "$REPO" -c user.name=bench -c user.email=bench@localhost commit -qm "waves: $OBJECTS objects"

# apply <app> <ns> <expect>: one `ferry apply`, its wall seconds on stdout; the output must
# show the expected summary.
apply() {
  local out=$WORK/out-$1-$2 t0 t1
  t0=$EPOCHREALTIME
  FERRY_CACHE=$WORK/cache "$FERRY" apply "$1" --repo "$REPO" --path "apps/$1" -n "$2" \
    --create-namespace --timeout 5m >"$out" 2>&1 || { tail -20 "$out" >&2; die "ferry apply $1 failed"; }
  t1=$EPOCHREALTIME
  grep -q "$3" "$out" || { tail -5 "$out" >&2; die "ferry apply $1: no '$3'"; }
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}

RESULTS=$WORK/results
: >"$RESULTS"
for ((run = 1; run <= RUNS; run++)); do
  apps=(single waves)
  ((run % 2 == 0)) && apps=(waves single)
  for app in "${apps[@]}"; do
    ns=waves-$app-$run
    first=$(apply "$app" "$ns" "$OBJECTS to create")
    again=$(apply "$app" "$ns" "$OBJECTS unchanged")
    log "run $run $app: first apply ${first} s, no-op re-apply ${again} s"
    printf '%s first %s\n%s again %s\n' "$app" "$first" "$app" "$again" >>"$RESULTS"
    kubectl delete namespace "$ns" --wait=true >/dev/null
    kubectl -n ferry-system delete configmap "ferry-inventory-$app" --ignore-not-found >/dev/null
  done
done

python3 - "$RESULTS" "$OBJECTS" "$RUNS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"{sys.argv[2]} objects, {sys.argv[3]} run(s): median wall seconds")
print(f"{'app':8} {'first apply':>12} {'no-op re-apply':>15}")
for app in ("single", "waves"):
    med = lambda phase: statistics.median(float(r[2]) for r in rows if r[0] == app and r[1] == phase)
    print(f"{app:8} {med('first'):>12.2f} {med('again'):>15.2f}")
PY
