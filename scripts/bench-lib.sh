# What scripts/bench.sh and scripts/cluster-bench.sh share; sourced by them, after they set
# ONLY (the measures to run).

# wants MEASURE: whether ONLY selects MEASURE.
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
