# Environment shared by the set-up scripts: cache locations and tool paths.
# shellcheck shell=bash
export FERRY_CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$FERRY_CACHE/target}
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
source "$(dirname "${BASH_SOURCE[0]}")/../testbed/lib.sh"
# helm and kustomize come from the test bed's build.
export PATH="$TESTBED_BIN:$PATH"
# The Git forge of the notification tests (testbed/gitea/build.sh).
export FERRY_GITEA_HOME=$GITEA_HOME
