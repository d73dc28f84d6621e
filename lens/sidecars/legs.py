"""This process's media legs, and telling their pages at once when the sidecar under a leg
is gone.

A page's leg (the phone's, or a technician's) runs on one sidecar process. When that process
dies, the browser notices only when its ICE gives up (Chrome: several seconds), and then
retries on its own timer. Instead, every web process watches the sidecars under its own
pages' legs — every POLL_SECONDS, and only while it has legs — and tells those pages to
offer again now (`{"type": "media_reconnect"}` on the page's socket, static/js/webrtc.js).
A leg's sidecar is gone when it refuses connections, answers with another boot (restarted:
the new process has none of the old one's legs), or has dropped out of the registry. The
new offer waits in the web process until a sidecar can take it (MediaRouter), so the media
comes back as soon as one listens: the restarted one, or with several, another live one.

Each process tells only its own pages, each leg once: nothing crosses the bus.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
PROBE_TIMEOUT = 1.0


@dataclass(eq=False)
class Leg:
    """One page's leg: where it runs, and how to tell the page to offer again."""

    session_id: int
    sidecar: str
    url: str
    boot: str  # the sidecar process that answered the offer ("" when it did not say)
    tell: Callable[[], None]


class LegWatch:
    """The legs of this process's pages, and a thread watching the sidecars under them."""

    def __init__(
        self, registry: Callable[[], Any] = lambda: None, poll: float = POLL_SECONDS
    ) -> None:
        self.registry = registry  # the media client's registry now (RedisRegistry pins)
        self.poll = poll
        self._legs: set[Leg] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._http = requests.Session()

    def add(
        self, session_id: int, answer: Mapping[str, Any], tell: Callable[[], None]
    ) -> Leg | None:
        """Watch the leg a sidecar's answer opened; None when the answer does not say where
        it runs (a media client without sidecars, in tests)."""
        url = answer.get("sidecar_url")
        if not isinstance(url, str) or not url:
            return None
        sidecar, boot = str(answer.get("sidecar", "")), str(answer.get("boot", ""))
        leg = Leg(session_id, sidecar, url, boot, tell)
        with self._lock:
            self._legs.add(leg)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lens-legs", daemon=True)
                self._thread.start()
        return leg

    def remove(self, leg: Leg | None) -> None:
        if leg is not None:
            with self._lock:
                self._legs.discard(leg)

    def __len__(self) -> int:
        return len(self._legs)

    def _run(self) -> None:
        while True:
            time.sleep(self.poll)
            try:
                self.check()
            except Exception:  # a bad round must not end the watch
                log.exception("media leg watch failed")

    def check(self) -> list[Leg]:
        """One round: tell the pages whose leg's sidecar is gone; return those legs."""
        with self._lock:
            legs = list(self._legs)
        if not legs:
            return []
        gone: list[Leg] = []
        live_ids = self._registered()
        by_url: dict[str, list[Leg]] = {}
        for leg in legs:
            if live_ids is not None and leg.sidecar not in live_ids:
                gone.append(leg)  # its heartbeat expired, or a web process forgot it
            else:
                by_url.setdefault(leg.url, []).append(leg)
        for url, on_it in by_url.items():
            boot = self._probe(url)
            if boot is None:
                continue  # slow, not refused: no verdict (the heartbeat decides)
            gone += [leg for leg in on_it if boot == "" or (leg.boot and leg.boot != boot)]
        with self._lock:
            told = [leg for leg in gone if leg in self._legs]
            self._legs.difference_update(told)
        for leg in told:
            log.info("media of session %s: sidecar %s gone, page told to reconnect",
                     leg.session_id, leg.sidecar or leg.url)  # fmt: skip
            try:
                leg.tell()
            except Exception:  # a page whose socket just closed
                log.debug("could not tell a page to reconnect", exc_info=True)
        return told

    def _registered(self) -> set[str] | None:
        """The registered sidecars' ids, or None without a registry that pins (or Redis)."""
        registry = self.registry()
        if registry is None or not getattr(registry, "pins", False):
            return None
        try:
            return {s.id for s in registry.live()}
        except Exception as exc:  # Redis down: no verdict from the registry this round
            log.warning("media leg watch: no sidecar registry: %s", exc)
            return None

    def _probe(self, url: str) -> str | None:
        """The boot of the process answering at url; "" when nothing listens; None when it
        did not answer in time."""
        try:
            answer = self._http.get(url.rstrip("/") + "/healthz", timeout=PROBE_TIMEOUT)
            return str(answer.json().get("boot", "")) or None
        except requests.ConnectTimeout:
            return None  # unreachable for now, perhaps only busy
        except requests.ConnectionError:
            return ""
        except (requests.RequestException, ValueError, AttributeError):
            return None
