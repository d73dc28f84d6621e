"""The sidecar SIGKILLed 6 s and 20 s into a recording: the file plays and holds all but at
most the last second, its duration is in the database, and the console stops saying
"Recording"."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path

import aiohttp
import pytest
import requests
from sqlalchemy import select

from lens.captures.models import Recording
from lens.extensions import db
from lens.media.testing import encode_opus_clip, encode_vp8_clip, start_phone, start_technician
from lens.sessions.models import SessionEvent
from lens.sidecars import MediaRouter, StaticRegistry
from lens.sidecars.watch import start_recording_watch
from tests.browser.conftest import Sidecar
from tests.captures.conftest import started_session

pytestmark = [pytest.mark.scaleout, pytest.mark.media]


class PeerLoop:
    """aiortc peers on an event loop of their own, while the test drives the web app."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def media_state(media: Sidecar, session_id: int) -> dict:
    reply = requests.get(
        f"{media.url}/sessions/{session_id}",
        headers={"Authorization": f"Bearer {media.secret}"},
        timeout=5,
    )
    return reply.json()


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def plays(path: Path) -> subprocess.CompletedProcess:
    """Decode every frame, as a player would."""
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True,
    )  # fmt: skip


@pytest.mark.parametrize("seconds", [6, 20])
def test_a_recording_survives_its_sidecar_being_killed(
    app, console, make_customer, tmp_path, seconds
):
    media = Sidecar()
    log = open(tmp_path / "sidecar.log", "w+")  # noqa: SIM115 - closed below
    import os

    os.environ["LENS_RECORDINGS_PATH"] = app.config["LENS_RECORDINGS_PATH"]
    try:
        media.start(log)
    finally:
        del os.environ["LENS_RECORDINGS_PATH"]
    app.extensions["lens.media"] = MediaRouter(StaticRegistry(media.url), media.secret)
    session_id = started_session(app, console, make_customer)
    peers = PeerLoop()
    watch = None
    try:
        video, audio = encode_vp8_clip(seconds=2.0), encode_opus_clip(1.0)

        async def connect():
            http = aiohttp.ClientSession()
            sid = str(session_id)
            phone = await start_phone(
                http, media.url, media.secret, sid, video, audio, features=["recording"]
            )
            tech = await start_technician(http, media.url, media.secret, sid)
            await tech.received["video"].wait_for(10, timeout=15)
            return http, phone, tech

        http, phone, tech = peers.run(connect())
        requested = time.monotonic()
        started = console.post(f"/sessions/{session_id}/recording/start")
        assert started.status_code == 200, started.text
        assert "Stop recording" in started.text
        # the file's first frame: the keyframe asked for at the start (the sidecar says so)
        deadline = time.monotonic() + 10
        while True:
            asked = time.monotonic()
            if media_state(media, session_id)["recording"]["started"]:
                break
            assert time.monotonic() < deadline, "the recording never got its first keyframe"
            time.sleep(0.02)
        began = time.monotonic()
        poll = began - asked  # how late `began` may be: the last state request's round trip
        with app.app_context():
            recording = db.session.scalars(select(Recording)).one()
            assert recording.media_boot  # the sidecar process that writes it
            path = Path(app.config["LENS_RECORDINGS_PATH"]) / recording.path

        time.sleep(max(0.0, began + seconds - time.monotonic()))  # the wall time is the test
        media.kill()  # SIGKILL: no trailer, no stop
        killed = time.monotonic()
        wall = killed - began  # since the file's first frame (give or take `poll`)
        since_request = killed - requested  # the file cannot hold more than this

        watch = start_recording_watch(app)
        deadline = time.monotonic() + 10
        while True:
            with app.app_context():
                row = db.session.get(Recording, recording.id)
                if row.stopped_at is not None and row.duration is not None:
                    break
            assert time.monotonic() < deadline, "the lost recording was never closed"
            time.sleep(0.1)
        closed_after = time.monotonic() - began - wall

        probed = ffprobe(path)
        duration = float(probed["format"]["duration"])
        print(f"killed {wall:.2f} s after the first frame (state poll {poll * 1000:.0f} ms), "
              f"{since_request:.2f} s after Start; file holds {duration:.2f} s; "
              f"row closed {closed_after:.2f} s after the kill")  # fmt: skip
        assert duration >= wall - 1.0, (wall, duration)  # at most the last second lost
        assert duration <= since_request + 0.1, (since_request, duration)
        assert {s["codec_name"] for s in probed["streams"]} == {"vp8", "opus"}
        decoded = plays(path)
        assert decoded.returncode == 0 and not decoded.stderr.strip(), decoded.stderr
        assert row.duration == pytest.approx(duration, abs=0.05)
        assert row.size == path.stat().st_size
        with app.app_context():
            kinds = db.session.scalars(
                select(SessionEvent.kind).where(SessionEvent.session_id == session_id)
            ).all()
        assert kinds.count("recording_cut") == 1
        panel = console.client.get(f"/console/sessions/{session_id}").text
        assert "Stop recording" not in panel and "Start recording" in panel
        assert "Recording cut off" in panel

        async def close():
            await phone.pc.close()
            await tech.pc.close()
            await http.close()

        peers.run(close())
    finally:
        if watch is not None:
            app.extensions["lens.recording_watch"].set()
        peers.stop()
        media.stop()
        log.close()
