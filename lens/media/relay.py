"""Forwarded tracks: encoded frames in, av.Packets out, with a latest-only hand-off."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import av
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

VIDEO_FRAME_TICKS = 3000  # one frame at 30 fps on the 90 kHz clock
AUDIO_FRAME_TICKS = 960  # 20 ms of Opus on the 48 kHz clock
# Frames a track holds for its sender: enough to ride out one scheduling burst (the
# jitter buffer can release two frames back to back), never a growing backlog.
HANDOFF_FRAMES = {"video": 3, "audio": 5}
# A frame this far behind the stream's best recent arrival is stale: a backlog built up
# somewhere (a starved event loop, socket buffers). Forwarding it would only pass the
# delay on, so it is dropped and the stream restarts at a keyframe.
LATE_AFTER = 0.3  # seconds; the phone's video uses its link's measure (recovery.late_after)
BASELINE_WINDOW = 5.0  # seconds: the best arrival is re-learnt this often (clock drift)


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """True if an encoded video frame can be decoded on its own."""
    if not data:
        return False
    if mime_type == "video/vp8":
        return data[0] & 0x01 == 0
    if mime_type == "video/h264":
        return any(nal_type in (5, 7) for nal_type in _h264_nal_types(data))
    return True


def _h264_nal_types(data: bytes) -> list[int]:
    types = []
    start = data.find(b"\x00\x00\x01")
    while start != -1 and start + 3 < len(data):
        types.append(data[start + 3] & 0x1F)
        start = data.find(b"\x00\x00\x01", start + 3)
    return types


def vp8_resolution(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header, None for other frames."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


class StreamDelay:
    """How late frames arrive relative to the stream's own clock and its best recent frame."""

    def __init__(
        self,
        clock_rate: int,
        clock: Callable[[], float] = time.monotonic,
        late_after: Callable[[], float] = lambda: LATE_AFTER,
    ) -> None:
        self._clock_rate = clock_rate
        self._clock = clock
        self._late_after = late_after
        self.reset()

    def reset(self) -> None:
        """Forget the baseline (the stream's clock changed)."""
        self._previous_best: float | None = None
        self._best: float | None = None
        self._window_start: float | None = None

    def is_late(self, timestamp: int) -> bool:
        """True if the frame with this (mapped) RTP timestamp is stale on arrival."""
        now = self._clock()
        offset = now - timestamp / self._clock_rate
        if self._window_start is None or now - self._window_start >= BASELINE_WINDOW:
            self._previous_best = self._best if self._best is not None else offset
            self._best = offset
            self._window_start = now
        else:
            self._best = min(self._best, offset)
        return offset - min(self._previous_best, self._best) > self._late_after()


@dataclass
class ForwardingStats:
    """What one forwarded track did (and, summed, what the relay did)."""

    frames_forwarded: int = 0
    bytes_forwarded: int = 0
    frames_dropped: int = 0
    keyframes_forwarded: int = 0


@dataclass
class RelayTotals:
    """Process-lifetime totals for /metrics, kept by the session registry."""

    by_kind: dict[str, ForwardingStats] = field(
        default_factory=lambda: {"video": ForwardingStats(), "audio": ForwardingStats()}
    )
    keyframe_requests: int = 0


class ForwardedTrack(MediaStreamTrack):
    """A track whose recv() returns the encoded frames another leg received, as av.Packets.

    The hand-off is bounded and keeps the latest frames: when the sender falls behind by
    more than HANDOFF_FRAMES, the backlog is thrown away. For video that breaks the
    reference chain, so the track then drops delta frames and asks for a keyframe until
    one arrives (the subscriber sees a short freeze, never a growing delay). Frames that
    arrive more than LATE_AFTER behind the stream's clock are dropped the same way.
    """

    def __init__(
        self,
        kind: str,
        codec: RTCRtpCodecParameters,
        request_keyframe: Callable[[], None],
        totals: RelayTotals,
        clock: Callable[[], float] = time.monotonic,
        late_after: Callable[[], float] = lambda: LATE_AFTER,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.codec = codec
        self.mime_type = codec.mimeType.lower()
        self.stats = ForwardingStats()
        self.resolution: tuple[int, int] | None = None
        self._request_keyframe = request_keyframe
        self._totals = totals.by_kind[kind]
        self._time_base = fractions.Fraction(1, codec.clockRate)
        self._frame_ticks = VIDEO_FRAME_TICKS if kind == "video" else AUDIO_FRAME_TICKS
        self._pending: deque[JitterFrame] = deque()
        self._capacity = HANDOFF_FRAMES[kind]
        self._ready = asyncio.Event()
        self._needs_keyframe = kind == "video"
        self._pts_offset = 0
        self._last_pts: int | None = None
        self._rebase = False
        self._delay = StreamDelay(codec.clockRate, clock, late_after)

    def source_changed(self) -> None:
        """A new publisher leg (new RTP clock) feeds this track: keep pts increasing."""
        self._rebase = True
        self._delay.reset()
        self._discard_pending()
        if self.kind == "video":
            self._needs_keyframe = True

    def resync(self) -> None:
        """Forwarding restarts (resume after hold): wait for and ask for a keyframe."""
        self._discard_pending()
        if self.kind == "video":
            self._needs_keyframe = True
            self._request_keyframe()

    def offer(self, codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
        """Hand one received encoded frame to the sender (called on the event loop)."""
        if self.readyState != "live":
            return
        if codec.mimeType.lower() != self.mime_type:
            self._drop()  # the legs negotiated different codecs: nothing can be forwarded
            return
        if self._delay.is_late(frame.timestamp):
            self._drop()
            if self.kind == "video":
                self._needs_keyframe = True
                self._request_keyframe()
            return
        if self.kind == "video":
            if not getattr(frame, "contiguous", True):
                self._needs_keyframe = True
            if self._needs_keyframe:
                if not is_keyframe(self.mime_type, frame.data):
                    self._drop()
                    self._request_keyframe()
                    return
                self._needs_keyframe = False
        if len(self._pending) >= self._capacity:
            # the sender is behind: keep only the newest, never grow the delay
            self._discard_pending()
            if self.kind == "video" and not is_keyframe(self.mime_type, frame.data):
                self._drop()
                self._needs_keyframe = True
                self._request_keyframe()
                return
        self._pending.append(frame)
        self._ready.set()

    async def recv(self) -> av.Packet:
        """Wait for the next forwarded frame and return it as an av.Packet."""
        while not self._pending:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._to_packet(self._pending.popleft())

    def stop(self) -> None:
        super().stop()
        self._ready.set()

    def _to_packet(self, frame: JitterFrame) -> av.Packet:
        if self._rebase and self._last_pts is not None:
            self._pts_offset = self._last_pts + self._frame_ticks - frame.timestamp
        self._rebase = False
        pts = frame.timestamp + self._pts_offset
        self._last_pts = pts
        packet = av.Packet(frame.data)
        packet.pts = pts
        packet.time_base = self._time_base
        size = len(frame.data)
        for stats in (self.stats, self._totals):
            stats.frames_forwarded += 1
            stats.bytes_forwarded += size
        if self.kind == "video" and is_keyframe(self.mime_type, frame.data):
            self.stats.keyframes_forwarded += 1
            self._totals.keyframes_forwarded += 1
            if self.mime_type == "video/vp8":
                self.resolution = vp8_resolution(frame.data) or self.resolution
        return packet

    def _discard_pending(self) -> None:
        for _ in range(len(self._pending)):
            self._drop()
        self._pending.clear()

    def _drop(self) -> None:
        self.stats.frames_dropped += 1
        self._totals.frames_dropped += 1
