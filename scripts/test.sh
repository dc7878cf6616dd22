#!/usr/bin/env bash
# Runs the whole test suite on a fresh or warm machine: installs what is missing,
# builds the test bed, starts it (in its own state dir), runs formatting, lint, the
# example app's pytest, the dashboard's browser tests and all workspace tests against it,
# and stops it again even when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

scripts/setup.sh
testbed/build.sh >/dev/null
testbed/gitea/build.sh >/dev/null

export FERRY_TESTBED_STATE="$FERRY_CACHE/testbed-test"
testbed/down >/dev/null 2>&1 || true
trap 'testbed/down' EXIT
eval "$(testbed/up)"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== ferry-plan has no I/O dependencies"
deps=$(cargo tree -p ferry-plan -e normal --prefix none --locked | awk '{print $1}')
io=$(grep -xE 'kube(-.*)?|k8s-openapi|tokio(-.*)?|reqwest|gix(-.*)?' <<<"$deps" | sort -u || true)
if [ -n "$io" ]; then
  echo "ferry-plan must stay pure, but depends on: $(echo $io)" >&2
  exit 1
fi
echo "== failpoints only in test builds of ferry"
if cargo tree -p ferry -e normal --prefix none --locked | awk '{print $1}' | grep -qx fail; then
  echo "the fail crate (failpoints) must not be a normal dependency of ferry" >&2
  exit 1
fi
echo "== pytest examples/llm-app/app"
python3 -m pytest -q examples/llm-app/app
echo "== browser tests (dashboard in headless Chromium)"
tests/browser/run.sh
echo "== cargo test"
CI=true cargo test --workspace --locked --no-fail-fast
