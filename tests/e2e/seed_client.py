#!/usr/bin/env python3
"""Drives examples/seed (the seed document's snippets) as a third-party WebSocket client.

Usage: seed_client.py BASE_URL   (e.g. ws://127.0.0.1:PORT)
Prints one "PASS name" / "FAIL name: why" line per test and, last,
"RESULT passed=N failed=M". Exit status 1 when a test failed.
"""
import asyncio
import json
import sys

import websockets

from e2e_support import run_tests
from websockets.exceptions import ConnectionClosed, InvalidStatus

BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "ws://127.0.0.1:8081"
T = 5  # seconds: every wait is bounded


def url(user="u1"):
    return f"{BASE}/ws/connect?user_id={user}"


async def connect(user="u1", origin=None):
    kw = {"open_timeout": T, "close_timeout": T}
    if origin is not None:
        kw["origin"] = origin
    return await asyncio.wait_for(websockets.connect(url(user), **kw), T)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), T)


async def recv_json(ws):
    msg = await recv(ws)
    assert isinstance(msg, str), f"expected a text frame, got {msg!r}"
    return json.loads(msg)


async def send(ws, action, **extra):
    await ws.send(json.dumps({"action": action, **extra}))


async def t_handshake():
    ws = await connect()
    try:
        assert ws.response.status_code == 101, ws.response.status_code
        assert ws.response.headers.get("X-WS-Relay") is None, "X-WS-Relay leaked to the client"
    finally:
        await ws.close()


async def t_echo_text():
    async with await connect() as ws:
        await send(ws, "echo")
        assert await recv_json(ws) == {"event": "update", "value": 42}
        # The receive loop keeps going: a second message gets a second reaction.
        await send(ws, "echo")
        assert await recv_json(ws) == {"event": "update", "value": 42}


async def t_binary():
    async with await connect() as ws:
        await send(ws, "binary")
        msg = await recv(ws)
        assert isinstance(msg, bytes), f"expected a binary frame, got {msg!r}"
        assert msg == bytes([0, 1, 2, 255]), msg


async def t_client_binary_frame():
    # A binary frame whose bytes are the JSON: the handler json.decode()s data.data.
    async with await connect() as ws:
        await ws.send(json.dumps({"action": "echo"}).encode())
        assert await recv_json(ws) == {"event": "update", "value": 42}


async def t_unknown_ignored():
    async with await connect() as ws:
        await ws.send("not json")
        await send(ws, "nope")
        await send(ws, "echo")
        assert await recv_json(ws) == {"event": "update", "value": 42}


async def t_close():
    ws = await connect()
    await send(ws, "close")
    try:
        msg = await recv(ws)
        raise AssertionError(f"expected a close, got a frame {msg!r}")
    except ConnectionClosed:
        pass
    await asyncio.wait_for(ws.wait_closed(), T)
    assert ws.close_code == 1000, ws.close_code
    assert ws.close_reason == "Sessão encerrada", repr(ws.close_reason)


async def t_broadcast_self():
    # One handler process per connection: its broadcast reaches its one client.
    async with await connect() as ws:
        await send(ws, "broadcast", text="olá")
        assert await recv_json(ws) == {"event": "broadcast", "text": "olá"}


async def t_broadcast_many():
    clients = [await connect(f"b{i}") for i in range(3)]
    try:
        for ws in clients:
            await send(ws, "hub")
            assert await recv_json(ws) == {"event": "hub"}
        await send(clients[1], "broadcast", text="para todos")
        for ws in clients:
            assert await recv_json(ws) == {"event": "broadcast", "text": "para todos"}
        # A client that leaves no longer gets broadcasts; the others still do.
        await clients[0].close()
        await send(clients[2], "broadcast", text="segunda")
        for ws in clients[1:]:
            assert await recv_json(ws) == {"event": "broadcast", "text": "segunda"}
    finally:
        for ws in clients:
            await ws.close()


async def t_transfer():
    async with await connect() as ws:
        await send(ws, "transfer")
        assert await recv_json(ws) == {"event": "transferred"}
        payload = json.dumps({"action": "echo"})
        await ws.send(payload)
        # Frames now go to the new process (app.ws:other), which echoes the raw text.
        assert await recv_json(ws) == {"event": "echo", "data": payload}


async def t_watch():
    async with await connect() as ws:
        await send(ws, "watch")
        # The watcher process monitors the connection and sends to it directly.
        assert await recv(ws) == "hello"
        await send(ws, "echo")
        assert await recv_json(ws) == {"event": "update", "value": 42}


async def t_origin_allowed():
    ws = await connect(origin="https://app.example.com")
    assert ws.response.status_code == 101
    await ws.close()


async def t_origin_refused():
    try:
        ws = await connect(origin="https://evil.example.com")
    except InvalidStatus as e:
        assert e.response.status_code == 403, e.response.status_code
        return
    await ws.close()
    raise AssertionError("a foreign Origin was upgraded")


TESTS = [
    t_handshake,
    t_echo_text,
    t_binary,
    t_client_binary_frame,
    t_unknown_ignored,
    t_close,
    t_broadcast_self,
    t_broadcast_many,
    t_transfer,
    t_watch,
    t_origin_allowed,
    t_origin_refused,
]


if __name__ == "__main__":
    run_tests("seed", TESTS, 4 * T)
