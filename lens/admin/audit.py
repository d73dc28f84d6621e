"""Write the audit log: one row per changed field, with its old and new value."""

from __future__ import annotations

from sqlalchemy.orm import Session

from lens.admin.models import AuditEntry
from lens.auth.models import Technician
from lens.timeutil import now_utc


def audit(
    db: Session,
    actor: Technician,
    kind: str,
    target: str,
    field: str,
    before: str | None,
    after: str | None,
) -> AuditEntry:
    """Record that `actor` changed `field` of `target` from `before` to `after`."""
    entry = AuditEntry(
        at=now_utc(),
        actor_id=actor.id,
        actor_name=actor.name,
        kind=kind,
        target=target[:200],
        field=field[:64],
        before=before,
        after=after,
    )
    db.add(entry)
    return entry
