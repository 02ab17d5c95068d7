#!/usr/bin/env bash
# WebSocket conformance (Autobahn cases via kosoku) of an echo server.
#
# Usage: scripts/conformance.sh [SERVER] [OUTDIR]
#   SERVER: ws-echo (default; built on wsrelay-ws), relay-echo (the whole relay: connection
#           process -> Rust target -> connection process), or fastwebsockets | tokio-websockets |
#           tungstenite (bare-echo --lib SERVER). OUTDIR defaults to target/conformance/SERVER.
#
# Runs every case but 12.* and 13.* (permessage-deflate, not negotiated by wsrelay): 301 cases.
# Exits non-zero if any case's behavior or close behavior is FAILED (or missing), or if a case
# is NON-STRICT or UNIMPLEMENTED and not listed in ALLOWED_NON_STRICT below with a reason.
set -euo pipefail

SERVER=${1:-ws-echo}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${2:-$ROOT/target/conformance/$SERVER}

# Cases allowed to be NON-STRICT, as "case-id: reason". None for ws-echo: wsrelay-ws passes all.
ALLOWED_NON_STRICT=(
)
# Through the relay, an echo is produced by another process. In these cases the client sends a
# valid message and then a protocol violation (reserved bits or opcodes, a stray continuation)
# right behind it: the relay closes with 1002 at once, as RFC 6455 requires ("fail the
# connection"), and the target's echo of the valid message, still on its way, is not written.
# Autobahn grades "echo, then close" OK and "close without the echo" NON-STRICT. Which of these
# ten cases come out NON-STRICT varies from run to run (it is a race between the echo and the
# violation); they are exactly the cases whose NON-STRICT outcome Autobahn defines as "no echo".
if [ "$SERVER" = relay-echo ]; then
  ALLOWED_NON_STRICT=(
    "3.2: fail fast on RSV bits; the target's echo of the earlier message is dropped"
    "3.3: fail fast on RSV bits; the target's echo of the earlier message is dropped"
    "3.4: fail fast on RSV bits; the target's echo of the earlier message is dropped"
    "4.1.3: fail fast on a reserved opcode; the earlier echo is dropped"
    "4.1.4: fail fast on a reserved opcode; the earlier echo is dropped"
    "4.1.5: fail fast on a reserved opcode; the earlier echo is dropped"
    "4.2.3: fail fast on a reserved opcode; the earlier echo is dropped"
    "4.2.4: fail fast on a reserved opcode; the earlier echo is dropped"
    "4.2.5: fail fast on a reserved opcode; the earlier echo is dropped"
    "5.15: fail fast on a stray continuation frame; the earlier echo is dropped"
  )
fi

command -v kosoku >/dev/null 2>&1 || python3 -m pip install --quiet kosoku
command -v kosoku >/dev/null 2>&1 || { echo "conformance: kosoku is not installed" >&2; exit 2; }

cargo build --release --quiet -p wsrelay-bench --bin ws-echo --bin bare-echo --bin relay-echo --manifest-path "$ROOT/Cargo.toml"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
ADDR=127.0.0.1:$PORT
case "$SERVER" in
  ws-echo) "$BIN/ws-echo" --addr "$ADDR" 2>/dev/null & ;;
  relay-echo) "$BIN/relay-echo" --addr "$ADDR" 2>/dev/null & ;;
  fastwebsockets|tokio-websockets|tungstenite) "$BIN/bare-echo" --lib "$SERVER" --addr "$ADDR" 2>/dev/null & ;;
  *) echo "conformance: unknown server $SERVER" >&2; exit 2 ;;
esac
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT

for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

rm -rf "$OUTDIR"; mkdir -p "$OUTDIR"
timeout 600 kosoku -x '12.*' -x '13.*' -p 2 -o "$OUTDIR" "$ADDR" >"$OUTDIR/kosoku.log" 2>&1 || true

python3 - "$OUTDIR/index.json" "${ALLOWED_NON_STRICT[@]}" <<'PY'
import collections, json, sys
path, allowed = sys.argv[1], {a.split(":")[0].strip() for a in sys.argv[2:]}
try:
    index = json.load(open(path))
except (OSError, ValueError) as err:
    sys.exit(f"conformance: no readable report {path}: {err}")
cases = next(iter(index.values()), {})
counts, bad = collections.Counter(), []
for case, result in sorted(cases.items()):
    for field in ("behavior", "behaviorClose"):
        verdict = result.get(field, "MISSING")
        counts[verdict] += 1
        if verdict in ("OK", "INFORMATIONAL"):
            continue
        if verdict in ("NON-STRICT", "UNIMPLEMENTED") and case in allowed:
            continue
        bad.append(f"{case} {field}={verdict} ({result.get('reportfile', '?')})")
print(f"conformance: {len(cases)} cases; verdicts: {dict(counts)}")
if len(cases) != 301:
    bad.append(f"expected 301 cases, got {len(cases)}")
for line in bad:
    print("conformance: FAILED", line)
sys.exit(1 if bad else 0)
PY
