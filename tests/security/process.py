"""What a test reads of the gunicorn worker from /proc: its memory and its CPU time."""

from __future__ import annotations

import os
import socket
import struct
import time

from tests.webserver import WebServer, _children_of


def worker_pid(site: WebServer) -> int:
    """The one gevent worker of the site's gunicorn."""
    assert site.process is not None
    deadline = time.monotonic() + 10
    while not (children := _children_of(site.process.pid)):
        assert time.monotonic() < deadline, "gunicorn has no worker"
        time.sleep(0.05)
    assert len(children) == 1, children
    return children[0]


def rss_bytes(pid: int) -> int:
    """Resident memory (VmRSS) of a process."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def frame_header(length: int, opcode: int = 0x1, fin: bool = True) -> bytes:
    """A client frame's header for a payload of `length` bytes, mask 0 (XOR with 0: as is)."""
    first = bytes([(0x80 if fin else 0) | opcode])
    if length < 126:
        size = bytes([0x80 | length])
    elif length < 65536:
        size = bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        size = bytes([0x80 | 127]) + struct.pack("!Q", length)
    return first + size + b"\0\0\0\0"


def send_message(sock: socket.socket, payload: bytes, chunk: int = 256 * 1024) -> int:
    """Send one text message (masked with a zero mask, so no per-byte work here); returns
    how much went out before the server closed the connection."""
    sent = 0
    try:
        sock.sendall(frame_header(len(payload)))
        while sent < len(payload):
            sock.sendall(payload[sent : sent + chunk])
            sent += chunk
    except OSError:  # the server closed: what it read was enough to refuse
        pass
    return min(sent, len(payload))
