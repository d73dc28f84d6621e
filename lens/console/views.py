"""The Technician Console and the Web Console: one code, two feature sets."""

from __future__ import annotations

from datetime import timedelta

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from lens.console.forms import custom_values, new_session_form
from lens.console.live import stream_session_changes
from lens.console.queries import sessions_for_list
from lens.extensions import db, sock
from lens.features import allowed_features
from lens.sessions import lifecycle
from lens.sessions.models import HANDLING_STATES, Channel, LensSession
from lens.signaling.relay import answer_offers, media_control, stop_media
from lens.timeutil import now_utc


def get_own_session(session_id: int) -> LensSession:
    """The signed-in technician's session, or 404/403."""
    lens_session = db.session.get(LensSession, session_id)
    if lens_session is None:
        abort(404)
    if lens_session.technician_id != current_user.id:
        abort(403)
    return lens_session


def render_detail(lens_session: LensSession):
    """The selected session's panel: its actions and log."""
    features = allowed_features(lens_session.console, current_user.group_permissions())
    return render_template(
        "console/_session_detail.html", s=lens_session, features=features, oob=False
    )


def make_console_blueprint(console: str, url_prefix: str) -> Blueprint:
    """One console's blueprint; both share every view."""
    bp = Blueprint(f"{console}_console", __name__, url_prefix=url_prefix)

    @bp.before_request
    def require_technician():
        if not current_user.is_authenticated:
            if request.path.endswith("/ws"):
                abort(401)
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        if current_user.password_change_required:
            return redirect(url_for("auth.change_password", next=request.path))
        g.console = console
        return None

    @bp.get("/")
    def index():
        """The console: toolbar, session list, selected session."""
        return render_template(
            "console/index.html",
            sessions=sessions_for_list(current_user.id),
            custom_labels=current_app.config["LENS_CUSTOM_FIELDS"],
        )

    @bp.get("/sessions/new")
    def new_session():
        """The New session dialog."""
        form = new_session_form(current_app.config["LENS_CUSTOM_FIELDS"])
        return render_template("console/_new_session.html", form=form, created=None)

    @bp.post("/sessions")
    def create_session():
        """Create PIN: a new session whose PIN the dialog then shows."""
        labels = current_app.config["LENS_CUSTOM_FIELDS"]
        form = new_session_form(labels)
        if not form.validate_on_submit():
            return render_template("console/_new_session.html", form=form, created=None), 422
        created = lifecycle.create_session(
            db.session,
            technician=current_user,
            console=console,
            customer_name=form.name.data.strip(),
            channel=Channel.PIN,
            phone=form.phone.data,
            email=form.email.data,
            ticket_id=form.ticket_id.data,
            custom_fields=custom_values(form, labels),
            pin_validity=timedelta(minutes=current_app.config["LENS_PIN_VALIDITY_MINUTES"]),
            now=now_utc(),
        )
        db.session.commit()
        return render_template("console/_new_session.html", form=form, created=created), 201

    @bp.get("/sessions/<int:session_id>")
    def session_detail(session_id: int):
        """The selected session's panel."""
        return render_detail(get_own_session(session_id))

    @bp.post("/sessions/<int:session_id>/start")
    def start(session_id: int):
        """Start: pick the waiting session up."""
        lens_session = lifecycle.start_session(
            db.session, get_own_session(session_id), current_user, now_utc()
        )
        return render_detail(lens_session)

    @bp.post("/sessions/<int:session_id>/end")
    def end(session_id: int):
        """End session."""
        lens_session = lifecycle.end_session(
            db.session,
            get_own_session(session_id),
            actor=lifecycle.technician_actor(current_user),
            reason="technician",
            now=now_utc(),
            technician=current_user,
        )
        db.session.commit()
        stop_media(lens_session.id)
        return render_detail(lens_session)

    @sock.route("/sessions/<int:session_id>/media", bp=bp)
    def media(ws, session_id: int):
        """Signaling for the technician's leg: the customer's video and audio, the mic back."""
        lens_session = get_own_session(session_id)
        if lens_session.state not in HANDLING_STATES:
            ws.close(1008, "session not active")
            return
        answer_offers(ws, lambda offer: media_control().subscriber_offer(session_id, offer))

    @sock.route("/ws", bp=bp)
    def live(ws):
        """Push the session list (and the open session's panel) whenever a session changes."""
        stream_session_changes(ws, current_user._get_current_object())

    return bp
