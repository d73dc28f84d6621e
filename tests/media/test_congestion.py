"""Transport-cc feedback: what arrived, when, and what did not, in the draft's format."""

from __future__ import annotations

import struct

import pytest
from aiortc import RTCRtpReceiver

from lens.media.congestion import TransportFeedback, parse_feedback
from lens.media.passthrough import TRANSPORT_CC_URI

pytestmark = pytest.mark.media


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_feedback_reports_arrivals_losses_and_large_gaps():
    clock = Clock()
    feedback = TransportFeedback(clock)
    # 65534, 65535, (0 lost), 1 ... across the wrap; then one 20 ms late, one 9 s late
    arrivals = {65534: 0.0, 65535: 0.0012, 1: 0.004, 2: 0.024, 3: 0.0245}
    for seq, at in arrivals.items():
        feedback.add(seq, clock.now + at)
    feedback.add(4, clock.now + 9.0)  # beyond a two-byte delta (8.19 s): next packet
    data = feedback.build(sender_ssrc=11, media_ssrc=22)
    assert len(data) % 4 == 0
    assert struct.unpack("!H", data[2:4])[0] == len(data) // 4 - 1
    assert struct.unpack("!II", data[4:12]) == (11, 22)
    base, reference, times = parse_feedback(data)
    assert base == 65534
    assert times[2] is None  # sequence number 0 was lost
    received = [t for t in times if t is not None]
    assert len(times) == 6 and len(received) == 5
    # arrival spacing survives at 250 µs resolution
    steps = [b - a for a, b in zip(received, received[1:], strict=False)]
    assert steps == pytest.approx([1250, 2750, 20000, 500], abs=250)
    later = feedback.build(11, 22)
    base, reference_later, times = parse_feedback(later)
    assert base == 4 and len(times) == 1
    assert (reference_later - reference) * 64 == pytest.approx(9000, abs=64)
    assert feedback.build(11, 22) is None  # nothing new


def test_a_packet_older_than_the_last_feedback_is_not_reported_again():
    clock = Clock()
    feedback = TransportFeedback(clock)
    for seq in (10, 12):
        feedback.add(seq, clock.now)
    first = parse_feedback(feedback.build(1, 2))
    assert first[0] == 10 and first[2][1] is None
    feedback.add(11, clock.now)  # reordered, after it was reported lost
    feedback.add(13, clock.now)
    base, _, times = parse_feedback(feedback.build(1, 2))
    assert base == 13 and len(times) == 1


def test_answers_offer_transport_cc_instead_of_remb():
    video = RTCRtpReceiver.getCapabilities("video")
    assert TRANSPORT_CC_URI in [e.uri for e in video.headerExtensions]
    assert all("abs-send-time" not in e.uri for e in video.headerExtensions)
    from aiortc.codecs import CODECS

    vp8 = next(c for c in CODECS["video"] if c.mimeType == "video/VP8")
    types = [f.type for f in vp8.rtcpFeedback]
    assert "transport-cc" in types and "goog-remb" not in types


def test_pending_says_whether_another_feedback_packet_is_due():
    """The sender's timer sends again at once while arrivals are left over (more than one
    feedback packet can carry), and not when everything was reported."""
    feedback = TransportFeedback(clock=Clock())
    for seq in range(1500):
        feedback.add(seq, arrival=seq * 0.001)
    assert feedback.pending
    assert feedback.build(1, 2) is not None
    assert feedback.pending  # 1,000 per packet: 500 are left
    assert feedback.build(1, 2) is not None
    assert not feedback.pending


def test_the_phones_transport_cc_numbers_are_read_off_the_wire_with_kernel_stamps(
    with_sidecar, vp8_clip
):
    """The phone's packets carry transport-wide sequence numbers (Chrome's do; an aiortc
    sender does not, so they are added on the way out): the sidecar reads them on its lean
    path with the kernel's arrival stamps and sends feedback."""
    from aiortc.rtp import RtpPacket, is_rtcp

    from lens.media.app import SESSIONS
    from lens.media.testing import start_phone, start_technician, wait_until

    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        sender = phone.pc.getTransceivers()[0].sender
        extensions = sender._RTCRtpSender__rtp_header_extensions_map
        dtls = sender.transport
        original = dtls._send_rtp
        counter = [0]

        async def numbered(data: bytes) -> None:
            if not is_rtcp(data):
                packet = RtpPacket.parse(data, extensions)
                packet.extensions.transport_sequence_number = counter[0] & 0xFFFF
                counter[0] += 1
                data = packet.serialize(extensions)
            await original(data)

        dtls._send_rtp = numbered
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        await tech.received["video"].wait_for(10, timeout=10)
        session = sidecar.app[SESSIONS].get("s1")
        congestion = session.publisher.congestion
        await wait_until(lambda: congestion.feedback.packets_sent >= 3, 5)
        transport = session.publisher.state()["transport"]
        assert transport["lean_packets"] > 0
        assert transport["kernel_stamped"] > 0  # arrival times from the kernel
        await phone.pc.close()
        await tech.pc.close()

    with_sidecar(scenario)
