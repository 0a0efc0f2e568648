#!/usr/bin/env bash
# One command: install what is missing, then run every check and test: formatting, clippy
# (native and wasm32), the native workspace tests (GPU tests on the native adapter, Mesa
# lavapipe without a GPU), a short fuzzing run of every parser, the wasm tests in headless Chromium with WebGPU, and the browser
# end-to-end test of the page.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$SECONDS
last=$SECONDS
# Each step prints how long the previous one took, so CI logs show where the time goes.
step() {
  printf '\n\033[1m==> %s\033[0m (previous step %d s, total %d s)\n' "$*" $((SECONDS - last)) $((SECONDS - started))
  last=$SECONDS
}

step "setup: install what is missing"
source scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all --check

step "clippy (native)"
cargo clippy --workspace --all-targets -- -D warnings

step "clippy (wasm32)"
cargo clippy --target wasm32-unknown-unknown -p bd3lm -p bd3lm-cpu -p bd3lm-gpu -p bd3lm-web --all-targets -- -D warnings

step "native tests (CPU reference, GPU engine on $(vulkaninfo --summary 2>/dev/null | grep -m1 deviceName | sed 's/.*= //' || echo 'the native adapter'))"
# --no-fail-fast: one CI run shows every failing test, not only the first binary's.
cargo test --workspace --no-fail-fast

step "fuzzing: a short coverage-guided run of every target (docs/reliability.md)"
# Builds the libFuzzer driver (fuzz/, its own flags), then 4 s per target from the committed
# seeds and regressions; a panic, a hang or an allocation over the bound fails the run.
scripts/fuzz.sh run --fresh --seconds 4 all

# Only tests/web.rs has browser tests (the other targets are native-only and would be linked
# and loaded for nothing).
step "wasm tests: build"
cargo test --target wasm32-unknown-unknown -p bd3lm-gpu --test web --no-run

step "wasm tests: run in headless Chromium (WebGPU)"
python3 scripts/serve-fixtures.py 8765 tests/fixtures &
fixture_server=$!
trap 'kill $fixture_server 2>/dev/null || true' EXIT
export WASM_BINDGEN_TEST_TIMEOUT=600
cargo test --target wasm32-unknown-unknown -p bd3lm-gpu --test web

step "browser end-to-end test"
# Never skipped: a missing or non-executable script is a failure, not a silent pass.
[[ -x tests/e2e/run.sh ]] || { echo "tests/e2e/run.sh is missing or not executable" >&2; exit 1; }
tests/e2e/run.sh

step "no silent success: every script fails on a planted failure"
# After the page build: two of the checks load dist/ with a package that does not load.
scripts/check-scripts.sh

step "all tests passed in $((SECONDS - started)) s"
