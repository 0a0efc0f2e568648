#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of untrusted bytes (crates/bd3lm-fuzz) with
# libFuzzer on the stable toolchain: libfuzzer-sys links libFuzzer, and rustc's stable
# -Cpasses=sancov-module / -Cllvm-args=-sanitizer-coverage-* flags add the coverage counters
# and comparison hooks it steers by (what `cargo fuzz build --sanitizer none` passes). No
# nightly, no cargo install: debug assertions and overflow checks are on, so an arithmetic
# overflow is a crash too.
#
#   scripts/fuzz.sh build
#   scripts/fuzz.sh run [--seconds S] [--runs N] [--fresh] [--results FILE] all|TARGET... [-- LIBFUZZER_FLAGS]
#
# --fresh starts from the committed seeds and regressions only (new finds go to a temporary
# folder): what scripts/test.sh runs, the same on every machine and bounded in time.
#
# Each run: inputs over 1 s of CPU time are hangs (the driver's watchdog); an allocation beyond 2 x input + 1 MiB is
# refused and fails the run (the counting allocator, crates/bd3lm-fuzz/src/alloc.rs); a panic
# is a crash. Crashing inputs land in fuzz/artifacts/TARGET/; new coverage in fuzz/corpus/TARGET/
# (both ignored by git), seeded from fuzz/seeds/TARGET/ and fuzz/regressions/TARGET/.
# Prints one summary line per target and exits non-zero if any target failed, ran no input,
# or if there was no target to run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
driver=fuzz/target/$host/release/bd3lm-fuzz
# BD3LM_FUZZ_DRIVER: a driver built elsewhere (no build); scripts/check-scripts.sh plants a
# fake one to prove that a run of no target, or of a target that ran nothing, fails.
prebuilt=${BD3LM_FUZZ_DRIVER:-}
[[ -z $prebuilt ]] || driver=$prebuilt
# BD3LM_FUZZ_ARTIFACTS_ROOT: where crashes and logs go (that check keeps fuzz/artifacts/ intact).
artifacts=${BD3LM_FUZZ_ARTIFACTS_ROOT:-fuzz/artifacts}

build() {
  [[ -z $prebuilt ]] || return 0
  # --target keeps the flags off build scripts and proc macros (host artifacts).
  RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cforce-frame-pointers=yes" \
    cargo build --quiet --release --manifest-path fuzz/Cargo.toml --target "$host" ${FUZZ_CARGO_FLAGS:-}
}

targets() {
  BD3LM_FUZZ_TARGET=list "$driver" 2>/dev/null
}

run() {
  local seconds=10 seconds_given="" runs="" results="" fresh="" names=() extra=()
  while (($#)); do
    case "$1" in
      --seconds) seconds=$2; seconds_given=1; shift 2 ;;
      --runs) runs=$2; shift 2 ;;
      --results) results=$2; shift 2 ;;
      --fresh) fresh=$(mktemp -d); trap "rm -rf '$fresh'" EXIT; shift ;;
      --) shift; extra=("$@"); break ;;
      all) names+=(all); shift ;;
      *) names+=("$1"); shift ;;
    esac
  done
  ((${#names[@]})) || { echo "usage: scripts/fuzz.sh run [--seconds S|--runs N] all|TARGET..." >&2; exit 2; }
  build
  if [[ " ${names[*]} " == *" all "* ]]; then mapfile -t names < <(targets); fi
  # A run of no target proves nothing: fail instead of reporting success.
  ((${#names[@]})) || { echo "fuzz.sh: the driver ($driver) lists no target" >&2; exit 1; }
  local failed=0
  printf '%-20s %10s %7s %9s %9s %12s %10s  %s\n' target executions time_s execs/s peak/bound peak_bytes slowest_ms result
  for t in "${names[@]}"; do
    local corpus="fuzz/corpus/$t"
    [[ -n $fresh ]] && corpus="$fresh/$t"
    mkdir -p "$corpus" "$artifacts/$t" "fuzz/regressions/$t"
    [[ -d fuzz/seeds/$t ]] || { echo "no seeds in fuzz/seeds/$t" >&2; exit 2; }
    # --runs alone: exactly that many; with --seconds too: whichever comes first.
    local log="$artifacts/$t/last-run.log" limit=(-max_total_time="$seconds")
    [[ -n $runs ]] && limit=(-runs="$runs" ${seconds_given:+-max_total_time="$seconds"})
    local start=$SECONDS rc=0
    # -timeout=0: hangs are the driver's watchdog's (1 s of CPU time; fuzz/src/main.rs says why).
    BD3LM_FUZZ_TARGET=$t BD3LM_FUZZ_ARTIFACTS="$artifacts/$t/" \
      "$driver" "${limit[@]}" -timeout=0 -rss_limit_mb=4096 -dict=fuzz/dict/json.dict \
      -print_final_stats=1 -artifact_prefix="$artifacts/$t/" "${extra[@]}" \
      "$corpus" "fuzz/seeds/$t" "fuzz/regressions/$t" >"$log" 2>&1 || rc=$?
    local elapsed=$((SECONDS - start))
    local execs ratio peak slowest general
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    slowest=$(sed -n 's/.*bd3lm-fuzz-stats.* slowest_input_ms=\([0-9.]*\).*/\1/p' "$log" | tail -1)
    general=$(sed -n 's/.*bd3lm-fuzz-stats.* max_general_ratio=\([0-9.]*\).*/\1/p' "$log" | tail -1)
    ratio=$(sed -n 's/.*bd3lm-fuzz-stats.* max_ratio=\([0-9.]*\).*/\1/p' "$log" | tail -1)
    peak=$(sed -n 's/.*bd3lm-fuzz-stats.* max_peak_bytes=\([0-9]*\).*/\1/p' "$log" | tail -1)
    local result=ok
    if ((rc != 0)); then
      result="FAILED (exit $rc): see $log and $artifacts/$t/"
      failed=1
    elif [[ ! ${execs:-0} -gt 0 ]]; then
      # A target that executed nothing (or printed no statistics) measured nothing.
      result="FAILED: no executions reported (see $log)"
      rc=1 failed=1
    fi
    printf '%-20s %10s %7s %9s %9s %12s %10s  %s\n' "$t" "${execs:-?}" "$elapsed" \
      "$(( ${execs:-0} / (elapsed > 0 ? elapsed : 1) ))" "${ratio:-?}" "${peak:-?}" "${slowest:-?}" "$result"
    [[ -z $results ]] || printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${execs:-?}" "$elapsed" \
      "${ratio:-?}" "${peak:-?}" "${slowest:-?}" "${general:-?}" "$result" >>"$results"
    ((rc == 0)) || grep -E -A1 'panicked|ERROR: libFuzzer|allocation bound|HANG|Test unit written' "$log" | head -5 >&2 || true
  done
  return $failed
}

case "${1:-}" in
  build) build ;;
  run) shift; run "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
