"""WebSockets held by the hundred from one test process: a handshake on a plain socket.

simple-websocket's client starts a thread per socket; these are bare sockets that do the
upgrade and then only what a test asks (send one frame, read the close).
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import ssl
import struct


class RawSocket:
    def __init__(self, sock: socket.socket, status: int) -> None:
        self.sock = sock
        self.status = status
        self.head = ""
        self.buffer = b""

    def send_text(self, text: str) -> None:
        """One masked text frame, written with one call (over TLS: one record if it fits)."""
        payload = text.encode()
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def frame(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload)."""
        first, second = self._read(2)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(n)

    def text(self, timeout: float) -> str:
        """The next text message (pings and pongs skipped)."""
        self.sock.settimeout(timeout)
        while True:
            opcode, payload = self.frame()
            if opcode == 1:
                return payload.decode()
            if opcode == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise Closed(code, payload[2:].decode(errors="replace"))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def open_socket(
    host: str,
    path: str,
    cookie: str = "",
    source: str = "127.0.0.1",
    tls: bool = False,
    headers: dict[str, str] | None = None,
) -> RawSocket:
    """Connect from `source` and ask for the upgrade; the status is in .status, the
    answer's head (status line and headers) in .head."""
    name, port = host.rsplit(":", 1)
    sock = socket.create_connection((name, int(port)), timeout=10, source_address=(source, 0))
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname=name)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        + (f"Cookie: {cookie}\r\n" if cookie else "")
        + "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        + "\r\n"
    )
    sock.sendall(request.encode())
    raw = RawSocket(sock, 0)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    raw.status = int(head.split(b" ", 2)[1])
    raw.head = head.decode("latin-1")
    return raw
