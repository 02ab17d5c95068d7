#!/usr/bin/env bash
# Measures echo throughput (3 runs) and idle RSS per connection for each given server.
# Usage: crates/bench/scripts/measure.sh [SERVER...]   SERVER = fastwebsockets | tokio-websockets
#        | tungstenite (bare-echo --lib) | ws-echo (wsrelay-ws). Server on core 0, generator on core 1.
set -euo pipefail
cd "$(dirname "$0")/../../.."
BIN=target/release
RUNS=${RUNS:-3}; DURATION=${DURATION:-10s}; IDLE=${IDLE:-10000}
OUT=${OUT:-target/bench-results}; mkdir -p "$OUT"
servers=("$@"); [ ${#servers[@]} -gt 0 ] || servers=(fastwebsockets tokio-websockets tungstenite ws-echo)
port=19100
for s in "${servers[@]}"; do
  port=$((port + 1))
  if [ "$s" = ws-echo ]; then cmd=("$BIN/ws-echo" --addr "127.0.0.1:$port")
  else cmd=("$BIN/bare-echo" --lib "$s" --addr "127.0.0.1:$port"); fi
  taskset -c 0 "${cmd[@]}" 2>/dev/null & pid=$!
  sleep 0.5
  for r in $(seq "$RUNS"); do
    taskset -c 1 "$BIN/wsrelay-bench" echo --url "ws://127.0.0.1:$port/" --connections 100 \
      --payload 20 --duration "$DURATION" --json 2>/dev/null | tee -a "$OUT/echo-$s.jsonl"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # Fresh server for the idle measurement, so echo buffers do not count.
  taskset -c 0 "${cmd[@]}" 2>/dev/null & pid=$!
  sleep 0.5
  taskset -c 1 "$BIN/wsrelay-bench" idle --url "ws://127.0.0.1:$port/" --connections "$IDLE" \
    --sources 127.0.0.1,127.0.0.2 --hold 3s --server-pid "$pid" --json 2>/dev/null | tee -a "$OUT/idle-$s.jsonl"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
