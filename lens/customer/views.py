"""The customer's pages on the phone: PIN, link, tutorial, permission, EULA, status."""

from __future__ import annotations

import logging
import unicodedata

from flask import (
    Blueprint,
    abort,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from lens.admin.settings import ice_config, setting
from lens.captures import photos
from lens.captures.records import open_recording
from lens.chat.setup import chat_history
from lens.controls.channel import controls_topic
from lens.controls.messages import CUSTOMER, PHOTO_REQUEST
from lens.controls.state import ToolState
from lens.customer.forms import PinForm
from lens.customer.identity import device_key, joined_session, remember_joined
from lens.customer.live import PhonePage
from lens.database import retry_when_busy
from lens.errors import session_error_message
from lens.extensions import compress, db, limiter, sock
from lens.features import SNAPSHOT, customer_features
from lens.network import page_ice_servers
from lens.security.addresses import client_key
from lens.security.guessing import LINK, PIN, Allowance, GuessLimits, GuessSettings
from lens.sessions import lifecycle
from lens.sessions.errors import PinNotValid, SessionError
from lens.sessions.models import LensSession, SessionState
from lens.signaling.relay import stop_media
from lens.sockets import serve as serve_page
from lens.storage import StorageError
from lens.timeutil import now_utc

log = logging.getLogger(__name__)

bp = Blueprint("customer", __name__)
bp.after_request(compress.after_request)  # the phone's pages go out compressed (lens.assets)

SOCKETS = frozenset({"/c/ws"})


@bp.before_request
def refuse_sockets_without_a_session():
    """A phone's sockets open only for the session it joined: refused before the upgrade."""
    if request.path in SOCKETS and joined_session() is None:
        abort(403)


STEPS = ("tutorial", "permission", "eula")


def _attempt(kind: str) -> Allowance:
    """Count this PIN or link attempt from this address before it is looked up.

    A join link is a 256-bit token: it gets the address's ceiling only (against hammering
    the database), no site budget and no "too many" answer for a wrong one.
    """
    config = current_app.config
    pin = kind == PIN
    settings = GuessSettings.parse(
        config["LENS_PIN_RATE_LIMIT"] if pin else "",
        config["LENS_PIN_ADDRESS_CEILING"],
        config["LENS_PIN_GUESS_BUDGET"] if pin else None,
        setting("LENS_PIN_VALIDITY_MINUTES"),
    )
    limits = GuessLimits(limiter.storage, config.get("RATELIMIT_KEY_PREFIX", ""))
    return limits.attempt(kind, client_key(), settings)


def _refusal(allowance: Allowance, kind: str = PIN) -> str:
    if kind == LINK:
        return _("Too many links were tried from your network. Try again later.")
    if allowance.refused_by == "site":
        return _(
            "Joining by PIN is paused for a few minutes because many wrong PINs were tried. "
            "Open the link your technician sent you, or ask them for one."
        )
    if allowance.refused_by == "address":
        return _(
            "Too many PINs were tried from your network. Open the link your technician sent "
            "you, or try again later."
        )
    return _(
        "That PIN is not valid, and many wrong PINs came from your network. Check the six "
        "digits and wait a minute before you try again, or open the link your technician "
        "sent you."
    )


@bp.route("/", methods=["GET", "POST"])
def start():
    """The start page: type the PIN the technician gave you."""
    form = PinForm()
    if not form.validate_on_submit():
        status = 422 if form.errors else 200
        return render_template("customer/start.html", form=form, error=None), status
    # "123 456", as the console shows it; full-width digits (a Japanese or Chinese keyboard)
    # are the same digits, other digits than ASCII's match no PIN
    pin = "".join(unicodedata.normalize("NFKC", form.pin.data).split())
    if len(pin) != 6 or not (pin.isascii() and pin.isdigit()):  # nothing looked up or counted
        error = session_error_message(PinNotValid("a PIN is six digits"))
        return render_template("customer/start.html", form=form, error=error), 422
    allowance = _attempt(PIN)
    if not allowance.looked_up:
        return _refused_page(form, allowance)
    error = _join_by_pin(pin)
    if error is None:
        return redirect(url_for("customer.session_page"), 303)
    if allowance.over_address_limit:
        return _refused_page(form, allowance)
    return render_template("customer/start.html", form=form, error=error), 422


def _refused_page(form: PinForm, allowance: Allowance):
    if allowance.refused_by == "site":
        log.warning("PIN entry paused: the site's PIN budget per validity is spent")
    headers = {"Retry-After": str(allowance.retry_after or 60)}
    page = render_template("customer/start.html", form=form, error=_refusal(allowance))
    return page, 429, headers


@retry_when_busy
def _join_by_pin(pin: str) -> str | None:
    """Join the session of this PIN; the refusal's message if it is not a valid one."""
    try:
        lens_session = lifecycle.join_by_pin(db.session, pin, device_key(), now_utc())
    except SessionError as exc:
        db.session.commit()  # keep an expiry the attempt discovered
        return session_error_message(exc)
    db.session.commit()
    remember_joined(lens_session)
    return None


@bp.get("/j/<token>")
def join_link(token: str):
    """A join link from an SMS, an e-mail or a chat."""
    allowance = _attempt(LINK)
    if not allowance.looked_up:
        message = _refusal(allowance, LINK)
        headers = {"Retry-After": str(allowance.retry_after)}
        return render_template("customer/ended.html", message=message), 429, headers
    return _join_by_link(token)


@retry_when_busy
def _join_by_link(token: str):
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
    """The customer's session page; its step follows the session's state.

    While connecting, ``?step=`` names the join step to show: the steps' buttons are plain
    forms that come here, so a tap works before the page's scripts have loaded (htmx then
    fetches only the step, /c/step/<step>).
    """
    lens_session, ended = _own_session_or_ended()
    if ended:
        return ended
    step = request.args.get("step", "tutorial")
    return render_template(
        "customer/session.html",
        s=lens_session,
        step=step if step in STEPS else "tutorial",
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
    if request.headers.get("HX-Request") != "true":  # the plain form, before the scripts
        response = redirect(url_for("customer.session_page"), 303)
    else:
        response = make_response(render_status(lens_session))
    response.vary.add("HX-Request")
    return response


def _photo_limit() -> str:
    return current_app.config["LENS_PHOTO_RATE_LIMIT"]


@bp.post("/c/photos/<request_id>")
@limiter.limit(_photo_limit)
def upload_photo(request_id: str):
    """A full-resolution photo from the phone's camera, for the technician's request.

    The body is the picture itself (JPEG or PNG), sent by phone-photo.js; the answer is JSON.
    """
    lens_session, ended = _own_session_or_ended()
    if ended:
        return ended
    if SNAPSHOT not in session_features(lens_session):
        return {"error": "not_allowed"}, 403
    if not PHOTO_REQUEST.fullmatch(request_id):
        abort(404)
    if not request.content_length:  # lens.security.sizes refused one over the limit
        return {"error": "empty"}, 400
    try:
        photo = photos.store_photo(
            db.session,
            lens_session,
            request_id,
            request.get_data(cache=False),
            current_app.extensions["lens.storage"],
            now_utc(),
            current_app.config["LENS_PHOTO_MAX_PIXELS"],
        )
        db.session.commit()
    except photos.PhotoRefused as exc:
        db.session.rollback()
        return {"error": exc.reason}, 422 if exc.reason == "not_a_photo" else 409
    except IntegrityError:  # the same request, uploaded twice at once
        db.session.rollback()
        return {"error": "already_taken"}, 409
    except StorageError as exc:
        db.session.rollback()
        current_app.logger.error("photo not stored: %s", exc)
        return {"error": "not_stored"}, 503
    taken = {"photo": photo.id, "width": photo.width, "height": photo.height}
    current_app.extensions["lens.events"].publish(
        controls_topic(lens_session.id),
        {"type": "photo_taken", "from": CUSTOMER, "request": request_id, **taken},
    )
    return taken, 201


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
