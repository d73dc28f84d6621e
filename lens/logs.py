"""Logging for every Lens process (web, sidecar, run command, sweep): one format.

    LENS_LOG_LEVEL   DEBUG, INFO (default), WARNING, ERROR
    LENS_LOG_FORMAT  text (default) or json (one JSON object a line, for a log shipper)

Each line names the process, the logger, the request id and the Lens session id (in the
web process, "-" elsewhere). The request id is the proxy's X-Request-ID when it sends a
sane one, else a new one; the response carries it back in X-Request-ID.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
from collections.abc import Mapping
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(lens_process)s %(name)s "
    "[req=%(request_id)s session=%(lens_session)s] %(message)s"
)
JSON_FIELDS = "%(asctime)s %(levelname)s %(lens_process)s %(name)s %(request_id)s %(lens_session)s %(message)s"  # noqa: E501
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MARK = "_lens_handler"


class ContextFilter(logging.Filter):
    """Stamps each record with the process name and, in a request, its ids."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def filter(self, record: logging.LogRecord) -> bool:
        record.lens_process = self.process
        record.request_id, record.lens_session = _request_ids()
        return True


def _request_ids() -> tuple[str, str]:
    flask = sys.modules.get("flask")  # the sidecar never imports Flask
    if flask is None or not flask.has_request_context():
        return "-", "-"
    session_id = (flask.request.view_args or {}).get("session_id")
    if session_id is None:
        session_id = flask.g.get("lens_session_id")
    return flask.g.get("request_id", "-"), str(session_id) if session_id is not None else "-"


def configure_logging(
    process: str, env: Mapping[str, str] | None = None, stream: IO[str] | None = None
) -> logging.Handler:
    """Install the one Lens handler on the root logger (replacing an earlier one)."""
    env = os.environ if env is None else env
    level = (env.get("LENS_LOG_LEVEL") or "INFO").upper()
    if level not in LEVELS:
        raise ValueError(f"LENS_LOG_LEVEL must be one of {', '.join(LEVELS)}, got {level!r}")
    style = (env.get("LENS_LOG_FORMAT") or "text").lower()
    if style not in ("text", "json"):
        raise ValueError(f"LENS_LOG_FORMAT must be text or json, got {style!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter: logging.Formatter = (
        JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "name": "logger"})
        if style == "json"
        else logging.Formatter(TEXT_FORMAT)
    )
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter(process))
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # alembic announces each of its plugins at INFO on every start: noise, not news
    logging.getLogger("alembic.runtime.plugins").setLevel(max(logging.WARNING, root.level))
    return handler


def init_app(app: Any) -> None:
    """The web process: configure logging (not under the tests), stamp request ids."""
    from flask import g, request

    if not app.config.get("TESTING"):
        configure_logging("web")
        # gunicorn's own error and access lines (in this worker) in the same format
        for name in ("gunicorn.error", "gunicorn.access"):
            gunicorn_logger = logging.getLogger(name)
            if gunicorn_logger.handlers:
                gunicorn_logger.handlers.clear()
                gunicorn_logger.propagate = True

    @app.before_request
    def set_request_id() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if REQUEST_ID.match(given) else secrets.token_hex(8)

    @app.after_request
    def send_request_id(response):
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response
