"""PostgreSQL through DATABASE_URL: migrations, and the one-active rule held by its index."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import inspect, text

from lens.auth.models import Technician
from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.errors import OneActiveSession
from lens.sessions.models import LensSession, SessionState
from lens.timeutil import now_utc
from tests.scaleout.conftest import dispose, make_app

pytestmark = pytest.mark.scaleout


def waiting_session(technician: Technician, name: str) -> LensSession:
    now = now_utc()
    lens_session = lifecycle.create_session(
        db.session, technician=technician, console="technician", customer_name=name,
        pin_validity=timedelta(minutes=20), now=now,
    )  # fmt: skip
    lifecycle.join_by_pin(db.session, lens_session.pin, f"device-{name}", now)
    lifecycle.accept_eula(db.session, lens_session, now)
    db.session.commit()
    return lens_session


def test_migrations_run_on_postgres_and_the_index_refuses_two_active(
    tmp_path, monkeypatch, postgres_url
):
    app = make_app(tmp_path, monkeypatch, postgres_url)
    try:
        assert app.config["SQLALCHEMY_DATABASE_URI"] == postgres_url
        result = app.test_cli_runner().invoke(args=["lens", "init"])
        assert result.exit_code == 0, result.output
        with app.app_context():
            assert db.engine.dialect.name == "postgresql"
            indexes = {i["name"] for i in inspect(db.engine).get_indexes("lens_session")}
            assert "uq_lens_session_one_active_per_technician" in indexes
            technician = db.session.scalars(db.select(Technician)).one()
            ids = [waiting_session(technician, name).id for name in ("Ann", "Bob")]
            technician_id = technician.id

        # two Start requests race past the code's check: the database decides
        monkeypatch.setattr(lifecycle, "active_session_of", lambda db_session, tech: None)
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def start(session_id: int) -> None:
            with app.app_context():
                tech = db.session.get(Technician, technician_id)
                lens_session = db.session.get(LensSession, session_id)
                barrier.wait(timeout=10)
                try:
                    lifecycle.start_session(db.session, lens_session, tech, now_utc())
                    outcomes.append("started")
                except OneActiveSession:
                    outcomes.append("refused")
                finally:
                    db.session.remove()

        threads = [threading.Thread(target=start, args=(i,)) for i in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(outcomes) == ["refused", "started"]
        with app.app_context():
            active = db.session.execute(
                text("SELECT count(*) FROM lens_session WHERE technician_id = :t AND state = :s"),
                {"t": technician_id, "s": SessionState.ACTIVE.value},
            ).scalar_one()
            assert active == 1
    finally:
        dispose(app)
