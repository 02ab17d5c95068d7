#!/usr/bin/env bash
# Instructions per echoed message on the server, counted by callgrind (repeatable on this
# machine, unlike wall-clock numbers): the server runs under valgrind on core 0, gets a
# warm-up, its counters are zeroed, the generator (core 1) echoes for DURATION, the counters
# are dumped, and the total is divided by the messages echoed.
#
# `broadcast` instead counts instructions per *delivered frame* of examples/broadcast (one Lua
# room process, one `pg` group send per message): the counters are zeroed once every receiver
# is open, the sender publishes; two runs (BROADCAST_BASE messages, then BROADCAST_MESSAGES
# more) and the difference of their totals divided by the difference of the frames the
# receivers got leaves out what does not depend on the message count (joins, closes).
#
# `upgrade` counts instructions per *upgrade cycle* (connect, upgrade, close handshake) through
# the Lua handler of examples/echo, which spawns one process per connection: after a warm-up
# (UPGRADE_WARMUP cycles) the counters are zeroed, the generator runs its cycles, the server is
# given time to finish closing, and the counters are dumped. Two runs (UPGRADE_BASE cycles, then
# UPGRADE_BASE + UPGRADE_CYCLES) and the difference of their totals divided by the difference of
# the cycles completed leaves out what does not depend on the cycle count (timers, the idle loop
# while the generator starts and stops).
#
# Usage: scripts/bench-profile.sh [ws-echo|relay-rust|relay-rust-shared|relay-lua|broadcast|upgrade]...
#        (default: the three echo servers)
# Knobs: DURATION=10s CONNECTIONS=10 BIN=target/release OUT=target/bench-profile PORT=19301 (first
#        of the ports the servers listen on, one more per server)
#        BROADCAST_CLIENTS=2000 BROADCAST_BASE=5 BROADCAST_MESSAGES=20 BROADCAST_INTERVAL=500ms
#        UPGRADE_WARMUP=500 UPGRADE_BASE=1000 UPGRADE_CYCLES=4000 UPGRADE_CONCURRENCY=32
# Output: OUT/NAME.callgrind (open with callgrind_annotate) and one line per server.
set -euo pipefail
export RUST_LOG=${RUST_LOG:-warn}
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/target/release}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-10}
OUT=${OUT:-$ROOT/target/bench-profile}
BROADCAST_CLIENTS=${BROADCAST_CLIENTS:-2000}
BROADCAST_MESSAGES=${BROADCAST_MESSAGES:-20}
BROADCAST_BASE=${BROADCAST_BASE:-5}
# Longer than scripts/bench.sh's 200ms: under callgrind one send to every client takes longer.
BROADCAST_INTERVAL=${BROADCAST_INTERVAL:-500ms}
UPGRADE_WARMUP=${UPGRADE_WARMUP:-500}
UPGRADE_BASE=${UPGRADE_BASE:-1000}
UPGRADE_CYCLES=${UPGRADE_CYCLES:-4000}
UPGRADE_CONCURRENCY=${UPGRADE_CONCURRENCY:-32}
mkdir -p "$OUT"

total_ir() { # total_ir DUMP -> the instructions the dump counted
  callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}'
}

lua_app() { # lua_app EXAMPLE PORT -> a copy of the example listening on PORT, limits lifted
  local app; app=$(mktemp -d); cp -r "examples/$1/." "$app"
  sed -i "s/addr: \"127.0.0.1:[0-9]*\"/addr: \"127.0.0.1:$2\"/" "$app/app.yaml"
  # One generator is one client IP opening thousands of connections: no admission limits
  # (as scripts/bench.sh's app_copy does, for an app that does not lift them itself).
  grep -q "wsrelay.upgrade_rate" "$app/app.yaml" ||
    sed -i 's/^\(  *\)wsrelay.allowed.origins: "\*"$/&\n\1wsrelay.max_connections: unlimited\n\1wsrelay.upgrade_rate: "off"/' "$app/app.yaml"
  echo "$app"
}

start_server() { # start_server NAME PORT CMD...: CMD under callgrind on core 0; sets $server, $vg
  local name=$1 port=$2; shift 2
  rm -f "$OUT/$name.callgrind"*
  taskset -c 0 valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$OUT/$name.callgrind" \
    "$@" >"$OUT/$name.log" 2>&1 &
  server=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
  vg=$(pgrep -f "callgrind-out-file=$OUT/$name.callgrind" | sed -n 1p)
}

stop_server() { # stop_server NAME SETTLE -> the dump's path, SETTLE seconds after the load ended
  sleep "$2"
  callgrind_control -d "$vg" >/dev/null 2>&1
  sleep 1
  kill "$server" 2>/dev/null || true; kill "$vg" 2>/dev/null || true; wait "$server" 2>/dev/null || true
  ls "$OUT/$1.callgrind".* 2>/dev/null | sort -t. -k3 -n | sed -n 1p
}

json_field() { # json_field FIELD FILE -> the whole number the generator's JSON gives FIELD
  sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$2"
}

broadcast_run() { # broadcast_run PORT MESSAGES -> "IR DELIVERED" for one server under callgrind
  local port=$1 messages=$2 s=broadcast-$2 app dump
  app=$(lua_app broadcast "$port")
  start_server "$s" "$port" "$BIN/wsrelay" run "$app"
  : >"$OUT/$s.bench.err"
  taskset -c 1 "$BIN/wsrelay-bench" broadcast --url "ws://127.0.0.1:$port/" \
    --clients "$BROADCAST_CLIENTS" --messages "$messages" --interval "$BROADCAST_INTERVAL" \
    --timeout 60s --json >"$OUT/$s.bench.json" 2>"$OUT/$s.bench.err" &
  local bench=$!
  # The generator says when every receiver is open, then connects the sender and waits 1s
  # before the first message: zero the counters in that second (the connect phase is out).
  until grep -q "receivers open" "$OUT/$s.bench.err"; do
    kill -0 "$bench" 2>/dev/null || { echo "broadcast: the generator failed" >&2; cat "$OUT/$s.bench.err" >&2; exit 1; }
    sleep 0.1
  done
  callgrind_control -z "$vg" >/dev/null 2>&1
  wait "$bench"
  # The receivers close once they have every message; the server hears it after the run.
  dump=$(stop_server "$s" 3)
  rm -rf "$app"
  echo "$(total_ir "$dump") $(json_field delivered "$OUT/$s.bench.json")"
}

upgrade_run() { # upgrade_run PORT CYCLES -> "IR COMPLETED" for one server under callgrind
  local port=$1 cycles=$2 s=upgrade-$2 app dump errors
  app=$(lua_app echo "$port")
  start_server "$s" "$port" "$BIN/wsrelay" run "$app"
  # The warm-up fills the allocator's pools and the runtime's tables; its own run of the
  # generator, so the counters can be zeroed between it and the measured cycles.
  taskset -c 1 "$BIN/wsrelay-bench" upgrade --url "ws://127.0.0.1:$port/" --cycles "$UPGRADE_WARMUP" \
    --warmup 0 --settle 1s --concurrency "$UPGRADE_CONCURRENCY" --json >/dev/null 2>"$OUT/$s.bench.err" ||
    { echo "upgrade: the warm-up failed" >&2; cat "$OUT/$s.bench.err" >&2; exit 1; }
  callgrind_control -z "$vg" >/dev/null 2>&1
  taskset -c 1 "$BIN/wsrelay-bench" upgrade --url "ws://127.0.0.1:$port/" --cycles "$cycles" \
    --warmup 0 --settle 0s --concurrency "$UPGRADE_CONCURRENCY" --json \
    >"$OUT/$s.bench.json" 2>"$OUT/$s.bench.err" ||
    { echo "upgrade: the generator failed" >&2; cat "$OUT/$s.bench.err" >&2; exit 1; }
  # The generator's last closes reach the server's tasks and Lua processes after it returns.
  dump=$(stop_server "$s" 3)
  rm -rf "$app"
  errors=$(json_field errors "$OUT/$s.bench.json")
  [ "$errors" = 0 ] || echo "upgrade: $errors of $cycles cycles failed" >&2
  echo "$(total_ir "$dump") $(json_field cycles "$OUT/$s.bench.json")"
}

difference() { # difference KIND RUN PORT BASE MORE UNIT: what MORE costs beyond BASE, per UNIT
  # Two runs, BASE and MORE units of work: what both pay (connects, joins, closes, timers,
  # the idle loop while the generator starts and stops) cancels out in the difference.
  local kind=$1 run=$2 port=$3 base_n=$4 more_n=$5 unit=$6 base more
  read -r -a base <<<"$("$run" "$port" "$base_n")"
  read -r -a more <<<"$("$run" "$((port + 100))" "$more_n")"
  local ir=$((more[0] - base[0])) count=$((more[1] - base[1]))
  echo "$kind: (${more[0]} - ${base[0]}) Ir / (${more[1]} - ${base[1]}) $unit" \
    "= $((ir / count)) Ir per $unit (dump of the longer run: $OUT/$kind-$more_n.callgrind.1)"
}

servers=("$@"); [ ${#servers[@]} -gt 0 ] || servers=(ws-echo relay-rust relay-lua)
port=${PORT:-19301}
for s in "${servers[@]}"; do
  port=$((port + 1))
  case $s in
    broadcast)
      echo "$(difference broadcast broadcast_run "$port" "$BROADCAST_BASE" \
        "$((BROADCAST_BASE + BROADCAST_MESSAGES))" "delivered frame") ($BROADCAST_CLIENTS clients)"
      continue ;;
    upgrade)
      difference upgrade upgrade_run "$port" "$UPGRADE_BASE" "$((UPGRADE_BASE + UPGRADE_CYCLES))" upgrade
      continue ;;
    ws-echo) cmd=("$BIN/ws-echo" --addr "127.0.0.1:$port") ;;
    relay-rust) cmd=("$BIN/relay-echo" --addr "127.0.0.1:$port") ;;
    relay-rust-shared) cmd=("$BIN/relay-echo" --shared-target --addr "127.0.0.1:$port") ;;
    relay-lua) app=$(lua_app echo "$port"); cmd=("$BIN/wsrelay" run "$app") ;;
    *) echo "unknown server $s" >&2; exit 2 ;;
  esac
  start_server "$s" "$port" "${cmd[@]}"
  taskset -c 1 "$BIN/wsrelay-bench" echo --url "ws://127.0.0.1:$port/" --connections "$CONNECTIONS" \
    --duration 3s --json >/dev/null 2>&1
  callgrind_control -z "$vg" >/dev/null 2>&1
  taskset -c 1 "$BIN/wsrelay-bench" echo --url "ws://127.0.0.1:$port/" --connections "$CONNECTIONS" \
    --duration "$DURATION" --json >"$OUT/$s.bench.json" 2>/dev/null
  dump=$(stop_server "$s" 0)
  total=$(total_ir "$dump")
  messages=$(json_field messages "$OUT/$s.bench.json")
  echo "$s: $total Ir / $messages messages = $((total / messages)) Ir per message (dump $dump)"
done
