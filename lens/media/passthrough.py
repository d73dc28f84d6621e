"""Everything that reaches into aiortc's internals to forward encoded frames, in one place.

aiortc (pinned <1.17) has no public API to receive or send encoded media. A receiver
reassembles RTP packets into encoded frames in its jitter buffer and hands them to a
decoder thread through ``RTCRtpReceiver.__decoder_queue``; a sender calls ``pack()``
instead of ``encode()`` when its track yields ``av.Packet``s. This module:

* diverts a receiver's decoder queue to a :class:`FrameTap` (the decoder thread is told to
  stop before it creates a decoder, so no decoder ever exists),
* replaces the receiver's jitter buffer with one that releases a video frame as soon as
  its marker packet arrives (aiortc waits for the next frame's first packet) and audio
  packets at once (aiortc prefetches four),
* gives a sender a packetizer that can only ``pack()`` (no encoder is ever created),
* routes a sender's PLI/FIR to a callback and sends PLI upstream from a receiver,
* counts every encoder and decoder aiortc creates in this process.
"""

from __future__ import annotations

import fractions
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc import rtcrtpreceiver as aiortc_receiver_module
from aiortc import rtcrtpsender as aiortc_sender_module
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import convert_timebase
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint32_gt

# A lost packet that NACK did not recover stalls aiortc's jitter buffer until 512 packets
# pile up (seconds of video). Give up on it after this many newer packets, or after this
# long, whichever comes first: at a phone's starting bitrate 128 packets take seconds.
STALL_PACKETS = 128
STALL_SECONDS = 0.3

FrameHandler = Callable[[RTCRtpCodecParameters, JitterFrame], None]


class FrameTap:
    """Stands in for a receiver's decoder queue: encoded frames go to a handler, not a decoder."""

    def __init__(self, on_frame: FrameHandler, on_end: Callable[[], None]) -> None:
        self._on_frame = on_frame
        self._on_end = on_end
        self._worker_released = False

    def put(self, task: tuple[RTCRtpCodecParameters, JitterFrame] | None) -> None:
        """Called by the receiver on the event loop for every reassembled frame (None = end)."""
        if task is None:
            self._on_end()
            return
        codec, frame = task
        self._on_frame(codec, frame)

    def get(self) -> None:
        """Called once by aiortc's decoder thread: None makes it exit before any decoding."""
        self._worker_released = True
        return None


class ForwardingVideoBuffer(JitterBuffer):
    """A video jitter buffer that releases a frame when its marker packet completes it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(capacity=512, is_video=True)
        self.media_ssrc: int | None = None
        self._next_sequence: int | None = None
        self._clock = clock
        self._hole_since: float | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self.media_ssrc = packet.ssrc
        pli_flag, frame = super().add(packet)
        if (
            frame is None
            and self._origin is not None
            and self._packets[self._origin % self._capacity] is None
        ):
            now = self._clock()
            if self._hole_since is None:
                self._hole_since = now
            waiting = uint16_add(packet.sequence_number, -self._origin)
            if waiting > STALL_PACKETS or now - self._hole_since > STALL_SECONDS:
                # skip the hole; the next frame is marked discontinuous and we ask for a keyframe
                self.smart_remove(1)
                self._hole_since = None
                pli_flag = True
        else:
            self._hole_since = None
        return pli_flag, frame

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        packets: list[RtpPacket] = []
        timestamp = None
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                # the marker packet was lost: the timestamp change closes the frame
                return self._release(packets, count)
            packets.append(packet)
            if packet.marker:
                return self._release(packets, count + 1)
        return None

    def _release(self, packets: list[RtpPacket], count: int) -> JitterFrame:
        frame = JitterFrame(
            data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
            timestamp=packets[0].timestamp,
        )
        first = packets[0].sequence_number
        # a frame after a gap may reference pictures the subscriber never got
        frame.contiguous = self._next_sequence is None or first == self._next_sequence  # type: ignore[attr-defined]
        self._next_sequence = uint16_add(packets[-1].sequence_number, 1)
        self.remove(count)
        return frame


class ForwardingAudioBuffer(JitterBuffer):
    """An audio 'buffer' that releases every packet at once and drops late ones."""

    def __init__(self) -> None:
        super().__init__(capacity=16)
        self._last_timestamp: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if self._last_timestamp is not None and not uint32_gt(
            packet.timestamp, self._last_timestamp
        ):
            return False, None
        self._last_timestamp = packet.timestamp
        frame = JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]
        frame.contiguous = True  # type: ignore[attr-defined]
        return False, frame


def divert_receiver(receiver: RTCRtpReceiver, kind: str, tap: FrameTap) -> None:
    """Make `receiver` hand encoded frames to `tap`; call before the connection starts."""
    receiver._RTCRtpReceiver__decoder_queue = tap  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__jitter_buffer = (  # type: ignore[attr-defined]
        ForwardingVideoBuffer() if kind == "video" else ForwardingAudioBuffer()
    )


def media_ssrc(receiver: RTCRtpReceiver) -> int | None:
    """The SSRC of the media (not RTX) stream a diverted video receiver is getting."""
    buffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    return getattr(buffer, "media_ssrc", None)


async def send_pli(receiver: RTCRtpReceiver) -> bool:
    """Ask the remote sender for a keyframe (RTCP PLI); False if no stream is known yet."""
    ssrc = media_ssrc(receiver)
    if ssrc is None:
        return False
    await receiver._send_rtcp_pli(ssrc)
    return True


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` when the remote receiver sends PLI or FIR for this sender."""
    # aiortc's sender only sets a flag that an encoder would honour; pack() ignores it.
    sender._send_keyframe = callback  # type: ignore[method-assign]


class PackOnlyEncoder(Encoder):
    """A sender 'encoder' that packetizes pre-encoded av.Packets and refuses to encode."""

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.mime_type = codec.mimeType.lower()
        self._time_base = fractions.Fraction(1, codec.clockRate)
        # these two create no codec context until encode(), which is never called
        self._packetizer: Vp8Encoder | H264Encoder | None = None
        if self.mime_type == "video/vp8":
            self._packetizer = Vp8Encoder()
        elif self.mime_type == "video/h264":
            self._packetizer = H264Encoder()

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise RuntimeError("the Lens relay forwards encoded frames; it never encodes")

    def pack(self, packet: av.Packet) -> tuple[list[bytes], int]:
        if self._packetizer is not None:
            return self._packetizer.pack(packet)
        # audio (Opus, G.711, G.722): one encoded frame is one RTP payload
        return [bytes(packet)], convert_timebase(packet.pts, packet.time_base, self._time_base)


def install_packer(sender: RTCRtpSender, codec: RTCRtpCodecParameters) -> None:
    """Give `sender` a pack-only encoder so aiortc never creates a real one for it."""
    sender._RTCRtpSender__encoder = PackOnlyEncoder(codec)  # type: ignore[attr-defined]


def negotiated_codec(transceiver: RTCRtpTransceiver) -> RTCRtpCodecParameters | None:
    """The codec a transceiver sends/receives after the remote offer was applied."""
    codecs = [c for c in transceiver._codecs if c.name.lower() != "rtx"]
    return codecs[0] if codecs else None


@dataclass
class CodecCounter:
    """How many encoders and decoders aiortc created in this process."""

    encoders: int = 0
    decoders: int = 0


def count_codecs() -> CodecCounter:
    """Wrap aiortc's get_encoder/get_decoder (once per process) and return the counter."""
    existing = getattr(aiortc_sender_module.get_encoder, "lens_counter", None)
    if existing is not None:
        return existing
    counter = CodecCounter()
    original_encoder = aiortc_sender_module.get_encoder
    original_decoder = aiortc_receiver_module.get_decoder

    def counting_get_encoder(codec: RTCRtpCodecParameters) -> Encoder:
        counter.encoders += 1
        return original_encoder(codec)

    def counting_get_decoder(codec: RTCRtpCodecParameters) -> Any:
        counter.decoders += 1
        return original_decoder(codec)

    counting_get_encoder.lens_counter = counter  # type: ignore[attr-defined]
    counting_get_decoder.lens_counter = counter  # type: ignore[attr-defined]
    aiortc_sender_module.get_encoder = counting_get_encoder
    aiortc_receiver_module.get_decoder = counting_get_decoder
    return counter
