"""ForwardedTrack on its own: keyframe gating, bounded hand-off, stale frames dropped."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from lens.media.relay import LATE_AFTER, ForwardedTrack, RelayTotals

pytestmark = pytest.mark.media

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
KEY, DELTA = b"\x00key", b"\x01delta"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(data: bytes, index: int) -> JitterFrame:
    return JitterFrame(data=data, timestamp=index * 3000)


@pytest.fixture
def track_and_clock():
    clock = FakeClock()
    requests: list[int] = []
    track = ForwardedTrack("video", VP8, lambda: requests.append(1), RelayTotals(), clock)
    return track, clock, requests


def test_waits_for_a_keyframe_and_asks_for_one(track_and_clock):
    track, clock, requests = track_and_clock
    track.offer(VP8, frame(DELTA, 0))
    assert track.stats.frames_dropped == 1 and requests
    track.offer(VP8, frame(KEY, 1))
    packet = asyncio.run(track.recv())
    assert bytes(packet) == KEY and packet.pts == 3000


def test_a_backlog_is_thrown_away_not_queued(track_and_clock):
    track, clock, requests = track_and_clock
    track.offer(VP8, frame(KEY, 0))
    for index in range(1, 5):  # the sender takes nothing: the hand-off overflows
        clock.now += 1 / 30
        track.offer(VP8, frame(DELTA, index))
    assert len(track._pending) <= 3
    assert track.stats.frames_dropped >= 3 and requests


def test_stale_frames_are_dropped_until_a_timely_keyframe(track_and_clock):
    track, clock, requests = track_and_clock
    track.offer(VP8, frame(KEY, 0))
    clock.now += 1 / 30
    track.offer(VP8, frame(DELTA, 1))
    asyncio.run(track.recv())
    asyncio.run(track.recv())
    clock.now += 1 / 30 + LATE_AFTER + 0.1  # frame 2 arrives stale
    track.offer(VP8, frame(DELTA, 2))
    assert track.stats.frames_dropped == 1 and requests
    clock.now += 1 / 30 - LATE_AFTER - 0.1  # back on time, but a delta: still dropped
    track.offer(VP8, frame(DELTA, 3))
    assert track.stats.frames_dropped == 2
    clock.now += 1 / 30
    track.offer(VP8, frame(KEY, 4))
    assert bytes(asyncio.run(track.recv())) == KEY
