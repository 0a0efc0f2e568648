#!/usr/bin/env bash
# The WGSL engine on a real GPU in one run that a short GPU loan cannot waste (docs/performance.md,
# "Measuring on a real GPU"). It never calls cargo: the binary is built beforehand.
#
#   scripts/gpu-check.sh --prepare    # on the build machine: release binary (stripped) and the
#                                     # Vulkan loader into target/gpu-check/ (carry that folder)
#   scripts/gpu-check.sh              # on the GPU machine, from a copy of the checkout
#   scripts/gpu-check.sh --rehearse   # the same steps on any adapter (lavapipe here), small model
#                                     # and counts; run by crates/bd3lm-cli/tests/cli_gpu_check.rs
#
# Every figure is one JSON line, appended to $RESULTS the moment it exists and echoed on stdout
# (progress and the commands' stderr go to stderr and to $LOG). Order: the adapter (a missing
# Vulkan loader or driver, or a software adapter, stops the run at once with the reason); the
# full-size synthetic model made on the spot and quantized to q8; q8 bench at fills 0, 512, 1008,
# the same at WebGPU's default limits (--gpu-baseline), its structural counters, GPU time per dispatch at fills 1008 and 0, first-hitting generation of
# 512 tokens and the dispatch floor; GPU conformance in both tilings; PyTorch on CUDA (f32, bf16)
# where it is installed; then f32 and q4 bench while the time budget lasts.
#
# Environment: BD3LM (the binary; default target/gpu-check/bd3lm), WORK (scratch, ~1.3 GB; default
# /tmp/bd3lm-gpu-check), GPU_CHECK_OUT (where results go; default $OUT, the device tool's output
# folder, else $WORK), RUNS (timed runs per figure), BUDGET_S (seconds after which optional steps
# are skipped and running ones cut short; default 330), PEAK_GBPS (the GPU's peak memory bandwidth;
# guessed from nvidia-smi for H100/H200), PYTHON (default python3).
#
# Exit status: 0 every step passed; 1 a conformance check failed (after every figure is saved);
# 2 no usable adapter (missing loader/driver, or a software adapter outside --rehearse); 3 a step
# failed or ran out of time (its figure says which); 64 bad usage.
set -uo pipefail # no -e: a failed step is recorded and the next one still runs
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUNDLE=target/gpu-check

usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
MODE=check
case "${1:-}" in
  "" | --check) ;;
  --prepare) MODE=prepare ;;
  --rehearse) MODE=rehearse ;;
  -h | --help) usage; exit 0 ;;
  *) echo "gpu-check: unknown argument '$1' (--prepare, --rehearse or nothing)" >&2; exit 64 ;;
esac
log() { printf '[gpu-check] %s\n' "$*" >&2; }

# --- Preparing, on the build machine -------------------------------------------------------------
if [[ $MODE == prepare ]]; then
  set -e
  cargo build --release -p bd3lm-cli
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/lib"
  cp target/release/bd3lm "$BUNDLE/bd3lm"
  strip "$BUNDLE/bd3lm"
  # The Vulkan loader, used only where the GPU machine has none (the NVIDIA driver ships the ICD
  # but not always the loader).
  loader=$($(command -v ldconfig || echo /sbin/ldconfig) -p | awk '/libvulkan\.so\.1 .*x86-64/ { print $NF; exit }')
  [[ -n $loader ]] && cp -L "$loader" "$BUNDLE/lib/libvulkan.so.1"
  git rev-parse HEAD >"$BUNDLE/COMMIT" 2>/dev/null || echo unknown >"$BUNDLE/COMMIT"
  git status --porcelain --untracked-files=no | grep -q . && echo "(+ uncommitted changes)" >>"$BUNDLE/COMMIT"
  glibc=$(objdump -T "$BUNDLE/bd3lm" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
  bytes=$(du -sb "$BUNDLE" | cut -f1)
  log "prepared $BUNDLE: $((bytes >> 20)) MiB (the device tool carries 64 MiB), binary needs $glibc"
  ((bytes < 60 << 20)) || { log "too large to carry"; exit 1; }
  log "on the GPU machine, from the checkout with $BUNDLE carried: scripts/gpu-check.sh"
  exit 0
fi

# --- Setting up ----------------------------------------------------------------------------------
REHEARSE=$([[ $MODE == rehearse ]] && echo true || echo false)
WORK=${WORK:-/tmp/bd3lm-gpu-$MODE}
OUT_DIR=${GPU_CHECK_OUT:-${OUT:-$WORK}}
mkdir -p "$WORK" "$OUT_DIR"
RESULTS=${RESULTS:-$OUT_DIR/gpu-check.jsonl}
LOG=$OUT_DIR/gpu-check.log
: >"$RESULTS"
: >"$LOG"
exec 2> >(tee -a "$LOG" >&2)
BUDGET_S=${BUDGET_S:-330}
LDCONFIG=$(command -v ldconfig || echo /sbin/ldconfig)
PYTHON=${PYTHON:-python3}
FAILED=()
CONFORMANCE_OK=true

json_str() { # a JSON string literal of $1
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/ }
  printf '"%s"' "${s//$'\r'/}"
}
emit() { printf '%s\n' "$1" >>"$RESULTS"; printf '%s\n' "$1"; }
# Tags the JSON lines on stdin with "figure" (where they have none) and the share of PEAK_GBPS,
# and emits each as it arrives; other lines go to the log.
tag() {
  local figure=$1 line share
  while IFS= read -r line; do
    if [[ $line != \{* ]]; then
      printf '%s\n' "$line" >&2
      continue
    fi
    [[ $line == *'"figure":'* ]] || line="{\"figure\":\"$figure\",${line#\{}"
    if [[ -n ${PEAK_GBPS:-} && $line =~ \"weight_gbytes_per_s\":([0-9.eE+-]+) ]]; then
      share=$(awk -v g="${BASH_REMATCH[1]}" -v p="$PEAK_GBPS" 'BEGIN { printf "%.4f", g / p }')
      line="${line%\}},\"peak_gbytes_per_s\":$PEAK_GBPS,\"bandwidth_share\":$share}"
    fi
    emit "$line"
  done
}
skip() { emit "{\"figure\":\"skipped\",\"step\":\"$1\",\"reason\":$(json_str "$2")}"; }
# step NAME LIMIT_S FIGURE COMMAND...: runs COMMAND under a time limit (cut to what is left of
# the budget), its JSON lines tagged with FIGURE; a failure is recorded and returned, never fatal.
step() {
  local name=$1 limit=$2 figure=$3 started=$SECONDS rc
  shift 3
  local left=$((BUDGET_S - SECONDS))
  if ((left < 5)); then
    skip "$name" "time budget of $BUDGET_S s spent"
    FAILED+=("$name")
    return 1
  fi
  ((limit > left)) && limit=$left
  log "$name (at most $limit s)"
  timeout -k 5 "$limit" "$@" | tag "$figure"
  rc=${PIPESTATUS[0]}
  if ((rc != 0)); then
    FAILED+=("$name")
    emit "{\"figure\":\"step_failed\",\"step\":\"$name\",\"rc\":$rc,\"timed_out\":$([[ $rc == 124 || $rc == 137 ]] && echo true || echo false),\"seconds\":$((SECONDS - started))}"
  fi
  return "$rc"
}
# optional NAME: whether enough budget is left for an optional step (else records the skip).
optional() {
  if ((BUDGET_S - SECONDS < ${2:-20})); then
    skip "$1" "time budget of $BUDGET_S s spent"
    return 1
  fi
}
finish() {
  local failed=""
  ((${#FAILED[@]})) && failed=$(printf '"%s",' "${FAILED[@]}") && failed=${failed%,}
  emit "{\"figure\":\"summary\",\"mode\":\"$MODE\",\"seconds\":$SECONDS,\"conformance_passed\":$CONFORMANCE_OK,\"failed_steps\":[$failed],\"results\":$(json_str "$RESULTS")}"
  log "figures in $RESULTS, log in $LOG ($SECONDS s)"
  if [[ $CONFORMANCE_OK != true ]]; then
    log "FAILED: a conformance check failed"
    exit 1
  fi
  if ((${#FAILED[@]})); then
    log "FAILED: ${FAILED[*]}"
    exit 3
  fi
  exit 0
}

if [[ -z ${BD3LM:-} ]]; then
  BD3LM=$BUNDLE/bd3lm
  if [[ ! -x $BD3LM ]]; then
    log "no binary: run scripts/gpu-check.sh --prepare on the build machine and carry $BUNDLE, or set BD3LM"
    emit '{"figure":"adapter","error":"no bd3lm binary (scripts/gpu-check.sh --prepare was not run, BD3LM unset)"}'
    exit 2
  fi
fi
if ! version=$("$BD3LM" --version 2>&1); then
  emit "{\"figure\":\"adapter\",\"error\":$(json_str "the binary $BD3LM does not run: $version")}"
  exit 2
fi
commit=$(cat "$BUNDLE/COMMIT" 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)
emit "{\"figure\":\"run\",\"mode\":\"$MODE\",\"binary\":$(json_str "$BD3LM"),\"version\":$(json_str "$version"),\"commit\":$(json_str "$commit"),\"host\":$(json_str "$(uname -srm)"),\"cpus\":$(nproc),\"started_utc\":\"$(date -u +%FT%TZ)\"}"

# --- 1. The adapter, before anything else --------------------------------------------------------
log "1. adapter"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi >&2
  smi=$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader 2>&1 | head -1)
  emit "{\"figure\":\"nvidia_smi\",\"gpu\":$(json_str "$smi")}"
  if [[ -z ${PEAK_GBPS:-} ]]; then
    case $smi in
      *H200*) PEAK_GBPS=4800 ;;
      *H100*PCIe*) PEAK_GBPS=2000 ;;
      *H100*NVL*) PEAK_GBPS=3900 ;;
      *H100*) PEAK_GBPS=3350 ;;
    esac
  fi
fi
# The Vulkan loader: the system's, else the one --prepare carried.
if ! "$LDCONFIG" -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  if [[ -f $BUNDLE/lib/libvulkan.so.1 ]]; then
    export LD_LIBRARY_PATH=$PWD/$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    log "no system Vulkan loader: using $BUNDLE/lib/libvulkan.so.1"
  fi
fi
# The NVIDIA ICD: point the loader at it alone (a software ICD beside it is then not chosen); where
# the driver is there without its manifest (containers), write one for its library.
icd_dirs="/etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/share/vulkan/icd.d /etc/glvnd /usr/share/glvnd"
if command -v nvidia-smi >/dev/null && [[ -z ${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-} && $REHEARSE == false ]]; then
  nvidia_icd=$(find $icd_dirs -name 'nvidia_icd*.json' 2>/dev/null | head -1)
  if [[ -z $nvidia_icd ]]; then
    glx=$("$LDCONFIG" -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0 .*x86-64/ { print $NF; exit }')
    if [[ -n $glx ]]; then
      nvidia_icd=$WORK/nvidia_icd.json
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$glx" >"$nvidia_icd"
      log "no NVIDIA ICD manifest: wrote $nvidia_icd for $glx"
    fi
  fi
  if [[ -n $nvidia_icd ]]; then
    export VK_DRIVER_FILES=$nvidia_icd VK_ICD_FILENAMES=$nvidia_icd
    log "VK_DRIVER_FILES=$nvidia_icd"
  fi
fi
vulkan_report() {
  local loader icds glx
  loader=$( ("$LDCONFIG" -p 2>/dev/null | grep -q 'libvulkan\.so\.1' || [[ -n ${LD_LIBRARY_PATH:-} ]]) && echo present || echo missing)
  icds=$(find $icd_dirs -name '*.json' 2>/dev/null | tr '\n' ' ')
  glx=$("$LDCONFIG" -p 2>/dev/null | grep -q 'libGLX_nvidia\.so\.0' && echo present || echo missing)
  printf '"vulkan_loader":"%s","vulkan_icds":%s,"vk_driver_files":%s,"nvidia_vulkan_library":"%s","hint":"see docs/platform.md: VK_DRIVER_FILES=/path/to/nvidia_icd.json; in a container the driver needs the graphics capability (NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics)"' \
    "$loader" "$(json_str "${icds:-none}")" "$(json_str "${VK_DRIVER_FILES:-}")" "$glx"
}
adapter=$(timeout -k 5 60 "$BD3LM" info --backend gpu --json)
rc=$?
if ((rc != 0)) || [[ $adapter != \{* ]]; then
  error=$(sed -n 's/.*"error":"\([^"]*\)".*/\1/p' <<<"$adapter")
  emit "{\"figure\":\"adapter\",\"error\":$(json_str "no GPU adapter (rc $rc): ${error:-$adapter}"),$(vulkan_report)}"
  log "FAILED: no GPU adapter"
  exit 2
fi
emit "$adapter"
if [[ $adapter =~ \"software_adapter\":true || $adapter =~ llvmpipe|lavapipe|SwiftShader|\"device_type\":\"Cpu\" ]]; then
  if [[ $REHEARSE == false ]]; then
    emit "{\"figure\":\"adapter_rejected\",\"error\":\"a software adapter (CPU rasteriser): its figures mean nothing; fix the Vulkan driver or use --rehearse\",$(vulkan_report)}"
    log "FAILED: the adapter is a software one"
    exit 2
  fi
  log "software adapter (rehearsal): structure only, no figure here is a speed"
fi

# --- 2. The synthetic model: full size (released shapes), or small for a rehearsal ---------------
if [[ $REHEARSE == true ]]; then
  RUNS=${RUNS:-1}
  # The demo model's vocabulary and tokenizer (GPT-2's LM head and sampler are slow on lavapipe).
  SHAPE=(--hidden-dim 64 --layers 2 --heads 2 --vocab-size 4097 --model-length 32)
  TOKENIZER=(--tokenizer models/bd3lm-sotu-tiny-bs4/tokenizer.json)
  BENCH=(--tokens 16)
  LAST_FILL=16
  PROFILE_RUNS=1
  TOKENS=16
  GEN_RUNS=1
  FIXTURES=(tests/fixtures/tiny-v512-bs4)
  FLOOR_RUNS=3
else
  RUNS=${RUNS:-20}
  SHAPE=()
  TOKENIZER=(--tokenizer models/tokenizers/gpt2/tokenizer.json)
  BENCH=()
  LAST_FILL=1008
  PROFILE_RUNS=5
  TOKENS=512
  GEN_RUNS=3
  FIXTURES=(tests/fixtures/*/)
  FLOOR_RUNS=50
fi
synth=$WORK/synth-bs16$([[ $REHEARSE == true ]] && echo -small)
log "2. synthetic model"
started=$SECONDS
# Kept across runs in $WORK: a rerun on the same machine starts at the figures.
if [[ ! -f $synth/.complete ]]; then
  rm -rf "$synth" "$synth"-q*
  step synth 120 synth "$BD3LM" synth --out "$synth" --block-size 16 "${SHAPE[@]}" || finish
  touch "$synth/.complete"
fi
if [[ ! -f $synth-q8/manifest.json ]]; then # written last
  rm -rf "$synth-q8"
  step q8_quantize 60 quantize "$BD3LM" quantize "$synth" "$synth-q8" --format q8 "${TOKENIZER[@]}" || finish
fi
emit "{\"figure\":\"synth\",\"seconds\":$((SECONDS - started)),\"dir\":$(json_str "$synth"),\"shape\":\"$([[ $REHEARSE == true ]] && echo small || echo released)\"}"

# --- 3. q8 figures first -------------------------------------------------------------------------
gpu=(--backend gpu --json)
log "3. q8"
step q8_bench 90 bench "$BD3LM" bench --model "$synth-q8" "${gpu[@]}" --runs "$RUNS" "${BENCH[@]}"
# The same at WebGPU's default limits: what the adapter's own workgroup memory buys (A/B).
step q8_bench_baseline 90 bench_baseline "$BD3LM" bench --model "$synth-q8" "${gpu[@]}" --gpu-baseline \
  --runs "$RUNS" "${BENCH[@]}"
step q8_counters 30 counters "$BD3LM" bench --model "$synth-q8" "${gpu[@]}" --counters-only
for fill in "$LAST_FILL" 0; do
  step "q8_profile_$fill" 60 profile_bench "$BD3LM" bench --model "$synth-q8" "${gpu[@]}" --ctx "$fill" \
    --runs "$PROFILE_RUNS" --tokens 16 --profile
done
step q8_generation 90 generation_$TOKENS "$BD3LM" bench --model "$synth-q8" "${gpu[@]}" --ctx 0 \
  --runs "$GEN_RUNS" --tokens "$TOKENS"
step dispatch_floor 30 dispatch_floor "$BD3LM" bench --backend gpu --json --dispatch-floor 104 \
  --runs "$FLOOR_RUNS"

# --- 4. Conformance in both tilings: every check passes, every trace token-exact -----------------
log "4. conformance"
conformance() {
  local tiling=$1 out=$WORK/conformance-$1.jsonl rc checks failed traces exact
  timeout -k 5 120 "$BD3LM" conformance --backend gpu --gpu-tiling "$tiling" --json "${FIXTURES[@]}" >"$out"
  rc=$?
  checks=$(grep -c '"status"' "$out")
  failed=$(grep -c '"status":"FAIL"' "$out")
  traces=$(grep -c '"check":"trace/' "$out")
  exact=$(grep '"check":"trace/' "$out" | grep -c '"status":"PASS"')
  emit "{\"figure\":\"conformance\",\"gpu_tiling\":\"$tiling\",\"rc\":$rc,\"fixtures\":${#FIXTURES[@]},\"checks\":$checks,\"failed\":$failed,\"traces\":$traces,\"traces_token_exact\":$exact}"
  grep '"status":"FAIL"' "$out" | tag conformance_failure
  ((rc == 0 && checks > 0 && failed == 0 && traces == exact))
}
for tiling in hardware software; do
  conformance "$tiling" || CONFORMANCE_OK=false
done

# --- 5. PyTorch on CUDA on the same GPU: the anchor the targets are held against -----------------
log "5. PyTorch on CUDA"
if probe=$(timeout 60 "$PYTHON" -c 'import torch, numpy; assert torch.cuda.is_available(), "no CUDA device"; print(torch.__version__, torch.cuda.get_device_name(0))' 2>&1); then
  if optional torch_cuda 60; then
    step torch_cuda 150 pytorch "$PYTHON" scripts/bench_torch.py --model "$synth" --device cuda \
      --dtypes f32,bf16 --attention original,sdpa --fills "0,$LAST_FILL" --runs 10 --tokens "$TOKENS" \
      --check-fixture tests/fixtures/tiny-v512-bs16
  fi
else
  skip torch_cuda "PyTorch with CUDA is not usable here: $(tail -1 <<<"$probe")"
fi

# --- 6. f32 and q4 while the budget lasts --------------------------------------------------------
log "6. f32 and q4"
if optional q4_bench 60; then
  if [[ ! -f $synth-q4/manifest.json ]]; then
    rm -rf "$synth-q4"
    step q4_quantize 60 quantize "$BD3LM" quantize "$synth" "$synth-q4" --format q4 "${TOKENIZER[@]}"
  fi && step q4_bench 60 bench "$BD3LM" bench --model "$synth-q4" "${gpu[@]}" --runs "$RUNS" "${BENCH[@]}"
fi
if optional f32_bench 60; then
  step f32_bench 60 bench "$BD3LM" bench --model "$synth" "${gpu[@]}" --runs "$RUNS" "${BENCH[@]}"
fi
finish
