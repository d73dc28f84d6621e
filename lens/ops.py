"""Operators' endpoints: health (dependency by dependency), and the web process's own figures.

Also /favicon.ico, which browsers ask for by that name whatever a page links to.
"""

from __future__ import annotations

import ipaddress

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, request, url_for
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from lens.database import COUNTERS
from lens.extensions import db

bp = Blueprint("ops", __name__)


def check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except SQLAlchemyError as exc:
        db.session.rollback()
        return f"down: {type(exc.orig or exc).__name__}"


def check_redis() -> str | None:
    """None when this site runs without Redis."""
    bus = current_app.extensions["lens.events"]
    ping = getattr(bus, "ping", None)
    if ping is None:
        return None
    try:
        ping()
    except Exception as exc:  # BusUnavailable, with the reason
        return f"down: {exc}"
    if not getattr(bus, "connected", True):
        return "down: the listening connection is reconnecting"
    return "ok"


def check_sidecars() -> tuple[str, list[dict]]:
    """The media sidecars that answer (a site needs at least one)."""
    media = current_app.extensions["lens.media"]
    live = getattr(media, "live_sidecars", None)
    if live is None:
        return "ok", []
    try:
        sidecars = live()
    except Exception as exc:
        return f"down: {exc}", []
    if not sidecars:
        return "down: no sidecar is alive", []
    return "ok", [{"id": s.id, "sessions": s.sessions, "capacity": s.capacity} for s in sidecars]


@bp.get("/favicon.ico")
def favicon():
    """The site's icon under the name browsers try first (no 404 in their consoles)."""
    response = redirect(url_for("static", filename="favicon.svg"), 301)
    response.cache_control.max_age = 86400
    return response


@bp.get("/healthz")
def healthz():
    """Which dependency is down: 503 when the database or Redis is (this process cannot
    serve); no live media sidecar is "degraded", 200 (pages work, video does not)."""
    checks = {"database": check_database()}
    redis_state = check_redis()
    if redis_state is not None:
        checks["redis"] = redis_state
    checks["sidecars"], sidecars = check_sidecars()
    down = sorted(name for name, state in checks.items() if state != "ok")
    fatal = [name for name in down if name != "sidecars"]
    status = "down" if fatal else "degraded" if down else "ok"
    body = {"status": status, "down": down, **checks}
    if sidecars:
        body["sidecar_list"] = sidecars
    return jsonify(body), 503 if fatal else 200


@bp.get("/metrics")
def metrics():
    """Prometheus text: open page sockets and database connections (loopback only by default)."""
    if not _metrics_allowed(request.remote_addr):
        abort(404)
    pool = db.engine.pool
    lines = [
        "# TYPE lens_web_sockets_open gauge",
        f"lens_web_sockets_open {current_app.extensions['lens.socket_limits'].open_sockets()}",
        "# TYPE lens_db_connections_in_use gauge",
        f"lens_db_connections_in_use {_checked_out(pool)}",
        "# TYPE lens_db_busy_retries_total counter",
        f"lens_db_busy_retries_total {COUNTERS.busy_retries}",
        "# TYPE lens_db_busy_failures_total counter",
        f"lens_db_busy_failures_total {COUNTERS.busy_failures}",
    ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


def _checked_out(pool) -> int:
    checkedout = getattr(pool, "checkedout", None)
    return int(checkedout()) if callable(checkedout) else 0


def _metrics_allowed(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    allowed = current_app.config["LENS_METRICS_ALLOW"]
    return any(ip in ipaddress.ip_network(network, strict=False) for network in allowed)
