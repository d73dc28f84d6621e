"""lens.media.srtp (libsrtp on reused buffers) and the sidecar's SRTP send and receive paths."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import time
import types
from typing import Any

import pylibsrtp
import pytest
from aioice.ice import StunProtocol
from aiortc.rtcdtlstransport import State as DtlsState
from hypothesis import given, settings
from hypothesis import strategies as st

from lens.media import forwarder, native, passthrough, udp
from lens.media.config import event_loop_factory
from lens.media.forwarder import RtpView
from lens.media.relay import ForwardingStats
from lens.media.srtp import PACKET_LIMIT, FastSrtp, PacketBuffer
from lens.media.testing import wait_until

PROFILES = [
    (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
]


def session(key: bytes, profile: int, outbound: bool) -> pylibsrtp.Session:
    """A session as aiortc makes them (any SSRC, repeated sends allowed)."""
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    policy = pylibsrtp.Policy(key=key, ssrc_type=kind, srtp_profile=profile)
    policy.allow_repeat_tx = True
    return pylibsrtp.Session(policy)


def rtp(seq: int, size: int = 1162, ssrc: int = 1234) -> bytes:
    payload = bytes((seq + i) & 0xFF for i in range(size - 12))
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, ssrc) + payload


def rtcp(ssrc: int = 1234) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)  # an empty receiver report


def in_buffer(packet: bytes, size: int = PACKET_LIMIT) -> PacketBuffer:
    buffer = PacketBuffer(size)
    buffer.data[: len(packet)] = packet
    return buffer


@pytest.mark.parametrize(("profile", "key_size"), PROFILES)
def test_fast_protect_is_read_by_pylibsrtp_and_the_other_way_round(
    profile: int, key_size: int
) -> None:
    key = os.urandom(key_size)
    fast_tx = FastSrtp(session(key, profile, outbound=True))
    plain_rx = session(key, profile, outbound=False)
    plain_tx = session(key, profile, outbound=True)
    fast_rx = FastSrtp(session(key, profile, outbound=False))
    for seq in range(5):
        packet = rtp(seq)
        protected = bytes(fast_tx.protect(packet))
        assert protected != packet and len(protected) > len(packet)
        assert plain_rx.unprotect(protected) == packet
        protected = plain_tx.protect(packet)
        buffer = in_buffer(protected)
        assert bytes(buffer.view[: fast_rx.unprotect(buffer, len(protected))]) == packet
    # RTCP both ways
    assert plain_rx.unprotect_rtcp(bytes(fast_tx.protect_rtcp(rtcp()))) == rtcp()
    protected = plain_tx.protect_rtcp(rtcp())
    buffer = in_buffer(protected)
    assert bytes(buffer.view[: fast_rx.unprotect_rtcp(buffer, len(protected))]) == rtcp()


def test_fast_unprotect_gives_the_packet_back_in_place() -> None:
    key = os.urandom(30)
    plain_tx = session(key, PROFILES[0][0], outbound=True)
    fast_rx = FastSrtp(session(key, PROFILES[0][0], outbound=False))
    packet = rtp(7)
    protected = plain_tx.protect(packet)
    buffer = in_buffer(protected, udp.MAX_DATAGRAM)
    size = fast_rx.unprotect(buffer, len(protected))
    assert bytes(buffer.view[:size]) == packet


def test_a_tampered_packet_and_a_replay_are_refused_as_by_pylibsrtp() -> None:
    key = os.urandom(30)
    plain_tx = session(key, PROFILES[0][0], outbound=True)
    fast_rx = FastSrtp(session(key, PROFILES[0][0], outbound=False))
    protected = plain_tx.protect(rtp(1))
    tampered = bytearray(protected)
    tampered[40] ^= 1
    with pytest.raises(pylibsrtp.Error, match="authentication failure"):
        fast_rx.unprotect(in_buffer(bytes(tampered)), len(tampered))
    assert fast_rx.unprotect(in_buffer(protected), len(protected)) == len(rtp(1))
    with pytest.raises(pylibsrtp.Error, match="replay check failed"):
        fast_rx.unprotect(in_buffer(protected), len(protected))


def test_a_packet_too_long_is_refused_and_nothing_is_written() -> None:
    fast_tx = FastSrtp(session(os.urandom(30), PROFILES[0][0], outbound=True))
    largest = PACKET_LIMIT - pylibsrtp.SRTP_MAX_TRAILER_LEN
    assert len(fast_tx.protect(rtp(1, largest))) == largest + 10  # the 80-bit tag
    send = fast_tx._send
    send.data[:] = b"\xaa" * PACKET_LIMIT
    with pytest.raises(ValueError, match="packet is too long"):
        fast_tx.protect(rtp(2, largest + 1))
    with pytest.raises(ValueError, match="packet is too long"):
        fast_tx.protect_rtcp(b"\x80\xc9" + b"\x00" * (PACKET_LIMIT - 2))
    assert send.data == b"\xaa" * PACKET_LIMIT and len(send.data) == PACKET_LIMIT
    # and pylibsrtp draws the line at the same place
    with pytest.raises(ValueError, match="packet is too long"):
        session(os.urandom(30), PROFILES[0][0], outbound=True).protect(rtp(2, largest + 1))
    small = PacketBuffer(64)
    with pytest.raises(ValueError, match="packet is too long"):
        fast_tx.unprotect(small, 65)


# ----- the receive path: UdpTransport → InlineMediaQueue --------------------------------


class Lean:
    """LeanReceive's place: keeps what it is handed."""

    def __init__(self) -> None:
        self.packets: list[Any] = []

    def handle(self, data: Any, arrival: float) -> bool:
        self.packets.append(data)
        return True


def connected_dtls(rx: pylibsrtp.Session) -> Any:
    async def handle_rtcp(data: bytes) -> None:
        dtls.rtcp.append(data)

    dtls = types.SimpleNamespace(
        _rx_srtp=rx,
        _state=DtlsState.CONNECTED,
        _RTCDtlsTransport__rx_bytes=0,
        _RTCDtlsTransport__rx_packets=0,
        _handle_rtcp_data=handle_rtcp,
        rtcp=[],
    )
    return dtls


class Recorder:
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        raise AssertionError("media taken for STUN/DTLS")

    def error_received(self, exc: Exception) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class Keeper(Recorder):
    """aioice's StunProtocol's place: keeps the STUN/DTLS datagrams it is given."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, Any]] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append((data, addr))


@pytest.mark.parametrize(
    ("loop_name", "native_step", "stamped"),
    [
        ("asyncio", False, False),
        ("uvloop", False, True),
        ("asyncio", True, False),
        ("uvloop", True, True),
    ],
)
def test_what_the_handlers_keep_survives_the_next_datagram(
    loop_name: str, native_step: bool, stamped: bool
) -> None:
    """The same datagrams, in the same order, to the same places, on either receive step
    (native: read, stamped and unprotected in C; or Python's)."""
    key = os.urandom(30)
    phone = session(key, PROFILES[0][0], outbound=True)
    packets = [rtp(seq, 200 + seq) for seq in range(4)]
    datagrams = [phone.protect(p) for p in packets]
    datagrams.insert(2, datagrams[1])  # a replay
    tampered = bytearray(phone.protect(rtp(9)))
    tampered[-1] ^= 1
    datagrams.insert(3, bytes(tampered))
    datagrams.append(phone.protect_rtcp(rtcp()))
    stun = b"\x00\x01\x00\x00" + bytes(16)  # (first byte 0-3: STUN, RFC 7983)
    datagrams.insert(1, stun)

    async def scenario() -> tuple[Lean, Any, Any, Keeper, Any]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        protocol = Keeper()
        transport = udp.UdpTransport(asyncio.get_running_loop(), sock, protocol)
        if stamped:
            assert transport.stamp_arrivals()
        dtls = connected_dtls(session(key, PROFILES[0][0], outbound=False))
        queue = passthrough.InlineMediaQueue(dtls)
        lean = queue.lean = Lean()  # type: ignore[assignment]
        transport.media = queue.put_received
        if native_step:
            assert udp.NATIVE is not None
            transport.native_sink = queue
        for datagram in datagrams:
            peer.sendto(datagram, sock.getsockname())
        await wait_until(lambda: dtls.rtcp, 5)
        transport.close()
        address = peer.getsockname()
        peer.close()
        return lean, dtls, queue, protocol, address

    lean, dtls, queue, protocol, address = run(loop_name, scenario)
    # in order, the replay and the tampered one dropped, each its own bytes
    assert lean.packets == packets
    assert all(type(p) is bytes for p in lean.packets)
    assert dtls.rtcp == [rtcp()]
    assert protocol.datagrams == [(stun, address)]
    media = [d for d in datagrams if d != stun]
    assert queue.inline == len(media)
    assert queue.kernel_stamped == (len(media) if stamped else 0)
    assert dtls._RTCDtlsTransport__rx_packets == len(media)
    assert dtls._RTCDtlsTransport__rx_bytes == sum(len(d) for d in media)


def test_the_native_receive_step_leaves_datagrams_in_the_buffer_until_dtls_is_up() -> None:
    """Before the leg decrypts inline (native_context 0), SRTP is queued as bytes with its
    stamp, as on the Python step; and the native step gives IPv4 and IPv6 senders'
    addresses as the socket module does."""
    module = native.load()
    buffer = PacketBuffer(udp.MAX_DATAGRAM)
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        if family == socket.AF_INET6 and not socket.has_ipv6:
            continue
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, udp.SO_TIMESTAMPNS, 1)
        peer = socket.socket(family, socket.SOCK_DGRAM)
        peer.bind((host, 0))
        try:
            assert module.receive(sock.fileno(), buffer.data, True, 0, 0, 0) is None  # nothing
            peer.sendto(rtp(3), sock.getsockname())
            result = None
            while result is None:
                result = module.receive(sock.fileno(), buffer.data, True, 0, 0, 0)
            status, size, arrival, sender = result
            assert (status, size, sender) == (0, len(rtp(3)), peer.getsockname())
            assert bytes(buffer.view[:size]) == rtp(3)
            assert abs(arrival - time.time()) < 5
            with pytest.raises(ValueError, match="too small"):
                module.receive(sock.fileno(), bytearray(100), False, 0, 0, 0)
        finally:
            sock.close()
            peer.close()
    dtls = connected_dtls(None)  # type: ignore[arg-type]
    queue = passthrough.InlineMediaQueue(dtls)
    assert queue.native_context() == 0


def test_datagrams_that_come_as_bytes_take_the_same_path() -> None:
    key = os.urandom(30)
    phone = session(key, PROFILES[0][0], outbound=True)
    dtls = connected_dtls(session(key, PROFILES[0][0], outbound=False))
    queue = passthrough.InlineMediaQueue(dtls)
    lean = queue.lean = Lean()  # type: ignore[assignment]
    first = phone.protect(rtp(1))
    queue.put_datagram(first, None)
    queue.put_datagram(first, None)  # replay: dropped
    queue.put_datagram(b"\x80" + bytes(PACKET_LIMIT), None)  # too long: dropped, logged
    queue.put_datagram(phone.protect(rtp(2)), None)
    assert lean.packets == [rtp(1), rtp(2)]
    assert queue.empty()


def test_before_dtls_is_up_datagrams_are_queued_as_bytes() -> None:
    dtls = connected_dtls(None)  # type: ignore[arg-type]
    queue = passthrough.InlineMediaQueue(dtls)
    buffer = in_buffer(rtp(3), udp.MAX_DATAGRAM)
    queue.put_received(buffer, len(rtp(3)), 12.5)
    buffer.data[:20] = bytes(20)  # the next datagram
    assert queue.get_nowait() == (rtp(3), 1)
    assert queue.last_arrival == 12.5


def run(loop_name: str, scenario: Any) -> Any:
    with asyncio.Runner(loop_factory=event_loop_factory(loop_name)) as runner:
        return runner.run(asyncio.wait_for(scenario(), 10))


# ----- the send path: SendPath ------------------------------------------------------


class Wire:
    """A pair's transport: keeps a copy of what it is given (as a socket would)."""

    def __init__(self, sends_at_once: bool) -> None:
        self.sends_at_once = sends_at_once
        self.sent: list[tuple[Any, Any]] = []

    def sendto(self, data: Any, addr: Any) -> None:
        self.sent.append((type(data), bytes(data), addr))  # type: ignore[arg-type]


def pair_on(transport: Any, addr: tuple[str, int]) -> Any:
    protocol = StunProtocol(None)  # type: ignore[arg-type]
    protocol.transport = transport
    return types.SimpleNamespace(protocol=protocol, remote_addr=addr)


def sending_dtls(tx: pylibsrtp.Session, nominated: dict[int, Any]) -> Any:
    connection = types.SimpleNamespace(_nominated=nominated)
    return types.SimpleNamespace(
        _tx_srtp=tx,
        transport=types.SimpleNamespace(_connection=connection),
        _RTCDtlsTransport__tx_bytes=0,
        _RTCDtlsTransport__tx_packets=0,
    )


def test_a_new_nominated_pair_takes_the_next_packet_and_turn_gets_bytes() -> None:
    key = os.urandom(30)
    technician = session(key, PROFILES[0][0], outbound=False)
    host, other, turn = Wire(True), Wire(True), Wire(False)
    nominated: dict[int, Any] = {}
    dtls = sending_dtls(session(key, PROFILES[0][0], outbound=True), nominated)

    async def scenario() -> None:  # (aioice's StunProtocol wants a running loop)
        path = passthrough.send_path(dtls)
        assert passthrough.send_path(dtls) is path  # one per leg
        with pytest.raises(ConnectionError):
            path.send(rtp(0))
        nominated[1] = pair_on(host, ("10.0.0.1", 5000))
        path.send(rtp(1))
        nominated[1] = pair_on(other, ("10.0.0.2", 6000))  # e.g. an ICE restart
        path.send(rtp(2))
        path.send(rtcp(), rtcp=True)
        nominated[1] = pair_on(turn, ("10.0.0.3", 7000))
        passthrough._send_datagram(dtls, rtp(3))  # RTCP's and retransmissions' way

    run("asyncio", scenario)

    assert [(kind, addr) for kind, _, addr in host.sent] == [(memoryview, ("10.0.0.1", 5000))]
    assert [addr for _, _, addr in other.sent] == [("10.0.0.2", 6000)] * 2
    assert [(kind, addr) for kind, _, addr in turn.sent] == [(bytes, ("10.0.0.3", 7000))]
    assert technician.unprotect(host.sent[0][1]) == rtp(1)
    assert technician.unprotect(other.sent[0][1]) == rtp(2)
    assert technician.unprotect_rtcp(other.sent[1][1]) == rtcp()
    assert technician.unprotect(turn.sent[0][1]) == rtp(3)
    everything = host.sent + other.sent + turn.sent
    assert dtls._RTCDtlsTransport__tx_packets == 4
    assert dtls._RTCDtlsTransport__tx_bytes == sum(len(data) for _, data, _ in everything)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_sends_leave_a_udp_transport_from_the_buffer_and_decrypt(loop_name: str) -> None:
    key = os.urandom(28)
    profile = PROFILES[1][0]

    async def scenario() -> list[bytes]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        protocol = StunProtocol(None)  # type: ignore[arg-type]
        transport = udp.UdpTransport(asyncio.get_running_loop(), sock, protocol)
        pair = types.SimpleNamespace(protocol=protocol, remote_addr=peer.getsockname())
        dtls = sending_dtls(session(key, profile, outbound=True), {1: pair})
        for seq in range(3):
            passthrough.send_path(dtls).send(rtp(seq))
        loop = asyncio.get_running_loop()
        received = [await loop.sock_recv(peer, 2048) for _ in range(3)]
        assert transport.send_dropped == 0
        transport.close()
        peer.close()
        return received

    technician = session(key, profile, outbound=False)
    assert [technician.unprotect(d) for d in run(loop_name, scenario)] == [rtp(s) for s in range(3)]


def test_a_forwarded_packet_follows_a_new_nominated_pair_and_turn_gets_bytes() -> None:
    """``PacketSender.send`` sends on the pair its SendPath keeps without a call to it: a
    new pair (and a transport that may keep the data) must still take the next packet."""
    key = os.urandom(30)
    technician = session(key, PROFILES[0][0], outbound=False)
    host, other, turn = Wire(True), Wire(True), Wire(False)
    nominated: dict[int, Any] = {}
    dtls = sending_dtls(session(key, PROFILES[0][0], outbound=True), nominated)
    dtls._state = DtlsState.CONNECTED
    sender = types.SimpleNamespace(
        transport=dtls,
        _ssrc=1234,
        _RTCRtpSender__started=True,
        _RTCRtpSender__mid=None,
        _RTCRtpSender__rtp_header_extensions_map=types.SimpleNamespace(
            _HeaderExtensionsMap__ids=types.SimpleNamespace(mid=None)
        ),
        _RTCRtpSender__octet_count=0,
        _RTCRtpSender__packet_count=0,
    )
    packets = [RtpView(96, 0, seq, 3000, 1234, bytes(1000)) for seq in range(5)]

    async def scenario() -> list[bool]:  # (aioice's StunProtocol wants a running loop)
        out = passthrough.PacketSender(sender)  # type: ignore[arg-type]
        nominated[1] = pair_on(host, ("10.0.0.1", 5000))
        sent = [out.send(packets[0]), out.send(packets[1])]
        nominated[1] = pair_on(other, ("10.0.0.2", 6000))  # e.g. an ICE restart
        sent.append(out.send(packets[2]))
        nominated[1] = pair_on(turn, ("10.0.0.3", 7000))
        sent.append(out.send(packets[3]))
        del nominated[1]  # no pair: not sent, nothing counted
        sent.append(out.send(packets[4]))
        return sent

    assert run("asyncio", scenario) == [True, True, True, True, False]
    assert [(kind, addr) for kind, _, addr in host.sent] == [(memoryview, ("10.0.0.1", 5000))] * 2
    assert [addr for _, _, addr in other.sent] == [("10.0.0.2", 6000)]
    assert [(kind, addr) for kind, _, addr in turn.sent] == [(bytes, ("10.0.0.3", 7000))]
    everything = host.sent + other.sent + turn.sent
    assert [technician.unprotect(data) for _, data, _ in everything] == [
        packet.serialize() for packet in packets[:4]
    ]
    assert dtls._RTCDtlsTransport__tx_packets == 4
    assert dtls._RTCDtlsTransport__tx_bytes == sum(len(data) for _, data, _ in everything)
    assert sender._RTCRtpSender__packet_count == 4
    assert sender._RTCRtpSender__octet_count == 4000


# ----- the native send step (lens.media.native) -----------------------------------------


def test_the_native_send_step_is_built_and_loaded() -> None:
    """bin/setup builds it: a checkout whose sidecar would fall back to Python fails here."""
    assert native.build() is True  # (up to date: nothing compiled again)
    assert native.load() is not None
    assert passthrough.NATIVE is not None


def test_lens_media_native_0_chooses_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LENS_MEDIA_NATIVE", "0")
    assert native.load() is None


def mid_sender(dtls: Any) -> Any:
    """An aiortc sender's fields PacketSender reads and writes (MID extension negotiated)."""
    return types.SimpleNamespace(
        transport=dtls,
        _ssrc=1234,
        _rtx_ssrc=5678,
        _RTCRtpSender__started=True,
        _RTCRtpSender__mid="0",
        _RTCRtpSender__rtx_payload_type=97,
        _RTCRtpSender__rtx_sequence_number=100,
        _RTCRtpSender__rtp_header_extensions_map=types.SimpleNamespace(
            _HeaderExtensionsMap__ids=types.SimpleNamespace(mid=4)
        ),
        _RTCRtpSender__octet_count=0,
        _RTCRtpSender__packet_count=0,
    )


class UdpLeg:
    """A connected leg's send side over a real UdpTransport (in a running loop), sending to
    `peer`, a socket of the test's; `received()` drains it, `close()` closes both."""

    def __init__(self, tx: pylibsrtp.Session, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        self.peer = socket.socket(family, socket.SOCK_DGRAM)
        self.peer.bind((host, 0))
        self.peer.setblocking(False)
        protocol = StunProtocol(None)  # type: ignore[arg-type]
        self.transport = udp.UdpTransport(asyncio.get_running_loop(), sock, protocol)
        pair = types.SimpleNamespace(protocol=protocol, remote_addr=self.peer.getsockname())
        self.dtls = sending_dtls(tx, {1: pair})
        self.dtls._state = DtlsState.CONNECTED

    async def received(self, count: int) -> list[bytes]:
        loop = asyncio.get_running_loop()
        return [await loop.sock_recv(self.peer, 2048) for _ in range(count)]

    def close(self) -> None:
        self.transport.close()
        self.peer.close()


def decrypted(key: bytes, datagrams: list[bytes]) -> list[bytes]:
    technician = session(key, PROFILES[0][0], outbound=False)
    return [technician.unprotect(data) for data in datagrams]


def send_over_udp(use_native: bool, host: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Five packets (a marker, a playout delay, padding, a bytearray payload) sent by a
    PacketSender over a real UdpTransport, then one answered NACK: what the peer decrypts,
    the history and the counters."""
    monkeypatch.setattr(passthrough, "NATIVE", native.load() if use_native else None)
    key = os.urandom(30)
    profile = PROFILES[0][0]
    calls: list[int] = []
    if use_native:
        real = passthrough.NATIVE

        def counted(*args: Any) -> int:
            calls.append(args[5])
            return real.send_rtp(*args)

        monkeypatch.setattr(
            passthrough,
            "NATIVE",
            types.SimpleNamespace(send_rtp=counted, ProtectError=real.ProtectError),
        )

    async def scenario() -> dict:
        leg = UdpLeg(session(key, profile, outbound=True), host)
        sender = mid_sender(leg.dtls)
        out = passthrough.PacketSender(sender, playout_delay_id=6)  # type: ignore[arg-type]
        sent = [
            out.send_rtp(96, 1, 10, 3000, 1234, bytes(range(200))),
            out.send_rtp(96, 0, 11, 6000, 1234, bytearray(b"\x90\x80" + bytes(900)), (12, 1000)),
            out.send_rtp(96, 0, 12, 6000, 1234, b"", None, 1),
            out.send_rtp(111, 1, 13, 9000, 1234, b"opus"),
            out.send_rtp(96, 0, 14, 9000, 1234, bytes(1200)),
        ]
        await out.retransmit(11)  # the technician's NACK, answered over RTX from the history
        dtls = leg.dtls
        state = {
            "sent": sent,
            "received": await leg.received(6),
            "history": [out._history[seq % passthrough.RTX_HISTORY] for seq in range(10, 15)],
            "tx": (dtls._RTCDtlsTransport__tx_packets, dtls._RTCDtlsTransport__tx_bytes),
            "sender": (sender._RTCRtpSender__packet_count, sender._RTCRtpSender__octet_count),
            "dropped": leg.transport.send_dropped,
        }
        leg.close()
        return state

    state = run("uvloop", scenario)
    state["plain"] = decrypted(key, state.pop("received"))
    state["native_calls"] = calls
    return state


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_native_send_step_puts_the_same_packets_on_the_wire_as_python(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    python = send_over_udp(False, host, monkeypatch)
    with_native = send_over_udp(True, host, monkeypatch)
    # every packet with payload took the native step once the path was set up by the
    # first (SendPath.send makes the leg's FastSrtp); padding took Python's
    assert with_native["native_calls"] == [11, 13, 14]
    assert python["native_calls"] == []
    assert with_native["sent"] == python["sent"] == [True] * 5
    assert with_native["plain"] == python["plain"]
    assert with_native["history"] == python["history"]
    assert with_native["tx"] == python["tx"]
    assert with_native["sender"] == python["sender"] == (5, 200 + 902 + 4 + 1200)
    assert with_native["dropped"] == python["dropped"] == 0
    plain = with_native["plain"]
    # what went out: the header's fields, the MID (and playout delay) extensions, payload
    first = plain[0]
    assert first[:2] == bytes((0x90, 0x80 | 96)) and first[2:4] == (10).to_bytes(2, "big")
    assert first[4:8] == (3000).to_bytes(4, "big") and first[8:12] == (1234).to_bytes(4, "big")
    assert first.endswith(bytes(range(200)))
    assert plain[1].endswith(b"\x90\x80" + bytes(900)) and len(plain[1]) > len(plain[0]) - 200 + 902
    # the NACKed packet came back over RTX: its own sequence number in front of the payload
    rtx = plain[5]
    assert rtx[1] & 0x7F == 97 and rtx[8:12] == (5678).to_bytes(4, "big")
    header = with_native["history"][1][2]
    assert rtx[header : header + 2] == (11).to_bytes(2, "big")
    assert rtx[header + 2 :] == plain[1][header:]


def test_the_native_step_leaves_what_it_cannot_send_to_python(monkeypatch) -> None:
    """An address that is not numeric is declined before anything is done; a packet too
    long is refused, as FastSrtp.protect refuses it; a closing transport is not sent on."""
    module = native.load()
    history: list[Any] = [None] * 4
    tx = session(os.urandom(30), PROFILES[0][0], outbound=True)
    context = FastSrtp(tx).address
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        args = [native.PROTECT, context, sock.fileno(), ("localhost", 9), 96, 1, 0, 1, b""]
        assert module.send_rtp(*args, b"x", history, 1) == -2
        assert history == [None] * 4
        args[3] = ("127.0.0.1", 9)
        with pytest.raises(ValueError, match="too long"):
            module.send_rtp(*args, bytes(PACKET_LIMIT), history, 1)
        assert history == [None] * 4
        with pytest.raises(IndexError):
            module.send_rtp(*args, b"x", history, 4)
        with pytest.raises(TypeError):
            module.send_rtp(*args, b"x", history)
    finally:
        sock.close()


def test_a_libsrtp_failure_in_the_native_step_is_pylibsrtps_error() -> None:
    """A packet sent twice with the same number, without aiortc's allow_repeat_tx: libsrtp
    refuses the second as a replay, and the caller sees pylibsrtp.Error, as from Python."""
    key = os.urandom(30)
    policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    strict = pylibsrtp.Session(policy)

    async def scenario() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        protocol = StunProtocol(None)  # type: ignore[arg-type]
        transport = udp.UdpTransport(asyncio.get_running_loop(), sock, protocol)
        pair = types.SimpleNamespace(protocol=protocol, remote_addr=peer.getsockname())
        dtls = sending_dtls(strict, {1: pair})
        dtls._state = DtlsState.CONNECTED
        out = passthrough.PacketSender(mid_sender(dtls))  # type: ignore[arg-type]
        assert out.send_rtp(96, 0, 5, 0, 1234, b"once") is True
        with pytest.raises(pylibsrtp.Error, match="replay"):
            out.send_rtp(96, 0, 5, 0, 1234, b"twice")
        transport.close()
        assert out.send_rtp(96, 0, 6, 0, 1234, b"after close") is True  # (not sent: closing)
        peer.close()

    assert passthrough.NATIVE is not None
    run("uvloop", scenario)


def rtp_packets() -> st.SearchStrategy[bytes]:
    """RTP packets as a phone's (CSRCs, one- and two-byte header extensions, padding) and
    broken ones (an extension or padding longer than the packet)."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        csrcs = draw(st.integers(0, 3))
        padding = draw(st.integers(0, 20))
        one_byte = draw(st.booleans())
        elements = b""
        for _ in range(draw(st.integers(0, 4))):
            ident = draw(st.integers(0 if not one_byte else 1, 15 if one_byte else 255))
            value = draw(st.binary(min_size=1, max_size=4))
            if one_byte:
                elements += bytes(((ident << 4) | (len(value) - 1),)) + value
            else:
                elements += bytes((ident, len(value))) + value
            elements += bytes(draw(st.integers(0, 2)))  # padding between elements
        elements += bytes(-len(elements) % 4)
        words = len(elements) // 4 + draw(st.sampled_from([0, 0, 0, 1, 50]))  # (overruns)
        extension = b""
        if draw(st.booleans()):
            profile = 0xBEDE if one_byte else draw(st.sampled_from([0x1000, 0x100F, 0x1234]))
            extension = struct.pack("!HH", profile, words) + elements
        first = 0x80 | (0x10 if extension else 0) | (0x20 if padding else 0) | csrcs
        header = struct.pack(
            "!BBHII",
            first,
            draw(st.integers(0, 255)),
            draw(st.integers(0, 0xFFFF)),
            draw(st.integers(0, 0xFFFFFFFF)),
            draw(st.integers(0, 0xFFFFFFFF)),
        )
        body = bytes(4 * csrcs) + extension + draw(st.binary(max_size=40))
        tail = bytes(max(padding - 1, 0)) + (bytes((padding,)) if padding else b"")
        return header + body + tail

    return build()


@settings(max_examples=400, deadline=None)
@given(packet=rtp_packets(), wanted=st.integers(0, 15))
def test_the_native_header_read_is_pythons(packet: bytes, wanted: int) -> None:
    """``_native.parse_rtp`` (LeanReceive's, when built) gives what the Python does."""
    module = native.load()
    assert module is not None
    assert module.parse_rtp(packet, wanted) == passthrough._parse_rtp(packet, wanted)
    assert passthrough.parse_rtp is module.parse_rtp


def test_the_header_read_finds_transport_cc_and_refuses_what_overruns() -> None:
    for parse in (native.load().parse_rtp, passthrough._parse_rtp):
        # MID "a" (id 1), transport-cc 0x1234 (id 5), padding
        extension = struct.pack("!HH", 0xBEDE, 2) + bytes((0x10, 0x61, 0x51, 0x12, 0x34, 0, 0, 0))
        packet = struct.pack("!BBHII", 0x90, 96, 7, 9000, 1234) + extension + b"\x00payload"
        assert parse(packet, 5) == (7, 9000, 1234, 24, len(packet), 0, 0x1234)
        assert packet[24:] == b"\x00payload"
        assert parse(packet, 3) == (7, 9000, 1234, 24, len(packet), 0, -1)  # absent
        assert parse(packet[:14], 5) is None  # the extension's header cut off
        padded = b"\xb0" + packet[1:-1] + bytes((200,))  # (P set)
        assert parse(padded, 5) is None  # padding longer than the packet


# ----- the native forward step (forwarder.FORWARD) ---------------------------------------

NATIVE_FORWARD = forwarder.FORWARD  # (the tests below switch it off and on)


def vp8(
    seq: int, timestamp: int, picture_id: int, start: bool, key: bool, tl0: int = 0, width=640
) -> Any:
    """A VP8 packet of the phone's: 15-bit (or 7-bit, below 128 with tl0) picture ID."""
    if tl0:
        descriptor = bytes([0x90 if start else 0x80, 0xC0, picture_id & 0x7F, tl0])
    else:
        descriptor = bytes(
            [0x90 if start else 0x80, 0x80, 0x80 | picture_id >> 8, picture_id & 0xFF]
        )
    size = bytes([width & 0xFF, width >> 8, 0xE0, 0x01])  # width x 480
    header = bytes([0x00 if key else 0x01, 0, 0, 0x9D, 0x01, 0x2A]) + size
    payload = descriptor + (header if start else bytes(range(seq % 50, seq % 50 + 40)))
    return RtpView(96, 0 if start else 1, seq, timestamp, 1111, payload)


def forward_over_udp(use_native: bool, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A phone's VP8 and Opus packets through a VideoForwarder and an AudioForwarder onto
    PacketSenders over a real UdpTransport; everything they leave behind."""
    monkeypatch.setattr(forwarder, "FORWARD", NATIVE_FORWARD if use_native else None)
    key = os.urandom(30)
    profile = PROFILES[0][0]
    taken: list[int] = []
    if use_native:
        real = NATIVE_FORWARD

        def counted(fwd: Any, packet: Any, audio: bool) -> bool:
            done = real(fwd, packet, audio)
            if done:
                taken.append(packet.sequence_number)
            return done

        monkeypatch.setattr(forwarder, "FORWARD", counted)
    # the playout floor changes from packet to packet (a pure read: asked twice when the
    # native step declines, it answers the same)
    step = [0]

    async def scenario() -> dict:
        leg = UdpLeg(session(key, profile, outbound=True))
        dtls = leg.dtls
        video_sender, audio_sender = mid_sender(dtls), mid_sender(dtls)
        audio_sender._ssrc = 999
        video_out = passthrough.PacketSender(video_sender, playout_delay_id=6)  # type: ignore[arg-type]
        audio_out = passthrough.PacketSender(audio_sender)  # type: ignore[arg-type]
        random.seed(7)  # (the rewriters' random starting points, alike in both runs)
        totals = ForwardingStats()
        keyframes: list[int] = []
        video = forwarder.VideoForwarder(
            forwarder.LegRewriter(1234, 96, "video/vp8"),
            video_out.send_rtp,
            lambda: keyframes.append(1),
            totals,
            ready=video_out.ready,
            playout_floor=lambda: (0.0, 0.123, 0.125, 0.3)[step[0] % 4],
        )
        audio = forwarder.AudioForwarder(
            forwarder.LegRewriter(999, 111, "audio/opus", clock_rate=48000),
            audio_out.send_rtp,
            totals,
            ready=audio_out.ready,
        )
        packets = [
            vp8(100, 9000, 40, True, False),  # a delta frame: waits for a keyframe
            vp8(101, 12000, 41, True, True),  # keyframe: the stream starts (Python's)
            vp8(102, 12000, 41, False, True),
            vp8(103, 15000, 42, True, False),
            vp8(104, 15000, 42, False, False),
            vp8(99, 9000, 40, False, False),  # stale: before the start
            vp8(106, 18000, 0x7FFF, True, False),  # (a hole at 105; picture ID wraps)
            vp8(107, 21000, 0, True, False),
            vp8(108, 24000, 5, True, False, tl0=200),  # 7-bit picture ID and TL0PICIDX
            vp8(109, 24000, 5, False, False, tl0=200),
            vp8(110, 27000, 6, True, True, width=320),  # a keyframe in the stream, smaller
            vp8(111, 27000, 6, False, True),
        ]
        sounds = [RtpView(111, 0, 7000 + i, 960 * i, 2222, bytes([i]) * 30) for i in range(6)]
        for i, packet in enumerate(packets):
            step[0] = i
            video.forward(packet)
            if i < len(sounds):
                audio.forward(sounds[i])
        # (a restart's timestamps follow the real clock's elapsed time: the existing tests
        # of hold and reconnect hold that path, Python's either way)
        received = []
        while True:  # (sent at once: what is not in the socket now was not sent)
            try:
                received.append(leg.peer.recv(2048))
            except BlockingIOError:
                break
        rewriter_state = {
            name: value for name, value in vars(video.rewriter).items() if name != "_sent_at"
        }
        state = {
            "received": received,
            "history": list(video_out._history) + list(audio_out._history),
            "rewriters": (rewriter_state, dict(vars(audio.rewriter), _sent_at=None)),
            "stats": (video.stats, audio.stats, totals, video.packets_forwarded),
            "resolution": video.resolution,
            "tx": (dtls._RTCDtlsTransport__tx_packets, dtls._RTCDtlsTransport__tx_bytes),
            "senders": [
                (s._RTCRtpSender__packet_count, s._RTCRtpSender__octet_count)
                for s in (video_sender, audio_sender)
            ],
            "report": (video_sender._RTCRtpSender__rtp_timestamp, video_out._report_timestamp),
            "keyframes": len(keyframes),
            "delays": sorted(video_out._with_delay),
        }
        leg.close()
        return state

    state = run("uvloop", scenario)
    state["plain"] = decrypted(key, state.pop("received"))
    state["taken"] = taken
    return state


def test_the_native_forward_step_does_what_the_python_one_does(monkeypatch) -> None:
    assert NATIVE_FORWARD is not None
    python = forward_over_udp(False, monkeypatch)
    with_native = forward_over_udp(True, monkeypatch)
    # the steady state went native: all but the first packet of each stream, the stale
    # one, and frames whose playout delay block was not written yet
    assert 102 in with_native["taken"] and 109 in with_native["taken"]
    assert 99 in with_native["taken"]  # (the stale one, dropped there)
    assert 7001 in with_native["taken"] and 7005 in with_native["taken"]
    assert python["taken"] == [] and len(with_native["taken"]) >= 8
    for name in (
        "plain",
        "history",
        "rewriters",
        "stats",
        "resolution",
        "tx",
        "senders",
        "report",
        "keyframes",
        "delays",
    ):
        assert with_native[name] == python[name], name
    assert len(python["plain"]) == 10 + 6  # (video: not 100 nor 99; audio: all six)
    assert python["resolution"] == (320, 480)  # (the keyframe at 110: the native step's)
    assert 110 in with_native["taken"]


@pytest.mark.parametrize("use_native", [True, False])
def test_a_libsrtp_failure_in_the_forward_step_is_pylibsrtps_error(use_native, monkeypatch):
    """The same for a forwarded packet: a packet of the phone's forwarded twice (a repeat),
    on a session without allow_repeat_tx, raises pylibsrtp.Error out of forward() on the
    native step as on the Python one; raised while another exception is being handled too
    (where CPython may normalise the error the C sees)."""
    monkeypatch.setattr(forwarder, "FORWARD", NATIVE_FORWARD if use_native else None)
    policy = pylibsrtp.Policy(key=os.urandom(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)

    async def scenario() -> None:
        leg = UdpLeg(pylibsrtp.Session(policy))
        out = passthrough.PacketSender(mid_sender(leg.dtls))  # type: ignore[arg-type]
        video = forwarder.VideoForwarder(
            forwarder.LegRewriter(1234, 96, "video/vp8"),
            out.send_rtp,
            lambda: None,
            ForwardingStats(),
            ready=out.ready,
        )
        video.forward(vp8(101, 12000, 41, True, True))  # (the stream starts: Python's)
        video.forward(vp8(102, 12000, 41, False, True))
        with pytest.raises(pylibsrtp.Error, match="replay"):
            video.forward(vp8(102, 12000, 41, False, True))
        try:
            raise RuntimeError("being handled")
        except RuntimeError:
            with pytest.raises(pylibsrtp.Error, match="replay"):
                video.forward(vp8(102, 12000, 41, False, True))
        assert video.packets_forwarded == 2
        leg.close()

    run("uvloop", scenario)
