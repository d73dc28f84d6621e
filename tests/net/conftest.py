"""Fixtures: a namespace lab (skipped with the reason where namespaces cannot be made),
the real sidecar started inside the server namespace."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.net import netlab

SIDECAR_PORT = 8765  # inside the server namespace: its own port space


@pytest.fixture(scope="session")
def namespaces_available() -> None:
    reason = netlab.cannot_build_reason()
    if reason:
        pytest.skip(f"no network namespaces here: {reason}")


@pytest.fixture
def lab(namespaces_available, tmp_path) -> Iterator[netlab.Lab]:
    with netlab.lab(tmp_path) as built:
        built.star()
        yield built


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for a condition that has no event (a port opening in another namespace)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class SidecarInLab:
    def __init__(self, lab: netlab.Lab, env: dict[str, str], address: str) -> None:
        self.secret = secrets.token_urlsafe(16)
        self.url = f"http://{address}:{SIDECAR_PORT}"
        self.process = lab.start(
            "s",
            "sidecar",
            [sys.executable, "-m", "lens.media"],
            {
                "LENS_MEDIA_SECRET": self.secret,
                "LENS_MEDIA_HOST": netlab.SERVER,
                "LENS_MEDIA_PORT": str(SIDECAR_PORT),
                "LENS_INSTANCE_PATH": str(lab.workdir / "instance"),
                **env,
            },
        )

    @property
    def pid(self) -> int:
        return self.process.popen.pid


@pytest.fixture
def start_sidecar(lab) -> Callable[..., SidecarInLab]:
    """Start the real sidecar (python -m lens.media) in S with extra settings."""

    def start(env: dict[str, str] | None = None, address: str = netlab.SERVER) -> SidecarInLab:
        return SidecarInLab(lab, env or {}, address)

    return start
