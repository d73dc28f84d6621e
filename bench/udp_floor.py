"""The floor under a Python relay: what its socket I/O alone costs, without any media work.

    .venv/bin/python bench/udp_floor.py                        # 1 and 10 sessions, 15 s each
    .venv/bin/python bench/udp_floor.py --sessions 1,10,40 --seconds 20

A relay process on uvloop (as the sidecar) holds, per session, one socket it reads and one
it sends from; for every datagram it does what the sidecar's transport does and nothing
else: `recvmsg_into` one reused buffer (up to 16 per wakeup) and `sendto` the same bytes on.
A sender process plays each session's phone like bench/relay.py's clip: 30 frames a second
of 4 video packets of 1100 bytes, and 40 audio packets of 120 bytes a second, each packet
`--spacing` apart (aiortc's phone sends a frame's packets one by one, so the sidecar wakes
for most of them); a third process blocks in `recv` on the sink socket, so each send
wakes a reader as the technician's peer is woken. The relay's CPU time comes from its CPU
clock (ns) over the window after a 2 s warm-up.

Compare its % of a core per session with bench/relay.py's Lens and Janus at the same
levels: what the sidecar spends above this floor is SRTP and the Python media path, not
the system calls and wakeups that any relay on these sockets pays.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import socket
import time
from typing import Any

from relay import proc_cpu_seconds  # (bench/ is this script's folder: on sys.path)

VIDEO_PACKETS, VIDEO_SIZE, AUDIO_PER_SECOND, AUDIO_SIZE, FPS = 4, 1100, 40, 120, 30
READ_BATCH = 16


def interface_address() -> str:
    """The machine's own address (no loopback: as the sidecar's host candidates)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # no packet is sent: the route picks the address
        return probe.getsockname()[0]
    finally:
        probe.close()


def forward(inbound: socket.socket, outbound: socket.socket, into: list, view: memoryview, sink):
    """One wakeup: every datagram waiting (up to a batch) read and sent on, as it is."""
    for _ in range(READ_BATCH):
        try:
            size, _, _, _ = inbound.recvmsg_into(into, 0)
        except (BlockingIOError, InterruptedError):
            return
        outbound.sendto(view[:size], sink)


def relay(host: str, sessions: int, sink: tuple[str, int], ports: Any) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        listening = []
        for _ in range(sessions):
            inbound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            inbound.bind((host, 0))
            inbound.setblocking(False)
            outbound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            outbound.bind((host, 0))
            outbound.setblocking(False)
            buffer = bytearray(65536)
            ready = functools.partial(
                forward, inbound, outbound, [buffer], memoryview(buffer), sink
            )
            loop.add_reader(inbound.fileno(), ready)
            listening.append(inbound.getsockname()[1])
        ports.put(listening)
        await asyncio.Event().wait()

    uvloop.run(main())


def drain(sock: socket.socket) -> None:
    while True:
        sock.recv(2048)


def measure(host: str, sessions: int, seconds: float, spacing: float) -> float:
    """The relay's CPU in % of one core over the window."""
    context = multiprocessing.get_context("fork")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((host, 0))
    reader = context.Process(target=drain, args=(sink,), daemon=True)
    reader.start()
    ports_queue = context.Queue()
    server = context.Process(
        target=relay, args=(host, sessions, sink.getsockname(), ports_queue), daemon=True
    )
    server.start()
    ports = ports_queue.get(timeout=30)
    source = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    video, audio = bytes(VIDEO_SIZE), bytes(AUDIO_SIZE)
    audio_every = FPS / AUDIO_PER_SECOND  # frames between audio packets

    try:
        start = time.monotonic()
        frame, audio_due = 0, 0.0
        cpu0 = t0 = None
        while True:
            due = start + frame / FPS
            while (now := time.monotonic()) < due:
                time.sleep(min(0.002, due - now))
            if cpu0 is None and now - start >= 2.0:
                cpu0, t0 = proc_cpu_seconds(server.pid), now
            if t0 is not None and now - t0 >= seconds:
                break
            audio_now = frame >= audio_due
            for port in ports:
                for _ in range(VIDEO_PACKETS):
                    source.sendto(video, (host, port))
                    if spacing:
                        time.sleep(spacing)
                if audio_now:
                    source.sendto(audio, (host, port))
            while frame >= audio_due:
                audio_due += audio_every
            frame += 1
        return 100 * (proc_cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
    finally:
        server.kill()
        reader.kill()
        server.join()
        reader.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,10")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--spacing", type=float, default=0.0001, help="seconds between a frame's packets"
    )
    args = parser.parse_args()
    host = interface_address()
    print(
        f"relay floor: recvmsg_into + sendto per datagram on uvloop, {host}, "
        f"{VIDEO_PACKETS * FPS + AUDIO_PER_SECOND} datagrams/s per session, "
        f"spacing {args.spacing * 1e6:.0f} µs"
    )
    for sessions in (int(x) for x in args.sessions.split(",")):
        total = measure(host, sessions, args.seconds, args.spacing)
        per_session = total / sessions
        print(f"  {sessions:3} sessions: {total:6.2f} % of a core, {per_session:.3f} % per session")


if __name__ == "__main__":
    main()
