"""Language: from the browser, switchable, remembered in a cookie."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, request
from flask_babel import gettext

from lens.config import DEFAULT_CUSTOM_FIELD
from lens.security.cookies import cookie_secure

bp = Blueprint("i18n", __name__)

COOKIE = "lens_lang"


def field_label(label: str) -> str:
    """A custom field's label as shown: the default one translated, a configured one as is."""
    return gettext("Custom field") if label == DEFAULT_CUSTOM_FIELD else label


def select_locale() -> str | None:
    """The chosen language, else the browser's best match."""
    languages = current_app.config["LENS_LANGUAGES"]
    chosen = request.cookies.get(COOKIE)
    if chosen in languages:
        return chosen
    return request.accept_languages.best_match(languages)


def safe_next(target: str | None, fallback: str) -> str:
    """A local path to go on to; anything pointing off-site becomes fallback."""
    if not target or any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return fallback
    if "\\" in target:
        return fallback
    return target


@bp.get("/lang/<code>")
def switch_language(code: str):
    """Remember the chosen language and go back."""
    response = redirect(safe_next(request.args.get("next"), "/"))
    if code in current_app.config["LENS_LANGUAGES"]:
        response.set_cookie(
            COOKIE,
            code,
            max_age=365 * 24 * 3600,
            samesite="Lax",
            httponly=True,
            secure=cookie_secure(),
        )
    return response
