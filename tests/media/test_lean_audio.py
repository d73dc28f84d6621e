"""The lean path's audio receiver (``passthrough.LeanAudioReceiver``): what the forwarding
audio buffer decided, taken inline (every audio packet both ways goes through it)."""

from __future__ import annotations

import pytest
from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpReceiver,
)
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from lens.media import passthrough
from lens.media.forwarder import RtpView

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


@pytest.fixture
def audio_receiver() -> RTCRtpReceiver:
    dtls = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    return RTCRtpReceiver("audio", dtls)


def opus(seq: int, timestamp: int) -> RtpView:
    return RtpView(111, 0, seq & 0xFFFF, timestamp & 0xFFFFFFFF, 0x5678, b"\xfc" + bytes(40))


def test_audio_goes_on_in_order_and_late_or_duplicate_packets_are_dropped(audio_receiver):
    handed: list[tuple[int, int]] = []
    tap = passthrough.FrameTap(lambda codec, frame: None, lambda: None)
    passthrough.divert_receiver(
        audio_receiver,
        "audio",
        tap,
        on_packet=lambda packet: handed.append((packet.sequence_number, packet.timestamp)),
    )
    lean = audio_receiver.lens_lean
    for seq, timestamp in [(10, 960), (11, 1920), (11, 1920), (13, 3840), (12, 2880), (14, 4800)]:
        lean.handle(opus(seq, timestamp), OPUS)
    # the duplicate and the packet overtaken by a later one are not handed on (the
    # technician's stream, and a recording's, stay in timestamp order)
    assert handed == [(10, 960), (11, 1920), (13, 3840), (14, 4800)]
    # every packet that came counts in the receiver reports, dropped or not
    stats = audio_receiver._RTCRtpReceiver__remote_streams[0x5678]
    assert stats.packets_received == 6
    assert stats.max_seq == 14


def test_audio_timestamps_wrapping_around_are_not_taken_for_late(audio_receiver):
    handed: list[int] = []
    tap = passthrough.FrameTap(lambda codec, frame: None, lambda: None)
    passthrough.divert_receiver(
        audio_receiver, "audio", tap, on_packet=lambda packet: handed.append(packet.timestamp)
    )
    lean = audio_receiver.lens_lean
    for i, timestamp in enumerate([0xFFFFFFFF - 959, 0, 960, 0xFFFFFFFF - 959]):
        lean.handle(opus(100 + i, timestamp), OPUS)
    assert handed == [0xFFFFFFFF - 959, 0, 960]


def test_without_a_packet_route_audio_reaches_the_tap_as_frames(audio_receiver):
    frames: list[tuple[bytes, int]] = []
    tap = passthrough.FrameTap(lambda codec, frame: frames.append(frame.data), lambda: None)
    passthrough.divert_receiver(audio_receiver, "audio", tap)
    lean = audio_receiver.lens_lean
    lean.handle(opus(1, 960), OPUS)
    lean.handle(opus(0, 0), OPUS)  # late: dropped
    lean.handle(opus(2, 1920), OPUS)
    assert len(frames) == 2
