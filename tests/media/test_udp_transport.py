"""lens.media.udp's transport for the host-candidate sockets, on asyncio's loop and uvloop."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from aioice import stun
from aioice.ice import StunProtocol

from lens.media import udp
from lens.media.config import event_loop_factory
from lens.media.testing import wait_until

LOOPS = ["asyncio", "uvloop"]


class Recorder:
    """A datagram protocol that keeps what it is given."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.lost = asyncio.Event()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append(data)

    def error_received(self, exc: Exception) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


def run(loop_name: str, scenario: Any) -> Any:
    with asyncio.Runner(loop_factory=event_loop_factory(loop_name)) as runner:
        return runner.run(asyncio.wait_for(scenario(), 10))


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_burst_larger_than_a_batch_is_read_in_order_with_kernel_stamps(loop_name: str) -> None:
    count = udp.READ_BATCH * 3 + 5

    async def scenario() -> tuple[list[bytes], list[bytes], list[float | None], float, float]:
        sock, peer = bound_socket(), bound_socket()
        protocol = Recorder()
        transport = udp.UdpTransport(asyncio.get_running_loop(), sock, protocol)
        media: list[bytes] = []
        arrivals: list[float | None] = []
        transport.media = lambda buffer, size, arrival: (
            media.append(bytes(buffer.view[:size])),
            arrivals.append(arrival),
        )
        assert transport.stamp_arrivals()
        before = time.monotonic()
        for number in range(count):  # sent before the loop gets a chance to read one
            first = 0x80 if number % 2 else 0x00  # RTP-like (to media) or not (to protocol)
            peer.sendto(bytes([first]) + number.to_bytes(2, "big"), sock.getsockname())
        await wait_until(lambda: len(media) + len(protocol.datagrams) == count, 5)
        after = time.monotonic()
        transport.close()
        peer.close()
        return media, protocol.datagrams, arrivals, before, after

    media, others, arrivals, before, after = run(loop_name, scenario)
    numbers = [int.from_bytes(d[1:], "big") for d in media]
    assert numbers == list(range(1, count, 2))  # every one, in order
    assert [int.from_bytes(d[1:], "big") for d in others] == list(range(0, count, 2))
    # the kernel's arrival time, on the monotonic clock
    assert all(a is not None and before - 0.05 <= a <= after + 0.05 for a in arrivals)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_without_stamps_media_arrives_unstamped(loop_name: str) -> None:
    async def scenario() -> list[float | None]:
        sock, peer = bound_socket(), bound_socket()
        transport = udp.UdpTransport(asyncio.get_running_loop(), sock, Recorder())
        arrivals: list[float | None] = []
        transport.media = lambda buffer, size, arrival: arrivals.append(arrival)
        peer.sendto(b"\x80\x60rtp", sock.getsockname())
        await wait_until(lambda: arrivals, 5)
        transport.close()
        peer.close()
        return arrivals

    assert run(loop_name, scenario) == [None]


class StunReceiver:
    """What StunProtocol calls on its aioice Connection, recorded."""

    def __init__(self) -> None:
        self.requests: list[stun.Message] = []

    def request_received(self, message: stun.Message, addr: Any, protocol: Any) -> None:
        self.requests.append(message)
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=message.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        protocol.send_stun(response, addr)

    def data_received(self, data: bytes, component: int) -> None:
        raise AssertionError("a STUN message was taken for data")

    def protocol_lost(self, protocol: Any) -> None:
        pass


@pytest.mark.parametrize("loop_name", LOOPS)
def test_stun_still_reaches_aioice_and_its_answer_goes_out(loop_name: str) -> None:
    async def scenario() -> tuple[list[stun.Message], stun.Message, stun.Message]:
        sock, peer = bound_socket(), bound_socket()
        receiver = StunReceiver()
        protocol = StunProtocol(receiver)  # type: ignore[arg-type]
        transport = udp.UdpTransport(asyncio.get_running_loop(), sock, protocol)
        transport.media = lambda buffer, size, arrival: pytest.fail("STUN taken for media")
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        peer.sendto(bytes(request), sock.getsockname())
        peer.setblocking(False)
        answer = await asyncio.get_running_loop().sock_recv(peer, 2048)
        await protocol.close()  # what aioice does at the end: returns once connection_lost ran
        peer.close()
        return receiver.requests, request, stun.parse_message(answer)

    requests, request, answer = run(loop_name, scenario)
    assert [r.transaction_id for r in requests] == [request.transaction_id]
    assert answer.message_class == stun.Class.RESPONSE
    assert answer.transaction_id == request.transaction_id


@pytest.mark.parametrize("loop_name", LOOPS)
def test_close_unregisters_the_reader_and_closes_the_socket(loop_name: str) -> None:
    async def scenario() -> tuple[bool, bool, int, bool]:
        loop = asyncio.get_running_loop()
        sock, peer = bound_socket(), bound_socket()
        protocol = Recorder()
        transport = udp.UdpTransport(loop, sock, protocol)
        fd = sock.fileno()
        transport.close()
        closing = transport.is_closing()
        transport.sendto(b"ignored", peer.getsockname())  # after close: nothing, no error
        # asyncio's says whether it removed one (False: close() already took it off the
        # loop); uvloop's always returns None
        registered = loop.remove_reader(fd)
        await protocol.lost.wait()
        peer.close()
        return closing, registered, sock.fileno(), protocol.lost.is_set()

    closing, registered, fileno, lost = run(loop_name, scenario)
    assert closing
    assert registered is (False if loop_name == "asyncio" else None)
    assert fileno == -1
    assert lost


def test_get_extra_info_gives_what_aioice_asks_for() -> None:
    async def scenario() -> tuple[Any, Any, tuple[str, int]]:
        sock = bound_socket()
        transport = udp.UdpTransport(asyncio.get_running_loop(), sock, Recorder())
        info = transport.get_extra_info("sockname"), transport.get_extra_info("socket")
        transport.close()
        return (*info, sock.getsockname())

    sockname, sock, bound = run("uvloop", scenario)
    assert sockname == bound
    assert isinstance(sock, socket.socket)
