#!/usr/bin/env bash
# What TLS costs: the same Lua echo app (`examples/echo`, a Lua process per
# connection) served over ws:// and over wss:// (the test certificate in tests/fixtures/tls),
# in the same run, interleaved: closed-loop echo of 1 KiB messages, and upgrades/s where
# every wss:// cycle is a full TLS handshake. Server pinned to core 0, load to core 1.
# Prints one JSON line per run; the medians go into docs/BENCHMARKS.md by hand.
#
# Usage: scripts/bench-tls.sh   (about 3 minutes; RUNS=3 DURATION=10s CYCLES=20000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/target/release}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CYCLES=${CYCLES:-20000}
PORT=19231
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p wsrelay -p wsrelay-bench
# The same app twice: as it is, and with `tls` on its http.service.
cp -r examples/echo "$WORK/ws"
cp -r examples/echo "$WORK/wss"
cp tests/fixtures/tls/server.pem tests/fixtures/tls/server.key "$WORK/wss/"
# One load generator is one client IP: lift the per-IP admission limits, as bench.sh does.
sed -i 's/^\(  *\)wsrelay.allowed.origins: "\*"$/&\n\1wsrelay.max_connections: unlimited\n\1wsrelay.upgrade_rate: "off"/' \
  "$WORK/ws/app.yaml" "$WORK/wss/app.yaml"
python3 - "$WORK/wss/app.yaml" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = re.sub(r'(\n    addr: "[^"]+"\n)', r'\1    tls:\n      cert: server.pem\n      key: server.key\n', text, count=1)
open(path, "w").write(text)
PY

run_one() { # scheme measure
  local scheme=$1 measure=$2 url
  taskset -c 0 "$BIN/wsrelay" run "$WORK/$scheme" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  if [ "$scheme" = wss ]; then url="wss://localhost:$PORT/"; else url="ws://127.0.0.1:$PORT/"; fi
  local ca=(); [ "$scheme" = wss ] && ca=(--ca tests/fixtures/tls/ca.pem)
  if [ "$measure" = echo ]; then
    taskset -c 1 "$BIN/wsrelay-bench" echo --url "$url" "${ca[@]}" --connections 100 \
      --payload 1024 --duration "$DURATION" --json
  else
    taskset -c 1 "$BIN/wsrelay-bench" upgrade --url "$url" "${ca[@]}" --cycles "$CYCLES" \
      --warmup 2000 --concurrency 32 --json
  fi | sed "s/^{/{\"scheme\":\"$scheme\",\"measure\":\"$measure\",/"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for r in $(seq "$RUNS"); do
  for measure in echo upgrade; do
    for scheme in ws wss; do run_one "$scheme" "$measure"; done
  done
done
