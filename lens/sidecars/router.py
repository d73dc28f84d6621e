"""The web process's media client when several sidecars serve a site.

Every call names a Lens session; the router sends it to the sidecar the session is pinned
to (`lens_session.media_sidecar`), so that the phone's leg and the technician's leg meet on
one sidecar whichever web process carries their signaling. A leg's offer pins a session
that has no live sidecar to the least-loaded live one: the first time, or after its
sidecar died (heartbeat expired, or it refused a connection) — then the session's log says
that the media moved, and the pages' re-offers land on the new one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import requests
from flask import current_app
from sqlalchemy import insert, select, update

from lens.events.bus import BusUnavailable
from lens.events.publishing import session_topic, technician_topic
from lens.extensions import db
from lens.sessions.models import LensSession, SessionEvent
from lens.sidecars.registry import SidecarInfo
from lens.signaling.control import MediaControl, MediaUnavailable
from lens.timeutil import now_utc

log = logging.getLogger(__name__)
T = TypeVar("T")

MEDIA_MOVED = "media_moved"
OFFER_WAIT_SECONDS = 8.0  # well inside the pages' 20 s wait for an answer (webrtc.js)
OFFER_RETRY_SECONDS = 0.2


class NoSidecar(MediaUnavailable):
    """No live sidecar to place the session on."""


def _no_sidecar(exc: MediaUnavailable) -> bool:
    """Nothing listens (refused, or none registered): one may come up in a moment."""
    return isinstance(exc, NoSidecar) or isinstance(exc.__cause__, requests.ConnectionError)


class MediaRouter:
    """MediaControl's calls, each to the sidecar of its session."""

    def __init__(
        self,
        registry: Any,
        secret: str,
        timeout: float = 10.0,
        offer_wait: float = OFFER_WAIT_SECONDS,
    ) -> None:
        self.registry = registry
        self.offer_wait = offer_wait
        self._secret = secret
        self._timeout = timeout
        self._controls: dict[str, MediaControl] = {}

    # ----- which sidecar ----------------------------------------------------------------

    def live_sidecars(self) -> list[SidecarInfo]:
        return self.registry.live()

    def control(self, url: str) -> MediaControl:
        if url not in self._controls:
            self._controls[url] = MediaControl(url, self._secret, self._timeout)
        return self._controls[url]

    def sidecar_of(self, session_id: int, place: bool = False) -> SidecarInfo:
        """The session's live sidecar; with place, pin it to one if it has none alive."""
        if not self.registry.pins:
            return self.registry.fixed  # one sidecar: its calls say themselves if it is down
        live = {s.id: s for s in self.registry.live()}
        pinned = self._pinned(session_id)
        if pinned in live:
            return live[pinned]
        if not place:
            raise MediaUnavailable(f"the session's media sidecar {pinned or '(none)'} is not alive")
        if not live:
            raise NoSidecar("no media sidecar is alive")
        chosen = min(live.values(), key=lambda s: s.load)
        if not self._pin(session_id, pinned, chosen.id):
            pinned = self._pinned(session_id)  # another process pinned it first: follow
            if pinned in live:
                return live[pinned]
            raise NoSidecar(f"the session's media sidecar {pinned} is not alive")
        if pinned is not None:
            self._log_move(session_id, pinned, chosen.id)
        log.info("session %s pinned to sidecar %s", session_id, chosen.id)
        return chosen

    def _pinned(self, session_id: int) -> str | None:
        with db.engine.connect() as connection:
            return connection.scalar(
                select(LensSession.media_sidecar).where(LensSession.id == session_id)
            )

    def _pin(self, session_id: int, was: str | None, to: str) -> bool:
        """Compare and set, in a transaction of its own: False when another process won."""
        current = (
            LensSession.media_sidecar.is_(None) if was is None else LensSession.media_sidecar == was
        )
        with db.engine.begin() as connection:
            result = connection.execute(
                update(LensSession)
                .where(LensSession.id == session_id, current)
                .values(media_sidecar=to)
            )
        return result.rowcount == 1

    def _log_move(self, session_id: int, dead: str, to: str) -> None:
        """The session log (and so the console) says the media moved, and why."""
        with db.engine.begin() as connection:
            technician_id = connection.scalar(
                select(LensSession.technician_id).where(LensSession.id == session_id)
            )
            connection.execute(
                insert(SessionEvent).values(
                    session_id=session_id, at=now_utc(), kind=MEDIA_MOVED, actor="system",
                    detail=f"{dead}\n{to}", data={"from": dead, "to": to},
                )
            )  # fmt: skip
        bus = current_app.extensions["lens.events"]
        message = {"type": "session", "session_id": session_id, "changed": False, "events": True}
        try:
            bus.publish(session_topic(session_id), message)
            bus.publish(technician_topic(technician_id), message)
        except BusUnavailable:
            log.warning("could not push the media move of session %s", session_id)

    def _call(self, session_id: int, place: bool, call: Callable[[MediaControl], T]) -> T:
        """Call the session's sidecar; one that refuses the connection is dead: forget it
        and, for an offer, place the session on another one."""
        return self._call_on(session_id, place, lambda sidecar: call(self.control(sidecar.url)))

    def _call_on(self, session_id: int, place: bool, call: Callable[[SidecarInfo], T]) -> T:
        for _attempt in range(2):
            sidecar = self.sidecar_of(session_id, place)
            try:
                return call(sidecar)
            except MediaUnavailable as exc:
                if (
                    not isinstance(exc.__cause__, requests.ConnectionError)
                    or not self.registry.pins
                ):
                    raise
                log.warning("sidecar %s refused a connection: forgotten", sidecar.id)
                self.registry.forget(sidecar.id)
                if not place:
                    raise
        raise NoSidecar("no media sidecar took the offer")

    def _offer(self, session_id: int, send: Callable[[MediaControl], dict[str, Any]]) -> dict:
        """An offer, answered as soon as a sidecar can take it.

        A page offers again the moment its sidecar is gone (lens/sidecars/legs.py), often
        before a restarted one (or any) listens: rather than fail and leave the page to try
        again seconds later, the offer waits here up to `offer_wait` seconds, trying every
        OFFER_RETRY_SECONDS. The answer names the sidecar and its boot (what legs.py watches).
        """
        deadline = time.monotonic() + self.offer_wait
        while True:
            try:
                return self._call_on(
                    session_id,
                    True,
                    lambda sidecar: {
                        **send(self.control(sidecar.url)),
                        "sidecar": sidecar.id,
                        "sidecar_url": sidecar.url,
                    },
                )
            except MediaUnavailable as exc:
                if not _no_sidecar(exc) or time.monotonic() + OFFER_RETRY_SECONDS > deadline:
                    raise
            time.sleep(OFFER_RETRY_SECONDS)

    # ----- MediaControl's interface -----------------------------------------------------

    def publisher_offer(
        self,
        session_id: int,
        offer: dict[str, str],
        features: Iterable[str],
        ice_servers: list[dict[str, Any]] | None = None,
    ) -> dict[str, str]:
        features = list(features)
        return self._offer(
            session_id, lambda m: m.publisher_offer(session_id, offer, features, ice_servers)
        )

    def subscriber_offer(
        self,
        session_id: int,
        offer: dict[str, str],
        ice_servers: list[dict[str, Any]] | None = None,
    ) -> dict[str, str]:
        return self._offer(session_id, lambda m: m.subscriber_offer(session_id, offer, ice_servers))

    def hold(self, session_id: int) -> None:
        self._call(session_id, False, lambda m: m.hold(session_id))

    def resume(self, session_id: int) -> None:
        self._call(session_id, False, lambda m: m.resume(session_id))

    def close(self, session_id: int) -> None:
        self._call(session_id, False, lambda m: m.close(session_id))

    def state(self, session_id: int) -> dict[str, Any]:
        return self._call(session_id, False, lambda m: m.state(session_id))

    def snapshot(self, session_id: int) -> tuple[bytes, int, int]:
        return self._call(session_id, False, lambda m: m.snapshot(session_id))

    def recording(self, session_id: int, action: str, path: str | None = None) -> dict[str, Any]:
        return self._call(session_id, False, lambda m: m.recording(session_id, action, path))
