#!/usr/bin/env bash
# Mutation testing of the numerical core with cargo-mutants (docs/reliability.md, "Mutation
# testing"): each scope mutates one file of the core crate (the forward: only its attention
# layer and LayerNorm) and runs the core crate's tests that cover it. Not part of the test
# command: it takes hours on a 2-core machine (the figures and times are in the doc).
# The forward's scope names lines of forward.rs (the attention half of `layer`): keep it in
# step when that file changes (`cargo mutants --list` shows what a scope selects).
#   cargo install cargo-mutants --locked
#   scripts/mutants.sh [SCOPE...]      SCOPE: rng config safetensors sampler forward quant (default: all)
# Environment: MUTANTS_JOBS (parallel builds, default 1), MUTANTS_TIMEOUT (seconds per test
# run, default 300), MUTANTS_BASELINE=skip (skip the unmutated baseline run of each scope),
# MUTANTS_SHARD=K/N (only the K-th of N shards of each scope), MUTANTS_ITERATE=1 (retest only
# the mutants an earlier run in MUTANTS_OUT did not catch: after adding tests), MUTANTS_OUT (default
# target/mutants). Writes MUTANTS_OUT/SCOPE/mutants.out/ (caught.txt, missed.txt, timeout.txt,
# unviable.txt) and prints one line per scope: generated, caught, missed, timed out, unviable,
# minutes. Exits non-zero when a mutant was missed or timed out, or a scope did not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALL=(rng config safetensors sampler forward quant)
# scope NAME: sets file, re (mutant-name filter, may be empty), target (the one test target
# built and run per mutant, passed to every cargo call so that the build skips the crate's other
# test targets) and tests (the test binary's args): the crate's unit tests (each file's own
# among them), or for the forward the fixture conformance.
# The crate's unit tests without the NELBO evaluation's (a minute each, unoptimised; they
# cover none of these files' logic that the others do not).
unit=(-- --skip tools::eval::)
scope() {
  re='' target=--lib opt=0
  case "$1" in
    rng) file=crates/bd3lm/src/runtime/rng.rs; tests=("${unit[@]}") ;;
    sampler)
      # SUBS, nucleus, posterior, the race and the confidence / entropy selection rules.
      file=crates/bd3lm/src/runtime/sampler.rs; tests=("${unit[@]}") ;;
    quant)
      # Quantization and dequantization, not the scheme names and sizes.
      file=crates/bd3lm/src/runtime/quant.rs
      re='(in|replace) (Matrix::(dequantize_row|to_f32|quantize|quantize_with)|quantize_q8|quantize_q4\w*|encode_q4\w*|nibble|in_parallel\w*)\b'
      tests=("${unit[@]}") ;;
    config)
      # The validation of config.json, not the parameter count or the defaults.
      file=crates/bd3lm/src/runtime/config.rs
      re='(in|replace) (Config::(validate|from_map|from_json_str)|get_(usize|bool|f64|string))\b'
      tests=("${unit[@]}") ;;
    safetensors)
      # The header parser and the tensor checks on it, not the file reader.
      file=crates/bd3lm/src/runtime/hf_file.rs
      re='(in|replace) (SafetensorsHeader|CheckpointDtype)::'
      tests=("${unit[@]}") ;;
    forward)
      # The reference forward's LayerNorm and attention (its half of `layer`), not the MLP
      # or the block driver.
      file=crates/bd3lm/src/runtime/forward.rs
      re='(in|replace) layer_norm_modulate\b|forward.rs:(24[1-9]|2[5-9][0-9]|30[0-4]):.* in layer$'
      # Optimised a little: the reference forward over every fixture takes 20 s unoptimised,
      # a second at opt-level 1 (which costs the build a few seconds).
      target=--test=conformance_cpu tests=() opt=1 ;;
    *) echo "mutants.sh: unknown scope '$1' (${ALL[*]})" >&2; exit 2 ;;
  esac
}

(($#)) || set -- "${ALL[@]}"
for name in "$@"; do scope "$name"; done # every name checked before the long run starts
command -v cargo-mutants >/dev/null || { echo "mutants.sh: cargo install cargo-mutants --locked" >&2; exit 1; }

OUT=${MUTANTS_OUT:-target/mutants}
mkdir -p "$OUT"
# One target directory for every scope: the dependencies build once, not once per scratch copy.
# An absolute MUTANTS_OUT stays where it points (not under this checkout).
case $OUT in
  /*) export CARGO_TARGET_DIR=$OUT/target ;;
  *) export CARGO_TARGET_DIR=$PWD/$OUT/target ;;
esac
# The mutated crate unoptimised (`forward`: opt-level 1; dependencies stay at opt-level 2) and
# without debug info: it compiles and links once per mutant. MUTANTS_OPT_LEVEL overrides.
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-0}
count() {
  local n
  n=$(grep -c . "$1" 2>/dev/null) || true
  echo "${n:-0}"
}
status=0
printf '%-12s %9s %7s %7s %9s %9s %8s\n' scope generated caught missed timeout unviable minutes
for name in "$@"; do
  scope "$name"
  started=$SECONDS
  rc=0
  args=(--package bd3lm --file "$file" --timeout "${MUTANTS_TIMEOUT:-300}" --build-timeout 900
    --jobs "${MUTANTS_JOBS:-1}" --no-shuffle --output "$OUT/$name" --cargo-arg "$target")
  [[ -z $re ]] || args+=(--re "$re")
  [[ -z ${MUTANTS_SHARD:-} ]] || args+=(--shard "$MUTANTS_SHARD")
  [[ ${MUTANTS_BASELINE:-run} != skip ]] || args+=(--baseline skip)
  [[ ${MUTANTS_ITERATE:-0} != 1 ]] || args+=(--iterate)
  CARGO_PROFILE_DEV_OPT_LEVEL=${MUTANTS_OPT_LEVEL:-$opt} cargo mutants "${args[@]}" -- "${tests[@]+"${tests[@]}"}" >"$OUT/$name.log" 2>&1 || rc=$?
  dir=$OUT/$name/mutants.out
  caught=$(count "$dir/caught.txt") missed=$(count "$dir/missed.txt")
  timeout=$(count "$dir/timeout.txt") unviable=$(count "$dir/unviable.txt")
  generated=$((caught + missed + timeout + unviable))
  printf '%-12s %9d %7d %7d %9d %9d %8.1f\n' "$name" "$generated" "$caught" "$missed" "$timeout" \
    "$unviable" "$(awk -v s=$((SECONDS - started)) 'BEGIN { print s / 60 }')"
  # cargo-mutants: 0 all caught, 2 missed, 3 timeouts; anything else (or nothing generated) is
  # a run that measured nothing.
  if ((generated == 0)) || ((rc != 0 && rc != 2 && rc != 3)); then
    echo "  $name: cargo mutants exited $rc with $generated outcomes (see $OUT/$name.log)" >&2
    status=1
  fi
  ((missed + timeout == 0)) || { sed 's/^/  missed: /' "$dir/missed.txt" 2>/dev/null; status=1; }
done
exit $status
