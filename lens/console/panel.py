"""The selected session's panel, rendered alike for a request and for a socket push."""

from __future__ import annotations

from flask import render_template

from lens.admin.settings import ice_config
from lens.captures.records import session_captures
from lens.chat.setup import chat_history
from lens.controls.state import ToolState
from lens.extensions import db
from lens.features import features_of
from lens.network import page_ice_servers
from lens.sessions.models import LensSession


def render_panel(lens_session: LensSession, console: str, technician_id: int) -> str:
    """The panel's HTML: head, video, tools by `features_of(session, console)`, log."""
    who = f"s{lens_session.id}-technician{technician_id}"
    return render_template(
        "console/_session_detail.html",
        s=lens_session,
        features=features_of(lens_session, console),
        chat_messages=chat_history(lens_session.id),
        captures=session_captures(db.session, lens_session.id),
        tools=ToolState.from_column(lens_session.tools),
        oob=False,
        ice_servers=page_ice_servers(ice_config(), who) if lens_session.is_live else [],
    )
