#!/usr/bin/env bash
# The long runs of docs/reliability.md ("Long runs"); not part of scripts/test.sh.
#   cpu        1,000 generations on the fast CPU engine with the embedded demo model
#   reference  the same mix on the exact CPU reference (LONG_RUNS_REFERENCE generations, default 200)
#   gpu        LONG_RUNS_GPU (default 1,000) generations of the WGSL engine on the tiny-v512-bs4
#              fixture, capped at GPU_TIME_LIMIT seconds (default 1200 = 20 minutes)
#   page       LONG_RUNS_PAGE (default 200) generations of the web page on WebGPU in headless
#              Chromium, with Stop/Continue and a model reload (tests/e2e/long_run.mjs)
# Usage: scripts/long-runs.sh [cpu|reference|gpu|page|all]... (default: all). Each run writes
# target/long-runs/<name>.json (its figures) and <name>.log; the summary names the commit and
# the machine. Exit status: non-zero when any run failed one of its checks.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=target/long-runs
mkdir -p "$OUT"
[ $# -eq 0 ] && set -- all
# An unknown name would run nothing and report success: refuse it.
for name in "$@"; do
  case "$name" in cpu|reference|gpu|page|all) ;; *) echo "long-runs.sh: unknown run '$name' (cpu|reference|gpu|page|all)" >&2; exit 2 ;; esac
done
want() { [[ "$WHAT" == *" $1 "* || "$WHAT" == *" all "* ]]; }
WHAT=" $* "
status=0
mkdir -p /tmp/xdg-long-runs && chmod 700 /tmp/xdg-long-runs && export XDG_RUNTIME_DIR=/tmp/xdg-long-runs

echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates shaders || echo ' (with local changes)')"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"

if want cpu || want reference || want gpu; then
  cargo build --release -q -p bd3lm-cli || exit 1
fi
BIN=target/release/bd3lm

long_run() { # name, then bd3lm long-run flags
  local name=$1; shift
  echo "== $name: bd3lm long-run $*"
  /usr/bin/time -v "$BIN" long-run --json "$@" >"$OUT/$name.json" 2>"$OUT/$name.log"
  local rc=$?
  grep -E '^\[long-run\] [0-9]+ generations in|^error' "$OUT/$name.log"
  grep -E 'Maximum resident' "$OUT/$name.log" | sed 's/^\s*/   /'
  [ $rc -eq 0 ] || { echo "   $name FAILED (exit $rc; see $OUT/$name.log)"; status=1; }
}

want cpu && long_run cpu --backend cpu --runs "${LONG_RUNS_CPU:-1000}"
want reference && long_run reference --backend reference --runs "${LONG_RUNS_REFERENCE:-200}" --baseline "${REFERENCE_BASELINE:-50}"
want gpu && long_run gpu --backend gpu --model tests/fixtures/tiny-v512-bs4 --runs "${LONG_RUNS_GPU:-1000}" \
  --time-limit "${GPU_TIME_LIMIT:-1200}" ${GPU_BASELINE:+--baseline "$GPU_BASELINE"}

if want page; then
  echo "== page: E2E_ONLY=long-run tests/e2e/run.sh ($(( ${LONG_RUNS_PAGE:-200} )) generations)"
  if E2E_ONLY=long-run E2E_LONG_RUNS="${LONG_RUNS_PAGE:-200}" tests/e2e/run.sh >"$OUT/page.log" 2>&1; then
    grep -E '^(ok|FAIL) ' "$OUT/page.log"
  else
    grep -E '^(ok|FAIL) |e2e:' "$OUT/page.log"; echo "   page FAILED (see $OUT/page.log)"; status=1
  fi
  cp tests/e2e/out/long-run.json "$OUT/page.json" 2>/dev/null || true
fi
exit $status
