"""What the event loop and the datagram transport cost per packet, without the rest of Lens.

    .venv/bin/python bench/wakeup.py                  # sessions 1, 10, 20, 40
    .venv/bin/python bench/wakeup.py --sessions 1,20 --window 10

A sender process plays, per session, what a phone sends the sidecar (30 video frames a
second of 4 packets of 1,100 bytes, 50 Opus packets of 120 bytes); the receiver, like the
sidecar, forwards each datagram at once to another socket (the technician) and runs a
20 Hz timer per session (transport-cc feedback). It is measured in CPU time (this process
only, so other work on the machine skews it little) per datagram, for:

- asyncio:     asyncio's loop and its own datagram transport (the sidecar before lens.media.udp)
- udp-asyncio: asyncio's loop, lens.media.udp.UdpTransport (LENS_MEDIA_LOOP=asyncio)
- udp-uvloop:  uvloop, lens.media.udp.UdpTransport (the sidecar's default)
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lens.media.config import event_loop_factory  # noqa: E402
from lens.media.udp import UdpTransport  # noqa: E402

VARIANTS = ("asyncio", "udp-asyncio", "udp-uvloop")
VIDEO = b"\x90" + bytes(1099)  # first byte 128-191: RTP, as the sidecar sees SRTP
AUDIO = b"\x80" + bytes(119)


def send(port: int, sessions: int, seconds: float) -> None:
    """Per session, every 1/30 s a burst of 4 video packets; every 20 ms an audio packet."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
    target = ("127.0.0.1", port)
    start = time.monotonic()
    next_video = next_audio = start
    while (now := time.monotonic()) - start < seconds:
        if now >= next_video:
            for _ in range(sessions * 4):
                sock.sendto(VIDEO, target)
            next_video += 1 / 30
        if now >= next_audio:
            for _ in range(sessions):
                sock.sendto(AUDIO, target)
            next_audio += 0.02
        time.sleep(max(0.0, min(next_video, next_audio) - time.monotonic()))


class Forward(asyncio.DatagramProtocol):
    def __init__(self, out: socket.socket, target: tuple[str, int]) -> None:
        self.out, self.target, self.count = out, target, 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.count += 1
        self.out.sendto(data, self.target)


async def receive(
    variant: str, sock: socket.socket, sessions: int, window: float
) -> tuple[float, float, float]:
    loop = asyncio.get_running_loop()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))  # the technician: never read, the kernel drops what overflows
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setblocking(False)
    protocol = Forward(out, sink.getsockname())
    if variant == "asyncio":
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
    else:
        transport = UdpTransport(loop, sock, protocol)
        transport.stamp_arrivals()
        transport.media = lambda buffer, size, arrival: protocol.datagram_received(
            bytes(buffer.view[:size]), None
        )

    def feedback() -> None:  # a session's transport-cc timer
        loop.call_later(0.05, feedback)

    for _ in range(sessions):
        loop.call_later(0.05, feedback)
    await asyncio.sleep(1.0)  # warm up
    count0, cpu0 = protocol.count, time.process_time()
    await asyncio.sleep(window)
    count, cpu = protocol.count - count0, time.process_time() - cpu0
    transport.close()
    return cpu / max(count, 1) * 1e6, count / window, cpu / window * 100


def measure(variant: str, sessions: int, window: float) -> tuple[float, float, float]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sender = multiprocessing.Process(
        target=send, args=(sock.getsockname()[1], sessions, window + 2.0)
    )
    sender.start()
    name = "uvloop" if variant.endswith("uvloop") else "asyncio"
    with asyncio.Runner(loop_factory=event_loop_factory(name)) as runner:
        result = runner.run(receive(variant, sock, sessions, window))
    sender.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,10,20,40")
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2, help="variants alternate per round")
    args = parser.parse_args()
    print("| sessions | variant | CPU µs/datagram | datagrams/s | CPU % core | load |")
    print("|---|---|---|---|---|---|")
    for sessions in (int(s) for s in args.sessions.split(",")):
        for _ in range(args.rounds):
            for variant in VARIANTS:
                per, rate, cpu = measure(variant, sessions, args.window)
                load = Path("/proc/loadavg").read_text().split()[0]
                print(
                    f"| {sessions} | {variant} | {per:.1f} | {rate:.0f} | {cpu:.1f} | {load} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
