# Shared helpers for the test bed scripts: cache locations and the build stamp.
# shellcheck shell=bash
TESTBED_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$TESTBED_DIR/versions.env"
FERRY_CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}
# The binaries are keyed by a hash of every pin (versions.env and the wrapper modules).
TESTBED_KEY=$(cat "$TESTBED_DIR/versions.env" "$TESTBED_DIR"/*/go.mod "$TESTBED_DIR"/*/go.sum "$TESTBED_DIR/build.sh" | sha256sum | cut -c1-16)
TESTBED_BIN=${FERRY_TESTBED_BIN:-$FERRY_CACHE/testbed/$TESTBED_KEY/bin}
TESTBED_STATE=${FERRY_TESTBED_STATE:-$FERRY_CACHE/testbed-state}
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf '[testbed] error: %s\n' "$*" >&2; exit 1; }
