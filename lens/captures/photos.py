"""Full-resolution photos: the technician asks, the phone takes one with its camera.

The technician's page sends a ``photo`` control message with a fresh request id (checked
like every control message: the session's feature set must have screen capture; the
channel logs it). The phone takes the photo (ImageCapture ``takePhoto()``, else the largest
frame its camera gives) and uploads it over HTTPS with that id; it is kept here beside the
snapshots, once per request and only for a request of the last REQUEST_SECONDS.

Plain functions over the models: callers pass the SQLAlchemy session and the time, and
commit. No Flask request in here.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from lens.captures.images import NotAPhoto, photo_size
from lens.captures.models import CAMERA, Snapshot
from lens.sessions import lifecycle
from lens.sessions.models import LensSession, SessionEvent, SessionState
from lens.storage import Storage

PHOTO_REQUESTED = "photo"  # the control message's kind, as the control channel logs it
PHOTO_TAKEN = "photo_taken"
REQUEST_SECONDS = 120  # a phone that takes longer answers a request nobody waits for
MIME_TYPES = {"jpg": "image/jpeg", "png": "image/png"}


class PhotoRefused(Exception):
    """A photo that is not kept; `reason` names why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def requested(db: Session, lens_session: LensSession, request_id: str, now: datetime) -> bool:
    """Whether the technician asked for this photo in the last REQUEST_SECONDS."""
    recent = db.scalars(
        select(SessionEvent)
        .where(
            SessionEvent.session_id == lens_session.id,
            SessionEvent.kind == PHOTO_REQUESTED,
            SessionEvent.at >= now - timedelta(seconds=REQUEST_SECONDS),
        )
        .order_by(SessionEvent.id.desc())
        .limit(20)
    )
    return any(isinstance(e.data, dict) and e.data.get("request") == request_id for e in recent)


def store_photo(
    db: Session,
    lens_session: LensSession,
    request_id: str,
    data: bytes,
    storage: Storage,
    now: datetime,
    max_pixels: int,
) -> Snapshot:
    """Keep the phone's photo for a pending request: the file, a Snapshot row, an event."""
    if lens_session.state != SessionState.ACTIVE:
        raise PhotoRefused("not_active")
    if not requested(db, lens_session, request_id, now):
        raise PhotoRefused("not_requested")
    if db.scalar(select(Snapshot.id).where(Snapshot.request_id == request_id)) is not None:
        raise PhotoRefused("already_taken")
    try:
        file_format, width, height = photo_size(data, max_pixels)
    except NotAPhoto as exc:
        raise PhotoRefused("not_a_photo") from exc
    relative = f"captures/{lens_session.id}/{secrets.token_hex(8)}.{file_format}"
    storage.put_bytes(relative, data, MIME_TYPES[file_format])
    photo = Snapshot(
        lens_session=lens_session,
        technician=lens_session.technician,
        created_at=now,
        path=relative,
        width=width,
        height=height,
        bytes=len(data),
        source=CAMERA,
        request_id=request_id,
    )
    db.add(photo)
    lifecycle.record_event(
        db,
        lens_session,
        PHOTO_TAKEN,
        actor="customer",
        now=now,
        detail=f"{width}x{height}",
        data={"width": width, "height": height},
    )
    return photo
