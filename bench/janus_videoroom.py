"""Janus (Debian package) as the reference C relay: a private config and a VideoRoom client.

Janus runs from its own config folder (`janus -F DIR`) with only the HTTP transport on
127.0.0.1 and only the VideoRoom plugin. A phone publishes into one room per session; the
technician subscribes to that feed (Janus makes the offer, the technician answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from pathlib import Path
from typing import Any

import aiohttp

LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
KEEP_PLUGINS = {"libjanus_videoroom.so"}
KEEP_TRANSPORTS = {"libjanus_http.so"}


def _others(folder: Path, keep: set[str]) -> str:
    names = sorted({p.name for p in folder.glob("*.so")} - keep)
    return ",".join(names)


def write_config(folder: Path, port: int) -> None:
    """Write a minimal Janus configuration into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{LIB / "plugins"}"
    transports_folder = "{LIB / "transports"}"
    events_folder = "{LIB / "events"}"
    loggers_folder = "{LIB / "loggers"}"
    debug_level = 2
}}
media: {{
}}
nat: {{
    nice_debug = false
}}
plugins: {{
    disable = "{_others(LIB / "plugins", KEEP_PLUGINS)}"
}}
transports: {{
    disable = "{_others(LIB / "transports", KEEP_TRANSPORTS)}"
}}
events: {{
    broadcast = false
}}
loggers: {{
}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    base_path = "/janus"
    http = true
    port = {port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
}}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")


class JanusSession:
    """One Janus API session with a long-poll loop that hands events to waiting requests."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base_url = base_url
        self.session_id: int | None = None
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.base_url + path, json=body) as resp:
            return await resp.json(content_type=None)

    def _transaction(self) -> str:
        return f"t{next(self._ids)}-{secrets.token_hex(4)}"

    async def start(self) -> None:
        reply = await self._post("", {"janus": "create", "transaction": self._transaction()})
        self.session_id = reply["data"]["id"]
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        url = f"{self.base_url}/{self.session_id}?maxev=20"
        while True:
            async with self.http.get(url) as resp:
                events = await resp.json(content_type=None)
            for event in events if isinstance(events, list) else [events]:
                waiter = self._waiters.get(event.get("transaction", ""))
                if waiter is not None and event.get("janus") == "event" and not waiter.done():
                    waiter.set_result(event)

    async def attach(self) -> int:
        reply = await self._post(
            f"/{self.session_id}",
            {
                "janus": "attach",
                "plugin": "janus.plugin.videoroom",
                "transaction": self._transaction(),
            },
        )
        return reply["data"]["id"]

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send a plugin message; return its synchronous reply or its asynchronous event."""
        transaction = self._transaction()
        request: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            request["jsep"] = jsep
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[transaction] = waiter
        try:
            reply = await self._post(f"/{self.session_id}/{handle}", request)
            if reply.get("janus") == "ack":
                reply = await asyncio.wait_for(waiter, 20)
            if reply.get("janus") == "error":
                raise RuntimeError(f"janus: {reply}")
            data = reply.get("plugindata", {}).get("data", {})
            if "error" in data:
                raise RuntimeError(f"janus videoroom: {data}")
            return reply
        finally:
            self._waiters.pop(transaction, None)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self.session_id is not None:
            with contextlib.suppress(aiohttp.ClientError):
                await self._post(
                    f"/{self.session_id}", {"janus": "destroy", "transaction": self._transaction()}
                )
