"""Transport-wide congestion control feedback for the phone's leg (no aiortc here).

aiortc's receiver offers only REMB, computed in Python from abs-send-time; the phone's
Chrome then kept its bitrate target far below what a direct call gets. With transport-cc
negotiated, Chrome estimates the bandwidth itself (its send-side GoogCC) from feedback
that lists when each of its packets arrived. This module builds that feedback
(draft-holmer-rmcat-transport-wide-cc-extensions-01, RTCP RTPFB FMT 15) from arrival times
taken when the packet's datagram came off the socket (``passthrough`` stamps them).
"""

from __future__ import annotations

import struct
import time

RTCP_RTPFB = 205
FMT_TRANSPORT_CC = 15
DELTA_TICK_US = 250
REFERENCE_TICK_US = 64_000
MAX_PACKETS_PER_FEEDBACK = 1000  # far more than 50 ms of a phone's video carries
MAX_PENDING = 4096


class TransportFeedback:
    """Arrival times of transport-wide sequence numbers, and the feedback packets for them."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._epoch = clock()
        self._arrivals: dict[int, int] = {}  # unwrapped sequence number -> arrival (µs)
        self._highest: int | None = None  # unwrapped
        self._next_base: int | None = None
        self._feedback_count = 0
        self.packets_sent = 0

    def add(self, sequence_number: int, arrival: float | None = None) -> None:
        """A packet with this transport-wide sequence number arrived (at `arrival`)."""
        arrival = self._clock() if arrival is None else arrival
        if self._highest is None:
            seq = sequence_number
        else:
            diff = (sequence_number - self._highest) & 0xFFFF
            seq = self._highest + diff if diff < 0x8000 else self._highest - (0x10000 - diff)
        if self._highest is None or seq > self._highest:
            self._highest = seq
        if self._next_base is None:
            self._next_base = seq
        if seq < self._next_base:
            return  # already reported as lost; the sender has moved on
        self._arrivals[seq] = int((arrival - self._epoch) * 1_000_000)
        if len(self._arrivals) > MAX_PENDING:
            self._next_base = self._highest - MAX_PENDING // 2
            self._arrivals = {s: t for s, t in self._arrivals.items() if s >= self._next_base}

    @property
    def pending(self) -> bool:
        """Arrivals not reported yet (more than one feedback packet holds): send again soon."""
        return bool(self._arrivals)

    def build(self, sender_ssrc: int, media_ssrc: int) -> bytes | None:
        """One RTCP transport-cc feedback packet for what arrived since the last one."""
        if not self._arrivals or self._next_base is None:
            return None
        base = self._next_base
        last = max(self._arrivals)
        first_arrival = self._arrivals[min(self._arrivals)]
        reference = first_arrival // REFERENCE_TICK_US
        previous = reference * REFERENCE_TICK_US
        symbols: list[int] = []
        deltas = bytearray()
        seq = base
        while seq <= last and len(symbols) < MAX_PACKETS_PER_FEEDBACK:
            arrival = self._arrivals.get(seq)
            if arrival is None:
                symbols.append(0)  # not received
            else:
                delta = round((arrival - previous) / DELTA_TICK_US)
                if 0 <= delta <= 0xFF:
                    symbols.append(1)
                    deltas.append(delta)
                elif -0x8000 <= delta <= 0x7FFF:
                    symbols.append(2)
                    deltas += struct.pack("!h", delta)
                else:
                    break  # too far apart for one packet: the rest goes in the next
                previous += delta * DELTA_TICK_US
            seq += 1
        # trailing packets not received are not reported yet (they may still come)
        while symbols and symbols[-1] == 0:
            symbols.pop()
            seq -= 1
        if not symbols:
            return None
        chunks = bytearray()
        for i in range(0, len(symbols), 7):  # two-bit status vector chunks, 7 symbols each
            chunk = 0xC000
            for j, symbol in enumerate(symbols[i : i + 7]):
                chunk |= symbol << (12 - 2 * j)
            chunks += struct.pack("!H", chunk)
        body = struct.pack(
            "!IIHHI",
            sender_ssrc,
            media_ssrc,
            base & 0xFFFF,
            len(symbols),
            ((reference & 0xFFFFFF) << 8) | (self._feedback_count & 0xFF),
        )
        body += chunks + deltas
        padding = (4 - (4 + len(body)) % 4) % 4
        first = 0x80 | FMT_TRANSPORT_CC
        if padding:
            first |= 0x20
            body += bytes(padding - 1) + bytes([padding])
        header = struct.pack("!BBH", first, RTCP_RTPFB, (4 + len(body)) // 4 - 1)
        self._feedback_count += 1
        self.packets_sent += 1
        self._next_base = base + len(symbols)
        self._arrivals = {s: t for s, t in self._arrivals.items() if s >= self._next_base}
        return header + body


def parse_feedback(data: bytes) -> tuple[int, int, list[int | None]]:
    """(base sequence number, reference time in 64 ms units, each packet's arrival in µs
    from the reference or None): what a sender reads from a feedback packet."""
    first, packet_type, length = struct.unpack("!BBH", data[:4])
    if first & 0x1F != FMT_TRANSPORT_CC or packet_type != RTCP_RTPFB:
        raise ValueError("not a transport-cc feedback packet")
    end = 4 * (length + 1)
    if first & 0x20:
        end -= data[end - 1]
    base, count, reference_and_count = struct.unpack("!HHI", data[12:20])
    reference = reference_and_count >> 8
    pos = 20
    symbols: list[int] = []
    while len(symbols) < count:
        (chunk,) = struct.unpack("!H", data[pos : pos + 2])
        pos += 2
        if chunk & 0x8000 == 0:  # run length
            symbols += [(chunk >> 13) & 0x3] * (chunk & 0x1FFF)
        elif chunk & 0x4000:  # two-bit vector
            symbols += [(chunk >> (12 - 2 * j)) & 0x3 for j in range(7)]
        else:  # one-bit vector
            symbols += [(chunk >> (13 - j)) & 0x1 for j in range(14)]
    symbols = symbols[:count]
    times: list[int | None] = []
    at = 0
    for symbol in symbols:
        if symbol == 0:
            times.append(None)
            continue
        if symbol == 1:
            delta = data[pos]
            pos += 1
        else:
            (delta,) = struct.unpack("!h", data[pos : pos + 2])
            pos += 2
        at += delta * DELTA_TICK_US
        times.append(at)
    if pos > end:
        raise ValueError("feedback deltas run past the packet")
    return base, reference, times
