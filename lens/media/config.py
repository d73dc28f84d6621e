"""The sidecar's settings, read from the environment in one place."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lens.media.ice import NetworkSettings, load_network_settings


@dataclass(frozen=True)
class MediaConfig:
    """Where the sidecar listens, the control API secret, the ICE servers, the recordings."""

    secret: str
    host: str = "127.0.0.1"
    port: int = 8765
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    # recordings may only be written inside this folder
    recordings_path: Path = Path("instance") / "recordings"
    # port range, announced address, interfaces, TURN secret (lens.media.ice); None: the
    # defaults, with `ice_servers`
    network: NetworkSettings | None = None
    # Several sidecars (lens/media/heartbeat.py): with a Redis URL the sidecar registers
    # itself there and heartbeats; the web processes pin each session to one of them.
    redis_url: str = ""
    registry_prefix: str = "lens:"
    sidecar_id: str = ""
    advertise_url: str = ""  # the control URL as the web processes reach it
    capacity: int = 20  # sessions this sidecar is meant to carry
    # LENS_STORAGE=s3: a finished recording is uploaded there (lens/storage.py)
    storage: dict[str, str] = field(default_factory=dict)
    # the event loop the sidecar runs on: uvloop (libuv, in C: less CPU per socket wakeup
    # and timer) or asyncio's own (comparison runs)
    event_loop: str = "uvloop"
    # gc.freeze() after start-up: full collections skip what importing made (README "Pauses");
    # LENS_MEDIA_GC_FREEZE=0 turns it off (comparison runs)
    gc_freeze: bool = True


def load_config(environ: Mapping[str, str] | None = None) -> MediaConfig:
    """Build the config from LENS_MEDIA_* / LENS_ICE_SERVERS / LENS_TURN_* /
    LENS_INSTANCE_PATH / LENS_RECORDINGS_PATH; a ValueError names a bad setting."""
    env = os.environ if environ is None else environ
    database = env.get("DATABASE_URL", "")
    if database and not database.startswith("sqlite") and not env.get("LENS_MEDIA_SECRET"):
        # several hosts: every web host calls this sidecar with the one shared secret
        raise ValueError(
            "DATABASE_URL names a database server, so this may be one of several hosts: set "
            "LENS_MEDIA_SECRET to the same value on every host (docs/scale-out.md)"
        )
    instance = Path(env.get("LENS_INSTANCE_PATH") or "instance")
    secret = env.get("LENS_MEDIA_SECRET") or read_or_create_secret(instance / "media-secret")
    ice_servers = json.loads(env.get("LENS_ICE_SERVERS") or "[]")
    if not isinstance(ice_servers, list) or not all(isinstance(s, dict) for s in ice_servers):
        raise ValueError("LENS_ICE_SERVERS must be a JSON list of RTCIceServer objects")
    return MediaConfig(
        secret=secret,
        host=env.get("LENS_MEDIA_HOST") or "127.0.0.1",
        port=int(env.get("LENS_MEDIA_PORT") or 8765),
        ice_servers=ice_servers,
        recordings_path=Path(
            env.get("LENS_RECORDINGS_PATH")
            or Path(env.get("LENS_STORAGE_PATH") or instance) / "recordings"
        ),
        network=load_network_settings(env, ice_servers),
        storage=dict(
            (k, env[k])
            for k in ("LENS_STORAGE", "LENS_S3_BUCKET", "LENS_S3_ENDPOINT_URL", "LENS_S3_REGION")
            if env.get(k)
        ),  # fmt: skip
        redis_url=env.get("REDIS_URL", ""),
        registry_prefix=env.get("LENS_REDIS_PREFIX") or "lens:",
        sidecar_id=env.get("LENS_MEDIA_ID", ""),
        advertise_url=env.get("LENS_MEDIA_ADVERTISE_URL", ""),
        capacity=_positive(env, "LENS_MEDIA_CAPACITY", 20),
        event_loop=event_loop_setting(env),
        gc_freeze=env.get("LENS_MEDIA_GC_FREEZE", "1") != "0",
    )


EVENT_LOOPS = ("uvloop", "asyncio")


def event_loop_setting(env: Mapping[str, str]) -> str:
    """LENS_MEDIA_LOOP: uvloop (the default) or asyncio."""
    name = env.get("LENS_MEDIA_LOOP") or "uvloop"
    if name not in EVENT_LOOPS:
        raise ValueError(f"LENS_MEDIA_LOOP must be uvloop or asyncio, got {name!r}")
    return name


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the event loop called `name` (MediaConfig.event_loop)."""
    if name == "uvloop":
        import uvloop  # only the sidecar needs it loaded

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from exc
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def read_or_create_secret(path: Path) -> str:
    """The shared secret in `path`, made (32 random bytes, mode 0600) if missing."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return secret
