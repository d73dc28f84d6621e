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
    from playwright.sync_api import expect, sync_playwright

    # a loaded 2-core machine (WebRTC peers, a sidecar, several Chromium contexts) can
    # take longer than Playwright's 5 s default to settle a step
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# What Chromium writes to a page's console when the page's policies refuse something
# (lens.security.headers): an inline script or handler, a style, a connection, a device.
POLICY_MESSAGES = (
    "Content Security Policy",
    "Content-Security-Policy",
    "Permissions policy violation",
    "Permissions-Policy",
)


def compiled_once(expression: str) -> str:
    """A wait_for_function predicate that polls without eval.

    Playwright evaluates a string predicate with the page's eval, again on every poll
    (requestAnimationFrame); the first call runs inside DevTools' evaluation, where the
    page's CSP allows eval, the later ones do not (no 'unsafe-eval'). Wrapped in a
    function, the string is evaluated once and the function, compiled, is what polls. A
    predicate that is itself a function is called with the argument, as Playwright does."""
    return f"(arg) => {{ const v = ({expression}); return typeof v === 'function' ? v(arg) : v; }}"


def poll_without_eval(put=setattr) -> None:
    """Every page's wait_for_function works under the pages' CSP (see compiled_once);
    `put` sets the wrapped methods in place (a test's monkeypatch.setattr undoes it)."""
    from playwright.sync_api import Frame, Page

    for cls in (Page, Frame):
        original = cls.wait_for_function

        def wait_for_function(self, expression, *args, _original=original, **kwargs):
            return _original(self, compiled_once(expression), *args, **kwargs)

        put(cls, "wait_for_function", wait_for_function)


@pytest.fixture(autouse=True)
def predicates_without_eval(monkeypatch) -> None:
    """Every page's wait_for_function works under the pages' CSP (see compiled_once)."""
    poll_without_eval(monkeypatch.setattr)


@pytest.fixture(autouse=True)
def contexts_closed(request) -> Iterator[None]:
    """Close what a test left open on the session's Chromium.

    A test closes its contexts at its end; one that fails half-way leaves them open, and
    their pages keep the fake camera (one device for the whole Chromium) at the size they
    asked for, so the next test, or this one's rerun, could not get another size."""
    yield
    if "browser" in request.fixturenames:
        for context in list(request.getfixturevalue("browser").contexts):
            context.close()


@pytest.fixture(autouse=True)
def policy_violations(monkeypatch) -> Iterator[list[str]]:
    """Fail a browser test whose pages broke the site's CSP or Permissions-Policy.

    Every context a test opens (from the session's Chromium or one it launches itself)
    reports its pages' console; a policy message there fails the test at its end."""
    from playwright.sync_api import Browser

    found: list[str] = []

    def watch(context):
        def on_console(message) -> None:
            if any(marker in message.text for marker in POLICY_MESSAGES):
                found.append(f"{message.type}: {message.text} ({message.location.get('url')})")

        context.on("console", on_console)
        return context

    new_context, new_page = Browser.new_context, Browser.new_page

    def watched_context(self, *args, **kwargs):
        return watch(new_context(self, *args, **kwargs))

    def watched_page(self, *args, **kwargs):
        page = new_page(self, *args, **kwargs)
        watch(page.context)
        return page

    monkeypatch.setattr(Browser, "new_context", watched_context)
    monkeypatch.setattr(Browser, "new_page", watched_page)
    yield found
    assert found == [], "the pages broke their security policies:\n" + "\n".join(found)


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: docs/screenshots with LENS_UPDATE_SCREENSHOTS=1, else a temp dir."""
    if os.environ.get("LENS_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path


class Sidecar:
    """The media sidecar in its own process on a fixed loopback port: killed, restarted."""

    def __init__(self) -> None:
        import secrets
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.secret = secrets.token_urlsafe(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self, log=None) -> None:
        """Start it and wait for /healthz; its log goes to the file log, else to stderr."""
        import subprocess
        import sys

        import requests

        env = dict(os.environ, LENS_MEDIA_PORT=str(self.port), LENS_MEDIA_SECRET=self.secret)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lens.media"], env=env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return
            except requests.ConnectionError:
                pass
            assert self.process.poll() is None, "the sidecar exited"
            assert time.monotonic() < deadline, "the sidecar did not come up"
            time.sleep(0.1)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def sidecar(app) -> Iterator[Sidecar]:
    """A running sidecar wired into the app, as the one sidecar of `bin/run`."""
    from lens.sidecars import MediaRouter, StaticRegistry

    media = Sidecar()
    media.start()
    app.extensions["lens.media"] = MediaRouter(StaticRegistry(media.url), media.secret, timeout=10)
    yield media
    media.stop()


# --- Two-step verification in the browser (the codes come from tests.conftest's helpers) ---


def answer_code(page, code: str) -> None:
    """The log-in's second step: type the authenticator code and verify."""
    page.get_by_label("Code from your authenticator app").fill(code)
    page.get_by_role("button", name="Verify").click()


def enrol_second_factor(page) -> str:
    """Set up two-step verification on the page that asks for it; return the secret.

    The app's part is played by pyotp, with the key the page shows for typing by hand."""
    import pyotp
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="Two-step verification")).to_be_visible()
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    secret = "".join(page.locator("[data-totp-key]").inner_text().split())
    answer_code(page, pyotp.TOTP(secret).now())
    return secret
