# Shared helpers for the test bed scripts: cache locations and the build stamp.
# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this
TESTBED_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$TESTBED_DIR/versions.env"
FERRY_CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}
# The binaries are keyed by a hash of every pin (versions.env and the wrapper modules).
# The Gitea lines are left out: the forge has its own key and directory (testbed/gitea/build.sh).
TESTBED_KEY=$( (grep -vi gitea "$TESTBED_DIR/versions.env"; cat "$TESTBED_DIR"/*/go.mod "$TESTBED_DIR"/*/go.sum "$TESTBED_DIR/build.sh") | sha256sum | cut -c1-16)
TESTBED_BIN=${FERRY_TESTBED_BIN:-$FERRY_CACHE/testbed/$TESTBED_KEY/bin}
GITEA_KEY=$(printf '%s\n' "$GITEA_VERSION" | cat - "$TESTBED_DIR/gitea/build.sh" | sha256sum | cut -c1-16)
GITEA_HOME=$FERRY_CACHE/gitea/$GITEA_KEY
TESTBED_STATE=${FERRY_TESTBED_STATE:-$FERRY_CACHE/testbed-state}
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf '[testbed] error: %s\n' "$*" >&2; exit 1; }

# The control-plane components, in start order; `up` and `down` manage exactly these.
TESTBED_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

# testbed_pid <component>: prints the pid recorded for <component> if that process is
# still alive and still that binary started for this state dir (guards against pid reuse).
testbed_pid() {
  local name=$1 pid exe
  pid=$(cat "$TESTBED_STATE/pids/$name.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1 # fails for dead and zombie processes
  exe=${exe% (deleted)}
  [ "${exe##*/}" = "$name" ] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$TESTBED_STATE/" || return 1
  echo "$pid"
}

# testbed_stop: stops the recorded components (SIGTERM, then SIGKILL after 10 s) and
# removes their pid files. Processes whose pid no longer belongs to the component are left alone.
testbed_stop() {
  local name pid pids=() i
  for ((i = ${#TESTBED_COMPONENTS[@]} - 1; i >= 0; i--)); do # reverse start order
    name=${TESTBED_COMPONENTS[i]}
    [ -e "$TESTBED_STATE/pids/$name.pid" ] || continue
    if pid=$(testbed_pid "$name"); then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null && pids+=("$name:$pid")
    else
      log "$name is not running"
    fi
  done
  for ((i = 0; i < 100 && ${#pids[@]} > 0; i++)); do
    sleep 0.1
    local alive=()
    for pid in "${pids[@]}"; do
      if testbed_pid "${pid%%:*}" >/dev/null; then alive+=("$pid"); fi
    done
    pids=("${alive[@]+"${alive[@]}"}")
  done
  for pid in "${pids[@]+"${pids[@]}"}"; do
    log "${pid%%:*} (pid ${pid#*:}) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "${pid#*:}" 2>/dev/null || true
  done
  rm -f "$TESTBED_STATE"/pids/*.pid
}

# testbed_lock: serialises `up` and `down` (the lock file lives beside the state dir).
testbed_lock() {
  mkdir -p "$(dirname "$TESTBED_STATE")"
  exec 9>"$TESTBED_STATE.lock"
  flock -w 120 9 || die "$TESTBED_STATE.lock is still held after 120 s, by another up or down, or
  by a component started by an older up (see \`lsof $TESTBED_STATE.lock\`)"
}
