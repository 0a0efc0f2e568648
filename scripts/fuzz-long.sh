#!/usr/bin/env bash
# The long fuzzing campaign: every target to at least RUNS executions (default 1,000,000),
# all targets in parallel and niced, then the figures written into docs/reliability.md
# between the fuzz-long markers.
#   scripts/fuzz-long.sh [RUNS [MAX_SECONDS]]
# MAX_SECONDS (optional) stops each target early; the table then shows how far it got.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-1000000}
max_seconds=${2:-}
results=$(mktemp)
trap 'rm -f "$results"' EXIT
started=$(date -u '+%Y-%m-%d %H:%M UTC')
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates fuzz || echo ' with uncommitted changes')"
status=0
# All targets at once, each niced: on a shared machine the campaign then takes whatever CPU the
# others leave, instead of one nice-19 share at a time.
scripts/fuzz.sh build
driver=${BD3LM_FUZZ_DRIVER:-fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release/bd3lm-fuzz}
mapfile -t targets < <(BD3LM_FUZZ_TARGET=list "$driver" 2>/dev/null)
# No target: nothing measured, and docs/reliability.md must not get an empty table.
((${#targets[@]})) || { echo "fuzz-long.sh: the driver ($driver) lists no target" >&2; exit 1; }
pids=()
for t in "${targets[@]}"; do
  nice -n 19 scripts/fuzz.sh run --runs "$runs" ${max_seconds:+--seconds "$max_seconds"} \
    --results "$results.$t" "$t" >"$results.$t.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for t in "${targets[@]}"; do
  tail -n +2 "$results.$t.log"
  cat "$results.$t" >>"$results"
  rm -f "$results.$t" "$results.$t.log"
done

{
  echo "<!-- fuzz-long:begin (written by scripts/fuzz-long.sh; do not edit by hand) -->"
  echo
  echo "Run of \`scripts/fuzz-long.sh $runs${max_seconds:+ $max_seconds}\` started $started at commit \`$commit\`,"
  echo "on $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), all targets at once, niced, on a machine shared with other builds: times are not a benchmark."
  echo
  echo "| target | executions | time (s) | peak / target bound | peak (bytes) | peak / (2 x input + 1 MiB) | slowest input (ms CPU) | result |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
  while IFS=$'\t' read -r t execs secs ratio peak slowest general result; do
    echo "| $t | $execs | $secs | $ratio | $peak | $general | $slowest | $result |"
  done <"$results"
  echo
  echo "<!-- fuzz-long:end -->"
} >"$results.md"
python3 - "$results.md" <<'PY'
import re, sys
new = open(sys.argv[1]).read().rstrip("\n")
path = "docs/reliability.md"
doc = open(path).read()
pattern = re.compile(r"<!-- fuzz-long:begin.*?<!-- fuzz-long:end -->", re.S)
if not pattern.search(doc):
    sys.exit("docs/reliability.md has no fuzz-long markers")
open(path, "w").write(pattern.sub(lambda _: new, doc, count=1))
PY
rm -f "$results.md"
echo "docs/reliability.md updated"
exit $status
