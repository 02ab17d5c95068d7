#!/usr/bin/env bash
# A 3-server NATS cluster on 127.0.0.1 for wsrelay cluster tests (docs/cluster-design.md §3).
#
#   scripts/nats-cluster.sh start DIR [N]   start all servers (or server N = 1..3)
#   scripts/nats-cluster.sh stop  DIR [N]   stop all servers (or server N), by their PIDs
#   scripts/nats-cluster.sh kill  DIR [N]   SIGKILL all servers (or server N): a crash
#   scripts/nats-cluster.sh config DIR      only write and check the config files
#
# Client ports 4311-4313, routes 6311-6313, monitoring 8311-8313, JetStream store in DIR.
# PORTS="C1 C2 C3 R1 R2 R3 M1 M2 M3" (client, route, monitoring ports of servers 1..3) picks
# others when DIR's config is written; they are kept in DIR/ports and later commands on DIR
# use them (the tests give each test binary its own, so that runs side by side don't meet).
# Accounts: SYS (system account) exports the client DISCONNECT advisory, WSR imports it.
# One WSR user per node (NODES, default "a b c d e n1 n2 n3 n4 n5"), password "<node>-pw",
# allowed to publish wsr.$CLUSTER.n.*.<node> only (so a node can publish only as itself)
# and to subscribe to its own inbox subjects; user "admin" / "admin-pw" for tooling.
# These permissions do NOT authenticate frame sources on their own: "admin" may publish
# anywhere, and the JetStream API that cluster names need lets a node have the server
# publish on another node's subjects (docs/cluster.md, Security). Use a cluster secret.
# Node credentials files (user:password) are written to DIR/creds/<node>.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
only=${3:-}
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 start|stop|kill|config DIR [N]" >&2; exit 2; }
CLUSTER=${CLUSTER:-wsr}
NODES=${NODES:-"a b c d e n1 n2 n3 n4 n5"}

# The ports: DIR's own once its config is written, else PORTS, else the defaults.
if [[ -f "$dir/ports" ]]; then
  stored=$(cat "$dir/ports")
  if [[ -n "${PORTS:-}" && "$(echo $PORTS)" != "$(echo $stored)" ]]; then
    echo "$dir was configured with ports $stored, not PORTS=$PORTS" >&2; exit 2
  fi
  PORTS=$stored
fi
read -r -a P <<< "${PORTS:-4311 4312 4313 6311 6312 6313 8311 8312 8313}"
[[ ${#P[@]} == 9 ]] || { echo "PORTS needs 9 ports, got: ${P[*]}" >&2; exit 2; }
for p in "${P[@]}"; do
  [[ "$p" =~ ^[0-9]+$ ]] && (( p > 0 && p < 65536 )) || { echo "bad port in PORTS: $p" >&2; exit 2; }
done
client_port() { echo "${P[$(( $1 - 1 ))]}"; }
route_port() { echo "${P[$(( $1 + 2 ))]}"; }
http_port() { echo "${P[$(( $1 + 5 ))]}"; }

servers() { if [[ -n "$only" ]]; then echo "$only"; else echo 1 2 3; fi; }

write_config() {
  mkdir -p "$dir/creds"
  {
    echo "accounts {"
    echo "  SYS {"
    echo "    users: [ { user: sys, password: sys-pw } ]"
    echo "    exports: [ { stream: \"\$SYS.ACCOUNT.WSR.DISCONNECT\" } ]"
    echo "  }"
    echo "  WSR {"
    echo "    jetstream: enabled"
    echo "    imports: [ { stream: { account: SYS, subject: \"\$SYS.ACCOUNT.WSR.DISCONNECT\" } } ]"
    echo "    users: ["
    echo "      { user: admin, password: admin-pw }"
    for n in $NODES; do
      cat <<CONF
      { user: $n, password: $n-pw, permissions: {
          publish: { allow: [ "wsr.$CLUSTER.n.*.$n", "wsr.$CLUSTER.all.$n", "\$KV.wsr_names.>", "\$JS.API.>", "\$JS.ACK.KV_wsr_names.>", "\$JS.FC.>" ] }
          subscribe: { allow: [ "wsr.$CLUSTER.n.$n.>", "wsr.$CLUSTER.all.>", "_INBOX_$n.>", "\$SYS.ACCOUNT.WSR.DISCONNECT" ] }
      } }
CONF
      echo "$n:$n-pw" > "$dir/creds/$n"
    done
    echo "    ]"
    echo "  }"
    echo "}"
    echo "system_account: SYS"
  } > "$dir/accounts.conf"
  echo "${P[*]}" > "$dir/ports"
  local routes="nats-route://127.0.0.1:$(route_port 1), nats-route://127.0.0.1:$(route_port 2), nats-route://127.0.0.1:$(route_port 3)"
  for i in 1 2 3; do
    cat > "$dir/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$(client_port "$i")
http: 127.0.0.1:$(http_port "$i")
max_payload: 1MB
jetstream {
  store_dir: "$dir/js$i"
  max_memory_store: 64MB
  max_file_store: 256MB
}
cluster {
  name: wsr
  listen: 127.0.0.1:$(route_port "$i")
  routes: [ $routes ]
}
include ./accounts.conf
CONF
    nats-server -c "$dir/n$i.conf" -t >/dev/null 2>&1 || { nats-server -c "$dir/n$i.conf" -t; exit 1; }
  done
}

running() { # pid: alive and not a zombie (an unreaped server must not be waited for)
  [[ -r /proc/$1/status ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"
}

healthy() { # port
  local out
  out=$( { exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3 && cat <&3; } 2>/dev/null ) || return 1
  [[ "$out" == *'"ok"'* ]]
}

case "$cmd" in
  config) mkdir -p "$dir"; write_config ;;
  start)
    command -v nats-server >/dev/null || { echo "nats-server not found (apt-get install -y nats-server)" >&2; exit 1; }
    mkdir -p "$dir"
    [[ -f "$dir/accounts.conf" ]] || write_config
    for i in $(servers); do
      if [[ -f "$dir/n$i.pid" ]] && running "$(cat "$dir/n$i.pid")"; then continue; fi
      nats-server -c "$dir/n$i.conf" -l "$dir/n$i.log" >/dev/null 2>&1 &
      echo $! > "$dir/n$i.pid"
    done
    for _ in $(seq 1 150); do
      ok=1
      for i in $(servers); do
        # A server that exited (its ports taken, a bad store) will not come up: say so now,
        # and never take another cluster's server on the same port for ours.
        running "$(cat "$dir/n$i.pid")" || { echo "nats server $i exited; log: $dir/n$i.log" >&2; exit 1; }
        healthy "$(http_port "$i")" || ok=0
      done
      [[ $ok == 1 ]] && { echo "nats cluster up in $dir"; exit 0; }
      sleep 0.1
    done
    echo "nats cluster did not become healthy; logs in $dir" >&2
    exit 1 ;;
  stop)
    for i in $(servers); do
      if [[ -f "$dir/n$i.pid" ]]; then
        pid=$(cat "$dir/n$i.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do running "$pid" || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/n$i.pid"
      fi
    done ;;
  kill)
    for i in $(servers); do
      if [[ -f "$dir/n$i.pid" ]]; then
        pid=$(cat "$dir/n$i.pid")
        kill -9 "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do running "$pid" || break; sleep 0.1; done
        rm -f "$dir/n$i.pid"
      fi
    done ;;
  *) echo "usage: $0 start|stop|kill|config DIR [N]" >&2; exit 2 ;;
esac
