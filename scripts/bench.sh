#!/usr/bin/env bash
# The whole benchmark comparison in one go:
# release builds, loopback only, every server pinned to core 0 and every load generator to
# core 1, each measure run RUNS times (interleaved across servers) and reported as the median.
# Writes the raw results to $OUT/*.jsonl, then docs/BENCHMARKS.md (the generated section) and
# the plots docs/bench/*.svg via crates/bench/scripts/report.py.
#
# Usage: scripts/bench.sh            (about 12 minutes with the defaults)
# Knobs (environment):
#   RUNS=3                runs per measure (the median is reported)
#   DURATION=5s           echo run length          CONNECTIONS=100  PAYLOAD=20
#   IDLE=15000            idle connections per server
#   BROADCAST_CLIENTS=10000  BROADCAST_MESSAGES=20  BROADCAST_INTERVAL=200ms
#   CYCLES=100000         connect/upgrade/close cycles (leak check), WARMUP=10000 of them first
#   WRK_DURATION=5s       wrk run length per endpoint (Lua vs Rust HTTP handler)
#   ONLY="echo idle broadcast upgrade http"   a subset of the measures
#   SKIP_BUILD=1          use the binaries already in target/release
#   OUT=target/bench-results   raw results (emptied first); DOCS=docs where the report goes
#   BIN=target/release    where the binaries are
#   SERVER_CPU=0 CLIENT_CPU=1   the cores (taskset lists) of the servers and the generators;
#                         SERVER_CPU=0,1 CLIENT_CPU=0,1 lets both use the whole machine
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/bench-lib.sh
CONNECTIONS=${CONNECTIONS:-100}
IDLE=${IDLE:-15000}
CYCLES=${CYCLES:-100000}
WARMUP=${WARMUP:-10000}
WRK_DURATION=${WRK_DURATION:-5s}
ONLY=${ONLY:-echo idle broadcast upgrade http}
OUT=${OUT:-$ROOT/target/bench-results}
DOCS=${DOCS:-$ROOT/docs}
NODE_DIR=$ROOT/crates/bench/node
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ===== setup =====

ECHO_SERVERS=(fws ws-echo relay-rust-shared relay-rust relay-lua node-ws uws pushpin)
ECHO_SERVERS=(${ECHO_ONLY:-${ECHO_SERVERS[@]}})
IDLE_SERVERS=(fws ws-echo relay-rust-shared relay-rust relay-lua node-ws uws pushpin)
IDLE_SERVERS=(${IDLE_ONLY:-${IDLE_SERVERS[@]}})
# uses NAME: whether a selected echo or idle measure starts server NAME.
uses() {
  { wants echo && [[ " ${ECHO_SERVERS[*]} " == *" $1 "* ]]; } ||
    { wants idle && [[ " ${IDLE_SERVERS[*]} " == *" $1 "* ]]; }
}
# Node and Pushpin only when a selected measure starts them, so that e.g.
# ONLY=idle IDLE_ONLY="relay-rust-shared relay-lua" runs on a machine without them.
NEEDS_NODE=
if wants broadcast || wants http || uses node-ws || uses uws || uses pushpin; then NEEDS_NODE=1; fi
for tool in taskset ${NEEDS_NODE:+node npm}; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool is required" >&2; exit 2; }
done
if uses pushpin; then
  command -v pushpin >/dev/null || { echo "bench.sh: pushpin is required (apt-get install pushpin)" >&2; exit 2; }
fi
if wants http; then
  command -v wrk >/dev/null || { echo "bench.sh: wrk is required (apt-get install wrk)" >&2; exit 2; }
fi
if [ -z "${SKIP_BUILD:-}" ]; then
  log "building (release)"
  cargo build --release -q -p wsrelay-bench -p wsrelay
fi
if [ -n "$NEEDS_NODE" ] && { [ ! -d "$NODE_DIR/node_modules/ws" ] || [ ! -d "$NODE_DIR/node_modules/@trufflesuite" ]; }; then
  log "installing the Node peers (npm)"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --silent)
fi
rm -rf "$OUT"; mkdir -p "$OUT/logs"
start_work

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates src examples || echo ' (with local changes)')"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "cores: $(nproc)"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "node: $(node --version)"
  echo "pushpin: $(pushpin --version 2>/dev/null | head -1)"
  echo "wrk: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "open files (hard): $(ulimit -Hn)"
  echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "knobs: RUNS=$RUNS DURATION=$DURATION CONNECTIONS=$CONNECTIONS PAYLOAD=$PAYLOAD IDLE=$IDLE BROADCAST_CLIENTS=$BROADCAST_CLIENTS BROADCAST_MESSAGES=$BROADCAST_MESSAGES CYCLES=$CYCLES WARMUP=$WARMUP WRK_DURATION=$WRK_DURATION SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU"
} > "$OUT/machine.txt"

# ===== servers =====
# Each server: a name, a port, a command. PIDs of the processes whose RSS counts are written
# to $WORK/NAME.pids.

declare -A PORT=(
  [ws-echo]=19201 [relay-rust]=19202 [relay-lua]=19203 [node-ws]=19204 [uws]=19205
  [pushpin]=19206 [relay-rust-shared]=19208 [broadcast]=19210 [handlers]=19211
  [fws]=19212 [lua-hello]=19213 [node-http]=19214 [uws-broadcast]=19215
)
PUSHPIN_BACKEND_PORT=19207

app_copy() { # app_copy DIR PORT -> a copy of the example app listening on PORT
  local dir=$WORK/app-$(basename "$1")-$2
  rm -rf "$dir"; cp -r "$ROOT/$1" "$dir"
  sed -i "s/addr: \"127.0.0.1:[0-9]*\"/addr: \"127.0.0.1:$2\"/" "$dir/app.yaml"
  # One load generator is one client IP opening thousands of connections: lift the admission
  # limits (crates/relay/src/limits.rs) in the copy if the app does not already.
  grep -q "wsrelay.upgrade_rate" "$dir/app.yaml" ||
    sed -i 's/^\(  *\)wsrelay.allowed.origins: "\*"$/&\n\1wsrelay.max_connections: unlimited\n\1wsrelay.upgrade_rate: "off"/' "$dir/app.yaml"
  echo "$dir"
}

start() { # start NAME: starts the server, records its PIDs
  local name=$1 port=${PORT[$1]} log=$OUT/logs/$1.log
  case $name in
    fws) taskset -c $SERVER_CPU "$BIN/bare-echo" --lib fastwebsockets --addr "127.0.0.1:$port" >"$log" 2>&1 & ;;
    ws-echo) taskset -c $SERVER_CPU "$BIN/ws-echo" --addr "127.0.0.1:$port" >"$log" 2>&1 & ;;
    relay-rust) taskset -c $SERVER_CPU "$BIN/relay-echo" --addr "127.0.0.1:$port" >"$log" 2>&1 & ;;
    relay-rust-shared) taskset -c $SERVER_CPU "$BIN/relay-echo" --shared-target --addr "127.0.0.1:$port" >"$log" 2>&1 & ;;
    relay-lua) RUST_LOG=warn taskset -c $SERVER_CPU "$BIN/wsrelay" run "$(app_copy examples/echo "$port")" >"$log" 2>&1 & ;;
    broadcast) RUST_LOG=warn taskset -c $SERVER_CPU "$BIN/wsrelay" run "$(app_copy examples/broadcast "$port")" >"$log" 2>&1 & ;;
    handlers) taskset -c $SERVER_CPU "$BIN/handler-bench" --addr "127.0.0.1:$port" >"$log" 2>&1 & ;;
    lua-hello) RUST_LOG=warn taskset -c $SERVER_CPU "$BIN/wsrelay" run "$(app_copy examples/hello "$port")" >"$log" 2>&1 & ;;
    node-http) taskset -c $SERVER_CPU node "$NODE_DIR/http-hello.js" "$port" >"$log" 2>&1 & ;;
    node-ws) taskset -c $SERVER_CPU node "$NODE_DIR/ws-echo.js" "$port" >"$log" 2>&1 & ;;
    uws) taskset -c $SERVER_CPU node "$NODE_DIR/uws-echo.js" "$port" >"$log" 2>&1 & ;;
    uws-broadcast) taskset -c $SERVER_CPU node "$NODE_DIR/uws-broadcast.js" "$port" >"$log" 2>&1 & ;;
    pushpin) start_pushpin "$port" "$log"; return ;;
  esac
  local pid=$!
  PIDS+=("$pid"); echo "$pid" > "$WORK/$name.pids"
  wait_port "$port"
}

start_pushpin() { # Pushpin (condure + zurl + proxy + handler) relaying WebSocket-over-HTTP to a
  # Node echo backend. Its own zurl (the packaged config points at a system zurl in /var/run).
  local port=$1 log=$2 dir=$WORK/pushpin
  mkdir -p "$dir/run" "$dir/log"
  echo "* 127.0.0.1:$PUSHPIN_BACKEND_PORT,over_http" > "$dir/routes"
  sed -e "s#^rundir=.*#rundir=$dir/run#" -e "s#^logdir=.*#logdir=$dir/log#" \
      -e "s#^http_port=.*#http_port=$port#" -e "s#^port_offset=.*#port_offset=300#" \
      -e "s#^routesfile=.*#routesfile=$dir/routes#" -e "s#^log_level=.*#log_level=1#" \
      -e "s#^services=.*#services=condure,zurl,pushpin-proxy,pushpin-handler#" \
      -e "s#^\[proxy\]\$#[proxy]\nzurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in\nzurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream\nzurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out#" \
      /etc/pushpin/pushpin.conf > "$dir/pushpin.conf"
  taskset -c $SERVER_CPU node "$NODE_DIR/grip-echo-backend.js" "$PUSHPIN_BACKEND_PORT" >"$log.backend" 2>&1 &
  PIDS+=("$!"); echo "$!" > "$WORK/pushpin-backend.pid"
  taskset -c $SERVER_CPU pushpin --config "$dir/pushpin.conf" >"$log" 2>&1 &
  local runner=$!
  PIDS+=("$runner")
  wait_port "$PUSHPIN_BACKEND_PORT"; wait_port "$port"
  sleep 1
  # RSS counts Pushpin's own processes (the runner's children), not the backend.
  pgrep -P "$runner" | paste -sd, > "$WORK/pushpin.pids"
  echo "$runner" > "$WORK/pushpin.runner"
}

stop() { # stop NAME: SIGTERM, then up to 15 s for a graceful exit, then SIGKILL
  local name=$1 pids pid tries
  if [ "$name" = pushpin ]; then
    pids="$(cat "$WORK/pushpin.runner") $(cat "$WORK/pushpin-backend.pid")"
  else
    pids=$(cat "$WORK/$name.pids")
  fi
  for pid in $pids; do
    kill "$pid" 2>/dev/null || continue
    tries=0
    while kill -0 "$pid" 2>/dev/null && [ $tries -lt 150 ]; do sleep 0.1; tries=$((tries + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  done
  sleep 0.5
}

gen() { taskset -c $CLIENT_CPU "$BIN/wsrelay-bench" "$@"; }

# fresh_runs MEASURE SETTLE SERVER... -- GEN_ARGS...: RUNS rounds over the SERVERs, each
# started fresh for its run (and given SETTLE seconds), measured with
# `gen MEASURE --url ws://127.0.0.1:PORT/ GEN_ARGS... --json`, then stopped; each result,
# tagged with its server, goes to $OUT/MEASURE.jsonl. A GEN_ARG `@pids` stands for the
# server's PIDs (for the generators that sample its memory).
fresh_runs() {
  local measure=$1 settle=$2 servers=() args r s
  shift 2
  while [ "$1" != -- ]; do servers+=("$1"); shift; done
  shift
  for r in $(seq "$RUNS"); do
    for s in "${servers[@]}"; do
      log "$measure $s run $r"
      start "$s"
      sleep "$settle"
      args=("${@//@pids/$(cat "$WORK/$s.pids")}")
      gen "$measure" --url "ws://127.0.0.1:${PORT[$s]}/" "${args[@]}" --json \
        2>>"$OUT/logs/gen-$measure.log" | sed "s/^{/{\"server\":\"$s\",/" >> "$OUT/$measure.jsonl" \
        || log "$measure $s run $r failed"
      stop "$s"
    done
  done
}

# ===== measures =====

if wants echo; then
  log "echo: ${ECHO_SERVERS[*]}, $RUNS x $DURATION each, interleaved"
  for s in "${ECHO_SERVERS[@]}"; do start "$s"; done
  for s in "${ECHO_SERVERS[@]}"; do # warm-up (JIT, allocator, first spawns)
    gen echo --url "ws://127.0.0.1:${PORT[$s]}/" --connections "$CONNECTIONS" --payload "$PAYLOAD" --duration 1s --json >/dev/null 2>&1 || true
  done
  for r in $(seq "$RUNS"); do
    for s in "${ECHO_SERVERS[@]}"; do
      log "echo $s run $r"
      gen echo --url "ws://127.0.0.1:${PORT[$s]}/" --connections "$CONNECTIONS" --payload "$PAYLOAD" \
        --duration "$DURATION" --json 2>>"$OUT/logs/gen-echo.log" | sed "s/^{/{\"server\":\"$s\",\"load\":\"$(cut -d' ' -f1 /proc/loadavg)\",/" >> "$OUT/echo.jsonl" \
        || log "echo $s run $r failed"
    done
  done
  for s in "${ECHO_SERVERS[@]}"; do stop "$s"; done
fi

if wants idle; then
  log "idle: $IDLE connections per server, fresh server each run"
  fresh_runs idle 1 "${IDLE_SERVERS[@]}" -- --connections "$IDLE" --sources "$SOURCES" \
    --hold 3s --server-pid @pids
fi

if wants broadcast; then
  log "broadcast: $BROADCAST_CLIENTS clients, one Lua room process, and uWebSockets.js pub/sub as the baseline"
  fresh_runs broadcast 0 broadcast uws-broadcast -- --clients "$BROADCAST_CLIENTS" \
    --sources "$SOURCES" --messages "$BROADCAST_MESSAGES" --interval "$BROADCAST_INTERVAL"
fi

if wants upgrade; then
  log "upgrade: $CYCLES connect/upgrade/close cycles through the Lua handler (examples/echo), and to bare fastwebsockets"
  fresh_runs upgrade 0 relay-lua fws -- --cycles "$CYCLES" --warmup "$WARMUP" \
    --concurrency 32 --sources "$SOURCES" --server-pid @pids
fi

if wants http; then
  log "http: wrk -c64 on hello endpoints: Lua (wsrelay run examples/hello), Node http, Rust handler"
  start handlers; start lua-hello; start node-http
  declare -A HTTP_URL=(
    [rust]="http://127.0.0.1:${PORT[handlers]}/rust"
    [lua]="http://127.0.0.1:${PORT[lua-hello]}/hello"
    [node]="http://127.0.0.1:${PORT[node-http]}/"
  )
  for path in rust lua node; do # warm-up
    taskset -c $CLIENT_CPU wrk -t1 -c64 -d1s "${HTTP_URL[$path]}" >/dev/null
  done
  for r in $(seq "$RUNS"); do
    for path in rust lua node; do
      log "wrk $path run $r"
      taskset -c $CLIENT_CPU wrk -t1 -c64 -d"$WRK_DURATION" --latency "${HTTP_URL[$path]}" \
        > "$OUT/logs/wrk-$path-$r.txt"
      awk -v ep="$path" '
        /Requests\/sec:/ {rps=$2}
        /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
        /Non-2xx/ {bad=$NF}
        END {printf "{\"endpoint\":\"%s\",\"requests_per_sec\":%s,\"p50\":\"%s\",\"p99\":\"%s\",\"non_2xx\":%d}\n", ep, rps, p50, p99, bad+0}
      ' "$OUT/logs/wrk-$path-$r.txt" >> "$OUT/http.jsonl"
    done
  done
  stop handlers; stop lua-hello; stop node-http
fi

echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
log "report"
python3 "$ROOT/crates/bench/scripts/report.py" "$OUT" "$DOCS/BENCHMARKS.md" "$DOCS/bench"
log "done: docs/BENCHMARKS.md, docs/bench/*.svg, raw results in $OUT"
