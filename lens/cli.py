"""`flask lens …`: set-up and maintenance for operators."""

from __future__ import annotations

import contextlib
import fcntl
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta

import click
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask.cli import with_appcontext
from flask_babel import force_locale
from sqlalchemy import func, select, text

from lens.auth.forms import password_problem_text
from lens.auth.models import ROLE_ADMIN, ROLE_TECHNICIAN, Technician
from lens.auth.passwords import password_problem
from lens.auth.throttle import Backoff, forget_old_failures
from lens.extensions import db
from lens.sessions import lifecycle
from lens.timeutil import now_utc

lens_cli = click.Group("lens", help="Lens set-up and maintenance.")


def _email(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise click.BadParameter(str(exc)) from exc


def add_technician(
    name: str, email: str, role: str, password: str | None
) -> tuple[Technician, str]:
    """Create a technician; without a password, make a one-time one to change at log-in."""
    email = _email(email)
    if db.session.scalar(select(Technician).where(func.lower(Technician.email) == email)):
        raise click.ClickException(f"a technician with e-mail {email} already exists")
    if password is not None:
        problem = password_problem(password, email=email, name=name)
        if problem is not None:
            with force_locale("en"):  # no request to choose a language from
                reason = password_problem_text(problem)
            raise click.BadParameter(reason, param_hint="'--password'")
    one_time = password is None
    password = password or secrets.token_urlsafe(12)
    technician = Technician(name=name, email=email, role=role, password_change_required=one_time)
    technician.set_password(password, current_app.config["LENS_PASSWORD_METHOD"])
    db.session.add(technician)
    db.session.commit()
    return technician, password


def _create(name: str, email: str, role: str, password: str | None) -> None:
    technician, secret = add_technician(name, email, role, password)
    click.echo(f"Created {role} {technician.name} <{technician.email}>.")
    if password is None:
        click.echo(f"One-time password: {secret}  (to be changed at first log-in)")


@lens_cli.command("init")
@click.option("--admin-email", default="admin@lens.example", show_default=True)
@click.option("--admin-name", default="Administrator", show_default=True)
@with_appcontext
def init_command(admin_email: str, admin_name: str) -> None:
    """Create or upgrade the database; create the first admin if there is none."""
    from flask_migrate import upgrade

    with init_lock():  # several hosts may start at once on one fresh database
        upgrade()
        if db.session.scalar(select(Technician).where(Technician.role == ROLE_ADMIN)) is None:
            _create(admin_name, admin_email, ROLE_ADMIN, None)
        else:
            click.echo("Database is up to date; an administrator exists.")


INIT_LOCK_KEY = 0x4C454E53  # "LENS": the PostgreSQL advisory lock `lens init` holds


@contextlib.contextmanager
def init_lock() -> Iterator[None]:
    """Serialise `lens init` across processes and hosts sharing one database.

    PostgreSQL: a session advisory lock on its own connection, so the migrations and the
    first admin run on one host at a time; the next one finds them done. SQLite (one
    host): an exclusive lock on a file beside the database."""
    engine = db.engine
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": INIT_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": INIT_LOCK_KEY})
                connection.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with open(f"{engine.url.database}.init-lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
    else:
        yield


@lens_cli.command("create-technician")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--password", default=None, help="Leave out to print a one-time password.")
@with_appcontext
def create_technician_command(name: str, email: str, password: str | None) -> None:
    """Add a technician."""
    _create(name, email, ROLE_TECHNICIAN, password)


@lens_cli.command("create-admin")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--password", default=None, help="Leave out to print a one-time password.")
@with_appcontext
def create_admin_command(name: str, email: str, password: str | None) -> None:
    """Add an administrator."""
    _create(name, email, ROLE_ADMIN, password)


@lens_cli.command("reset-two-factor")
@click.option("--email", required=True)
@with_appcontext
def reset_two_factor_command(email: str) -> None:
    """Turn a technician's two-step verification off (a lost phone) and end their log-ins."""
    from lens.auth.revocation import BY_ADMIN, sign_out_everywhere
    from lens.auth.totp import disenrol

    email = _email(email)
    technician = db.session.scalar(select(Technician).where(func.lower(Technician.email) == email))
    if technician is None:
        raise click.ClickException(f"no technician with e-mail {email}")
    disenrol(db.session, technician)
    db.session.commit()
    sign_out_everywhere(technician.id, BY_ADMIN)
    click.echo(f"Two-step verification of {technician.email} is off; they set it up again.")


# pg_try_advisory_xact_lock key of the sweep: one sweep at a time per site ("LENSSWEP")
SWEEP_LOCK = 0x4C454E5353574550


def hold_sweep_lock() -> bool:
    """Whether this transaction may sweep: on PostgreSQL only the process that holds the
    site-wide advisory lock does (it is let go at commit); SQLite is one host's file,
    whose writers the database serialises."""
    if db.engine.dialect.name != "postgresql":
        return True
    return bool(
        db.session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SWEEP_LOCK})
    )


def sweep_once() -> int:
    """Expire unused PINs, close stalled joins and abandoned waits; commit; return how many.

    Every web process runs the sweep; while one holds the site's lock the others skip it."""
    from lens.admin.settings import forget_cached, setting

    if not hold_sweep_lock():
        db.session.rollback()
        return 0
    forget_cached()  # a sweep thread keeps its app context: read the settings afresh

    def minutes(key: str) -> timedelta:
        return timedelta(minutes=setting(key))

    gone_after = timedelta(minutes=current_app.config["LENS_CUSTOMER_GONE_MINUTES"])
    count = lifecycle.expire_due_sessions(
        db.session,
        now_utc(),
        connect_timeout=minutes("LENS_CONNECTING_TIMEOUT_MINUTES"),
        gone_after=gone_after,
        waiting_timeout=minutes("LENS_WAITING_TIMEOUT_MINUTES"),
        idle_timeout=minutes("LENS_IDLE_TIMEOUT_MINUTES"),
    )
    forget_old_failures(db.session, now_utc(), Backoff())  # lens.auth.throttle's old rows
    db.session.commit()
    return count


@lens_cli.command("sweep")
@click.option("--every", type=int, default=0, help="Repeat every N seconds (0: once).")
@with_appcontext
def sweep_command(every: int) -> None:
    """Expire sessions whose PIN validity has passed."""
    while True:
        count = sweep_once()
        if count or not every:
            click.echo(f"expired or closed {count} session(s)")
        if not every:
            return
        db.session.remove()
        time.sleep(every)


@lens_cli.command("purge")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@with_appcontext
def purge_command(dry_run: bool) -> None:
    """Delete snapshots and recordings older than the retention period (Admin Center)."""
    from lens.admin.retention import purge_expired_captures

    snapshots, recordings = purge_expired_captures(dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {snapshots} snapshot(s) and {recordings} recording(s)")
