"""RED and ULPFEC on the phone's leg: loss repaired in the sidecar, with no round trip.

When both ends offer ``red`` and ``ulpfec`` (every Chrome does), Chrome's sender protects
VP8 with forward error correction in proportion to the loss and round trip its receiver
reports (libwebrtc's hybrid NACK/FEC): every video packet goes out wrapped in RED
(RFC 2198), and now and then a ULPFEC packet (RFC 5109), also wrapped in RED, in the
same sequence-number space, carrying the XOR of a few media packets. A packet lost on the
way is then rebuilt from the FEC packet and the others it protects, as soon as they are
in: no NACK, no retransmission, no round trip.

:class:`RedReceiver` does this on raw (decrypted) RTP datagrams, before anything else
sees them: it hands on each RED packet as the plain media packet inside it (the payload
type of its block, the RED header gone), each FEC packet as a padding-only packet with the
FEC packet's sequence number (so the NACK list, the jitter buffer and the technician see
its sequence number as taken, not lost), and every media packet it rebuilt. The
technician's leg gets a whole stream of plain packets: the per-leg rewriting of sequence
numbers, timestamps and picture IDs (``forwarder.LegRewriter``) stays correct, which it
would not if FEC packets went through (they XOR the timestamps and payloads that the
rewriting changes). No aiortc here: bytes in, bytes out.
"""

from __future__ import annotations

import contextlib
import struct
from collections import deque

RTP_HEADER = 12
FEC_HEADER = 10  # RFC 5109 §7.3
MAX_PROTECTED_AGE = 512  # sequence numbers: older media packets (and FEC for them) are forgotten
MAX_PENDING_FEC = 64


def _newer(a: int, b: int) -> bool:
    """a is after b in 16-bit sequence space."""
    return a != b and (a - b) & 0xFFFF < 0x8000


def header_length(data: bytes) -> int | None:
    """The length of an RTP packet's header (fixed part, CSRCs, extension), None if short."""
    if len(data) < RTP_HEADER or data[0] >> 6 != 2:
        return None
    length = RTP_HEADER + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        if len(data) < length + 4:
            return None
        length += 4 + 4 * struct.unpack_from("!H", data, length + 2)[0]
    return length if len(data) >= length else None


def red_primary(payload: bytes) -> tuple[int, int] | None:
    """(block payload type, offset of its data) of a RED payload's primary block (RFC 2198)."""
    pos = 0
    skip = 0
    while pos < len(payload) and payload[pos] & 0x80:  # F: a redundant block's 4-byte header
        if pos + 4 > len(payload):
            return None
        skip += ((payload[pos + 2] & 0x03) << 8) | payload[pos + 3]
        pos += 4
    if pos >= len(payload):
        return None
    block_type = payload[pos] & 0x7F
    start = pos + 1 + skip  # redundant blocks' data comes first, the primary's last
    return (block_type, start) if start <= len(payload) else None


class FecPacket:
    """One ULPFEC packet (RFC 5109, one protection level, as libwebrtc sends them)."""

    __slots__ = ("ssrc", "seqs", "bits0", "bits1", "timestamp", "length", "payload")

    def __init__(self, ssrc: int, fec: bytes) -> None:
        if len(fec) < FEC_HEADER + 4:
            raise ValueError("short ULPFEC packet")
        long_mask = bool(fec[0] & 0x40)  # L: a 48-bit mask
        mask_bytes = 6 if long_mask else 2
        if len(fec) < FEC_HEADER + 2 + mask_bytes:
            raise ValueError("short ULPFEC packet")
        self.ssrc = ssrc
        self.bits0, self.bits1 = fec[0], fec[1]
        base = struct.unpack_from("!H", fec, 2)[0]
        self.timestamp = struct.unpack_from("!I", fec, 4)[0]
        self.length = struct.unpack_from("!H", fec, 8)[0]
        protection = struct.unpack_from("!H", fec, FEC_HEADER)[0]
        mask = int.from_bytes(fec[FEC_HEADER + 2 : FEC_HEADER + 2 + mask_bytes], "big")
        width = 8 * mask_bytes
        self.seqs = [(base + i) & 0xFFFF for i in range(width) if mask & (1 << (width - 1 - i))]
        self.payload = fec[FEC_HEADER + 2 + mask_bytes :][:protection]

    def recover(self, seq: int, others: list[bytes]) -> bytes | None:
        """The protected packet `seq`, rebuilt from the others it protects (their bytes
        as protected: plain RTP, the media payload type); None if the result is not one."""
        bits0, bits1, timestamp, length = self.bits0, self.bits1, self.timestamp, self.length
        size = len(self.payload)
        xor = int.from_bytes(self.payload, "big")
        for packet in others:
            bits0 ^= packet[0]
            bits1 ^= packet[1]
            timestamp ^= struct.unpack_from("!I", packet, 4)[0]
            length ^= len(packet) - RTP_HEADER
            body = packet[RTP_HEADER : RTP_HEADER + size]
            xor ^= int.from_bytes(body.ljust(size, b"\0"), "big")
        if length > size:
            return None  # the FEC packet does not cover it: not ours, or corrupt
        body = xor.to_bytes(size, "big")[:length]
        header = struct.pack("!BBHII", 0x80 | (bits0 & 0x3F), bits1, seq, timestamp, self.ssrc)
        packet = header + body
        return packet if header_length(packet) is not None else None


class RedReceiver:
    """Unwraps RED and repairs losses with ULPFEC for one video stream (see the module).

    `red_type` and `ulpfec_type` are the payload types the answer gave them."""

    def __init__(self, red_type: int, ulpfec_type: int) -> None:
        self.red_type = red_type
        self.ulpfec_type = ulpfec_type
        self.fec_packets = 0  # ULPFEC packets received
        self.recovered = 0  # media packets rebuilt from them
        self.unrecoverable = 0  # FEC packets dropped with two or more of theirs missing
        self._protected: dict[int, bytes] = {}  # seq -> media packet as protected
        self._order: deque[int] = deque()
        self._newest: int | None = None
        self._pending: list[FecPacket] = []
        self.media_type = red_type  # the payload type inside the RED packets (VP8)

    def receive(self, data: bytes) -> tuple[bytes, list[bytes]]:
        """One RED packet off the wire → (the packet to hand on in its place; the media
        packets rebuilt thanks to it, oldest first). What is no RED packet goes on as
        padding (its sequence number and transport-cc number still count)."""
        header = header_length(data)
        unwrapped = self._unwrap(data, 0) if header is not None else None
        if unwrapped is None:
            return (data if header is None else padding_packet(data, header, self.media_type)), []
        header, block_type, inner = unwrapped
        seq = struct.unpack_from("!H", data, 2)[0]
        if block_type == self.ulpfec_type:
            self.fec_packets += 1
            self._note_seq(seq)
            with contextlib.suppress(ValueError):  # not a FEC packet we can read
                self._pending.append(FecPacket(struct.unpack_from("!I", data, 8)[0], inner))
            if len(self._pending) > MAX_PENDING_FEC:
                del self._pending[0]
            return padding_packet(data, header, self.media_type), self._repair()
        self.media_type = block_type
        # the media packet as the sender protected it: its own payload type, no RED header
        plain = _with_type(data[:header], block_type) + inner
        return plain, self.add_media(plain)

    def receive_rtx(
        self, data: bytes, media_ssrc: int, rtx_type: int | None
    ) -> tuple[bytes, list[bytes]]:
        """A retransmission (RTX, RFC 4588) of a RED packet → (the same retransmission of
        the plain media packet, with the RTX payload type `rtx_type` of the media codec;
        what it lets FEC rebuild). Anything else (a bandwidth probe's padding, a FEC packet,
        no `rtx_type`) goes on as padding, which the receiver drops after transport-cc
        counted it."""
        header = header_length(data)
        if header is None:
            return data, []
        unwrapped = self._unwrap(data, 2)
        if unwrapped is None or unwrapped[1] == self.ulpfec_type or rtx_type is None:
            return padding_packet(data, header, data[1] & 0x7F), []
        header, block_type, inner = unwrapped
        osn = data[header : header + 2]
        plain = (
            _with_type(data[:2] + osn + data[4:8] + struct.pack("!I", media_ssrc), block_type)
            + data[RTP_HEADER:header]
            + inner
        )
        rebuilt = self.add_media(plain)
        return _with_type(data[:header], rtx_type) + osn + inner, rebuilt

    def _unwrap(self, data: bytes, skip: int) -> tuple[int, int, bytes] | None:
        """(header length, block payload type, block data) of a RED packet whose RED
        payload starts `skip` bytes into the RTP payload; padding is left out."""
        header = header_length(data)
        if header is None:
            return None
        end = len(data)
        if data[0] & 0x20:  # P: the last byte says how much padding
            end -= data[-1]
        if end < header + skip:
            return None
        block = red_primary(data[header + skip : end])
        if block is None:
            return None
        block_type, start = block
        return header, block_type, data[header + skip + start : end]

    def add_media(self, plain: bytes) -> list[bytes]:
        """A plain media packet arrived (unwrapped from RED or RTX): keep it for FEC and
        return what it lets the pending FEC packets rebuild."""
        seq = struct.unpack_from("!H", plain, 2)[0]
        if seq in self._protected:
            return []
        self._protected[seq] = plain
        self._order.append(seq)
        self._note_seq(seq)
        return self._repair() if self._pending else []

    def _note_seq(self, seq: int) -> None:
        if self._newest is None or _newer(seq, self._newest):
            self._newest = seq
        # forget media packets too old for any FEC packet still to come
        while self._order and (self._newest - self._order[0]) & 0xFFFF > MAX_PROTECTED_AGE:
            self._protected.pop(self._order.popleft(), None)

    def _repair(self) -> list[bytes]:
        rebuilt: list[bytes] = []
        progress = True
        while progress and self._pending:
            progress = False
            for fec in list(self._pending):
                missing = [s for s in fec.seqs if s not in self._protected]
                if len(missing) == 1:
                    packet = fec.recover(
                        missing[0], [self._protected[s] for s in fec.seqs if s != missing[0]]
                    )
                    self._pending.remove(fec)
                    if packet is not None:
                        self.recovered += 1
                        self._protected[missing[0]] = packet
                        self._order.append(missing[0])
                        rebuilt.append(packet)
                        progress = True
                elif not missing:
                    self._pending.remove(fec)  # everything it protects is here
                elif self._newest is not None and any(
                    (self._newest - s) & 0xFFFF > MAX_PROTECTED_AGE for s in missing
                ):
                    self._pending.remove(fec)
                    self.unrecoverable += 1
        newest = self._newest or 0
        rebuilt.sort(key=lambda p: (struct.unpack_from("!H", p, 2)[0] - newest + 0x8000) & 0xFFFF)
        return rebuilt


def padding_packet(data: bytes, header: int, payload_type: int) -> bytes:
    """A packet with `data`'s header (its sequence number, timestamp, SSRC and extensions)
    and no payload, only padding: it stands for a FEC packet downstream. The padding keeps
    the size (the bitrate estimate), up to 255 bytes."""
    size = max(1, min(255, len(data) - header))
    first = (data[0] | 0x20) & 0xFF  # P
    second = payload_type & 0x7F  # no marker: it ends no frame
    return bytes([first, second]) + data[2:header] + bytes(size - 1) + bytes([size])


def _with_type(header: bytes, payload_type: int) -> bytes:
    """An RTP header with another payload type (the marker kept) and no padding bit."""
    return bytes([header[0] & 0xDF, (header[1] & 0x80) | payload_type]) + header[2:]
