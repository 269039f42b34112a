#!/usr/bin/env bash
# `make dev`: builds the gateway and runs it locally at http://127.0.0.1:$PORT (default 8787).
# CONFIG=<file> runs it on that configuration instead of the embedded config/default.json;
# secrets come from .dev.vars (see .dev.vars.example).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
port="${PORT:-8787}"
config="${CONFIG:-}"

bash scripts/bootstrap.sh
args=()
if [ -n "$config" ]; then
  [ -f "$config" ] || { echo "dev: no configuration file at $config" >&2; exit 2; }
  cargo run -q -p switchyard-core --bin switchyard-config -- check "$config"
  compact="$(node -e 'process.stdout.write(JSON.stringify(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))))' "$config")"
  args+=(--var "SWITCHYARD_CONFIG:$compact")
else
  cargo run -q -p switchyard-core --bin switchyard-config -- check config/default.json
fi
if ! [ -f .dev.vars ]; then
  echo "dev: no .dev.vars; providers that need a key answer 503 until you copy .dev.vars.example to .dev.vars and fill it in" >&2
fi

export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_HIDE_BANNER=true
exec npx wrangler dev --ip 127.0.0.1 --port "$port" --show-interactive-dev-session=false "${args[@]}"
