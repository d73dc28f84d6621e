"""Cookies: HttpOnly, SameSite=Lax, and Secure whenever the site is served over HTTPS.

The log-in session's cookie (Flask's signed cookie, which also carries a phone's device
key), Flask-Login's remember-me cookie (not set by today's log-in) and the language
cookie. Secure follows the request: HTTPS (directly, or through a trusted proxy's
X-Forwarded-Proto: lens.network) makes it Secure; LENS_SECURE_COOKIES=1 makes it Secure
on every request (a TLS proxy that is not declared as trusted).
"""

from __future__ import annotations

from flask import Flask, current_app, has_request_context, request
from flask.sessions import SecureCookieSessionInterface


class SessionCookie(SecureCookieSessionInterface):
    """Flask's signed cookie session, Secure on HTTPS requests as well as by setting."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or (has_request_context() and request.is_secure)


def init_app(app: Flask) -> None:
    """Install the session cookie interface."""
    app.session_interface = SessionCookie()


def cookie_secure() -> bool:
    """Whether a cookie set in this request gets Secure."""
    return bool(current_app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure
