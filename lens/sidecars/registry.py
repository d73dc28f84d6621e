"""Which media sidecars are alive: one at LENS_MEDIA_URL, or those heartbeating in Redis."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

CACHE_SECONDS = 1.0  # a web process re-reads the registry at most this often


@dataclass(frozen=True)
class SidecarInfo:
    """A live sidecar as its last heartbeat (or /healthz) described it."""

    id: str
    url: str
    boot: str
    capacity: int = 20
    sessions: int = 0
    recordings: int = 0
    cpu: float = 0.0

    @property
    def load(self) -> tuple[float, float]:
        """Least loaded first: sessions per capacity, then CPU."""
        return (self.sessions / max(self.capacity, 1), self.cpu)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SidecarInfo:
        return cls(
            id=str(data["id"]),
            url=str(data["url"]),
            boot=str(data.get("boot", "")),
            capacity=int(data.get("capacity") or 20),
            sessions=int(data.get("sessions") or 0),
            recordings=int(data.get("recordings") or 0),
            cpu=float(data.get("cpu") or 0.0),
        )


class StaticRegistry:
    """One host's single sidecar at a fixed URL: alive while its /healthz answers."""

    pins = False  # nothing to choose between: sessions are not pinned

    def __init__(self, url: str, timeout: float = 0.5) -> None:
        self.url = url.rstrip("/")
        self.fixed = SidecarInfo(id="default", url=self.url, boot="")
        self._timeout = timeout
        self._http = requests.Session()

    def live(self) -> list[SidecarInfo]:
        try:
            response = self._http.get(self.url + "/healthz", timeout=self._timeout)
            data = response.json() if response.ok else None
        except (requests.RequestException, ValueError):
            data = None
        if not isinstance(data, dict):
            return []
        return [SidecarInfo.from_json({**data, "id": data.get("id") or "default", "url": self.url})]

    def forget(self, sidecar_id: str) -> None:
        """Nothing to forget: the one sidecar is restarted by the run command."""


class RedisRegistry:
    """The sidecars whose heartbeat in Redis has not expired (lens/media/heartbeat.py)."""

    pins = True

    def __init__(self, url: str, prefix: str = "lens:") -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self._pattern = f"{prefix}sidecar:*"
        self._prefix = prefix
        self._lock = threading.Lock()
        self._cached: tuple[float, list[SidecarInfo]] | None = None

    def live(self) -> list[SidecarInfo]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < CACHE_SECONDS:
                return self._cached[1]
        keys = list(self._client.scan_iter(match=self._pattern, count=100))
        values = self._client.mget(keys) if keys else []
        sidecars = []
        for raw in values:
            if raw is None:
                continue  # expired between SCAN and MGET
            try:
                sidecars.append(SidecarInfo.from_json(json.loads(raw)))
            except (ValueError, KeyError, TypeError):
                continue
        with self._lock:
            self._cached = (time.monotonic(), sidecars)
        return sidecars

    def forget(self, sidecar_id: str) -> None:
        """A sidecar that refused a connection is gone: drop it now, for every process."""
        self._client.delete(f"{self._prefix}sidecar:{sidecar_id}")
        with self._lock:
            self._cached = None
