#!/usr/bin/env bash
# End-to-end tests with real third-party clients:
#   seed_client.py   Python `websockets` against examples/seed
#   wippy_chat_client.py Python `websockets` against examples/wippy-chat (JWT-authenticated
#                    connections, pg rooms, pg events presence, refused tokens)
#   deflate_client.py Python `websockets` (permessage-deflate, subprotocols) against ws-echo
#                    and examples/echo with compression on
#   chat_browser.mjs headless Chromium (playwright-core) against the built-in chat demo
#   extensions_browser.mjs headless Chromium: a subprotocol and permessage-deflate through
#                    the relay (examples/echo with compression on)
#   tls_h2_client.py Python `websockets` over wss:// and the `h2` package (RFC 8441 extended
#                    CONNECT, over TLS by ALPN and over h2c) against examples/echo with TLS
#   wss_browser.mjs  headless Chromium over wss:// trusting the test CA (NSS database made
#                    with certutil)
#   demo_browser.mjs headless Chromium: the demo page has no console errors and reconnects
#                    after a server restart
#   dashboard_browser.mjs headless Chromium: the ops dashboard (login, live connection
#                    count, the close action) against a copy of the chat demo with admin on
# Env: WSRELAY_BIN (skip the build), WS_ECHO_BIN (likewise for ws-echo),
#      CHROMIUM (default /usr/bin/chromium), E2E_SKIP_BROWSER=1 (no browser tests).
# Last line of output: "N passed, M failed".
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/e2e"
mkdir -p "$OUT"
START=$(date +%s)

log() { echo "e2e: $*" >&2; }

# ---- binary ---------------------------------------------------------------
# One release build makes both binaries, for whichever of them is not given.
if [[ -z "${WSRELAY_BIN:-}" || -z "${WS_ECHO_BIN:-}" ]]; then
    log "building wsrelay and ws-echo (release)"
    cargo build --release -p wsrelay -p wsrelay-bench
fi
BIN="${WSRELAY_BIN:-$ROOT/target/release/wsrelay}"
WS_ECHO="${WS_ECHO_BIN:-$ROOT/target/release/ws-echo}"
[[ -x "$BIN" ]] || { log "no executable at $BIN"; exit 1; }

# ---- dependencies (installed only when missing) ---------------------------
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import websockets' 2>/dev/null; then
    log "installing websockets"
    "$PY" -m pip install --quiet websockets
fi
if ! "$PY" -c 'import h2' 2>/dev/null; then
    log "installing h2"
    "$PY" -m pip install --quiet h2 || "$PY" -m pip install --quiet --break-system-packages h2
fi
SKIP_BROWSER="${E2E_SKIP_BROWSER:-0}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export CHROMIUM
if [[ "$SKIP_BROWSER" != 1 ]]; then
    if [[ ! -x "$CHROMIUM" ]]; then
        log "installing chromium"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
    fi
    if ! command -v certutil >/dev/null 2>&1; then
        log "installing libnss3-tools (certutil)"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y libnss3-tools
    fi
    if [[ ! -d "$HERE/node_modules/playwright-core" ]]; then
        log "installing playwright-core"
        (cd "$HERE" && npm install --no-save --no-audit --no-fund playwright-core@1)
    fi
fi

# ---- servers --------------------------------------------------------------
PIDS=()
TMP="$(mktemp -d)"
cleanup() {
    # The demo that demo_browser.mjs restarts is not in PIDS: its PID changes.
    [[ -f "$TMP/restarted.pid" ]] && kill "$(cat "$TMP/restarted.pid")" 2>/dev/null || true
    for pid in "${PIDS[@]:-}"; do
        [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL LOGFILE PID: until URL answers any HTTP status (or the server dies).
wait_http() {
    local url="$1" logf="$2" pid="$3" i
    for i in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "server for $url exited; its log:"; cat "$logf" >&2; return 1
        fi
        if "$PY" - "$url" <<'EOF' 2>/dev/null; then return 0; fi
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass
EOF
        sleep 0.1
    done
    log "timeout waiting for $url; server log:"; cat "$logf" >&2; return 1
}

SEED_PORT=$(free_port)
# The seed app's address is fixed in its YAML: run a copy with the port replaced.
cp -r "$ROOT/examples/seed" "$TMP/seed"
sed -i "s/addr: \"127.0.0.1:8081\"/addr: \"127.0.0.1:$SEED_PORT\"/" "$TMP/seed/app.yaml"
grep -q "127.0.0.1:$SEED_PORT" "$TMP/seed/app.yaml" || { log "could not set the seed app's port"; exit 1; }
"$BIN" check --strict "$TMP/seed" >&2
"$BIN" run --strict "$TMP/seed" >"$OUT/seed.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$SEED_PORT/ws/connect" "$OUT/seed.log" "${PIDS[-1]}"

PASSED=0
FAILED=0
# tally FILE: adds the RESULT line of a test driver's output (a driver that
# died without one counts as one failure).
tally() {
    local line p f
    line=$(grep -E '^RESULT passed=[0-9]+ failed=[0-9]+$' "$1" | tail -1 || true)
    if [[ -z "$line" ]]; then
        FAILED=$((FAILED + 1)); return
    fi
    p=${line#RESULT passed=}; p=${p%% *}
    f=${line##*failed=}
    PASSED=$((PASSED + p)); FAILED=$((FAILED + f))
}

# client NAME COMMAND...: runs one client (a Python script or, in $HERE, a browser script)
# with its output in $OUT/NAME.out (and on the terminal) and its stderr in $OUT/NAME.err, and
# counts its RESULT line; a client that fails is reported, and the run goes on.
client() {
    local name=$1 rc
    shift
    set +e
    (cd "$HERE" && "$@") 2>"$OUT/$name.err" | tee "$OUT/$name.out"
    rc=${PIPESTATUS[0]}
    set -e
    tally "$OUT/$name.out"
    if [[ $rc -ne 0 ]]; then
        log "$name failed (stderr in $OUT/$name.err)"
        cat "$OUT/$name.err" >&2
    fi
}

log "seed app on 127.0.0.1:$SEED_PORT"
client seed_client "$PY" "$HERE/seed_client.py" "ws://127.0.0.1:$SEED_PORT"

# ---- examples/wippy-chat: JWT auth, pg rooms, pg events presence ----------
WCHAT_PORT=$(free_port)
WCHAT_SECRET="e2e-$(date +%s%N)"
cp -r "$ROOT/examples/wippy-chat" "$TMP/wippy-chat"
sed -i "s/addr: \"127.0.0.1:9007\"/addr: \"127.0.0.1:$WCHAT_PORT\"/" "$TMP/wippy-chat/app.yaml"
grep -q "127.0.0.1:$WCHAT_PORT" "$TMP/wippy-chat/app.yaml" || { log "could not set the wippy-chat app's port"; exit 1; }
"$BIN" check --strict "$TMP/wippy-chat" >&2
WSRELAY_APP_JWT_SECRET="$WCHAT_SECRET" "$BIN" run --strict "$TMP/wippy-chat" >"$OUT/wippy-chat.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$WCHAT_PORT/ws" "$OUT/wippy-chat.log" "${PIDS[-1]}"
log "wippy-chat app on 127.0.0.1:$WCHAT_PORT"
client wippy_chat_client "$PY" "$HERE/wippy_chat_client.py" "ws://127.0.0.1:$WCHAT_PORT" "$WCHAT_SECRET"

# ---- permessage-deflate and subprotocols ----------------------------------
WS_ECHO_PORT=$(free_port)
"$WS_ECHO" --addr "127.0.0.1:$WS_ECHO_PORT" --compression --max-message-size 1048576 \
    >"$OUT/ws-echo.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$WS_ECHO_PORT/" "$OUT/ws-echo.log" "${PIDS[-1]}"

# examples/echo with compression on, v2.chat and mqtt accepted, and a 1 MiB message limit.
ECHO_PORT=$(free_port)
cp -r "$ROOT/examples/echo" "$TMP/echo"
sed -i -e "s/addr: \"127.0.0.1:9003\"/addr: \"127.0.0.1:$ECHO_PORT\"/" \
    -e 's/wsrelay.max_message_size: "16MiB"/wsrelay.max_message_size: "1MiB"\n      wsrelay.compression: permessage-deflate\n      wsrelay.subprotocols: "v2.chat, mqtt"/' \
    "$TMP/echo/app.yaml"
grep -q "wsrelay.compression: permessage-deflate" "$TMP/echo/app.yaml" \
    && grep -q "127.0.0.1:$ECHO_PORT" "$TMP/echo/app.yaml" \
    || { log "could not configure the echo app"; exit 1; }
"$BIN" check --strict "$TMP/echo" >&2
"$BIN" run --strict "$TMP/echo" >"$OUT/echo.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$ECHO_PORT/" "$OUT/echo.log" "${PIDS[-1]}"

log "ws-echo on 127.0.0.1:$WS_ECHO_PORT, echo app on 127.0.0.1:$ECHO_PORT (compression on)"
for target in "ws-echo ws://127.0.0.1:$WS_ECHO_PORT/" "relay ws://127.0.0.1:$ECHO_PORT/ --subprotocol v2.chat"; do
    name=${target%% *}
    # shellcheck disable=SC2086 # the target's words are the arguments
    client deflate_$name "$PY" "$HERE/deflate_client.py" $target
done

# ---- TLS and HTTP/2 (RFC 8441) --------------------------------------------
# examples/echo on a TLS listener with the test certificate, plus a cleartext listener with
# h2c on; both with --strict, as deployments should run.
CERTS="$ROOT/tests/fixtures/tls"
TLS_PORT=$(free_port)
H2C_PORT=$(free_port)
cp -r "$ROOT/examples/echo" "$TMP/echo-tls"
sed -i -e "s|addr: \"127.0.0.1:9003\"|addr: \"127.0.0.1:$TLS_PORT\"\n    tls:\n      cert: \"$CERTS/server.pem\"\n      key: \"$CERTS/server.key\"|" \
    "$TMP/echo-tls/app.yaml"
grep -q "$CERTS/server.key" "$TMP/echo-tls/app.yaml" || { log "could not configure TLS on the echo app"; exit 1; }
cat >"$TMP/echo-tls/h2c.yaml" <<YAML
namespace: echo
entries:
  - name: gateway_h2c
    kind: http.service
    addr: "127.0.0.1:$H2C_PORT"
    h2c: true
  - name: root_h2c
    kind: http.router
    meta: { server: gateway_h2c }
    prefix: /
    post_middleware: [websocket_relay]
    post_options:
      wsrelay.allowed.origins: "*"
  - name: connect_h2c
    kind: http.endpoint
    meta: { router: root_h2c }
    method: GET
    path: /
    func: connect
YAML
"$BIN" check --strict "$TMP/echo-tls" >&2
RUST_LOG=info,wsrelay_http=debug "$BIN" run --strict "$TMP/echo-tls" >"$OUT/echo-tls.log" 2>&1 &
PIDS+=($!)
# The cleartext listener also serves HTTP/1.1; both listeners are bound together.
wait_http "http://127.0.0.1:$H2C_PORT/" "$OUT/echo-tls.log" "${PIDS[-1]}"
grep -q "serving https://127.0.0.1:$TLS_PORT/" "$OUT/echo-tls.log" \
    || { log "the TLS listener is not announced as https"; cat "$OUT/echo-tls.log" >&2; exit 1; }

log "echo app with TLS on 127.0.0.1:$TLS_PORT, h2c on 127.0.0.1:$H2C_PORT"
client tls_h2_client "$PY" "$HERE/tls_h2_client.py" localhost "$TLS_PORT" "$CERTS/ca.pem" "$H2C_PORT"

if [[ "$SKIP_BROWSER" != 1 ]]; then
    # Chromium on Linux trusts the CAs of the NSS database under $HOME/.pki/nssdb.
    CHROMIUM_HOME="$TMP/chromium-home"
    mkdir -p "$CHROMIUM_HOME/.pki/nssdb"
    certutil -d "sql:$CHROMIUM_HOME/.pki/nssdb" -N --empty-password
    certutil -d "sql:$CHROMIUM_HOME/.pki/nssdb" -A -t "C,," -n "wsrelay test CA" -i "$CERTS/ca.pem"
    client wss_browser env CHROMIUM_HOME="$CHROMIUM_HOME" node wss_browser.mjs "https://localhost:$TLS_PORT/"
    # Informational: did Chromium carry its WebSocket over HTTP/2 (RFC 8441)?
    # (The log is coloured: strip the escapes before matching the request line's fields.)
    if sed 's/\x1b\[[0-9;]*m//g' "$OUT/echo-tls.log" | grep -q 'method=CONNECT .*version=HTTP/2.0 status=200'; then
        log "Chromium opened its WebSocket over HTTP/2 (extended CONNECT seen)"
    else
        log "Chromium opened its WebSocket over HTTP/1.1"
    fi
fi

if [[ "$SKIP_BROWSER" != 1 ]]; then
    DEMO_PORT=$(free_port)
    "$BIN" run --listen "127.0.0.1:$DEMO_PORT" >"$OUT/demo.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$DEMO_PORT/" "$OUT/demo.log" "${PIDS[-1]}"

    FOREIGN_PORT=$(free_port)
    "$PY" -m http.server "$FOREIGN_PORT" --bind 127.0.0.1 --directory "$HERE" >"$OUT/foreign.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$FOREIGN_PORT/foreign.html" "$OUT/foreign.log" "${PIDS[-1]}"

    log "demo on 127.0.0.1:$DEMO_PORT, foreign origin on 127.0.0.1:$FOREIGN_PORT"
    client chat_browser node chat_browser.mjs "$DEMO_PORT" "$FOREIGN_PORT" "$OUT/chat.png"

    client extensions_browser node extensions_browser.mjs "ws://127.0.0.1:$ECHO_PORT/" \
        "http://127.0.0.1:$FOREIGN_PORT/foreign.html"
fi

if [[ "$SKIP_BROWSER" != 1 ]]; then
    # demo_browser.mjs: a demo of its own, which the driver restarts through this script.
    RESTART_PORT=$(free_port)
    cat >"$TMP/restart_demo.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
if [[ -f "$TMP/restarted.pid" ]]; then
    pid=\$(cat "$TMP/restarted.pid")
    kill "\$pid" 2>/dev/null || true
    while kill -0 "\$pid" 2>/dev/null; do sleep 0.05; done
fi
"$BIN" run --listen "127.0.0.1:$RESTART_PORT" >>"$OUT/demo-restart.log" 2>&1 &
echo \$! >"$TMP/restarted.pid"
for i in \$(seq 1 100); do
    "$PY" -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \\
        "http://127.0.0.1:$RESTART_PORT/" 2>/dev/null && exit 0
    sleep 0.1
done
echo "demo did not come back" >&2; exit 1
EOF
    chmod +x "$TMP/restart_demo.sh"
    "$TMP/restart_demo.sh"
    log "restartable demo on 127.0.0.1:$RESTART_PORT"
    client demo_browser node demo_browser.mjs "$RESTART_PORT" "$TMP/restart_demo.sh"

    # dashboard_browser.mjs: a copy of the chat demo with the admin API on.
    DASH_PORT=$(free_port)
    DASH_OPS_PORT=$(free_port)
    DASH_TOKEN="e2e-dashboard-$(date +%s%N)"
    cp -r "$ROOT/examples/chat" "$TMP/dash"
    cat >"$TMP/dash/ops.yaml" <<EOF
namespace: dash
entries:
  - name: ops
    kind: wsrelay.ops
    addr: "127.0.0.1:$DASH_OPS_PORT"
    admin:
      enabled: true
      token_env: WSRELAY_E2E_DASHBOARD_TOKEN
EOF
    WSRELAY_E2E_DASHBOARD_TOKEN="$DASH_TOKEN" "$BIN" run --strict "$TMP/dash" \
        --listen "127.0.0.1:$DASH_PORT" >"$OUT/dashboard-app.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$DASH_OPS_PORT/healthz" "$OUT/dashboard-app.log" "${PIDS[-1]}"
    grep -q "dashboard http://127.0.0.1:$DASH_OPS_PORT/dashboard" "$OUT/dashboard-app.log" \
        || { log "wsrelay run did not print the dashboard URL"; FAILED=$((FAILED + 1)); }
    log "dashboard app on 127.0.0.1:$DASH_PORT, ops on 127.0.0.1:$DASH_OPS_PORT"
    client dashboard_browser node dashboard_browser.mjs "$DASH_PORT" "$DASH_OPS_PORT" "$DASH_TOKEN"
fi

log "done in $(( $(date +%s) - START ))s; logs in $OUT"
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
