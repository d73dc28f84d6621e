"""Registration: a sidecar puts itself in Redis and heartbeats, so web processes can pin
sessions to the least-loaded live one (lens/sidecars/). Without Redis there is one
sidecar at LENS_MEDIA_URL and nothing to register.

The record is one JSON value under `<prefix>sidecar:<id>` that expires DEAD_AFTER seconds
after the last beat: a sidecar that stops beating (killed, hung, cut off) drops out of the
registry by itself. A clean shutdown deletes it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from lens.media.config import MediaConfig

logger = logging.getLogger(__name__)

BEAT_SECONDS = 2.0
DEAD_AFTER = 10  # seconds without a beat: the sidecar is dead

BOOT = web.AppKey("boot", str)


def registry_key(prefix: str, sidecar_id: str) -> str:
    return f"{prefix}sidecar:{sidecar_id}"


class CpuMeter:
    """This process's CPU use since the last reading, in % of one core."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def read(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        used = (cpu - self._cpu) / max(wall - self._wall, 1e-6) * 100
        self._wall, self._cpu = wall, cpu
        return round(used, 1)


def record(config: MediaConfig, boot: str, sessions: int, recordings: int, cpu: float) -> dict:
    """What a beat says about this sidecar."""
    return {
        "id": config.sidecar_id,
        "url": config.advertise_url or f"http://{config.host}:{config.port}",
        "boot": boot,
        "capacity": config.capacity,
        "sessions": sessions,
        "recordings": recordings,
        "cpu": cpu,
        "at": time.time(),
    }


def heartbeat(config: MediaConfig):
    """An aiohttp cleanup context: beat while the app runs, deregister on shutdown."""

    async def run(app: web.Application) -> AsyncIterator[None]:
        if not config.redis_url:
            yield
            return
        import redis.asyncio as aioredis

        from lens.media.app import SESSIONS

        client: Any = aioredis.Redis.from_url(
            config.redis_url, socket_connect_timeout=2, socket_timeout=2
        )
        key = registry_key(config.registry_prefix, config.sidecar_id)
        meter = CpuMeter()

        async def beat_forever() -> None:
            while True:
                sessions = app[SESSIONS]
                value = record(
                    config, app[BOOT], len(sessions), sessions.recordings(), meter.read()
                )
                try:
                    await client.set(key, json.dumps(value), ex=DEAD_AFTER)
                except Exception as exc:  # Redis down: keep serving, beat again later
                    logger.warning("heartbeat to Redis failed: %s", exc)
                await asyncio.sleep(BEAT_SECONDS)

        task = asyncio.get_running_loop().create_task(beat_forever())
        logger.info("registered as sidecar %s (%s)", config.sidecar_id, key)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await client.delete(key)
        await client.aclose()

    return run


def new_boot() -> str:
    """This process's identity: a restarted sidecar has a new one."""
    return secrets.token_hex(8)
