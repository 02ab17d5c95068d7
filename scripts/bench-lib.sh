# What scripts/bench.sh and scripts/cluster-bench.sh share; sourced by them from the
# repository's root with ROOT set, before their own knobs.

# The knobs both scripts have, with their defaults (each script's header lists them).
BIN=${BIN:-$ROOT/target/release}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
PAYLOAD=${PAYLOAD:-20}
BROADCAST_CLIENTS=${BROADCAST_CLIENTS:-10000}
BROADCAST_MESSAGES=${BROADCAST_MESSAGES:-20}
BROADCAST_INTERVAL=${BROADCAST_INTERVAL:-200ms}
# The loopback addresses the load generators connect from (more than one source address
# for 10,000 connections to one port).
SOURCES=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8

# wants MEASURE: whether ONLY (the script's measures to run) selects MEASURE.
wants() { [[ " $ONLY " == *" $1 "* ]]; }

# start_work: a fresh scratch directory WORK, and PIDS, the processes the script starts;
# both go on exit, whatever ends the script.
start_work() {
  WORK=$(mktemp -d)
  PIDS=()
  trap cleanup EXIT
}
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}

# wait_port PORT: waits up to 30 s for a listener on 127.0.0.1:PORT.
wait_port() {
  local port=$1 tries=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    tries=$((tries + 1))
    [ $tries -lt 300 ] || { echo "${0##*/}: nothing listens on $port" >&2; return 1; }
    sleep 0.1
  done
}
