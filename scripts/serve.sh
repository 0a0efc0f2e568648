#!/usr/bin/env bash
# One command: install what is missing, build the web demo and serve it on
# http://127.0.0.1:8080 (the embedded demo model loads by default).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
exec trunk serve --release "$@"
