"""A real server and Debian Chromium for the browser tests."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("LENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream=fps=30",
    "--use-fake-ui-for-media-stream",
]
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The app on a free loopback port, threaded (WebSockets hold a thread each)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"Debian Chromium not found at {CHROMIUM}: run bin/test (it installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: docs/screenshots with LENS_UPDATE_SCREENSHOTS=1, else a temp dir."""
    if os.environ.get("LENS_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path


@pytest.fixture
def sidecar(app) -> Iterator[str]:
    """The media sidecar as its own process on a free loopback port, wired into the app."""
    import secrets
    import socket
    import subprocess
    import sys

    import requests

    from lens.signaling.control import MediaControl

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = secrets.token_urlsafe(16)
    env = dict(os.environ, LENS_MEDIA_PORT=str(port), LENS_MEDIA_SECRET=secret)
    process = subprocess.Popen([sys.executable, "-m", "lens.media"], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if requests.get(url + "/healthz", timeout=1).ok:
                break
        except requests.ConnectionError:
            pass
        assert process.poll() is None, "the sidecar exited"
        assert time.monotonic() < deadline, "the sidecar did not come up"
        time.sleep(0.1)
    app.extensions["lens.media"] = MediaControl(url, secret, timeout=10)
    yield url
    process.terminate()
    process.wait(timeout=10)
