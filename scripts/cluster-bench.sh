#!/usr/bin/env bash
# Cluster benchmarks of release `wsrelay run` nodes, side by side in one run (docs/cluster.md,
# "Benchmarks (release build, `wsrelay run` nodes)"):
#   echo       relay echo, CONNECTIONS x PAYLOAD B closed loop, client on node A, to the Lua
#              echo process of node B (remote) vs that of node A (local), same app
#              (crates/bench/apps/cluster-echo), same code path (a `global:` name)
#   broadcast  examples/broadcast unchanged, BROADCAST_CLIENTS receivers split over nodes A and
#              B, the sender on A (delivery latency per node and over all), vs all on node A
#   pingpong   the in-process cross-node ping-pong of crates/cluster (`bench::`, release)
# Each round runs every measure once, the two sides of a comparison in alternating order;
# RUNS rounds, medians reported. Raw results: $OUT/*.jsonl; summary: $OUT/summary.md
# (crates/bench/scripts/cluster-report.py).
#
# One plain `nats-server` with JetStream (cluster names need it) on 127.0.0.1:NATS_PORT, not
# scripts/nats-cluster.sh: its fixed ports 4311-4313 belong to the cluster tests, and one
# server is the smallest setup that still puts every cross-node message through NATS.
# Frames are signed (a cluster secret), as a `wsrelay run` cluster needs (docs/cluster.md,
# Security). Pinning (PIN=1): NATS and both nodes on core 0, the load generator on core 1,
# as scripts/bench.sh does. The ping-pong test is not pinned (its nodes, client and three NATS
# servers live in one test process; the figures in docs/cluster.md were taken that way) and
# needs ports 4311-4313 free (it starts its own NATS cluster there); it is skipped otherwise.
#
# Usage: scripts/cluster-bench.sh    (about 2 minutes a round with the defaults)
# Knobs (environment):
#   RUNS=3  DURATION=5s  CONNECTIONS=50  PAYLOAD=20
#   BROADCAST_CLIENTS=10000 (in all; half per node in the 2-node case)
#   BROADCAST_MESSAGES=20  BROADCAST_INTERVAL=200ms
#   ONLY="echo broadcast pingpong"   a subset
#   NATS_PORT=4391  PORT_BASE=19320 (nodes' ports: +0 a, +1 b; metrics +10 a, +11 b)
#   PIN=1 (0: no taskset)  SKIP_BUILD=1  OUT=target/cluster-bench-results  BIN=target/release
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/bench-lib.sh
CONNECTIONS=${CONNECTIONS:-50}
ONLY=${ONLY:-echo broadcast pingpong}
NATS_PORT=${NATS_PORT:-4391}
PORT_BASE=${PORT_BASE:-19320}
PIN=${PIN:-1}
OUT=${OUT:-$ROOT/target/cluster-bench-results}
declare -A PORT=([a]=$PORT_BASE [b]=$((PORT_BASE + 1)))
declare -A METRICS=([a]=$((PORT_BASE + 10)) [b]=$((PORT_BASE + 11)))

log() { printf '[cluster-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# A prefix, not a function: a backgrounded function is a subshell, and $! must be the
# server itself (taskset execs it) so that the cleanup kills it and its CPU time is read.
SERVER_CPU=(); CLIENT_CPU=()
if [ "$PIN" = 1 ]; then SERVER_CPU=(taskset -c 0); CLIENT_CPU=(taskset -c 1); fi
gen() { "${CLIENT_CPU[@]}" "$BIN/wsrelay-bench" "$@"; }

for tool in nats-server curl python3 $([ "$PIN" = 1 ] && echo taskset); do
  command -v "$tool" >/dev/null || { echo "cluster-bench.sh: $tool is required" >&2; exit 2; }
done
if [ -z "${SKIP_BUILD:-}" ]; then
  log "building (release)"
  cargo build --release -q -p wsrelay -p wsrelay-bench
  if wants pingpong; then cargo test --release -q -p wsrelay-cluster --test cluster --no-run 2>/dev/null; fi
fi
rm -rf "$OUT"; mkdir -p "$OUT/logs"
start_work # PIDS: NATS and the nodes
trap 'exit 130' INT TERM

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates src examples scripts || echo ' (with local changes)')"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
  echo "nats-server: $(nats-server --version)"
  echo "rustc: $(rustc --version)"
  echo "open files (soft/hard): $(ulimit -Sn)/$(ulimit -Hn)"
  echo "pinning: $([ "$PIN" = 1 ] && echo 'NATS + nodes on core 0, load generator on core 1, ping-pong test unpinned' || echo none)"
  echo "knobs: RUNS=$RUNS DURATION=$DURATION CONNECTIONS=$CONNECTIONS PAYLOAD=$PAYLOAD BROADCAST_CLIENTS=$BROADCAST_CLIENTS BROADCAST_MESSAGES=$BROADCAST_MESSAGES BROADCAST_INTERVAL=$BROADCAST_INTERVAL ONLY=\"$ONLY\""
  echo "load at start: $(loadavg)"
} > "$OUT/machine.txt"

# ===== NATS and nodes =====


if (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; then
  echo "cluster-bench.sh: port $NATS_PORT is taken (NATS_PORT=…)" >&2; exit 2
fi
"${SERVER_CPU[@]}" nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/js" >"$OUT/logs/nats.log" 2>&1 &
NATS_PID=$!
PIDS+=("$NATS_PID")
wait_port "$NATS_PORT"
head -c 32 /dev/urandom | base64 > "$WORK/cluster.secret"

declare -A NODE_PID=()
start_node() { # start_node NAME APP_DIR: a release `wsrelay run` node joined from the environment
  local name=$1 app=$2
  WSRELAY_NODE=$name \
    WSRELAY_NATS_URLS="nats://127.0.0.1:$NATS_PORT" \
    WSRELAY_CLUSTER_SECRET_FILE="$WORK/cluster.secret" \
    WSRELAY_CLUSTER_ADVISORY="" \
    RUST_LOG=warn "${SERVER_CPU[@]}" "$BIN/wsrelay" run "$app" --listen "127.0.0.1:${PORT[$name]}" \
    --metrics "127.0.0.1:${METRICS[$name]}" >>"$OUT/logs/node-$name.log" 2>&1 &
  NODE_PID[$name]=$!
  PIDS+=("$!")
  wait_port "${PORT[$name]}"
}
# (The DISCONNECT advisory is off: a plain server has no system account to publish it; it
# only speeds up failure detection, which is not measured here.)

metric() { # metric NODE NAME{labels}: its value on the node's /metrics, or empty
  curl -s "http://127.0.0.1:${METRICS[$1]}/metrics" | awk -v m="$2" '$1 == m {print $2}'
}

wait_peers() { # every running node sees the others up (hello + answer)
  local a b tries=0
  for a in "$@"; do for b in "$@"; do
    [ "$a" = "$b" ] && continue
    until [ "$(metric "$a" "wsrelay_peer_up{peer=\"$b\"}")" = 1 ]; do
      tries=$((tries + 1))
      [ $tries -lt 300 ] || { echo "cluster-bench.sh: node $a does not see $b" >&2; return 1; }
      sleep 0.1
    done
  done; done
}

stop_nodes() { # SIGTERM, up to 15 s to drain, then SIGKILL; keeps the metrics first
  local name pid tries
  for name in "${!NODE_PID[@]}"; do
    curl -s "http://127.0.0.1:${METRICS[$name]}/metrics" > "$OUT/logs/metrics-$name-$1.txt" || true
  done
  for name in "${!NODE_PID[@]}"; do
    pid=${NODE_PID[$name]}
    kill "$pid" 2>/dev/null || continue
    tries=0
    while kill -0 "$pid" 2>/dev/null && [ $tries -lt 150 ]; do sleep 0.1; tries=$((tries + 1)); done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  NODE_PID=()
  sleep 0.5
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# cpu_json PID_LIST BEFORE_LIST: CPU seconds each process spent since BEFORE (clock ticks).
cpu_snapshot() { local p; for p in "$@"; do printf '%s ' "$(cpu_ticks "$p")"; done; }
cpu_json() { # cpu_json "a:PID b:PID nats:PID" "TICKS…" -> "a":s,"b":s,"nats":s
  local hz pairs=($1) before=($2) i name pid out=
  hz=$(getconf CLK_TCK)
  for i in "${!pairs[@]}"; do
    name=${pairs[$i]%%:*}; pid=${pairs[$i]#*:}
    out+="\"cpu_$name\":$(awk -v a="${before[$i]}" -v b="$(cpu_ticks "$pid")" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz}'),"
  done
  echo "${out%,}"
}

# tag FILE FIELDS: FILE's JSON object line with FIELDS (JSON, no braces) in front.
tag() { sed "s/^{/{$2,/" "$1"; }

# ===== measures =====

echo_run() { # echo_run ROUND SIDE(remote|local)
  local r=$1 side=$2 node procs before load
  node=$([ "$side" = remote ] && echo b || echo a)
  procs="a:${NODE_PID[a]} b:${NODE_PID[b]} nats:$NATS_PID"
  before=$(cpu_snapshot "${NODE_PID[a]}" "${NODE_PID[b]}" "$NATS_PID")
  load=$(loadavg)
  log "echo round $r: $side (client on a, target on $node), load $load"
  if gen echo --url "ws://127.0.0.1:${PORT[a]}/?t=$node" --connections "$CONNECTIONS" \
      --payload "$PAYLOAD" --duration "$DURATION" --json >"$WORK/result" 2>>"$OUT/logs/gen-echo.log"; then
    tag "$WORK/result" "\"round\":$r,\"side\":\"$side\",\"load\":\"$load\",\"load_end\":\"$(loadavg)\",$(cpu_json "$procs" "$before")" >> "$OUT/echo.jsonl"
  else log "echo $side round $r failed"; fi
}

echo_round() {
  local r=$1 tries=0
  start_node a "$ROOT/crates/bench/apps/cluster-echo"
  start_node b "$ROOT/crates/bench/apps/cluster-echo"
  wait_peers a b
  # Both names registered and seen from a: one echo through each (retried while starting).
  for t in b a; do
    until gen echo --url "ws://127.0.0.1:${PORT[a]}/?t=$t" --connections 1 --duration 200ms --json 2>/dev/null \
        | grep -q '"messages":[1-9]'; do
      tries=$((tries + 1))
      [ $tries -lt 100 ] || { echo "cluster-bench.sh: no echo from node $t's target" >&2; return 1; }
      sleep 0.2
    done
  done
  for t in b a; do # warm-up
    gen echo --url "ws://127.0.0.1:${PORT[a]}/?t=$t" --connections "$CONNECTIONS" --payload "$PAYLOAD" \
      --duration 1s --json >/dev/null 2>&1 || true
  done
  if [ $((r % 2)) = 1 ]; then echo_run "$r" remote; echo_run "$r" local
  else echo_run "$r" local; echo_run "$r" remote; fi
  stop_nodes "echo-$r"
}

broadcast_run() { # broadcast_run ROUND SETUP(two-nodes|one-node): fresh nodes every run
  local r=$1 setup=$2 urls procs before load
  if [ "$setup" = two-nodes ]; then
    start_node a "$ROOT/examples/broadcast"; start_node b "$ROOT/examples/broadcast"
    wait_peers a b
    urls="ws://127.0.0.1:${PORT[a]}/,ws://127.0.0.1:${PORT[b]}/"
    procs="a:${NODE_PID[a]} b:${NODE_PID[b]} nats:$NATS_PID"
    before=$(cpu_snapshot "${NODE_PID[a]}" "${NODE_PID[b]}" "$NATS_PID")
  else
    start_node a "$ROOT/examples/broadcast"
    urls="ws://127.0.0.1:${PORT[a]}/"
    procs="a:${NODE_PID[a]} nats:$NATS_PID"
    before=$(cpu_snapshot "${NODE_PID[a]}" "$NATS_PID")
  fi
  load=$(loadavg)
  log "broadcast round $r: $setup ($BROADCAST_CLIENTS receivers, sender on a), load $load"
  if gen broadcast --url "$urls" --clients "$BROADCAST_CLIENTS" --sources "$SOURCES" \
      --messages "$BROADCAST_MESSAGES" --interval "$BROADCAST_INTERVAL" --json \
      >"$WORK/result" 2>>"$OUT/logs/gen-broadcast.log"; then
    tag "$WORK/result" "\"round\":$r,\"setup\":\"$setup\",\"load\":\"$load\",\"load_end\":\"$(loadavg)\",$(cpu_json "$procs" "$before")" >> "$OUT/broadcast.jsonl"
  else log "broadcast $setup round $r failed"; fi
  stop_nodes "broadcast-$setup-$r"
}

pingpong_round() { # the crates/cluster benchmark; its BENCH lines go to pingpong.txt
  local r=$1 p
  for p in 4311 4312 4313 8311 8312 8313; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      log "pingpong round $r skipped: port $p is taken (the cluster tests' NATS)"; return 0
    fi
  done
  log "pingpong round $r"
  { printf 'round %s load %s\n' "$r" "$(loadavg)"
    cargo test --release -q -p wsrelay-cluster --test cluster bench::bench_cross_node_ping_pong_latency \
      -- --ignored --nocapture --test-threads 1 2>>"$OUT/logs/pingpong.log" | grep BENCH || true
    printf 'round %s load at end %s\n' "$r" "$(loadavg)"
  } >> "$OUT/pingpong.txt"
}

for r in $(seq "$RUNS"); do
  if wants echo; then echo_round "$r"; fi
  if wants broadcast; then
    if [ $((r % 2)) = 1 ]; then broadcast_run "$r" two-nodes; broadcast_run "$r" one-node
    else broadcast_run "$r" one-node; broadcast_run "$r" two-nodes; fi
  fi
  if wants pingpong; then pingpong_round "$r"; fi
done

echo "load at end: $(loadavg)" >> "$OUT/machine.txt"
python3 "$ROOT/crates/bench/scripts/cluster-report.py" "$OUT" > "$OUT/summary.md"
cat "$OUT/summary.md"
log "done: $OUT/summary.md, raw results in $OUT"
