"""Idle page sockets against a fresh GET /healthz, for each gunicorn worker model.

    .venv/bin/python bench/idle_sockets.py                  # gevent and gthread, up to 500

Opens console sockets (logged in, then idle) in steps and times a fresh /healthz after
each step; a model that holds a thread per socket stops answering when its threads run out.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.webserver import WebServer  # noqa: E402
from tests.webtier.conftest import Visitor  # noqa: E402
from tests.webtier.rawsocket import open_socket  # noqa: E402


def measure(worker: str, steps: list[int]) -> None:
    server = WebServer(
        Path(tempfile.mkdtemp(prefix="lens-idle-")),
        LENS_WEB_WORKER_CLASS=worker,
        LENS_SOCKETS_PER_ADDRESS="100000",
        LENS_SOCKETS_PER_OWNER="100000",
    )
    server.prepare()
    server.add_technician("Tess", "tess@example.com")
    server.start()
    held = []
    try:
        tech = Visitor(server).log_in()
        for target in steps:
            while len(held) < target:
                held.append(open_socket(server.host, "/console/ws", tech.cookie))
            began = time.monotonic()
            try:
                answer = str(requests.get(server.base + "/healthz", timeout=5).status_code)
            except requests.RequestException as exc:
                answer = type(exc).__name__
            took = time.monotonic() - began
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            print(f"{worker}: {target} idle sockets -> /healthz {answer} in {took:.3f} s "
                  f"(load {load})", flush=True)  # fmt: skip
            if answer != "200":
                break
    finally:
        for sock in held:
            sock.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", nargs="+", default=["gevent", "gthread"])
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 63, 64, 100, 200, 500])
    args = parser.parse_args()
    for worker in args.workers:
        measure(worker, args.steps)


if __name__ == "__main__":
    main()
