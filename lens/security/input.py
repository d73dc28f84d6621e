"""Input the views never see: ids a database cannot hold, forms a parser mangled.

- Every `<int:…>` in Lens's routes is a database id. Werkzeug's `int` converter takes any
  number of digits; a session id of 2³¹ reached the database and failed there
  (PostgreSQL: integer out of range; SQLite from 2⁶³: OverflowError), a 500 with a
  traceback. The app's `int` converter is DatabaseId: larger ids do not match (404).
- A multipart form whose field name is not one Werkzeug can read (a newline in it) comes
  out with the name None, and Flask-WTF's CSRF check then raised AttributeError on every
  POST route: a 500 with a traceback for one crafted request. Such a form is refused with
  400 before the CSRF check.
- An id a view reads from a form or a query string goes through `database_id`.
- A NUL character in the path, the query string or a form is refused with 400: no text
  Lens keeps or looks up has one, and PostgreSQL refuses it in a query (`/j/%00`, a log-in
  with a NUL in the e-mail address: a 500 there, while SQLite answered them).

Socket messages have their own schema (lens.sockets.messages).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, abort, request
from werkzeug.routing import IntegerConverter

from lens.database import MAX_ID

log = logging.getLogger(__name__)

FORMS = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


class DatabaseId(IntegerConverter):
    """A non-negative integer up to MAX_ID (or the rule's own `max`)."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def database_id(value: Any) -> int | None:
    """An id from a form or a query string: 1 to MAX_ID, else None (never a failed query)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


def refuse_unreadable_forms() -> None:
    """400 for a form with a field the parser could not name (before the CSRF check)."""
    if request.method not in ("POST", "PUT", "PATCH", "DELETE") or request.mimetype not in FORMS:
        return
    names = [*request.form.keys(), *request.files.keys()]
    if not all(isinstance(name, str) for name in names):
        log.info("refused a form with an unreadable field name from %s", request.remote_addr)
        abort(400)


def _has_nul(pairs) -> bool:
    return any("\x00" in name or "\x00" in value for name, value in pairs)


def refuse_nul_characters() -> None:
    """400 for a NUL character in the path, the query string or a form field."""
    found = "\x00" in request.path or _has_nul(request.args.items(multi=True))
    if not found and request.method in ("POST", "PUT", "PATCH", "DELETE"):
        found = request.mimetype in FORMS and _has_nul(request.form.items(multi=True))
    if found:
        log.info("refused a request with a NUL character from %s", request.remote_addr)
        abort(400)


def init_app(app: Flask) -> None:
    """Install them; before any route is added and before the CSRF check."""
    app.url_map.converters["int"] = DatabaseId
    app.before_request(refuse_unreadable_forms)
    app.before_request(refuse_nul_characters)
