"""The one sidecar of the embedded default (`bin/run`: SQLite, no Redis) SIGKILLed
mid-session: the run command's spare takes over (or, without one, as under systemd, a new
process starts), the web process tells both pages at once, their offers wait for the new
sidecar, and the video comes back without a new session."""

from __future__ import annotations

import os
import secrets
import time

import pytest
from simple_websocket import Client

from lens.extensions import db
from lens.sessions.models import LensSession
from tests.scaleout.conftest import dispose, make_app
from tests.scaleout.live import (
    Supervised,
    add_tess,
    close_pages,
    cookie_header,
    free_port,
    kill_and_wait,
    media_pages,
    serve,
    started_session,
    wait_until,
)
from tests.scaleout.pages import Page
from tests.scaleout.test_recording_crash import PeerLoop
from tests.web.test_live import receive_until

pytestmark = pytest.mark.media

SILENCE = 15.0  # the test pages' own re-offer after this long without media


@pytest.mark.parametrize("spare", [True, False], ids=["spare", "fresh-start"])
def test_the_one_sidecar_killed_and_restarted_brings_the_video_back(tmp_path, monkeypatch, spare):
    port = free_port()
    secret = secrets.token_urlsafe(16)
    monkeypatch.setenv("LENS_MEDIA_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("LENS_MEDIA_SECRET", secret)
    monkeypatch.setenv("LENS_RECORDINGS_PATH", str(tmp_path / "recordings"))
    app = make_app(tmp_path / "web", monkeypatch, f"sqlite:///{tmp_path / 'lens.db'}")
    assert app.test_cli_runner().invoke(args=["lens", "init"]).exit_code == 0
    add_tess(app)
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
        tech, phone, session_id = started_session(app, host, "Rita Restart")
        phone_page, tech_page = media_pages(peers, phone, tech, session_id, pages, SILENCE)

        if spare:  # the spare the run command keeps beside the sidecar has loaded and waits
            wait_until(lambda: sidecar.supervisor.spare_ready, 60, "the spare sidecar ready")
        first = sidecar.supervisor.process
        outage = kill_and_wait(first.kill, phone_page, tech_page)
        print(
            f"{'spare' if spare else 'fresh start'}: "
            f"video back {outage.back:.2f} s after the sidecar was killed; pages told "
            f"after {', '.join(f'{t:.2f}' for t in outage.told)} s "
            f"(load {os.getloadavg()[0]:.1f})"
        )
        assert sidecar.supervisor.process is not first and sidecar.supervisor.restarts == 1
        assert sidecar.supervisor.promoted == (1 if spare else 0)
        # both pages were told, and that is what brought the video back, not their own timer
        assert len(outage.told) == 2, "a page was not told that its sidecar is gone"
        assert outage.back < SILENCE, "the video came back only by the pages' own timer"
        with app.app_context():
            assert db.session.get(LensSession, session_id).state == "active"

        # the console still lists the one session, active
        ws = Client.connect(f"ws://{host}/console/ws", headers={"Cookie": cookie_header(tech.http)})
        row = receive_until(ws, "Rita Restart", time.monotonic() + 5)
        ws.close()
        assert row is not None and "Active" in row
    finally:
        close_pages(peers, pages)
        sidecar.stop()
        log.close()
        server.shutdown()
        dispose(app)
