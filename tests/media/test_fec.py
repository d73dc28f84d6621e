"""RED and ULPFEC on the phone's leg: the sidecar rebuilds a lost packet from Chrome's FEC
packets at once, forwards a whole stream of plain packets, and a lost FEC packet is no
hole (lens/media/fec.py, passthrough.RedUlpfec)."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from aiortc.rtp import RtpPacket

from lens.media import fec, passthrough
from lens.media.app import CODECS, SESSIONS
from lens.media.capture import VideoHistory, frames_from_packets
from lens.media.forwarder import LegRewriter, RtpView
from lens.media.passthrough import ForwardingVideoBuffer, LeanVideoReceiver, RepeatingNacks
from lens.media.recovery import FEC_PLAYOUT_SHARE, LinkEstimate, MediaFreeGaps, NackList
from lens.media.testing import start_phone, start_technician

pytestmark = pytest.mark.media

VP8, RED, ULPFEC = 96, 123, 125
SSRC = 0x11223344


def rtp(
    seq: int,
    timestamp: int,
    payload: bytes,
    payload_type: int = VP8,
    marker: int = 0,
    extension: bytes = b"",
) -> bytes:
    """A plain RTP packet; `extension`: a one-byte-header extension block's elements."""
    first = 0x80
    ext = b""
    if extension:
        first |= 0x10
        padded = extension + bytes(-len(extension) % 4)
        ext = struct.pack("!HH", 0xBEDE, len(padded) // 4) + padded
    header = struct.pack("!BBHII", first, (marker << 7) | payload_type, seq, timestamp, SSRC)
    return header + ext + payload


def ulpfec(protected: list[bytes], base: int) -> bytes:
    """A ULPFEC payload protecting `protected` (RFC 5109, one level, 16-bit mask), computed
    the way libwebrtc's ForwardErrorCorrection does: XOR of the first two header bytes, the
    timestamps, the lengths after the 12-byte fixed header, and everything after it."""
    size = max(len(p) - 12 for p in protected)
    bits0 = bits1 = timestamp = length = xor = mask = 0
    for packet in protected:
        bits0 ^= packet[0]
        bits1 ^= packet[1]
        timestamp ^= struct.unpack_from("!I", packet, 4)[0]
        length ^= len(packet) - 12
        xor ^= int.from_bytes(packet[12:].ljust(size, b"\0"), "big")
        mask |= 1 << (15 - ((struct.unpack_from("!H", packet, 2)[0] - base) & 0xFFFF))
    header = struct.pack("!BBHIH", bits0 & 0x3F, bits1, base, timestamp, length)
    return header + struct.pack("!HH", size, mask) + xor.to_bytes(size, "big")


def red(packet: bytes, seq: int | None = None, block_type: int | None = None) -> bytes:
    """`packet` wrapped in RED (RFC 2198, one block), as Chrome sends it."""
    header = fec.header_length(packet)
    block = block_type if block_type is not None else packet[1] & 0x7F
    out = bytearray(packet[:header]) + bytes([block]) + packet[header:]
    out[1] = (packet[1] & 0x80) | RED
    if seq is not None:
        out[2:4] = struct.pack("!H", seq)
    return bytes(out)


def fec_packet(protected: list[bytes], seq: int, base: int) -> bytes:
    """A ULPFEC packet in RED with sequence number `seq` (after the media it protects)."""
    header = rtp(seq, struct.unpack_from("!I", protected[-1], 4)[0], b"")
    return red(header + ulpfec(protected, base), block_type=ULPFEC)


def frame_packets(first_seq: int, picture_id: int, timestamp: int, sizes: list[int]) -> list[bytes]:
    """A VP8 frame in len(sizes) packets, with a 15-bit picture ID and header extensions."""
    packets = []
    for i, size in enumerate(sizes):
        descriptor = bytes(
            [0x90 if i == 0 else 0x80, 0x80, 0x80 | picture_id >> 8, picture_id & 0xFF]
        )
        body = bytes((first_seq + i + k) % 251 for k in range(size))
        twcc = bytes([0x51, (first_seq + i) >> 8 & 0xFF, (first_seq + i) & 0xFF])
        packets.append(
            rtp(
                (first_seq + i) & 0xFFFF,
                timestamp,
                descriptor + body,
                marker=int(i == len(sizes) - 1),
                extension=twcc,
            )
        )
    return packets


def test_a_lost_packet_is_rebuilt_from_the_fec_packet_at_once():
    receiver = fec.RedReceiver(RED, ULPFEC)
    media = frame_packets(65533, 700, 9000, [300, 1000, 57, 640])  # wraps at 65535
    fec_seq = (65533 + 4) & 0xFFFF
    handed = []
    for packet in media[:2] + media[3:]:  # the third is lost
        plain, rebuilt = receiver.receive(red(packet))
        assert plain == packet and rebuilt == []  # RED off: the packet as it was protected
        handed.append(plain)
    stand_in, rebuilt = receiver.receive(fec_packet(media, fec_seq, base=65533))
    assert rebuilt == [media[2]]  # byte for byte: header, extensions, payload
    assert (receiver.fec_packets, receiver.recovered) == (1, 1)
    # the FEC packet's own sequence number goes on as a padding-only packet
    padding = RtpPacket.parse(stand_in)
    assert padding.sequence_number == fec_seq and padding.payload == b""
    assert padding.padding_size > 0 and padding.payload_type == VP8 and not padding.marker


def chrome_groups() -> list[tuple[list[bytes], bytes]]:
    """Real Chrome datagrams: (the RED media packets, the RED/ULPFEC packet protecting them)."""
    groups: list[tuple[list[bytes], bytes]] = []
    media: list[bytes] = []
    for line in (Path(__file__).parent / "data" / "chrome_ulpfec.txt").read_text().splitlines():
        if line.startswith("media "):
            media.append(bytes.fromhex(line[6:]))
        elif line.startswith("fec "):
            groups.append((media, bytes.fromhex(line[4:])))
            media = []
    return groups


def test_chromes_own_fec_packets_rebuild_each_packet_they_protect():
    """Chrome writes its header extensions (transport-cc) after computing FEC, so a rebuilt
    packet's extension bytes may differ; everything the stream needs is as sent."""
    groups = chrome_groups()
    assert {len(media) for media, _ in groups} == {2, 3, 4}
    for media, fec_datagram in groups:
        for lost in range(len(media)):
            receiver = fec.RedReceiver(red_type=118, ulpfec_type=120)
            for i, packet in enumerate(media):
                if i != lost:
                    receiver.receive(packet)
            _, rebuilt = receiver.receive(fec_datagram)
            expected, _ = fec.RedReceiver(118, 120).receive(media[lost])
            assert len(rebuilt) == 1
            got, want = RtpPacket.parse(rebuilt[0]), RtpPacket.parse(expected)
            assert got.payload == want.payload and got.payload_type == want.payload_type == 96
            assert (got.sequence_number, got.timestamp, got.marker, got.ssrc) == (
                want.sequence_number,
                want.timestamp,
                want.marker,
                want.ssrc,
            )


def test_a_fec_packet_waits_for_a_retransmission_when_two_of_its_packets_are_lost():
    receiver = fec.RedReceiver(RED, ULPFEC)
    media = frame_packets(100, 5, 3000, [200, 200, 200])
    receiver.receive(red(media[0]))
    _, rebuilt = receiver.receive(fec_packet(media, 103, base=100))
    assert rebuilt == []  # two missing: XOR cannot tell them apart
    # the second comes again over RTX (of RED): now the third can be rebuilt
    rtx = bytearray(red(media[1]))
    header = fec.header_length(bytes(rtx))
    rtx = bytes(rtx[:header]) + media[1][2:4] + bytes(rtx[header:])
    rtx = (
        bytes([rtx[0], 0x7F & 124])
        + struct.pack("!H", 7)
        + rtx[4:8]
        + struct.pack("!I", 99)
        + rtx[12:]
    )
    handed, rebuilt = receiver.receive_rtx(rtx, SSRC, rtx_type=97)
    assert rebuilt == [media[2]]
    # handed on as a retransmission of the plain packet: RTX payload type of VP8, OSN, VP8
    unwrapped = RtpPacket.parse(handed)
    assert unwrapped.payload_type == 97 and unwrapped.sequence_number == 7
    assert unwrapped.payload == media[1][2:4] + RtpPacket.parse(media[1]).payload


def test_nothing_is_rebuilt_from_a_fec_packet_whose_media_all_arrived():
    receiver = fec.RedReceiver(RED, ULPFEC)
    media = frame_packets(10, 1, 0, [100, 120])
    for packet in media:
        receiver.receive(red(packet))
    _, rebuilt = receiver.receive(fec_packet(media, 12, base=10))
    assert rebuilt == [] and receiver.recovered == 0


def test_a_fec_packet_that_does_not_add_up_rebuilds_nothing():
    receiver = fec.RedReceiver(RED, ULPFEC)
    media = frame_packets(10, 1, 0, [100, 120])
    bogus = bytearray(fec_packet(media, 12, base=10))
    bogus[fec.header_length(bytes(bogus)) + 1 + 8] ^= 0x7F  # length recovery past the payload
    receiver.receive(red(media[0]))
    _, rebuilt = receiver.receive(bytes(bogus))
    assert rebuilt == []


# ----- the frame view: what stands for a FEC packet, and a lost FEC packet -----------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def vp8_packet(seq: int, picture_id: int, part: int, parts: int, key: bool = False) -> RtpPacket:
    packet = RtpPacket(payload_type=VP8, sequence_number=seq, timestamp=picture_id * 3000, ssrc=1)
    packet.marker = int(part == parts - 1)
    start = 0x10 if part == 0 else 0
    packet.payload = bytes([0x80 | start, 0x80, 0x80 | picture_id >> 8, picture_id & 0xFF, 0])
    first = (0x00 if key else 0x01) if part == 0 else 0x55
    packet._data = bytes([first, picture_id % 256, part])
    return packet


def padding(seq: int, picture_id: int) -> RtpPacket:
    packet = RtpPacket(payload_type=VP8, sequence_number=seq, timestamp=picture_id * 3000, ssrc=1)
    packet.padding_size = 40
    packet._data = b""
    return packet


def make_buffer():
    clock = Clock()
    link = LinkEstimate(clock)
    requests: list[float] = []
    buffer = ForwardingVideoBuffer(link=link, request_keyframe=lambda: requests.append(clock.now))
    return clock, link, buffer, requests


def test_what_stands_for_a_fec_packet_is_no_hole_in_the_frame_view():
    clock, link, buffer, requests = make_buffer()
    buffer.add(vp8_packet(1, 10, 0, 2, key=True))
    buffer.add(vp8_packet(2, 10, 1, 2, key=True))
    buffer.add(padding(3, 10))  # a FEC packet (passthrough.RedUlpfec hands this on)
    clock.now += 0.03
    buffer.add(vp8_packet(5, 11, 0, 2))  # 4: a lost FEC packet, filled (RepeatingNacks)
    buffer.add(padding(4, 10))
    buffer.add(vp8_packet(6, 11, 1, 2))
    assert [f.data[1] for f in buffer.frames] == [10, 11]  # no empty frame, none waited for
    assert all(f.contiguous for f in buffer.frames)  # a snapshot's history stays whole
    assert buffer.holes_given_up == 0 and requests == []


def test_a_lost_fec_packet_between_two_pictures_is_not_nacked():
    clock = Clock()
    nacks = NackList(LinkEstimate(clock))
    gaps = MediaFreeGaps()

    def arrives(packet: RtpPacket) -> list[int]:
        nacks.add(packet.sequence_number)
        if not packet.payload:
            return []
        return nacks.not_media(gaps.packet(packet.sequence_number, packet.marker, packet.payload))

    assert arrives(vp8_packet(1, 10, 0, 2)) == []
    assert arrives(vp8_packet(2, 10, 1, 2)) == []  # the end of picture 10
    assert arrives(padding(3, 10)) == []  # a FEC packet
    # 4 (another FEC packet) is lost; 5 begins picture 11: 4 held no media
    assert arrives(vp8_packet(5, 11, 0, 2)) == [4]
    assert nacks.missing == set() and nacks.due() == [] and nacks.lost_without_media == 1
    assert arrives(vp8_packet(6, 11, 1, 2)) == []
    # 7 is lost and 8 begins picture 13: picture 12 was lost with it, that is media
    assert arrives(vp8_packet(8, 13, 0, 1)) == []
    assert nacks.missing == {7}
    # a lost last packet of a picture is media too, even if the next picture follows
    assert arrives(vp8_packet(9, 14, 0, 2)) == [] and arrives(vp8_packet(11, 15, 0, 1)) == []
    assert nacks.missing == {7, 10}
    # a FEC packet and the next picture's first packet lost: the FEC packet's number is
    # known to hold no media once that first packet comes again
    assert arrives(vp8_packet(20, 30, 0, 1)) == []
    assert arrives(vp8_packet(23, 31, 1, 2)) == []  # 21 (FEC) and 22 lost
    assert {21, 22} <= nacks.missing
    assert arrives(vp8_packet(22, 31, 0, 2)) == [21]  # retransmitted (or rebuilt by FEC)
    assert not {21, 22} & nacks.missing


def test_what_stands_for_a_fec_packet_reaches_the_technician_as_padding():
    rewriter = LegRewriter(ssrc=5, payload_type=100, mime_type="video/vp8")
    key = vp8_packet(1000, 7, 0, 1, key=True)
    key.payload = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A])  # no picture ID; a keyframe
    out, _ = rewriter.rewrite(key)
    filler, vp8 = rewriter.rewrite(padding(1001, 7))
    assert filler is not None and vp8 is None
    assert filler.sequence_number == (out.sequence_number + 1) & 0xFFFF
    assert filler.payload == b"" and filler.padding_size == 1 and filler.ssrc == 5
    # the technician's browser gets a padding-only packet (P bit, one byte of padding),
    # as the leg's sender writes it (passthrough.PacketSender)
    data = filler.serialize()
    assert data[0] & 0x20 and data[-1] == 1 and len(data) == 13
    with_mid = filler.serialize(b"\xbe\xde\x00\x01\x10\x30\x00\x00")
    assert with_mid[0] == 0xB0 and with_mid[-1] == 1 and len(with_mid) == 21


def test_a_snapshot_reassembles_across_a_fec_packets_number():
    """The snapshot history (capture.VideoHistory) keeps the numbers that held no media
    (a FEC packet's stand-in, a lost one's filler): reassembly finds no hole there."""
    history = VideoHistory()
    strip = lambda payload: payload[1:]  # noqa: E731 - a one-byte "descriptor"
    history.add("video/vp8", 10, 100, 0, b"\x00K1", True)
    history.add("video/vp8", 11, 100, 1, b"\x00K2", False)
    history.add("video/vp8", 12, 100, 0, b"", False)  # a FEC packet
    history.add("video/vp8", 13, 200, 1, b"\x00D1", False)
    history.add("video/vp8", 15, 300, 1, b"\x00D2", False)
    history.add("video/vp8", 14, 300, 0, b"", False)  # a lost FEC packet's filler, late
    assert frames_from_packets(history.packets()[1], strip) == [b"K1K2", b"D1", b"D2"]


class FakeReceiver:
    """What RepeatingNacks and LeanVideoReceiver read of an aiortc receiver."""

    def __init__(self) -> None:
        self._RTCRtpReceiver__codecs = {}
        self._RTCRtpReceiver__rtx_ssrc = {}
        self.nacked: list[list[int]] = []

    async def _send_rtcp_nack(self, ssrc: int, lost: list[int]) -> None:
        self.nacked.append(lost)


def view(packet: RtpPacket) -> RtpView:
    return RtpView(
        packet.payload_type,
        packet.marker,
        packet.sequence_number,
        packet.timestamp,
        packet.ssrc,
        packet.payload,
        packet.padding_size,
    )


@pytest.mark.parametrize("frame_view", [True, False])
def test_a_lost_fec_packet_is_filled_on_the_lean_path(frame_view):
    """The lean video receiver's NACK bookkeeping (RepeatingNacks) frees a lost FEC
    packet's number and hands a filler to the technician; the frame view gets it only
    while it is on (off, nothing is buffered; on, it is no hole)."""
    clock, link, buffer, requests = make_buffer()
    forwarded: list[RtpView] = []
    nacks = RepeatingNacks(
        FakeReceiver(), link, forwarded.append, mime_type_of=lambda payload_type: "video/vp8"
    )
    nacks.fec = True  # (RedUlpfec found red/ulpfec in the phone's answer)
    lean = LeanVideoReceiver(FakeReceiver(), buffer, nacks)
    nacks.on_filler = lean.filler
    codec = passthrough.RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000)
    lean.set_frame_view(frame_view)
    lean._fed = True  # (what the first packet off the wire sets)

    async def arrive() -> None:  # (a NACK timer needs a loop)
        for packet in [
            vp8_packet(1, 10, 0, 2, key=True),
            vp8_packet(2, 10, 1, 2, key=True),
            padding(3, 10),  # a FEC packet that came
            vp8_packet(5, 11, 0, 2),  # 4: a FEC packet lost
            vp8_packet(6, 11, 1, 2),
        ]:
            lean._media(view(packet), codec, False)
        nacks.stop()

    asyncio.run(arrive())
    assert nacks.nacks.missing == set() and nacks.nacks.lost_without_media == 1
    numbers = [p.sequence_number for p in forwarded]
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]
    filler = next(p for p in forwarded if p.sequence_number == 4)
    assert filler.payload == b"" and filler.padding_size == 1
    if frame_view:
        assert [f.timestamp for f in buffer.frames] == [10 * 3000, 11 * 3000]  # none waited
        assert all(f.contiguous for f in buffer.frames) and requests == []
    else:
        assert buffer.frames == [] and buffer._origin is None  # the view is off: untouched


def test_a_rebuilt_packet_on_the_lean_path_fills_its_hole_without_a_round_trip():
    clock, link, buffer, requests = make_buffer()
    forwarded: list[RtpView] = []
    nacks = RepeatingNacks(
        FakeReceiver(), link, forwarded.append, mime_type_of=lambda payload_type: "video/vp8"
    )
    lean = LeanVideoReceiver(FakeReceiver(), buffer, nacks)
    codec = passthrough.RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000)
    lean.set_frame_view(False)
    lean._media(view(vp8_packet(1, 10, 0, 3, key=True)), codec, False)
    nacks.nacks.add(3)  # (3 came, 2 is missing: what RepeatingNacks.add notes)
    clock.now += 0.004
    lean.rebuilt(view(vp8_packet(2, 10, 1, 3, key=True)), codec)
    assert nacks.nacks.missing == set() and nacks.nacks.rebuilt_missing == 1
    assert link.rtt_samples == 0 and [p.sequence_number for p in forwarded] == [1, 2]
    assert buffer.holes_given_up == 0 and requests == []


def test_a_rebuilt_packet_is_no_round_trip_sample():
    clock = Clock()
    link = LinkEstimate(clock)
    nacks = NackList(link)
    nacks.add(1)
    nacks.add(3)  # 2 missing
    nacks.due()
    clock.now += 0.004  # FEC rebuilt it 4 ms later
    nacks.rebuilt(2)
    assert nacks.missing == set() and nacks.rebuilt_missing == 1
    assert link.rtt_samples == 0 and nacks.recovered == 0


def test_while_the_phone_sends_fec_the_technician_buffers_less():
    """Most losses are repaired with no round trip then: the technician's playout floor
    (RTP playout-delay) is a share of the round-trip floor, as a browser in a direct call
    adds no round trip to its buffer under hybrid NACK/FEC."""
    clock = Clock()
    link = LinkEstimate(clock)
    link.rtt_sample(0.35)
    assert link.playout_floor() == 0.0  # nothing lost: nothing added
    link.last_wait = clock.now
    full = link.playout_floor()
    assert full == pytest.approx(0.35 + 0.02)
    link.last_fec = clock.now
    assert link.playout_floor() == pytest.approx(FEC_PLAYOUT_SHARE * full)
    assert 0 < FEC_PLAYOUT_SHARE < 1
    clock.now += 11  # no FEC for longer than the loss memory, a loss now
    link.last_wait = clock.now
    assert link.playout_floor() == pytest.approx(full)


# ----- aiortc peers: a phone that sends RED + ULPFEC and never retransmits ---------------


def send_with_fec(
    phone_pc, every: int, lose, at_frame_end: bool = False, lose_fec=None
) -> dict[str, int]:
    """Make an aiortc phone send its video as Chrome does with red/ulpfec negotiated: every
    packet in RED, a ULPFEC packet after each `every` media packets (its own sequence
    number; with `at_frame_end` after a frame's last packet too, as libwebrtc does), no
    retransmissions (so only FEC can repair); `lose(seq)` drops media, `lose_fec(n,
    at_end)` the n-th FEC packet."""
    transceiver = phone_pc.getTransceivers()[0]
    types = {c.mimeType.lower(): c.payloadType for c in transceiver._codecs}
    red_type, ulpfec_type, vp8_type = types["video/red"], types["video/ulpfec"], types["video/vp8"]
    dtls = transceiver.sender.transport
    original = dtls._send_rtp
    state = {"seq": -1, "fec": 0, "lost": 0, "fec_lost": 0}
    group: list[bytes] = []

    async def send(data: bytes) -> None:
        payload_type = data[1] & 0x7F
        if payload_type != vp8_type:
            if payload_type in types.values() and payload_type != types.get("opus"):
                return  # RTX: this phone does not retransmit
            await original(data)
            return
        if state["seq"] < 0:  # the stream goes on where it was, one number per packet
            state["seq"] = struct.unpack_from("!H", data, 2)[0]
        seq = state["seq"]
        state["seq"] = (seq + 1) & 0xFFFF
        plain = data[:2] + struct.pack("!H", seq) + data[4:]
        group.append(plain)
        wrapped = bytearray(red(plain))
        wrapped[1] = (wrapped[1] & 0x80) | red_type
        if lose(seq, len(group)):
            state["lost"] += 1
        else:
            await original(bytes(wrapped))
        at_end = at_frame_end and bool(plain[1] & 0x80)
        if len(group) == every or at_end:
            fec_seq = state["seq"]
            state["seq"] = (fec_seq + 1) & 0xFFFF
            packet = bytearray(
                fec_packet(group, fec_seq, base=struct.unpack_from("!H", group[0], 2)[0])
            )
            packet[1] = red_type
            header = fec.header_length(bytes(packet))
            packet[header] = ulpfec_type
            packet[8:12] = plain[8:12]
            state["fec"] += 1
            group.clear()
            if lose_fec is not None and lose_fec(state["fec"], at_end):
                state["fec_lost"] += 1
                return
            await original(bytes(packet))

    dtls._send_rtp = send
    return state


def test_the_sidecar_repairs_the_phones_losses_with_its_fec(with_sidecar, vp8_clip):
    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        video = tech.received["video"]
        await video.wait_for(3, timeout=10)
        start = len(video.digests)
        # one packet in each group of 4, once the technician is watching
        state = send_with_fec(phone.pc, 4, lambda seq, position: position == 2)
        await video.wait_for(start + 40, timeout=10)
        session = sidecar.app[SESSIONS].get("s1")
        recovery = session.state()["publisher"]["transport"]["recovery"]
        assert state["lost"] >= 10 and recovery["fec_recovered"] >= 10
        assert recovery["fec_recovered"] >= state["lost"] - 2  # (the last FEC may be on its way)
        assert recovery["holes_given_up"] == 0
        link = session.publisher.receiver("video")._RTCRtpReceiver__jitter_buffer.link
        assert link.last_fec is not None  # the technician's playout floor knows
        # RED unwrapped and FEC-rebuilt packets took the lean path (no RtpPacket, no
        # coroutine per packet), as plain VP8 does
        repair = session.publisher.fec
        assert repair.lean_handed >= 40 and repair.lean_rebuilt == recovery["fec_recovered"]
        digests = video.digests[start + 1 :]
        index = {d: i for i, d in enumerate(vp8_clip.digests)}
        order = [index[d] for d in digests]  # a KeyError = a torn frame
        for previous, current in zip(order, order[1:], strict=False):
            assert current in ((previous + 1) % len(vp8_clip.frames), 0), order
        # no FEC reached the technician: the sidecar's answer to it has none
        tech_codecs = {c.mimeType.lower() for c in tech.pc.getTransceivers()[0]._codecs}
        assert "video/red" not in tech_codecs and "video/ulpfec" not in tech_codecs
        assert (sidecar.app[CODECS].encoders, sidecar.app[CODECS].decoders) == (0, 0)
        await phone.pc.close()
        await tech.pc.close()

    with_sidecar(scenario)


def test_a_lost_fec_packet_costs_the_technician_nothing(with_sidecar, vp8_clip):
    """A FEC packet lost between two pictures: its number is not NACKed (the phone keeps no
    FEC packet to send again), no hole is given up, no keyframe asked for; the technician
    gets padding there and a whole stream (lean path, frame view off)."""

    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        video = tech.received["video"]
        await video.wait_for(3, timeout=10)
        session = sidecar.app[SESSIONS].get("s1")
        receiver = session.publisher.receiver("video")
        assert receiver.lens_lean.frame_view is False  # not recording: the lean path only
        before = session.state()["publisher"]["transport"]["recovery"]
        start = len(video.digests)
        state = send_with_fec(
            phone.pc,
            4,
            lambda seq, position: False,
            at_frame_end=True,
            lose_fec=lambda n, at_end: at_end and n % 2 == 0,
        )
        await video.wait_for(start + 40, timeout=10)
        recovery = session.state()["publisher"]["transport"]["recovery"]
        assert state["fec_lost"] >= 10
        freed = recovery["lost_without_media"] - before["lost_without_media"]
        assert freed >= state["fec_lost"] - 2  # (the last may wait for the next picture)
        assert recovery["nacks_sent"] == before["nacks_sent"]
        assert recovery["holes_given_up"] == before["holes_given_up"] == 0
        digests = video.digests[start + 1 :]
        index = {d: i for i, d in enumerate(vp8_clip.digests)}
        order = [index[d] for d in digests]  # a KeyError = a torn frame
        for previous, current in zip(order, order[1:], strict=False):
            assert current in ((previous + 1) % len(vp8_clip.frames), 0), order
        await phone.pc.close()
        await tech.pc.close()

    with_sidecar(scenario)


def test_red_packets_transport_cc_numbers_are_read_once_on_the_lean_path(with_sidecar, vp8_clip):
    """The transport-cc number of every packet that came (RED or not) reaches the phone's
    feedback once, read on the lean path; a rebuilt packet never crossed the wire, so its
    number is not reported (the phone's estimator sees the loss)."""
    from aiortc.rtp import is_rtcp

    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        video = tech.received["video"]
        await video.wait_for(3, timeout=10)
        session = sidecar.app[SESSIONS].get("s1")
        lean = session.publisher.receiver("video").transport.transport._connection._queue.lean
        reported: list[int] = []
        arrived = lean.on_transport_seq

        def note(seq: int, arrival: float) -> None:
            reported.append(seq)
            arrived(seq, arrival)

        lean.on_transport_seq = note
        sender = phone.pc.getTransceivers()[0].sender
        extensions = sender._RTCRtpSender__rtp_header_extensions_map
        dtls = sender.transport
        wire = dtls._send_rtp
        on_wire: set[int] = set()

        async def sent(data: bytes) -> None:
            if not is_rtcp(data):
                number = RtpPacket.parse(data, extensions).extensions.transport_sequence_number
                if number is not None:
                    on_wire.add(number)
            await wire(data)

        dtls._send_rtp = sent
        state = send_with_fec(phone.pc, 4, lambda seq, position: position == 2)
        with_fec = dtls._send_rtp
        counter = [0]

        async def numbered(data: bytes) -> None:  # (as Chrome: before RED and FEC)
            if not is_rtcp(data):
                packet = RtpPacket.parse(data, extensions)
                packet.extensions.transport_sequence_number = counter[0]
                counter[0] += 1
                data = packet.serialize(extensions)
            await with_fec(data)

        dtls._send_rtp = numbered
        start = len(video.digests)
        await video.wait_for(start + 40, timeout=10)
        recovery = session.state()["publisher"]["transport"]["recovery"]
        assert state["lost"] >= 10 and recovery["fec_recovered"] >= 10
        assert len(reported) == len(set(reported))  # each once
        assert set(reported) <= on_wire  # none for a packet that never came (rebuilt ones)
        assert len(on_wire - set(reported)) <= 2  # (what is still on its way)
        assert len(on_wire) >= 40
        await phone.pc.close()
        await tech.pc.close()

    with_sidecar(scenario)
