#!/usr/bin/env bash
# End-to-end tests with real third-party clients:
#   seed_client.py   Python `websockets` against examples/seed
#   chat_browser.mjs headless Chromium (playwright-core) against the built-in chat demo
# Env: WSRELAY_BIN (skip the build), CHROMIUM (default /usr/bin/chromium),
#      E2E_SKIP_BROWSER=1 (seed tests only).
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
if [[ -n "${WSRELAY_BIN:-}" ]]; then
    BIN="$WSRELAY_BIN"
else
    log "building wsrelay (release)"
    cargo build --release --bin wsrelay
    BIN="$ROOT/target/release/wsrelay"
fi
[[ -x "$BIN" ]] || { log "no executable at $BIN"; exit 1; }

# ---- dependencies (installed only when missing) ---------------------------
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import websockets' 2>/dev/null; then
    log "installing websockets"
    "$PY" -m pip install --quiet websockets
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
    if [[ ! -d "$HERE/node_modules/playwright-core" ]]; then
        log "installing playwright-core"
        (cd "$HERE" && npm install --no-save --no-audit --no-fund playwright-core@1)
    fi
fi

# ---- servers --------------------------------------------------------------
PIDS=()
TMP="$(mktemp -d)"
cleanup() {
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
"$BIN" check "$TMP/seed" >&2
"$BIN" run "$TMP/seed" >"$OUT/seed.log" 2>&1 &
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

log "seed app on 127.0.0.1:$SEED_PORT"
set +e
"$PY" "$HERE/seed_client.py" "ws://127.0.0.1:$SEED_PORT" 2>"$OUT/seed_client.err" | tee "$OUT/seed_client.out"
rc=${PIPESTATUS[0]}
set -e
tally "$OUT/seed_client.out"
[[ $rc -ne 0 ]] && { log "seed_client.py failed (stderr in $OUT/seed_client.err)"; cat "$OUT/seed_client.err" >&2; }

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
    set +e
    (cd "$HERE" && node chat_browser.mjs "$DEMO_PORT" "$FOREIGN_PORT" "$OUT/chat.png") \
        2>"$OUT/chat_browser.err" | tee "$OUT/chat_browser.out"
    rc=${PIPESTATUS[0]}
    set -e
    tally "$OUT/chat_browser.out"
    [[ $rc -ne 0 ]] && { log "chat_browser.mjs failed (stderr in $OUT/chat_browser.err)"; cat "$OUT/chat_browser.err" >&2; }
fi

log "done in $(( $(date +%s) - START ))s; logs in $OUT"
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
