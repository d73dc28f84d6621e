"""Forced recording, with a real sidecar and an aiortc phone: it records from Start, the file
plays (ffprobe), and Stop recording is refused by the web process and by the sidecar."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from lens import features
from lens.captures.models import Recording
from lens.extensions import db
from lens.media import MediaConfig, make_app
from lens.media.testing import encode_vp8_clip, start_phone, wait_until
from lens.sessions.models import LensSession, SessionEvent
from lens.signaling.control import MediaControl
from tests.admin.test_permissions import make_group_in_admin_center, move_to_group
from tests.captures.conftest import session_id_of
from tests.media.conftest import SECRET, Sidecar

pytestmark = pytest.mark.media


def waiting_in_a_forced_group(app, admin, console, make_customer, name: str) -> int:
    """Tess in a group whose sessions record from Start, and her session `name`, which a
    phone joined and accepted: it waits for Start."""
    group_id = make_group_in_admin_center(app, admin, "recorded", set(), recording="forced")
    move_to_group(app, admin, "tess@example.com", group_id)
    pin = console.create_session(name)["pin"]
    session_id = session_id_of(app, pin)
    customer = make_customer()
    assert customer.join(pin).status_code == 303
    assert customer.accept().status_code == 200
    return session_id


async def sidecar_for(recordings: Path):
    app = make_app(MediaConfig(secret=SECRET, recordings_path=recordings))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


def test_a_forced_recording_group_records_from_start_and_cannot_stop(
    app, admin, console, make_customer
):
    session_id = waiting_in_a_forced_group(app, admin, console, make_customer, "Rita Recorded")
    with app.app_context():
        lens_session = db.session.get(LensSession, session_id)
        session_features = sorted(features.features_of(lens_session, lens_session.console))
    assert features.RECORDING_FORCED in session_features
    recordings = Path(app.config["LENS_RECORDINGS_PATH"])
    clip = encode_vp8_clip(seconds=1.0, width=320, height=240, keyframe_every=15)

    async def scenario() -> None:
        runner, base_url = await sidecar_for(recordings)
        app.extensions["lens.media"] = MediaControl(base_url, SECRET, timeout=10)
        try:
            async with asyncio.timeout(60), aiohttp.ClientSession() as http:
                sidecar = Sidecar(runner.app, base_url, SECRET, http)
                # the phone's leg, with the features the web process gives it
                phone = await start_phone(
                    http, base_url, SECRET, str(session_id), clip, features=session_features
                )
                started = await asyncio.to_thread(console.post, f"/sessions/{session_id}/start")
                assert started.status_code == 200
                assert "Stop recording" not in started.text  # nobody may stop it
                assert "Recording" in started.text
                _, state = await sidecar.call("GET", f"/sessions/{session_id}")
                assert state["recording"] is not None  # recording from Start, unasked
                sent = phone.sending["video"]
                goal = sent.sent + 45
                await wait_until(lambda: sent.sent >= goal, 10)

                refused = await asyncio.to_thread(
                    console.post, f"/sessions/{session_id}/recording/stop"
                )
                assert refused.status_code == 403
                assert "recording cannot be stopped" in refused.text
                status, body = await sidecar.call(
                    "POST", f"/sessions/{session_id}/recording", json={"action": "stop"}
                )
                assert status == 403 and "forced" in body["error"]
                _, state = await sidecar.call("GET", f"/sessions/{session_id}")
                assert state["recording"] is not None  # still recording

                ended = await asyncio.to_thread(console.post, f"/sessions/{session_id}/end")
                assert ended.status_code == 200
                await phone.pc.close()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    with app.app_context():
        recording = db.session.scalars(select(Recording)).one()
        assert recording.stopped_at is not None and recording.duration > 1.0
        file = recordings / recording.path
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    info = json.loads(probe.stdout)
    video = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert video and video[0]["codec_name"] == "vp8" and video[0]["width"] == 320
    assert float(info["format"]["duration"]) > 1.0
    frames = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(file)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert int(frames.stdout.strip()) >= 30  # it decodes: the file plays


def test_a_forced_recording_cut_off_by_its_sidecar_starts_again_when_the_phone_is_back(
    app, admin, console, make_customer
):
    """The phone's media is back on a new sidecar process before the recording watch has
    closed the old recording: the phone's answer names the new process, so the recording
    it no longer writes is closed at once and the forced recording starts again."""
    from lens.customer.live import record_if_forced
    from tests.captures.conftest import FakeMedia

    class Media(FakeMedia):
        boot = "boot-1"

        def recording(self, session_id: int, action: str, path: str | None = None) -> dict:
            return {**super().recording(session_id, action, path), "boot": self.boot}

    media = Media(Path(app.config["LENS_RECORDINGS_PATH"]))
    app.extensions["lens.media"] = media
    session_id = waiting_in_a_forced_group(app, admin, console, make_customer, "Rita Restarted")
    assert console.post(f"/sessions/{session_id}/start").status_code == 200
    with app.app_context():
        first = db.session.scalars(select(Recording)).one()
        assert first.media_boot == "boot-1" and first.stopped_at is None

    with app.test_request_context():
        record_if_forced(session_id, "boot-1")  # the same process: nothing to do
    with app.app_context():
        assert len(db.session.scalars(select(Recording)).all()) == 1

    media.boot = "boot-2"  # the sidecar was restarted; the phone's leg is on the new one
    with app.test_request_context():
        record_if_forced(session_id, "boot-2")
    with app.app_context():
        rows = db.session.scalars(select(Recording).order_by(Recording.id)).all()
        assert len(rows) == 2
        assert rows[0].stopped_at is not None  # closed once, as cut off
        assert rows[1].media_boot == "boot-2" and rows[1].stopped_at is None
        kinds = db.session.scalars(
            select(SessionEvent.kind).where(SessionEvent.session_id == session_id)
        ).all()
    assert kinds.count("recording_cut") == 1
    assert [c[2] for c in media.calls if c[0] == "recording"] == ["start", "start"]
