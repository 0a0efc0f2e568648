#!/usr/bin/env bash
# No silent success (docs/reliability.md): every script in scripts/ and tests/e2e/ must exit
# non-zero when its check fails or when it measured nothing. This lists them all and runs each
# one on a planted failure where that is cheap (a fake binary whose conformance fails, a fuzz
# driver that lists no target, an unknown run name, an unreachable page, a package that does
# not load); the failure must name the planted cause, and a hang (over 120 s) is a failure too.
# A script that is not in the table below fails the check: a new script must be added to it.
# Part of scripts/test.sh, after the browser end-to-end test (the page checks need dist/ and
# the debug CLI). About 40 s, mostly Chromium starting.
#   scripts/check-scripts.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
planted=0
skipped=0
# Every test here kills what it started; servers started by the scripts die with them.
export PATH="$PWD/tools/npm/node_modules/.bin:$PATH"

# expect_failure NAME PATTERN WHAT COMMAND...: COMMAND must exit non-zero within 120 s with
# PATTERN (extended regex) in its output.
expect_failure() {
  local name=$1 pattern=$2 what=$3 rc=0
  shift 3
  planted=$((planted + 1))
  timeout 120 "$@" >"$tmp/out" 2>&1 </dev/null || rc=$?
  if ((rc == 0)); then
    echo "FAIL $name exits 0 on a planted failure ($what)"
  elif ((rc == 124)); then
    echo "FAIL $name hangs on a planted failure ($what)"
  elif ! grep -Eq "$pattern" "$tmp/out"; then
    echo "FAIL $name exits $rc on a planted failure ($what), but not for it (no /$pattern/)"
  else
    echo "ok   $name exits $rc on a planted failure ($what)"
    return 0
  fi
  sed 's/^/     | /' "$tmp/out" | tail -n 8
  failures=$((failures + 1))
}

skip() {
  skipped=$((skipped + 1))
  echo "--   $1: not planted ($2)"
}

# A CLI whose conformance fails (what bd3lm prints and returns when a check fails); every
# other command succeeds and prints nothing (measures nothing).
cat >"$tmp/bd3lm" <<'EOF'
#!/bin/sh
case "$1" in
  conformance) echo "FAIL tiny-v512-bs4 logits max_err=inf tol=1.0e-4"; exit 1 ;;
esac
exit 0
EOF
# Fuzz drivers: one that lists no target, one that lists a target and runs nothing.
printf '#!/bin/sh\nexit 0\n' >"$tmp/driver-empty"
target=$(ls fuzz/seeds | head -n 1)
printf '#!/bin/sh\n[ "$BD3LM_FUZZ_TARGET" = list ] && echo %s\nexit 0\n' "$target" >"$tmp/driver-idle"
chmod +x "$tmp/bd3lm" "$tmp/driver-empty" "$tmp/driver-idle"
# A port nothing listens on (bound, then released; Chromium refuses low "unsafe" ports itself).
unreachable="http://127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')/"
have_page() { [[ -f dist/index.html ]]; }

for script in scripts/* tests/e2e/*; do
  [[ -f $script ]] || continue # tests/e2e/out/: what the runs write
  case "$script" in
    scripts/bench-cpu.sh)
      expect_failure "$script" 'conformance failed' 'conformance fails' \
        env BD3LM="$tmp/bd3lm" SYNTH="$tmp/synth" "$script" ;;
    scripts/bench.sh)
      expect_failure "$script" 'conformance failed' 'conformance fails' \
        env BD3LM="$tmp/bd3lm" SYNTH="$tmp/synth" "$script" ;;
    scripts/bench_torch.py)
      # Without torch this fails on the import; with it, on the missing fixture.
      expect_failure "$script" 'torch|No such file' 'no fixture to check against' \
        python3 "$script" --model "$tmp/none" --check-fixture "$tmp/none" ;;
    scripts/check-scripts.sh) ;; # this check
    scripts/fuzz-long.sh)
      expect_failure "$script" 'lists no target' 'the driver lists no target' \
        env BD3LM_FUZZ_DRIVER="$tmp/driver-empty" "$script" 10 1 ;;
    scripts/fuzz.sh)
      expect_failure "$script" 'lists no target' 'the driver lists no target' \
        env BD3LM_FUZZ_DRIVER="$tmp/driver-empty" BD3LM_FUZZ_ARTIFACTS_ROOT="$tmp/artifacts" \
        "$script" run --fresh --seconds 1 all
      expect_failure "$script" 'no executions' 'a target that executes nothing' \
        env BD3LM_FUZZ_DRIVER="$tmp/driver-idle" BD3LM_FUZZ_ARTIFACTS_ROOT="$tmp/artifacts" \
        "$script" run --fresh --seconds 1 all ;;
    scripts/bench_cpu_summary.py)
      : >"$tmp/empty.jsonl"
      expect_failure "$script" 'nothing was measured' 'a log with no runs' python3 "$script" "$tmp/empty.jsonl" ;;
    scripts/gpu-check.sh)
      # The stand-in CLI reports no adapter; a failed conformance check (exit 1, after the
      # figures) is planted by crates/bd3lm-cli/tests/cli_gpu_check.rs.
      expect_failure "$script" 'no GPU adapter' 'no adapter' \
        env BD3LM="$tmp/bd3lm" WORK="$tmp/gpu-check" "$script" ;;
    scripts/hub-emulator.py)
      expect_failure "$script" 'not a directory' 'no repository root' \
        python3 "$script" --root "$tmp/none" --port 0 ;;
    scripts/long-runs.sh)
      expect_failure "$script" 'unknown run' 'a run name that selects nothing' "$script" nothing ;;
    scripts/mutants.sh)
      expect_failure "$script" 'unknown scope' 'a scope that selects no file' "$script" nothing ;;
    scripts/serve-fixtures.py)
      expect_failure "$script" 'no fixture case' 'no fixture to serve' python3 "$script" 0 "$tmp" ;;
    scripts/serve.sh) skip "$script" 'serves until stopped (trunk serve; set -e stops it on a build error)' ;;
    scripts/setup.sh) skip "$script" 'the installer, sourced by the others (set -e; needs the network)' ;;
    scripts/test.sh) skip "$script" 'the test command itself (set -euo pipefail); it runs this check' ;;
    tests/e2e/run.sh)
      expect_failure "$script" 'no Chromium' 'no browser' \
        env CHROMIUM="$tmp/none" E2E_SKIP_BUILD=1 "$script" ;;
    tests/e2e/web.test.mjs)
      expect_failure "$script" 'ERR_CONNECTION_REFUSED' 'an unreachable page' node "$script" "$unreachable" 1 ;;
    tests/e2e/hub.test.mjs)
      expect_failure "$script" 'ERR_CONNECTION_REFUSED' 'an unreachable page' \
        node "$script" "$unreachable" "${unreachable%/}" "$tmp/none" ;;
    tests/e2e/long_run.mjs)
      expect_failure "$script" 'ERR_CONNECTION_REFUSED' 'an unreachable page' node "$script" "$unreachable" ;;
    tests/e2e/a11y.mjs) skip "$script" 'a module of accessibility checks, imported by web.test.mjs' ;;
    tests/e2e/serve_isolated.py)
      expect_failure "$script" 'not a directory' 'no directory to serve' python3 "$script" 0 "$tmp/none" ;;
    tests/e2e/workers.test.mjs)
      expect_failure "$script" 'ERR_CONNECTION_REFUSED' 'an unreachable page' node "$script" "$unreachable" "$unreachable" ;;
    tests/e2e/memory.mjs) skip "$script" 'a module of the memory sampler, imported by hub_full_size.mjs' ;;
    tests/e2e/numbers.mjs)
      # A check written with these helpers (exit 1 when it fails) on planted NaNs and infinities.
      expect_failure "$script" 'every planted value failed' 'NaN and infinities compared' \
        node --input-type=module -e "
          import { within, maxAbsDiff } from '$PWD/$script';
          const passed = [within(NaN, 1), within(Infinity, 1), within(maxAbsDiff([1, NaN], [1, 2]), 1),
            within(maxAbsDiff([1, 2], [1, -Infinity]), 1)].filter(Boolean).length;
          const sane = within(maxAbsDiff([1, 2], [1.5, 2]), 0.5) && !within(maxAbsDiff([1], [1, 2]), 1);
          console.log(passed || !sane ? passed + ' planted values passed' : 'every planted value failed');
          process.exit(passed || !sane ? 0 : 1);" ;;
    tests/e2e/full_size.mjs) ;; # run by full-size-check.sh below
    tests/e2e/full-size-check.sh)
      if have_page; then
        # An empty package directory: the page cannot read it, nothing is measured.
        mkdir -p "$tmp/empty-package"
        expect_failure "$script" 'FAIL the (package cannot be read|model did not load)' 'a package that does not load' \
          "$script" "$tmp/empty-package" cpu 4
      else
        echo "FAIL $script: dist/index.html is missing (run after trunk build, as scripts/test.sh does)"
        failures=$((failures + 1))
      fi ;;
    tests/e2e/hub_full_size.mjs) ;; # run by hub-full-size-check.sh below
    tests/e2e/hub-full-size-check.sh)
      if have_page; then
        # The released id served with a truncated checkpoint: the page cannot load it.
        repo="$tmp/hub-full/repos/kuleshov-group/bd3lm-owt-block_size16"
        mkdir -p "$repo"
        cp tests/fixtures/gpt2vocab-bs8/config.json "$repo/"
        head -c 4096 tests/fixtures/gpt2vocab-bs8/model.safetensors >"$repo/model.safetensors"
        expect_failure "$script" 'FAIL the model' 'a checkpoint that does not load' \
          env HUB_FULL_DIR="$tmp/hub-full" "$script" cpu 4
      else
        echo "FAIL $script: dist/index.html is missing (run after trunk build, as scripts/test.sh does)"
        failures=$((failures + 1))
      fi ;;
    *)
      echo "FAIL $script is not in scripts/check-scripts.sh: add how it fails on a planted failure"
      failures=$((failures + 1)) ;;
  esac
done
echo "$planted planted failures, $skipped scripts not planted (reasons above), $failures problem(s)"
((failures == 0))
