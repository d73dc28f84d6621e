"""The forwarding jitter buffer gives up on a lost packet after a bounded wait."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from lens.media.passthrough import STALL_SECONDS, ForwardingVideoBuffer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def packet(sequence: int, timestamp: int, marker: bool) -> RtpPacket:
    p = RtpPacket(payload_type=96, sequence_number=sequence, timestamp=timestamp, ssrc=1234)
    p.marker = int(marker)
    p._data = bytes([sequence % 256])  # what aiortc's depayloader leaves on the packet
    return p


def test_a_hole_is_given_up_after_stall_seconds_though_few_packets_came():
    clock = Clock()
    buffer = ForwardingVideoBuffer(clock=clock)
    assert buffer.add(packet(0, 3000, True))[1] is not None  # a whole frame
    # packet 1, a frame of its own, is lost; the frames after it wait behind the hole
    assert buffer.add(packet(2, 6000, True)) == (False, None)
    clock.now += STALL_SECONDS / 2
    assert buffer.add(packet(3, 9000, True)) == (False, None)  # a NACK may still bring it
    clock.now += STALL_SECONDS
    # 4 packets, far fewer than STALL_PACKETS: the time alone gives up on packet 1
    assert buffer.add(packet(4, 12000, True)) == (True, None)  # True: ask for a keyframe
    frame = buffer.add(packet(5, 15000, True))[1]
    assert frame is not None and frame.data == bytes([2])
    assert not frame.contiguous  # the frame after the gap is marked, so it is not forwarded


def test_a_hole_filled_in_time_by_a_retransmission_is_not_skipped():
    clock = Clock()
    buffer = ForwardingVideoBuffer(clock=clock)
    buffer.add(packet(0, 3000, True))
    assert buffer.add(packet(2, 6000, True)) == (False, None)
    clock.now += STALL_SECONDS / 2
    pli, frame = buffer.add(packet(1, 6000, False))  # the NACKed packet arrives
    assert pli is False
    assert frame is not None and frame.data == bytes([1, 2]) and frame.contiguous
