#!/usr/bin/env python3
"""Drives examples/wippy-chat as a third-party WebSocket client: JWT-authenticated
connections (tokens signed here with HS256 from the standard library), presence
announcements from the pg scope's events, chat messages broadcast over pg, and refused tokens.

Usage: wippy_chat_client.py BASE_URL SECRET   (e.g. ws://127.0.0.1:PORT s3cret)
Prints one "PASS name" / "FAIL name: why" line per test and, last,
"RESULT passed=N failed=M". Exit status 1 when a test failed.
"""
import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time

import websockets

from e2e_support import run_tests
from websockets.exceptions import InvalidStatus

BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "ws://127.0.0.1:9007"
SECRET = sys.argv[2] if len(sys.argv) > 2 else "e2e-secret"
T = 5  # seconds: every wait is bounded


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(user, room, secret=SECRET, exp_in=300, alg="HS256"):
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    claims = {"sub": user, "room": room}
    if exp_in is not None:
        claims["exp"] = int(time.time()) + exp_in
    body = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{body}".encode()
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(sig)}"


async def connect(tok):
    url = f"{BASE}/ws?token={tok}" if tok is not None else f"{BASE}/ws"
    return await asyncio.wait_for(
        websockets.connect(url, open_timeout=T, close_timeout=T), T
    )


async def recv_json(ws):
    msg = await asyncio.wait_for(ws.recv(), T)
    assert isinstance(msg, str), f"expected a text frame, got {msg!r}"
    return json.loads(msg)


async def expect(ws, **want):
    """The next event, which must have the fields of `want`."""
    ev = await recv_json(ws)
    for key, value in want.items():
        assert ev.get(key) == value, f"expected {want}, got {ev}"
    return ev


async def t_two_users_chat_with_presence():
    room = "lobby"
    alice = await connect(token("alice", room))
    try:
        await expect(alice, event="join", user="alice", room=room, count=1)
        bob = await connect(token("bob", room))
        try:
            for ws in (alice, bob):
                await expect(ws, event="join", user="bob", count=2)
            await alice.send(json.dumps({"text": "hi bob"}))
            for ws in (alice, bob):
                await expect(ws, event="message", user="alice", text="hi bob", room=room)
            await bob.send(json.dumps({"text": "hello alice"}))
            for ws in (alice, bob):
                await expect(ws, event="message", user="bob", text="hello alice")
        finally:
            await bob.close()
        # Bob's connection ended: the scope's leave event becomes an announcement.
        await expect(alice, event="leave", user="bob", count=1)
    finally:
        await alice.close()


async def t_rooms_are_separate():
    a = await connect(token("ann", "garden"))
    b = await connect(token("ben", "attic"))
    try:
        await expect(a, event="join", user="ann", count=1)
        await expect(b, event="join", user="ben", count=1)
        await a.send(json.dumps({"text": "only the garden"}))
        await expect(a, event="message", text="only the garden")
        try:
            got = await asyncio.wait_for(b.recv(), 0.3)
            raise AssertionError(f"the other room heard {got!r}")
        except asyncio.TimeoutError:
            pass
    finally:
        await a.close()
        await b.close()


async def refused(tok):
    try:
        ws = await connect(tok)
    except InvalidStatus as e:
        return e.response.status_code
    await ws.close()
    raise AssertionError("the connection was upgraded")


async def t_bad_tokens_are_refused_with_401():
    good = token("mallory", "lobby")
    head, body, sig = good.split(".")
    cases = {
        "missing": None,
        "wrong secret": token("mallory", "lobby", secret="not-the-secret"),
        "tampered claims": f"{head}.{b64url(json.dumps({'sub': 'admin', 'room': 'lobby', 'exp': int(time.time()) + 60}).encode())}.{sig}",
        "expired": token("mallory", "lobby", exp_in=-120),
        "no exp": token("mallory", "lobby", exp_in=None),
        "garbage": "not.a.token",
    }
    for name, tok in cases.items():
        status = await refused(tok)
        assert status == 401, f"{name}: got {status}"


TESTS = [
    t_two_users_chat_with_presence,
    t_rooms_are_separate,
    t_bad_tokens_are_refused_with_401,
]


if __name__ == "__main__":
    run_tests("wippy_chat", TESTS, 4 * T)
