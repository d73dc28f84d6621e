"""Ids in URLs: what a database can hold, or the route does not match (404).

Werkzeug's `int` converter takes any number of digits; a session id of 2⁶³ reached the
database and failed there (SQLite: OverflowError; PostgreSQL: out of range), a 500 with a
traceback. Every `<int:…>` in Lens's routes is a database id, so the app's `int`
converter is this one (lens.factory).
"""

from __future__ import annotations

from werkzeug.routing import IntegerConverter

MAX_ID = 2**63 - 1  # a BIGINT; SQLite's INTEGER


class DatabaseId(IntegerConverter):
    """A non-negative integer up to MAX_ID (or the rule's own `max`)."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)
