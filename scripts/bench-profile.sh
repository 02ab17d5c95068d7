#!/usr/bin/env bash
# Instructions per echoed message on the server, counted by callgrind (repeatable on this
# machine, unlike wall-clock numbers): the server runs under valgrind on core 0, gets a
# warm-up, its counters are zeroed, the generator (core 1) echoes for DURATION, the counters
# are dumped, and the total is divided by the messages echoed.
#
# Usage: scripts/bench-profile.sh [ws-echo|relay-rust|relay-lua]...   (default: all three)
# Knobs: DURATION=10s CONNECTIONS=10 BIN=target/release OUT=target/bench-profile
# Output: OUT/NAME.callgrind (open with callgrind_annotate) and one line per server.
set -euo pipefail
export RUST_LOG=${RUST_LOG:-warn}
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/target/release}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-10}
OUT=${OUT:-$ROOT/target/bench-profile}
mkdir -p "$OUT"
servers=("$@"); [ ${#servers[@]} -gt 0 ] || servers=(ws-echo relay-rust relay-lua)
port=19301
for s in "${servers[@]}"; do
  port=$((port + 1))
  case $s in
    ws-echo) cmd=("$BIN/ws-echo" --addr "127.0.0.1:$port") ;;
    relay-rust) cmd=("$BIN/relay-echo" --addr "127.0.0.1:$port") ;;
    relay-lua)
      app=$(mktemp -d); cp -r examples/echo/. "$app"
      sed -i "s/addr: \"127.0.0.1:[0-9]*\"/addr: \"127.0.0.1:$port\"/" "$app/app.yaml"
      cmd=("$BIN/wsrelay" run "$app") ;;
    *) echo "unknown server $s" >&2; exit 2 ;;
  esac
  rm -f "$OUT/$s.callgrind"*
  taskset -c 0 valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$OUT/$s.callgrind" \
    "${cmd[@]}" >"$OUT/$s.log" 2>&1 &
  pid=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
  vg=$(pgrep -f "callgrind-out-file=$OUT/$s.callgrind" | head -1)
  taskset -c 1 "$BIN/wsrelay-bench" echo --url "ws://127.0.0.1:$port/" --connections "$CONNECTIONS" \
    --duration 3s --json >/dev/null 2>&1
  callgrind_control -z "$vg" >/dev/null
  result=$(taskset -c 1 "$BIN/wsrelay-bench" echo --url "ws://127.0.0.1:$port/" --connections "$CONNECTIONS" \
    --duration "$DURATION" --json 2>/dev/null)
  callgrind_control -d "$vg" >/dev/null
  sleep 1
  kill "$pid" 2>/dev/null || true; kill "$vg" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  dump=$(ls "$OUT/$s.callgrind".* 2>/dev/null | sort -t. -k3 -n | head -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  messages=$(echo "$result" | sed -n 's/.*"messages":\([0-9]*\).*/\1/p')
  echo "$s: $total Ir / $messages messages = $((total / messages)) Ir per message (dump $dump)"
done
