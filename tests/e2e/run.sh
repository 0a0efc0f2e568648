#!/usr/bin/env bash
# End-to-end test of the web demo in headless Chromium (docs/web.md).
#
# Builds the page with Trunk, serves dist/ on 127.0.0.1 under a sub-path (to prove it works
# under any base path), and drives it with playwright-core: load the demo package, watch
# blocks denoise, stop, continue after a simulated device loss, reload from the Cache API,
# detect corrupted files, explain CORS and non-secure contexts. Screenshots go to
# tests/e2e/out/; E2E_UPDATE_DOCS=1 also refreshes the two committed ones in docs/.
#
# Then tests/e2e/hub.test.mjs loads a model by Hub id through the loopback Hub emulator
# (E2E_ONLY=hub runs only that part). E2E_ONLY=long-run runs only tests/e2e/long_run.mjs, the
# page's long run (scripts/long-runs.sh; not part of the test command).
#
# Needs (see docs/platform.md or docs/web.md): trunk 0.21.14, wasm-bindgen 0.2.130,
# `npm i --prefix tools/npm binaryen@132.0.0 playwright-core axe-core@4.14.1`, node >= 18, python3,
# /usr/bin/chromium. Env: E2E_SKIP_BUILD=1 reuses dist/; CHROMIUM=/path overrides the browser.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/tools/npm/node_modules/.bin:$HOME/.cargo/bin:$PATH"
mkdir -p /tmp/xdg-e2e && chmod 700 /tmp/xdg-e2e && export XDG_RUNTIME_DIR=/tmp/xdg-e2e

fail() { echo "e2e: $*" >&2; exit 1; }
command -v node >/dev/null || fail "node is not installed"
command -v python3 >/dev/null || fail "python3 is not installed"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || fail "no Chromium at ${CHROMIUM:-/usr/bin/chromium} (apt-get install chromium)"
[ -d tools/npm/node_modules/playwright-core ] || fail "playwright-core missing: npm i --prefix tools/npm binaryen@132.0.0 playwright-core axe-core@4.14.1"
[ -f tools/npm/node_modules/axe-core/axe.min.js ] || fail "axe-core missing: npm i --prefix tools/npm axe-core@4.14.1 (or scripts/setup.sh)"

if [ "${E2E_SKIP_BUILD:-0}" != 1 ]; then
  command -v trunk >/dev/null || fail "trunk is not installed (cargo install trunk --version 0.21.14 --locked)"
  command -v wasm-bindgen >/dev/null || fail "wasm-bindgen is not installed (cargo install wasm-bindgen-cli --version 0.2.130)"
  [ "$(wasm-opt --version 2>/dev/null | grep -o 'version [0-9]*')" = "version 132" ] \
    || fail "wasm-opt 132 must be first on PATH (npm i --prefix tools/npm binaryen@132.0.0)"
  trunk build --release
fi
[ -f dist/index.html ] || fail "dist/index.html missing: build first"

# Serve dist/ as http://127.0.0.1:PORT/some/base/path/ from a tree of symlinks.
OUT="$ROOT/tests/e2e/out"
WWW="$OUT/www"
rm -rf "$WWW" && mkdir -p "$WWW/deploy/under"
ln -s "$ROOT/dist" "$WWW/deploy/under/bd3lm"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$WWW" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/deploy/under/bd3lm/index.html')" 2>/dev/null && break
  sleep 0.1
done

PAGE="http://127.0.0.1:$PORT/deploy/under/bd3lm/"
# A second small package with another block size, for the page's side-by-side comparison
# (served as /pkgs/bs8-q8/), and the reference package of the Hub part below: `bd3lm quantize`
# of the released-layout fixture gpt2vocab-bs8 (block size 8; the demo's is 4).
FIXTURE="$ROOT/tests/fixtures/gpt2vocab-bs8"
if [ "${E2E_ONLY:-}" != long-run ]; then
  cargo build -q -p bd3lm-cli
  "$ROOT/target/debug/bd3lm" quantize "$FIXTURE" "$WWW/pkgs/bs8-q8" --format q8 --name bd3lm-owt-block_size8-q8 --force >/dev/null
fi
# The page's long run (docs/reliability.md; scripts/long-runs.sh): not part of the test command.
if [ "${E2E_ONLY:-}" = long-run ]; then
  node "$ROOT/tests/e2e/long_run.mjs" "$PAGE"
  exit $?
fi
if [ "${E2E_ONLY:-}" != hub ] && [ "${E2E_ONLY:-}" != workers ]; then
  node "$ROOT/tests/e2e/web.test.mjs" "$PAGE" "$PORT"
fi

# The CPU engine on several Web Workers (issue 19): the same tree served cross-origin
# isolated (COOP/COEP); 2 workers must write 1 worker's text. E2E_ONLY=workers runs only this.
if [ "${E2E_ONLY:-}" != hub ]; then
  ISO_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  python3 "$ROOT/tests/e2e/serve_isolated.py" "$ISO_PORT" "$WWW" >"$OUT/server-isolated.log" 2>&1 &
  ISO_PID=$!
  trap 'kill "$SERVER_PID" "$ISO_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$ISO_PORT/deploy/under/bd3lm/index.html')" 2>/dev/null && break
    sleep 0.1
  done
  node "$ROOT/tests/e2e/workers.test.mjs" "http://127.0.0.1:$ISO_PORT/deploy/under/bd3lm/" "$PAGE"
fi

[ "${E2E_ONLY:-}" = workers ] && exit 0

# Models by Hugging Face Hub id (docs/models.md): the loopback Hub emulator serves the
# released-layout fixture gpt2vocab-bs8 under the released id (and variants for the error
# cases); the page loads it through ?hub=; `bd3lm quantize` makes the reference package.
HUB="$OUT/hub"
rm -rf "$HUB" && mkdir -p "$HUB/repos"
for repo in kuleshov-group/bd3lm-owt-block_size8 org/copy org/private openai-community/gpt2; do
  mkdir -p "$HUB/repos/$repo"
  cp "$FIXTURE/config.json" "$FIXTURE/model.safetensors" "$HUB/repos/$repo/"
done
echo '{"private": true}' > "$HUB/repos/org/private/.hub.json"
echo '{"model_type": "gpt2", "vocab_size": 50257, "n_layer": 12}' > "$HUB/repos/openai-community/gpt2/config.json"
cp -r "$WWW/pkgs/bs8-q8" "$HUB/reference"
# Repos holding that package as `bd3lm quantize` wrote it (docs/models.md, "Publishing a
# package"), one with a shard changed after its manifest was written.
for repo in org/bs8-q8 org/bs8-q8-tampered; do
  mkdir -p "$HUB/repos/$repo" && cp "$HUB/reference"/* "$HUB/repos/$repo/"
done
python3 - "$HUB/repos/org/bs8-q8-tampered/weights-00000.safetensors" <<'PY'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
data[len(data) // 2] ^= 0x55
open(path, "wb").write(data)
PY
python3 "$ROOT/scripts/hub-emulator.py" --root "$HUB/repos" --port 0 --port-file "$HUB/port" >"$HUB/emulator.log" 2>&1 &
HUB_PID=$!
trap 'kill "$SERVER_PID" "$HUB_PID" ${ISO_PID:-} 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$HUB/port" ] && break; sleep 0.1; done
[ -s "$HUB/port" ] || fail "the Hub emulator did not start (see $HUB/emulator.log)"
node "$ROOT/tests/e2e/hub.test.mjs" "$PAGE" "http://127.0.0.1:$(cat "$HUB/port")" "$HUB/reference"
