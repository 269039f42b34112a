#!/usr/bin/env bash
# The fuzz stage (`make fuzz`, part of `make test`): schemathesis generates requests from OpenAI's
# published OpenAPI document for the operations the gateway serves (POST /chat/completions,
# POST /embeddings, GET /models, GET /models/{model}, POST /responses, GET and DELETE
# /responses/{response_id}) and sends them to the built worker in
# workerd, with mock-upstream behind it (tests/fuzz/serve.mjs). It fails on a 5xx of the
# gateway's own making, an error body not in OpenAI's shape, or a body that is not JSON where
# JSON is promised (the rules: tests/fuzz/hooks.py), and when the workerd process holds more
# than FUZZ_FD_BOUND open files over its baseline once the run has settled.
#
# Bounded: FUZZ_EXAMPLES cases per operation and phase (default 100; about 1,900 requests and
# 50 s in all on 2 cores), a hard timeout of FUZZ_TIMEOUT seconds on schemathesis (default 240),
# workerd's stdout and stderr kept to their first 256 KiB, schemathesis's output shown to
# FUZZ_OUTPUT_LINES lines and kept to 20,000 (files in build/fuzz/, with the JUnit report).
# FUZZ_SEED picks the seed (default fixed, so that CI runs the same cases; FUZZ_SEED=random
# for a new one each run).
#
# Needs the worker built (make build), mock-upstream built (cargo build -p mock-upstream) and
# Python 3; installs schemathesis, pinned, into a venv under ~/.cache/switchyard on first use.
# The document is read from ../shared/reference/ beside the checkout; where it is absent (a
# user's own clone) the stage says so and is skipped.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
started=$SECONDS
say() { printf 'fuzz: %s\n' "$*" >&2; }

schemathesis_version="4.32.5"
spec="${FUZZ_SPEC:-$root/../shared/reference/openai-openapi.yaml}"
venv="${SWITCHYARD_FUZZ_VENV:-$HOME/.cache/switchyard/fuzz-venv}"
out="${FUZZ_OUT:-$root/build/fuzz}"
examples="${FUZZ_EXAMPLES:-100}"
timeout_s="${FUZZ_TIMEOUT:-240}"
fd_bound="${FUZZ_FD_BOUND:-200}"
output_lines="${FUZZ_OUTPUT_LINES:-400}"
seed="${FUZZ_SEED:-20260}"
[ "$seed" = random ] && seed="$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"

if ! [ -f "$spec" ]; then
  say "OpenAI's OpenAPI document is not at ${spec#"$root/"}: the fuzz stage is skipped"
  exit 0
fi
[ -f build/index.js ] || { say "build/index.js is missing: run make build first"; exit 1; }

# 1. schemathesis, pinned, in its own venv (idempotent: a version check when it is there).
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null | awk '{ print $NF }')" != "$schemathesis_version" ]; then
  say "installing schemathesis $schemathesis_version into ${venv/#$HOME/\~} (about a minute, once)"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    say "python3 cannot make a venv here; installing Debian's python3-venv"
    if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

rm -rf "$out"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# 2. The document, cut down to those operations (a few seconds; never committed).
"$venv/bin/python" tests/fuzz/filter_spec.py "$spec" "$out/openapi.json"

# 3. The gateway: serve.mjs prints one JSON line when it answers, then takes commands on stdin.
serve_pid=""
serve_in=""
workerd_pid=""
mock_pid=""
stop_serve() {
  if [ -n "${serve_pid}" ] && kill -0 "$serve_pid" 2>/dev/null; then
    # Closing its stdin stops it; a signal if it does not go within 10 s.
    if [ -n "${serve_in:-}" ]; then exec {serve_in}>&-; serve_in=""; fi
    for _ in $(seq 100); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$serve_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$serve_pid" 2>/dev/null || true
  fi
  # Its children, by the PIDs it reported, should it have died without stopping them.
  for pid in $workerd_pid $mock_pid; do kill -KILL "$pid" 2>/dev/null || true; done
  serve_pid=""
}
trap stop_serve EXIT

mkfifo "$out/serve.in" "$out/serve.out"
FUZZ_WORKERD_LOG="$out/workerd.log" node tests/fuzz/serve.mjs <"$out/serve.in" >"$out/serve.out" 2>"$out/serve.log" &
serve_pid=$!
exec {serve_in}>"$out/serve.in" {serve_out}<"$out/serve.out"
if ! read -r -t 60 -u "$serve_out" ready; then
  say "the gateway did not start within 60 s:"
  head -c 4000 "$out/serve.log" >&2
  exit 1
fi
printf '%s\n' "$ready" >"$out/gateway.json"
field() { node -e 'const v = JSON.parse(process.argv[1])[process.argv[2]]; console.log(v ?? "")' "$1" "$2"; }
url="$(field "$ready" url)"
workerd_pid="$(field "$ready" workerd_pid)"
mock_pid="$(field "$ready" mock_pid)"
say "gateway at $url (workerd pid $workerd_pid, $(field "$ready" baseline_fds) open files after warm-up)"

# 4. schemathesis, bounded in count and, hard, in time.
say "schemathesis $schemathesis_version: $examples examples an operation and phase, seed $seed, at most ${timeout_s} s"
# From $out: schemathesis keeps its cache (.schemathesis/, for `st replay`) in its working directory.
set +e
cd "$out"
FUZZ_GATEWAY_INFO="$out/gateway.json" FUZZ_STATS="$out/stats.json" \
  SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$root/tests/fuzz" PYTHONDONTWRITEBYTECODE=1 \
  timeout -k 10 "$timeout_s" "$venv/bin/schemathesis" run openapi.json \
  --url "$url/v1" \
  --header "Authorization: Bearer sk-switchyard-test-key" \
  --checks no_gateway_5xx,openai_error_shape,json_where_promised,fuzz_stats \
  --phases examples,coverage,fuzzing \
  --mode all \
  --max-examples "$examples" \
  --seed "$seed" \
  --workers 2 \
  --request-timeout 20 \
  --suppress-health-check all \
  --generation-database none \
  --no-color \
  --output-sanitize false \
  --report junit --report-dir . \
  2>&1 | awk -v max="$output_lines" -v file="$out/schemathesis.log" '
      { if (NR <= 20000) print > file }
      NR <= max { print; next }
      END { if (NR > max) printf "fuzz: ... %d more lines of schemathesis output, the first 20000 in %s\n", NR - max, file }'
st_status=${PIPESTATUS[0]}
cd "$root"
set -e
if [ "$st_status" = 124 ] || [ "$st_status" = 137 ]; then
  say "schemathesis did not finish within ${timeout_s} s"
fi

# 5. Open files of workerd: baseline (after warm-up), peak (sampled every 200 ms during the run),
#    and after the run once the count stops falling.
fd_status=0
printf 'settle\n' >&"$serve_in"
if read -r -t 40 -u "$serve_out" figures; then
  baseline="$(field "$figures" baseline)"
  peak="$(field "$figures" peak)"
  after="$(field "$figures" after)"
  say "workerd open files: baseline $baseline, peak $peak during the run, $after after it (bound: baseline + $fd_bound)"
  if [ -z "$after" ] || [ "$after" -gt $((baseline + fd_bound)) ]; then
    say "FAIL: workerd holds $((after - baseline)) more open files than before the run"
    fd_status=1
  fi
else
  say "FAIL: no open-file figures from serve.mjs (workerd gone?)"
  fd_status=1
fi

if [ -f "$out/stats.json" ]; then
  say "responses by operation, status and error code:"
  node -e '
    for (const r of JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")))
      console.error(`  ${r.operation.padEnd(26)} ${r.mode.padEnd(8)} ${r.status} ${String(r.code ?? "").padEnd(26)} ${String(r.count).padStart(4)}  ${(r.samples[0] ?? "").slice(0, 90)}`);
  ' "$out/stats.json"
fi

stop_serve
tail -n 1 "$out/serve.log" >&2 || true
say "wall time $((SECONDS - started)) s"
if [ "$st_status" != 0 ] || [ "$fd_status" != 0 ]; then
  say "FAILED (schemathesis exit $st_status; reports in ${out#"$root/"}/)"
  exit 1
fi
say "passed"
