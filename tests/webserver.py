"""The web process as `bin/run` serves it (gunicorn, gevent worker) for tests that need it.

Its own instance folder and SQLite file, a free loopback port, plain HTTP or HTTPS; it can
be killed and started again on the same port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"
# where no sidecar listens (the discard port): signaling answers "unavailable". Not
# LENS_MEDIA_URL's default port, where a Lens started by `bin/run` on the same machine
# answers (it did: 401s for the tests' snapshots and session ends)
NO_SIDECAR = "http://127.0.0.1:9"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WebServer:
    """gunicorn with the gevent worker, as lens.run starts it."""

    def __init__(self, folder: Path, tls: bool = False, **settings: str) -> None:
        self.folder = folder
        self.instance = folder / "instance"
        self.instance.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self.env = dict(
            os.environ,
            LENS_INSTANCE_PATH=str(self.instance),
            LENS_PASSWORD_METHOD="pbkdf2:sha256:1",
            LENS_MEDIA_URL=NO_SIDECAR,
            LENS_SWEEP_SECONDS="0",
            **settings,
        )
        for name in ("DATABASE_URL", "REDIS_URL"):  # the embedded defaults unless given
            if name not in settings:
                self.env.pop(name, None)
        self.process: subprocess.Popen | None = None
        self.log = folder / "web.log"

    def flask(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "lens", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return result.stdout

    def prepare(self) -> None:
        """Migrations and the first admin."""
        self.flask("init")

    def add_technician(self, name: str, email: str) -> None:
        self.flask("create-technician", "--name", name, "--email", email, "--password", PASSWORD)

    def command(self) -> list[str]:
        from lens.run import web_command

        if not self.tls:
            return web_command(None, None, bind=self.host, env=self.env)
        from lens.tls import ensure_certificate

        cert, key = ensure_certificate(str(self.instance))
        return web_command(cert, key, bind=self.host, env=self.env)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(self.base + "/healthz", timeout=1, verify=False).ok:
                    return
            except requests.RequestException:
                pass
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the web process did not come up"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: what a crash or an OOM kill does."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        for child in _children_of(self.process.pid):
            os.kill(child, signal.SIGKILL)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for child in _children_of(self.process.pid if self.process else -1):
            os.kill(child, signal.SIGKILL)


def _children_of(pid: int) -> list[int]:
    """gunicorn's workers left behind by a killed arbiter."""
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == pid:
                children.append(int(status.parent.name))
    return children
