"""The sidecar closes sessions left without legs; never one that is being connected or recorded."""

from __future__ import annotations

import asyncio

from lens.media.sessions import MediaSessions


def test_a_session_without_legs_is_closed_after_the_idle_time_and_busy_ones_are_kept():
    async def scenario():
        sessions = MediaSessions([])
        idle = sessions.get_or_create("idle")
        answering = sessions.get_or_create("answering")
        answering._answering = 1  # an offer being answered: its leg is not attached yet
        recording = sessions.get_or_create("recording")
        recording.recorder = object()  # a recording outlives its legs until it is stopped

        assert await sessions.reap(0.0, idle_for=60) == []  # first seen idle now
        assert await sessions.reap(59.0, idle_for=60) == []
        assert await sessions.reap(60.0, idle_for=60) == ["idle"]
        assert sessions.get("idle") is None
        assert idle._closed

        answering._answering = 0  # answered and then dropped: idle from now on
        assert await sessions.reap(100.0, idle_for=60) == []
        assert await sessions.reap(160.0, idle_for=60) == ["answering"]
        assert sessions.get("recording") is recording
        recording.recorder = None
        await sessions.close_all()

    asyncio.run(scenario())
