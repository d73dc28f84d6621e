"""Operators' endpoints: health, and the web process's own figures."""

from __future__ import annotations

import ipaddress

from flask import Blueprint, Response, abort, current_app, jsonify, request
from sqlalchemy import text

from lens.database import COUNTERS
from lens.extensions import db

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    """Up, and the database answers."""
    db.session.execute(text("SELECT 1"))
    return jsonify(status="ok")


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
