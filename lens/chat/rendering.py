"""A chat line as HTML, for the page that shows it (pushes and history share one partial)."""

from __future__ import annotations

from typing import Any

from flask import render_template


def render_chat_line(message: dict[str, Any], viewer: str) -> str:
    """One chat line (a published chat message) as the viewer's page shows it."""
    line = {
        "id": message.get("id"),
        "author": message.get("author"),
        "author_name": message.get("name") or None,
        "text": message.get("text", ""),
    }
    return render_template("chat/_chat_line.html", m=line, viewer=viewer).strip()
