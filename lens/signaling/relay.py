"""Carry a browser's SDP offers to the sidecar over a WebSocket and send the answers back.

Non-trickle: the browser sends its offer once ICE gathering is complete, the sidecar answers
with its own candidates inside. JSON messages, one per frame:
  browser → web  {"type": "offer", "sdp": "..."}
  web → browser  {"type": "answer", "sdp": "..."}
  web → browser  {"type": "error", "reason": "unavailable" | "refused" | "bad_message"}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import current_app

from lens.captures import records as capture_records
from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.models import LensSession, SessionState
from lens.signaling.control import MediaControl, MediaRefused, MediaUnavailable
from lens.timeutil import now_utc

log = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024
Answerer = Callable[[dict[str, str]], dict[str, str]]


def media_control() -> MediaControl:
    """The app's sidecar client."""
    return current_app.extensions["lens.media"]


def parse_offer(raw: Any) -> dict[str, str] | None:
    """The offer in a browser's message, or None for anything else."""
    if not isinstance(raw, str) or len(raw) > MAX_MESSAGE:
        return None
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "offer":
        return None
    sdp = message.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        return None
    return {"type": "offer", "sdp": sdp}


MEDIA_STATES = frozenset({SessionState.WAITING, SessionState.ACTIVE, SessionState.ON_HOLD})


def log_media(session_id: int, kind: str, actor: str) -> None:
    """Write a media event to a live session's log (not once the session has ended)."""
    db.session.rollback()  # a long-lived socket: read the session as it is now
    lens_session = db.session.get(LensSession, session_id)
    if lens_session is not None and lens_session.state in MEDIA_STATES:
        lifecycle.record_event(db.session, lens_session, kind, actor=actor, now=now_utc())
        db.session.commit()


def serve_leg(ws, session_id: int, actor: str, answer: Answerer) -> None:
    """Signaling for one leg: answer offers, log the first connection and the socket's end."""
    connected = False

    def answer_and_log(offer: dict[str, str]) -> dict[str, str]:
        nonlocal connected
        reply = answer(offer)
        if not connected:
            connected = True
            log_media(session_id, "media_connected", actor)
        return reply

    try:
        answer_offers(ws, answer_and_log)
    finally:
        if connected:
            log_media(session_id, "media_closed", actor)


def answer_offers(ws, answer: Answerer) -> None:
    """Until the socket closes, answer each offer; report errors without closing."""
    while ws.connected:
        raw = ws.receive(timeout=30)
        if raw is None:
            continue
        offer = parse_offer(raw)
        if offer is None:
            ws.send(json.dumps({"type": "error", "reason": "bad_message"}))
            continue
        try:
            reply = answer(offer)
        except MediaUnavailable as exc:
            log.warning("media sidecar unavailable: %s", exc)
            reply = {"type": "error", "reason": "unavailable"}
        except MediaRefused as exc:
            reply = {"type": "error", "reason": "refused", "message": str(exc)}
        else:
            reply = {"type": "answer", "sdp": reply["sdp"]}
        ws.send(json.dumps(reply))


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
        result = media_control().recording(session_id, "stop")
    except (MediaUnavailable, MediaRefused) as exc:
        log.warning("could not stop the recording of session %s: %s", session_id, exc)
        result = None
    capture_records.finish_recording(db.session, recording, result, actor="system", now=now_utc())
    db.session.commit()
