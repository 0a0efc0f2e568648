#!/usr/bin/env bash
# The benchmarks behind docs/performance.md: the demo model (q8 package and f32 original) on
# both backends, and the full-size synthetic model (169.6M parameters, 16-token blocks; f32 and
# q8) on the CPU and, at fill 0 only, on the GPU backend; the GPU engine's structural counters
# at released shapes in both tilings. JSON lines go to target/bench/. On a real GPU, run
# scripts/gpu-check.sh instead.
# Run it on an otherwise idle machine; on lavapipe the full-size GPU rows take ~10 minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p /tmp/xdg-bench && chmod 700 /tmp/xdg-bench && export XDG_RUNTIME_DIR=/tmp/xdg-bench
# BD3LM: a binary built elsewhere (no build).
[[ -n ${BD3LM:-} ]] || cargo build --release -p bd3lm-cli
B=${BD3LM:-./target/release/bd3lm}
OUT=target/bench
SYNTH=${SYNTH:-/tmp/synth-bs16}
mkdir -p "$OUT"
echo "commit $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
# Figures of an engine that fails conformance are worthless: a failed check stops the run.
for backend in cpu gpu; do
  out=$($B conformance --backend $backend tests/fixtures/*/) || { echo "$out" | grep -v '^PASS' || true; echo "bench.sh: conformance failed on $backend" >&2; exit 1; }
  echo "conformance $backend: $(cut -d" " -f1 <<<"$out" | sort | uniq -c | xargs)"
done
# Fails the run when a benchmark wrote no figure.
measured() { [[ -s $1 ]] || { echo "bench.sh: $1 is empty: nothing was measured" >&2; exit 1; }; }
[ -f "$SYNTH/model.safetensors" ] || $B synth --out "$SYNTH" --block-size 16
[ -f "$SYNTH-q8/manifest.json" ] || $B quantize "$SYNTH" "$SYNTH-q8" --format q8 \
  --tokenizer models/tokenizers/gpt2/tokenizer.json
for m in models/sotu-tiny-bs4-q8 models/bd3lm-sotu-tiny-bs4; do
  for backend in cpu gpu; do $B bench --model "$m" --backend $backend --runs 10 --json; done
done | tee "$OUT/demo.jsonl"
measured "$OUT/demo.jsonl"
for m in "$SYNTH" "$SYNTH-q8"; do
  $B bench --model "$m" --backend cpu --runs 5 --tokens 32 --json
done | tee "$OUT/full-cpu.jsonl"
measured "$OUT/full-cpu.jsonl"
for m in "$SYNTH" "$SYNTH-q8"; do
  $B bench --model "$m" --backend gpu --ctx 0 --runs 3 --tokens 16 --json
done | tee "$OUT/full-gpu.jsonl"
measured "$OUT/full-gpu.jsonl"
$B bench --model models/sotu-tiny-bs4-q8 --backend gpu --ctx 0 --runs 3 --profile | tee "$OUT/demo-profile.md"
measured "$OUT/demo-profile.md"
for tiling in hardware software; do
  $B bench --model "$SYNTH-q8" --backend gpu --gpu-tiling $tiling --counters-only --json
done | tee "$OUT/full-counters.jsonl"
measured "$OUT/full-counters.jsonl"
$B bench --model "$SYNTH-q8" --backend gpu --gpu-tiling hardware --counters-only --ctx 1008 --profile \
  | tee "$OUT/full-structure.md"
measured "$OUT/full-structure.md"
$B bench --backend gpu --dispatch-floor 104 --runs 20 --json | tee "$OUT/dispatch-floor.jsonl"
measured "$OUT/dispatch-floor.jsonl"
