"""The run command: web over HTTPS and the sidecar, which is restarted when it dies."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
# the run command's certificate is self-signed by design
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def sidecar_pids(parent: int) -> dict[int, bool]:
    """The run command's sidecar processes: pid -> whether it was started as the spare."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"lens.media" in cmdline:
            found[int(entry.name)] = b"LENS_MEDIA_STANDBY=1" in environ
    return found


def sidecar_pid(parent: int) -> int | None:
    """The sidecar first started (not the spare)."""
    return next((pid for pid, spare in sidecar_pids(parent).items() if not spare), None)


@pytest.fixture
def running(tmp_path):
    web_port, media_port = free_port(), free_port()
    env = dict(
        os.environ,
        LENS_INSTANCE_PATH=str(tmp_path / "instance"),
        LENS_HOST="127.0.0.1",
        LENS_PORT=str(web_port),
        LENS_MEDIA_PORT=str(media_port),
        LENS_WEB_THREADS="8",
    )
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    log = open(tmp_path / "run.log", "w+")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "lens.run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    yield process, web_port, media_port, tmp_path
    if process.poll() is None:  # a failed test: its children too, not left behind orphaned
        from tests.webserver import _children_of

        children = _children_of(process.pid)
        process.kill()
        process.wait(timeout=10)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    log.close()


def test_run_serves_https_and_restarts_the_sidecar(running):
    process, web_port, media_port, tmp_path = running
    web = f"https://127.0.0.1:{web_port}"
    media = f"http://127.0.0.1:{media_port}"
    wait_until(lambda: requests.get(web + "/healthz", verify=False, timeout=2).ok, 60, "web")
    wait_until(lambda: requests.get(media + "/healthz", timeout=2).ok, 60, "sidecar")
    assert (tmp_path / "instance" / "tls-cert.pem").exists()
    output = (tmp_path / "run.log").read_text()
    assert "One-time password:" in output

    first = wait_until(lambda: sidecar_pid(process.pid), 10, "sidecar pid")
    # a spare sidecar is loaded beside it, waiting to take over
    spare = wait_until(
        lambda: next((p for p, s in sidecar_pids(process.pid).items() if s), None), 30, "spare"
    )
    boot = requests.get(media + "/healthz", timeout=2).json()["boot"]
    killed = time.monotonic()
    os.kill(first, signal.SIGKILL)
    wait_until(
        lambda: requests.get(media + "/healthz", timeout=2).json()["boot"] != boot,
        30,
        "restarted sidecar",
    )
    print(f"sidecar answering again {time.monotonic() - killed:.2f} s after the kill "
          f"(load {os.getloadavg()[0]:.1f})")  # fmt: skip
    # the first death is restarted at once (a crash loop only backs off from the second),
    # by the spare, and a new spare follows
    output = (tmp_path / "run.log").read_text()
    assert "restarting in 0.0 s" in output and "the spare media sidecar took over" in output
    assert spare in sidecar_pids(process.pid)
    wait_until(lambda: len(sidecar_pids(process.pid)) == 2, 30, "a new spare")

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert sidecar_pid(process.pid) is None


def test_run_media_stops_when_the_sidecar_refuses_its_settings(tmp_path):
    """`lens.run media` (the systemd unit) restarts a sidecar that dies, but one that
    refuses its settings stops it with the sidecar's own code: systemd shows the failure."""
    env = dict(
        os.environ,
        LENS_INSTANCE_PATH=str(tmp_path / "instance"),
        LENS_MEDIA_PORT=str(free_port()),
        LENS_ICE_SERVERS="{not json",
    )
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "lens.run", "media"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "refuses its settings" in done.stderr


def test_a_spare_told_to_serve_before_it_has_loaded_serves_once_loaded(tmp_path, monkeypatch):
    """The sidecar dies while the spare is still importing: the spare takes over anyway
    (its "ready" then goes nowhere) and serves."""
    from lens import run

    monkeypatch.setattr(run, "SPARE_AFTER", 0.0)
    port = free_port()
    env = dict(os.environ, LENS_INSTANCE_PATH=str(tmp_path / "instance"), LENS_MEDIA_PORT=str(port))
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    log = open(tmp_path / "sidecars.log", "w+")  # noqa: SIM115 - closed below
    supervisor = run.SidecarSupervisor([sys.executable, "-m", "lens.media"], env, log)
    try:
        supervisor.start()
        time.sleep(0.01)  # SPARE_AFTER is 0: the next check starts the spare
        supervisor.check()
        spare = supervisor.spare
        assert spare is not None and not supervisor.spare_ready
        supervisor.process.kill()
        supervisor.process.wait(timeout=10)
        supervisor.check()  # the spare, still loading, is told to serve
        assert supervisor.process is spare and supervisor.promoted == 1
        url = f"http://127.0.0.1:{port}/healthz"
        wait_until(lambda: requests.get(url, timeout=2).ok, 60, "the promoted spare")
        assert spare.poll() is None
    finally:
        supervisor.stop()
        log.close()
