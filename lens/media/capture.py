"""Snapshots and recordings of the phone's video, kept off the forwarding path.

* :class:`VideoHistory` keeps the video packets since the last keyframe (bounded), so
  that a snapshot can reassemble and decode the current picture on demand. Nothing is decoded while
  forwarding; :func:`decode_snapshot` makes a decoder for one snapshot, in an executor.
* :class:`Recorder` muxes the forwarded encoded frames into a WebM (VP8 + Opus) or
  Matroska (H.264 + Opus) file as they are: PyAV's muxer, no encoder. The event loop only
  stamps a frame and puts it on a bounded queue; a thread of the recorder's own writes.
"""

from __future__ import annotations

import asyncio
import fractions
import io
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from aiortc.jitterbuffer import JitterFrame

from lens.media.relay import is_keyframe, vp8_resolution

logger = logging.getLogger(__name__)

# A snapshot decodes every frame since the last keyframe: bound that work and the memory.
# Past either bound the history is dropped and a keyframe is asked for.
HISTORY_PACKETS = 3000  # ~10 s of 1 Mbps video
HISTORY_BYTES = 8 * 1024 * 1024
# Frames waiting for the recording's writer thread; beyond this the writer is too slow
# and frames are dropped (video then restarts at a keyframe), never queued without end.
RECORDING_QUEUE = 600
CLOCK_RATES = {"video": 90000, "audio": 48000}
RTP_WRAP = 1 << 32

DECODERS = {"video/vp8": "vp8", "video/h264": "h264"}
CONTAINERS = {"video/vp8": ("webm", ".webm"), "video/h264": ("matroska", ".mkv")}
# Crash safety: the muxer keeps the open cluster in memory and writes it when the next one
# starts; short clusters, each written to the file at once, mean that a sidecar killed
# mid-recording leaves a playable file lacking at most the last half second (tests/scaleout).
MUXER_OPTIONS = {"cluster_time_limit": "500", "flush_packets": "1"}


class CaptureError(Exception):
    """A snapshot or recording that could not be made."""


@dataclass
class CaptureTotals:
    """Process-lifetime snapshot and recording counters for /metrics."""

    snapshots: int = 0
    snapshot_failures: int = 0
    snapshot_decoders: int = 0
    recordings_started: int = 0
    recordings_finished: int = 0
    recording_failures: int = 0
    recording_frames_written: int = 0
    recording_frames_dropped: int = 0
    recording_bytes_written: int = 0


class VideoHistory:
    """The phone's video packets since its last keyframe began, for a snapshot to decode.

    Kept as the packets come (one list append each: nothing is reassembled while
    forwarding); a snapshot puts them in order and joins them into frames
    (:func:`frames_from_packets`), in the executor that decodes them."""

    def __init__(self) -> None:
        self.mime_type: str | None = None
        self.keyframe_seen = asyncio.Event()
        self._packets: list[tuple[int, int, int, bytes]] = []  # seq, timestamp, marker, payload
        self._bytes = 0
        self._keyframe_timestamp: int | None = None
        self._complete = False

    def add(
        self,
        mime_type: str,
        sequence_number: int,
        timestamp: int,
        marker: int,
        payload: bytes,
        starts_keyframe: bool,
    ) -> None:
        """Keep one packet (the history restarts at a keyframe's first packet)."""
        packet = (sequence_number, timestamp, marker, payload)
        packets = self._packets
        if (
            not starts_keyframe
            and packets
            and self._complete
            and len(packets) < HISTORY_PACKETS
            and self._bytes + len(payload) <= HISTORY_BYTES
            and mime_type == self.mime_type
        ):
            packets.append(packet)  # the common case, first
            self._bytes += len(payload)
            return
        if not payload:
            # a number that held no media (a FEC packet, padding): kept, so reassembly
            # finds no hole there
            if packets and len(packets) < HISTORY_PACKETS:
                packets.append(packet)
            return
        if starts_keyframe:
            # the first packet leads (reassembly counts from it); packets of this keyframe
            # that overtook it stay
            kept = [p for p in self._packets if 0 < (p[0] - sequence_number) & 0xFFFF < 0x8000]
            self.mime_type = mime_type
            self._packets = [packet, *kept]
            self._bytes = sum(len(p[3]) for p in self._packets)
            self._keyframe_timestamp = timestamp
            self._complete = False
            self.keyframe_seen.clear()
            marker = any(p[2] or p[1] != timestamp for p in kept)
        elif not self._packets:
            return  # waiting for a keyframe; asked for when a snapshot needs one
        elif (
            mime_type != self.mime_type
            or len(self._packets) >= HISTORY_PACKETS
            or self._bytes + len(payload) > HISTORY_BYTES
        ):
            self.clear()
            return
        else:
            self._packets.append(packet)
            self._bytes += len(payload)
        if not self._complete and (timestamp != self._keyframe_timestamp or marker):
            self._complete = True  # the keyframe's last packet, or a later frame, came
            self.keyframe_seen.set()

    def clear(self) -> None:
        self._packets, self._bytes = [], 0
        self._keyframe_timestamp = None
        self._complete = False
        self.keyframe_seen.clear()

    def packets(self) -> tuple[str, list[tuple[int, int, int, bytes]]] | None:
        """The codec and a copy of the packets from the last keyframe on, or None."""
        if not self._packets or self.mime_type is None or not self._complete:
            return None
        return self.mime_type, list(self._packets)


def frames_from_packets(
    packets: list[tuple[int, int, int, bytes]], depayload: Callable[[bytes], bytes]
) -> list[bytes]:
    """The encoded frames the packets make, keyframe first, in order, up to the first
    missing packet (what follows a hole cannot be decoded)."""
    if not packets:
        return []
    first = packets[0][0]
    ordered: dict[int, tuple[int, int, bytes]] = {}
    for seq, timestamp, marker, payload in packets:
        offset = (seq - first) & 0xFFFF
        if offset < 0x8000:  # (older ones came late, from before the keyframe)
            ordered[offset] = (timestamp, marker, payload)
    frames: list[bytes] = []
    parts: list[bytes] = []
    timestamp = None
    offset = 0
    while offset in ordered:
        packet_timestamp, marker, payload = ordered[offset]
        if not payload:  # no media there (a FEC packet, padding)
            offset += 1
            continue
        if parts and packet_timestamp != timestamp:
            frames.append(b"".join(parts))  # no marker, but the next frame began
            parts = []
        timestamp = packet_timestamp
        parts.append(depayload(payload))
        if marker:
            frames.append(b"".join(parts))
            parts = []
        offset += 1
    return frames


def decode_packets(
    mime_type: str,
    packets: list[tuple[int, int, int, bytes]],
    depayload: Callable[[bytes], bytes],
) -> tuple[bytes, int, int]:
    """Reassemble the packets a VideoHistory kept and decode the last picture (PNG)."""
    frames = frames_from_packets(packets, depayload)
    if not frames:
        raise CaptureError("the video has no complete picture yet")
    return decode_snapshot(mime_type, frames)


def decode_snapshot(mime_type: str, frames: list[bytes]) -> tuple[bytes, int, int]:
    """Decode `frames` (keyframe first) and return the last picture as PNG, width, height.

    CPU work: run it in an executor. The decoder lives only for this call.
    """
    decoder = av.CodecContext.create(DECODERS[mime_type], "r")
    picture = None
    try:
        for data in frames:
            for decoded in decoder.decode(av.Packet(data)):
                picture = decoded
        for decoded in decoder.decode(None):
            picture = decoded
    except av.FFmpegError as exc:
        raise CaptureError(f"cannot decode the video: {exc}") from exc
    if picture is None:
        raise CaptureError("the video has no complete picture yet")
    rgb = picture.reformat(format="rgb24")
    png = av.CodecContext.create("png", "w")
    png.width, png.height, png.pix_fmt = rgb.width, rgb.height, "rgb24"
    png.time_base = fractions.Fraction(1, 1)
    rgb.pts = 0
    data = b"".join(bytes(p) for p in [*png.encode(rgb), *png.encode(None)])
    return data, rgb.width, rgb.height


def recording_path(root: Path, requested: Any, video_mime: str) -> Path:
    """The file a recording may write: inside `root`, with the codec's container suffix."""
    if not isinstance(requested, str) or not os.path.isabs(requested):
        raise CaptureError("path must be an absolute file path")
    base = root.resolve()
    path = Path(requested).resolve()
    if not path.is_relative_to(base) or path == base:
        raise CaptureError("path is outside the recordings folder")
    return path.with_suffix(CONTAINERS[video_mime][1])


@dataclass
class _Stream:
    """Turns one stream's RTP timestamps into the recording's increasing timestamps."""

    clock_rate: int
    offset: int = 0
    first_rtp: int | None = None
    unwrapped: int = 0
    last_rtp: int = 0
    last_pts: int | None = None

    def restart(self) -> None:
        """A new RTP clock (the phone reconnected): continue from the arrival time."""
        self.first_rtp = None

    def pts(self, rtp_timestamp: int, seconds_since_start: float) -> int | None:
        if self.first_rtp is None:
            self.first_rtp = self.last_rtp = rtp_timestamp
            self.unwrapped = 0
            self.offset = round(seconds_since_start * self.clock_rate)
            if self.last_pts is not None:
                self.offset = max(self.offset, self.last_pts + 1)
        else:
            delta = (rtp_timestamp - self.last_rtp) % RTP_WRAP
            if delta >= RTP_WRAP // 2:
                return None  # older than what was written
            self.unwrapped += delta
            self.last_rtp = rtp_timestamp
        pts = self.offset + self.unwrapped
        if self.last_pts is not None and pts <= self.last_pts:
            return None
        self.last_pts = pts
        return pts


@dataclass
class RecordingResult:
    """What a finished recording wrote."""

    path: str
    duration: float
    size: int
    video_frames: int
    audio_frames: int
    frames_dropped: int
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "recording": False,
            "path": self.path,
            "duration": round(self.duration, 3),
            "size": self.size,
            "video_frames": self.video_frames,
            "audio_frames": self.audio_frames,
            "frames_dropped": self.frames_dropped,
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class Recorder:
    """One recording: the forwarded encoded frames, muxed into a file by a writer thread."""

    path: Path
    video_mime: str
    audio_mime: str | None
    request_keyframe: Callable[[], None]
    totals: CaptureTotals
    started_at: float = field(default_factory=time.monotonic)
    error: str | None = None
    frames_written: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    frames_dropped: int = 0

    def __post_init__(self) -> None:
        if self.audio_mime != "audio/opus":
            self.audio_mime = None  # WebM/Matroska here carry Opus; other audio is left out
        self._queue: queue.Queue[tuple[str, bytes, int, bool] | None] = queue.Queue(RECORDING_QUEUE)
        self._streams = {kind: _Stream(rate) for kind, rate in CLOCK_RATES.items()}
        self._needs_keyframe = True
        self._video_started = False
        self._origin: float | None = None
        self._stopping = False
        self._last_pts = {"video": 0, "audio": 0}
        self._thread = threading.Thread(
            target=self._write, name=f"lens-recording-{self.path.name}", daemon=True
        )
        self._thread.start()
        self.request_keyframe()  # the file starts at a keyframe

    # ----- on the event loop ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-ready progress: the file and the frames written so far."""
        return {
            "path": str(self.path),
            "started": self._origin is not None,
            "video_frames": self.frames_written["video"],
            "audio_frames": self.frames_written["audio"],
            "frames_dropped": self.frames_dropped,
        }

    def offer(self, kind: str, mime_type: str, frame: JitterFrame) -> None:
        """Queue one forwarded frame for the file (called on the event loop)."""
        if self._stopping or self.error is not None:
            return
        now = time.monotonic()
        key = False
        if kind == "video":
            if mime_type != self.video_mime:
                return
            if not getattr(frame, "contiguous", True):
                self._needs_keyframe = True
            key = is_keyframe(mime_type, frame.data)
            if self._needs_keyframe:
                if not key:
                    self.request_keyframe()
                    return
                self._needs_keyframe = False
                if self._origin is None:
                    self._origin = now
                    logger.info(
                        "recording %s starts at a keyframe %.0f ms after it was asked for",
                        self.path.name,
                        (now - self.started_at) * 1000,
                    )
            self._video_started = True
        elif not self._video_started or self.audio_mime is None or mime_type != self.audio_mime:
            return  # audio waits for the first keyframe, so the file starts with a picture
        assert self._origin is not None
        pts = self._streams[kind].pts(frame.timestamp, now - self._origin)
        if pts is None:
            return
        try:
            self._queue.put_nowait((kind, frame.data, pts, key))
        except queue.Full:
            self.frames_dropped += 1
            self.totals.recording_frames_dropped += 1
            if kind == "video":
                self._needs_keyframe = True  # the dropped frame broke the reference chain
                self.request_keyframe()

    def source_changed(self) -> None:
        """The phone reconnected: new RTP clocks, and the video restarts at a keyframe."""
        for stream in self._streams.values():
            stream.restart()
        self._needs_keyframe = True
        self.request_keyframe()

    def pause(self) -> None:
        """Hold: frames stop; after it the video must restart at a keyframe."""
        self._needs_keyframe = True

    async def stop(self) -> RecordingResult:
        """Finish the file (trailer, cues) and report what was written."""
        self._stopping = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._queue.put, None)
        await loop.run_in_executor(None, self._thread.join)
        size = await loop.run_in_executor(None, _file_size, self.path)
        duration = max(
            (
                (self._streams[kind].last_pts or 0) / rate
                for kind, rate in CLOCK_RATES.items()
                if self.frames_written[kind]
            ),
            default=0.0,
        )
        if self.error is None:
            self.totals.recordings_finished += 1
            self.totals.recording_bytes_written += size
        return RecordingResult(
            path=str(self.path),
            duration=duration,
            size=size,
            video_frames=self.frames_written["video"],
            audio_frames=self.frames_written["audio"],
            frames_dropped=self.frames_dropped,
            error=self.error,
        )

    # ----- on the writer thread ---------------------------------------------------------

    def _write(self) -> None:
        container = None
        streams: dict[str, Any] = {}
        time_bases = {k: fractions.Fraction(1, rate) for k, rate in CLOCK_RATES.items()}
        try:
            while (item := self._queue.get()) is not None:
                kind, data, pts, key = item
                if container is None:
                    container, streams = self._open(data)
                packet = av.Packet(data)
                packet.pts = packet.dts = pts
                packet.time_base = time_bases[kind]
                packet.stream = streams[kind]
                packet.is_keyframe = key
                container.mux(packet)
                self.frames_written[kind] += 1
                self.totals.recording_frames_written += 1
        except Exception as exc:  # a full disk, a bad frame: stop writing, keep relaying
            logger.exception("recording %s failed", self.path)
            self.error = str(exc)
            self.totals.recording_failures += 1
            while self._queue.get() is not None:  # let stop() finish
                pass
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception as exc:
                    self.error = self.error or str(exc)

    def _open(self, keyframe: bytes) -> tuple[Any, dict[str, Any]]:
        """Create the file and its streams from the first keyframe."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container_format = CONTAINERS[self.video_mime][0]
        container = av.open(
            str(self.path), "w", format=container_format, options=dict(MUXER_OPTIONS)
        )
        streams: dict[str, Any] = {}
        if self.video_mime == "video/vp8":
            width, height = vp8_resolution(keyframe) or (0, 0)
            streams["video"] = container.add_mux_stream("vp8", width=width, height=height)
        else:
            # Matroska needs the SPS/PPS as codec private data: let the H.264 demuxer read
            # them from the keyframe and copy its stream parameters (no encoder involved).
            probe = av.open(io.BytesIO(keyframe), format="h264")
            streams["video"] = container.add_stream_from_template(
                probe.streams.video[0], opaque=True
            )
            probe.close()
        streams["video"].time_base = fractions.Fraction(1, CLOCK_RATES["video"])
        if self.audio_mime is not None:
            streams["audio"] = container.add_mux_stream("opus", rate=48000)
            streams["audio"].time_base = fractions.Fraction(1, CLOCK_RATES["audio"])
        container.start_encoding()  # writes the header; opens no codec (none exists)
        return container, streams


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
