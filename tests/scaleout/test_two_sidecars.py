"""Two web processes and two media sidecars on PostgreSQL and Redis: a session's legs meet
on the sidecar it is pinned to whichever web process signals them, and move to the other
sidecar when that one is killed."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import pytest
import requests
from simple_websocket import Client
from sqlalchemy import select

from lens.extensions import db
from lens.sessions.models import LensSession, SessionEvent
from tests.scaleout.conftest import dispose, make_app
from tests.scaleout.live import (
    add_tess,
    close_pages,
    cookie_header,
    free_port,
    kill_and_wait,
    media_pages,
    serve,
    wait_until,
)
from tests.scaleout.pages import Page
from tests.scaleout.test_recording_crash import PeerLoop
from tests.web.test_live import Browser, receive_until

pytestmark = [pytest.mark.scaleout, pytest.mark.media]

SILENCE = 15.0  # the test pages' own re-offer after this long without media


class SidecarProcess:
    """`python -m lens.media` registering itself in Redis under the test's prefix."""

    def __init__(self, name: str, env: dict[str, str], log) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = dict(env, LENS_MEDIA_PORT=str(self.port), LENS_MEDIA_ID=name)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lens.media"], env=environment, stdout=log, stderr=log
        )

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def session_legs(self, session_id: int, secret: str) -> dict:
        reply = requests.get(
            f"{self.url}/sessions/{session_id}",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=5,
        )
        return reply.json() if reply.status_code == 200 else {}


def test_two_web_processes_and_two_sidecars_pin_and_fail_over(
    tmp_path, monkeypatch, postgres_url, redis_url
):
    prefix = f"lens-2x2-{secrets.token_hex(4)}:"
    secret = secrets.token_urlsafe(16)
    monkeypatch.setenv("LENS_REDIS_PREFIX", prefix)
    monkeypatch.setenv("LENS_MEDIA_SECRET", secret)
    monkeypatch.setenv("LENS_RECORDINGS_PATH", str(tmp_path / "recordings"))
    web_a = make_app(tmp_path / "a", monkeypatch, postgres_url, redis_url)
    web_b = make_app(tmp_path / "b", monkeypatch, postgres_url, redis_url)
    assert web_a.test_cli_runner().invoke(args=["lens", "init"]).exit_code == 0
    add_tess(web_a)
    log = open(tmp_path / "sidecars.log", "w+")  # noqa: SIM115 - closed below
    env = dict(os.environ, REDIS_URL=redis_url, LENS_REDIS_PREFIX=prefix, LENS_MEDIA_SECRET=secret)
    sidecars = {name: SidecarProcess(name, env, log) for name in ("side-1", "side-2")}
    server_a, host_a = serve(web_a)
    server_b, host_b = serve(web_b)
    peers = PeerLoop()
    pages: list[Page] = []
    try:
        router = web_b.extensions["lens.media"]
        wait_until(lambda: len(router.live_sidecars()) == 2, 30, "both sidecars registered")
        with web_b.app_context():
            health = web_b.test_client().get("/healthz").json
        assert health["sidecars"] == "ok" and len(health["sidecar_list"]) == 2

        # the technician's console is on web B; the customer joins through web A
        tech = Browser(host_b).log_in("tess@example.com")
        pin = tech.post("/console/sessions", {"name": "Sam Scale"}).text.split('data-pin="')[1][:6]
        with web_b.app_context():
            session_id = db.session.scalar(select(LensSession.id).where(LensSession.pin == pin))
        console_ws = Client.connect(
            f"ws://{host_b}/console/ws", headers={"Cookie": cookie_header(tech.http)}
        )
        assert receive_until(console_ws, "session-rows", time.monotonic() + 5)
        phone = Browser(host_a)
        phone.join(pin)
        accepted_at = time.monotonic()
        assert phone.post("/c/accept").status_code == 200
        row = receive_until(console_ws, "Customer connected", time.monotonic() + 5)
        assert row is not None and "Sam Scale" in row
        print(f"row on web B {1000 * (time.monotonic() - accepted_at):.0f} ms after Accept on A")
        assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200

        # media: the phone signals through A, the technician through B
        # the pages re-offer by themselves only after SILENCE s without media (as Chrome does
        # when ICE gives up): what brings the media back sooner is the web process's push
        phone_page, tech_page = media_pages(peers, phone, tech, session_id, pages, SILENCE)
        with web_a.app_context():
            pinned = db.session.get(LensSession, session_id).media_sidecar
        assert pinned in sidecars
        other = next(name for name in sidecars if name != pinned)
        legs = sidecars[pinned].session_legs(session_id, secret)
        assert legs, "the pinned sidecar has no legs of the session"
        assert sidecars[other].session_legs(session_id, secret) == {}

        # chat both ways across the two processes (each page's own socket)
        phone_chat = Client.connect(
            f"ws://{host_a}/c/ws", headers={"Cookie": cookie_header(phone.http)}
        )
        tech_chat = Client.connect(
            f"ws://{host_b}/console/ws", headers={"Cookie": cookie_header(tech.http)}
        )
        tech_chat.send(json.dumps({"type": "open", "session": session_id}))
        import redis

        channel = f"{prefix}controls:{session_id}"
        wait_until(  # each process's bus subscribed for its page's controls
            lambda: redis.Redis.from_url(redis_url).pubsub_numsub(channel)[0][1] == 2,
            5,
            "both control sockets subscribed",
        )
        assert receive_until(tech_chat, f"session-log-{session_id}", time.monotonic() + 5)
        tech_chat.send(json.dumps({"type": "chat", "text": "Hello from B", "session": session_id}))
        assert receive_until(phone_chat, "Hello from B", time.monotonic() + 5)
        phone_chat.send(json.dumps({"type": "chat", "text": "Hi from A"}))
        assert receive_until(tech_chat, "Hi from A", time.monotonic() + 5)

        # kill the pinned sidecar: the legs move to the other, without a new session
        outage = kill_and_wait(sidecars[pinned].kill, phone_page, tech_page)
        print(
            f"video back {outage.back:.2f} s after the sidecar was killed; pages told to "
            f"reconnect after {', '.join(f'{t:.2f}' for t in outage.told)} s"
        )
        # each web process told its own page (phone on A, technician on B), and that is
        # what brought the video back: sooner than the pages' own SILENCE s
        assert len(outage.told) == 2, "a page was not told that its sidecar is gone"
        assert outage.back < SILENCE, "the video came back only by the pages' own timer"
        with web_a.app_context():
            moved = db.session.get(LensSession, session_id)
            assert moved.media_sidecar == other
            assert moved.state == "active"
            kinds = db.session.scalars(
                select(SessionEvent.kind).where(SessionEvent.session_id == session_id)
            ).all()
        assert kinds.count("media_moved") == 1
        assert sidecars[other].session_legs(session_id, secret)
        # the console's open panel says what happened
        pushed = receive_until(tech_chat, "stopped answering", time.monotonic() + 5)
        assert pushed is not None and "moved to" in pushed

        # the next session is pinned to the sidecar that lives
        pin2 = tech.post("/console/sessions", {"name": "Next"}).text.split('data-pin="')[1][:6]
        with web_a.app_context():
            next_id = db.session.scalar(select(LensSession.id).where(LensSession.pin == pin2))
            wait_until(lambda: pinned not in {s.id for s in router.live_sidecars()}, 15, "dead")
            chosen = web_a.extensions["lens.media"].sidecar_of(next_id, place=True)
            assert chosen.id == other
            assert db.session.get(LensSession, next_id).media_sidecar == other
        phone_chat.close()
        tech_chat.close()
        console_ws.close()
    finally:
        close_pages(peers, pages)
        for sidecar in sidecars.values():
            sidecar.stop()
        log.close()
        server_a.shutdown()
        server_b.shutdown()
        dispose(web_a)
        dispose(web_b)
        web_a.extensions["lens.events"].close()
        web_b.extensions["lens.events"].close()
