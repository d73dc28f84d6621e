"""`flask lens …`: first set-up, technicians, the sweeper, and where the database is."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, inspect, select, text

from lens.auth.models import Technician
from lens.events import InProcessBus
from lens.extensions import db
from lens.factory import create_app
from lens.sessions import lifecycle
from lens.timeutil import now_utc
from tests.conftest import csrf_from

ONE_TIME = re.compile(r"One-time password: (\S+)")


def log_in(client, email: str, password: str):
    token = csrf_from(client.get("/login").text)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def technicians(app) -> list[Technician]:
    with app.app_context():
        found = list(db.session.scalars(select(Technician).order_by(Technician.id)))
        db.session.expunge_all()
        return found


# --- init ---------------------------------------------------------------------------------


def test_init_migrates_an_empty_database_and_prints_a_one_time_password(blank_app):
    result = blank_app.test_cli_runner().invoke(args=["lens", "init"])

    assert result.exit_code == 0, result.output
    assert "Created admin Administrator <admin@lens.example>." in result.output
    password = ONE_TIME.search(result.output).group(1)
    (admin,) = technicians(blank_app)
    assert admin.role == "admin"
    assert admin.password_change_required

    client = blank_app.test_client()
    response = log_in(client, "admin@lens.example", password)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/password")
    assert client.get("/console/").headers["Location"].startswith("/account/password")


def test_init_builds_the_one_active_index_from_the_migration(blank_app):
    assert blank_app.test_cli_runner().invoke(args=["lens", "init"]).exit_code == 0
    with blank_app.app_context():
        indexes = {ix["name"]: ix for ix in inspect(db.engine).get_indexes("lens_session")}
        one_active = indexes["uq_lens_session_one_active_per_technician"]
        assert one_active["unique"]
        assert one_active["column_names"] == ["technician_id"]
        if db.engine.dialect.name == "postgresql":
            query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
        else:
            query = "SELECT sql FROM sqlite_master WHERE name = :name"
        sql = db.session.scalar(text(query), {"name": "uq_lens_session_one_active_per_technician"})
        assert "WHERE" in sql and "'active'" in sql and "'on_hold'" in sql


def test_init_twice_keeps_the_one_admin(blank_app):
    runner = blank_app.test_cli_runner()
    first = runner.invoke(args=["lens", "init"])
    second = runner.invoke(args=["lens", "init"])
    assert second.exit_code == 0, second.output
    assert "an administrator exists" in second.output
    assert "One-time password" not in second.output
    assert len(technicians(blank_app)) == 1
    # the first password still works
    password = ONE_TIME.search(first.output).group(1)
    assert log_in(blank_app.test_client(), "admin@lens.example", password).status_code == 302


def test_init_with_a_chosen_admin_email(blank_app):
    result = blank_app.test_cli_runner().invoke(
        args=["lens", "init", "--admin-email", "Boss@Example.com", "--admin-name", "Boss"]
    )
    assert result.exit_code == 0, result.output
    (admin,) = technicians(blank_app)
    assert (admin.name, admin.email) == ("Boss", "boss@example.com")


# --- create-technician / create-admin -----------------------------------------------------


def test_create_technician_with_a_password_logs_straight_in(app, runner, client):
    result = runner.invoke(
        args=[
            "lens",
            "create-technician",
            "--name",
            "Tom",
            "--email",
            "tom@example.com",
            "--password",
            "toms own password",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "One-time password" not in result.output
    (tom,) = technicians(app)
    assert (tom.role, tom.password_change_required) == ("technician", False)
    response = log_in(client, "tom@example.com", "toms own password")
    assert response.headers["Location"] == "/console/"


def test_create_technician_without_password_prints_a_one_time_one(app, runner, client):
    result = runner.invoke(
        args=["lens", "create-technician", "--name", "Tom", "--email", "tom@example.com"]
    )
    assert result.exit_code == 0, result.output
    password = ONE_TIME.search(result.output).group(1)
    response = log_in(client, "tom@example.com", password)
    assert response.headers["Location"].startswith("/account/password")


def test_create_technician_with_a_taken_email_fails_clearly(app, runner, technician):
    result = runner.invoke(
        args=["lens", "create-technician", "--name", "Tess Two", "--email", "TESS@example.com"]
    )
    assert result.exit_code == 1
    assert "a technician with e-mail tess@example.com already exists" in result.output
    assert [t.name for t in technicians(app)] == ["Tess Technician"]


def test_create_admin_with_a_taken_email_fails_clearly(app, runner, technician):
    result = runner.invoke(
        args=["lens", "create-admin", "--name", "Tess Admin", "--email", "tess@example.com"]
    )
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert [t.role for t in technicians(app)] == ["technician"]


def test_create_technician_refuses_a_bad_email(app, runner):
    result = runner.invoke(
        args=["lens", "create-technician", "--name", "Bad", "--email", "not-an-email"]
    )
    assert result.exit_code == 2
    assert "Invalid value" in result.output
    assert technicians(app) == []


# --- sweep --------------------------------------------------------------------------------


def test_sweep_expires_due_pins(app, runner, technician):
    with app.app_context():
        long_ago = now_utc() - timedelta(hours=2)
        lens_session = lifecycle.create_session(
            db.session,
            technician=db.session.get(Technician, technician),
            console="technician",
            customer_name="Late",
            pin_validity=timedelta(minutes=20),
            now=long_ago,
        )
        db.session.commit()
        session_id = lens_session.id
    result = runner.invoke(args=["lens", "sweep"])
    assert result.exit_code == 0, result.output
    assert "expired or closed 1 session(s)" in result.output
    with app.app_context():
        assert db.session.get(type(lens_session), session_id).state == "expired"


# --- DATABASE_URL -------------------------------------------------------------------------


def _app_from_environment(tmp_path, monkeypatch, database_url: str | None):
    monkeypatch.setenv("LENS_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    if database_url is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", database_url)
    return create_app({"TESTING": True, "LENS_EVENT_BUS": InProcessBus()})


def test_database_url_overrides_the_default(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    app = _app_from_environment(tmp_path, monkeypatch, url)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == url
    with app.app_context():
        assert db.engine.url.database == str(tmp_path / "elsewhere.db")
        db.create_all()
        assert db.session.scalar(select(func.count()).select_from(Technician)) == 0
        db.engine.dispose()
    assert (tmp_path / "elsewhere.db").exists()
    assert not (tmp_path / "instance" / "lens.db").exists()


def test_without_database_url_the_database_is_in_the_instance_folder(tmp_path, monkeypatch):
    app = _app_from_environment(tmp_path, monkeypatch, None)
    expected = f"sqlite:///{tmp_path / 'instance' / 'lens.db'}"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == expected
