"""Chat text on a page: escaped, with http(s) URLs as safe links; the one-click presets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask_babel import gettext as _
from markupsafe import Markup, escape

URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)


def safe_url(candidate: str) -> str | None:
    """The URL if it is an http(s) address with a host, else None."""
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return candidate


def linkify(text: str) -> Markup:
    """Escaped text in which http(s) URLs are links that open in a new tab, never with opener."""
    pieces: list[str] = []
    last = 0
    for match in URL.finditer(text):
        url = match.group(0).rstrip(".,;:!?)")
        end = match.start() + len(url)
        pieces.append(escape(text[last : match.start()]))
        if safe_url(url):
            pieces.append(
                Markup('<a href="{0}" target="_blank" rel="noopener noreferrer">{0}</a>').format(
                    url
                )
            )
        else:
            pieces.append(escape(url))
        last = end
    pieces.append(escape(text[last:]))
    return Markup("").join(pieces)


def default_presets() -> list[str]:
    return [
        _("Please point your camera at the problem."),
        _("Please hold your phone steady."),
        _("Please move a little closer."),
        _("Please turn on more light, or move to a brighter place."),
        _("Thank you, I can see it now."),
    ]


def chat_presets(config: Mapping[str, Any]) -> list[str]:
    """The predefined messages and URLs: LENS_CHAT_PRESETS, or translated defaults."""
    configured = config.get("LENS_CHAT_PRESETS") or ()
    return list(configured) or default_presets()
