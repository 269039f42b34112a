#!/usr/bin/env bash
# Builds the worker into build/ (index.js and the wasm module), with local tools only.
# wrangler runs this as its [build] command; `make build` runs it too.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
# shellcheck source=/dev/null
. "${SWITCHYARD_TOOLS:-$HOME/.cache/switchyard/tools}/env.sh"
export WASM_OPT_BIN="$root/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$root/node_modules/.bin/esbuild"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_HIDE_BANNER=true
if [ -n "$SWITCHYARD_WASM_PATH" ]; then
  export PATH="$SWITCHYARD_WASM_PATH:$PATH"
fi
exec "$WORKER_BUILD_BIN" --release
