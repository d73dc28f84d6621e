"""Loss recovery from the measured round trip: NACK retries, give-up, keyframe requests."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtp import RtpPacket

from lens.media.passthrough import RepeatingNacks
from lens.media.recovery import (
    MIN_KEYFRAME_INTERVAL,
    KeyframeRequests,
    LinkEstimate,
    NackList,
)
from lens.media.testing import wait_until

pytestmark = pytest.mark.media


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def arrive(link: LinkEstimate, nacks: NackList, seq: int) -> bool:
    retransmitted = seq in nacks.missing
    link.arrival(seq * 1500, 90000, 1000, retransmitted)
    return nacks.add(seq)


def test_give_up_and_retry_follow_the_measured_round_trip_and_jitter():
    link = LinkEstimate(Clock())
    link.rtt_sample(0.01)
    lan = (link.give_up, link.retry, link.late_after)
    for _ in range(30):
        link.rtt_sample(0.4)
    assert link.rtt == pytest.approx(0.4, abs=0.01)
    mobile = (link.give_up, link.retry, link.late_after)
    assert lan[0] < 0.2 and mobile[0] > 1.0  # three NACK rounds
    assert mobile[1] > 0.4  # a NACK is repeated only once its retransmission is overdue
    assert mobile[2] > mobile[0]  # a frame a retransmission completed is not "late"
    link.jitter = 0.05
    assert link.give_up > mobile[0]


@pytest.mark.parametrize(("rtt", "jitter"), [(0.05, 0.005), (0.2, 0.02), (0.35, 0.04)])
def test_a_hole_waits_for_the_third_nacks_retransmission(rtt, jitter):
    link = LinkEstimate(Clock())
    link.rtt_sample(rtt)
    link.jitter = jitter
    third_nack_answered = 2 * link.retry + link.rtt + jitter
    assert link.give_up > third_nack_answered
    assert link.give_up < third_nack_answered + link.retry  # not a fourth round


def test_a_missing_packet_is_nacked_at_once_then_every_retry_until_the_give_up():
    clock = Clock()
    link = LinkEstimate(clock)
    link.rtt_sample(0.1)
    nacks = NackList(link)
    for seq in (10, 11, 13):
        arrive(link, nacks, seq)
    assert nacks.next_due() == 0  # a new hole's first NACK does not wait a retry
    assert nacks.due() == [12]
    assert nacks.due() == []  # not again before its retransmission is due
    assert nacks.next_due() == pytest.approx(link.retry)
    sent = [clock.now]
    while nacks.missing:
        clock.now += 0.01
        if nacks.due():
            sent.append(clock.now)
    intervals = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert len(sent) >= 2 and all(i >= link.retry - 0.011 for i in intervals)
    assert clock.now - sent[0] == pytest.approx(link.give_up, abs=0.011)  # then dropped


def test_a_retransmission_ends_the_retries_and_measures_the_round_trip():
    clock = Clock()
    link = LinkEstimate(clock)
    nacks = NackList(link)
    arrive(link, nacks, 1)
    arrive(link, nacks, 3)
    assert nacks.due() == [2]
    clock.now += 0.35
    assert arrive(link, nacks, 2) is True
    assert nacks.missing == set() and nacks.due() == []
    assert link.rtt == pytest.approx(0.35)


def test_the_rtcp_round_trip_is_the_estimate_until_a_nack_is_answered():
    """With FEC repairing every hole no NACK is answered: the give-up, the NACK retry and
    the technician's playout floor follow the RTCP round trip, not the initial guess."""
    clock = Clock()
    link = LinkEstimate(clock)
    guessed = (link.rtt, link.give_up, link.retry)
    link.rtcp_rtt_sample(0.09)
    assert link.rtt == pytest.approx(0.09) and link.rtt_samples == 0
    assert link.give_up < guessed[1] and link.retry < guessed[2]
    link.last_wait = clock.now
    assert link.playout_floor() == pytest.approx(0.09 + 0.02)
    for _ in range(30):
        link.rtcp_rtt_sample(0.3)
    assert link.rtt == pytest.approx(0.3, abs=0.01)  # it follows the link
    link.rtcp_rtt_sample(-0.01)  # an answer to a report we cannot tell apart
    link.rtcp_rtt_sample(40.0)
    assert link.rtcp_rtt_samples == 31


def test_nack_samples_take_over_with_the_rtcp_round_trip_as_their_floor():
    clock = Clock()
    link = LinkEstimate(clock)
    nacks = NackList(link)
    link.rtcp_rtt_sample(0.1)
    arrive(link, nacks, 1)
    arrive(link, nacks, 3)
    assert nacks.due() == [2]
    clock.now += 0.25  # the phone took its time to retransmit
    assert arrive(link, nacks, 2) is True
    assert link.rtt == pytest.approx(0.25) and link.rtt_samples == 1
    # a "retransmission" sooner than the path's round trip (the original, late) does not
    # pull the estimate below the RTCP round trip
    for _ in range(30):
        link.rtt_sample(0.01)
    assert link.nack_rtt < 0.05 and link.rtt == pytest.approx(0.1)


def test_no_playout_floor_while_fec_repairs_every_hole():
    """A hole FEC rebuilt made nobody wait: the technician's browser needs no buffer for
    retransmissions; one that waited for a retransmission, or was given up, does."""
    clock = Clock()
    link = LinkEstimate(clock)
    link.rtcp_rtt_sample(0.1)
    nacks = NackList(link)
    arrive(link, nacks, 1)
    arrive(link, nacks, 3)
    nacks.due()
    nacks.rebuilt(2)
    assert link.playout_floor() == 0.0
    arrive(link, nacks, 5)
    nacks.due()
    clock.now += 0.1
    arrive(link, nacks, 4)  # the retransmission
    assert link.playout_floor() == pytest.approx(0.1 + 2 * link.jitter + 0.02)
    clock.now += 11
    assert link.playout_floor() == 0.0
    arrive(link, nacks, 6)  # (after a silence: an outage's packets are not asked for)
    arrive(link, nacks, 8)
    while nacks.missing:
        clock.now += 0.05
        nacks.due()
    assert nacks.expired == 1 and link.playout_floor() > 0


def test_packets_sent_into_an_outage_are_not_nacked():
    clock = Clock()
    link = LinkEstimate(clock)
    nacks = NackList(link)
    arrive(link, nacks, 1)
    clock.now += 5.0
    arrive(link, nacks, 400)
    assert nacks.missing == set()


def test_one_keyframe_request_in_flight_repeated_after_round_trip_plus_transmission():
    clock = Clock()
    link = LinkEstimate(clock)
    link.rtt_sample(0.4)
    link.bitrate = 300_000
    link.keyframe_bytes = 30_000  # 0.8 s to send at 300 kbit/s
    requests = KeyframeRequests(link)
    assert requests.may_send()
    clock.now += MIN_KEYFRAME_INTERVAL + 0.01
    assert not requests.may_send()  # still in flight
    clock.now += 0.4 + 0.8
    assert requests.may_send()  # overdue: ask again
    # a keyframe that arrives answers it: the next request need only wait Chrome's 300 ms
    requests.keyframe_arrived(20_000)
    clock.now += MIN_KEYFRAME_INTERVAL / 2
    assert not requests.may_send()
    clock.now += MIN_KEYFRAME_INTERVAL
    assert requests.may_send()


class FakeReceiver:
    def __init__(self) -> None:
        self.nacks: list[tuple[float, int, list[int]]] = []

    async def _send_rtcp_nack(self, media_ssrc: int, lost: list[int]) -> None:
        self.nacks.append((asyncio.get_running_loop().time(), media_ssrc, lost))


def test_the_receivers_nack_timer_repeats_a_nack_until_the_give_up():
    async def scenario():
        receiver = FakeReceiver()
        link = LinkEstimate()
        link.rtt_sample(0.03)  # retry ~36 ms, give-up 0.12 s
        generator = RepeatingNacks(receiver, link)
        for seq in (100, 101, 103):
            p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000, ssrc=77)
            p.payload = b"\x10\x00"
            assert generator.add(p) is False  # aiortc must not send its own NACK
        await wait_until(lambda: len(receiver.nacks) >= 2, 3)  # at once, then on the timer
        await wait_until(lambda: generator._timer is None, 3)  # then it gives up ...
        count = len(receiver.nacks)
        await asyncio.sleep(0.2)
        generator.stop()
        return receiver.nacks, count

    nacks, count = asyncio.run(scenario())
    assert {(ssrc, tuple(lost)) for _, ssrc, lost in nacks} == {(77, (102,))}
    assert len(nacks) == count  # ... and stays silent


def test_a_packet_newly_missing_is_nacked_at_once_while_an_older_holes_retry_waits():
    async def scenario():
        receiver = FakeReceiver()
        link = LinkEstimate()
        link.rtt_sample(0.4)  # retry ~0.48 s, give-up ~1 s
        generator = RepeatingNacks(receiver, link)

        def arrive(seq: int) -> None:
            p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000, ssrc=77)
            p.payload = b"\x10\x00"
            generator.add(p)

        for seq in (100, 102):  # 101 lost: NACKed at once, its retry due ~0.48 s later
            arrive(seq)
        await wait_until(lambda: len(receiver.nacks) >= 1, 3)
        first_at = receiver.nacks[0][0]
        for seq in (103, 105):  # 104 lost while 101's retry timer is pending
            arrive(seq)
        await wait_until(lambda: len(receiver.nacks) >= 2, 3)
        generator.stop()
        return receiver.nacks, first_at

    nacks, first_at = asyncio.run(scenario())
    assert nacks[0][2] == [101]
    assert nacks[1][2] == [104]  # 104 alone, long before 101's retry
    assert nacks[1][0] - first_at < 0.2


def test_each_nack_is_sent_twice_and_the_copy_only_for_packets_still_missing():
    async def scenario():
        receiver = FakeReceiver()
        link = LinkEstimate()
        link.rtt_sample(0.4)
        generator = RepeatingNacks(receiver, link)

        def arrive(seq: int) -> None:
            p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000, ssrc=77)
            p.payload = b"\x10\x00"
            generator.add(p)

        for seq in (100, 103):  # 101 and 102 lost
            arrive(seq)
        await wait_until(lambda: len(receiver.nacks) >= 1, 3)
        arrive(102)  # retransmitted before the copy goes out
        await wait_until(lambda: len(receiver.nacks) >= 2, 3)
        tries = generator.nacks._missing[101][2]
        generator.stop()
        return receiver.nacks, tries, generator.nacks.copies_sent

    nacks, tries, copies = asyncio.run(scenario())
    assert nacks[0][2] == [101, 102]
    assert nacks[1][2] == [101]  # the copy: 102 came meanwhile
    assert 0.02 <= nacks[1][0] - nacks[0][0] < 0.2
    assert tries == 1 and copies == 1  # a copy is not a retry (its round trip stays a sample)


def test_the_lean_paths_receive_statistics_count_as_aiortcs(monkeypatch):
    """The receiver reports read the same figures whichever path counted the packets:
    in order, reordered, duplicated, across the sequence number wrap, a new timestamp."""
    from aiortc.rtcrtpreceiver import StreamStatistics

    from lens.media.forwarder import RtpView
    from lens.media.passthrough import LeanStreamStatistics

    now = [1000.0]
    monkeypatch.setattr("time.time", lambda: now[0])
    theirs, ours = StreamStatistics(90000), LeanStreamStatistics(90000)
    arrivals = [(65530, 0), (65531, 0), (65533, 3000), (65532, 0), (65533, 3000), (1, 6000)]
    arrivals += [(2, 9000), (0, 6000), (5, 12000), (6, 15000)]
    for seq, timestamp in arrivals:
        now[0] += 0.011
        packet = RtpView(96, 0, seq, timestamp, 1, b"x")
        theirs.add(packet)
        ours.add(packet)
    for figure in ("base_seq", "max_seq", "cycles", "packets_received", "jitter"):
        assert getattr(ours, figure) == getattr(theirs, figure), figure
    assert ours.packets_lost == theirs.packets_lost > 0  # 3 and 4 (less the duplicate)
    assert ours.fraction_lost == theirs.fraction_lost > 0
