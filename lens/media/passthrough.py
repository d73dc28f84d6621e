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
    RtcpSrPacket,
    RtpPacket,
    pack_header_extensions,
)
from aiortc.utils import uint16_add, uint16_gt

from lens.media import fec, native
from lens.media.congestion import TransportFeedback
from lens.media.forwarder import RtpView, h264_starts_keyframe, parse_vp8
from lens.media.recovery import (
    MAX_NACKED,
    SILENCE,
    KeyframeRequests,
    LinkEstimate,
    MediaFreeGaps,
    NackList,
)
from lens.media.relay import _h264_nal_types, is_keyframe
from lens.media.srtp import FastSrtp, PacketBuffer
from lens.media.udp import UdpTransport

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
        on_filler: Callable[[RtpView], None] | None = None,
    ) -> None:
        self.link = link
        self.on_packet = on_packet
        self.nacks = NackList(link)
        # a lost FEC packet's number is no loss: not NACKed, filled with padding downstream
        self.gaps = MediaFreeGaps()
        self._mime_type_of = mime_type_of
        self._vp8: dict[int, bool] = {}
        # the phone's answer has red/ulpfec (RedUlpfec): only then can a number have held
        # a FEC packet (no per-packet cost for a phone without)
        self.fec = False
        self.on_filler = on_filler  # the frame view's (the lean path decides: LeanVideoReceiver)
        self.missing: set[int] = set()  # aiortc reads this only when add() returns True
        self._receiver = receiver
        self._ssrc: int | None = None
        self._timer: asyncio.Handle | None = None
        self._timer_due = 0.0  # loop time
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        # called with how many missing packets were just given up (their give-up passed)
        self.on_given_up: Callable[[int], None] | None = None

    def add(self, packet: RtpPacket) -> bool:
        self._ssrc = packet.ssrc
        nacks, link = self.nacks, self.link
        missing = nacks._missing
        sequence_number = packet.sequence_number
        size = len(packet.payload) + packet.padding_size
        now = link.clock()  # (read once for both)
        link.arrival(packet.timestamp, VIDEO_CLOCK_RATE, size, sequence_number in missing, now)
        max_seq = nacks.max_seq
        if max_seq is not None and (sequence_number - max_seq) & 0xFFFF == 1:
            # NackList.add's common case, inline (every video packet): the next in order,
            # nothing newly missing
            nacks.max_seq = sequence_number
            if missing and self._timer is None:
                self._schedule()
        else:
            before = len(missing)
            nacks.add(sequence_number, now)
            # only a packet newly missing moves the timer (it is NACKed at once); else the
            # timer set reschedules itself when it fires (next_due walks every missing
            # packet: per packet, under heavy loss, that was most of the sidecar's time)
            if len(missing) > before or (missing and self._timer is None):
                self._schedule()
        if self.fec:  # (checked here: a call per packet less for a phone without FEC)
            self._check_gaps(packet)
        if self.on_packet is not None:
            # the earliest point where a packet (or a retransmission, unwrapped) is known
            self.on_packet(packet)
        return False  # aiortc must not send its own NACK

    def _check_gaps(self, packet: Any) -> None:
        if not self.fec or not packet.payload or self._mime_type_of is None:
            return
        vp8 = self._vp8.get(packet.payload_type)
        if vp8 is None:  # (per payload type, once known: this runs for every packet)
            mime_type = self._mime_type_of(packet.payload_type)
            vp8 = mime_type == "video/vp8"
            if mime_type is not None:
                self._vp8[packet.payload_type] = vp8
        if vp8:
            free = self.gaps.packet(packet.sequence_number, packet.marker, packet.payload)
            if free:
                self._fill(packet, self.nacks.not_media(free))

    def _fill(self, packet: Any, lost: list[int]) -> None:
        """Stand-ins for lost FEC packets: padding, for the frame view, the snapshot history
        and the technician."""
        for seq in lost:
            filler = RtpView(packet.payload_type, 0, seq, packet.timestamp, packet.ssrc, b"", 1)
            if self.on_filler is not None:
                self.on_filler(filler)
            if self.on_packet is not None:
                self.on_packet(filler)

    def add_rebuilt(self, packet: Any) -> None:
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
            if self._timer_due <= loop.time() + delay:
                return
            # a packet newly missing is NACKed at once, not when an earlier hole's retry
            # is due (that waited up to a round trip, so recoveries took ~1.7 round trips)
            self._timer.cancel()
        # the due time kept here: uvloop's call_later(0) gives a Handle without when()
        self._timer_due = loop.time() + delay
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        expired = self.nacks.expired
        lost = self.nacks.due()
        if self.nacks.expired > expired and self.on_given_up is not None:
            self.on_given_up(self.nacks.expired - expired)
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
        self._payload_type: int | None = None
        self._missing_since: list[float | None] = [None] * BUFFER_PACKETS
        self._max: int | None = None
        self._next_sequence: int | None = None
        self._need_keyframe = True  # a subscriber's decoder starts at a keyframe
        self._scanned: int | None = None  # where the search for a keyframe goes on

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self.media_ssrc = packet.ssrc
        # (an empty one may stand for a FEC packet: fec.padding_packet)
        if packet.payload_type != self._payload_type and packet.payload:
            self._payload_type = packet.payload_type
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

    def restart(self) -> None:
        """Start afresh from the next packet (the frame view is wanted again): nothing
        buffered, the next frame released a keyframe."""
        self._packets = [None] * self._capacity
        self._missing_since = [None] * self._capacity
        self._origin = self._max = None
        self._next_sequence = None
        self._need_keyframe = True
        self._scanned = None

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
    """An audio 'buffer' that releases every packet at once and drops late ones.

    With `on_packet`, each packet goes there (one Opus frame is one packet, forwarded as
    a packet) and no frame is made; else a frame per packet is released."""

    def __init__(self, on_packet: Callable[[Any], None] | None = None) -> None:
        super().__init__(capacity=16)
        self._last_timestamp: int | None = None
        self._on_packet = on_packet

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        timestamp = packet.timestamp
        last = self._last_timestamp
        # not uint32_gt(timestamp, last), inline: every audio packet comes here
        if last is not None and not 0 < (timestamp - last) & 0xFFFFFFFF < 0x80000000:
            return False, None
        self._last_timestamp = timestamp
        if self._on_packet is not None:
            self._on_packet(packet)
            return False, None
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
    packet (retransmissions unwrapped) as it arrives, before it is reassembled; for audio,
    `on_packet` gets every packet instead of `tap` a frame per packet."""
    receiver._RTCRtpReceiver__decoder_queue = tap  # type: ignore[attr-defined]
    if kind != "video":
        audio = ForwardingAudioBuffer(on_packet)
        receiver._RTCRtpReceiver__jitter_buffer = audio  # type: ignore[attr-defined]
        receiver.lens_lean = LeanAudioReceiver(receiver, audio)  # type: ignore[attr-defined]
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
    nacks = RepeatingNacks(receiver, link, on_packet, mime_type_of=mime_type_of)
    receiver._RTCRtpReceiver__nack_generator = nacks  # type: ignore[attr-defined]
    lean = LeanVideoReceiver(receiver, buffer, nacks)
    nacks.on_filler = lean.filler  # into the frame view, unless the lean path has it off
    receiver.lens_lean = lean  # type: ignore[attr-defined]


class RedUlpfec:
    """RED and ULPFEC on a phone leg (``fec.RedReceiver``), between the wire and the receiver.

    Every decrypted RTP datagram of the leg's (bundled) transport that no lean handler owns
    passes here: a RED packet goes on as the media packet inside it, a retransmission of
    one as a retransmission of that, a FEC packet as a padding-only packet with its
    sequence number; each media packet FEC rebuilds goes straight to the NACK list (no
    longer missing), the technician and the frame view, past the receive statistics (the
    phone's loss figures, which set its FEC rate, are the link's, before repair).

    What it hands on takes the lean path (``LeanReceive``) when the leg has one, so a phone
    that sends RED costs no more CPU than one that does not; aiortc's path only when the
    lean one declines (before the receivers are registered, ``LENS_MEDIA_LEAN=0``). On the
    lean path it is ``LeanReceive.unwrap``; on aiortc's it wraps the DTLS transport's
    ``_handle_rtp_data``."""

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
        queue = dtls.transport._connection._queue
        self._queue = queue if isinstance(queue, InlineMediaQueue) else None
        self._lean = self._queue.lean if self._queue is not None else None
        if self._lean is not None:
            self._lean.unwrap = self.take
        self.lean_handed = self.lean_rebuilt = 0  # packets the lean path took from here

    def _configure(self) -> bool:
        """Find the negotiated payload types (the receiver has them once it started)."""
        types = {c.mimeType.lower(): c.payloadType for c in self._codecs.values()}
        if RED_MIME not in types or ULPFEC_MIME not in types:
            self._off = bool(types)
            return False
        self.red = fec.RedReceiver(types[RED_MIME], types[ULPFEC_MIME])
        nacks = self._receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
        if isinstance(nacks, RepeatingNacks):
            nacks.fec = True  # lost FEC packets' numbers are no loss
        for codec in self._codecs.values():
            if aiortc_codecs.is_rtx(codec):
                apt = codec.parameters.get("apt")
                if apt == self.red.red_type:
                    self._red_rtx = codec.payloadType
                elif isinstance(apt, int):
                    self._media_rtx[apt] = codec.payloadType
        return True

    def _unwrap(self, data: bytes) -> tuple[bytes, list[bytes]] | None:
        """(the packet to hand on in `data`'s place, the packets FEC rebuilt), or None:
        `data` is no RED packet (nor a retransmission of one) and goes on as it is."""
        red = self.red
        if red is None:
            if self._off or len(data) < 12 or not self._configure():
                return None
            red = self.red
        payload_type = data[1] & 0x7F
        if payload_type == red.red_type:
            if FEC_DUMP:
                _dump(data)
            fec_packets = red.fec_packets
            handed, rebuilt = red.receive(data)
            if red.fec_packets != fec_packets and self._link is not None:
                self._link.last_fec = self._link.clock()
            return handed, rebuilt
        if payload_type == self._red_rtx and self._red_rtx is not None:
            media_ssrc = self._rtx_ssrc.get(int.from_bytes(data[8:12], "big"))
            if media_ssrc is None:
                return None
            if FEC_DUMP:
                _dump(data)
            return red.receive_rtx(data, media_ssrc, self._media_rtx.get(red.media_type))
        return None

    def take(self, data: bytes, arrival: float) -> bool:
        """The lean path's hook (``LeanReceive.unwrap``) for a packet no lean handler owns:
        False if it is no RED packet (aiortc's path takes it as it is)."""
        unwrapped = self._unwrap(data)
        if unwrapped is None:
            return False
        handed, rebuilt = unwrapped
        if not self._offer(handed, arrival):
            _drive(self._original(handed, aiortc_clock.current_ms()))
        self._rebuilt(rebuilt)
        return True

    async def _handle(self, data: bytes, arrival_time_ms: int) -> None:
        """aiortc's path (``RTCDtlsTransport._handle_rtp_data``), wrapped."""
        unwrapped = self._unwrap(data) if len(data) > 1 else None
        if unwrapped is None:
            await self._original(data, arrival_time_ms)
            return
        handed, rebuilt = unwrapped
        arrival = self._queue.last_arrival if self._queue is not None else None
        if not self._offer(handed, time.monotonic() if arrival is None else arrival):
            await self._original(handed, arrival_time_ms)
        self._rebuilt(rebuilt)

    def _offer(self, handed: bytes, arrival: float) -> bool:
        """Hand an unwrapped packet to the lean path; False if it declines."""
        lean = self._lean
        if lean is None or len(handed) < 12:
            return False
        if handed[1] & 0x7F in (self.red.red_type, self._red_rtx):  # type: ignore[union-attr]
            return False  # (what stands for a FEC packet before any media: not the lean's)
        if not lean.handle(handed, arrival):
            return False
        self.lean_handed += 1
        return True

    def _rebuilt(self, rebuilt: list[bytes]) -> None:
        lean = self._lean
        for packet in rebuilt:
            if lean is not None and lean.rebuilt(packet):
                self.lean_rebuilt += 1
            else:
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
            # what was unwrapped from RED / rebuilt and then went the lean path
            "red_lean": self.lean_handed,
            "fec_recovered_lean": self.lean_rebuilt,
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


_NO_PAIR = object()


class SendPath:
    """One leg's way out: SRTP-protect into a reused buffer, send on the nominated pair.

    aiortc's ``_send_rtp`` protects with ``pylibsrtp.Session`` (new bytes per packet) and
    looks the pair up each time. Here the packet is protected by :class:`srtp.FastSrtp` in
    its buffer and our UdpTransport sends straight from it; the send target (the pair's
    transport and remote address) is kept and re-checked by identity against the nominated
    pair on each packet, so a new pair (ICE restart, a better pair nominated) is used from
    its first packet on. Transports that may keep the data (TURN's) get bytes, as before;
    a pair whose protocol is not a StunProtocol is sent to through a task, as aiortc does.
    """

    __slots__ = (
        "dtls",
        "_nominated",
        "_srtp",
        "_pair",
        "_transport",
        "_addr",
        "_direct",
        "_native",
    )

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self.dtls = dtls
        # aioice's nominated pairs by component: the leg's ICE connection keeps this dict
        # for its life (an ICE restart changes its entries), so it is looked up once, not
        # through RTCDtlsTransport.transport's property on every packet
        self._nominated: dict[int, Any] = dtls.transport._connection._nominated
        self._srtp: FastSrtp | None = None
        self._pair: Any = _NO_PAIR  # (never None: no pair is checked on every send)
        self._transport: Any = None
        self._addr: Any = None
        self._direct = False
        # the pair's transport when the native send step may send on it (a UdpTransport:
        # its native_fd), else None
        self._native: Any = None

    def send(self, data: bytes, rtcp: bool = False) -> None:
        """SRTP-protect and send one RTP (or RTCP) packet now; ConnectionError without a
        nominated pair (nothing is protected then)."""
        dtls = self.dtls
        pair = self._nominated.get(1)
        if pair is not self._pair:
            self._target(pair)
        srtp = self._srtp
        session = dtls._tx_srtp
        if srtp is None or srtp.session is not session:
            srtp = self._srtp = FastSrtp(session)
        out = srtp.protect_rtcp(data) if rtcp else srtp.protect(data)
        size = len(out)
        if self._direct:
            self._transport.sendto(out, self._addr)
        elif self._transport is not None:
            # StunProtocol.send_data is `self.transport.sendto(...)`: TURN's, which may
            # keep the data
            self._transport.sendto(bytes(out), self._addr)
        else:
            asyncio.ensure_future(pair.protocol.send_data(bytes(out), self._addr))
        dtls._RTCDtlsTransport__tx_bytes += size  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]

    def _target(self, pair: Any) -> None:
        if pair is None:
            raise ConnectionError("no nominated ICE pair")
        protocol = pair.protocol
        self._addr = pair.remote_addr  # (a property: read once a pair)
        if isinstance(protocol, StunProtocol):
            self._transport = protocol.transport
            self._direct = getattr(self._transport, "sends_at_once", False)
        else:
            self._transport = None
            self._direct = False
        has_fd = self._direct and hasattr(self._transport, "native_fd")
        self._native = self._transport if NATIVE is not None and has_fd else None
        self._pair = pair


def send_path(dtls: RTCDtlsTransport) -> SendPath:
    """The leg's :class:`SendPath`, shared by its senders and RTCP (kept on the transport)."""
    path = getattr(dtls, "_lens_send_path", None)
    if path is None:
        path = dtls._lens_send_path = SendPath(dtls)  # type: ignore[attr-defined]
    return path


def _send_datagram(dtls: RTCDtlsTransport, data: bytes, rtcp: bool = False) -> None:
    """SRTP-protect and send one RTP (or RTCP) packet now (aiortc's _send_rtp, no task)."""
    send_path(dtls).send(data, rtcp)


def send_rtcp_directly(receiver_or_sender: RTCRtpReceiver | RTCRtpSender) -> None:
    """Send what aiortc sends itself on this leg (its senders' and receivers' reports,
    NACKs, PLIs) as Lens sends its packets: protected and handed to the socket at once.

    aiortc's ``RTCDtlsTransport._send_rtp`` awaits four coroutines of aioice's on the way
    to the socket (``RTCIceTransport._send`` → ``Connection.send`` → ``sendto`` →
    ``StunProtocol.send_data``) for each RTCP packet: a per-session cost that runs
    several times a second whether media flows or not."""
    dtls = receiver_or_sender.transport

    async def send_rtp(data: bytes) -> None:
        if dtls._state is not _CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        _send_datagram(dtls, data, rtcp=len(data) > 1 and 191 < data[1] < 209)  # is_rtcp

    dtls._send_rtp = send_rtp  # type: ignore[method-assign]


def negotiated_extension_id(transceiver: RTCRtpTransceiver, uri: str) -> int | None:
    """The id the remote offer gave a header extension we answered with, else None."""
    for extension in transceiver._headerExtensions:
        if extension.uri == uri:
            return extension.id
    return None


_RTP_HEADER = struct.Struct("!BBHII")
_CONNECTED = DtlsState.CONNECTED  # (a module global: no Enum lookup per packet)
NATIVE = native.load()  # the native send step, or None: the Python path (lens.media.native)
PROTECT = native.PROTECT
RTX_HISTORY = 512  # packets per leg kept for the technician's NACKs (~4 s of 1 Mbps video)
NTP_UNIX_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)


def _ntp_now() -> int:
    """The current time as a 64-bit NTP timestamp (aiortc's clock goes through datetime)."""
    return int((time.time() + NTP_UNIX_OFFSET) * 4294967296)


class PacketSender:
    """Sends ready-made RTP packets (``forwarder.RtpView``) as an aiortc sender's stream.

    Each packet is written with struct (header, the sender's MID and, for video, the
    playout-delay extension when asked for), kept in this leg's retransmission buffer
    (plain bytes), SRTP-protected and sent on the nominated pair at once; it counts in the
    sender's reports (SR). The technician's NACKs are answered from that buffer (over RTX
    when negotiated): it replaces the sender's ``_retransmit``, which aiortc's RTCP
    handling calls for each NACKed sequence number."""

    def __init__(
        self,
        sender: RTCRtpSender,
        playout_delay_id: int | None = None,
        history: int = RTX_HISTORY,
    ) -> None:
        self._sender = sender
        self._playout_delay_id = playout_delay_id
        self._extensions: bytes | None = None  # the MID extension block, once started
        self._with_delay: dict[tuple[int, int], bytes] = {}
        self._history: list[tuple[int, bytes, int] | None] = [None] * history
        self._history_size = history
        self._dtls: RTCDtlsTransport | None = None
        self._send_path: SendPath | None = None
        self._report_timestamp: int | None = None  # the RTP timestamp the SR fields hold
        self.retransmitted = 0
        sender._retransmit = self.retransmit  # type: ignore[method-assign]

    @property
    def ssrc(self) -> int:
        return self._sender._ssrc

    def ready(self) -> bool:
        """True once the leg is connected and the sender configured (MID, extensions)."""
        if self._dtls is None:
            sender = self._sender
            if not sender._RTCRtpSender__started:  # type: ignore[attr-defined]
                return False
            self._dtls = sender.transport  # (started: it stays this one)
        return self._dtls._state is _CONNECTED

    def send(self, packet: Any) -> bool:
        """Put `packet` (an RtpView) on the wire now; False if the leg is not connected
        (yet)."""
        return self.send_rtp(
            packet.payload_type,
            packet.marker,
            packet.sequence_number,
            packet.timestamp,
            packet.ssrc,
            packet.payload,
            packet.playout_delay,
            packet.padding_size,
        )

    def send_rtp(
        self,
        payload_type: int,
        marker: int,
        seq: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        playout_delay: tuple[int, int] | None = None,
        padding_size: int = 0,
    ) -> bool:
        """Put a packet, given by its fields (``forwarder.SendRtp``), on the wire now;
        False if the leg is not connected (yet)."""
        # (every packet of every leg comes through here: locals, no property on the way)
        dtls = self._dtls
        if dtls is None:  # (ready() was not asked: tests, the bench's phones)
            dtls = self._sender.transport
        if dtls._state is not _CONNECTED:
            return False
        extensions = self._extensions
        if extensions is None:
            extensions = self._extensions = self._extension_block(None)
        delay = playout_delay
        if delay is not None and self._playout_delay_id:
            extensions = self._with_delay.get(delay)
            if extensions is None:
                extensions = self._with_delay[delay] = self._extension_block(delay)
        path = self._send_path
        if path is None or path.dtls is not dtls:
            path = self._send_path = send_path(dtls)
        srtp = path._srtp
        direct = (
            path._direct
            and path._nominated.get(1) is path._pair
            and srtp is not None
            and srtp.session is dtls._tx_srtp
        )
        udp_transport = path._native if direct and not padding_size else None
        size = -2
        if udp_transport is not None and udp_transport.native_fd >= 0:
            # the native send step (lens.media.native): written, kept for NACKs,
            # protected and sent in one call, as below; -2: the address is not one it
            # parses, the Python path sends
            try:
                size = NATIVE.send_rtp(  # type: ignore[union-attr]
                    PROTECT,
                    srtp.address,  # type: ignore[union-attr]
                    udp_transport.native_fd,
                    path._addr,
                    (0x80 if marker else 0) | payload_type,
                    seq,
                    timestamp,
                    ssrc,
                    extensions,
                    payload,
                    self._history,
                    seq % self._history_size,
                )
            except NATIVE.ProtectError as exc:  # type: ignore[union-attr]
                raise pylibsrtp.Error(pylibsrtp.ERRORS[exc.args[0]]) from None
            except OSError as exc:  # as UdpTransport.sendto
                udp_transport._protocol.error_received(exc)
                size = 0
            if size == -1:  # the kernel could not take it now: dropped (UdpTransport's)
                udp_transport.send_dropped += 1
                size = 0
            if size >= 0:
                dtls._RTCDtlsTransport__tx_bytes += size  # type: ignore[attr-defined]
                dtls._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]
        if size == -2:
            if padding_size:
                packet = RtpView(payload_type, marker, seq, timestamp, ssrc, payload, padding_size)
                data = packet.serialize(extensions)
            else:  # RtpView.serialize, inline: one join, one copy of the payload
                header = _RTP_HEADER.pack(
                    0x90 if extensions else 0x80,
                    (0x80 if marker else 0) | payload_type,
                    seq,
                    timestamp,
                    ssrc,
                )
                data = b"".join((header, extensions, payload))
            self._history[seq % self._history_size] = (seq, data, 12 + len(extensions))
            if direct:
                # SendPath.send's common case, inline (every packet of every leg: one
                # Python call less): the pair and SRTP session it keeps are still the
                # leg's, and its socket sends at once; anything else (a new pair or
                # session, TURN, no pair) goes through SendPath.send
                out = srtp.protect(data)  # type: ignore[union-attr]
                path._transport.sendto(out, path._addr)
                dtls._RTCDtlsTransport__tx_bytes += len(out)  # type: ignore[attr-defined]
                dtls._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]
            else:
                try:
                    path.send(data)
                except ConnectionError:
                    return False
        sender = self._sender
        if timestamp != self._report_timestamp:
            # the sender report pairs an RTP timestamp with the wall clock when it was
            # sent: the first packet of a frame stands for all of its packets (they share
            # the timestamp), so the clock is read once a frame, not once a packet
            self._report_timestamp = timestamp
            # (_ntp_now, inline: every audio packet has a timestamp of its own)
            ntp = int((time.time() + NTP_UNIX_OFFSET) * 4294967296)
            sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
            sender._RTCRtpSender__rtp_timestamp = timestamp  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count += len(payload)  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]
        return True

    async def retransmit(self, sequence_number: int) -> None:
        """Send a packet the remote reported lost again, from this leg's buffer."""
        entry = self._history[sequence_number % self._history_size]
        if entry is None or entry[0] != sequence_number:
            return
        _, data, payload_at = entry
        sender = self._sender
        rtx_type = sender._RTCRtpSender__rtx_payload_type  # type: ignore[attr-defined]
        if rtx_type is not None:
            rtx_seq = sender._RTCRtpSender__rtx_sequence_number  # type: ignore[attr-defined]
            sender._RTCRtpSender__rtx_sequence_number = uint16_add(rtx_seq, 1)  # type: ignore[attr-defined]
            data = b"".join(
                (
                    bytes((data[0], (data[1] & 0x80) | rtx_type)),
                    rtx_seq.to_bytes(2, "big"),
                    data[4:8],
                    sender._rtx_ssrc.to_bytes(4, "big"),
                    data[12:payload_at],
                    sequence_number.to_bytes(2, "big"),
                    data[payload_at:],
                )
            )
        if sender.transport._state != DtlsState.CONNECTED:
            return
        try:
            _send_datagram(sender.transport, data)
        except ConnectionError:
            return
        self.retransmitted += 1

    def _extension_block(self, playout_delay: tuple[int, int] | None) -> bytes:
        """The one-byte header extension block: the MID, and the playout delay if given."""
        sender = self._sender
        ids = sender._RTCRtpSender__rtp_header_extensions_map._HeaderExtensionsMap__ids  # type: ignore[attr-defined]
        mid = sender._RTCRtpSender__mid  # type: ignore[attr-defined]
        elements = []
        if mid is not None and ids.mid:
            elements.append((ids.mid, mid.encode("utf8")))
        if playout_delay is not None and self._playout_delay_id:
            low, high = playout_delay
            elements.append((self._playout_delay_id, ((low << 12) | high).to_bytes(3, "big")))
        if not elements:
            return b""
        profile, value = pack_header_extensions(elements)
        return struct.pack("!HH", profile, len(value) // 4) + value


if NATIVE is not None:
    # what the native forward step (forwarder.FORWARD) needs to stand in for
    # PacketSender.send_rtp: the function, aiortc's connected state and the names of the
    # aiortc attributes send_rtp writes (kept here, with everything else of aiortc's)
    NATIVE.configure(
        PacketSender.send_rtp,
        _CONNECTED,
        time.monotonic,
        pylibsrtp.Error,
        pylibsrtp.ERRORS,
        PROTECT,
        float(NTP_UNIX_OFFSET),
        {
            "tx_bytes": "_RTCDtlsTransport__tx_bytes",
            "tx_packets": "_RTCDtlsTransport__tx_packets",
            "ntp_timestamp": "_RTCRtpSender__ntp_timestamp",
            "rtp_timestamp": "_RTCRtpSender__rtp_timestamp",
            "octet_count": "_RTCRtpSender__octet_count",
            "packet_count": "_RTCRtpSender__packet_count",
        },
    )


XR_INTERVAL = 1.0  # seconds between two XR receiver reference times on the phone's leg
RTCP_SR, RTCP_RR, RTCP_XR = 200, 201, 207
XR_RRTR, XR_DLRR = 4, 5  # RFC 3611 block types
_REPORT_BLOCK = struct.Struct("!I12xII")  # SSRC, (loss, sequence, jitter), LSR, DLSR
_XR_BLOCK = struct.Struct("!BBH")  # block type, reserved, length in words
_DLRR_ITEM = struct.Struct("!III")  # SSRC, LRR, DLRR
REPORTS_KEPT = 16  # own reports remembered for the answers to them


def _compact_ntp(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp (LSR, LRR)."""
    return (ntp >> 16) & 0xFFFFFFFF


class RtcpRoundTrip:
    """The phone leg's round trip from RTCP, fed to its :class:`LinkEstimate`.

    NACK → retransmission measures it only when a hole waits for a retransmission; with
    the phone's FEC repairing the holes none may, and the give-up, NACK retry and the
    technician's playout floor would rest on a guess. Two RTCP measures need no loss:

    * as a sender: the phone's receiver reports echo the sidecar's sender reports of the
      audio it sends the phone (the technician's voice; RFC 3550 LSR/DLSR). A browser
      reports only on a stream it receives: nothing while the technician sends no audio.
    * as a receiver: an XR receiver reference time (RFC 3611 RRTR) every second, which
      libwebrtc answers with DLRR (the receiver's LSR/DLSR, RFC 3550, give the sender
      the round trip, never the receiver)."""

    def __init__(
        self,
        link: LinkEstimate,
        audio_sender: RTCRtpSender | None,
        video_receiver: RTCRtpReceiver | None,
    ) -> None:
        self._link = link
        self._sender = audio_sender
        self._receiver = video_receiver
        self._sr_sent: dict[int, float | None] = {}  # LSR -> sent (None: two SRs had it)
        self._rrtr_sent: dict[int, float] = {}  # LRR -> sent
        self._timer: asyncio.TimerHandle | None = None
        self.sr_samples = 0
        self.xr_samples = 0
        hooked = set()
        for part in (audio_sender, video_receiver):
            dtls = part.transport if part is not None else None
            if dtls is not None and id(dtls) not in hooked:
                hooked.add(id(dtls))
                self._hook(dtls)
        if audio_sender is not None:
            send_rtcp = audio_sender._send_rtcp

            async def sent_reports(packets: list[Any]) -> None:
                self._sent(packets)
                await send_rtcp(packets)

            audio_sender._send_rtcp = sent_reports  # type: ignore[method-assign]
        if video_receiver is not None:
            self._timer = asyncio.get_running_loop().call_later(XR_INTERVAL, self._send_rrtr)

    def _hook(self, dtls: RTCDtlsTransport) -> None:
        handle = dtls._handle_rtcp_data

        async def reports_read(data: bytes) -> None:
            self.read(data)
            await handle(data)

        dtls._handle_rtcp_data = reports_read  # type: ignore[method-assign]

    def _sent(self, packets: list[Any]) -> None:
        """The audio sender's RTCP goes out now: remember when each SR left."""
        for packet in packets:
            if isinstance(packet, RtcpSrPacket) and packet.sender_info.ntp_timestamp:
                # aiortc stamps an SR with its last RTP packet's time: while no audio
                # flows two SRs carry one LSR, and an answer could be to either
                lsr = _compact_ntp(packet.sender_info.ntp_timestamp)
                at = None if lsr in self._sr_sent else time.monotonic()
                self._remember(self._sr_sent, lsr, at)

    def _send_rrtr(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(XR_INTERVAL, self._send_rrtr)
        receiver = self._receiver
        dtls = receiver.transport if receiver is not None else None
        ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[union-attr]
        if dtls is None or ssrc is None or dtls._state != DtlsState.CONNECTED:
            return
        ntp = _ntp_now()
        data = struct.pack("!BBHIBBHQ", 0x80, RTCP_XR, 4, ssrc, XR_RRTR, 0, 2, ntp)
        try:
            _send_datagram(dtls, data, rtcp=True)
        except ConnectionError:
            return
        self._remember(self._rrtr_sent, _compact_ntp(ntp), time.monotonic())

    @staticmethod
    def _remember(sent: dict, key: int, at: float | None) -> None:
        sent[key] = at
        if len(sent) > REPORTS_KEPT:
            del sent[next(iter(sent))]

    def read(self, data: bytes) -> None:
        """Take the round trip from the answers to the sidecar's reports in a decrypted
        RTCP compound packet: RR/SR report blocks on the audio sender's SSRC, XR DLRR
        items on the video receiver's."""
        sender_ssrc = self._sender._ssrc if self._sender is not None else None
        receiver = self._receiver
        own_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc if receiver is not None else None  # type: ignore[attr-defined]
        pos = 0
        while pos + 8 <= len(data):
            count, kind = data[pos] & 0x1F, data[pos + 1]
            end = min(len(data), pos + 4 + 4 * int.from_bytes(data[pos + 2 : pos + 4], "big"))
            if kind in (RTCP_SR, RTCP_RR) and sender_ssrc is not None:
                block = pos + (28 if kind == RTCP_SR else 8)
                for _ in range(count):
                    if block + 24 > end:
                        break
                    ssrc, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, block)
                    if ssrc == sender_ssrc and self._answer(self._sr_sent, lsr, dlsr):
                        self.sr_samples += 1
                    block += 24
            elif kind == RTCP_XR and own_ssrc is not None:
                block = pos + 8
                while block + 4 <= end:
                    block_type, _, words = _XR_BLOCK.unpack_from(data, block)
                    block_end = min(end, block + 4 + 4 * words)
                    if block_type == XR_DLRR:
                        for item in range(block + 4, block_end - 11, 12):
                            ssrc, lrr, dlrr = _DLRR_ITEM.unpack_from(data, item)
                            if ssrc == own_ssrc and self._answer(self._rrtr_sent, lrr, dlrr):
                                self.xr_samples += 1
                    block = block_end
            pos = end

    def _answer(self, sent: dict[int, float | None], last: int, delay: int) -> bool:
        """A report answered one of ours (`last`), `delay`/65536 s after it arrived:
        True if that gave the link a round-trip sample."""
        at = sent.get(last) if last and delay else None
        if at is None:
            return False
        self._link.rtcp_rtt_sample(time.monotonic() - at - delay / 65536)
        return True

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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


def read_directly(receiver_or_sender: RTCRtpReceiver | RTCRtpSender, stamp: bool) -> int:
    """Send a leg's SRTP/SRTCP datagrams from its sockets straight to its InlineMediaQueue,
    with the kernel's arrival stamp of each if `stamp` (transport-cc).

    The host-candidate sockets are lens.media.udp's UdpTransport (ice.py makes them): it
    reads them in batches into a reused buffer (with SO_TIMESTAMPNS once asked), and hands
    a media datagram (that buffer, its size) to `media` instead of aioice's STUN parser
    (which fails on each of them with an exception, then queues it: the same place). TURN
    sockets keep asyncio's transport. Call once the leg's candidates are gathered, after
    :func:`inline_media`; returns how many sockets now read this way."""
    connection = receiver_or_sender.transport.transport._connection
    queue = connection._queue if isinstance(connection._queue, InlineMediaQueue) else None
    switched = 0
    for protocol in connection._protocols:
        transport = getattr(protocol, "transport", None)
        if not isinstance(transport, UdpTransport) or transport.media is not None:
            continue
        if stamp and not transport.stamp_arrivals():
            continue
        transport.media = queue.put_received if queue is not None else None
        transport.native_sink = queue  # (used with the native receive step only)
        switched += 1
    return switched


class InlineMediaQueue(asyncio.Queue):
    """aioice's datagram queue for one leg, with a fast path for SRTP/SRTCP.

    aioice puts each datagram on a queue that the DTLS transport's task awaits: three
    coroutine layers and a task switch per packet. Once DTLS is up and nothing is queued
    (order is kept), an SRTP or SRTCP datagram is instead decrypted and handled right away,
    in the socket callback: RTP for a diverted receiver by :class:`LeanReceive` (the lean
    path), anything else by aiortc's RTP/RTCP handling, which is what aiortc's receive
    loop does for it (``RTCDtlsTransport._recv_next``). Every datagram's arrival time is
    noted as it comes off the socket (``last_arrival``, for transport-cc)."""

    last_arrival: float | None = None

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        super().__init__()
        self._dtls = dtls
        self.inline = 0
        self.kernel_stamped = 0
        self.lean = LeanReceive(dtls) if LEAN else None
        self._srtp: FastSrtp | None = None  # on dtls._rx_srtp's context, once it exists
        self._buffer = PacketBuffer()  # for datagrams that come as bytes

    def put_nowait(self, item: Any) -> None:
        """aioice's way in: DTLS and anything else its StunProtocol did not parse as STUN,
        and None when the nominated pair's socket is lost."""
        if item is None:
            super().put_nowait((time.monotonic(), None))
        else:
            self.put_datagram(item[0], None, item[1])

    def put_datagram(self, data: bytes, arrival: float | None, component: int = 1) -> None:
        """One datagram as bytes, with the kernel's arrival time if stamped (aioice's way
        in, and sockets other than our UdpTransport's)."""
        dtls = self._dtls
        if (
            INLINE
            and not self._queue  # type: ignore[attr-defined]
            and data
            and 127 < data[0] < 192
            and dtls._rx_srtp is not None
            and dtls._state is _CONNECTED
        ):
            buffer = self._buffer
            size = len(data)
            if size <= buffer.size:  # (longer: unprotect refuses it, as pylibsrtp)
                buffer.data[:size] = data
            self._inline(buffer, size, arrival)
        else:
            self._enqueue(data, arrival, component)

    def put_received(self, buffer: PacketBuffer, size: int, arrival: float | None) -> None:
        """An SRTP/SRTCP datagram in a UdpTransport's reused buffer, with the kernel's
        arrival time if stamped (its way in): unprotected in place, copied out once."""
        dtls = self._dtls
        if (
            INLINE
            and not self._queue  # type: ignore[attr-defined]
            and dtls._rx_srtp is not None
            and dtls._state is _CONNECTED
        ):
            self._inline(buffer, size, arrival)
        else:
            self._enqueue(bytes(buffer.view[:size]), arrival, 1)

    def _enqueue(self, data: bytes, arrival: float | None, component: int) -> None:
        if arrival is None:
            now = time.monotonic()
        else:
            now = arrival
            self.kernel_stamped += 1
        super().put_nowait((now, (data, component)))

    def _inline(self, buffer: PacketBuffer, size: int, arrival: float | None) -> None:
        """Decrypt the datagram in `buffer` in place and handle it now; what goes on (and
        may be kept: retransmission and snapshot history, aiortc's receivers) is bytes."""
        now = self._arrived(size, arrival)
        dtls = self._dtls
        session = dtls._rx_srtp
        srtp = self._srtp
        if srtp is None or srtp.session is not session:
            srtp = self._srtp = FastSrtp(session)
        try:
            if size > 1 and 191 < buffer.data[1] < 209:  # RTCP (aiortc's is_rtcp)
                size = srtp.unprotect_rtcp(buffer, size)
                _drive(dtls._handle_rtcp_data(bytes(buffer.view[:size])))
            else:
                size = srtp.unprotect(buffer, size)
                self._handle_rtp(bytes(buffer.view[:size]), now)
        except pylibsrtp.Error:
            pass  # what aiortc does with a packet it cannot decrypt
        except Exception:
            logger.exception("inline RTP/RTCP handling failed")

    def native_context(self) -> int:
        """For the native receive step (``udp.UdpTransport``): the address of the libsrtp
        context that decrypts this leg's datagrams inline now, 0 when they are queued
        (put_received's test)."""
        dtls = self._dtls
        session = dtls._rx_srtp
        if INLINE and not self._queue and session is not None and dtls._state is _CONNECTED:  # type: ignore[attr-defined]
            srtp = self._srtp
            if srtp is None or srtp.session is not session:
                srtp = self._srtp = FastSrtp(session)
            return srtp.address
        return 0

    def put_plain(self, status: int, plain: bytes | None, arrival: float | None, size: int) -> None:
        """A datagram of `size` bytes the native receive step decrypted with
        :meth:`native_context`'s context: `plain` RTP (status 1) or RTCP (2), or refused by
        libsrtp (status < 0: dropped, as aiortc does); handled as :meth:`_inline` does."""
        now = self._arrived(size, arrival)
        if status < 0:
            return
        try:
            if status == 2:
                _drive(self._dtls._handle_rtcp_data(plain))
            else:
                self._handle_rtp(plain, now)  # type: ignore[arg-type]
        except Exception:
            logger.exception("inline RTP/RTCP handling failed")

    def _arrived(self, size: int, arrival: float | None) -> float:
        """Count a datagram taken inline; its arrival time (the kernel's stamp, or now)."""
        if arrival is None:
            now = time.monotonic()
        else:
            now = arrival
            self.kernel_stamped += 1
        self.last_arrival = now
        self.inline += 1
        dtls = self._dtls
        dtls._RTCDtlsTransport__rx_bytes += size  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        return now

    def _handle_rtp(self, data: bytes, now: float) -> None:
        lean = self.lean
        if lean is None or not lean.handle(data, now):
            arrival_ms = aiortc_clock.current_ms()
            _drive(self._dtls._handle_rtp_data(data, arrival_time_ms=arrival_ms))

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


# ----- the lean receive path ------------------------------------------------------------
#
# What aiortc's RTCDtlsTransport._handle_rtp_data and RTCRtpReceiver._handle_rtp_packet do
# for a diverted receiver, on the decrypted datagram's bytes: the header read with struct,
# only the transport-cc extension looked for, no RtpPacket, no per-packet datetime, no
# coroutines. Packets of a payload type no diverted receiver owns (and everything before
# the receivers are registered) still go through aiortc.

_SEQ_TS_SSRC = struct.Struct("!HII")
NOT_MEDIA = {"red", "ulpfec", "flexfec", "flexfec-03", "rtx"}  # payload formats, not codecs
_EXTENSION_HEADER = struct.Struct("!HH")
_NOT_LEARNT = object()


def _extension_value(data: bytes, start: int, end: int, profile: int, wanted: int) -> int | None:
    """A two-byte header extension's value (transport-cc's sequence number), or None."""
    i = start
    if profile == 0xBEDE:  # one-byte elements
        while i < end:
            byte = data[i]
            if byte == 0:  # padding
                i += 1
                continue
            ext_id, length = byte >> 4, (byte & 0x0F) + 1
            if ext_id == 15:
                return None
            if ext_id == wanted:
                return (data[i + 1] << 8) | data[i + 2] if length == 2 and i + 3 <= end else None
            i += 1 + length
    elif profile & 0xFFF0 == 0x1000:  # two-byte elements
        while i + 1 < end:
            ext_id = data[i]
            if ext_id == 0:
                i += 1
                continue
            length = data[i + 1]
            if ext_id == wanted:
                return (data[i + 2] << 8) | data[i + 3] if length == 2 and i + 4 <= end else None
            i += 2 + length
    return None


def _parse_rtp(data: bytes, wanted: int) -> tuple[int, int, int, int, int, int, int] | None:
    """An RTP packet's (12 bytes at least) sequence number, timestamp, SSRC, where its
    payload starts and ends, its padding size and the value of its two-byte header extension
    element `wanted` (0: none asked; -1: absent); None if malformed. ``_native.parse_rtp``
    is the same in C, used when built (:data:`parse_rtp`)."""
    size = len(data)
    first = data[0]
    seq, timestamp, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
    pos = 12 + 4 * (first & 0x0F)
    value = -1
    if first & 0x10:
        if size < pos + 4:
            return None
        profile, words = _EXTENSION_HEADER.unpack_from(data, pos)
        start = pos + 4
        pos = start + 4 * words
        if wanted:
            found = _extension_value(data, start, min(pos, size), profile, wanted)
            value = -1 if found is None else found
    end = size
    padding = 0
    if first & 0x20:
        padding = data[-1]
        end -= padding
    if pos > end:
        return None
    return seq, timestamp, ssrc, pos, end, padding, value


parse_rtp = NATIVE.parse_rtp if NATIVE is not None else _parse_rtp


class LeanReceive:
    """Reads one leg's decrypted RTP packets and hands each to its diverted receiver's
    lean handler (``receiver.lens_lean``), routed by payload type as aiortc's RtpRouter
    does under BUNDLE. Transport-cc sequence numbers go to `on_transport_seq`. A packet
    of a payload type no handler owns (RED, its retransmissions) is offered to `unwrap`
    (``RedUlpfec.take``), which hands what it unwraps back here."""

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._routes: dict[int, Any] = {}
        self._transport_cc_id = 0
        self.on_transport_seq: Callable[[int, float], None] | None = None
        self.unwrap: Callable[[bytes, float], bool] | None = None
        self.packets = 0

    def handle(self, data: bytes, arrival: float) -> bool:
        """Handle one decrypted RTP packet; False: aiortc's path is to take it."""
        if len(data) < 12:
            return False
        second = data[1]
        payload_type = second & 0x7F
        route = self._routes.get(payload_type, _NOT_LEARNT)
        if route is _NOT_LEARNT:
            route = self._learn(payload_type)
        if route is None:
            return self.unwrap is not None and self.unwrap(data, arrival)
        on_transport_seq = self.on_transport_seq
        fields = parse_rtp(data, self._transport_cc_id if on_transport_seq else 0)
        if fields is None:
            return True  # malformed: dropped, as aiortc does
        seq, timestamp, ssrc, pos, end, padding, sequence = fields
        if sequence >= 0:
            on_transport_seq(sequence, arrival)  # type: ignore[misc]
        self.packets += 1
        handler, codec, _ = route
        handler(
            RtpView(payload_type, second >> 7, seq, timestamp, ssrc, data[pos:end], padding), codec
        )
        return True

    def rebuilt(self, data: bytes) -> bool:
        """Handle a media packet FEC rebuilt (``RedUlpfec``): it never crossed the wire, so
        no transport-cc number and no receive statistics; False: not the lean path's."""
        payload_type = data[1] & 0x7F
        route = self._routes.get(payload_type, _NOT_LEARNT)
        if route is _NOT_LEARNT:
            route = self._learn(payload_type)
        header = fec.header_length(data)
        if route is None or header is None or not hasattr(route[2], "rebuilt"):
            return False
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)
        if header > end:
            return True
        seq, timestamp, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        view = RtpView(payload_type, data[1] >> 7, seq, timestamp, ssrc, data[header:end])
        route[2].rebuilt(view, route[1])
        return True

    def _learn(self, payload_type: int) -> Any:
        receivers = self._dtls._rtp_router.payload_type_table.get(payload_type)
        if not receivers:
            return None  # not registered yet: aiortc decides, and this is asked again
        route = None
        if len(receivers) == 1:
            receiver = next(iter(receivers))
            lean = getattr(receiver, "lens_lean", None)
            codecs = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
            codec = codecs.get(payload_type)
            media = codec
            if codec is not None and aiortc_codecs.is_rtx(codec):
                media = codecs.get(codec.parameters.get("apt"))
            # media and its retransmissions only: RED, ULPFEC, FlexFEC... go through
            # aiortc's handling (and whatever wraps it)
            if lean is not None and media is not None and media.name.lower() not in NOT_MEDIA:
                route = (lean.handle, codec, lean)
        ids = self._dtls._rtp_header_extensions_map._HeaderExtensionsMap__ids  # type: ignore[attr-defined]
        self._transport_cc_id = ids.transport_sequence_number or 0
        self._routes[payload_type] = route
        return route


def _stream_statistics(receiver: RTCRtpReceiver, ssrc: int, clock_rate: int) -> Any:
    """The receiver's statistics of one incoming SSRC (its receiver reports read them)."""
    # the RTCP router finds the receiver of the sender's reports by SSRC (aiortc's RTP
    # router learns it from the packets it routes, which these are not)
    receiver.transport._rtp_router.ssrc_table.setdefault(ssrc, receiver)
    streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    stats = streams.get(ssrc)
    if stats is None:
        stats = streams[ssrc] = LeanStreamStatistics(clock_rate)
    return stats


class LeanStreamStatistics(aiortc_receiver_module.StreamStatistics):
    """aiortc's receive statistics (its receiver reports read them), counted per packet
    with the sequence number comparison inline (aiortc calls ``uint16_gt`` for it)."""

    def add(self, packet: Any) -> None:
        sequence_number = packet.sequence_number
        max_seq = self.max_seq
        self.packets_received += 1
        if self.base_seq is None:
            self.base_seq = sequence_number
        if max_seq is None or 0 < (sequence_number - max_seq) & 0xFFFF < 0x8000:
            arrival = int(time.time() * self._clockrate)
            if max_seq is not None and sequence_number < max_seq:
                self.cycles += 1 << 16
            self.max_seq = sequence_number
            timestamp = packet.timestamp
            if timestamp != self._last_timestamp and self.packets_received > 1:
                diff = abs((arrival - self._last_arrival) - (timestamp - self._last_timestamp))
                self._jitter_q4 += diff - ((self._jitter_q4 + 8) >> 4)
            self._last_arrival = arrival
            self._last_timestamp = timestamp


class LeanVideoReceiver:
    """A diverted video receiver's per-packet work, on an RtpView: statistics, RTX
    unwrapped, NACK bookkeeping and forwarding (``RepeatingNacks``), then the frame view
    (``ForwardingVideoBuffer``), as ``RTCRtpReceiver._handle_rtp_packet`` orders them.

    The frame view (reassembly into frames) can be switched off (:func:`frame_view`): the
    sidecar needs frames only while it records. Then what the buffer does for the live
    stream is done packet by packet instead: a hole whose give-up passed (a NACKed packet
    that never came) or a gap too long to NACK asks for a keyframe through the buffer's
    one-in-flight gate, an outage calls its `on_outage`, and a keyframe's size is noted."""

    def __init__(
        self, receiver: RTCRtpReceiver, buffer: ForwardingVideoBuffer, nacks: RepeatingNacks
    ) -> None:
        self._receiver = receiver
        self._buffer = buffer
        self._nacks = nacks
        self._codecs: dict[int, RTCRtpCodecParameters] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        self._rtx_ssrc: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
        self._stats: dict[int, Any] = {}
        self._names: dict[int, str] = {}  # payload type -> codec name, upper case
        self.frame_view = True
        self._fed = False  # the lean path has this receiver's packets (else aiortc's has)
        self._keyframe_timestamp: int | None = None
        self._keyframe_bytes = 0
        nacks.on_given_up = self._given_up

    def handle(self, packet: RtpView, codec: RTCRtpCodecParameters) -> None:
        stats = self._stats.get(packet.ssrc)
        if stats is None:
            stats = self._stats[packet.ssrc] = _stream_statistics(
                self._receiver, packet.ssrc, codec.clockRate
            )
            self._fed = True
        stats.add(packet)
        if self.frame_view or self._names.get(packet.payload_type) != "VP8":
            self._media(packet, codec, False)
            return
        # the common case (VP8, no frame view: not recording), every video packet: what
        # _media and _watch(packet, "VP8") do, inline (two Python calls a packet less)
        payload = packet.payload
        vp8 = packet.vp8 = parse_vp8(payload) if payload else None
        buffer = self._buffer
        buffer.media_ssrc = packet.ssrc
        nacks = self._nacks
        before = nacks.nacks.max_seq
        nacks.add(packet)
        if buffer.link.silence >= SILENCE:  # an outage: the stream needs a keyframe
            if buffer._on_outage is not None:
                buffer._on_outage()
            else:
                buffer._ask_keyframe()
        elif before is not None:
            gap = ((packet.sequence_number - before) & 0xFFFF) - 1  # (uint16_add, inline)
            if MAX_NACKED < gap < 0x8000:  # more missing than a NACK asks for
                buffer.holes_given_up += 1
                buffer._ask_keyframe()
        if not payload:
            return
        timestamp = packet.timestamp
        if vp8 is not None and vp8.keyframe:
            self._keyframe_timestamp = timestamp
            self._keyframe_bytes = 0
        if timestamp == self._keyframe_timestamp:
            self._keyframe_bytes += len(payload)
            if packet.marker:
                buffer.keyframes.keyframe_arrived(self._keyframe_bytes)
                self._keyframe_timestamp = None

    def rebuilt(self, packet: RtpView, codec: RTCRtpCodecParameters) -> None:
        """A media packet FEC rebuilt (``RedUlpfec``): as one that came, less the receive
        statistics and the link's arrival (no jitter, no round-trip sample)."""
        self._media(packet, codec, True)

    def filler(self, packet: RtpView) -> None:
        """What stands for a lost FEC packet (``RepeatingNacks``), for the frame view: it
        takes the number, so the view does not wait for it (unless the view is off)."""
        if self.frame_view or not self._fed:
            self._buffer.add(packet)

    def _media(self, packet: RtpView, codec: RTCRtpCodecParameters, rebuilt: bool) -> None:
        name = self._names.get(packet.payload_type)
        if name is None:
            name = self._names[packet.payload_type] = codec.name.upper()
        if name == "RTX":
            original = self._rtx_ssrc.get(packet.ssrc) or self._buffer.media_ssrc
            apt = codec.parameters.get("apt")
            payload = packet.payload
            if original is None or len(payload) < 2 or apt not in self._codecs:
                return
            packet = RtpView(
                apt,
                packet.marker,
                (payload[0] << 8) | payload[1],
                packet.timestamp,
                original,
                payload[2:],
            )
            codec = self._codecs[apt]
            name = codec.name.upper()
        payload = packet.payload
        if name == "VP8" and payload:
            packet.vp8 = parse_vp8(payload)
        if not self.frame_view:
            self._watch(packet, name, rebuilt)
            return
        if rebuilt:
            self._nacks.add_rebuilt(packet)
        else:
            self._nacks.add(packet)
        # the frame view's codec data (what aiortc's depayload makes)
        if payload:
            if name == "VP8":
                if packet.vp8 is None:
                    return
                packet._data = payload[packet.vp8.header_len :]
            elif name == "H264":
                try:
                    packet._data = aiortc_codecs.depayload(codec, payload)
                except ValueError:
                    return
            else:
                packet._data = payload
        self._buffer.add(packet)

    def _watch(self, packet: RtpView, name: str, rebuilt: bool = False) -> None:
        """The live stream's needs without the frame view (see the class doc); `handle`
        does the same inline for VP8 packets that came (keep the two alike)."""
        buffer = self._buffer
        buffer.media_ssrc = packet.ssrc
        nacks = self._nacks.nacks
        before = nacks.max_seq
        if rebuilt:  # (it fills a hole: no gap, no outage)
            self._nacks.add_rebuilt(packet)
        else:
            self._nacks.add(packet)
            if buffer.link.silence >= SILENCE:  # an outage: the stream needs a keyframe
                if buffer._on_outage is not None:
                    buffer._on_outage()
                else:
                    buffer._ask_keyframe()
            elif before is not None:
                gap = uint16_add(packet.sequence_number, -before) - 1
                if MAX_NACKED < gap < 0x8000:  # more missing than a NACK asks for
                    buffer.holes_given_up += 1
                    buffer._ask_keyframe()
        payload = packet.payload
        if not payload:
            return
        if name == "VP8":
            starts = packet.vp8 is not None and packet.vp8.keyframe
        elif name == "H264":
            starts = h264_starts_keyframe(payload)
        else:
            starts = False
        if starts:
            self._keyframe_timestamp = packet.timestamp
            self._keyframe_bytes = 0
        if packet.timestamp == self._keyframe_timestamp:
            self._keyframe_bytes += len(payload)
            if packet.marker:
                buffer.keyframes.keyframe_arrived(self._keyframe_bytes)
                self._keyframe_timestamp = None

    def _given_up(self, count: int) -> None:
        if not self.frame_view:  # (the frame view gives holes up itself)
            self._buffer.holes_given_up += 1
            self._buffer._ask_keyframe()

    def set_frame_view(self, on: bool) -> None:
        if on and not self.frame_view:
            self._buffer.restart()
        self.frame_view = on


def frame_view(receiver: RTCRtpReceiver, on: bool) -> None:
    """Switch a diverted video receiver's reassembly into frames on or off (lean path).

    Off, the phone's packets are forwarded and watched one by one; on (the sidecar records),
    its tap gets frames again, starting at a keyframe."""
    lean = getattr(receiver, "lens_lean", None)
    if isinstance(lean, LeanVideoReceiver):
        lean.set_frame_view(on)


def depayloader(codec: RTCRtpCodecParameters) -> Callable[[bytes], bytes]:
    """The codec's RTP payload → encoded data (VP8 descriptor off, H.264 NAL units with
    start codes), as aiortc's jitter buffer joins them into frames."""
    return lambda payload: aiortc_codecs.depayload(codec, payload)


class LeanAudioReceiver:
    """A diverted audio receiver's per-packet work, on an RtpView: statistics, then the
    forwarding buffer (late packets dropped, the rest to its `on_packet`, or as frames to
    the receiver's tap)."""

    def __init__(self, receiver: RTCRtpReceiver, buffer: ForwardingAudioBuffer) -> None:
        self._receiver = receiver
        self._buffer = buffer
        self._stats: dict[int, Any] = {}
        self._mapper = TimestampMapper()

    def handle(self, packet: RtpView, codec: RTCRtpCodecParameters) -> None:
        stats = self._stats.get(packet.ssrc)
        if stats is None:
            stats = self._stats[packet.ssrc] = _stream_statistics(
                self._receiver, packet.ssrc, codec.clockRate
            )
        stats.add(packet)
        buffer = self._buffer
        on_packet = buffer._on_packet
        if on_packet is not None:
            # ForwardingAudioBuffer.add, inline (every audio packet, both ways, comes
            # here): a packet older than the last one is dropped, the rest handed on
            timestamp = packet.timestamp
            last = buffer._last_timestamp
            if last is None or 0 < (timestamp - last) & 0xFFFFFFFF < 0x80000000:
                buffer._last_timestamp = timestamp
                on_packet(packet)
            return
        packet._data = packet.payload
        _, frame = buffer.add(packet)
        if frame is not None:  # no `on_packet`: a frame per packet, as aiortc hands it on
            frame.timestamp = self._mapper.map(frame.timestamp)
            self._receiver._RTCRtpReceiver__decoder_queue.put((codec, frame))  # type: ignore[attr-defined]


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
                self._arrived(seq, queue.last_arrival)
            return route(packet)

        router.route_rtp = route_rtp
        if queue.lean is not None:
            queue.lean.on_transport_seq = self._arrived  # packets aiortc never routes

    def _arrived(self, seq: int, arrival: float | None) -> None:
        self.feedback.add(seq, arrival)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FEEDBACK_INTERVAL, self._send)

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
LEAN = os.environ.get("LENS_MEDIA_LEAN", "1") != "0"  # 0: aiortc's RTP handling (comparison)
# LENS_MEDIA_FEC=0: no red/ulpfec on the phone's leg (comparison runs: bench/qoe.py)
FEC = os.environ.get("LENS_MEDIA_FEC", "1") != "0"
FEC_CODECS = (RED_MIME, ULPFEC_MIME) if FEC else ()
if FEC:
    negotiate_red_ulpfec()
if TRANSPORT_CC:
    negotiate_transport_cc()
