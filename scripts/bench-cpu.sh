#!/usr/bin/env bash
# The fast CPU engine beside the PyTorch stand-in of the original code on the full-size
# synthetic model (169.6 M parameters, 16-token blocks; docs/performance.md, issue 19), for an
# idle machine. Not part of the test command.
#
#   pip install torch numpy            # PyPI only, e.g. in a venv:
#   python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
#   scripts/bench-cpu.sh               # ROUNDS=3 by default; about 10 minutes on 2 cores
#
# Each round runs every configuration once, ours and PyTorch's interleaved, so both see the
# same machine. Before each run it waits (up to WAIT_S seconds) for the 1-minute load average
# to fall to MAX_LOAD (1.5) and prints `uptime` before and after; the summary refuses to
# report when a run started above MAX_LOAD. (A run raises the load itself: a 2-thread run of
# 10 s adds about 0.3 to the 1-minute average, which is why the check is made before a run.)
#
# Figures, each named for what it times:
#   ours    step    = one forward of a 16-token block + LM head of the drawn row + the draw
#                     (`bench`, median of RUNS steps), q8 and q4, fills 0 and 1008;
#   PyTorch step    = forward with all 16 rows' logits + float64 draw on every row;
#   PyTorch forward = the forward alone, all 16 rows' logits (`bench_torch.py`);
#   generate        = 256 first-hitting tokens end to end, tokens/s.
# Writes target/bench/cpu-rounds.jsonl (every run) and prints the summary (medians over the
# rounds with their spread, the ratios and the targets).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# BD3LM: a binary built elsewhere (no build).
B=${BD3LM:-target/release/bd3lm}
M=${SYNTH:-/tmp/synth-bs16}
PY=${TORCH_PYTHON:-/tmp/torchvenv/bin/python}
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-10}
THREADS=${THREADS:-1 2}
MAX_LOAD=${MAX_LOAD:-1.5}
WAIT_S=${WAIT_S:-60}
OUT=target/bench
LOG=$OUT/cpu-rounds.jsonl
mkdir -p "$OUT"
[[ -n ${BD3LM:-} ]] || cargo build --release -p bd3lm-cli
# Figures of an engine that fails conformance are worthless: a failed check stops the run.
conformance=$($B conformance --backend cpu tests/fixtures/*/) || { echo "$conformance" | grep -v '^PASS' || true; echo "bench-cpu.sh: conformance failed" >&2; exit 1; }
# Fails the run when a benchmark wrote no figure.
measured() { [[ -s $1 ]] || { echo "bench-cpu.sh: $1 is empty: nothing was measured" >&2; exit 1; }; }
[[ -d $M ]] || $B synth --out "$M" --block-size 16
for f in q8 q4; do
  [[ -d $M-$f ]] || $B quantize "$M" "$M-$f" --format $f --tokenizer models/tokenizers/gpt2/tokenizer.json
done

load1() { cut -d' ' -f1 /proc/loadavg; }
above() { awk -v a="$1" -v b="$MAX_LOAD" 'BEGIN { exit !(a > b) }'; }

# run ROUND NAME THREADS FILL CMD...: one run, its JSON lines tagged, uptime before and after.
run() {
  local round=$1 name=$2 threads=$3 fill=$4
  shift 4
  local waited=0
  while above "$(load1)" && ((waited < WAIT_S)); do
    sleep 5
    waited=$((waited + 5))
  done
  local before after
  before=$(load1)
  echo "# uptime before $name t=$threads fill=$fill: $(uptime)" >&2
  local out
  out=$("$@" 2>&1) || { echo "$out" >&2; exit 1; }
  after=$(load1)
  echo "# uptime after: $(uptime)" >&2
  # Keep the JSON lines, or the generate stats line, tagged with the run and its loads.
  printf '%s\n' "$out" | python3 -c '
import json, re, sys
round_, name, threads, fill, before, after = sys.argv[1:7]
for line in sys.stdin:
    line = line.strip()
    rec = None
    if line.startswith("{"):
        rec = json.loads(line)
        if "check" in rec:
            print("# " + line, file=sys.stderr)
            continue
    else:
        m = re.search(r"\[bd3lm\] (\d+) tokens in ([\d.]+) s \(([\d.]+) tokens/s\)", line)
        if m:
            rec = {"generate_tokens": int(m[1]), "seconds": float(m[2]),
                   "tokens_per_s": int(m[1]) / float(m[2])}
    if rec is None:
        continue
    rec.update(run=name, round=int(round_), threads=int(threads), fill=int(fill),
               load_before=float(before), load_after=float(after))
    print(json.dumps(rec))
' "$round" "$name" "$threads" "$fill" "$before" "$after" >> "$LOG"
}

: > "$LOG"
echo "# commit $(git rev-parse --short HEAD); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); $(nproc) cores; $(date -u)"
echo "# conformance cpu: $(cut -d" " -f1 <<<"$conformance" | sort | uniq -c | xargs)"
$PY -c 'import torch; print("# torch", torch.__version__)'
for round in $(seq "$ROUNDS"); do
  for t in $THREADS; do
    for fill in 0 1008; do
      formats="q8"
      [[ $fill == 0 ]] && formats="q8 q4"
      for f in $formats; do
        run "$round" "ours-$f" "$t" "$fill" \
          $B bench --model "$M-$f" --backend cpu --threads "$t" --ctx "$fill" --runs "$RUNS" --tokens 16 --json
      done
      run "$round" pytorch "$t" "$fill" \
        $PY scripts/bench_torch.py --model "$M" --threads "$t" --fills "$fill" --runs "$RUNS" --no-generate
    done
    run "$round" ours-generate "$t" 0 \
      $B generate --model "$M-q8" --backend cpu --threads "$t" --tokens 256 --seed "$round"
    run "$round" pytorch-generate "$t" 0 \
      $PY scripts/bench_torch.py --model "$M" --threads "$t" --fills 0 --runs 1 --tokens 256 --seed "$round"
  done
done
measured "$LOG"
python3 scripts/bench_cpu_summary.py "$LOG" --max-load "$MAX_LOAD"
