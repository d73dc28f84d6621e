"""Technicians and the groups that carry their permissions."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from lens import features
from lens.extensions import db
from lens.timeutil import now_utc

ROLE_TECHNICIAN = "technician"
ROLE_ADMIN = "admin"


class TechnicianGroup(db.Model):
    """A group of technicians and the features its members may use."""

    __tablename__ = "technician_group"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    permissions: Mapped[list[str]] = mapped_column(JSON, default=lambda: sorted(features.ALL))
    technicians: Mapped[list[Technician]] = relationship(back_populates="group")

    def permission_set(self) -> frozenset[str]:
        """The group's permitted features as a set."""
        return frozenset(self.permissions or ())


class Technician(UserMixin, db.Model):
    """A person who runs support sessions (an admin is a technician with more rights)."""

    __tablename__ = "technician"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default=ROLE_TECHNICIAN)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("technician_group.id"))
    active: Mapped[bool] = mapped_column(default=True)
    password_change_required: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=now_utc)
    # the last request of theirs (at most once a minute): the Admin Center's "online now"
    last_seen_at: Mapped[datetime | None]
    deactivated_at: Mapped[datetime | None]
    # Part of every log-in cookie (get_id): raising it ends every log-in of the account
    # (lens.auth.revocation).
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # The TOTP secret, sealed with a key derived from SECRET_KEY (lens.auth.totp), and the
    # last time step a code was accepted for (a code is good once).
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_last_step: Mapped[int | None]

    group: Mapped[TechnicianGroup | None] = relationship(back_populates="technicians")

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive accounts
        return self.active

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN

    @property
    def has_second_factor(self) -> bool:
        return self.totp_secret is not None

    def get_id(self) -> str:
        """The log-in cookie's id: the account and its session version (lens.auth.revocation)."""
        return f"{self.id}:{self.session_version or 0}"

    def set_password(self, password: str, method: str = "scrypt") -> None:
        """Store a salted hash of password."""
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        """Whether password matches the stored hash."""
        return check_password_hash(self.password_hash, password)


class LoginThrottle(db.Model):
    """Failed log-ins for one e-mail address (known or not), keyed by a keyed hash of it."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime] = mapped_column(default=now_utc)
    locked_until: Mapped[datetime | None]
