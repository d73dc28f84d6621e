"""The sweep runs in every web process; racing in two processes, no session ends twice."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lens.auth.models import Technician
from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.models import LensSession, SessionEvent
from lens.timeutil import now_utc
from tests.scaleout.conftest import dispose, make_app

pytestmark = pytest.mark.scaleout

ROOT = Path(__file__).resolve().parents[2]
SESSIONS = 72

# One web process's sweep: waits for the starting gun (a file), sweeps once, prints the count.
SWEEPER = """
import os, sys, time
from pathlib import Path
from lens.factory import create_app
from lens.cli import sweep_once
app = create_app({"LENS_PASSWORD_METHOD": "pbkdf2:sha256:1"})
with app.app_context():
    from lens.extensions import db
    db.session.execute(db.text("SELECT 1"))  # connected before the gun
    db.session.rollback()
    gun = Path(sys.argv[1])
    print("ready", flush=True)
    while not gun.exists():
        time.sleep(0.001)
    print(sweep_once(), flush=True)
"""


def test_two_processes_sweeping_at_once_end_each_session_once(tmp_path, monkeypatch, postgres_url):
    app = make_app(tmp_path, monkeypatch, postgres_url)
    try:
        assert app.test_cli_runner().invoke(args=["lens", "init"]).exit_code == 0
        with app.app_context():
            technician = db.session.scalars(db.select(Technician)).one()
            long_ago = now_utc() - timedelta(hours=1)
            for number in range(SESSIONS):  # waiting, the customer's page gone for an hour
                lens_session = lifecycle.create_session(
                    db.session, technician=technician, console="technician",
                    customer_name=f"Customer {number}", pin_validity=timedelta(minutes=20),
                    now=long_ago,
                )  # fmt: skip
                lifecycle.join_by_pin(db.session, lens_session.pin, f"phone-{number}", long_ago)
                lifecycle.accept_eula(db.session, lens_session, long_ago)
                lifecycle.customer_seen(db.session, lens_session.id, long_ago)
            db.session.commit()

        gun = tmp_path / "go"
        env = dict(os.environ, DATABASE_URL=postgres_url, LENS_INSTANCE_PATH=str(tmp_path / "i"))
        env.pop("REDIS_URL", None)
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", SWEEPER, str(gun)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for _ in range(2)
        ]
        for process in processes:
            assert process.stdout.readline().strip() == "ready"
        gun.touch()
        counts = []
        for process in processes:
            out, _ = process.communicate(timeout=60)
            assert process.returncode == 0
            counts.append(int(out.strip()))
        assert sum(counts) == SESSIONS, counts  # every session swept, by one of the two

        with app.app_context():
            ends = db.session.execute(
                select(SessionEvent.session_id, func.count())
                .where(SessionEvent.kind == "end")
                .group_by(SessionEvent.session_id)
            ).all()
            assert len(ends) == SESSIONS
            assert {count for _, count in ends} == {1}, "a session has two end entries"
            states = set(db.session.scalars(select(LensSession.state)))
            assert states == {"closed"}
    finally:
        dispose(app)


def test_a_second_sweep_while_one_holds_the_lock_skips(tmp_path, monkeypatch, postgres_url):
    from lens.cli import hold_sweep_lock

    app = make_app(tmp_path, monkeypatch, postgres_url)
    try:
        assert app.test_cli_runner().invoke(args=["lens", "init"]).exit_code == 0
        with app.app_context():
            assert hold_sweep_lock()
            other = make_app(tmp_path / "b", monkeypatch, postgres_url)
            try:
                with other.app_context():
                    started = time.monotonic()
                    assert not hold_sweep_lock()  # answers at once, does not wait
                    assert time.monotonic() - started < 1
                    db.session.rollback()
            finally:
                dispose(other)
            db.session.commit()  # let go
            with other.app_context():
                assert hold_sweep_lock()
                db.session.rollback()
    finally:
        dispose(app)
