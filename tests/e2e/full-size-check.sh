#!/usr/bin/env bash
# Manual check (not part of the test command): the page with a full-size package (released
# shapes, ~170 MB q8) in headless Chromium. See docs/web.md.
#   tests/e2e/full-size-check.sh PACKAGE_DIR [engine: webgpu|cpu] [tokens] [workers, e.g. 1,2]
# Serves dist/ with the package linked in as ./full/ (same origin, cross-origin isolated so the
# CPU engine may use several workers), loads it, generates; with a list of worker counts, once
# per count, and prints the step-time ratio.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PACKAGE="$(cd "${1:?usage: full-size-check.sh PACKAGE_DIR [webgpu|cpu] [tokens]}" && pwd)"
ENGINE="${2:-webgpu}"
TOKENS="${3:-4}"
WORKERS="${4:-}"
[ -f "$ROOT/dist/index.html" ] || { echo "build the page first: trunk build --release" >&2; exit 1; }
WWW="$ROOT/tests/e2e/out/www-full"
rm -rf "$WWW" && mkdir -p "$WWW"
ln -s "$ROOT/dist" "$WWW/site"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
# The package is reached as site/full/ through a second symlink tree (dist/ stays untouched).
mkdir -p "$WWW/pages" && for f in "$ROOT"/dist/*; do ln -s "$f" "$WWW/pages/"; done
ln -s "$PACKAGE" "$WWW/pages/full"
python3 "$ROOT/tests/e2e/serve_isolated.py" "$PORT" "$WWW" >/dev/null 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
sleep 1
node "$ROOT/tests/e2e/full_size.mjs" "http://127.0.0.1:$PORT/pages/" "$ENGINE" "$TOKENS" $WORKERS
