"""`python -m lens.media` runs on uvloop, or on asyncio's loop when told, and says which."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.media


def healthz_of_a_sidecar(tmp_path, **settings: str) -> dict:
    with socket.socket() as probe:  # a free port for its control API
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {name: value for name, value in os.environ.items() if name != "LENS_MEDIA_LOOP"}
    env |= {
        "LENS_INSTANCE_PATH": str(tmp_path),
        "LENS_MEDIA_PORT": str(port),
        "LENS_MEDIA_SECRET": "test-secret",
        **settings,
    }
    sidecar = subprocess.Popen([sys.executable, "-m", "lens.media"], env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return json.load(r)
            except OSError:
                if time.monotonic() > deadline or sidecar.poll() is not None:
                    raise
                time.sleep(0.1)  # the process is starting: nothing to await across it
    finally:
        sidecar.terminate()
        sidecar.wait(10)


def test_the_sidecar_runs_on_uvloop_by_default(tmp_path):
    assert healthz_of_a_sidecar(tmp_path)["event_loop"] == "uvloop"


def test_lens_media_loop_asyncio_runs_it_on_asyncios_loop(tmp_path):
    assert healthz_of_a_sidecar(tmp_path, LENS_MEDIA_LOOP="asyncio")["event_loop"] == "asyncio"


def test_the_sidecar_says_whether_it_runs_the_native_steps(tmp_path):
    """bin/setup builds them: a sidecar started from this checkout uses them, and
    LENS_MEDIA_NATIVE=0 switches them off (its /healthz tells an operator which)."""
    assert healthz_of_a_sidecar(tmp_path)["native"] is True
    assert healthz_of_a_sidecar(tmp_path, LENS_MEDIA_NATIVE="0")["native"] is False
