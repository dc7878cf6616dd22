#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after another, each for SECONDS (default 60),
# at the lowest CPU priority. Each run starts from its kept corpus (fuzz/corpus/<target>),
# the committed seeds (fuzz/seeds/<target>) and seeds taken from the repository's test
# fixtures (examples/, crates/render/tests, the YAML in crates/model's tests); a crash is
# saved under fuzz/artifacts/<target>/ and fuzzing goes on (libFuzzer's fork mode), so one
# run reports every crash it finds; any crash fails the script after all targets ran.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (targets: manifests ferry_yaml webhook
# promote_edit; default all). Needs the nightly toolchain; installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# Fuzz builds use other compiler flags than the workspace's: keep them apart.
export CARGO_TARGET_DIR=${FERRY_FUZZ_TARGET_DIR:-$FERRY_CACHE/target-fuzz}
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(manifests ferry_yaml webhook promote_edit)

command -v cargo-fuzz >/dev/null || cargo +stable install cargo-fuzz --locked
rustup run nightly rustc --version >/dev/null 2>&1 || {
  echo "[fuzz] error: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 1
}

seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
mkdir -p "$seeds"/{manifests,ferry_yaml,webhook,promote_edit}
n=0
while IFS= read -r f; do
  n=$((n + 1))
  cp "$f" "$seeds/manifests/$n-$(basename "$f")"
done < <(find examples crates/render/tests -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) -not -path '*/node_modules/*' | sort)
cp examples/llm-app/ferry.yaml examples/llm-app/appset.yaml "$seeds/ferry_yaml/"
# The ferry.yaml texts of crates/model's unit tests: raw strings on lines of their own.
for f in crates/model/src/*.rs; do
  awk -v out="$seeds/ferry_yaml/$(basename "$f" .rs)" \
    '/r#"$/ {on = 1; n++; next} on && /^ *"#/ {on = 0; next} on {print > (out "-" n)}' "$f"
done
# Promotions between the example's overlays and between its Helm values files.
for from in examples/llm-app/infra/*/kustomization.yaml; do
  for to in examples/llm-app/infra/*/kustomization.yaml; do
    [ "$from" = "$to" ] && continue
    name="$(basename "$(dirname "$from")")-$(basename "$(dirname "$to")")"
    { cat "$from"; printf '\0'; cat "$to"; } >"$seeds/promote_edit/$name"
  done
done
for from in examples/llm-app/infra-helm/values-*.yaml; do
  for to in examples/llm-app/infra-helm/values-*.yaml; do
    [ "$from" = "$to" ] && continue
    name="$(basename "$from" .yaml)-$(basename "$to" .yaml)"
    { cat "$from"; printf '\0'; cat "$to"; printf '\0image.tag'; } >"$seeds/promote_edit/$name"
  done
done

# Safe Rust: no sanitizer (several times the executions per second); debug assertions
# and overflow checks stay on.
flags=(--sanitizer none --debug-assertions --fuzz-dir fuzz)
nice -n 19 cargo +nightly fuzz build "${flags[@]}"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" fuzz/logs
  log="fuzz/logs/$t.log"
  echo "== fuzz $t for ${seconds}s"
  before=$(find "fuzz/artifacts/$t" -type f 2>/dev/null | wc -l)
  nice -n 19 cargo +nightly fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" "$seeds/$t" \
    -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 >"$log" 2>&1 || true
  crashes=$(($(find "fuzz/artifacts/$t" -type f 2>/dev/null | wc -l) - before))
  # The fork mode's last status line: "#<executions>: cov: … oom/timeout/crash: …".
  runs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$log" | tail -1)
  result=ok
  if [ "$crashes" -gt 0 ] || ! grep -q '^INFO: fuzzed for' "$log"; then
    result="FAILED: $crashes new crash/timeout/oom inputs in fuzz/artifacts/$t/ (log: $log)"
    failed+=("$t")
  fi
  echo "   $t: ${runs:-?} executions, corpus $(find "fuzz/corpus/$t" -type f | wc -l) inputs: $result"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "[fuzz] failed: ${failed[*]}" >&2
  exit 1
fi
