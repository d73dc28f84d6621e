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

import asyncio
import fractions
import logging
import os
import socket
import struct
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc import clock as aiortc_clock
from aiortc import codecs as aiortc_codecs
from aiortc import rtcrtpreceiver as aiortc_receiver_module
from aiortc import rtcrtpsender as aiortc_sender_module
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, convert_timebase
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
)
from aiortc.rtcrtpreceiver import TimestampMapper
from aiortc.rtp import (
    RTP_HISTORY_SIZE,
    HeaderExtensionsMap,
    RtpPacket,
    is_rtcp,
    pack_header_extensions,
    unpack_header_extensions,
)
from aiortc.utils import uint16_add, uint16_gt, uint32_gt

from lens.media import fec
from lens.media.congestion import TransportFeedback
from lens.media.recovery import SILENCE, KeyframeRequests, LinkEstimate, MediaFreeGaps, NackList
from lens.media.relay import _h264_nal_types, is_keyframe

logger = logging.getLogger(__name__)

FrameHandler = Callable[[RTCRtpCodecParameters, JitterFrame], None]
VIDEO_CLOCK_RATE = 90000
NACK_COPY_AFTER = 0.03  # seconds: each NACK is sent twice, this far apart
BUFFER_PACKETS = 512  # a power of two (aiortc's ring); a 1080p keyframe is ~200 packets


class FrameTap:
    """Stands in for a receiver's decoder queue: encoded frames go to a handler, not a decoder."""

    def __init__(self, on_frame: FrameHandler, on_end: Callable[[], None]) -> None:
        self._on_frame = on_frame
        self._on_end = on_end
        self._worker_released = False

    def put(self, task: tuple[RTCRtpCodecParameters, JitterFrame] | None) -> None:
        """Called on the event loop for every reassembled frame (None = end)."""
        if task is None:
            self._on_end()
            return
        codec, frame = task
        self._on_frame(codec, frame)

    def get(self) -> None:
        """Called once by aiortc's decoder thread: None makes it exit before any decoding."""
        self._worker_released = True
        return None


def _starts_keyframe(mime_type: str, packet: RtpPacket) -> bool:
    """True if `packet` is the first packet of a keyframe."""
    data = packet._data  # type: ignore[attr-defined]
    if mime_type == "video/vp8":
        payload = packet.payload
        # VP8 payload descriptor: S (start of partition) set and partition index 0
        return bool(payload) and payload[0] & 0x17 == 0x10 and is_keyframe(mime_type, data)
    if mime_type == "video/h264":
        # Chrome (and libx264 with repeated headers) opens every IDR picture with an SPS
        return 7 in _h264_nal_types(data)
    return True


class RepeatingNacks:
    """Stands in for aiortc's NackGenerator (which NACKs a packet once, at once).

    It notes every packet's arrival in the stream's :class:`LinkEstimate` (jitter, bitrate,
    silence, round trip from NACK to retransmission) and NACKs each missing packet at once,
    then again every retry interval until the hole's give-up (``recovery.NackList``)."""

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        link: LinkEstimate,
        on_packet: Callable[[RtpPacket], None] | None = None,
        mime_type_of: Callable[[int], str | None] | None = None,
        on_filler: Callable[[RtpPacket], None] | None = None,
    ) -> None:
        self.link = link
        self.on_packet = on_packet
        self.nacks = NackList(link)
        # a lost FEC packet's number is no loss: not NACKed, filled with padding downstream
        self.gaps = MediaFreeGaps()
        self._mime_type_of = mime_type_of
        self._on_filler = on_filler
        self.missing: set[int] = set()  # aiortc reads this only when add() returns True
        self._receiver = receiver
        self._ssrc: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    def add(self, packet: RtpPacket) -> bool:
        self._ssrc = packet.ssrc
        retransmitted = packet.sequence_number in self.nacks._missing
        size = len(packet.payload) + packet.padding_size
        self.link.arrival(packet.timestamp, VIDEO_CLOCK_RATE, size, retransmitted)
        self.nacks.add(packet.sequence_number)
        self._check_gaps(packet)
        self._schedule()
        if self.on_packet is not None:
            # the earliest point where a packet (or a retransmission, unwrapped) is known
            self.on_packet(packet)
        return False  # aiortc must not send its own NACK

    def _check_gaps(self, packet: RtpPacket) -> None:
        if (
            packet.payload
            and self._mime_type_of is not None
            and self._mime_type_of(packet.payload_type) == "video/vp8"
        ):
            free = self.gaps.packet(packet.sequence_number, packet.marker, packet.payload)
            if free:
                self._fill(packet, self.nacks.not_media(free))

    def _fill(self, packet: RtpPacket, lost: list[int]) -> None:
        """Stand-ins for lost FEC packets: padding, for the frame view and the technician."""
        for seq in lost:
            filler = RtpPacket(
                payload_type=packet.payload_type,
                sequence_number=seq,
                timestamp=packet.timestamp,
                ssrc=packet.ssrc,
            )
            filler.padding_size = 1
            filler._data = b""  # type: ignore[attr-defined]
            if self._on_filler is not None:
                self._on_filler(filler)
            if self.on_packet is not None:
                self.on_packet(filler)

    def add_rebuilt(self, packet: RtpPacket) -> None:
        """A packet FEC rebuilt in the sidecar: no longer missing (and no round-trip
        sample: nothing was retransmitted); it is forwarded like any other."""
        self.nacks.rebuilt(packet.sequence_number)
        self._check_gaps(packet)
        if self.on_packet is not None:
            self.on_packet(packet)

    def _schedule(self) -> None:
        delay = self.nacks.next_due()
        if delay is None:
            return
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            if self._timer.when() <= loop.time() + delay:
                return
            # a packet newly missing is NACKed at once, not when an earlier hole's retry
            # is due (that waited up to a round trip, so recoveries took ~1.7 round trips)
            self._timer.cancel()
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        lost = self.nacks.due()
        if lost and self._ssrc is not None:
            self._send(self._ssrc, lost)
            # the same NACK once more, a little later: a NACK lost on the downlink (8 % on
            # a bad link) cost a whole retry round, and Chrome keeps a sent packet only
            # max(1 s, 3 round trips), so a third round may find it gone; Chrome ignores
            # the copy when it has just retransmitted (it NACKs up to 10 times itself)
            loop = asyncio.get_running_loop()
            loop.call_later(NACK_COPY_AFTER, self._send_copy, self._ssrc, lost)
        self._schedule()

    def _send_copy(self, ssrc: int, lost: list[int]) -> None:
        still = [seq for seq in lost if seq in self.nacks._missing]
        if still and not self._stopped:
            self.nacks.copies_sent += len(still)
            self._send(ssrc, still)

    def _send(self, ssrc: int, lost: list[int]) -> None:
        task = asyncio.get_running_loop().create_task(self._receiver._send_rtcp_nack(ssrc, lost))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stopped = True


class ForwardingVideoBuffer(JitterBuffer):
    """A video jitter buffer that releases each frame as soon as it is complete.

    aiortc's buffer holds a frame until the next frame's first packet arrives and waits for
    512 packets before it gives up on a lost one. This one hands every complete frame to
    `deliver` at once, in order; a hole (a lost first, middle or last packet alike) waits for
    its retransmission only as long as the link's give-up (three NACK rounds, from the
    measured round trip and jitter). When a hole is given up, the frame is lost and with it
    every frame until the next keyframe: the buffer skips ahead to the next keyframe's first
    packet (holes inside a keyframe get the same wait) and asks for a keyframe. After a
    silence (an outage) the buffer is flushed and a keyframe asked for, once.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        link: LinkEstimate | None = None,
        deliver: Callable[[JitterFrame, RtpPacket], None] | None = None,
        request_keyframe: Callable[[], None] | None = None,
        mime_type_of: Callable[[int], str | None] | None = None,
        on_outage: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(capacity=BUFFER_PACKETS, is_video=True)
        self.link = link or LinkEstimate(clock)
        self.keyframes = KeyframeRequests(self.link)
        self.media_ssrc: int | None = None
        self.frames: list[JitterFrame] = []  # released frames when there is no `deliver`
        self.holes_given_up = 0
        self.keyframe_requests = 0
        self.frames_skipped = 0
        self._clock = self.link.clock
        self._deliver = deliver
        # None: this buffer never asks (the technician's browser does, through the same
        # one-in-flight gate, which a request that is never sent must not take)
        self._request_keyframe = request_keyframe
        self._on_outage = on_outage
        self._mime_type_of = mime_type_of or (lambda payload_type: "video/vp8")
        self._mime_type = "video/vp8"
        self._missing_since: list[float | None] = [None] * BUFFER_PACKETS
        self._max: int | None = None
        self._next_sequence: int | None = None
        self._need_keyframe = True  # a subscriber's decoder starts at a keyframe
        self._scanned: int | None = None  # where the search for a keyframe goes on

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self.media_ssrc = packet.ssrc
        if packet.payload:  # (an empty one stands for a FEC packet: fec.padding_packet)
            self._mime_type = self._mime_type_of(packet.payload_type) or self._mime_type
        now = self._clock()
        seq = packet.sequence_number
        if self._origin is not None and self.link.silence >= SILENCE:
            self._flush(seq)  # an outage: what is buffered is stale
            if self._on_outage is not None:
                self._on_outage()  # the forwarded stream needs a keyframe too: ask once
            else:
                self._ask_keyframe()
        if self._origin is None:
            self._origin = self._max = seq
        offset = uint16_add(seq, -self._origin)
        if offset >= 0x8000:
            return False, None  # older than what was released or given up: too late
        if offset >= self._capacity:
            self._flush(seq)  # more than the buffer holds is missing
            self._ask_keyframe()
            offset = 0
        slot = seq % self._capacity
        if self._packets[slot] is not None:
            return False, None  # a duplicate
        self._packets[slot] = packet
        self._missing_since[slot] = None
        if self._scanned is not None and uint16_gt(self._scanned, seq):
            self._scanned = seq  # a retransmission behind the keyframe search
        if uint16_gt(seq, self._max):
            missed = uint16_add(self._max, 1)
            while missed != seq:
                self._missing_since[missed % self._capacity] = now
                missed = uint16_add(missed, 1)
            self._max = seq
        self._release(now)
        return False, None

    # ----- internals --------------------------------------------------------------------

    def _release(self, now: float) -> None:
        while self._origin is not None and not uint16_gt(self._origin, self._max):
            if self._skip_no_media():
                continue
            if self._need_keyframe and not self._skip_to_keyframe():
                hole = self._origin
            else:
                packets, hole = self._complete_frame()
                if packets is not None:
                    self._emit(packets)
                    continue
            if hole is None:
                return  # the frame's last packets have not arrived yet: not a hole
            since = self._missing_since[hole % self._capacity]
            if since is None or now - since <= self.link.give_up:
                return  # a retransmission may still fill it
            # give up: this frame is lost, and every frame up to the next keyframe with it
            self.holes_given_up += 1
            self._drop_through(hole)
            if not self._need_keyframe:
                self._need_keyframe = True
            self._ask_keyframe()

    def _skip_no_media(self) -> bool:
        """Drop a packet without payload at the origin (True): what stands for a FEC packet
        (``fec.padding_packet``, ``RepeatingNacks``' fillers for lost ones), or padding."""
        packet = self._packets[self._origin % self._capacity]
        if packet is None or packet.payload:
            return False
        contiguous = self._next_sequence == self._origin
        self._drop_through(self._origin)
        if contiguous:
            self._next_sequence = self._origin
        return True

    def _skip_to_keyframe(self) -> bool:
        """Drop packets until a keyframe's first packet is at the origin (True). A keyframe
        that began after a hole is taken at once (nothing before it is needed); without
        one, stop at the first hole (False): the missing packet may be a keyframe's first."""
        seq = self._origin if self._scanned is None else self._scanned
        if uint16_gt(self._origin, seq):
            seq = self._origin
        while not uint16_gt(seq, self._max):
            packet = self._packets[seq % self._capacity]
            if packet is not None and _starts_keyframe(self._mime_type, packet):
                if seq != self._origin:
                    self._drop_through(uint16_add(seq, -1))
                self._scanned = None
                return True
            seq = uint16_add(seq, 1)
        self._scanned = seq  # these packets were looked at; only newer ones can start one
        while not uint16_gt(self._origin, self._max):
            if self._packets[self._origin % self._capacity] is None:
                return False
            self._drop_through(self._origin)
            self._ask_keyframe()
        return False

    def _complete_frame(self) -> tuple[list[RtpPacket] | None, int | None]:
        """The packets of the frame at the origin if it is complete, else (None, the first
        missing sequence number if a later packet arrived, or None)."""
        packets: list[RtpPacket] = []
        seq = self._origin
        while True:
            packet = self._packets[seq % self._capacity]
            if packet is None:
                return None, (seq if uint16_gt(self._max, seq) else None)
            if packets and packet.timestamp != packets[0].timestamp:
                return packets, None  # no marker, but the next frame began: complete
            packets.append(packet)
            if packet.marker:
                return packets, None
            if seq == self._max:
                return None, None
            seq = uint16_add(seq, 1)

    def _emit(self, packets: list[RtpPacket]) -> None:
        frame = JitterFrame(
            data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
            timestamp=packets[0].timestamp,
        )
        first = packets[0].sequence_number
        # a frame after a gap may reference pictures the subscriber never got
        frame.contiguous = self._next_sequence is None or first == self._next_sequence  # type: ignore[attr-defined]
        self._next_sequence = uint16_add(packets[-1].sequence_number, 1)
        self._drop_through(packets[-1].sequence_number)
        self._need_keyframe = False
        if is_keyframe(self._mime_type, frame.data):
            self.keyframes.keyframe_arrived(len(frame.data))
        if self._deliver is not None:
            self._deliver(frame, packets[0])
        else:
            self.frames.append(frame)

    def _drop_through(self, seq: int) -> None:
        """Forget every packet from the origin up to and including `seq`."""
        count = uint16_add(seq, -self._origin) + 1
        for _ in range(count):
            slot = self._origin % self._capacity
            self._packets[slot] = None
            self._missing_since[slot] = None
            self._origin = uint16_add(self._origin, 1)

    def _flush(self, seq: int) -> None:
        self._packets = [None] * self._capacity
        self._missing_since = [None] * self._capacity
        self._origin = self._max = seq
        self._need_keyframe = True
        self._scanned = None

    def _ask_keyframe(self) -> None:
        if self._request_keyframe is not None and self.keyframes.may_send():
            self.keyframe_requests += 1
            self._request_keyframe()


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


def divert_receiver(
    receiver: RTCRtpReceiver,
    kind: str,
    tap: FrameTap,
    request_keyframe: Callable[[], None] | None = None,
    on_packet: Callable[[RtpPacket], None] | None = None,
    on_outage: Callable[[], None] | None = None,
    frame_view_asks: bool = True,
) -> None:
    """Make `receiver` hand encoded frames to `tap`; call before the connection starts.

    For video, `request_keyframe` is called (at most once per keyframe in flight) when the
    buffer lost a frame and needs a keyframe to go on, unless `frame_view_asks` is False
    (then only others ask, through the buffer's gate); `on_packet` gets every video RTP
    packet (retransmissions unwrapped) as it arrives, before it is reassembled."""
    receiver._RTCRtpReceiver__decoder_queue = tap  # type: ignore[attr-defined]
    if kind != "video":
        receiver._RTCRtpReceiver__jitter_buffer = ForwardingAudioBuffer()  # type: ignore[attr-defined]
        return
    codecs: dict[int, RTCRtpCodecParameters] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
    mapper = TimestampMapper()

    def deliver(frame: JitterFrame, first: RtpPacket) -> None:
        # the buffer releases frames itself (several at once when a hole fills), so the
        # receiver's own timestamp mapping is done here
        frame.timestamp = mapper.map(frame.timestamp)
        tap.put((codecs[first.payload_type], frame))

    def mime_type_of(payload_type: int) -> str | None:
        codec = codecs.get(payload_type)
        return codec.mimeType.lower() if codec else None

    if request_keyframe is None:  # like aiortc's own receiver: PLI to the sender

        def request_keyframe() -> None:
            asyncio.ensure_future(send_pli(receiver))

    link = LinkEstimate()
    buffer = ForwardingVideoBuffer(
        link=link,
        deliver=deliver,
        request_keyframe=request_keyframe if frame_view_asks else None,
        mime_type_of=mime_type_of,
        on_outage=on_outage,
    )
    receiver._RTCRtpReceiver__jitter_buffer = buffer  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__nack_generator = RepeatingNacks(  # type: ignore[attr-defined]
        receiver, link, on_packet, mime_type_of=mime_type_of, on_filler=buffer.add
    )


class RedUlpfec:
    """RED and ULPFEC on a phone leg (``fec.RedReceiver``), between the wire and aiortc.

    Every decrypted RTP datagram of the leg's (bundled) transport passes here before aiortc
    parses it: a RED packet goes on as the media packet inside it, a retransmission of one
    as a retransmission of that, a FEC packet as a padding-only packet with its sequence
    number; each media packet FEC rebuilds goes straight to the NACK list (no longer
    missing), the technician and the frame view, past aiortc's receive statistics (the
    phone's loss figures, which set its FEC rate, are the link's, before repair)."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self.red: fec.RedReceiver | None = None
        self._off = False  # the answer has no red/ulpfec: hand everything on
        self._receiver = receiver
        self._codecs: dict[int, RTCRtpCodecParameters] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        self._rtx_ssrc: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
        self._red_rtx: int | None = None
        self._media_rtx: dict[int, int] = {}  # media payload type -> its RTX payload type
        buffer = video_buffer(receiver)
        self._link = buffer.link if buffer is not None else None
        dtls = receiver.transport
        self._extensions = dtls._rtp_header_extensions_map
        self._original = dtls._handle_rtp_data
        dtls._handle_rtp_data = self._handle

    def _configure(self) -> bool:
        """Find the negotiated payload types (the receiver has them once it started)."""
        types = {c.mimeType.lower(): c.payloadType for c in self._codecs.values()}
        if RED_MIME not in types or ULPFEC_MIME not in types:
            self._off = bool(types)
            return False
        self.red = fec.RedReceiver(types[RED_MIME], types[ULPFEC_MIME])
        for codec in self._codecs.values():
            if aiortc_codecs.is_rtx(codec):
                apt = codec.parameters.get("apt")
                if apt == self.red.red_type:
                    self._red_rtx = codec.payloadType
                elif isinstance(apt, int):
                    self._media_rtx[apt] = codec.payloadType
        return True

    async def _handle(self, data: bytes, arrival_time_ms: int) -> None:
        red = self.red
        if red is None:
            if self._off or len(data) < 12 or not self._configure():
                await self._original(data, arrival_time_ms)
                return
            red = self.red
        payload_type = data[1] & 0x7F if len(data) > 1 else -1
        if FEC_DUMP and payload_type in (red.red_type, self._red_rtx):
            _dump(data)
        if payload_type == red.red_type:
            fec_packets = red.fec_packets
            handed, rebuilt = red.receive(data)
            if red.fec_packets != fec_packets and self._link is not None:
                self._link.last_fec = self._link.clock()
        elif payload_type == self._red_rtx and self._red_rtx is not None:
            media_ssrc = self._rtx_ssrc.get(int.from_bytes(data[8:12], "big"))
            if media_ssrc is None:
                await self._original(data, arrival_time_ms)
                return
            handed, rebuilt = red.receive_rtx(data, media_ssrc, self._media_rtx.get(red.media_type))
        else:
            await self._original(data, arrival_time_ms)
            return
        await self._original(handed, arrival_time_ms)
        for packet in rebuilt:
            self._deliver_rebuilt(packet)

    def _deliver_rebuilt(self, data: bytes) -> None:
        """What aiortc's receiver does with a packet, less its statistics and RTX."""
        try:
            packet = RtpPacket.parse(data, self._extensions)
        except ValueError:
            return
        receiver = self._receiver
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        nacks = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
        if isinstance(nacks, RepeatingNacks):
            nacks.add_rebuilt(packet)
        try:
            packet._data = aiortc_codecs.depayload(codec, packet.payload)  # type: ignore[attr-defined]
        except ValueError:
            return
        receiver._RTCRtpReceiver__jitter_buffer.add(packet)  # type: ignore[attr-defined]

    def state(self) -> dict[str, int]:
        red = self.red
        if red is None:
            return {"fec_packets": 0, "fec_recovered": 0, "fec_unrecoverable": 0}
        return {
            "fec_packets": red.fec_packets,
            "fec_recovered": red.recovered,
            "fec_unrecoverable": red.unrecoverable,
        }


def _dump(data: bytes) -> None:
    """Keep the first FEC_DUMP_PACKETS RED datagrams (hex, one a line) in LENS_MEDIA_FEC_DUMP:
    real Chrome packets for tests/media/data (a debugging aid, off by default)."""
    if _dumped[0] >= FEC_DUMP_PACKETS:
        return
    _dumped[0] += 1
    with open(FEC_DUMP, "a") as out:
        out.write(data.hex() + "\n")


FEC_DUMP = os.environ.get("LENS_MEDIA_FEC_DUMP")
FEC_DUMP_PACKETS = 3000
_dumped = [0]


def repair_with_fec(receiver: RTCRtpReceiver) -> RedUlpfec | None:
    """Unwrap RED and repair with ULPFEC on a phone leg's video (call once the remote offer
    is applied: the bundled transport is known); None when FEC is off."""
    if not FEC:
        return None
    return RedUlpfec(receiver)


def video_buffer(receiver: RTCRtpReceiver) -> ForwardingVideoBuffer | None:
    """The forwarding buffer of a diverted video receiver (its link estimate, keyframes)."""
    buffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    return buffer if isinstance(buffer, ForwardingVideoBuffer) else None


def nack_list(receiver: RTCRtpReceiver) -> NackList | None:
    """A diverted video receiver's NACK bookkeeping (for its state), else None."""
    nacks = getattr(receiver, "_RTCRtpReceiver__nack_generator", None)
    return nacks.nacks if isinstance(nacks, RepeatingNacks) else None


def stop_nacks(receiver: RTCRtpReceiver) -> None:
    """Cancel a diverted video receiver's NACK timer (the leg is closing)."""
    nacks = getattr(receiver, "_RTCRtpReceiver__nack_generator", None)
    if isinstance(nacks, RepeatingNacks):
        nacks.stop()


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


class IdleTrack(MediaStreamTrack):
    """A sender's track that yields nothing: its packets are sent by a PacketSender, so
    aiortc's send loop waits here (and never creates an encoder) until the leg stops."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._stopped = asyncio.Event()

    async def recv(self) -> Any:
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._stopped.set()


def _send_datagram(dtls: RTCDtlsTransport, data: bytes, rtcp: bool = False) -> None:
    """SRTP-protect and send one RTP (or RTCP) packet now (aiortc's _send_rtp, no task)."""
    data = dtls._tx_srtp.protect_rtcp(data) if rtcp else dtls._tx_srtp.protect(data)
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None:
        raise ConnectionError("no nominated ICE pair")
    if isinstance(pair.protocol, StunProtocol):
        # StunProtocol.send_data is `self.transport.sendto(...)`: UDP and TURN alike
        pair.protocol.transport.sendto(data, pair.remote_addr)
    else:
        asyncio.ensure_future(pair.protocol.send_data(data, pair.remote_addr))
    dtls._RTCDtlsTransport__tx_bytes += len(data)  # type: ignore[attr-defined]
    dtls._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]


class _PlayoutDelayMap(HeaderExtensionsMap):
    """aiortc's header extension map plus the playout-delay extension (aiortc has none).

    A packet whose ``extensions.playout_delay`` is (min, max) in 10 ms units carries it:
    the receiving browser then keeps at least `min` in its jitter buffer."""

    def __init__(self, configured: HeaderExtensionsMap, extension_id: int) -> None:
        super().__init__()
        self._HeaderExtensionsMap__ids = configured._HeaderExtensionsMap__ids  # type: ignore[attr-defined]
        self._extension_id = extension_id

    def set(self, values: Any) -> tuple[int, bytes]:
        profile, value = super().set(values)
        delay = getattr(values, "playout_delay", None)
        if delay is None:
            return profile, value
        elements = unpack_header_extensions(profile, value) if profile else []
        low, high = delay
        elements.append((self._extension_id, ((low << 12) | high).to_bytes(3, "big")))
        return pack_header_extensions(elements)


def negotiated_extension_id(transceiver: RTCRtpTransceiver, uri: str) -> int | None:
    """The id the remote offer gave a header extension we answered with, else None."""
    for extension in transceiver._headerExtensions:
        if extension.uri == uri:
            return extension.id
    return None


class PacketSender:
    """Sends ready-made RTP packets as an aiortc sender's stream.

    Each packet gets the sender's MID and an abs-send-time, goes into the sender's
    retransmission history (so aiortc's own NACK handling answers the remote's NACKs,
    over RTX when negotiated) and counts in the sender's reports (SR)."""

    def __init__(self, sender: RTCRtpSender, playout_delay_id: int | None = None) -> None:
        self._sender = sender
        self._playout_delay_id = playout_delay_id
        self._map_installed = False

    @property
    def ssrc(self) -> int:
        return self._sender._ssrc

    def ready(self) -> bool:
        """True once the leg is connected and the sender configured (MID, extensions)."""
        sender = self._sender
        return (
            sender._RTCRtpSender__started  # type: ignore[attr-defined]
            and sender.transport._state == DtlsState.CONNECTED
        )

    def send(self, packet: RtpPacket) -> bool:
        """Put `packet` on the wire now; False if the leg is not connected (yet)."""
        sender = self._sender
        dtls = sender.transport
        if dtls._state != DtlsState.CONNECTED:
            return False
        if not self._map_installed:
            self._map_installed = True
            if self._playout_delay_id:
                configured = sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]
                sender._RTCRtpSender__rtp_header_extensions_map = _PlayoutDelayMap(  # type: ignore[attr-defined]
                    configured, self._playout_delay_id
                )
        ntp = aiortc_clock.current_ntp_time()
        packet.extensions.mid = sender._RTCRtpSender__mid  # type: ignore[attr-defined]
        packet.extensions.abs_send_time = (ntp >> 14) & 0x00FFFFFF
        history = sender._RTCRtpSender__rtp_history  # type: ignore[attr-defined]
        history[packet.sequence_number % RTP_HISTORY_SIZE] = packet
        data = packet.serialize(sender._RTCRtpSender__rtp_header_extensions_map)  # type: ignore[attr-defined]
        try:
            _send_datagram(dtls, data)
        except ConnectionError:
            return False
        sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = packet.timestamp  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count += len(packet.payload)  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]
        return True


def sender_rtt(sender: RTCRtpSender) -> float | None:
    """The round trip aiortc's sender measured from the remote's receiver reports."""
    return getattr(sender, "_RTCRtpSender__rtt", None)


TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
TRANSPORT_CC_ID = 5  # aiortc uses 1-3; with BUNDLE the id space is shared by audio and video
PLAYOUT_DELAY_URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
PLAYOUT_DELAY_ID = 6
FEEDBACK_INTERVAL = 0.05  # seconds between transport-cc feedback packets (libwebrtc: 50-250 ms)


def negotiate_transport_cc() -> None:
    """Make every answer offer transport-wide congestion control instead of REMB.

    aiortc advertises abs-send-time + goog-remb and computes REMB in Python; this swaps
    both for the transport-cc header extension and RTCP feedback type, so a browser that
    sends to the sidecar estimates its bandwidth itself from :class:`TransportCcFeedback`.
    Idempotent; called when this module is imported."""
    for extensions in aiortc_codecs.HEADER_EXTENSIONS.values():
        extensions[:] = [
            e
            for e in extensions
            if e.uri not in ("http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",)
            and e.uri != TRANSPORT_CC_URI
            and e.uri != PLAYOUT_DELAY_URI
        ]
        extensions.append(RTCRtpHeaderExtensionParameters(id=TRANSPORT_CC_ID, uri=TRANSPORT_CC_URI))
    video = aiortc_codecs.HEADER_EXTENSIONS["video"]
    if PLAYOUT_DELAY_URI not in [e.uri for e in video]:
        # the technician's browser is told how long to buffer (PacketSender)
        video.append(RTCRtpHeaderExtensionParameters(id=PLAYOUT_DELAY_ID, uri=PLAYOUT_DELAY_URI))
    for codecs in aiortc_codecs.CODECS.values():
        for codec in codecs:
            if aiortc_codecs.is_rtx(codec):
                continue
            feedback = [
                f for f in codec.rtcpFeedback if f.type not in ("goog-remb", "transport-cc")
            ]
            codec.rtcpFeedback = [*feedback, RTCRtcpFeedback(type="transport-cc")]


RED_MIME, ULPFEC_MIME = "video/red", "video/ulpfec"
RED_PAYLOAD_TYPE = 123  # in the sidecar's own offers (tests); an answer takes the offer's


def negotiate_red_ulpfec() -> None:
    """Make answers accept red + ulpfec (and RTX for red) for video, so a browser that sends
    to the sidecar adds forward error correction on a lossy link (``RedUlpfec`` repairs
    with it). Only a phone leg asks for them (``FEC_CODECS``); idempotent."""
    video = aiortc_codecs.CODECS["video"]
    if any(c.mimeType.lower() == RED_MIME for c in video):
        return
    video += [
        RTCRtpCodecParameters(mimeType="video/red", clockRate=90000, payloadType=RED_PAYLOAD_TYPE),
        RTCRtpCodecParameters(
            mimeType="video/rtx",
            clockRate=90000,
            payloadType=RED_PAYLOAD_TYPE + 1,
            parameters={"apt": RED_PAYLOAD_TYPE},
        ),
        RTCRtpCodecParameters(
            mimeType="video/ulpfec", clockRate=90000, payloadType=RED_PAYLOAD_TYPE + 2
        ),
    ]


@types.coroutine
def _resume(coroutine: Any, waiting_on: Any) -> Any:
    """Hand a coroutine that suspended outside any task over to one (see _drive)."""
    value = yield waiting_on
    while True:
        try:
            waiting_on = coroutine.send(value)
        except StopIteration as stop:
            return stop.value
        value = yield waiting_on


def _drive(coroutine: Any) -> None:
    """Run `coroutine` now, on the caller's stack; if it suspends, a task finishes it.

    aiortc's RTP/RTCP handlers are coroutines that in practice never suspend (sending
    RTCP ends in a plain sendto), so running them inline saves a task switch per packet."""
    try:
        waiting_on = coroutine.send(None)
    except StopIteration:
        return

    async def finish() -> None:
        await _resume(coroutine, waiting_on)

    asyncio.ensure_future(finish())


SO_TIMESTAMPNS = 35  # Linux (asm-generic): the kernel stamps each datagram's arrival
_kernel_arrival: list[float | None] = [None]  # the datagram being delivered, monotonic


def kernel_timestamps(receiver_or_sender: RTCRtpReceiver | RTCRtpSender) -> int:
    """Have the kernel stamp every datagram on a leg's UDP sockets with its arrival time.

    asyncio reads datagrams with recvfrom(), so the earliest time Python can take is when
    the event loop gets to the socket, which on a loaded machine is milliseconds late and
    looks like congestion to the phone's bandwidth estimator. This reads them with
    recvmsg() and SO_TIMESTAMPNS instead; InlineMediaQueue uses that time. Call once the
    leg's candidates are gathered; returns how many sockets were switched."""
    connection = receiver_or_sender.transport.transport._connection
    switched = 0
    for protocol in connection._protocols:
        transport = getattr(protocol, "transport", None)
        sock = getattr(transport, "_sock", None)
        if sock is None or sock.type != socket.SOCK_DGRAM or getattr(transport, "lens_stamped", 0):
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            continue
        transport._loop._remove_reader(transport._sock_fd)
        transport._loop._add_reader(transport._sock_fd, _read_stamped, transport)
        transport.lens_stamped = 1
        switched += 1
    return switched


def _read_stamped(transport: Any) -> None:
    """asyncio's _SelectorDatagramTransport._read_ready, with recvmsg and the kernel's stamp."""
    if transport._conn_lost:
        return
    try:
        data, ancillary, _, addr = transport._sock.recvmsg(transport.max_size, 64)
    except (BlockingIOError, InterruptedError):
        return
    except OSError as exc:
        transport._protocol.error_received(exc)
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        transport._fatal_error(exc, "Fatal read error on datagram transport")
        return
    stamp = None
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
            seconds, nanoseconds = struct.unpack("qq", value[:16])
            stamp = seconds + nanoseconds / 1e9 - (time.time() - time.monotonic())
    _kernel_arrival[0] = stamp
    try:
        transport._protocol.datagram_received(data, addr)
    finally:
        _kernel_arrival[0] = None


class InlineMediaQueue(asyncio.Queue):
    """aioice's datagram queue for one leg, with a fast path for SRTP/SRTCP.

    aioice puts each datagram on a queue that the DTLS transport's task awaits: three
    coroutine layers and a task switch per packet. Once DTLS is up and nothing is queued
    (order is kept), an SRTP or SRTCP datagram is instead decrypted and handed to aiortc's
    RTP/RTCP handling right away, in aioice's socket callback, which is what aiortc's
    receive loop does for it (``RTCDtlsTransport._recv_next``). Every datagram's arrival
    time is noted as it comes off the socket (``last_arrival``, for transport-cc)."""

    last_arrival: float | None = None

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        super().__init__()
        self._dtls = dtls
        self.inline = 0
        self.kernel_stamped = 0

    def put_nowait(self, item: Any) -> None:
        now = _kernel_arrival[0]
        if now is None:
            now = time.monotonic()
        else:
            self.kernel_stamped += 1
        dtls = self._dtls
        if (
            INLINE
            and item is not None
            and not self._queue  # type: ignore[attr-defined]
            and 127 < item[0][0] < 192
            and dtls._rx_srtp is not None
            and dtls._state == DtlsState.CONNECTED
        ):
            self.last_arrival = now
            self.inline += 1
            data = item[0]
            dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
            dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
            try:
                if is_rtcp(data):
                    _drive(dtls._handle_rtcp_data(dtls._rx_srtp.unprotect_rtcp(data)))
                else:
                    arrival_ms = aiortc_clock.current_ms()
                    data = dtls._rx_srtp.unprotect(data)
                    _drive(dtls._handle_rtp_data(data, arrival_time_ms=arrival_ms))
            except pylibsrtp.Error:
                pass  # what aiortc does with a packet it cannot decrypt
            except Exception:
                logger.exception("inline RTP/RTCP handling failed")
            return
        super().put_nowait((now, item))

    def _get(self) -> Any:
        arrival, item = super()._get()
        self.last_arrival = arrival
        return item


def inline_media(receiver_or_sender: RTCRtpReceiver | RTCRtpSender) -> InlineMediaQueue:
    """Install the fast path on the (bundled) transport of a leg; idempotent."""
    dtls = receiver_or_sender.transport
    connection = dtls.transport._connection
    if isinstance(connection._queue, InlineMediaQueue):
        return connection._queue
    queue = InlineMediaQueue(dtls)
    while not connection._queue.empty():
        queue.put_nowait(connection._queue.get_nowait())
    connection._queue = queue
    return queue


class TransportCcFeedback:
    """Sends transport-cc feedback for everything arriving on one leg's transport."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self.feedback = TransportFeedback()
        self._receiver = receiver
        self._dtls = receiver.transport
        self._timer: asyncio.TimerHandle | None = None
        # datagrams are stamped when aioice takes them from the socket, before the DTLS
        # task and the receivers get to them (a busy event loop delays those)
        queue = inline_media(receiver)
        self.queue = queue
        router = self._dtls._rtp_router
        route = router.route_rtp

        def route_rtp(packet: RtpPacket) -> Any:
            seq = packet.extensions.transport_sequence_number
            if seq is not None:
                self.feedback.add(seq, queue.last_arrival)
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(
                        FEEDBACK_INTERVAL, self._send
                    )
            return route(packet)

        router.route_rtp = route_rtp

    def _send(self) -> None:
        self._timer = None
        sender_ssrc = self._receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        media = media_ssrc(self._receiver) or 0
        data = self.feedback.build(sender_ssrc or 0, media)
        if data is None or self._dtls._state != DtlsState.CONNECTED:
            return
        try:
            _send_datagram(self._dtls, data, rtcp=True)
        except ConnectionError:
            return
        if self.feedback.pending:
            self._timer = asyncio.get_running_loop().call_later(FEEDBACK_INTERVAL, self._send)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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


# LENS_MEDIA_BWE=remb keeps aiortc's REMB (for comparison runs: bench/qoe.py)
TRANSPORT_CC = os.environ.get("LENS_MEDIA_BWE", "transport-cc") != "remb"
INLINE = os.environ.get("LENS_MEDIA_INLINE", "1") != "0"  # 0: aiortc's queue (comparison runs)
# LENS_MEDIA_FEC=0: no red/ulpfec on the phone's leg (comparison runs: bench/qoe.py)
FEC = os.environ.get("LENS_MEDIA_FEC", "1") != "0"
FEC_CODECS = (RED_MIME, ULPFEC_MIME) if FEC else ()
if FEC:
    negotiate_red_ulpfec()
if TRANSPORT_CC:
    negotiate_transport_cc()
