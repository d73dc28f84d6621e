"""The customer's pages on the phone: PIN, link, tutorial, permission, EULA, status."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)

from lens.admin.settings import ice_config
from lens.captures.records import open_recording
from lens.chat.setup import chat_history
from lens.controls.state import ToolState
from lens.customer.forms import PinForm
from lens.customer.identity import device_key, joined_session, remember_joined
from lens.customer.live import PhonePage
from lens.database import retry_when_busy
from lens.errors import session_error_message
from lens.extensions import db, limiter, sock
from lens.features import customer_features
from lens.network import page_ice_servers
from lens.sessions import lifecycle
from lens.sessions.errors import SessionError
from lens.sessions.models import LensSession, SessionState
from lens.signaling.relay import stop_media
from lens.sockets import serve as serve_page
from lens.timeutil import now_utc

bp = Blueprint("customer", __name__)

SOCKETS = frozenset({"/c/ws"})


@bp.before_request
def refuse_sockets_without_a_session():
    """A phone's sockets open only for the session it joined: refused before the upgrade."""
    if request.path in SOCKETS and joined_session() is None:
        abort(403)


STEPS = ("tutorial", "permission", "eula")


def _pin_limit() -> str:
    return current_app.config["LENS_PIN_RATE_LIMIT"]


def _pin_value_limit() -> str:
    return current_app.config["LENS_PIN_VALUE_RATE_LIMIT"]


def _pin_key() -> str:
    return "pin:" + "".join(ch for ch in request.form.get("pin", "") if ch.isdigit())[:6]


def _failed(response) -> bool:
    # a 503 is the server's failure (Redis down), not a wrong PIN: nothing to count, and
    # counting it would need the very Redis that is down
    return response.status_code not in (303, 503)


@bp.route("/", methods=["GET", "POST"])
@limiter.limit(_pin_limit, methods=["POST"], deduct_when=_failed)
@limiter.limit(_pin_value_limit, methods=["POST"], key_func=_pin_key, deduct_when=_failed)
@retry_when_busy
def start():
    """The start page: type the PIN the technician gave you."""
    form = PinForm()
    error = None
    if form.validate_on_submit():
        try:
            lens_session = lifecycle.join_by_pin(db.session, form.pin.data, device_key(), now_utc())
        except SessionError as exc:
            db.session.commit()  # keep an expiry the attempt discovered
            error = session_error_message(exc)
        else:
            db.session.commit()
            remember_joined(lens_session)
            return redirect(url_for("customer.session_page"), 303)
    status = 422 if (error or form.errors) else 200
    return render_template("customer/start.html", form=form, error=error), status


@bp.get("/j/<token>")
@limiter.limit(_pin_limit)
@retry_when_busy
def join_link(token: str):
    """A join link from an SMS, an e-mail or a chat."""
    try:
        lens_session = lifecycle.join_by_token(db.session, token[:128], device_key(), now_utc())
    except SessionError as exc:
        db.session.commit()
        return render_template("customer/ended.html", message=session_error_message(exc)), 410
    db.session.commit()
    remember_joined(lens_session)
    return redirect(url_for("customer.session_page"), 303)


def _own_session_or_ended():
    lens_session = joined_session()
    if lens_session is None or not lens_session.is_live:
        return None, (render_template("customer/ended.html", s=lens_session), 410)
    return lens_session, None


def session_features(lens_session: LensSession) -> frozenset[str]:
    """What the session's technician may do in it (the phone offers chat by it)."""
    return customer_features(lens_session)


def recording_now(session_id: int) -> bool:
    """Whether the session is being recorded (the customer's page says so)."""
    return open_recording(db.session, session_id) is not None


def render_status(lens_session: LensSession) -> str:
    """The status screen, as a step of the page."""
    return render_template(
        "customer/_status.html",
        s=lens_session,
        recording=recording_now(lens_session.id),
        oob=False,
    )


@bp.get("/c")
def session_page():
    """The customer's session page; its step follows the session's state."""
    lens_session, ended = _own_session_or_ended()
    if ended:
        return ended
    return render_template(
        "customer/session.html",
        s=lens_session,
        features=session_features(lens_session),
        chat_messages=chat_history(lens_session.id),
        recording=recording_now(lens_session.id),
        tools=ToolState.from_column(lens_session.tools),
        ice_servers=page_ice_servers(ice_config(), f"s{lens_session.id}-phone"),
    )


@bp.get("/c/step/<step>")
def step(step: str):
    """One step of the join flow, as a partial."""
    if step not in STEPS:
        abort(404)
    lens_session, ended = _own_session_or_ended()
    if ended:
        return ended
    if lens_session.state != SessionState.CONNECTING:
        return render_status(lens_session)
    return render_template(f"customer/_{step}.html", s=lens_session)


@bp.post("/c/accept")
@retry_when_busy
def accept():
    """Accept the licence agreement: the technician's list shows the customer as connected."""
    lens_session, ended = _own_session_or_ended()
    if ended:
        return ended
    lifecycle.accept_eula(db.session, lens_session, now_utc())
    db.session.commit()
    return render_status(lens_session)


@bp.post("/c/end")
@retry_when_busy
def end():
    """End session, from the phone (after its confirm): the technician's console follows."""
    lens_session, ended = _own_session_or_ended()
    if ended:
        return ended
    lifecycle.end_session(
        db.session, lens_session, actor="customer", reason="customer", now=now_utc()
    )
    db.session.commit()
    stop_media(lens_session.id)
    return render_status(lens_session)


@sock.route("/c/ws", bp=bp)
def live(ws):
    """The page's socket: the status screen pushed, controls and signaling."""
    lens_session = joined_session()
    if lens_session is None:
        ws.close(1008, "no session")
        return
    session_id = lens_session.id
    serve_page(ws, f"customer:{session_id}", lambda sock: PhonePage(sock, session_id))
