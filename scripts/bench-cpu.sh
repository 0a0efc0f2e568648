#!/usr/bin/env bash
# The fast CPU engine beside the PyTorch stand-in on the full-size synthetic model
# (docs/performance.md). Needs a release build and, for the PyTorch rows, a Python with torch:
#   python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
# Each configuration runs ROUNDS times, ours and PyTorch's interleaved, so both see the same
# machine load; compare the per-round medians and the overall minimum. Writes JSON lines to
# target/bench/cpu.jsonl. Not part of the test command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# BD3LM: a binary built elsewhere (no build).
B=${BD3LM:-target/release/bd3lm}
M=${SYNTH:-/tmp/synth-bs16}
PY=${TORCH_PYTHON:-/tmp/torchvenv/bin/python}
ROUNDS=${ROUNDS:-2}
OUT=target/bench
mkdir -p "$OUT"
[[ -n ${BD3LM:-} ]] || cargo build --release -p bd3lm-cli
# Figures of an engine that fails conformance are worthless: a failed check stops the run.
conformance=$($B conformance --backend cpu tests/fixtures/*/) || { echo "$conformance" | grep -v '^PASS' || true; echo "bench-cpu.sh: conformance failed" >&2; exit 1; }
# Fails the run when a benchmark wrote no figure.
measured() { [[ -s $1 ]] || { echo "bench-cpu.sh: $1 is empty: nothing was measured" >&2; exit 1; }; }
[[ -d $M ]] || $B synth --out "$M" --block-size 16
for f in f32 q8 q4; do
  [[ -d $M-$f ]] || $B quantize "$M" "$M-$f" --format $f --tokenizer models/tokenizers/gpt2/tokenizer.json
done
echo "# commit $(git rev-parse --short HEAD); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# conformance cpu: $(cut -d' ' -f1 <<<"$conformance" | sort | uniq -c | xargs)"
{
  for round in $(seq "$ROUNDS"); do
    for t in 2 1; do
      for fill in 0 1008; do
        for f in q8 q4; do
          $B bench --model "$M-$f" --backend cpu --threads $t --ctx $fill --runs 5 --tokens 16 --json
        done
        $PY scripts/bench_torch.py --model "$M" --threads $t --fills $fill --runs 3 --no-generate | tail -1
      done
    done
    # The browser comparison's native side: 128-bit SIMD, one thread.
    BD3LM_CPU_SIMD=simd128 $B bench --model "$M-q8" --backend cpu --threads 1 --ctx 0 --runs 5 --tokens 16 --json
    echo "# load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
  for f in f32 q8 q4; do
    $B bench --model "$M-$f" --backend cpu --threads 2 --runs 3 --tokens 16 --json
  done
} | tee "$OUT/cpu.jsonl"
measured "$OUT/cpu.jsonl"
# End to end: 256 tokens, first hitting, equal threads.
for t in ${GEN_THREADS:-1 2}; do
  $B generate --model "$M-q8" --backend cpu --threads $t --tokens 256 --seed 0 2>&1 >/dev/null | tail -n 1
  $PY scripts/bench_torch.py --model "$M" --threads $t --runs 1 --fills 0 --tokens 256
  echo "# load $(cut -d' ' -f1-3 /proc/loadavg)"
done | tee "$OUT/cpu-generate.txt"
measured "$OUT/cpu-generate.txt"
