#!/usr/bin/env bash
# Manual check (not part of the test command; docs/models.md): a full-size released-shape
# checkpoint (`bd3lm synth`, 679 MB f32, GPT-2 vocabulary) served by the Hub emulator as
# kuleshov-group/bd3lm-owt-block_size16, loaded by id in the page (?hub=): download and
# conversion in the browser, time to first token, peak JS + wasm memory.
#   tests/e2e/hub-full-size-check.sh [engine: webgpu|cpu] [tokens]
# Needs dist/ (trunk build --release) and the CLI (for `synth`; release, else the debug build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ENGINE="${1:-webgpu}"
TOKENS="${2:-4}"
[ -f "$ROOT/dist/index.html" ] || { echo "build the page first: trunk build --release" >&2; exit 1; }
BIN="$ROOT/target/release/bd3lm"
[ -x "$BIN" ] || BIN="$ROOT/target/debug/bd3lm"
[ -x "$BIN" ] || { echo "build the CLI first: cargo build --release -p bd3lm-cli" >&2; exit 1; }
export PATH="$ROOT/tools/npm/node_modules/.bin:$PATH"
WORK="${HUB_FULL_DIR:-/tmp/bd3lm-hub-full}"
REPO="$WORK/repos/kuleshov-group/bd3lm-owt-block_size16"
if [ ! -f "$REPO/model.safetensors" ]; then
  mkdir -p "$REPO"
  "$BIN" synth --out "$REPO" --block-size 16
fi
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$ROOT/dist" >/dev/null 2>&1 &
SERVER_PID=$!
rm -f "$WORK/port"
python3 "$ROOT/scripts/hub-emulator.py" --root "$WORK/repos" --port 0 --port-file "$WORK/port" >"$WORK/emulator.log" 2>&1 &
HUB_PID=$!
trap 'kill "$SERVER_PID" "$HUB_PID" 2>/dev/null || true' EXIT
for _ in $(seq 300); do [ -s "$WORK/port" ] && break; sleep 0.1; done
mkdir -p "$ROOT/tests/e2e/out"
node "$ROOT/tests/e2e/hub_full_size.mjs" "http://127.0.0.1:$PORT/" "http://127.0.0.1:$(cat "$WORK/port")" \
  kuleshov-group/bd3lm-owt-block_size16 "$ENGINE" "$TOKENS"
