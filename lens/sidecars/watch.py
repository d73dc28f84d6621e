"""Close the recordings whose sidecar process is gone, so no console shows "Recording"
for a file nothing writes any more; and make what the file kept whole (its duration in the
database, an index in the file).

Every web process runs this (a thread, every WATCH_SECONDS); closing a row is a compare
and set, so one process closes each recording once.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import requests
from flask import Flask, current_app
from sqlalchemy import select, update

from lens.captures import records
from lens.captures.models import Recording
from lens.captures.salvage import salvage_recording
from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.models import LensSession
from lens.storage import StorageError
from lens.timeutil import now_utc

log = logging.getLogger(__name__)

WATCH_SECONDS = 1.0
# A writer that has not been seen for this long (its /healthz refused or timed out) is gone;
# a new boot of the same sidecar, or a refused connection, is proof at once.
UNSEEN_SECONDS = 3.0


class RecordingWatch:
    """Which recordings' writers are alive, remembered between rounds."""

    def __init__(self) -> None:
        self._unseen_since: dict[int, float] = {}
        self._http = requests.Session()

    def writer_state(self, url: str, boot: str) -> str:
        """ "alive", "gone" (refused, or restarted with a new boot) or "unknown" (slow)."""
        try:
            answer = self._http.get(url.rstrip("/") + "/healthz", timeout=0.5).json()
        except requests.ConnectionError:
            return "gone"
        except (requests.RequestException, ValueError):
            return "unknown"
        return "alive" if answer.get("boot") == boot else "gone"

    def check(self) -> int:
        """One round, in an app context: close the lost recordings; return how many."""
        media = current_app.extensions["lens.media"]
        registry = getattr(media, "registry", None)
        if registry is None:
            return 0
        db.session.rollback()
        rows = db.session.execute(
            select(Recording.id, Recording.media_boot, LensSession.media_sidecar)
            .join(LensSession, Recording.session_id == LensSession.id)
            .where(Recording.stopped_at.is_(None), Recording.media_boot.is_not(None))
        ).all()
        db.session.rollback()
        if not rows:
            self._unseen_since.clear()
            return 0
        try:
            live = {s.id: s for s in registry.live()}
        except Exception as exc:  # Redis down: no verdict this round
            log.warning("recording watch: no sidecar registry: %s", exc)
            return 0
        now = time.monotonic()
        closed = 0
        for recording_id, boot, sidecar_id in rows:
            sidecar = live.get(sidecar_id) if registry.pins else registry.fixed
            state = "gone" if sidecar is None else self.writer_state(sidecar.url, boot)
            if state == "alive":
                self._unseen_since.pop(recording_id, None)
                continue
            first = self._unseen_since.setdefault(recording_id, now)
            if state == "unknown" and now - first < UNSEEN_SECONDS:
                continue
            self._unseen_since.pop(recording_id, None)
            closed += close_lost_recording(recording_id)
        return closed


def close_lost_recording(recording_id: int) -> int:
    """Claim the row (once, across processes), salvage the file, log it; 1 if this did."""
    with db.engine.begin() as connection:
        claimed = connection.execute(
            update(Recording)
            .where(Recording.id == recording_id, Recording.stopped_at.is_(None))
            .values(stopped_at=now_utc())
        ).rowcount
    if claimed != 1:
        return 0
    recording = db.session.get(Recording, recording_id)
    root = Path(current_app.config["LENS_RECORDINGS_PATH"])
    try:
        file = records.inside(root, recording.path)
    except ValueError:
        file = None
    duration, size = salvage_recording(file) if file is not None else (0.0, 0)
    storage = current_app.extensions["lens.storage"]
    if storage.kind == "s3" and file is not None and file.exists():
        try:  # what the sidecar would have uploaded at its stop
            storage.put_file(records.stored_recording_key(recording.path), file, "video/webm")
            file.unlink()
        except StorageError as exc:
            log.error("salvaged recording %s not uploaded: %s", recording_id, exc)
    recording.duration, recording.size = duration, size
    lifecycle.record_event(
        db.session,
        recording.lens_session,
        records.RECORDING_CUT,
        actor="system",
        now=now_utc(),
        detail=f"{duration:.1f}",
    )
    db.session.commit()
    log.warning("recording %s cut off with its sidecar: %.1f s kept", recording_id, duration)
    return 1


def start_recording_watch(app: Flask) -> threading.Thread:
    """Run the watch every WATCH_SECONDS in a daemon thread."""
    watch = RecordingWatch()
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(WATCH_SECONDS):
            with app.app_context():
                try:
                    watch.check()
                except Exception:  # a bad round must not kill the thread
                    log.exception("recording watch failed")
                    db.session.rollback()
                finally:
                    db.session.remove()

    thread = threading.Thread(target=run, name="lens-recording-watch", daemon=True)
    thread.start()
    app.extensions["lens.recording_watch"] = stop
    return thread
