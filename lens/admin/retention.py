"""The retention period: snapshots and recordings older than it are deleted (files and rows)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from lens.admin.settings import setting
from lens.captures import records
from lens.captures.models import Recording, Snapshot
from lens.extensions import db
from lens.sessions import lifecycle
from lens.timeutil import now_utc

log = logging.getLogger(__name__)


def _delete_file(root: Path, relative: str) -> None:
    try:
        records.inside(root, relative).unlink(missing_ok=True)
    except (ValueError, OSError) as exc:  # outside the folder, or not removable: keep the row
        raise RuntimeError(f"could not delete {relative}: {exc}") from exc


def purge_expired_captures(dry_run: bool = False) -> tuple[int, int]:
    """Delete captures older than LENS_RETENTION_DAYS (0: keep); return the counts."""
    days = setting("LENS_RETENTION_DAYS")
    if not days:
        return 0, 0
    now = now_utc()
    cutoff = now - timedelta(days=days)
    instance = Path(current_app.instance_path)
    recordings_root = Path(current_app.config["LENS_RECORDINGS_PATH"])
    old_snapshots = list(db.session.scalars(select(Snapshot).where(Snapshot.created_at < cutoff)))
    old_recordings = list(
        db.session.scalars(
            select(Recording).where(
                Recording.stopped_at.is_not(None), Recording.stopped_at < cutoff
            )
        )
    )
    if dry_run:
        return len(old_snapshots), len(old_recordings)
    deleted = [0, 0]
    for index, (items, root) in enumerate(
        ((old_snapshots, instance), (old_recordings, recordings_root))
    ):
        for item in items:
            try:
                _delete_file(root, item.path)
            except RuntimeError as exc:
                log.warning("%s", exc)
                continue
            lifecycle.record_event(
                db.session,
                item.lens_session,
                "capture_purged",
                actor="system",
                now=now,
                detail=item.path,
            )
            db.session.delete(item)
            deleted[index] += 1
        db.session.commit()
    return deleted[0], deleted[1]
