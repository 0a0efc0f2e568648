#!/usr/bin/env bash
# Installs whatever this machine lacks to build, serve and test bd3lm (Debian 12, root, only
# the package registries reachable). Idempotent: a second run takes seconds.
# Sourced by serve.sh and test.sh; sets PATH and XDG_RUNTIME_DIR for them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TRUNK_VERSION=0.21.14
WASM_BINDGEN_VERSION=0.2.130
BINARYEN_VERSION=132.0.0
PLAYWRIGHT_VERSION=1.65.1
AXE_VERSION=4.14.1

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

need_apt=()
for pkg in mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  log "apt: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Never Debian's binaryen: its wasm-opt 108 silently breaks wasm-bindgen output.
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "rustup: adding wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

export PATH="$PWD/tools/npm/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# Tool installs skip fat LTO: the same binaries in about half the time on 2 cores.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16

if [[ "$(trunk --version 2>/dev/null)" != "trunk $TRUNK_VERSION" ]]; then
  log "cargo install trunk $TRUNK_VERSION (about 10-15 min on a fresh machine)"
  cargo install trunk --version "$TRUNK_VERSION" --locked --quiet
fi
if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]] || ! command -v wasm-bindgen-test-runner >/dev/null; then
  log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 5 min; --locked fails on this registry mirror)"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --quiet
fi
if [[ ! -x tools/npm/node_modules/.bin/wasm-opt || ! -d tools/npm/node_modules/playwright-core || ! -f tools/npm/node_modules/axe-core/axe.min.js ]]; then
  log "npm: binaryen@$BINARYEN_VERSION (wasm-opt), playwright-core@$PLAYWRIGHT_VERSION and axe-core@$AXE_VERSION (the e2e test's accessibility rules) into tools/npm"
  mkdir -p tools/npm
  npm install --silent --no-audit --no-fund --prefix tools/npm "binaryen@$BINARYEN_VERSION" "playwright-core@$PLAYWRIGHT_VERSION" "axe-core@$AXE_VERSION" >/dev/null
fi
unset CARGO_PROFILE_RELEASE_LTO CARGO_PROFILE_RELEASE_CODEGEN_UNITS

# The fuzzing driver (scripts/fuzz.sh) compiles libFuzzer's C++ sources.
if ! command -v c++ >/dev/null; then
  log "apt: installing g++ (libFuzzer for scripts/fuzz.sh)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq g++ >/dev/null
fi

# Trunk builds offline; fetch crates once while the registry is reachable (the fuzzing driver
# is its own workspace).
cargo fetch --quiet
cargo fetch --quiet --manifest-path fuzz/Cargo.toml

mkdir -p /tmp/bd3lm-xdg && chmod 700 /tmp/bd3lm-xdg
export XDG_RUNTIME_DIR=/tmp/bd3lm-xdg
export CHROMEDRIVER=/usr/bin/chromedriver
