"""Packet forwarding: the phone's video RTP packets, rewritten for each technician leg.

What Janus and mediasoup do: every packet the phone sends (and every retransmission the
sidecar's NACKs bring) goes out to the technician as it arrives, with the technician
leg's own SSRC, payload type, sequence numbers, RTP timestamps and VP8 picture IDs, so
the technician's browser sees one continuous stream across hold/resume and phone
reconnects. Nothing is reassembled, packetized again, decoded or encoded on this path;
the frame view (``passthrough.ForwardingVideoBuffer``) is kept only for snapshots and
recordings. Sending, the retransmission history that answers the technician's NACKs and
the sender reports live in ``passthrough.PacketSender`` (aiortc internals).

A leg starts, and restarts after hold or a phone reconnect, at a keyframe's first packet;
until one comes it asks the phone for one (``LensMediaSession.request_keyframe``).
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.utils import uint16_add, uint16_gt

from lens.media import native
from lens.media.relay import ForwardingStats, vp8_resolution

# the native forward step (lens.media.native): a packet in a leg's steady state, rewritten,
# sent and counted in one call; None (not built, LENS_MEDIA_NATIVE=0): the Python below
_NATIVE = native.load()
FORWARD = _NATIVE.forward if _NATIVE is not None else None

VIDEO_CLOCK_RATE = 90000
_RTP_HEADER = struct.Struct("!BBHII")
PLAYOUT_DELAY_MAX = 1000  # 10 s in 10 ms units: no upper limit in practice


class RtpView:
    """An RTP packet's fields, read from (or to be written to) its bytes directly.

    The forwarding path's stand-in for aiortc's ``RtpPacket``, which parses and serializes
    every header extension in Python: same field names, none of that work. ``vp8`` is the
    VP8 descriptor when the reader parsed it already; ``playout_delay`` (min, max in
    10 ms units) is written as the RTP playout-delay extension by the sender. A payload a
    ``LegRewriter`` rewrote (VP8 picture IDs) is a bytearray: the sender joins it as it is."""

    __slots__ = (
        "payload_type",
        "marker",
        "sequence_number",
        "timestamp",
        "ssrc",
        "payload",
        "padding_size",
        "vp8",
        "playout_delay",
        "_data",
    )

    def __init__(
        self,
        payload_type: int,
        marker: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        padding_size: int = 0,
        vp8: Vp8Descriptor | None = None,
    ) -> None:
        self.payload_type = payload_type
        self.marker = marker
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload = payload
        self.padding_size = padding_size
        self.vp8 = vp8
        self.playout_delay: tuple[int, int] | None = None
        self._data = b""  # the depayloaded codec data (the frame view's)

    def serialize(self, extensions: bytes = b"") -> bytes:
        """The packet's bytes; `extensions`: a header extension block (profile, length,
        elements). A packet without payload (what stands for a FEC packet) is padding."""
        padding = self.padding_size
        header = _RTP_HEADER.pack(
            (0x90 if extensions else 0x80) | (0x20 if padding else 0),
            (0x80 if self.marker else 0) | self.payload_type,
            self.sequence_number,
            self.timestamp,
            self.ssrc,
        )
        if padding:
            return b"".join(
                (header, extensions, self.payload, bytes(padding - 1), bytes((padding,)))
            )
        # one join, one copy of the payload (two `+` made two)
        return b"".join((header, extensions, self.payload))


@dataclass(slots=True)
class Vp8Descriptor:
    """Where a VP8 RTP payload's descriptor keeps what a forwarder rewrites (RFC 7741)."""

    start: bool  # the first packet of a frame (S=1, partition index 0)
    keyframe: bool  # ... of a keyframe
    picture_id_at: int | None  # offset of the picture ID
    picture_id_bits: int  # 7 or 15
    tl0_at: int | None  # offset of TL0PICIDX
    header_len: int  # the descriptor's length: the VP8 payload follows


def parse_vp8(payload: bytes) -> Vp8Descriptor | None:
    """The descriptor of a VP8 payload, None if it is too short to be one."""
    size = len(payload)  # (read once: this runs for every video packet)
    if not size:
        return None
    first = payload[0]
    pos = 1
    picture_id_at = tl0_at = None
    bits = 0
    if first & 0x80:  # X: extension byte
        if size < 2:
            return None
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture ID
            if size <= pos:
                return None
            picture_id_at = pos
            if payload[pos] & 0x80:  # M: 15 bits
                bits, pos = 15, pos + 2
            else:
                bits, pos = 7, pos + 1
        if ext & 0x40:  # L: TL0PICIDX
            tl0_at, pos = pos, pos + 1
        if ext & 0x30:  # T or K
            pos += 1
    if size < pos:
        return None
    start = first & 0x17 == 0x10
    keyframe = start and size > pos and payload[pos] & 0x01 == 0
    return Vp8Descriptor(start, keyframe, picture_id_at, bits, tl0_at, pos)


def h264_starts_keyframe(payload: bytes) -> bool:
    """True if an H.264 RTP payload opens an IDR picture (its SPS: single NAL or STAP-A)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == 7:
        return True
    if nal_type == 24:  # STAP-A: 2-byte sizes, then NAL units
        pos = 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if payload[pos + 2] & 0x1F == 7:
                return True
            pos += 2 + size
    return False


def starts_keyframe(mime_type: str, packet: Any) -> bool:
    """True if an RTP packet (RtpView or aiortc RtpPacket) opens a keyframe."""
    payload = packet.payload
    if mime_type == "video/vp8":
        vp8 = packet.vp8 if type(packet) is RtpView else None
        if vp8 is None:
            vp8 = parse_vp8(payload)
        return vp8 is not None and vp8.keyframe
    if mime_type == "video/h264":
        return h264_starts_keyframe(payload)
    return False


class LegRewriter:
    """Maps the phone's packets onto one outgoing leg's continuous RTP stream."""

    def __init__(
        self,
        ssrc: int,
        payload_type: int,
        mime_type: str,
        clock: Callable[[], float] = time.monotonic,
        clock_rate: int = VIDEO_CLOCK_RATE,
    ) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.mime_type = mime_type
        self.waiting = True  # for a keyframe's first packet (audio: for any packet)
        self._video = mime_type.startswith("video/")
        self._vp8 = mime_type == "video/vp8"
        self._clock_rate = clock_rate
        self._clock = clock
        # where the outgoing stream is; random start like any RTP sender
        self._out_seq = random.getrandbits(15)  # below 2^15: SRTP's rollover stays simple
        self._out_ts = random.getrandbits(32)
        self._out_picture_id = random.getrandbits(15)
        self._out_tl0 = random.getrandbits(8)
        self._sent_at: float | None = None
        self._seq_offset = self._ts_offset = self._picture_offset = self._tl0_offset = 0
        self._start_seq: int | None = None

    def restart(self) -> None:
        """Continue at the next keyframe (hold/resume, a new phone leg, a new source)."""
        self.waiting = True

    def rewrite(self, packet: Any) -> tuple[RtpView | None, Vp8Descriptor | None]:
        """The packet (an RtpView or aiortc RtpPacket) as this leg sends it, or None
        (waiting for a keyframe, stale, padding)."""
        if not packet.payload:
            return self.filler(packet), None
        seq, timestamp, payload, vp8 = self.media(packet)
        if seq is None:
            return None, vp8
        return RtpView(self.payload_type, packet.marker, seq, timestamp, self.ssrc, payload), vp8

    def media(self, packet: Any) -> tuple[int | None, int, bytes, Vp8Descriptor | None]:
        """A packet with payload as this leg sends it: its sequence number (None: not
        sent, waiting for a keyframe or stale), timestamp, payload and VP8 descriptor.

        The forwarders write the outgoing header from these (no second RtpView a packet)."""
        # (every packet of every leg comes through here: locals, no helper calls on the
        # common path)
        payload = packet.payload
        vp8 = None
        if self._vp8:
            vp8 = packet.vp8 if type(packet) is RtpView else None
            if vp8 is None:
                vp8 = parse_vp8(payload)
        sequence_number = packet.sequence_number
        if self.waiting:
            if self._vp8:
                key_start = vp8 is not None and vp8.keyframe
            elif self._video:
                key_start = h264_starts_keyframe(payload)
            else:
                key_start = True  # audio: every packet stands on its own
            if not key_start:
                return None, 0, payload, vp8
            self._rebase(packet, vp8)
            self.waiting = False
        elif 0 < (self._start_seq - sequence_number) & 0xFFFF < 0x8000:  # uint16_gt
            return None, 0, payload, vp8  # sent before the stream (re)started here
        seq = (sequence_number + self._seq_offset) & 0xFFFF
        timestamp = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        if vp8 is not None:
            picture_id_at, tl0_at = vp8.picture_id_at, vp8.tl0_at
            if picture_id_at is not None or tl0_at is not None:
                # the picture ID and TL0PICIDX, continued from this leg's (inline: every
                # VP8 packet); a bytearray, written in place and joined as it is by the
                # sender (bytes() of it would copy the payload once more, for nothing)
                payload = bytearray(payload)
                if picture_id_at is not None:
                    if vp8.picture_id_bits == 15:
                        picture_id = (
                            ((payload[picture_id_at] & 0x7F) << 8 | payload[picture_id_at + 1])
                            + self._picture_offset
                        ) & 0x7FFF
                        payload[picture_id_at] = 0x80 | (picture_id >> 8)
                        payload[picture_id_at + 1] = picture_id & 0xFF
                    else:
                        picture_id = ((payload[picture_id_at] & 0x7F) + self._picture_offset) & 0x7F
                        payload[picture_id_at] = picture_id
                    self._out_picture_id = picture_id
                if tl0_at is not None:
                    payload[tl0_at] = self._out_tl0 = (payload[tl0_at] + self._tl0_offset) & 0xFF
        if 0 < (seq - self._out_seq) & 0xFFFF < 0x8000:  # uint16_gt(seq, self._out_seq)
            self._out_seq = seq
            if timestamp != self._out_ts:
                # the clock is read once a frame, at its first packet (a frame's packets
                # share its timestamp; the first is nearest to its capture): a restart
                # continues the timestamps from there
                self._out_ts = timestamp
                self._sent_at = self._clock()
        return seq, timestamp, payload, vp8

    def filler(self, packet: Any) -> RtpView | None:
        """A packet without payload (padding, or what stands for a FEC packet the sidecar
        took: fec.padding_packet) takes a sequence number in the phone's stream: it goes on
        as one byte of padding, so the technician's browser does not NACK that number."""
        if self.waiting or uint16_gt(self._start_seq, packet.sequence_number):
            return None
        out = RtpView(
            self.payload_type,
            0,
            (packet.sequence_number + self._seq_offset) & 0xFFFF,
            (packet.timestamp + self._ts_offset) & 0xFFFFFFFF,
            self.ssrc,
            b"",
            padding_size=1,
        )
        if uint16_gt(out.sequence_number, self._out_seq):
            self._out_seq = out.sequence_number
            self._out_ts = out.timestamp
            self._sent_at = self._clock()
        return out

    def _rebase(self, packet: Any, vp8: Vp8Descriptor | None) -> None:
        now = self._clock()
        elapsed = (
            1 if self._sent_at is None else max(1, int((now - self._sent_at) * self._clock_rate))
        )
        next_seq = uint16_add(self._out_seq, 1)
        self._seq_offset = (next_seq - packet.sequence_number) & 0xFFFF
        self._ts_offset = (self._out_ts + elapsed - packet.timestamp) & 0xFFFFFFFF
        self._start_seq = packet.sequence_number
        if vp8 is not None and vp8.picture_id_at is not None:
            picture_id = self._picture_id(packet.payload, vp8)
            mask = (1 << vp8.picture_id_bits) - 1
            self._picture_offset = (self._out_picture_id + 1 - picture_id) & mask
        if vp8 is not None and vp8.tl0_at is not None:
            self._tl0_offset = (self._out_tl0 + 1 - packet.payload[vp8.tl0_at]) & 0xFF
        # out_seq stays the last sequence number sent until this packet goes out

    @staticmethod
    def _picture_id(payload: bytes, vp8: Vp8Descriptor) -> int:
        at = vp8.picture_id_at
        if vp8.picture_id_bits == 15:
            return ((payload[at] & 0x7F) << 8) | payload[at + 1]
        return payload[at] & 0x7F


SendRtp = Callable[[int, int, int, int, int, bytes, tuple[int, int] | None, int], bool]
"""Puts one packet on a leg's wire now (``passthrough.PacketSender.send_rtp``): payload
type, marker, sequence number, timestamp, SSRC, payload, playout delay, padding size; False
if it cannot (yet). Fields, not an RtpView: the forwarders make no second object a packet."""


class VideoForwarder:
    """Forwards the phone's video packets to one technician leg (see the module doc).

    `send` puts one rewritten packet on the wire (:data:`SendRtp`) and `ready` says
    whether it can yet; `request_keyframe` asks the phone for a keyframe (rate-limited by
    the session)."""

    def __init__(
        self,
        rewriter: LegRewriter,
        send: SendRtp,
        request_keyframe: Callable[[], None],
        totals: ForwardingStats,
        ready: Callable[[], bool] = lambda: True,
        playout_floor: Callable[[], float] | None = None,
    ) -> None:
        self.kind = "video"
        self.rewriter = rewriter
        self.stats = ForwardingStats()
        self.resolution: tuple[int, int] | None = None
        self.packets_forwarded = 0
        self._send = send
        self._ready = ready
        self._playout_floor = playout_floor
        self._request_keyframe = request_keyframe
        self._totals = totals
        self._stopped = False

    def forward(self, packet: Any) -> None:
        """One packet from the phone (called on the event loop as it arrives)."""
        # the stream starts (at a keyframe) once the leg is connected; once it runs, a
        # failed send restarts it (asked only while waiting: a call per packet less)
        rewriter = self.rewriter
        if self._stopped or (rewriter.waiting and not self._ready()):
            return
        if not packet.payload:
            self._forward_filler(packet)
            return
        if FORWARD is not None and not rewriter.waiting and FORWARD(self, packet, False):
            return  # (what follows, done natively; it declines what is not the steady state)
        seq, timestamp, payload, vp8 = rewriter.media(packet)
        if seq is None:
            if rewriter.waiting:
                self._request_keyframe()
            return
        delay = None
        if self._playout_floor is not None and (vp8 is None or vp8.start):
            # the technician's browser buffers long enough for the phone leg's
            # retransmissions (RTP playout-delay extension, 10 ms units: min, max)
            delay = (round(self._playout_floor() * 100), PLAYOUT_DELAY_MAX)
        marker = packet.marker
        if not self._send(
            rewriter.payload_type, marker, seq, timestamp, rewriter.ssrc, payload, delay, 0
        ):
            rewriter.restart()  # the leg went away under us: start again at a keyframe
            return
        self.packets_forwarded += 1
        size = len(payload)
        stats, totals = self.stats, self._totals
        stats.bytes_forwarded += size
        totals.bytes_forwarded += size
        if marker:
            stats.frames_forwarded += 1
            totals.frames_forwarded += 1
        if vp8 is not None and vp8.keyframe:
            stats.keyframes_forwarded += 1
            totals.keyframes_forwarded += 1
            self.resolution = vp8_resolution(payload[vp8.header_len :]) or self.resolution
        elif vp8 is None and h264_starts_keyframe(payload):
            stats.keyframes_forwarded += 1
            totals.keyframes_forwarded += 1

    def _forward_filler(self, packet: Any) -> None:
        """A packet without payload (padding, a FEC packet's number): one byte of padding."""
        out = self.rewriter.filler(packet)
        if out is None:
            return
        if not self._send(
            out.payload_type, 0, out.sequence_number, out.timestamp, out.ssrc, b"", None, 1
        ):
            self.rewriter.restart()
            return
        self.packets_forwarded += 1

    def resync(self) -> None:
        """Forwarding restarts (resume after hold): continue at a fresh keyframe."""
        self.rewriter.restart()
        self._request_keyframe()

    def source_changed(self) -> None:
        """A new phone leg feeds this one: its stream continues at the new one's keyframe."""
        self.rewriter.restart()

    def stop(self) -> None:
        self._stopped = True


class AudioForwarder:
    """Forwards one leg's audio packets to the other leg, rewritten (an Opus frame is one
    packet: nothing to reassemble). The legs' streams continue across reconnects."""

    def __init__(
        self,
        rewriter: LegRewriter,
        send: SendRtp,
        totals: ForwardingStats,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.kind = "audio"
        self.rewriter = rewriter
        self.stats = ForwardingStats()
        self.resolution: tuple[int, int] | None = None
        self._send = send
        self._ready = ready
        self._totals = totals
        self._stopped = False

    def forward(self, packet: Any) -> None:
        """One audio packet from the other leg (called on the event loop as it arrives)."""
        if self._stopped or (self.rewriter.waiting and not self._ready()):
            return  # (as VideoForwarder.forward)
        rewriter = self.rewriter
        payload = packet.payload
        if not payload:  # padding: it takes a number in the stream
            out = rewriter.filler(packet)
            if out is None:
                return
            sent = self._send(
                out.payload_type, 0, out.sequence_number, out.timestamp, out.ssrc, b"", None, 1
            )
        elif FORWARD is not None and not rewriter.waiting and FORWARD(self, packet, True):
            return  # (as VideoForwarder.forward)
        else:
            seq, timestamp, payload, _ = rewriter.media(packet)
            if seq is None:
                return
            sent = self._send(
                rewriter.payload_type,
                packet.marker,
                seq,
                timestamp,
                rewriter.ssrc,
                payload,
                None,
                0,
            )
        if not sent:
            rewriter.restart()
            return
        size = len(payload)
        stats, totals = self.stats, self._totals
        stats.frames_forwarded += 1
        stats.bytes_forwarded += size
        totals.frames_forwarded += 1
        totals.bytes_forwarded += size

    def resync(self) -> None:
        """Forwarding restarts (resume after hold): the stream continues from now."""
        self.rewriter.restart()

    def source_changed(self) -> None:
        """A new leg feeds this one: continue its stream from the new one's first packet."""
        self.rewriter.restart()

    def stop(self) -> None:
        self._stopped = True
