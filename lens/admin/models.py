"""What the Admin Center stores: settings that override the environment, and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from lens.extensions import db
from lens.timeutil import now_utc


class Setting(db.Model):
    """One setting changed in the Admin Center; without a row the environment's value holds."""

    __tablename__ = "setting"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=now_utc, onupdate=now_utc)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("technician.id"))


class AuditEntry(db.Model):
    """Who changed what (a setting, a group's permission, a technician, a group), from what
    to what, and when."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_kind_at", "kind", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=now_utc, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("technician.id"))
    actor_name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20))  # setting, permission, technician, group
    target: Mapped[str] = mapped_column(String(200))
    field: Mapped[str] = mapped_column(String(64))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)


def audit_entries(kind: str | None = None, actor_id: int | None = None, text: str | None = None):
    """The audit log, newest first, filtered."""
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if kind:
        query = query.where(AuditEntry.kind == kind)
    if actor_id:
        query = query.where(AuditEntry.actor_id == actor_id)
    if text:
        like = f"%{text}%"
        query = query.where(AuditEntry.target.ilike(like) | AuditEntry.field.ilike(like))
    return query
