"""The run command: web (gunicorn, HTTPS) and the media sidecar, restarted if it dies.

`python -m lens.run` — what `bin/run` starts. Stops both cleanly on Ctrl-C or SIGTERM.
`python -m lens.run web` / `python -m lens.run media` — one of them alone, for a service
manager that starts and restarts each (docs/deploy.md: systemd units); `media` watches the
sidecar with its spare like the whole run does (LENS_MEDIA_SPARE=0: the sidecar alone, left
to the service manager). `LENS_TLS=0` serves plain HTTP, for a TLS proxy in front on the
same host.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lens import ROOT

log = logging.getLogger("lens.run")

WATCH_SECONDS = 0.1  # how often the run command looks at its processes
RESTART_DELAY = 0.5  # after a quick second death, doubling up to MAX_RESTART_DELAY
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 30.0  # a sidecar that ran this long restarts at once again
SPARE_AFTER = 5.0  # the spare sidecar starts once the sidecar has run this long
STANDBY = "LENS_MEDIA_STANDBY"  # lens/media/__main__.py


def _instance_path() -> str:
    return os.environ.get("LENS_INSTANCE_PATH") or str(ROOT / "instance")


def prepare() -> None:
    """Create or upgrade the database and the first admin (printed once)."""
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "lens", "init"], cwd=ROOT, check=True
    )


def worker_options(env: Mapping[str, str]) -> list[str]:
    """gevent (the default): a waiting socket is a parked greenlet, not a thread
    (docs/web-tier.md). gthread is kept to measure against (bench/web_load.py)."""
    worker_class = env.get("LENS_WEB_WORKER_CLASS", "gevent")
    if worker_class == "gthread":
        return ["--worker-class", "gthread", "--threads", env.get("LENS_WEB_THREADS", "64")]
    if worker_class != "gevent":
        raise SystemExit(f"LENS_WEB_WORKER_CLASS must be gevent or gthread, not {worker_class!r}")
    return [
        "--worker-class", "gevent",
        "--worker-connections", env.get("LENS_WEB_CONNECTIONS", "2000"),
    ]  # fmt: skip


def web_command(
    cert: Path | None,
    key: Path | None,
    bind: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> list[str]:
    """gunicorn serving the web process: HTTPS with cert and key, else plain HTTP."""
    bind = bind or f"{env.get('LENS_HOST', '0.0.0.0')}:{env.get('LENS_PORT', '8443')}"
    tls = ["--certfile", str(cert), "--keyfile", str(key)] if cert and key else []
    return [
        sys.executable, "-m", "gunicorn", "app:create_app()",
        "--bind", bind,
        *worker_options(env),
        "--workers", env.get("LENS_WEB_WORKERS", "1"),
        *tls,
        "--access-logfile", "-",
        "--graceful-timeout", "5",
    ]  # fmt: skip


def sidecar_command() -> list[str]:
    return [sys.executable, "-m", "lens.media"]


class SidecarSupervisor:
    """The media sidecar, started again when it dies.

    A spare (`spare=True`) is a second sidecar process that has loaded everything and waits
    (lens/media/__main__.py, LENS_MEDIA_STANDBY): when the sidecar dies, the spare takes its
    port at once instead of a fresh process spending seconds on its imports (more on a busy
    machine), and a new spare is started SPARE_AFTER seconds later. After a sidecar that ran
    a while the restart is immediate (its pages' media comes back as soon as it listens,
    lens/sidecars/legs.py); one that keeps dying quickly (a crash loop) is started again
    after RESTART_DELAY, doubling up to MAX_RESTART_DELAY.
    """

    def __init__(
        self, command: list[str], env: Mapping[str, str], output: Any = None, spare: bool = True
    ) -> None:
        self.command = command
        self.env = dict(env)
        self.output = output  # the sidecars' stdout and stderr (default: the run command's)
        self.use_spare = spare
        self.process: subprocess.Popen | None = None
        self.spare: subprocess.Popen | None = None
        self.spare_ready = False
        self.started = 0.0
        self.delay = 0.0  # before the next restart
        self.restart_at: float | None = None
        self.restarts = 0
        self.promoted = 0  # restarts the spare took

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=self.output, stderr=self.output
        )
        self.started = time.monotonic()
        self.restart_at = None

    def processes(self) -> list[subprocess.Popen]:
        return [p for p in (self.process, self.spare) if p is not None]

    def check(self) -> None:
        """Restart the sidecar if it has exited and its back-off delay has passed; keep a
        spare ready."""
        now = time.monotonic()
        if self.process is not None and self.process.poll() is not None:
            if self.restart_at is None:
                if now - self.started > STABLE_AFTER:
                    self.delay = 0.0
                log.warning(
                    "media sidecar exited with %s; restarting in %.1f s",
                    self.process.returncode,
                    self.delay,
                )
                self.restart_at = now + self.delay
                self.delay = min(max(self.delay * 2, RESTART_DELAY), MAX_RESTART_DELAY)
            if now >= self.restart_at:
                self.restarts += 1
                if not self._promote():
                    self.start()
        elif self.use_spare and now - self.started > SPARE_AFTER:
            self._keep_spare()

    def _keep_spare(self) -> None:
        if self.spare is not None and self.spare.poll() is not None:
            log.warning("spare media sidecar exited with %s", self.spare.returncode)
            self.spare = None
        if self.spare is None:
            self.spare = subprocess.Popen(
                self.command, cwd=ROOT, env={**self.env, STANDBY: "1"}, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self.output,
            )  # fmt: skip
            self.spare_ready = False
        elif not self.spare_ready and self.spare.stdout is not None:
            readable, _, _ = select.select([self.spare.stdout], [], [], 0)
            if readable:
                self.spare_ready = self.spare.stdout.readline() == b"ready\n"

    def _promote(self) -> bool:
        """The spare takes over; False when there is none alive."""
        spare, self.spare = self.spare, None
        if spare is None or spare.poll() is not None or spare.stdin is None:
            return False
        try:
            spare.stdin.write(b"go\n")
            spare.stdin.close()
        except OSError:
            return False
        self.process = spare  # its stdout pipe stays open: it may not have said "ready" yet
        self.started = time.monotonic()
        self.restart_at = None
        self.promoted += 1
        log.info("the spare media sidecar took over")
        return True

    def stop(self, timeout: float = 10) -> None:
        for process in self.processes():
            if process.poll() is None:
                process.terminate()
        for process in self.processes():
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()


def web_certificate() -> tuple[Path | None, Path | None]:
    """The certificate gunicorn serves (made on first run), or none with LENS_TLS=0."""
    if os.environ.get("LENS_TLS", "1") == "0":
        return None, None
    from lens.tls import ensure_certificate

    return ensure_certificate(_instance_path())


def main(argv: list[str] | None = None) -> int:
    """Start everything (or only `web` / `media`), watch the sidecar, stop on a signal."""
    from lens.logs import configure_logging

    configure_logging("run")
    mode = (sys.argv[1:] if argv is None else argv) or ["all"]
    if mode[0] not in ("all", "web", "media") or len(mode) > 1:
        log.error("usage: python -m lens.run [all|web|media]")
        return 2
    from lens.config import SettingsError, check_shared_settings

    try:  # a multi-host site's process without the shared secrets: say what to set, stop
        check_shared_settings(os.environ)
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    os.chdir(ROOT)
    spare = os.environ.get("LENS_MEDIA_SPARE", "1") != "0"
    if mode[0] == "media":
        if not spare:
            os.execv(sys.executable, sidecar_command())
        # the service manager restarts this supervisor if it dies; it restarts the sidecar
        return supervise(None, SidecarSupervisor(sidecar_command(), os.environ, spare=True))
    prepare()
    cert, key = web_certificate()
    if mode[0] == "web":
        os.execv(sys.executable, web_command(cert, key))
    env = dict(os.environ, LENS_START_SWEEPER="1", LENS_SECURE_COOKIES="1")
    if os.environ.get("LENS_SMS_BACKEND", "log") == "log":
        log.info("SMS backend: log (development) - text messages are written to this log, not sent")
    web = subprocess.Popen(web_command(cert, key), cwd=ROOT, env=env)
    port = os.environ.get("LENS_PORT", "8443")
    log.info(
        "Lens is up: https://localhost:%s/console (customers: https://<this host>:%s/)", port, port
    )
    return supervise(web, SidecarSupervisor(sidecar_command(), env, spare=spare))


def supervise(web: subprocess.Popen | None, sidecar: SidecarSupervisor) -> int:
    """Run until a signal (0) or the web process exits (1), restarting the sidecar."""
    sidecar.start()
    stopping = False

    def stop(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            if web is not None and web.poll() is not None:
                log.error("web process exited with %s; stopping", web.returncode)
                break
            if web is None and sidecar.process is not None and sidecar.process.poll() == 2:
                log.error("the media sidecar refuses its settings (see above); stopping")
                return 2  # as the sidecar alone would: the service manager shows the failure
            sidecar.check()
            time.sleep(WATCH_SECONDS)
    finally:
        if web is not None and web.poll() is None:
            web.terminate()
        sidecar.stop()
        if web is not None:
            try:
                web.wait(timeout=10)
            except subprocess.TimeoutExpired:
                web.kill()
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
