"""Storing snapshots and recordings with their session; each one writes a SessionEvent.

Plain functions over the models: callers pass the SQLAlchemy session and the time, and
commit. No Flask request and no sidecar calls in here.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from lens.auth.models import Technician
from lens.captures.models import (
    Recording,
    Snapshot,
    running_recording,
    session_recordings,
    session_snapshots,
)
from lens.sessions import lifecycle
from lens.sessions.models import LensSession
from lens.storage import Storage

SNAPSHOT_TAKEN = "snapshot"
SNAPSHOT_DOWNLOADED = "snapshot_downloaded"
RECORDING_STARTED = "recording_started"
RECORDING_STOPPED = "recording_stopped"
RECORDING_CUT = "recording_cut"  # its sidecar died: the file kept all but the last moment


def inside(root: Path, relative: str) -> Path:
    """`root / relative`, refusing anything that resolves outside `root`."""
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or path == base:
        raise ValueError(f"{relative!r} is outside {root}")
    return path


def store_snapshot(
    db: Session,
    lens_session: LensSession,
    technician: Technician,
    png: bytes,
    size: tuple[int, int],
    storage: Storage,
    now: datetime,
) -> Snapshot:
    """Keep the PNG as captures/<session id>/… in the storage, a Snapshot row and an event."""
    relative = f"captures/{lens_session.id}/{secrets.token_hex(8)}.png"
    storage.put_bytes(relative, png, "image/png")
    width, height = size
    snapshot = Snapshot(
        lens_session=lens_session,
        technician=technician,
        created_at=now,
        path=relative,
        width=width,
        height=height,
        bytes=len(png),
    )
    db.add(snapshot)
    lifecycle.record_event(
        db,
        lens_session,
        SNAPSHOT_TAKEN,
        actor=lifecycle.technician_actor(technician),
        now=now,
        detail=f"{width}x{height}",
    )
    return snapshot


def log_download(
    db: Session, snapshot: Snapshot, technician: Technician, file_format: str, now: datetime
) -> None:
    """A snapshot left the server: who took which one, in which format."""
    lifecycle.record_event(
        db,
        snapshot.lens_session,
        SNAPSHOT_DOWNLOADED,
        actor=lifecycle.technician_actor(technician),
        now=now,
        detail=file_format.upper(),
    )


def stored_recording_key(relative_path: str) -> str:
    """A recording's key in the object store (the sidecar uploads it there when finished)."""
    return f"recordings/{relative_path}"


def new_recording_path(lens_session: LensSession) -> str:
    """A fresh file name for the session's next recording, relative to the recordings folder."""
    return f"{lens_session.id}/{secrets.token_hex(8)}.webm"


def open_recording(db: Session, session_id: int) -> Recording | None:
    """The session's recording that is still being written, if any."""
    return db.scalars(running_recording(session_id)).first()


def start_recording(
    db: Session,
    lens_session: LensSession,
    technician: Technician,
    relative_path: str,
    now: datetime,
    media_boot: str | None = None,
) -> Recording:
    """Keep a Recording row for a file the sidecar (process `media_boot`) began writing, and
    an event."""
    recording = Recording(
        lens_session=lens_session,
        technician=technician,
        started_at=now,
        path=relative_path,
        media_boot=media_boot,
    )
    db.add(recording)
    lifecycle.record_event(
        db,
        lens_session,
        RECORDING_STARTED,
        actor=lifecycle.technician_actor(technician),
        now=now,
    )
    return recording


def finish_recording(
    db: Session,
    recording: Recording,
    result: dict[str, Any] | None,
    *,
    actor: str,
    now: datetime,
) -> Recording:
    """Close the row with what the sidecar reported (nothing if it could not say)."""
    recording.stopped_at = now
    if result:
        recording.duration = float(result.get("duration") or 0.0)
        recording.size = int(result.get("size") or 0)
    seconds = f"{recording.duration:.1f}" if recording.duration is not None else ""
    lifecycle.record_event(
        db, recording.lens_session, RECORDING_STOPPED, actor=actor, now=now, detail=seconds
    )
    return recording


def session_captures(session: Session, session_id: int) -> dict:
    """What the captures panel shows: snapshots, recordings, the one being written."""
    recordings = list(session.scalars(session_recordings(session_id)))
    return {
        "snapshots": list(session.scalars(session_snapshots(session_id))),
        "recordings": [r for r in recordings if not r.is_running],
        "running": next((r for r in recordings if r.is_running), None),
    }
