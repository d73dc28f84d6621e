"""Loss recovery on the phone's leg, driven by the measured round trip (no aiortc here).

The phone's leg may be a mobile link with a round trip of half a second and several per
cent loss. How long the sidecar waits for a lost packet, how often it NACKs it and how
often it asks for a keyframe all follow from what it measures on that link:

* :class:`LinkEstimate` keeps the round trip (NACK → retransmission, and the RTCP round
  trip of the leg: the phone's receiver reports of the audio the sidecar sends it, the
  phone's answers to the sidecar's XR reference times), the packets' arrival jitter, the video
  bitrate and the size of the last keyframe; from them it derives the give-up delay for a
  hole, the NACK retry interval and how long a keyframe request is "in flight".
* :class:`NackList` decides which missing sequence numbers to NACK now: at once when the
  gap is seen, then again every retry interval, until the give-up.
* :class:`KeyframeRequests` lets one keyframe request be in flight at a time.

All of it takes a clock, so the tests drive time by hand.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from aiortc.utils import uint16_add

INITIAL_RTT = 0.2  # seconds, until a sample: a mobile link's typical round trip
MAX_RTCP_RTT = 5.0  # seconds: an RTCP round trip longer than this is a mismatched report
RTT_ALPHA = 0.8  # smoothing of round-trip samples (aiortc's sender uses 0.85)
JITTER_GAIN = 1 / 16  # RFC 3550 interarrival jitter
BITRATE_WINDOW = 1.0  # seconds
MIN_GIVE_UP = 0.12  # seconds: even on a LAN a retransmission gets this long
MAX_GIVE_UP = 2.0  # seconds: past this a frozen picture is worse than a keyframe
MIN_RETRY = 0.05  # seconds between two NACKs of one packet
MAX_TRIES = 4  # NACKs per packet: a burst loss (a stalled process) must not become a storm
MIN_KEYFRAME_INTERVAL = 0.3  # Chrome ignores a request within 300 ms of its last keyframe
SILENCE = 1.0  # seconds without a packet: an outage, not loss; flush and ask once
LOSS_MEMORY = 10.0  # seconds a wait for a retransmission keeps the technician's floor up
MAX_PLAYOUT_FLOOR = 0.5  # seconds
FEC_PLAYOUT_SHARE = 0.55  # of the floor, while the phone sends FEC
MAX_NACKED = 256  # sequence numbers tracked at most (an RTCP NACK must stay small)
GAP_MEMORY = 256  # media packets MediaFreeGaps remembers
MAX_FEC_GAP = 24  # numbers between two pictures that may have been FEC packets


def _smoothed(estimate: float | None, sample: float) -> float:
    """A round-trip estimate with one more sample in it (the first sample is the estimate)."""
    return sample if estimate is None else RTT_ALPHA * estimate + (1 - RTT_ALPHA) * sample


class LinkEstimate:
    """What the sidecar knows about one incoming video stream's path."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.nack_rtt: float | None = None  # NACK → retransmission, smoothed
        self.rtt_samples = 0
        self.rtcp_rtt: float | None = None  # the RTCP round trip, smoothed
        self.rtcp_rtt_samples = 0
        self.jitter = 0.0  # seconds
        self.last_arrival: float | None = None
        self.silence = 0.0  # the gap before the latest packet, seconds
        self.keyframe_bytes = 0
        self._transit: float | None = None
        self._window_start: float | None = None
        self._window_bytes = 0
        self.bitrate = 0.0  # bits per second over the last full window
        # when a hole last waited for a retransmission or was given up (FEC did not mend
        # it): what the technician's playout floor is for
        self.last_wait: float | None = None
        self.last_fec: float | None = None  # when the phone last sent a FEC packet

    @property
    def rtt(self) -> float:
        """The round trip recovery plans with: NACK → retransmission once measured, never
        below the RTCP round trip (a "retransmission" sooner than the path's round trip is
        the original arriving late); the RTCP round trip until then (FEC may repair every
        hole, and no NACK is ever answered); a guess before either."""
        if self.nack_rtt is None:
            return INITIAL_RTT if self.rtcp_rtt is None else self.rtcp_rtt
        return self.nack_rtt if self.rtcp_rtt is None else max(self.nack_rtt, self.rtcp_rtt)

    def rtt_sample(self, rtt: float) -> None:
        """A NACK was answered `rtt` seconds after it was sent."""
        if rtt <= 0:
            return
        self.nack_rtt = _smoothed(self.nack_rtt, rtt)
        self.rtt_samples += 1

    def rtcp_rtt_sample(self, rtt: float) -> None:
        """An RTCP report (RR's LSR/DLSR, XR's LRR/DLRR) measured the round trip."""
        if not 0 < rtt < MAX_RTCP_RTT:
            return
        self.rtcp_rtt = _smoothed(self.rtcp_rtt, rtt)
        self.rtcp_rtt_samples += 1

    def arrival(
        self,
        timestamp: int,
        clock_rate: int,
        size: int,
        retransmitted: bool,
        now: float | None = None,
    ) -> None:
        """A packet arrived now (call before anything else looks at the packet); `now`: the
        clock's time, when the caller has read it already."""
        if now is None:
            now = self.clock()
        self.silence = 0.0 if self.last_arrival is None else now - self.last_arrival
        self.last_arrival = now
        if not retransmitted:
            transit = now - timestamp / clock_rate
            if self._transit is not None and self.silence < SILENCE:
                deviation = abs(transit - self._transit)
                if deviation < 1.0:  # an RTP clock jump (new source) is not jitter
                    self.jitter += (deviation - self.jitter) * JITTER_GAIN
            self._transit = transit
        if self._window_start is None or now - self._window_start >= BITRATE_WINDOW:
            if self._window_start is not None:
                self.bitrate = self._window_bytes * 8 / (now - self._window_start)
            self._window_start = now
            self._window_bytes = 0
        self._window_bytes += size

    @property
    def give_up(self) -> float:
        """How long a hole may wait for its retransmission: three NACK rounds (the
        third NACK goes out two retry intervals after the first, and its retransmission
        needs a round trip more). With two rounds, 2-3 % of the holes on an 8 %-loss link
        (a NACK or its retransmission lost twice) were given up, each a keyframe request
        and a freeze of a second or more; a hole filled late freezes the picture less."""
        wait = 2 * self.retry + self.rtt + 2 * self.jitter + 0.03
        return min(MAX_GIVE_UP, max(MIN_GIVE_UP, wait))

    @property
    def retry(self) -> float:
        """How long after a NACK its retransmission is due (then NACK again)."""
        return max(MIN_RETRY, 1.2 * self.rtt + 2 * self.jitter)

    @property
    def late_after(self) -> float:
        """A frame this far behind the stream's best arrival is stale: longer than a hole
        may wait, or every frame a retransmission completed would be thrown away."""
        return self.give_up + 4 * self.jitter + 0.1

    def playout_floor(self) -> float:
        """The jitter buffer a technician needs so a retransmission on this link arrives
        in time (0 on a link that lately lost nothing FEC did not rebuild at once: no delay
        is added for nothing)."""
        now = self.clock()
        if self.last_wait is None or now - self.last_wait > LOSS_MEMORY:
            return 0.0
        floor = min(MAX_PLAYOUT_FLOOR, self.rtt + 2 * self.jitter + 0.02)
        if self.last_fec is not None and now - self.last_fec <= LOSS_MEMORY:
            # the phone protects with FEC, which the sidecar repairs with at once: like a
            # browser in a direct call (libwebrtc adds no round trip to its jitter buffer
            # under hybrid NACK/FEC), the technician's buffers for the jitter alone
            return FEC_PLAYOUT_SHARE * floor
        return floor

    @property
    def keyframe_due(self) -> float:
        """How long a keyframe request stays in flight: its round trip plus the time the
        last keyframe took to send at the stream's bitrate."""
        # (the bitrate right after an outage says little: floor it, cap the result)
        transmission = min(1.0, self.keyframe_bytes * 8 / max(self.bitrate, 300_000))
        return max(MIN_KEYFRAME_INTERVAL, self.rtt + 2 * self.jitter + transmission)


class NackList:
    """Missing sequence numbers and when each was last NACKed."""

    def __init__(self, link: LinkEstimate) -> None:
        self.link = link
        self.max_seq: int | None = None
        # seq -> [first seen missing, last NACK sent (or None), NACKs sent]
        self._missing: dict[int, list] = {}
        self.nacks_sent = 0
        self.copies_sent = 0  # the same NACKs sent again a moment later (passthrough)
        self.recovered = 0
        self.expired = 0  # missing packets given up without a retransmission
        self.late = 0  # packets that came after their sequence number was given up
        self.rebuilt_missing = 0  # missing packets FEC rebuilt in the sidecar
        self.lost_without_media = 0  # missing numbers that held no media (lost FEC packets)
        self.recovery_delays: deque[float] = deque(maxlen=1000)  # first missed → arrival

    @property
    def missing(self) -> set[int]:
        return set(self._missing)

    def add(self, sequence_number: int, now: float | None = None) -> bool:
        """Note an arrived packet; True if it is a retransmission of a packet NACKed.
        `now`: the link's clock, when the caller has read it already."""
        if now is None:
            now = self.link.clock()
        max_seq = self.max_seq
        if max_seq is None:
            self.max_seq = sequence_number
            return False
        ahead = (sequence_number - max_seq) & 0xFFFF
        if 0 < ahead < 0x8000:  # uint16_gt(sequence_number, max_seq), inline: every packet
            gap = ahead - 1
            # after an outage the packets sent into it are long stale: do not ask for them
            # (and a gap longer than a NACK can carry is beyond repair); a shorter pause
            # may be this process's own (a busy event loop), so those are asked for
            if 0 < gap <= MAX_NACKED and self.link.silence < SILENCE:
                seq = uint16_add(self.max_seq, 1)
                for _ in range(gap):
                    self._missing[seq] = [now, None, 0]
                    seq = uint16_add(seq, 1)
            self.max_seq = sequence_number
            if gap:
                self._trim()
            return False
        entry = self._missing.pop(sequence_number, None)
        if entry is None:
            self.late += 1
            return False
        self.recovered += 1
        self.link.last_wait = now
        self.recovery_delays.append(now - entry[0])
        if entry[2] == 1:  # Karn: only an unambiguous NACK gives a round-trip sample
            self.link.rtt_sample(now - entry[1])
        return True

    def not_media(self, sequence_numbers: list[int]) -> list[int]:
        """These never held media (``MediaFreeGaps``): stop asking for them; the ones that
        were missing are returned."""
        lost = [seq for seq in sequence_numbers if self._missing.pop(seq, None) is not None]
        self.lost_without_media += len(lost)
        return lost

    def rebuilt(self, sequence_number: int) -> None:
        """FEC rebuilt a packet: it is no longer missing (not a round-trip sample)."""
        if self._missing.pop(sequence_number, None) is not None:
            self.rebuilt_missing += 1

    def due(self) -> list[int]:
        """The sequence numbers to NACK now (each marked as sent); expired ones are dropped."""
        now = self.link.clock()
        give_up, retry = self.link.give_up, self.link.retry
        lost = []
        for seq, entry in list(self._missing.items()):
            first, last, _ = entry
            if now - first > give_up or (entry[2] >= MAX_TRIES and now - last >= retry):
                del self._missing[seq]
                self.expired += 1
                self.link.last_wait = now
            elif last is None or now - last >= retry:
                entry[1] = now
                entry[2] += 1
                lost.append(seq)
        self.nacks_sent += len(lost)
        return sorted(lost)  # numeric order: aiortc's NACK packing needs it

    def next_due(self) -> float | None:
        """Seconds until the next NACK (or expiry) is due, None when nothing is missing."""
        if not self._missing:
            return None
        now = self.link.clock()
        give_up, retry = self.link.give_up, self.link.retry
        # a packet not NACKed yet is due now (it used to wait a retry interval first)
        soonest = min(
            min(first + give_up, last + retry if last is not None else now)
            for first, last, _ in self._missing.values()
        )
        return max(0.0, soonest - now)

    def clear(self) -> None:
        self._missing.clear()

    def _trim(self) -> None:
        if len(self._missing) > MAX_NACKED:
            newest = sorted(self._missing, key=lambda s: uint16_add(self.max_seq, -s))
            for seq in newest[MAX_NACKED:]:
                del self._missing[seq]


class MediaFreeGaps:
    """Sequence numbers a VP8 stream used for no media: a lost FEC packet's.

    With red/ulpfec the phone's FEC packets take sequence numbers between its media
    packets, and a lost one is never retransmitted (Chrome keeps no FEC packet for that).
    What lies between the last packet of a picture (marker) and the first packet of the
    very next picture (picture ID + 1) can only have been such packets (or padding):
    NACKing it is useless and giving it up must not cost a keyframe. `packet` takes each
    media packet (a VP8 payload: new, retransmitted or rebuilt, in any order) and returns
    the sequence numbers it proves so, whichever end of the gap came last."""

    def __init__(self) -> None:
        # seq -> (marker, starts a picture, (picture ID, bits) or None), recent media only
        self._packets: dict[int, tuple[int, bool, tuple[int, int] | None]] = {}
        self._order: deque[int] = deque()

    def packet(self, seq: int, marker: int, payload: bytes) -> list[int]:
        if seq in self._packets or not payload:
            return []
        start = payload[0] & 0x17 == 0x10
        ids = _picture_ids(payload)
        self._packets[seq] = (marker, start, ids)
        self._order.append(seq)
        if len(self._order) > GAP_MEMORY:
            del self._packets[self._order.popleft()]
        if ids is None:
            return []
        free: list[int] = []
        if start:  # the previous picture's last packet, before the gap?
            free += self._gap(seq, -1, ids, lambda m, s: bool(m), -1)
        if marker:  # the next picture's first packet, after the gap?
            free += self._gap(seq, 1, ids, lambda m, s: s, 1)
        return free

    def _gap(self, seq: int, step: int, ids: tuple[int, int], edge, offset: int) -> list[int]:
        """The numbers between `seq` and the nearest media packet `step`wards, if that one
        is the picture `offset` away and the edge of it (`edge(marker, start)`)."""
        passed = []
        other = uint16_add(seq, step)
        while other not in self._packets:
            passed.append(other)
            if len(passed) > MAX_FEC_GAP:
                return []
            other = uint16_add(other, step)
        marker, start, other_ids = self._packets[other]
        if not passed or other_ids is None or not edge(marker, start):
            return []
        picture, bits = ids
        if other_ids != ((picture + offset) & ((1 << bits) - 1), bits):
            return []
        return passed


def _picture_ids(payload: bytes, start: bool = False) -> tuple[int, int] | None:
    """(picture ID, its bits) of a VP8 payload descriptor; None without one (or, with
    `start`, if the packet does not begin a picture)."""
    if len(payload) < 3 or not payload[0] & 0x80 or not payload[1] & 0x80:
        return None  # no X, or no I: no picture ID
    if start and payload[0] & 0x17 != 0x10:
        return None
    if payload[2] & 0x80:
        return (((payload[2] & 0x7F) << 8) | payload[3], 15) if len(payload) > 3 else None
    return payload[2], 7


class KeyframeRequests:
    """One keyframe request in flight: another only once the last one is overdue."""

    def __init__(self, link: LinkEstimate) -> None:
        self.link = link
        self._sent_at = float("-inf")
        self._answered = True

    def may_send(self) -> bool:
        """True (and the request counts as sent) if a keyframe request may go out now."""
        now = self.link.clock()
        waited = now - self._sent_at
        if waited < MIN_KEYFRAME_INTERVAL:
            return False
        if not self._answered and waited < self.link.keyframe_due:
            return False
        self._sent_at = now
        self._answered = False
        return True

    def keyframe_arrived(self, size: int) -> None:
        self._answered = True
        self.link.keyframe_bytes = size
