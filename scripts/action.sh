#!/usr/bin/env bash
# The steps of the GitHub Action in action.yml (also run by the tests, against a local
# archive made by scripts/release.sh).
#
#   action.sh install   FERRY_VERSION, FERRY_RELEASES (https:// or file:// base URL):
#                       downloads ferry-<version>-x86_64-unknown-linux-gnu.tar.gz and its
#                       .sha256, checks the checksum, unpacks ferry into
#                       $RUNNER_TEMP/ferry-<version>/bin and adds that to $GITHUB_PATH.
#   action.sh run       FERRY_COMMAND (diff|apply), FERRY_APP, FERRY_FILE, FERRY_REVISION,
#                       FERRY_AGAINST, FERRY_ARGS: runs the command, writes its output to
#                       $GITHUB_STEP_SUMMARY and exit-code/changes to $GITHUB_OUTPUT; a diff
#                       with changes pending (exit 1) is not a failure.
set -euo pipefail

fail() { echo "::error::$*" >&2; exit 2; }

install_ferry() {
  local version=${FERRY_VERSION:?FERRY_VERSION is not set} base=${FERRY_RELEASES%/}
  [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || fail "version \"$version\" is not X.Y.Z"
  [ "$(uname -m)" = x86_64 ] || fail "ferry releases are built for x86_64 Linux, this runner is $(uname -sm)"
  local archive=ferry-$version-x86_64-unknown-linux-gnu.tar.gz
  local dir=${RUNNER_TEMP:?RUNNER_TEMP is not set}/ferry-$version
  rm -rf "$dir" && mkdir -p "$dir/bin"
  local url
  for file in "$archive" "$archive.sha256"; do
    url=$base/v$version/$file
    curl --fail --silent --show-error --location --proto '=https,file' \
      --connect-timeout 20 --max-time 300 --retry 3 -o "$dir/$file" "$url" ||
      fail "cannot download $url"
  done
  (cd "$dir" && sha256sum --check --strict --status "$archive.sha256") ||
    fail "$archive: SHA-256 does not match $archive.sha256"
  tar -xzf "$dir/$archive" -C "$dir/bin" ferry
  "$dir/bin/ferry" version
  echo "$dir/bin" >>"${GITHUB_PATH:?GITHUB_PATH is not set}"
}

run_ferry() {
  local command=${FERRY_COMMAND:-}
  case $command in
    diff | apply) ;;
    *) fail "command \"$command\" is not diff or apply" ;;
  esac
  local args=("$command")
  [ -n "${FERRY_APP:-}" ] && args+=("$FERRY_APP")
  args+=(-f "${FERRY_FILE:-ferry.yaml}")
  [ -n "${FERRY_REVISION:-}" ] && args+=(--revision "$FERRY_REVISION")
  if [ -n "${FERRY_AGAINST:-}" ]; then
    [ "$command" = diff ] || fail "against is for diff only"
    args+=(--against "$FERRY_AGAINST")
  fi
  local extra
  read -r -a extra <<<"${FERRY_ARGS:-}"
  args+=("${extra[@]}")

  local log rc=0
  log=$(mktemp)
  ferry "${args[@]}" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  local changes=false
  [ "$command" = diff ] && [ "$rc" -eq 1 ] && changes=true
  {
    echo "### ferry ${args[*]}"
    echo
    case $command:$rc in
      diff:0) echo "In sync: nothing to change." ;;
      diff:1) echo "Changes pending:" ;;
      apply:0) echo "Applied and healthy." ;;
      *) echo ":x: exit code $rc" ;;
    esac
    echo
    echo '```diff'
    head -c 60000 "$log"
    echo '```'
  } >>"${GITHUB_STEP_SUMMARY:?GITHUB_STEP_SUMMARY is not set}"
  rm -f "$log"
  {
    echo "exit-code=$rc"
    echo "changes=$changes"
  } >>"${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
  if [ "$changes" = true ]; then return 0; fi
  return "$rc"
}

case ${1:-} in
  install) install_ferry ;;
  run) run_ferry ;;
  *) echo "usage: action.sh install|run" >&2; exit 2 ;;
esac
