"""Wire chat into an app: its control handler and the helpers its templates use."""

from __future__ import annotations

from flask import Flask, current_app

from lens.chat.channel import store_chat
from lens.chat.models import ChatMessage, session_chat
from lens.chat.text import chat_presets, linkify
from lens.controls.channel import control_handlers
from lens.extensions import db


def chat_history(session_id: int) -> list[ChatMessage]:
    """The session's chat, oldest first (views pass it to the pages)."""
    return list(db.session.scalars(session_chat(session_id)))


def init_app(app: Flask) -> None:
    """Store chat messages as they pass the control channel; the template helpers.

    Helpers: chat_presets() (settings only, no database), the |chat_text filter.
    """
    control_handlers(app).add("chat", store_chat, echo=True)
    app.jinja_env.globals.update(chat_presets=lambda: chat_presets(current_app.config))
    app.jinja_env.filters["chat_text"] = linkify
