#!/usr/bin/env bash
# The WGSL engine on a real GPU, in one run. Prints one JSON line per figure on stdout
# (progress on stderr); put them in docs/performance.md. In order:
#   1. the adapter and its limits;
#   2. GPU conformance on every fixture in both tilings (every trace must be token-exact);
#   3. the full-size synthetic model (169.6 M parameters, 16-token blocks), made on the spot,
#      quantized to q8 and q4;
#   4. bench on f32, q8 and q4 at fills 0, 512 and 1008 (timed steps and blocks, first-hitting
#      tokens/s, counters), the structural counters at fill 1008, one line per dispatch of a
#      q8 step at fill 1008, and an end-to-end first-hitting generation of 512 tokens;
#   5. the dispatch floor: a chain of 104 empty dependent dispatches (a forward's budget).
#
# Usage, from a checkout (tests/fixtures and models/tokenizers are read from it):
#   scripts/gpu-check.sh > gpu-check.jsonl                  # builds the release binary
#   BD3LM=/path/to/bd3lm scripts/gpu-check.sh > gpu.jsonl   # a binary built elsewhere
# Environment: WORK (scratch directory, ~1.3 GB; default /tmp/bd3lm-gpu-check), RUNS (timed
# runs per figure, default 20), PEAK_GBPS (the GPU's peak memory bandwidth in GB/s: adds the
# fraction of it the weight streaming reaches).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WORK=${WORK:-/tmp/bd3lm-gpu-check}
RUNS=${RUNS:-20}
mkdir -p "$WORK"
log() { printf '[gpu-check] %s\n' "$*" >&2; }

if [[ -z ${BD3LM:-} ]]; then
  log "building the release binary"
  cargo build --release -p bd3lm-cli >&2
  BD3LM=./target/release/bd3lm
fi
log "binary: $BD3LM ($("$BD3LM" --version))"

# Adds "figure":NAME to the JSON lines on stdin, and the share of PEAK_GBPS where a line has
# weight_gbytes_per_s.
tag() {
  local figure=$1
  sed "s/^{/{\"figure\":\"$figure\",/" | while IFS= read -r line; do
    if [[ -n ${PEAK_GBPS:-} && $line =~ \"weight_gbytes_per_s\":([0-9.eE+-]+) ]]; then
      share=$(awk -v g="${BASH_REMATCH[1]}" -v p="$PEAK_GBPS" 'BEGIN { printf "%.4f", g / p }')
      line="${line%\}},\"peak_gbytes_per_s\":$PEAK_GBPS,\"bandwidth_share\":$share}"
    fi
    printf '%s\n' "$line"
  done
}

# 1. Adapter and limits. Without an adapter, say what is missing (loader, ICD) and stop.
log "1/5 adapter"
if ! "$BD3LM" info --backend gpu --json; then
  loader=$( (ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1') && echo present || echo missing)
  icds=$(ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null | tr '\n' ' ' || true)
  printf '{"figure":"adapter","error":"no GPU adapter","vulkan_loader":"%s","vulkan_icds":"%s"}\n' \
    "$loader" "${icds:-none}"
  exit 1
fi

# 2. Conformance in both tilings.
log "2/5 conformance"
conformance_failed=0
for tiling in hardware software; do
  out=$("$BD3LM" conformance --backend gpu --gpu-tiling "$tiling" --json tests/fixtures/*/ || true)
  checks=$(grep -c '"status"' <<<"$out" || true)
  failed=$(grep -c '"status":"FAIL"' <<<"$out" || true)
  traces=$(grep -c '"check":"trace/' <<<"$out" || true)
  exact=$(grep '"check":"trace/' <<<"$out" | grep -c '"status":"PASS"' || true)
  printf '{"figure":"conformance","gpu_tiling":"%s","checks":%d,"failed":%d,"traces":%d,"traces_token_exact":%d}\n' \
    "$tiling" "$checks" "$failed" "$traces" "$exact"
  grep '"status":"FAIL"' <<<"$out" | tag conformance_failure || true
  # The figures still follow, but a failed or empty conformance fails the run (exit 1 at the end).
  ((failed == 0 && checks > 0)) || conformance_failed=1
done

# 3. The full-size synthetic model and its packages.
log "3/5 synthetic model"
synth=$WORK/synth-bs16
started=$SECONDS
[[ -f $synth/model.safetensors ]] || "$BD3LM" synth --out "$synth" --block-size 16 >&2
for f in q8 q4; do
  [[ -f $synth-$f/manifest.json ]] || "$BD3LM" quantize "$synth" "$synth-$f" --format "$f" \
    --tokenizer models/tokenizers/gpt2/tokenizer.json >&2
done
printf '{"figure":"synth","seconds":%d,"dir":"%s"}\n' $((SECONDS - started)) "$synth"

# 4. Benchmarks: fills 0, 512 and 1008 (bench's defaults for a 1024 context).
log "4/5 bench"
for m in "$synth" "$synth-q8" "$synth-q4"; do
  "$BD3LM" bench --model "$m" --backend gpu --runs "$RUNS" --json | tag bench
  "$BD3LM" bench --model "$m" --backend gpu --counters-only --ctx 1008 --json | tag counters
done
"$BD3LM" bench --model "$synth-q8" --backend gpu --counters-only --ctx 1008 --profile --json \
  | grep '"figure":"dispatch"' | sed 's/"figure":"dispatch"/"figure":"dispatch_structure"/' || true
"$BD3LM" bench --model "$synth-q8" --backend gpu --ctx 1008 --runs 1 --tokens 16 --profile --json \
  | grep '"figure":"dispatch"' || true
"$BD3LM" bench --model "$synth-q8" --backend gpu --ctx 0 --runs 3 --tokens 512 --json | tag generation_512

# 5. The dispatch floor of a forward's 104 dispatches.
log "5/5 dispatch floor"
"$BD3LM" bench --backend gpu --dispatch-floor 104 --runs 50 --json
log "done"
((conformance_failed == 0)) || { log "conformance FAILED (see the conformance lines)"; exit 1; }
