#!/usr/bin/env python3
"""permessage-deflate and subprotocols with Python `websockets` (it offers deflate by default).

Usage: deflate_client.py NAME URL [--subprotocol PROTO]
  NAME  a label for the test names (ws-echo, relay)
  URL   an echo endpoint with permessage-deflate on and a 1 MiB message limit
  --subprotocol PROTO  also check that PROTO is accepted when offered (relay only)
Prints one "PASS name" / "FAIL name: why" line per test and, last,
"RESULT passed=N failed=M". Exit status 1 when a test failed.
"""
import asyncio
import json
import sys

import websockets

from e2e_support import run_tests
from websockets.exceptions import ConnectionClosed

NAME, URL = sys.argv[1], sys.argv[2]
SUBPROTOCOL = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--subprotocol" else None
T = 10  # seconds: every wait is bounded


async def connect(**kw):
    return await asyncio.wait_for(
        websockets.connect(URL, open_timeout=T, close_timeout=T, max_size=None, **kw), T
    )


async def t_negotiated():
    async with await connect() as ws:
        header = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert header.startswith("permessage-deflate"), f"extensions header: {header!r}"
        assert "server_no_context_takeover" in header, header
        assert "client_no_context_takeover" in header, header
        names = [ext.name for ext in ws.protocol.extensions]
        assert names == ["permessage-deflate"], f"extensions in use: {names}"


async def t_json_64k_round_trip():
    rows = [{"id": i, "user": f"user{i}", "online": i % 3 == 0, "tags": ["a", "b"]} for i in range(2000)]
    text = json.dumps(rows)
    while len(text) < 64 * 1024:
        text += " "
    text = text[: 64 * 1024]
    async with await connect() as ws:
        await ws.send(text)
        echo = await asyncio.wait_for(ws.recv(), T)
        assert echo == text, f"echo differs ({len(echo)} vs {len(text)} chars)"


async def t_zip_bomb_closes_1009():
    # 4 MiB of one byte deflates to a few KiB; inflated it is over the 1 MiB limit.
    async with await connect() as ws:
        await ws.send(b"\0" * (4 << 20))
        try:
            await asyncio.wait_for(ws.recv(), T)
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
            assert code == 1009, f"close code {code}"
            return
        raise AssertionError("the server echoed a message over its limit")


async def t_subprotocol():
    async with await connect(subprotocols=["v9.none", SUBPROTOCOL]) as ws:
        assert ws.subprotocol == SUBPROTOCOL, f"subprotocol {ws.subprotocol!r}"
        await ws.send("after the handshake")
        assert await asyncio.wait_for(ws.recv(), T) == "after the handshake"


if __name__ == "__main__":
    tests = [t_negotiated, t_json_64k_round_trip, t_zip_bomb_closes_1009]
    if SUBPROTOCOL:
        tests.append(t_subprotocol)
    run_tests(f"deflate.{NAME}", tests, 3 * T)
