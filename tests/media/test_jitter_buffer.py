"""The forwarding jitter buffer with multi-packet frames: holes wait for their retransmission
as long as the link's give-up, then the buffer skips to the next keyframe; outages flush."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtpPacket

from lens.media.passthrough import ForwardingVideoBuffer
from lens.media.recovery import LinkEstimate, NackList

pytestmark = pytest.mark.media

FRAME = 1 / 30
TICKS = 3000
PACKETS_PER_FRAME = 3


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Phone:
    """Sends 3-packet VP8 frames at 30 fps into a buffer; a keyframe every `gop` frames."""

    def __init__(self, gop: int = 30, rtt: float | None = None) -> None:
        self.clock = Clock()
        self.link = LinkEstimate(self.clock)
        if rtt is not None:
            self.link.rtt_sample(rtt)
        self.nacks = NackList(self.link)
        self.requests: list[float] = []
        self.buffer = ForwardingVideoBuffer(
            link=self.link, request_keyframe=lambda: self.requests.append(self.clock.now)
        )
        self.gop = gop
        self.index = 0  # next frame
        self.sent: dict[int, RtpPacket] = {}

    def packets(self, index: int) -> list[RtpPacket]:
        key = index % self.gop == 0
        result = []
        for part in range(PACKETS_PER_FRAME):
            seq = (index * PACKETS_PER_FRAME + part) % 65536
            p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=index * TICKS, ssrc=1)
            p.marker = int(part == PACKETS_PER_FRAME - 1)
            # VP8 payload descriptor: S bit on a frame's first packet, partition 0
            p.payload = bytes([0x10 if part == 0 else 0x00, 0])
            first_byte = (0x00 if key else 0x01) if part == 0 else 0x55
            p._data = bytes([first_byte, index % 256, part])  # what aiortc's depayloader leaves
            result.append(p)
        return result

    def deliver(self, packet: RtpPacket) -> None:
        """One packet reaches the sidecar now (what the receiver does, in its order)."""
        retransmitted = packet.sequence_number in self.nacks.missing
        self.link.arrival(packet.timestamp, 90000, 100, retransmitted)
        self.nacks.add(packet.sequence_number)
        self.buffer.add(packet)

    def send(self, frames: int = 1, lose: set[tuple[int, int]] = frozenset()) -> None:
        """Send the next `frames` frames, one frame interval apart; lose (frame, part)s."""
        for _ in range(frames):
            for part, packet in enumerate(self.packets(self.index)):
                self.sent[packet.sequence_number] = packet
                if (self.index, part) not in lose:
                    self.deliver(packet)
            self.index += 1
            self.clock.now += FRAME

    def retransmit(self, frame: int, part: int) -> None:
        self.deliver(self.packets(frame)[part])

    def released(self) -> list[int]:
        """Frame indexes released so far (each checked complete: its 3 parts in order)."""
        indexes = []
        for frame in self.buffer.frames:
            assert len(frame.data) == 3 * PACKETS_PER_FRAME, frame.data
            assert [frame.data[3 * i + 2] for i in range(PACKETS_PER_FRAME)] == [0, 1, 2]
            indexes.append(frame.timestamp // TICKS)
        return indexes


def test_complete_frames_are_released_at_once():
    phone = Phone()
    phone.send(3)
    assert phone.released() == [0, 1, 2]
    assert phone.buffer.frames[0].contiguous and phone.buffer.frames[2].contiguous
    assert phone.requests == []


@pytest.mark.parametrize("part", [0, 1, 2], ids=["first", "middle", "last"])
def test_a_lost_packet_is_waited_for_then_the_buffer_skips_to_the_next_keyframe(part):
    phone = Phone(gop=30)
    phone.send(5)
    give_up = phone.link.give_up
    phone.send(1, lose={(5, part)})  # frame 5 misses one packet; no retransmission comes
    frames_in_give_up = int(give_up / FRAME)
    phone.send(frames_in_give_up - 1)
    assert phone.released() == [0, 1, 2, 3, 4]  # the frames after the hole wait for it
    assert phone.requests == []
    # past the give-up (a lost last packet is noticed when the next frame begins): the
    # hole is given up and a keyframe asked for at once
    phone.send(3)
    assert phone.buffer.holes_given_up == 1
    assert len(phone.requests) == 1
    assert phone.requests[0] - (100 + 5 * FRAME) <= give_up + 3 * FRAME
    assert phone.released() == [0, 1, 2, 3, 4]  # delta frames cannot be decoded now
    phone.send(30 - phone.index)  # up to the next keyframe (frame 30)
    phone.send(2)
    assert phone.released() == [0, 1, 2, 3, 4, 30, 31]
    assert not phone.buffer.frames[5].contiguous
    assert phone.buffer.frames[6].contiguous
    # one request in flight: it is not repeated before its round trip plus transmission
    assert len(phone.requests) <= 2


@pytest.mark.parametrize("part", [0, 1, 2], ids=["first", "middle", "last"])
def test_a_retransmission_within_the_give_up_fills_the_hole_and_releases_the_backlog(part):
    phone = Phone()
    phone.send(2)
    phone.send(1, lose={(2, part)})
    phone.send(4)
    assert phone.released() == [0, 1]
    phone.clock.now += 0.1
    phone.retransmit(2, part)
    assert phone.released() == [0, 1, 2, 3, 4, 5, 6]  # all at once, in order
    assert all(frame.contiguous for frame in phone.buffer.frames)
    assert phone.requests == []


def test_a_long_round_trip_waits_longer_for_a_retransmission():
    phone = Phone()
    phone.link.rtt_sample(0.45)  # a bad mobile link
    assert phone.link.give_up > 1.1
    phone.send(2)
    phone.send(1, lose={(2, 1)})
    phone.send(int(0.9 / FRAME))  # 0.9 s: longer than the old fixed 0.3 s give-up
    phone.retransmit(2, 1)  # the second NACK's retransmission arrives
    assert phone.released() == list(range(phone.index))
    assert phone.requests == [] and phone.buffer.holes_given_up == 0


def test_a_lost_keyframe_packet_is_waited_for_and_the_keyframe_released():
    phone = Phone(gop=10)
    phone.send(10)
    phone.send(1, lose={(10, 1)})  # the middle of keyframe 10
    phone.send(3)
    assert phone.released() == list(range(10))
    phone.retransmit(10, 1)
    assert phone.released() == list(range(14))
    assert phone.requests == []


def test_a_keyframe_lost_for_good_is_skipped_to_the_next_one():
    phone = Phone(gop=10, rtt=0.05)  # give-up ~0.16 s: 5 frames
    phone.send(10)
    phone.send(1, lose={(10, 0)})  # the keyframe's first packet, never retransmitted
    phone.send(9)
    assert len(phone.requests) == 1  # given up within the give-up, keyframe asked for
    phone.send(2)
    assert phone.released() == [*range(10), 20, 21]
    assert not phone.buffer.frames[10].contiguous


def test_a_lost_packet_of_the_first_keyframe_after_a_give_up_is_waited_for_too():
    phone = Phone(gop=10, rtt=0.02)  # a give-up of 5 frames or less
    phone.send(3)
    phone.send(1, lose={(3, 1)})
    phone.send(6)  # the hole is given up; frames 4..9 wait for a keyframe
    assert phone.buffer.holes_given_up == 1
    phone.send(1, lose={(10, 0)})  # the keyframe's first packet is lost: wait for it
    phone.send(1)
    phone.retransmit(10, 0)
    assert phone.released() == [0, 1, 2, 10, 11]


def test_a_five_second_outage_flushes_and_asks_once_then_shows_the_first_keyframe():
    phone = Phone(gop=1000)  # the phone sends a keyframe only when asked
    phone.send(30)
    # 5 s of total loss: the phone keeps sending into the dead link
    outage = int(5.0 / FRAME)
    phone.send(outage - 1, lose={(i, p) for i in range(30, 31 + outage) for p in range(3)})
    resumed, torn = phone.clock.now, phone.index
    phone.send(1, lose={(torn, 1)})  # the first frame after the outage is torn
    phone.send(3)  # delta frames after the outage: undecodable
    assert phone.released() == list(range(30))
    assert len(phone.requests) == 1  # the silence: flush and ask, once
    assert phone.requests[0] == resumed
    # the packets sent into the outage are not NACKed; the one lost after it is
    assert phone.nacks.missing == {torn * PACKETS_PER_FRAME + 1}
    # the phone answers with a keyframe; it is shown as soon as it is complete
    phone.gop, key = 1, phone.index
    phone.send(1)
    phone.gop = 1000
    phone.send(2)
    assert phone.released() == [*range(30), key, key + 1, key + 2]
    assert len(phone.requests) == 1


def test_the_buffer_survives_sequence_number_wrap():
    phone = Phone(gop=30)
    phone.index = 65536 // PACKETS_PER_FRAME - 3  # frames whose packets wrap past 65535
    phone.send(1)  # a delta frame at the start: skipped until a keyframe
    phone.gop = 1
    phone.send(1)
    phone.gop = 30
    phone.send(4)
    assert len(phone.buffer.frames) == 5
    assert all(f.contiguous for f in phone.buffer.frames[1:])


def test_a_buffer_that_never_asks_leaves_the_keyframe_gate_to_the_technician():
    """The frame view of a forwarding session does not ask for keyframes itself; when it
    gives up a hole, the technician's PLI (which goes through the same one-in-flight gate)
    must still go out at once. (On the 'bad' link profile a gate taken by requests that were
    never sent held every technician PLI back: 1 PLI reached the phone of 5, frozen 13 s.)"""
    phone = Phone(gop=300)
    phone.buffer = ForwardingVideoBuffer(link=phone.link, request_keyframe=None)
    phone.send(5)
    phone.send(1, lose={(5, 1)})
    phone.send(int(phone.link.give_up / FRAME) + 3)
    assert phone.buffer.holes_given_up == 1
    assert phone.buffer.keyframe_requests == 0
    assert phone.buffer.keyframes.may_send()  # the technician's request goes out now
