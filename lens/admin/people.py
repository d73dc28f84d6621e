"""Technicians and groups as the Admin Center changes them; every change is audited.

Plain functions over the models: they flush, the views commit.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lens import features
from lens.admin.audit import audit
from lens.auth.models import ROLE_ADMIN, ROLE_TECHNICIAN, Technician, TechnicianGroup
from lens.auth.totp import disenrol
from lens.sessions import lifecycle
from lens.sessions.models import HANDLING_STATES, LIVE_STATES, LensSession, SessionState

ROLES = (ROLE_TECHNICIAN, ROLE_ADMIN)
ONLINE_WITHIN = timedelta(minutes=2)
TRANSFERABLE = frozenset({SessionState.WAITING, *HANDLING_STATES})

# The switches of a group, in the order the page shows them (recording is a choice of
# three: off, allowed, forced).
SWITCHES = (
    features.SESSIONS,
    features.CHANNEL_PIN,
    features.CHANNEL_SMS,
    features.CHANNEL_EMAIL,
    features.CHANNEL_LINK,
    features.CONSOLE_TECHNICIAN,
    features.CONSOLE_WEB,
    features.CHAT,
    features.HOLD,
    features.DISPLAY_SETTINGS,
    features.FREEZE_DRAWING,
    features.DEVICE_CONTROLS,
    features.SNAPSHOT,
    features.TRANSFER,
)
RECORDING_OFF, RECORDING_ALLOWED, RECORDING_FORCED = "off", "allowed", "forced"
RECORDING_CHOICES = (RECORDING_OFF, RECORDING_ALLOWED, RECORDING_FORCED)


class AdminRefused(ValueError):
    """An Admin Center change that cannot be made; the message says why."""


def _log_name(technician: Technician) -> str:
    return f"{technician.name} <{technician.email}>"


def email_taken(db: Session, email: str, but: Technician | None = None) -> bool:
    query = select(Technician.id).where(func.lower(Technician.email) == email.lower())
    if but is not None:
        query = query.where(Technician.id != but.id)
    return db.scalar(query) is not None


def one_time_password() -> str:
    return secrets.token_urlsafe(12)


def create_technician(
    db: Session,
    actor: Technician,
    *,
    name: str,
    email: str,
    role: str,
    group: TechnicianGroup | None,
    password: str,
    password_method: str,
) -> Technician:
    """A new technician who must choose a password at first log-in."""
    if email_taken(db, email):
        raise AdminRefused("email_taken")
    technician = Technician(
        name=name, email=email, role=role, group=group, password_change_required=True
    )
    technician.set_password(password, password_method)
    db.add(technician)
    db.flush()
    audit(db, actor, "technician", _log_name(technician), "created", None, role)
    if group is not None:
        audit(db, actor, "technician", _log_name(technician), "group", None, group.name)
    return technician


def update_technician(
    db: Session,
    actor: Technician,
    technician: Technician,
    *,
    name: str,
    email: str,
    role: str,
    group: TechnicianGroup | None,
) -> list[str]:
    """Change what differs; return the changed fields' names."""
    if email_taken(db, email, but=technician):
        raise AdminRefused("email_taken")
    if technician.id == actor.id and role != ROLE_ADMIN:
        raise AdminRefused("own_role")
    target = _log_name(technician)
    changes = {
        "name": (technician.name, name),
        "email": (technician.email, email),
        "role": (technician.role, role),
        "group": (
            technician.group.name if technician.group else None,
            group.name if group else None,
        ),
    }
    changed = [key for key, (old, new) in changes.items() if old != new]
    for key in changed:
        audit(db, actor, "technician", target, key, *changes[key])
    technician.name, technician.email, technician.role = name, email, role
    technician.group = group
    db.flush()
    return changed


def reset_password(
    db: Session, actor: Technician, technician: Technician, password: str, method: str
) -> None:
    """A new one-time password, to be changed at the next log-in (the value is not logged)."""
    technician.set_password(password, method)
    technician.password_change_required = True
    audit(db, actor, "technician", _log_name(technician), "password", None, "reset")
    db.flush()


def end_all_logins(db: Session, actor: Technician, technician: Technician) -> None:
    """Audit "Log out everywhere" (lens.auth.revocation ends the log-ins; the view calls it)."""
    audit(db, actor, "technician", _log_name(technician), "logins", None, "ended")
    db.flush()


def reset_second_factor(db: Session, actor: Technician, technician: Technician) -> None:
    """Turn the technician's two-step verification off (a lost phone); an admin enrols again."""
    if technician.id == actor.id:
        raise AdminRefused("own_second_factor")
    if not technician.has_second_factor:
        raise AdminRefused("no_second_factor")
    disenrol(db, technician)
    audit(db, actor, "technician", _log_name(technician), "two_step", "on", "off")
    db.flush()


def deactivate(
    db: Session,
    actor: Technician,
    technician: Technician,
    hand_to: Technician | None,
    now: datetime,
) -> list[LensSession]:
    """Deactivate: no log-in any more; their live sessions handed on or ended.

    Sessions that can be transferred (waiting, active, on hold) go to `hand_to` when one
    is chosen; the others (not yet joined, or without a receiver) are ended. Returns the
    sessions whose media the caller must stop.
    """
    if technician.id == actor.id:
        raise AdminRefused("own_account")
    if not technician.active:
        raise AdminRefused("inactive")
    if hand_to is not None and (not hand_to.active or hand_to.id == technician.id):
        raise AdminRefused("bad_receiver")
    touched = []
    live = db.scalars(
        select(LensSession).where(
            LensSession.technician_id == technician.id, LensSession.state.in_(LIVE_STATES)
        )
    )
    for lens_session in list(live):
        if hand_to is not None and lens_session.state in TRANSFERABLE:
            lifecycle.transfer_session(db, lens_session, technician, hand_to, now)
        else:
            lifecycle.end_session(
                db,
                lens_session,
                actor=f"admin:{actor.id}",
                reason="technician_deactivated",
                now=now,
            )
        touched.append(lens_session)
    technician.active = False
    technician.deactivated_at = now
    audit(db, actor, "technician", _log_name(technician), "active", "yes", "no")
    db.flush()
    return touched


def reactivate(db: Session, actor: Technician, technician: Technician) -> None:
    if technician.active:
        raise AdminRefused("active")
    technician.active = True
    technician.deactivated_at = None
    audit(db, actor, "technician", _log_name(technician), "active", "no", "yes")
    db.flush()


def technicians_overview(db: Session, now: datetime) -> list[dict]:
    """Every technician with their group, whether online now and their live session."""
    live = {
        s.technician_id: s
        for s in db.scalars(select(LensSession).where(LensSession.state.in_(HANDLING_STATES)))
    }
    rows = []
    for technician in db.scalars(select(Technician).order_by(Technician.name)):
        seen = technician.last_seen_at
        rows.append(
            {
                "technician": technician,
                "online": technician.active and seen is not None and now - seen <= ONLINE_WITHIN,
                "live_session": live.get(technician.id),
            }
        )
    return rows


# ----- groups ---------------------------------------------------------------------------


def recording_choice(permissions: Iterable[str]) -> str:
    permissions = set(permissions)
    if features.RECORDING not in permissions:
        return RECORDING_OFF
    return RECORDING_FORCED if features.RECORDING_FORCED in permissions else RECORDING_ALLOWED


def group_permissions(switches_on: Iterable[str], recording: str) -> list[str]:
    """The stored permission list for the submitted switches and recording choice."""
    chosen = {s for s in switches_on if s in SWITCHES}
    if recording in (RECORDING_ALLOWED, RECORDING_FORCED):
        chosen.add(features.RECORDING)
    if recording == RECORDING_FORCED:
        chosen.add(features.RECORDING_FORCED)
    chosen.add(features.REPORTING)  # a console's feature; groups do not switch it
    return sorted(chosen)


def save_group(
    db: Session,
    actor: Technician,
    group: TechnicianGroup | None,
    name: str,
    permissions: list[str],
) -> TechnicianGroup:
    """Create or change a group; each switch turned on or off is audited."""
    taken = select(TechnicianGroup.id).where(func.lower(TechnicianGroup.name) == name.lower())
    if group is not None:
        taken = taken.where(TechnicianGroup.id != group.id)
    if db.scalar(taken) is not None:
        raise AdminRefused("group_taken")
    if group is None:
        group = TechnicianGroup(name=name, permissions=permissions)
        db.add(group)
        db.flush()
        audit(db, actor, "group", name, "created", None, ", ".join(permissions))
        return group
    if group.name != name:
        audit(db, actor, "group", group.name, "name", group.name, name)
        group.name = name
    old = set(group.permissions or ())
    new = set(permissions)
    for switch in SWITCHES:
        if (switch in old) != (switch in new):
            audit(db, actor, "permission", name, switch, _on(switch in old), _on(switch in new))
    if recording_choice(old) != recording_choice(new):
        audit(
            db, actor, "permission", name, "recording", recording_choice(old), recording_choice(new)
        )
    group.permissions = sorted(new)
    db.flush()
    return group


def delete_group(db: Session, actor: Technician, group: TechnicianGroup) -> None:
    """Delete an empty group."""
    if group.technicians:
        raise AdminRefused("group_in_use")
    audit(db, actor, "group", group.name, "deleted", ", ".join(group.permissions or ()), None)
    db.delete(group)
    db.flush()


def _on(value: bool) -> str:
    return "on" if value else "off"
