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
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint16_gt

from lens.media.relay import ForwardingStats, vp8_resolution

VIDEO_CLOCK_RATE = 90000
PLAYOUT_DELAY_MAX = 1000  # 10 s in 10 ms units: no upper limit in practice


@dataclass
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
    if not payload:
        return None
    first = payload[0]
    pos = 1
    picture_id_at = tl0_at = None
    bits = 0
    if first & 0x80:  # X: extension byte
        if len(payload) < 2:
            return None
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture ID
            if len(payload) <= pos:
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
    if len(payload) < pos:
        return None
    start = first & 0x17 == 0x10
    keyframe = start and len(payload) > pos and payload[pos] & 0x01 == 0
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


class LegRewriter:
    """Maps the phone's packets onto one outgoing leg's continuous RTP stream."""

    def __init__(
        self,
        ssrc: int,
        payload_type: int,
        mime_type: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.mime_type = mime_type
        self.waiting = True  # for a keyframe's first packet
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

    def rewrite(self, packet: RtpPacket) -> tuple[RtpPacket | None, Vp8Descriptor | None]:
        """The packet as this leg sends it, or None (waiting for a keyframe, stale, padding)."""
        payload = packet.payload
        if not payload:
            return self._filler(packet), None
        vp8 = parse_vp8(payload) if self.mime_type == "video/vp8" else None
        if self.waiting:
            if self.mime_type == "video/vp8":
                key_start = vp8 is not None and vp8.keyframe
            else:
                key_start = h264_starts_keyframe(payload)
            if not key_start:
                return None, vp8
            self._rebase(packet, vp8)
            self.waiting = False
        elif uint16_gt(self._start_seq, packet.sequence_number):
            return None, vp8  # sent before the stream (re)started here
        seq = (packet.sequence_number + self._seq_offset) & 0xFFFF
        timestamp = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        if vp8 is not None and (vp8.picture_id_at is not None or vp8.tl0_at is not None):
            payload = self._rewrite_vp8(payload, vp8)
        out = RtpPacket(
            payload_type=self.payload_type,
            marker=packet.marker,
            sequence_number=seq,
            timestamp=timestamp,
            ssrc=self.ssrc,
            payload=payload,
        )
        if uint16_gt(seq, self._out_seq):
            self._out_seq = seq
            self._out_ts = timestamp
            self._sent_at = self._clock()
        return out, vp8

    def _filler(self, packet: RtpPacket) -> RtpPacket | None:
        """A packet without payload (padding, or what stands for a FEC packet the sidecar
        took: fec.padding_packet) takes a sequence number in the phone's stream: it goes on
        as one byte of padding, so the technician's browser does not NACK that number."""
        if self.waiting or uint16_gt(self._start_seq, packet.sequence_number):
            return None
        out = RtpPacket(
            payload_type=self.payload_type,
            sequence_number=(packet.sequence_number + self._seq_offset) & 0xFFFF,
            timestamp=(packet.timestamp + self._ts_offset) & 0xFFFFFFFF,
            ssrc=self.ssrc,
        )
        out.padding_size = 1
        if uint16_gt(out.sequence_number, self._out_seq):
            self._out_seq = out.sequence_number
            self._out_ts = out.timestamp
            self._sent_at = self._clock()
        return out

    def _rebase(self, packet: RtpPacket, vp8: Vp8Descriptor | None) -> None:
        now = self._clock()
        elapsed = 1 if self._sent_at is None else max(1, int((now - self._sent_at) * 90000))
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

    def _rewrite_vp8(self, payload: bytes, vp8: Vp8Descriptor) -> bytes:
        data = bytearray(payload)
        if vp8.picture_id_at is not None:
            at = vp8.picture_id_at
            picture_id = (self._picture_id(payload, vp8) + self._picture_offset) & (
                (1 << vp8.picture_id_bits) - 1
            )
            if vp8.picture_id_bits == 15:
                data[at] = 0x80 | (picture_id >> 8)
                data[at + 1] = picture_id & 0xFF
            else:
                data[at] = picture_id
            self._out_picture_id = picture_id
        if vp8.tl0_at is not None:
            data[vp8.tl0_at] = (payload[vp8.tl0_at] + self._tl0_offset) & 0xFF
            self._out_tl0 = data[vp8.tl0_at]
        return bytes(data)


class VideoForwarder:
    """Forwards the phone's video packets to one technician leg (see the module doc).

    `send` puts one rewritten packet on the wire (``passthrough.PacketSender.send``) and
    `ready` says whether it can yet; `request_keyframe` asks the phone for a keyframe
    (rate-limited by the session)."""

    def __init__(
        self,
        rewriter: LegRewriter,
        send: Callable[[RtpPacket], bool],
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

    def forward(self, packet: RtpPacket) -> None:
        """One packet from the phone (called on the event loop as it arrives)."""
        if self._stopped or not self._ready():
            return  # the stream starts (at a keyframe) once the leg is connected
        out, vp8 = self.rewriter.rewrite(packet)
        if out is None:
            if self.rewriter.waiting and packet.payload:
                self._request_keyframe()
            return
        if self._playout_floor is not None and (vp8 is None or vp8.start):
            # the technician's browser buffers long enough for the phone leg's
            # retransmissions (RTP playout-delay extension, 10 ms units: min, max)
            floor = round(self._playout_floor() * 100)
            out.extensions.playout_delay = (floor, PLAYOUT_DELAY_MAX)
        if not self._send(out):
            self.rewriter.restart()  # the leg went away under us: start again at a keyframe
            return
        self.packets_forwarded += 1
        size = len(out.payload)
        for stats in (self.stats, self._totals):
            stats.bytes_forwarded += size
            if out.marker:
                stats.frames_forwarded += 1
        if vp8 is not None and vp8.keyframe:
            self.stats.keyframes_forwarded += 1
            self._totals.keyframes_forwarded += 1
            self.resolution = vp8_resolution(out.payload[vp8.header_len :]) or self.resolution
        elif vp8 is None and h264_starts_keyframe(out.payload):
            self.stats.keyframes_forwarded += 1
            self._totals.keyframes_forwarded += 1

    def resync(self) -> None:
        """Forwarding restarts (resume after hold): continue at a fresh keyframe."""
        self.rewriter.restart()
        self._request_keyframe()

    def source_changed(self) -> None:
        """A new phone leg feeds this one: its stream continues at the new one's keyframe."""
        self.rewriter.restart()

    def stop(self) -> None:
        self._stopped = True
