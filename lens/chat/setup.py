"""Wire chat into an app: its model, its control handler, the helpers its templates use."""

from __future__ import annotations

import importlib

from flask import Flask, current_app

from lens.chat.models import ChatMessage, session_chat
from lens.chat.text import chat_presets, linkify
from lens.extensions import db
from lens.features import allowed_features
from lens.sessions.models import LensSession


def chat_history(lens_session: LensSession) -> list[ChatMessage]:
    return list(db.session.scalars(session_chat(lens_session.id)))


def session_features(lens_session: LensSession) -> frozenset[str]:
    """What the session's technician may do in it (the phone's page offers chat by it)."""
    return allowed_features(lens_session.console, lens_session.technician.group_permissions())


def init_app(app: Flask) -> None:
    """Register the chat control handler and the template helpers.

    Helpers: chat_history(s), chat_presets(), session_features(s), the |chat_text filter.
    """
    importlib.import_module("lens.chat.channel")  # @on_control("chat") stores messages
    app.jinja_env.globals.update(
        chat_history=chat_history,
        chat_presets=lambda: chat_presets(current_app.config),
        session_features=session_features,
    )
    app.jinja_env.filters["chat_text"] = linkify
