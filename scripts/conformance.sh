#!/usr/bin/env bash
# WebSocket conformance (Autobahn cases via kosoku) of an echo server.
#
# Usage: scripts/conformance.sh [SERVER] [OUTDIR]
#   SERVER: ws-echo (default; built on wsrelay-ws), relay-echo (the whole relay: connection
#           process -> Rust target -> connection process), wsrelay-echo (`wsrelay run` on a copy
#           of examples/echo: the relay with a Lua target), or fastwebsockets | tokio-websockets |
#           tungstenite (bare-echo --lib SERVER). OUTDIR defaults to target/conformance/SERVER.
#
# A pass is a fresh server and one kosoku run:
#   plain:   compression off, every case but 12.* and 13.* (permessage-deflate): 301 cases;
#   deflate: permessage-deflate on (only cases 12.* and 13.* offer it).
#            ws-echo runs all 517 cases; wsrelay-echo runs those 301 and 90 of the 216
#            compression cases (DEFLATE_SAMPLE, below): 391 cases.
# ws-echo runs both passes, wsrelay-echo the deflate pass, relay-echo and the bare libraries
# the plain pass.
#
# Why only ws-echo runs every compression case: the cases of 12.* and 13.* are nearly all of
# the suite's time (kosoku compresses in Python: ≈ 790 of 805 case-seconds), and what they check
# (negotiation, the deflate stream, context takeover, window bits) is done by crates/ws, which
# ws-echo runs through all of them. The relay passes messages through whole and never touches
# their compression; what it adds with compression on (a compressed message crossing to a Lua
# target and back, the extension negotiated behind the relay's handshake) one message family
# (12.1) and the odd parameter families of 13.* check, on `wsrelay run` with a Lua target, the
# product. relay-echo (a Rust target) differs from it only behind the relay, so its plain pass
# is enough.
#
# Build: PROFILE=release (the default) or PROFILE=dev. CI uses the dev build its tests already
# made (`bash .ci/run`): the same code with overflow checks and debug assertions on, and no
# second build of the whole tree; a pass takes about as long on either (kosoku is the bound).
#
# In the deflate pass our servers compress every message (compression threshold 0): kosoku
# mishandles an uncompressed message on a compressed connection (its cases then fail with
# "Strings must be encoded before hashing" before they start), although RFC 7692 §6 allows
# one, and our default threshold of 256 bytes sends short messages uncompressed.
#
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
if [ "$SERVER" = relay-echo ] || [ "$SERVER" = wsrelay-echo ]; then
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

# The compression families wsrelay-echo's deflate pass runs (18 cases each, 1,000 compressed
# messages of 16 B to 128 KiB per case): 12.1 (the default offer), 13.1 (an explicit offer),
# 13.3 (a 9-bit window), 13.5 (no context takeover and a 9-bit window), 13.7 (three offers).
DEFLATE_SAMPLE=('12.1.*' '13.1.*' '13.3.*' '13.5.*' '13.7.*')

command -v kosoku >/dev/null 2>&1 || python3 -m pip install --quiet kosoku
command -v kosoku >/dev/null 2>&1 || { echo "conformance: kosoku is not installed" >&2; exit 2; }

PROFILE=${PROFILE:-release}
# The builds `.ci/run` and scripts/bench.sh make, so a build made by them leaves nothing to do
# here. Release: both packages in one command, features unified once. Dev: the features of
# `cargo test --workspace` (see `.ci/run`), so the tests' build is reused.
case "$PROFILE" in
  release) BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
    build=(--release -p wsrelay -p wsrelay-bench) ;;
  dev) BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
    build=(--workspace --bins --tests) ;;
  *) echo "conformance: PROFILE must be release or dev, not $PROFILE" >&2; exit 2 ;;
esac
# SKIP_BUILD=1: use the binaries already built. `.ci/run` sets it when conformance runs beside
# `cargo test`, which holds the build directory's lock while the tests run.
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build "${build[@]}" --quiet --manifest-path "$ROOT/Cargo.toml"
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# The echo app of examples/echo on ADDR, with permessage-deflate on and no admission limits
# (kosoku opens hundreds of connections from one address), written to DIR.
echo_app() {
  local dir=$1 addr=$2
  rm -rf "$dir"; cp -r "$ROOT/examples/echo" "$dir"
  python3 - "$dir/app.yaml" "$addr" <<'PY'
import sys
path, addr = sys.argv[1], sys.argv[2]
text = open(path).read().replace('addr: "127.0.0.1:9003"', f'addr: "{addr}"')
anchor = '      wsrelay.max_outbound_bytes: "64MiB"\n'
assert anchor in text and addr in text, "examples/echo/app.yaml changed; update scripts/conformance.sh"
extra = ('      wsrelay.compression: permessage-deflate\n'
         '      wsrelay.compression_threshold: "0"\n'
         '      wsrelay.upgrade_rate: "off"\n')
open(path, "w").write(text.replace(anchor, anchor + extra))
PY
}

# Starts the server of pass $1 (plain | deflate) on $2; sets SERVER_PID.
start_server() {
  local pass=$1 addr=$2 deflate=()
  [ "$pass" = deflate ] && deflate=(--compression --compression-threshold 0)
  case "$SERVER" in
    ws-echo) "$BIN/ws-echo" --addr "$addr" "${deflate[@]}" 2>/dev/null & ;;
    relay-echo) "$BIN/relay-echo" --addr "$addr" "${deflate[@]}" 2>/dev/null & ;;
    wsrelay-echo)
      echo_app "$OUTDIR/app" "$addr"
      "$BIN/wsrelay" run "$OUTDIR/app" >/dev/null 2>&1 & ;;
    fastwebsockets|tokio-websockets|tungstenite) "$BIN/bare-echo" --lib "$SERVER" --addr "$addr" 2>/dev/null & ;;
    *) echo "conformance: unknown server $SERVER" >&2; exit 2 ;;
  esac
  SERVER_PID=$!
}

# Runs one pass: a fresh server, kosoku, then the verdict check.
run_pass() {
  local pass=$1 port out expected selection=()
  port=$(free_port)
  out="$OUTDIR/$pass"
  if [ "$pass" = plain ]; then
    selection=(-x '12.*' -x '13.*'); expected=301
  elif [ "$SERVER" = wsrelay-echo ]; then
    for family in 1 2 3 4 5 6 7 9 10; do selection+=(-i "$family.*"); done
    for family in "${DEFLATE_SAMPLE[@]}"; do selection+=(-i "$family"); done
    expected=$((301 + 18 * ${#DEFLATE_SAMPLE[@]}))
  else
    expected=517
  fi
  mkdir -p "$OUTDIR"
  start_server "$pass" "127.0.0.1:$port"
  trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  rm -rf "$out"; mkdir -p "$out"
  timeout 1200 kosoku "${selection[@]}" -p 2 -o "$out" "127.0.0.1:$port" >"$out/kosoku.log" 2>&1 || true
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  trap - EXIT
  echo "conformance: $SERVER $pass"
  check "$out/index.json" "$expected"
}

check() {
python3 - "$1" "$2" "${ALLOWED_NON_STRICT[@]}" <<'PY'
import collections, json, sys
path, expected = sys.argv[1], int(sys.argv[2])
allowed = {a.split(":")[0].strip() for a in sys.argv[3:]}
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
if len(cases) != expected:
    bad.append(f"expected {expected} cases, got {len(cases)}")
for line in bad:
    print("conformance: FAILED", line)
sys.exit(1 if bad else 0)
PY
}

case "$SERVER" in
  ws-echo) passes=(plain deflate) ;;
  wsrelay-echo) passes=(deflate) ;;
  *) passes=(plain) ;;
esac
status=0
for pass in "${passes[@]}"; do
  run_pass "$pass" || status=1
done
exit $status
