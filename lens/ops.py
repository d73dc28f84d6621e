"""Operators' endpoints: health."""

from flask import Blueprint, jsonify
from sqlalchemy import text

from lens.extensions import db

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    """Up, and the database answers."""
    db.session.execute(text("SELECT 1"))
    return jsonify(status="ok")
