"""Packet forwarding with real aiortc peers: the technician's NACKs are answered from the
sidecar's own buffer, the sidecar NACKs the phone again until a retransmission arrives,
and each leg's stream is rewritten into one continuous RTP stream."""

from __future__ import annotations

import asyncio
import datetime
import struct

import pytest
from aiortc.rtp import RtpPacket, is_rtcp

from lens.media import passthrough
from lens.media.app import CODECS, SESSIONS
from lens.media.forwarder import LegRewriter, parse_vp8
from lens.media.recovery import LinkEstimate
from lens.media.testing import EncodedClip, start_phone, start_technician, wait_until

pytestmark = pytest.mark.media


def count_calls(obj, name: str, calls: list):
    """Record every call of obj.name(*args) (an instance attribute shadows the method)."""
    original = getattr(obj, name)

    async def recorded(*args):
        calls.append(args)
        return await original(*args)

    setattr(obj, name, recorded)


def drop_packets(receiver, should_drop) -> list[RtpPacket]:
    """Make an aiortc receiver lose the RTP packets `should_drop(packet)` picks."""
    dropped: list[RtpPacket] = []
    original = receiver._handle_rtp_packet

    async def lossy(packet: RtpPacket, arrival_time_ms: int) -> None:
        if should_drop(packet):
            dropped.append(packet)
            return
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = lossy
    return dropped


def drop_sent(dtls, should_drop) -> list[RtpPacket]:
    """Make a peer's transport lose, on the way out, the RTP packets `should_drop` picks
    (the sidecar reads its packets off the socket itself: the loss has to be the link's)."""
    dropped: list[RtpPacket] = []
    original = dtls._send_rtp

    async def lossy(data: bytes) -> None:
        if not is_rtcp(data):
            packet = RtpPacket.parse(data)
            if should_drop(packet):
                dropped.append(packet)
                return
        await original(data)

    dtls._send_rtp = lossy
    return dropped


def delay_rtcp(dtls, seconds: float) -> None:
    """Make a peer's RTCP reach the sidecar `seconds` late (its RTP is not held up)."""
    original = dtls._send_rtp

    async def late(data: bytes) -> None:
        if is_rtcp(data):
            await asyncio.sleep(seconds)
        await original(data)

    dtls._send_rtp = late


def answer_xr(dtls, ssrc: int) -> list[int]:
    """Make an aiortc peer answer XR receiver reference times (RRTR) with DLRR, as the
    phone's libwebrtc does (aiortc ignores XR); the answers' LRRs are returned."""
    original = dtls._handle_rtcp_data
    answered: list[int] = []

    async def read(data: bytes) -> None:
        pos = 0
        while pos + 20 <= len(data):
            if data[pos + 1] == 207 and data[pos + 8] == 4:  # XR, an RRTR block first
                reporter, lrr = data[pos + 4 : pos + 8], data[pos + 14 : pos + 18]
                dlrr = struct.pack("!BBH", 5, 0, 3) + reporter + lrr + (6554).to_bytes(4, "big")
                await asyncio.sleep(0.1)  # held 0.1 s (6554 / 65536) before the answer
                await dtls._send_rtp(struct.pack("!BBHI", 0x80, 207, 5, ssrc) + dlrr)
                answered.append(int.from_bytes(lrr, "big"))
            pos += 4 + 4 * int.from_bytes(data[pos + 2 : pos + 4], "big")
        await original(data)

    dtls._handle_rtcp_data = read
    return answered


def in_clip_order(digests: list[bytes], clip: EncodedClip) -> None:
    """Every frame arrived whole and none is missing: each follows its predecessor."""
    index = {digest: i for i, digest in enumerate(clip.digests)}
    order = [index[d] for d in digests]  # a KeyError = a frame that is not the clip's
    for previous, current in zip(order, order[1:], strict=False):
        assert current in ((previous + 1) % len(clip.frames), 0), order


def test_the_technicians_nacks_are_answered_from_the_sidecars_buffer(with_sidecar, vp8_clip):
    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        phone_retransmits: list = []
        phone_video = phone.pc.getTransceivers()[0].sender
        count_calls(phone_video, "_retransmit", phone_retransmits)

        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        video = tech.received["video"]
        await video.wait_for(5, timeout=10)
        session = sidecar.app[SESSIONS].get("s1")
        sidecar_sender = session.subscriber.transceivers["video"].sender
        answered: list = []
        count_calls(sidecar_sender, "_retransmit", answered)
        media_ssrc = sidecar_sender._ssrc
        seen: set[int] = set()

        def every_25th_once(packet: RtpPacket) -> bool:
            if packet.ssrc != media_ssrc or packet.sequence_number in seen:
                return False
            seen.add(packet.sequence_number)
            return packet.sequence_number % 25 == 0

        dropped = drop_packets(tech.pc.getTransceivers()[0].receiver, every_25th_once)
        start = len(video.digests)
        await video.wait_for(start + 45, timeout=10)
        assert len(dropped) >= 3
        # the sidecar answered the technician's NACKs for exactly the packets it lost
        answered_seqs = {args[0] for args in answered}
        assert {p.sequence_number for p in dropped[:-1]} <= answered_seqs
        in_clip_order(video.digests[start:], vp8_clip)  # no frame lost, none torn
        assert phone_retransmits == []  # the phone was never asked for them
        assert (sidecar.app[CODECS].encoders, sidecar.app[CODECS].decoders) == (0, 0)
        await phone.pc.close()
        await tech.pc.close()

    with_sidecar(scenario)


def test_the_sidecar_nacks_the_phone_again_when_a_retransmission_is_lost(with_sidecar, vp8_clip):
    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        video = tech.received["video"]
        await video.wait_for(5, timeout=10)
        phone_sender = phone.pc.getTransceivers()[0].sender
        phone_retransmits: list = []
        count_calls(phone_sender, "_retransmit", phone_retransmits)
        media_ssrc, rtx_ssrc = phone_sender._ssrc, phone_sender._rtx_ssrc
        target: dict[str, int] = {}

        def lose_once_and_its_first_retransmission(packet: RtpPacket) -> bool:
            if packet.ssrc == media_ssrc and not target and packet.sequence_number % 7 == 3:
                target["seq"], target["rtx"] = packet.sequence_number, 0
                return True
            if (
                packet.ssrc == rtx_ssrc
                and target
                and int.from_bytes(packet.payload[:2], "big") == target["seq"]
            ):
                target["rtx"] += 1
                return target["rtx"] == 1
            return False

        session = sidecar.app[SESSIONS].get("s1")
        drop_sent(phone_sender.transport, lose_once_and_its_first_retransmission)
        start = len(video.digests)
        await video.wait_for(start + 30, timeout=10)
        await wait_until(lambda: target.get("rtx", 0) >= 2, 5)
        # the phone was asked twice for the packet: the first answer was lost
        assert [args[0] for args in phone_retransmits].count(target["seq"]) >= 2
        in_clip_order(video.digests[start:], vp8_clip)  # and the frame was not given up
        buffer_link = session.publisher.receiver("video")._RTCRtpReceiver__jitter_buffer.link
        assert buffer_link.rtt_samples == 0 or buffer_link.rtt < 0.5
        await phone.pc.close()
        await tech.pc.close()

    with_sidecar(scenario)


def test_the_phone_legs_round_trip_follows_its_rtcp_before_any_nack(
    with_sidecar, vp8_clip, opus_clip
):
    """Nothing lost, no NACK answered: the phone leg's round trip is the one the phone's
    receiver reports of the technician's audio give (aiortc answers no XR)."""

    async def scenario(sidecar):
        phone = await start_phone(
            sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip, audio=opus_clip
        )
        delay_rtcp(phone.pc.getTransceivers()[0].sender.transport, 0.4)  # a bad link
        tech = await start_technician(
            sidecar.http, sidecar.base_url, sidecar.secret, "s1", audio=opus_clip
        )
        session = sidecar.app[SESSIONS].get("s1")
        link = passthrough.video_buffer(session.publisher.receiver("video")).link
        await wait_until(lambda: link.rtcp_rtt_samples >= 2, timeout=20)
        assert link.rtt_samples == 0  # no NACK answered
        assert 0.4 <= link.rtt < 0.55  # the delayed reports, not the initial guess
        assert link.give_up > LinkEstimate().give_up
        recovery = session.state()["publisher"]["transport"]["recovery"]
        assert recovery["rtcp_rtt_ms"] >= 400
        assert recovery["rtcp_rtt_samples_sr_xr"][0] >= 2
        await phone.pc.close()
        await tech.pc.close()

    with_sidecar(scenario, timeout=40)


def test_the_sidecars_own_rtcp_goes_straight_to_the_socket(with_sidecar, vp8_clip):
    """aiortc's reports on the sidecar's legs (sender reports here) reach the peer
    without aioice's send coroutines (``passthrough.send_rtcp_directly``)."""

    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        await tech.received["video"].wait_for(1, timeout=10)
        session = sidecar.app[SESSIONS].get("s1")
        sender = session.subscriber.transceivers["video"].sender
        ice_transport = sender.transport.transport
        aioice_send = ice_transport._send
        srtp_through_aioice: list[bytes] = []

        async def counted_send(data: bytes) -> None:
            if 127 < data[0] < 192:  # SRTP or SRTCP (RFC 7983), not DTLS or STUN
                srtp_through_aioice.append(data)
            await aioice_send(data)

        ice_transport._send = counted_send
        receiver = next(t.receiver for t in tech.pc.getTransceivers() if t.kind == "video")
        reports = receiver._RTCRtpReceiver__lsr
        reports.clear()
        await wait_until(lambda: sender._ssrc in reports, 5)  # a sender report since
        assert srtp_through_aioice == []
        await phone.pc.close()
        await tech.pc.close()

    with_sidecar(scenario)


def test_the_phone_legs_round_trip_follows_its_answers_to_xr_reference_times(
    with_sidecar, vp8_clip
):
    """A technician without a microphone: the sidecar sends the phone no audio, so the
    round trip comes from XR (RRTR → the phone's DLRR), the sidecar's own measure."""

    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        sender = phone.pc.getTransceivers()[0].sender
        answered = answer_xr(sender.transport, sender._ssrc)
        delay_rtcp(sender.transport, 0.4)
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        session = sidecar.app[SESSIONS].get("s1")
        link = passthrough.video_buffer(session.publisher.receiver("video")).link
        await wait_until(lambda: link.rtcp_rtt_samples >= 2, timeout=20)
        assert len(answered) >= 2 and session.publisher.round_trip.xr_samples >= 2
        assert link.rtt_samples == 0
        # the answer's hold (0.1 s, in its DLRR) is not part of the round trip
        assert 0.4 <= link.rtt < 0.48
        await phone.pc.close()
        await tech.pc.close()

    with_sidecar(scenario, timeout=40)


def vp8_packet(seq: int, timestamp: int, picture_id: int, start: bool, key: bool) -> RtpPacket:
    descriptor = bytes([0x90 if start else 0x80, 0x80, 0x80 | picture_id >> 8, picture_id & 0xFF])
    header = bytes([0x00 if key else 0x01, 0, 0, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01])
    p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp, ssrc=1111)
    p.payload = descriptor + (header if start else b"\x55")
    p.marker = 0 if start else 1
    return p


def test_a_leg_is_one_continuous_stream_across_a_phone_reconnect():
    clock = [10.0]
    rewriter = LegRewriter(
        ssrc=4242, payload_type=120, mime_type="video/vp8", clock=lambda: clock[0]
    )
    out = []

    def feed(packets):
        for p in packets:
            rewritten, _ = rewriter.rewrite(p)
            if rewritten is not None:
                out.append(rewritten)

    # the first phone: a delta frame (waits), then a keyframe and a delta frame
    feed([vp8_packet(500, 9000, 7, True, False), vp8_packet(501, 9000, 7, False, False)])
    assert out == []
    feed([vp8_packet(502, 12000, 8, True, True), vp8_packet(503, 12000, 8, False, True)])
    feed([vp8_packet(504, 15000, 9, True, False), vp8_packet(505, 15000, 9, False, False)])
    clock[0] += 1.0
    rewriter.restart()  # a new phone leg: other SSRC, sequence numbers, clock, picture IDs
    feed([vp8_packet(60000, 777, 30000, True, False)])  # not a keyframe: waits
    feed([vp8_packet(60001, 3777, 30001, True, True), vp8_packet(60002, 3777, 30001, False, True)])
    feed([vp8_packet(59990, 1, 1, True, False)])  # stale: sent before the restart point
    assert len(out) == 6
    assert {p.ssrc for p in out} == {4242} and {p.payload_type for p in out} == {120}
    seqs = [p.sequence_number for p in out]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(6)]
    pictures = [parse_vp8(p.payload) for p in out]
    ids = [
        ((p.payload[d.picture_id_at] & 0x7F) << 8) | p.payload[d.picture_id_at + 1]
        for p, d in zip(out, pictures, strict=True)
    ]
    assert ids[::2] == [ids[0], (ids[0] + 1) & 0x7FFF, (ids[0] + 2) & 0x7FFF]
    timestamps = [p.timestamp for p in out]
    assert timestamps[2] - timestamps[0] == 3000
    # the new phone's keyframe follows about one second (the time that passed) later
    assert abs(((timestamps[4] - timestamps[2]) & 0xFFFFFFFF) - 90000) < 100
    assert [p.marker for p in out] == [0, 1, 0, 1, 0, 1]
    assert out[4].payload[4:] == vp8_packet(60001, 3777, 30001, True, True).payload[4:]


def test_technicians_joining_with_their_phones_get_a_keyframe_at_once(with_sidecar):
    """Legs connecting at the same time: a keyframe the phone sent before the technician's
    leg could carry it must not leave that leg waiting for the next natural keyframe."""
    from lens.media.testing import encode_vp8_clip

    clip = encode_vp8_clip(seconds=4.0, keyframe_every=120)

    async def scenario(sidecar):
        import asyncio

        async def session(sid):
            phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, sid, clip)
            tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, sid)
            try:
                await tech.received["video"].wait_for(1, timeout=3.0)  # the clip's next: 4 s
                assert tech.received["video"].keyframes == 1
            finally:
                await phone.pc.close()
                await tech.pc.close()

        await asyncio.gather(*(session(f"s{i}") for i in range(4)))

    with_sidecar(scenario)


def test_the_technicians_playout_floor_follows_the_phone_legs_link(with_sidecar, vp8_clip):
    """The floor sent with every frame (RTP playout delay) is the phone leg's link's: 0
    until a hole waited for a retransmission, then its round trip and jitter; a phone
    that reconnects brings its own link."""

    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        await tech.received["video"].wait_for(5, timeout=10)
        session = sidecar.app[SESSIONS].get("s1")
        floor = session.subscriber.outgoing["video"]._playout_floor
        link = passthrough.video_buffer(session.publisher.receiver("video")).link
        assert floor() == 0.0  # nothing lost on loopback: nothing added
        link.last_wait = link.clock()  # a hole just waited for its retransmission
        assert floor() == pytest.approx(link.playout_floor()) and floor() > 0.02
        await phone.pc.close()
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        await wait_until(
            lambda: (
                session.publisher is not None
                and session.publisher.link is not None
                and session.publisher.link is not link
            ),
            10,
        )
        assert floor() == 0.0  # the new phone's link lost nothing
        await phone.pc.close()
        await tech.pc.close()

    with_sidecar(scenario)


def test_a_hole_given_up_asks_the_phone_for_a_keyframe_without_the_frame_view(
    with_sidecar, vp8_clip
):
    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        await tech.received["video"].wait_for(5, timeout=10)
        session = sidecar.app[SESSIONS].get("s1")
        receiver = session.publisher.receiver("video")
        assert receiver.lens_lean.frame_view is False  # not recording: no reassembly
        buffer = passthrough.video_buffer(receiver)
        video = phone.sending["video"]
        target_sent = video.sent + 20  # wait out the rate limit after the join's request
        await wait_until(lambda: video.sent >= target_sent, 5)
        given_up, asked = buffer.holes_given_up, buffer.keyframe_requests
        phone_sender = phone.pc.getTransceivers()[0].sender
        media_ssrc, rtx_ssrc = phone_sender._ssrc, phone_sender._rtx_ssrc
        target: dict[str, int] = {}

        def lose_for_good(packet: RtpPacket) -> bool:
            if packet.ssrc == media_ssrc and not target and packet.sequence_number % 5 == 2:
                target["seq"] = packet.sequence_number
                return True
            if packet.ssrc == media_ssrc:
                return packet.sequence_number == target.get("seq")
            return packet.ssrc == rtx_ssrc and int.from_bytes(packet.payload[:2], "big") == (
                target.get("seq")
            )

        drop_sent(phone_sender.transport, lose_for_good)
        # after its give-up the sidecar asks the phone itself (one request in flight)
        await wait_until(lambda: buffer.holes_given_up > given_up, 5)
        assert buffer.keyframe_requests > asked
        await phone.pc.close()
        await tech.pc.close()

    with_sidecar(scenario)


def test_the_technicians_receiver_reports_give_the_sidecar_a_round_trip(with_sidecar, vp8_clip):
    """The sender reports of a forwarded leg (``passthrough.PacketSender`` keeps the fields
    aiortc builds them from: the clock once a frame, counts every packet) are right:
    the technician's browser reads the sidecar's packet count and clock from them, and its
    receiver reports give the sidecar the leg's round trip."""

    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        await tech.received["video"].wait_for(5, timeout=10)
        session = sidecar.app[SESSIONS].get("s1")
        sender = session.subscriber.transceivers["video"].sender
        # aiortc sends a report every 0.5-1.5 s; a round trip needs one answered
        rtt = "_RTCRtpSender__rtt"  # what aiortc's sender keeps from the receiver reports
        await wait_until(lambda: getattr(sender, rtt, None) is not None, timeout=10)
        assert 0 < getattr(sender, rtt) < 0.5  # loopback

        receiver = tech.pc.getTransceivers()[0].receiver
        report = [
            s for s in (await receiver.getStats()).values() if s.type == "remote-outbound-rtp"
        ]
        assert report, "the technician got no sender report"
        sent = sender._RTCRtpSender__packet_count
        assert 0 < report[0].packetsSent <= sent and report[0].bytesSent > 0
        # the report's wall clock is the time of a frame sent just before it
        age = datetime.datetime.now(datetime.UTC) - report[0].remoteTimestamp
        assert abs(age.total_seconds()) < 2.0
        await phone.pc.close()
        await tech.pc.close()

    with_sidecar(scenario)
