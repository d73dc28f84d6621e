"""Store each chat message that passes the control channel's checks, and echo it to both."""

from __future__ import annotations

from typing import Any

from lens.chat.models import ChatMessage
from lens.controls.messages import CUSTOMER, TECHNICIAN
from lens.extensions import db
from lens.sessions.models import LensSession
from lens.timeutil import now_utc


def technician_id_of(actor: str) -> int | None:
    """The technician's id in an actor name ("technician:7"), None for the customer."""
    prefix, _, rest = actor.partition(":")
    return int(rest) if prefix == TECHNICIAN and rest.isdigit() else None


def store_chat(lens_session: LensSession, actor: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Keep the message with the session; both sides receive it with its author and time."""
    technician_id = technician_id_of(actor)
    message = ChatMessage(
        lens_session=lens_session,
        author=TECHNICIAN if technician_id else CUSTOMER,
        technician_id=technician_id,
        text=payload["text"],
        created_at=now_utc(),
    )
    db.session.add(message)
    db.session.flush()
    return {
        "id": message.id,
        "text": message.text,
        "author": message.author,
        "name": message.author_name or "",
        "at": message.created_at.isoformat(),
    }
