"""The one sidecar of the embedded default (`bin/run`: SQLite, no Redis) SIGKILLed
mid-session: the run command's spare takes over (or, without one, as under systemd, a new
process starts), the web process tells both pages at once, their offers wait for the new
sidecar, and the video comes back without a new session."""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time

import pytest
from simple_websocket import Client
from sqlalchemy import select

from lens import run
from lens.extensions import db
from lens.media.testing import encode_opus_clip, encode_vp8_clip
from lens.sessions.models import LensSession
from tests.scaleout.conftest import dispose, make_app
from tests.scaleout.pages import Page
from tests.scaleout.test_recording_crash import PeerLoop
from tests.scaleout.test_two_sidecars import cookie_header, free_port, serve, wait_until
from tests.web.test_live import Browser, receive_until

pytestmark = pytest.mark.media

SILENCE = 15.0  # the test pages' own re-offer after this long without media


class Supervised:
    """The sidecar under the run command's supervisor (lens.run.SidecarSupervisor)."""

    def __init__(self, env: dict[str, str], log, spare: bool) -> None:
        command = [sys.executable, "-m", "lens.media"]
        self.supervisor = run.SidecarSupervisor(command, env, log, spare=spare)
        self.stopped = threading.Event()
        self.supervisor.start()
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def watch(self) -> None:
        while not self.stopped.wait(run.WATCH_SECONDS):
            self.supervisor.check()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.supervisor.stop()


@pytest.mark.parametrize("spare", [True, False], ids=["spare", "fresh-start"])
def test_the_one_sidecar_killed_and_restarted_brings_the_video_back(tmp_path, monkeypatch, spare):
    port = free_port()
    secret = secrets.token_urlsafe(16)
    monkeypatch.setenv("LENS_MEDIA_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("LENS_MEDIA_SECRET", secret)
    monkeypatch.setenv("LENS_RECORDINGS_PATH", str(tmp_path / "recordings"))
    app = make_app(tmp_path / "web", monkeypatch, f"sqlite:///{tmp_path / 'lens.db'}")
    assert app.test_cli_runner().invoke(args=["lens", "init"]).exit_code == 0
    app.test_cli_runner().invoke(
        args=["lens", "create-technician", "--name", "Tess", "--email", "tess@example.com",
              "--password", "correct horse battery"]
    )  # fmt: skip
    log = open(tmp_path / "sidecar.log", "w+")  # noqa: SIM115 - closed below
    env = dict(os.environ, LENS_MEDIA_PORT=str(port), LENS_MEDIA_SECRET=secret)
    for name in ("REDIS_URL", "DATABASE_URL"):
        env.pop(name, None)
    sidecar = Supervised(env, log, spare)
    server, host = serve(app)
    peers = PeerLoop()
    pages: list[Page] = []
    try:
        media = app.extensions["lens.media"]
        wait_until(lambda: media.live_sidecars(), 30, "the sidecar up")
        tech = Browser(host).log_in("tess@example.com")
        pin = tech.create_session("Rita Restart")
        with app.app_context():
            session_id = db.session.scalar(select(LensSession.id).where(LensSession.pin == pin))
        phone = Browser(host)
        phone.join(pin)
        assert phone.post("/c/accept").status_code == 200
        assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200

        video, audio = encode_vp8_clip(seconds=2.0), encode_opus_clip(1.0)
        phone_page = Page(
            f"ws://{host}/c/ws",
            cookie_header(phone.http),
            True,
            video=video,
            audio=audio,
            silence=SILENCE,
        )
        tech_page = Page(
            f"ws://{host}/console/ws", cookie_header(tech.http), False, session=session_id,
            audio=audio, silence=SILENCE,
        )  # fmt: skip
        pages += [phone_page, tech_page]

        async def connect():
            await phone_page.connect()
            await tech_page.connect()
            await tech_page.received["video"].wait_for(30, timeout=20)
            phone_page.start_watch()
            tech_page.start_watch()

        peers.run(connect())

        if spare:  # the spare the run command keeps beside the sidecar has loaded and waits
            wait_until(lambda: sidecar.supervisor.spare_ready, 60, "the spare sidecar ready")
        frames_before = len(tech_page.received["video"].digests)
        first = sidecar.supervisor.process
        killed_at = time.perf_counter()
        first.kill()

        def video_back() -> bool:
            arrivals = tech_page.received["video"].arrival
            return len(arrivals) > frames_before + 30 and arrivals[-1] > killed_at

        wait_until(video_back, 40, "video back after the kill")
        # frames in flight at the kill do not count: once the technician's page was told,
        # only its new connection brings any
        since = tech_page.pushes[0] if tech_page.pushes else killed_at
        arrivals = tech_page.received["video"].arrival[frames_before:]
        back = next(t for t in arrivals if t > since)
        told = [page.pushes[0] - killed_at for page in (phone_page, tech_page) if page.pushes]
        print(
            f"{'spare' if spare else 'fresh start'}: "
            f"video back {back - killed_at:.2f} s after the sidecar was killed; pages told "
            f"after {', '.join(f'{t:.2f}' for t in told)} s (load {os.getloadavg()[0]:.1f})"
        )
        assert sidecar.supervisor.process is not first and sidecar.supervisor.restarts == 1
        assert sidecar.supervisor.promoted == (1 if spare else 0)
        # both pages were told, and that is what brought the video back, not their own timer
        assert len(told) == 2, "a page was not told that its sidecar is gone"
        assert back - killed_at < SILENCE, "the video came back only by the pages' own timer"
        with app.app_context():
            assert db.session.get(LensSession, session_id).state == "active"

        # the console still lists the one session, active
        ws = Client.connect(f"ws://{host}/console/ws", headers={"Cookie": cookie_header(tech.http)})
        row = receive_until(ws, "Rita Restart", time.monotonic() + 5)
        ws.close()
        assert row is not None and "Active" in row
    finally:

        async def close():
            for page in pages:
                await page.close()

        peers.run(close())
        peers.stop()
        sidecar.stop()
        log.close()
        server.shutdown()
        dispose(app)
