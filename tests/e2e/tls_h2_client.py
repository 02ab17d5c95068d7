#!/usr/bin/env python3
"""wss:// with Python `websockets` and WebSockets over HTTP/2 (RFC 8441) with the `h2`
package, against an echo app served with TLS (and h2c on a second listener).

Usage: tls_h2_client.py HOST TLS_PORT CA_FILE [H2C_PORT] [PROXY_PORT]
  TLS_PORT   an echo endpoint at / over TLS (the test certificate for localhost)
  CA_FILE    the CA that signed it (tests/fixtures/tls/ca.pem)
  H2C_PORT   the same app on a cleartext listener with h2c on (optional)
Prints one "PASS name" / "FAIL name: why" line per test and, last,
"RESULT passed=N failed=M". Exit status 1 when a test failed.
"""
import asyncio
import os
import socket
import ssl
import struct
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings
import websockets

from e2e_support import run_tests

HOST, TLS_PORT, CA = sys.argv[1], int(sys.argv[2]), sys.argv[3]
H2C_PORT = int(sys.argv[4]) if len(sys.argv) > 4 else None
T = 10  # seconds: every wait is bounded


def tls_context(alpn):
    ctx = ssl.create_default_context(cafile=CA)
    ctx.set_alpn_protocols(alpn)
    return ctx


async def t_wss_echo():
    url = f"wss://{HOST}:{TLS_PORT}/"
    async with await asyncio.wait_for(
        websockets.connect(url, ssl=tls_context(["http/1.1"]), open_timeout=T), T
    ) as ws:
        for text in ["hello over TLS", "x" * 100_000]:
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), T) == text
        await ws.send(b"\x00\x01\xff")
        assert await asyncio.wait_for(ws.recv(), T) == b"\x00\x01\xff"


async def t_wss_rejects_untrusted_ca():
    ctx = ssl.create_default_context()  # the system CAs do not know the test CA
    try:
        await asyncio.wait_for(websockets.connect(f"wss://{HOST}:{TLS_PORT}/", ssl=ctx), T)
    except ssl.SSLCertVerificationError:
        return
    raise AssertionError("a client without the test CA connected")


# ---- RFC 8441 with the h2 package ----------------------------------------------------------

def ws_frame(opcode, payload):
    """A masked client frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def parse_frame(buf):
    """(opcode, payload, rest) of the first whole unmasked server frame, or None."""
    if len(buf) < 2:
        return None
    opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, at = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, at = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < at + n:
        return None
    return opcode, buf[at:at + n], buf[at + n:]


class H2Client:
    """A blocking HTTP/2 client on one socket, enough for extended CONNECT."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(T)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()
        self.data = {}
        self.headers = {}
        self.ended = set()
        self.remote_settings = {}
        # The server's SETTINGS come first: wait for them (ENABLE_CONNECT_PROTOCOL).
        while h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL not in self.remote_settings:
            self.pump()

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise AssertionError("server closed the HTTP/2 connection")
        for event in self.conn.receive_data(chunk):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                for code, setting in event.changed_settings.items():
                    self.remote_settings[code] = setting.new_value
            elif isinstance(event, h2.events.ResponseReceived):
                self.headers[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.data[event.stream_id] = self.data.get(event.stream_id, b"") + event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                self.ended.add(event.stream_id)
        self.flush()

    def connect_websocket(self, authority, scheme, path="/"):
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, [
            (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", scheme),
            (":path", path), (":authority", authority), ("sec-websocket-version", "13"),
        ])
        self.flush()
        while stream not in self.headers:
            self.pump()
        status = self.headers[stream].get(b":status")
        assert status == b"200", f"extended CONNECT answered {status!r}"
        return stream

    def send(self, stream, opcode, payload):
        data = ws_frame(opcode, payload)
        while data:
            window = min(self.conn.local_flow_control_window(stream),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump()
                continue
            self.conn.send_data(stream, data[:window])
            data = data[window:]
            self.flush()

    def recv(self, stream):
        while True:
            frame = parse_frame(self.data.get(stream, b""))
            if frame:
                opcode, payload, rest = frame
                self.data[stream] = rest
                if opcode in (0x9, 0xA):  # ping, pong
                    continue
                return opcode, payload
            assert stream not in self.ended, "stream ended before a frame"
            self.pump()


def h2_echo(sock, authority, scheme):
    client = H2Client(sock)
    assert client.remote_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1
    streams = [client.connect_websocket(authority, scheme) for _ in range(3)]
    for i, stream in enumerate(streams):
        client.send(stream, 0x1, f"stream {i}".encode())
    for i, stream in enumerate(streams):
        assert client.recv(stream) == (0x1, f"stream {i}".encode())
    # Larger than the initial 64 KiB stream window: both sides' flow control at work.
    big = b"y" * (300 * 1024)
    client.send(streams[0], 0x2, big)
    assert client.recv(streams[0]) == (0x2, big)
    # A close handshake on one stream leaves the others open.
    client.send(streams[1], 0x8, struct.pack("!H", 1000))
    opcode, payload = client.recv(streams[1])
    assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1000
    client.send(streams[2], 0x1, b"still here")
    assert client.recv(streams[2]) == (0x1, b"still here")
    sock.close()


async def t_rfc8441_over_tls():
    def run():
        raw = socket.create_connection((HOST, TLS_PORT), timeout=T)
        sock = tls_context(["h2"]).wrap_socket(raw, server_hostname=HOST)
        assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        h2_echo(sock, f"{HOST}:{TLS_PORT}", "https")
    await asyncio.to_thread(run)


async def t_rfc8441_h2c_prior_knowledge():
    def run():
        sock = socket.create_connection((HOST, H2C_PORT), timeout=T)
        h2_echo(sock, f"{HOST}:{H2C_PORT}", "http")
    await asyncio.to_thread(run)


if __name__ == "__main__":
    tests = [t_wss_echo, t_wss_rejects_untrusted_ca, t_rfc8441_over_tls]
    if H2C_PORT:
        tests.append(t_rfc8441_h2c_prior_knowledge)
    run_tests("tls_h2", tests, 3 * T)
