"""Take snapshot, Start/Stop recording, and the stored captures: one blueprint per console."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from lens import features
from lens.auth.models import Technician
from lens.captures import records
from lens.captures.images import png_to_jpeg
from lens.captures.models import Recording, Snapshot
from lens.console.views import get_own_session
from lens.errors import render_error
from lens.extensions import db
from lens.features import features_of, require_feature
from lens.sessions.errors import InvalidTransition
from lens.sessions.models import LensSession, SessionState
from lens.signaling.control import MediaError, MediaUnavailable
from lens.signaling.relay import media_control
from lens.storage import Storage, StorageError
from lens.timeutil import now_utc

log = logging.getLogger(__name__)


def usable_session(session_id: int, feature: str, *, live: bool = True) -> LensSession:
    """The technician's own session, if they may use `feature` in it (and it is active)."""
    lens_session = get_own_session(session_id)
    require_feature(feature, lens_session)
    if live and lens_session.state != SessionState.ACTIVE:
        raise InvalidTransition(feature, lens_session.state)
    return lens_session


def media_failed(error: MediaError):
    """The sidecar could not do it: say so, change nothing."""
    if isinstance(error, MediaUnavailable):
        return render_error(503, _("The media server is not answering. Try again in a moment."))
    return render_error(409, _("The media server refused this: %(reason)s", reason=str(error)))


def render_captures(lens_session: LensSession):
    features_now = features_of(lens_session, g.console)
    return render_template(
        "console/_captures.html",
        s=lens_session,
        features=features_now,
        captures=records.session_captures(db.session, lens_session.id),
    )


def recordings_root() -> Path:
    return Path(current_app.config["LENS_RECORDINGS_PATH"])


def begin_recording(lens_session: LensSession, technician: Technician) -> None:
    """Ask the sidecar to record the session and keep its row (not committed)."""
    root = recordings_root()
    target = records.inside(root, records.new_recording_path(lens_session))
    reply = media_control().recording(lens_session.id, "start", str(target))
    written = Path(reply.get("path") or target).resolve()
    relative = written.relative_to(root.resolve()).as_posix()
    records.start_recording(
        db.session, lens_session, technician, relative, now_utc(), media_boot=reply.get("boot")
    )


def start_forced_recording(lens_session: LensSession, console: str) -> bool:
    """Record a session of a forced-recording group from Start; whether it records now.

    Called at Start and whenever the phone's leg (re)connects to an active session, since
    the sidecar can record only once the phone's leg has negotiated its video.
    """
    if lens_session.state != SessionState.ACTIVE:
        return False
    if features.RECORDING_FORCED not in features_of(lens_session, console):
        return False
    if records.open_recording(db.session, lens_session.id) is not None:
        return True
    try:
        begin_recording(lens_session, lens_session.technician)
    except MediaError as exc:
        db.session.rollback()
        log.info("forced recording of session %s waits for the phone: %s", lens_session.id, exc)
        return False
    db.session.commit()
    return True


def storage() -> Storage:
    return current_app.extensions["lens.storage"]


def make_captures_blueprint(console: str, url_prefix: str) -> Blueprint:
    """One console's capture views (the Web Console's all refuse: it has no capture)."""
    bp = Blueprint(f"{console}_captures", __name__, url_prefix=url_prefix)

    @bp.before_request
    def require_technician():
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        if current_user.password_change_required:
            abort(403)
        g.console = console
        return None

    @bp.post("/sessions/<int:session_id>/snapshots")
    def take_snapshot(session_id: int):
        """Take snapshot: the current frame at full resolution, stored with the session."""
        lens_session = usable_session(session_id, features.SNAPSHOT)
        try:
            png, width, height = media_control().snapshot(lens_session.id)
        except MediaError as exc:
            return media_failed(exc)
        try:
            records.store_snapshot(
                db.session,
                lens_session,
                current_user._get_current_object(),
                png,
                (width, height),
                storage(),
                now_utc(),
            )
        except StorageError as exc:
            current_app.logger.error("snapshot not stored: %s", exc)
            db.session.rollback()
            return render_error(503, _("The snapshot could not be stored. Try again."))
        db.session.commit()
        return render_captures(lens_session)

    def own_snapshot(session_id: int, snapshot_id: int) -> tuple[Snapshot, bytes]:
        lens_session = get_own_session(session_id)
        snapshot = db.session.get(Snapshot, snapshot_id)
        if snapshot is None or snapshot.session_id != lens_session.id:
            abort(404)
        try:
            return snapshot, storage().get_bytes(snapshot.path)
        except StorageError as exc:
            current_app.logger.error("snapshot %s unreadable: %s", snapshot.id, exc)
            abort(404)

    @bp.get("/sessions/<int:session_id>/captures")
    def captures(session_id: int):
        """The captures panel as it is now (after the phone's photo arrived)."""
        lens_session = get_own_session(session_id)
        return render_captures(lens_session)

    @bp.get("/sessions/<int:session_id>/snapshots/<int:snapshot_id>/image")
    def snapshot_image(session_id: int, snapshot_id: int):
        """The stored picture, shown in the page (the thumbnails)."""
        snapshot, stored = own_snapshot(session_id, snapshot_id)
        return send_file(
            io.BytesIO(stored),
            mimetype=snapshot.mimetype,
            download_name=f"lens-snapshot-{snapshot.id}.{snapshot.file_format}",  # inline
            max_age=3600,
        )

    @bp.get("/sessions/<int:session_id>/snapshots/<int:snapshot_id>.<any(png, jpg):file_format>")
    def download_snapshot(session_id: int, snapshot_id: int, file_format: str):
        """Download a snapshot as stored, or a PNG snapshot as JPEG (converted now)."""
        snapshot, stored = own_snapshot(session_id, snapshot_id)
        name = f"lens-{snapshot.lens_session.public_id}-snapshot-{snapshot.id}.{file_format}"
        if file_format == snapshot.file_format:
            response = send_file(
                io.BytesIO(stored),
                mimetype=snapshot.mimetype,
                as_attachment=True,
                download_name=name,
            )
        elif file_format == "jpg":
            jpeg = png_to_jpeg(stored)
            response = send_file(
                io.BytesIO(jpeg), mimetype="image/jpeg", as_attachment=True, download_name=name
            )
        else:
            abort(404)  # a photo is kept as the phone made it (JPEG)
        records.log_download(
            db.session, snapshot, current_user._get_current_object(), file_format, now_utc()
        )
        db.session.commit()
        return response

    @bp.post("/sessions/<int:session_id>/recording/start")
    def start_recording(session_id: int):
        """Start recording: the sidecar writes the forwarded video and audio to a file."""
        lens_session = usable_session(session_id, features.RECORDING)
        if records.open_recording(db.session, lens_session.id) is not None:
            return render_error(409, _("This session is already being recorded."))
        try:
            begin_recording(lens_session, current_user._get_current_object())
        except MediaError as exc:
            return media_failed(exc)
        db.session.commit()
        return render_captures(lens_session)

    @bp.post("/sessions/<int:session_id>/recording/stop")
    def stop_recording(session_id: int):
        """Stop recording: the file is finished and listed with the session."""
        lens_session = usable_session(session_id, features.RECORDING, live=False)
        if features.RECORDING_FORCED in features_of(lens_session, g.console):
            message = features.refusal(features.RECORDING_FORCED, g.console)
            abort(make_response(render_error(403, message)))
        recording = records.open_recording(db.session, lens_session.id)
        if recording is None:
            return render_error(409, _("This session is not being recorded."))
        try:
            result = media_control().recording(lens_session.id, "stop")
        except MediaUnavailable as exc:
            return media_failed(exc)
        except MediaError:
            result = None  # the sidecar has no such recording any more (restarted)
        actor = f"technician:{current_user.id}"
        records.finish_recording(db.session, recording, result, actor=actor, now=now_utc())
        db.session.commit()
        return render_captures(lens_session)

    @bp.get("/sessions/<int:session_id>/recordings/<int:recording_id>.<any(webm, mkv):ext>")
    def recording_file(session_id: int, recording_id: int, ext: str):
        """A finished recording, for <video> (Range requests) or, with ?download=1, to keep."""
        lens_session = get_own_session(session_id)
        recording = db.session.get(Recording, recording_id)
        if (
            recording is None
            or recording.session_id != lens_session.id
            or recording.extension != ext
            or recording.is_running
        ):
            abort(404)
        download = request.args.get("download") == "1"
        name = f"lens-{lens_session.public_id}-recording-{recording.id}.{ext}"
        signed = storage().signed_url(records.stored_recording_key(recording.path), name)
        if signed is not None:  # in the object store: the browser fetches it from there
            return redirect(signed)
        file = records.inside(recordings_root(), recording.path)
        if not file.is_file():
            abort(404)
        return send_file(
            file,
            mimetype=recording.mimetype,
            conditional=True,
            as_attachment=download,
            download_name=f"lens-{lens_session.public_id}-recording-{recording.id}.{ext}",
        )

    return bp
