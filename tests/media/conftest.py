"""Fixtures: the sidecar app on a free loopback port, in-process, and pre-encoded clips."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from lens.media import MediaConfig, make_app
from lens.media.config import event_loop_factory, event_loop_setting
from lens.media.testing import (
    EncodedClip,
    encode_h264_clip,
    encode_opus_clip,
    encode_vp8_clip,
)

SECRET = "test-media-secret"
T = TypeVar("T")


@dataclass
class Sidecar:
    """A running sidecar and an HTTP client for it."""

    app: web.Application
    base_url: str
    secret: str
    http: aiohttp.ClientSession

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """Make an authorised control call; return (status, JSON body)."""
        async with self.http.request(
            method, self.base_url + path, headers=self.auth, **kwargs
        ) as resp:
            return resp.status, await resp.json()


@asynccontextmanager
async def running_sidecar() -> AsyncIterator[Sidecar]:
    """Start make_app() on 127.0.0.1 with an OS-chosen port; shut it down afterwards."""
    app = make_app(MediaConfig(secret=SECRET))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as http:
            yield Sidecar(app, f"http://127.0.0.1:{port}", SECRET, http)
    finally:
        await runner.cleanup()


@pytest.fixture(scope="session")
def vp8_clip() -> EncodedClip:
    """Two seconds of 640x480@30 VP8, encoded once for the whole run."""
    return encode_vp8_clip(seconds=2.0, keyframe_every=60)


@pytest.fixture(scope="session")
def h264_clip() -> EncodedClip:
    """One second of 640x480@30 constrained-baseline H.264."""
    return encode_h264_clip(seconds=1.0)


@pytest.fixture(scope="session")
def opus_clip() -> EncodedClip:
    return encode_opus_clip(seconds=1.0)


@pytest.fixture
def with_sidecar() -> Callable[[Callable[[Sidecar], Awaitable[T]], float], T]:
    """Run `scenario(sidecar)` on a fresh event loop with an overall time limit: the loop
    the sidecar runs on (uvloop; LENS_MEDIA_LOOP=asyncio: asyncio's)."""
    loop_factory = event_loop_factory(event_loop_setting(os.environ))

    def run(scenario: Callable[[Sidecar], Awaitable[T]], timeout: float = 30.0) -> T:
        async def main() -> T:
            async with asyncio.timeout(timeout), running_sidecar() as sidecar:
                return await scenario(sidecar)

        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main())

    return run
