"""Error pages and the messages for refused actions; HTMX requests get a partial."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from lens.database import DatabaseBusy, is_busy
from lens.events import BusUnavailable
from lens.sessions.errors import SessionError

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 10


def session_error_message(error: SessionError) -> str:
    """A clear, translated sentence for a refused session action."""
    code = error.code
    if code == "one_active_session":
        return _(
            "You already have an active session. End it or put it on hold before you start "
            "another one."
        )
    if code == "not_your_session":
        return _("This session belongs to another technician.")
    if code == "invalid_transition":
        return _("This is not possible in the session's current state.")
    if code == "pin_not_valid":
        return _(
            "That PIN is not valid. Check the six digits or ask your technician for a new one."
        )
    if code == "pin_expired":
        return _("This PIN has expired. Ask your technician for a new one.")
    if code == "pin_used":
        return _("This PIN was already used. Ask your technician for a new one.")
    if code == "link_unknown":
        return _(
            "This link is incomplete or wrong. Open the whole link from your message, or "
            "enter your PIN."
        )
    if code == "link_not_valid":
        return _("This link is no longer valid. Ask your technician for a new one.")
    if code == "customer_away":
        return _("The customer's page is closed. Start becomes possible again when they reopen it.")
    if code == "other_device":
        return _("This link has already been opened on another device.")
    return _("This action was refused.")


def render_error(status: int, message: str, headers: dict[str, str] | None = None):
    """The error page, or its message alone for an HTMX request."""
    headers = {"Vary": "HX-Request", **(headers or {})}
    if request.headers.get("HX-Request"):
        response = render_template("_message.html", message=message, level="error")
        return (
            response,
            status,
            {"HX-Retarget": "#messages", "HX-Reswap": "innerHTML", **headers},
        )
    return render_template("error.html", message=message, status=status), status, headers


def register(app: Flask) -> None:
    """Install the handlers."""

    @app.errorhandler(SessionError)
    def session_refused(error: SessionError):
        return render_error(409, session_error_message(error))

    @app.errorhandler(CSRFError)
    def csrf_failed(error: CSRFError):
        return render_error(400, _("The form has expired. Reload the page and try again."))

    @app.errorhandler(403)
    def forbidden(error):
        return render_error(403, _("You are not allowed to do this."))

    @app.errorhandler(404)
    def not_found(error):
        return render_error(404, _("This page does not exist."))

    @app.errorhandler(411)
    def length_required(error):
        return render_error(411, _("This request did not say how large it is. Nothing was saved."))

    @app.errorhandler(413)
    def too_large(error):
        from lens.security.sizes import body_limit, size_text

        limit = body_limit() or 0
        message = _(
            "This request is too large: at most %(size)s can be sent at once. Nothing was saved.",
            size=size_text(limit),
        )
        return render_error(413, message)

    @app.errorhandler(429)
    def too_many(error):
        if getattr(error, "response", None) is not None:
            return error.response  # the limited view's own answer (the New session dialog)
        return render_error(429, _("Too many attempts. Wait a moment and try again."))

    @app.errorhandler(DatabaseBusy)
    def database_busy(error: DatabaseBusy):
        response = render_error(
            503, _("The server is busy. Nothing was saved; try again in a few seconds.")
        )
        return response[0], response[1], {**response[2], "Retry-After": "5"}

    @app.errorhandler(RedisError)
    @app.errorhandler(BusUnavailable)
    def redis_down(error: Exception):
        log.error("Redis is unavailable: %s", error)
        message = _(
            "Lens cannot reach its message service (Redis) right now. Wait a moment and try again."
        )
        return render_error(503, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.errorhandler(OperationalError)
    def database_error(error: OperationalError):
        if is_busy(error):
            return database_busy(DatabaseBusy())
        log.error("the database is unavailable: %s", error.orig)
        message = _("Lens cannot reach its database right now. Wait a moment and try again.")
        return render_error(503, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.errorhandler(500)
    def server_error(error):
        return render_error(500, _("Something went wrong on our side. Try again."))
