"""A live session over real web processes and sidecars, and killing the sidecar under it:
the set-up the restart and failover tests and bench/sidecar_restart.py share."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
from sqlalchemy import select
from werkzeug.serving import make_server

from lens import run
from lens.extensions import db
from lens.media.testing import encode_opus_clip, encode_vp8_clip
from lens.sessions.models import LensSession
from tests.conftest import PASSWORD
from tests.scaleout.pages import SILENCE_SECONDS, Page
from tests.scaleout.test_recording_crash import PeerLoop
from tests.web.test_live import Browser


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(app):
    """The app on a threaded server of its own: (server, "host:port")."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_port}"


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.05)
    return result


def cookie_header(http: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in http.cookies)


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


def add_tess(app) -> None:
    """Tess, the technician whose sessions these are (made as the lens command makes one)."""
    result = app.test_cli_runner().invoke(
        args=["lens", "create-technician", "--name", "Tess", "--email", "tess@example.com",
              "--password", PASSWORD]
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def started_session(app, host: str, name: str) -> tuple[Browser, Browser, int]:
    """Tess's session on the web process at host, joined and accepted by a phone, started:
    the technician's browser, the phone's, and the session's id."""
    tech = Browser(host).log_in("tess@example.com")
    pin = tech.create_session(name)
    with app.app_context():
        session_id = db.session.scalar(select(LensSession.id).where(LensSession.pin == pin))
    phone = Browser(host)
    phone.join(pin)
    assert phone.post("/c/accept").status_code == 200
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    return tech, phone, session_id


def media_pages(
    peers: PeerLoop,
    phone: Browser,
    tech: Browser,
    session_id: int,
    pages: list[Page],
    silence: float = SILENCE_SECONDS,
    timeout: float = 30.0,
) -> tuple[Page, Page]:
    """The phone's and the technician's media pages of a started session, each signalling
    through its browser's web process: connected, video reaching the technician, and each
    offering again by itself after `silence` s without media. They join `pages` before they
    connect: the caller closes them."""
    video, audio = encode_vp8_clip(seconds=2.0), encode_opus_clip(1.0)
    phone_page = Page(
        phone.base.replace("http", "ws", 1) + "/c/ws",
        cookie_header(phone.http),
        True,
        video=video,
        audio=audio,
        silence=silence,
    )
    tech_page = Page(
        tech.base.replace("http", "ws", 1) + "/console/ws", cookie_header(tech.http), False,
        session=session_id, audio=audio, silence=silence,
    )  # fmt: skip
    pages += [phone_page, tech_page]

    async def connect():
        await phone_page.connect()
        await tech_page.connect()
        await tech_page.received["video"].wait_for(30, timeout=timeout - 10)
        phone_page.start_watch()
        tech_page.start_watch()

    peers.run(connect(), timeout=timeout)
    return phone_page, tech_page


def close_pages(peers: PeerLoop, pages: list[Page]) -> None:
    """Close the pages and stop their loop."""

    async def close():
        for page in pages:
            await page.close()

    peers.run(close())
    peers.stop()


@dataclass
class Outage:
    """What one kill of the sidecar under a session cost its two pages."""

    back: float  # s from the kill to the first video on the technician's new connection
    told: list[float]  # s from the kill until each page that was told to reconnect was told


def kill_and_wait(
    kill: Callable[[], None], phone_page: Page, tech_page: Page, timeout: float = 40
) -> Outage:
    """Kill the sidecar (`kill`) and wait until 30 more video frames reached the technician."""
    received = tech_page.received["video"]
    before = len(received.arrival)
    pushes = (len(phone_page.pushes), len(tech_page.pushes))
    killed_at = time.perf_counter()
    kill()

    def video_back() -> bool:
        arrivals = received.arrival
        return len(arrivals) > before + 30 and arrivals[-1] > killed_at

    wait_until(video_back, timeout, "video back after the kill")
    told_at = [
        page.pushes[count]
        for page, count in zip((phone_page, tech_page), pushes, strict=True)
        if len(page.pushes) > count
    ]
    # frames in flight at the kill do not count: once the technician's page was told, only
    # its new connection brings any
    since = tech_page.pushes[pushes[1]] if len(tech_page.pushes) > pushes[1] else killed_at
    back = next(t for t in received.arrival[before:] if t > since)
    return Outage(back - killed_at, [t - killed_at for t in told_at])
