"""Carry a browser's SDP offers to the sidecar over the page's socket, answers back.

Non-trickle: the browser sends its offer once ICE gathering is complete, the sidecar answers
with its own candidates inside (the shape of WHIP/WHEP, one exchange). JSON messages on the
page's one socket (lens.sockets), matched by the page's `ref`:
  browser → web  {"type": "offer", "ref": 3, "sdp": "...", "session": 12 (consoles)}
  web → browser  {"type": "answer", "ref": 3, "sdp": "..."}
  web → browser  {"type": "error", "ref": 3, "reason": "unavailable" | "refused" | "bad_message"
                  | "busy"}
An offer waits in the web process while no sidecar can take it (lens.sidecars.router), so a
page may have only OFFERS_IN_FLIGHT offers waiting at once ("busy" beyond that).
The offer's shape is checked with every other page message (lens.sockets.messages.Offer);
an offer the sidecar cannot parse is answered bad_message too, with one log line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import current_app

from lens.captures import records as capture_records
from lens.database import DatabaseBusy, retrying
from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.models import LensSession, SessionState
from lens.signaling.control import MediaControl, MediaRefused, MediaRejected, MediaUnavailable
from lens.sockets.messages import Offer
from lens.timeutil import now_utc

log = logging.getLogger(__name__)

OFFERS_IN_FLIGHT = 3  # a page re-offering at once may leave one superseded offer waiting


def offer_slots() -> threading.BoundedSemaphore:
    """A page's allowance of offers waiting for an answer."""
    return threading.BoundedSemaphore(OFFERS_IN_FLIGHT)


def busy(message: Offer) -> dict[str, Any]:
    """The reply to an offer beyond the page's allowance."""
    return {"type": "error", "ref": message.ref, "reason": "busy"}


Answerer = Callable[[dict[str, str]], dict[str, str]]


def media_control() -> MediaControl:
    """The app's sidecar client."""
    return current_app.extensions["lens.media"]


MEDIA_STATES = frozenset({SessionState.WAITING, SessionState.ACTIVE, SessionState.ON_HOLD})


def log_media(session_id: int, kind: str, actor: str) -> None:
    """Write a media event to a live session's log (not once the session has ended)."""

    def write() -> None:
        db.session.rollback()  # read the session as it is now
        lens_session = db.session.get(LensSession, session_id)
        if lens_session is not None and lens_session.state in MEDIA_STATES:
            lifecycle.record_event(db.session, lens_session, kind, actor=actor, now=now_utc())
            db.session.commit()

    try:
        retrying(db.session, write, current_app.config["LENS_DB_BUSY_SECONDS"])
    except DatabaseBusy:  # a log line is not worth failing the media for
        log.warning("could not log %s for session %s: database busy", kind, session_id)


class MediaNotes:
    """What one page's offers leave in their sessions' logs: its media connected (once a
    page), and the media server not answering (once until it answers again: a page
    re-offers every few seconds while it waits, and one line says it)."""

    def __init__(self) -> None:
        self.connected: set[int] = set()  # sessions whose media this page negotiated
        self._unanswered: set[int] = set()
        self._lock = threading.Lock()  # the page's offers are answered in threads

    def replied(self, session_id: int, actor: str, reply: dict[str, Any]) -> None:
        """Log what `reply` (exchange_offer's) means for the session, if it is news."""
        with self._lock:
            if reply["type"] == "answer":
                self._unanswered.discard(session_id)
                kind = None if session_id in self.connected else "media_connected"
                self.connected.add(session_id)
            elif reply.get("reason") == "unavailable" and session_id not in self._unanswered:
                self._unanswered.add(session_id)
                kind = "media_unavailable"
            else:
                kind = None
        if kind is not None:
            log_media(session_id, kind, actor)


def exchange_offer(message: Offer, answer: Answerer) -> dict[str, Any]:
    """The reply to a page's (checked) offer: the sidecar's answer, or why there is none."""
    ref = message.ref
    try:
        reply = answer({"type": "offer", "sdp": message.sdp})
    except MediaUnavailable as exc:
        log.warning("media sidecar unavailable: %s", exc)
        return {"type": "error", "ref": ref, "reason": "unavailable"}
    except MediaRejected as exc:  # an SDP the sidecar cannot use: the page's fault
        log.info("bad_message: the sidecar refused an offer: %s", exc)
        return {"type": "error", "ref": ref, "reason": "bad_message"}
    except MediaRefused as exc:
        return {"type": "error", "ref": ref, "reason": "refused", "message": str(exc)}
    return {"type": "answer", "ref": ref, "sdp": reply["sdp"]}


def stop_media(session_id: int) -> None:
    """Tear the session's media down; a sidecar that is down has nothing to tear down.

    A recording still being written is finished first, so its row gets its duration.
    """
    finish_open_recording(session_id)
    try:
        media_control().close(session_id)
    except (MediaUnavailable, MediaRefused) as exc:
        log.warning("could not close media of session %s: %s", session_id, exc)


def finish_open_recording(session_id: int) -> None:
    """Stop the session's running recording, if any, and close its row."""
    recording = capture_records.open_recording(db.session, session_id)
    if recording is None:
        return
    try:
        # "finish": the session's media ends, so even a forced recording stops
        result = media_control().recording(session_id, "finish")
    except (MediaUnavailable, MediaRefused) as exc:
        log.warning("could not stop the recording of session %s: %s", session_id, exc)
        result = None
    capture_records.finish_recording(db.session, recording, result, actor="system", now=now_utc())
    db.session.commit()
