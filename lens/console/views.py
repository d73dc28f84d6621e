"""The Technician Console and the Web Console: one code, two feature sets."""

from __future__ import annotations

from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from limits import parse_many

from lens.admin.settings import setting
from lens.console.forms import NewSessionForm, custom_values, new_session_form
from lens.console.invite import InviteResult, invite, join_qr, join_url
from lens.console.live import ConsolePage
from lens.console.log_text import event_text
from lens.console.panel import render_panel
from lens.console.queries import sessions_for_list
from lens.console.tools import register_tool_routes
from lens.database import retry_when_busy
from lens.extensions import db, limiter, sock
from lens.features import CHANNELS, CONSOLE_ACCESS, SESSIONS, require_feature
from lens.invitations import create_session_once, session_for_request_key
from lens.security.input import database_id
from lens.sessions import lifecycle
from lens.sessions.models import Channel, LensSession
from lens.signaling.relay import stop_media
from lens.sockets import serve as serve_page
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
    return render_panel(lens_session, g.console, current_user.id)


def dialog_form() -> NewSessionForm:
    """The New session form, bound to the request, with the configured extra fields."""
    config = current_app.config
    return new_session_form(setting("LENS_CUSTOM_FIELDS"), config["LENS_DEFAULT_PHONE_REGION"])


def render_dialog(
    form: NewSessionForm,
    created: LensSession | None = None,
    result: InviteResult | None = None,
    *,
    repeated: bool = False,
    refusal: str | None = None,
) -> str:
    """The New session dialog: the form (with its errors), or what the submit made."""
    return render_template(
        "console/_new_session.html",
        form=form,
        created=created,
        invitation=result.invitation if result else None,
        mailto=result.mailto if result else None,
        join_url=join_url(created) if created else None,
        join_qr=join_qr(created) if created and form.channel.data == Channel.LINK else None,
        repeated=repeated,
        refusal=refusal,
    )


def _invite_limit() -> str:
    return current_app.config["LENS_INVITE_RATE_LIMIT"]


def _technician_key() -> str:
    """Sending is limited per technician, whichever console or address they use."""
    return f"technician:{current_user.id}" if current_user.is_authenticated else "anonymous"


def _too_many_sends() -> Response:
    """The dialog again, saying why nothing was sent."""
    message = _(
        "You have sent too many invitations in a short time. Wait a few minutes, or create "
        "a PIN and read it to the customer."
    )
    return make_response(render_dialog(dialog_form(), refusal=message), 429)


def may_send(form: NewSessionForm) -> bool:
    """Count a send against the technician's allowance (shared by both consoles) before it
    goes out: one atomic increment in the limiter's storage per window, so concurrent sends
    cannot all slip under it. The same form again (a double click) sends nothing: not counted.
    """
    if not form.sends:
        return True
    key = form.request_key.data
    if key and session_for_request_key(db.session, key) is not None:
        return True
    prefix = current_app.config.get("RATELIMIT_KEY_PREFIX", "")
    allowed = True
    for item in parse_many(_invite_limit()):  # every window counts the send
        if not limiter.limiter.hit(item, prefix, "invitation-send", _technician_key()):
            allowed = False
    return allowed


def make_console_blueprint(console: str, url_prefix: str) -> Blueprint:
    """One console's blueprint; both share every view."""
    bp = Blueprint(f"{console}_console", __name__, url_prefix=url_prefix)
    bp.add_app_template_global(event_text)

    @bp.before_request
    def require_technician():
        if not current_user.is_authenticated:
            if request.path.endswith("/ws"):
                abort(401)
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        if current_user.password_change_required:
            if request.path.endswith("/ws"):
                abort(403)  # a socket gets its refusal before the upgrade, not a redirect
            return redirect(url_for("auth.change_password", next=request.path))
        g.console = console
        require_feature(CONSOLE_ACCESS[console])
        return None

    @bp.get("/")
    def index():
        """The console: toolbar, session list, selected session (?session=N opens one)."""
        opened = request.args.get("session", type=int)
        if opened is not None and database_id(opened) is None:
            abort(404)  # no session has it (one the database cannot hold was a 500)
        return render_template(
            "console/index.html",
            sessions=sessions_for_list(current_user.id),
            custom_labels=setting("LENS_CUSTOM_FIELDS"),
            open_url=url_for(".session_detail", session_id=get_own_session(opened).id)
            if opened is not None
            else None,
        )

    @bp.get("/sessions/new")
    def new_session():
        """The New session dialog."""
        return render_dialog(dialog_form())

    @bp.post("/sessions")
    def create_session():
        """Create PIN, Send SMS, Send email or Create link: a new session and its invitation."""
        form = dialog_form()
        require_feature(SESSIONS)
        if not form.validate_on_submit():
            return render_dialog(form), 422
        require_feature(CHANNELS[form.channel.data])
        if not may_send(form):
            return _too_many_sends()
        lens_session, created = create_session_once(
            db.session,
            request_key=form.request_key.data,
            technician=current_user,
            console=console,
            customer_name=form.name.data.strip(),
            channel=form.channel.data,
            phone=form.phone.data,
            email=form.email.data,
            ticket_id=form.ticket_id.data,
            custom_fields=custom_values(form, setting("LENS_CUSTOM_FIELDS")),
            pin_validity=timedelta(minutes=setting("LENS_PIN_VALIDITY_MINUTES")),
            now=now_utc(),
        )
        if lens_session.technician_id != current_user.id:
            abort(403)
        if not created:  # the same form again (a double click): show, never send twice
            last = lens_session.invitations[-1] if lens_session.invitations else None
            return render_dialog(form, lens_session, InviteResult(last), repeated=True), 200
        result = invite(lens_session, lens_session.pin, form)
        db.session.commit()
        return render_dialog(form, lens_session, result), 201

    @bp.get("/sessions/<int:session_id>")
    def session_detail(session_id: int):
        """The selected session's panel."""
        return render_detail(get_own_session(session_id))

    @bp.post("/sessions/<int:session_id>/start")
    @retry_when_busy
    def start(session_id: int):
        """Start: pick the waiting session up."""
        from lens.captures.views import start_forced_recording

        lens_session = lifecycle.start_session(
            db.session, get_own_session(session_id), current_user, now_utc(), console
        )
        start_forced_recording(lens_session, console)  # lens.features: forced recording
        return render_detail(lens_session)

    @bp.post("/sessions/<int:session_id>/end")
    @retry_when_busy
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

    register_tool_routes(bp, get_own_session)

    @sock.route("/ws", bp=bp)
    def live(ws):
        """The page's socket: the list and open panel pushed, controls and signaling."""
        technician_id = current_user.id
        login_version = current_user.session_version
        actor = lifecycle.technician_actor(current_user)
        serve_page(
            ws,
            f"technician:{technician_id}",
            lambda sock: ConsolePage(sock, technician_id, actor, console, login_version),
        )

    return bp
