"""The run command: web (gunicorn, HTTPS) and the media sidecar, restarted if it dies.

`python -m lens.run` — what `bin/run` starts. Stops both cleanly on Ctrl-C or SIGTERM.
`python -m lens.run web` / `python -m lens.run media` — one of them alone, for a service
manager that starts and restarts each (docs/deploy.md: systemd units). `LENS_TLS=0`
serves plain HTTP, for a TLS proxy in front on the same host.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from lens import ROOT

log = logging.getLogger("lens.run")

RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 30.0  # a sidecar that ran this long restarts at once again


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
    if mode[0] == "media":
        os.execv(sys.executable, sidecar_command())
    prepare()
    cert, key = web_certificate()
    if mode[0] == "web":
        os.execv(sys.executable, web_command(cert, key))
    env = dict(os.environ, LENS_START_SWEEPER="1", LENS_SECURE_COOKIES="1")
    if os.environ.get("LENS_SMS_BACKEND", "log") == "log":
        log.info("SMS backend: log (development) - text messages are written to this log, not sent")
    web = subprocess.Popen(web_command(cert, key), cwd=ROOT, env=env)
    sidecar = subprocess.Popen(sidecar_command(), cwd=ROOT, env=env)
    sidecar_started = time.monotonic()
    delay = RESTART_DELAY
    port = os.environ.get("LENS_PORT", "8443")
    log.info(
        "Lens is up: https://localhost:%s/console (customers: https://<this host>:%s/)", port, port
    )

    stopping = False

    def stop(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            if web.poll() is not None:
                log.error("web process exited with %s; stopping", web.returncode)
                break
            if sidecar.poll() is not None:
                if time.monotonic() - sidecar_started > STABLE_AFTER:
                    delay = RESTART_DELAY
                log.warning(
                    "media sidecar exited with %s; restarting in %.1f s", sidecar.returncode, delay
                )
                time.sleep(delay)
                delay = min(delay * 2, MAX_RESTART_DELAY)  # back off from a crash loop
                sidecar = subprocess.Popen(sidecar_command(), cwd=ROOT, env=env)
                sidecar_started = time.monotonic()
            time.sleep(0.2)
    finally:
        for process in (web, sidecar):
            if process.poll() is None:
                process.terminate()
        for process in (web, sidecar):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
