"""Snapshots and recordings, kept with their session."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lens.auth.models import Technician
from lens.extensions import db
from lens.sessions.models import LensSession
from lens.timeutil import now_utc

VIDEO = "video"
CAMERA = "camera"


class Snapshot(db.Model):
    """A picture kept with its session, under captures/ in the storage.

    Either a frame of the forwarded video (PNG, taken by the sidecar) or a photo the phone
    took at its camera's full resolution on the technician's request (JPEG or PNG as the
    phone's browser made it; lens.captures.photos).
    """

    __tablename__ = "snapshot"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("lens_session.id"), index=True)
    technician_id: Mapped[int] = mapped_column(ForeignKey("technician.id"))
    created_at: Mapped[datetime] = mapped_column(default=now_utc)
    # relative to the instance folder, e.g. "captures/12/3f2a….png"
    path: Mapped[str] = mapped_column(String(255))
    width: Mapped[int]
    height: Mapped[int]
    bytes: Mapped[int]
    source: Mapped[str] = mapped_column(String(16), default=VIDEO, server_default=VIDEO)
    # the technician's photo request this photo answers: one photo per request
    request_id: Mapped[str | None] = mapped_column(String(32), unique=True)

    lens_session: Mapped[LensSession] = relationship()
    technician: Mapped[Technician] = relationship()

    @property
    def is_photo(self) -> bool:
        return self.source == CAMERA

    @property
    def file_format(self) -> str:
        """The stored file's format: "png" or "jpg"."""
        return "jpg" if self.path.endswith(".jpg") else "png"

    @property
    def mimetype(self) -> str:
        return "image/jpeg" if self.file_format == "jpg" else "image/png"


class Recording(db.Model):
    """The forwarded video and audio of part of a session, as the sidecar wrote it."""

    __tablename__ = "recording"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("lens_session.id"), index=True)
    technician_id: Mapped[int] = mapped_column(ForeignKey("technician.id"))
    started_at: Mapped[datetime] = mapped_column(default=now_utc)
    stopped_at: Mapped[datetime | None]
    # relative to the recordings folder, e.g. "12/9c1d….webm"
    path: Mapped[str] = mapped_column(String(255))
    duration: Mapped[float | None]
    size: Mapped[int | None]
    # the sidecar process (its boot id) writing the file: once that process is gone, the
    # recording has stopped whatever the row says (lens.sidecars.watch closes it)
    media_boot: Mapped[str | None] = mapped_column(String(32))

    lens_session: Mapped[LensSession] = relationship()
    technician: Mapped[Technician] = relationship()

    @property
    def is_running(self) -> bool:
        return self.stopped_at is None

    @property
    def mimetype(self) -> str:
        return "video/webm" if self.path.endswith(".webm") else "video/x-matroska"

    @property
    def extension(self) -> str:
        return self.path.rsplit(".", 1)[-1]


def session_snapshots(session_id: int):
    """The session's snapshots, newest first."""
    return select(Snapshot).where(Snapshot.session_id == session_id).order_by(Snapshot.id.desc())


def session_recordings(session_id: int):
    """The session's recordings, newest first."""
    return select(Recording).where(Recording.session_id == session_id).order_by(Recording.id.desc())


def running_recording(session_id: int):
    """The session's recording that has not been stopped, if any."""
    return select(Recording).where(
        Recording.session_id == session_id, Recording.stopped_at.is_(None)
    )
