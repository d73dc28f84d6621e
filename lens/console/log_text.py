"""A session-log line in the reader's language, from the event's kind and data.

Lines written before events had `data` are read from their detail text the way it was
written then (lens.invitations.records.event_detail, a transfer's "<from>\\n<to>", a
tool's JSON).
"""

from __future__ import annotations

import json
from typing import Any

from flask_babel import gettext as _

from lens.sessions.models import SessionEvent

END_REASONS = {
    "timeout": lambda: _("time-out"),
    "customer": lambda: _("by the customer"),
    "customer_left": lambda: _("the customer's page was closed"),
    # the Admin Center's time-outs and deactivation (lens.admin)
    "waiting_timeout": lambda: _("waited too long for Start"),
    "idle_timeout": lambda: _("no activity"),
    "technician_deactivated": lambda: _("the technician's account was deactivated"),
}
QUALITY_NAMES = {"low": lambda: _("Low"), "medium": lambda: _("Medium"), "high": lambda: _("High")}


def event_data(event: SessionEvent) -> dict[str, Any]:
    """The event's data, or what an older line's detail held."""
    if isinstance(event.data, dict):
        return event.data
    detail = event.detail or ""
    if event.kind == "transfer":
        giver, _nl, receiver = detail.partition("\n")
        return {"from": giver, "to": receiver}
    if event.kind in ("invite_sent", "invite_failed", "invite_shown"):
        head, _nl, error = detail.partition("\n")
        channel, _sp, to = head.partition(" ")
        return {"channel": channel, "to": to, "error": error}
    if detail.startswith("{"):
        try:
            value = json.loads(detail)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    return {}


def event_text(event: SessionEvent) -> str:
    """What the log says for one event."""
    kind, detail, data = event.kind, event.detail or "", event_data(event)
    if kind == "start" and data.get("console") == "web":  # lens.features.customer_features
        return _("Session started in the Web Console, with the Web Console's tools")
    simple = {
        "accept": lambda: _("Customer accepted the licence agreement"),
        "start": lambda: _("Session started"),
        "hold": lambda: _("Session put on hold"),
        "resume": lambda: _("Session resumed"),
        "expire": lambda: _("PIN expired"),
        "erase": lambda: _("Drawings erased"),
        "draw": lambda: _("Drawing added"),
        "recording_started": lambda: _("Recording started"),
        "customer_left": lambda: _("Customer's page closed"),
        "customer_back": lambda: _("Customer is back"),
        "capture_purged": lambda: _("A snapshot or recording was deleted (retention period)"),
    }
    if kind in simple:
        return simple[kind]()
    if kind == "created":
        return _("Session created for %(name)s", name=detail)
    if kind == "pin_issued":
        return _("PIN %(pin)s created", pin=detail)
    if kind == "join":
        if detail == "link":
            return _("Customer opened the link")
        return _("Customer entered the PIN")
    if kind == "end":
        reason = END_REASONS.get(detail)
        return _("Session ended") + (f" ({reason()})" if reason else "")
    if kind == "transfer":
        return _(
            "Session transferred from %(giver)s to %(receiver)s",
            giver=data.get("from", ""),
            receiver=data.get("to", ""),
        )
    if kind == "chat":
        if event.actor == "customer":
            return _("Chat message from the customer")
        return _("Chat message from the technician")
    if kind in ("invite_sent", "invite_failed", "invite_shown"):
        return invitation_text(kind, data)
    if kind in ("media_connected", "media_closed", "media_unavailable"):
        return media_text(kind, event.actor)
    if kind == "snapshot":
        return _("Snapshot taken (%(size)s)", size=detail)
    if kind == "photo_taken":
        return _("Customer's phone took a full-resolution photo (%(size)s)", size=detail)
    if kind == "snapshot_downloaded":
        return _("Snapshot downloaded as %(format)s", format=detail)
    if kind == "recording_stopped":
        if detail:
            return _("Recording stopped (%(seconds)s s)", seconds=detail)
        return _("Recording stopped")
    if kind == "recording_cut":  # its sidecar died (lens.sidecars.watch)
        return _("Recording cut off: its media server stopped (%(seconds)s s kept)", seconds=detail)
    if kind == "media_moved":  # its sidecar died; the legs re-offered to another one
        return _(
            "Media server %(dead)s stopped answering; the video moved to %(to)s",
            dead=data.get("from", ""),
            to=data.get("to", ""),
        )
    text = tool_text(kind, data)
    if text is not None:
        return text
    return f"{kind}: {detail}" if detail else kind


def media_text(kind: str, actor: str) -> str:
    if kind == "media_unavailable":  # (lens.signaling.relay.MediaNotes)
        if actor == "customer":
            return _("The media server is not answering: the customer's camera waits for it")
        return _("The media server is not answering: the technician's video waits for it")
    if kind == "media_connected":
        if actor == "customer":
            return _("Customer's camera connected")
        return _("Technician's video connected")
    if actor == "customer":
        return _("Customer's connection closed")
    return _("Technician's video closed")


def invitation_text(kind: str, data: dict[str, Any]) -> str:
    channel, to, error = data.get("channel"), data.get("to", ""), data.get("error") or ""
    if kind == "invite_sent":
        if channel == "sms":
            return _("SMS sent to %(to)s", to=to)
        return _("E-mail sent to %(to)s", to=to)
    if kind == "invite_failed":
        if channel == "sms":
            return _("SMS to %(to)s failed: %(error)s", to=to, error=error)
        return _("E-mail to %(to)s failed: %(error)s", to=to, error=error)
    if channel == "email":
        return _("E-mail to %(to)s prepared in the technician's e-mail client", to=to)
    return _("Join link shown")


def tool_text(kind: str, data: dict[str, Any]) -> str | None:
    """A video tool's or the phone's line; None for a kind that is not a tool's."""
    on = data.get("on") is True
    ok = data.get("ok") is True
    if kind == "freeze":
        return _("Picture frozen") if on else _("Picture unfrozen")
    if kind == "quality":
        name = QUALITY_NAMES.get(data.get("level"), QUALITY_NAMES["high"])
        return _("Video quality set to %(level)s", level=name())
    if kind == "torch":
        return _("Flashlight on") if on else _("Flashlight off")
    if kind == "camera":
        if data.get("facing") == "user":
            return _("Technician asked for the front camera")
        return _("Technician asked for the rear camera")
    if kind == "camera_paused":
        return _("Customer paused the camera") if on else _("Customer resumed the camera")
    if kind == "capabilities":
        if data.get("torch") is True:
            return _("Customer's camera: flashlight available")
        return _("Customer's camera: no flashlight")
    if kind == "photo":
        return _("Technician asked for a full-resolution photo")
    if kind == "photo_failed":
        return _("Customer's phone could not take a photo")
    if kind == "device_result":
        if data.get("control") == "torch":
            if ok:
                return _("Customer's phone changed the flashlight")
            return _("Customer's phone could not change the flashlight")
        return _("Camera switched") if ok else _("Customer's phone could not switch camera")
    return None
