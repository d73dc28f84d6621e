"""What a session may use: the one place it is decided (`features_of`, `require_feature`).

A session's feature set is the console in use ∩ the session's own console ∩ the
permissions of its technician's group, as they were when the session began (they are
copied onto the session, so an Admin Center change applies to sessions started after
it). The web views, the control sockets and the sidecar all ask `features_of` (the
sidecar receives its answer with the phone's leg); `require_feature` refuses with a 403.

The names here are shared with the media sidecar, which imports nothing else from the
web side; the functions import the models lazily for that reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lens.auth.models import Technician
    from lens.sessions.models import LensSession

# Tools inside a session.
CHAT = "chat"
DISPLAY_SETTINGS = "display_settings"
HOLD = "hold"
FREEZE_DRAWING = "freeze_drawing"
DEVICE_CONTROLS = "device_controls"  # the phone's flashlight and camera switch
SNAPSHOT = "snapshot"
RECORDING = "recording"
RECORDING_FORCED = "recording_forced"  # records from Start; the technician cannot stop it
TRANSFER = "transfer"
REPORTING = "reporting"  # the session appears in the Admin Center's reports

# What a technician may do at all: Lens sessions, each channel, each console.
SESSIONS = "sessions"
CHANNEL_PIN = "channel_pin"
CHANNEL_SMS = "channel_sms"
CHANNEL_EMAIL = "channel_email"
CHANNEL_LINK = "channel_link"
CONSOLE_TECHNICIAN = "console_technician"
CONSOLE_WEB = "console_web"

CHANNELS = {"pin": CHANNEL_PIN, "sms": CHANNEL_SMS, "email": CHANNEL_EMAIL, "link": CHANNEL_LINK}

SESSION_TOOLS = frozenset(
    {
        CHAT,
        DISPLAY_SETTINGS,
        HOLD,
        FREEZE_DRAWING,
        DEVICE_CONTROLS,
        SNAPSHOT,
        RECORDING,
        RECORDING_FORCED,
        TRANSFER,
        REPORTING,
    }
)
ACCESS = frozenset({SESSIONS, *CHANNELS.values(), CONSOLE_TECHNICIAN, CONSOLE_WEB})
# A new group's permissions, and those of a technician without a group: everything but
# forced recording (which is a choice, not a right).
ALL = (SESSION_TOOLS | ACCESS) - {RECORDING_FORCED}

TECHNICIAN_CONSOLE = "technician"
WEB_CONSOLE = "web"
CONSOLES = (TECHNICIAN_CONSOLE, WEB_CONSOLE)
CONSOLE_ACCESS = {TECHNICIAN_CONSOLE: CONSOLE_TECHNICIAN, WEB_CONSOLE: CONSOLE_WEB}

# What each console offers before the group narrows it (the product manual's
# "Beperkingen voor de Web Console": no chat, display settings, pause, capture,
# transfer or reporting there; the picture itself, freeze, drawing and the phone's
# flashlight and camera stay).
CONSOLE_FEATURES: dict[str, frozenset[str]] = {
    TECHNICIAN_CONSOLE: SESSION_TOOLS,
    WEB_CONSOLE: frozenset({FREEZE_DRAWING, DEVICE_CONTROLS}),
}


def permissions_of(technician: Technician) -> frozenset[str]:
    """The technician's group's permissions now (every permission without a group)."""
    group = technician.group
    return group.permission_set() if group is not None else ALL


def session_permissions(lens_session: LensSession) -> frozenset[str]:
    """The permissions copied onto the session when it began (older sessions: the group's now)."""
    if lens_session.permissions is None:
        return permissions_of(lens_session.technician)
    return frozenset(lens_session.permissions)


def console_features(console: str, permissions: frozenset[str]) -> frozenset[str]:
    """The tools `console` offers to someone with `permissions`."""
    if SESSIONS not in permissions or CONSOLE_ACCESS.get(console) not in permissions:
        return frozenset()
    granted = CONSOLE_FEATURES.get(console, frozenset()) & permissions
    if RECORDING not in granted:
        granted -= {RECORDING_FORCED}
    return granted


def features_of(lens_session: LensSession, console_in_use: str) -> frozenset[str]:
    """What may be used in this session from `console_in_use`: the one rule."""
    permissions = session_permissions(lens_session)
    return console_features(console_in_use, permissions) & console_features(
        lens_session.console, permissions
    )


def started_in(lens_session: LensSession) -> str:
    """The console the session was last started from (its own console before any Start)."""
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    from lens.sessions.models import SessionEvent

    db = object_session(lens_session)
    data = None
    if db is not None:
        data = db.scalar(
            select(SessionEvent.data)
            .where(SessionEvent.session_id == lens_session.id, SessionEvent.kind == "start")
            .order_by(SessionEvent.id.desc())
            .limit(1)
        )
    console = data.get("console") if isinstance(data, dict) else None
    return console if console in CONSOLES else lens_session.console


def customer_features(lens_session: LensSession) -> frozenset[str]:
    """What the phone offers and may send: the session as seen from the console it was
    started in (the phone knows no console in use; a session started in the Web Console
    shows the customer no chat that the technician could not read)."""
    return features_of(lens_session, started_in(lens_session))


def technician_may(technician: Technician, console: str, permission: str) -> bool:
    """Whether the technician may use `console` and, in it, `permission` (e.g. a channel)."""
    permissions = permissions_of(technician)
    if SESSIONS not in permissions or CONSOLE_ACCESS.get(console) not in permissions:
        return False
    return permission in permissions or permission in console_features(console, permissions)


def refusal(feature: str, *consoles: str) -> str:
    """Why a tool is refused in `consoles` (in use, the session's), in the technician's words."""
    from flask_babel import gettext as _

    offered = SESSION_TOOLS.intersection(*(CONSOLE_FEATURES.get(c, frozenset()) for c in consoles))
    if feature in SESSION_TOOLS and feature not in offered:
        if feature == SNAPSHOT:
            return _("The Web Console has no screen capture. Use the Technician Console.")
        if feature in (RECORDING, RECORDING_FORCED):
            return _("The Web Console has no recording. Use the Technician Console.")
        return _("This tool is not available in this session.")
    if feature == SNAPSHOT:
        return _("Your group is not permitted to use screen capture.")
    if feature == RECORDING:
        return _("Your group is not permitted to record sessions.")
    if feature == RECORDING_FORCED:
        return _("Your group records every session; recording cannot be stopped.")
    if feature in ACCESS:
        return _("Your group is not permitted to do this. Ask your administrator.")
    return _("This tool is not available in this session.")


def require_feature(feature: str, lens_session: LensSession | None = None) -> None:
    """Refuse the request (403, with a clear message) unless `feature` may be used.

    With a session: `features_of(session, console in use)`. Without one: the signed-in
    technician's permissions in the console in use (Lens sessions, a channel, a console).
    The console in use is the one whose blueprint serves the request (`g.console`).
    """
    from flask import abort, g, make_response
    from flask_login import current_user

    from lens.errors import render_error

    console = g.get("console") or (lens_session.console if lens_session else TECHNICIAN_CONSOLE)
    if lens_session is not None:
        if feature not in features_of(lens_session, console):
            message = refusal(feature, console, lens_session.console)
            abort(make_response(render_error(403, message)))
    elif not technician_may(current_user, console, feature):
        abort(make_response(render_error(403, refusal(feature, console))))
