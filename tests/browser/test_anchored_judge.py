"""The anchored-drawing test's judge on made-up frames: it passes a circle that follows the
target and fails one that does not (pinned to the screen, late, or shown while the target is
out of the picture), so the browser test's verdicts can go either way. No browser needed."""

from __future__ import annotations

from tests.browser import anchored
from tests.browser.scene_clip import DURATION, FPS, target_at

START = anchored.START_TARGET


def frames(ring_at, ink_when_absent: bool = False) -> list[dict]:
    """A loop of the clip as a probe would record it, the ring placed by ring_at(t)."""
    out = []
    for index in range(round(DURATION * FPS)):
        t = index / FPS
        target = target_at(t)
        ring = ring_at(t) if target or ink_when_absent else None
        out.append(
            {
                "t": 1000 * t,
                "frame": index,
                "count": 40 if target else 0,
                "target": target,
                "ink": 300 if ring else 0,
                "ring": ring,
            }
        )
    return out


def test_a_circle_that_follows_passes():
    verdict = anchored.judge(frames(target_at))
    assert verdict.share == 1.0 and verdict.absent > 5 and verdict.absent_with_ink == 0
    assert verdict.returns == [0.0]
    assert verdict.presented == verdict.judged == round(DURATION * FPS)


def test_a_circle_pinned_to_the_screen_fails():
    verdict = anchored.judge(frames(lambda t: START, ink_when_absent=True))
    assert verdict.share < 0.9, verdict.text()  # (57 %: the clip rests at the start a while)
    assert verdict.absent_with_ink == verdict.absent > 5


def test_a_circle_a_quarter_second_late_fails():
    verdict = anchored.judge(frames(lambda t: target_at(max(0.0, t - 0.25)) or START))
    assert verdict.share < 0.9, verdict.text()


def test_a_circle_that_comes_back_late_fails_the_return():
    verdict = anchored.judge(frames(lambda t: target_at(t) if t < 9 or t > 12.5 else None))
    assert verdict.returns and verdict.returns[0] > 1.0, verdict.text()
