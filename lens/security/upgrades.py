"""What a WebSocket upgrade must pass before it happens: the page's origin.

A browser sends cookies with a WebSocket handshake whatever page opened it, so any site a
logged-in technician visits could open `/console/ws` in their name (cross-site WebSocket
hijacking): SameSite=Lax does not stop it for a site on the same registrable domain, and
older browsers send the cookie anyway. Browsers always send `Origin` on a WebSocket
handshake; it must be this site's own (or one in LENS_ALLOWED_ORIGINS), or the answer is
403 and no socket. A handshake without `Origin` is not a browser's: it has no victim's
cookies to ride on and is served as any client is (it still needs a log-in or a join).

The handshake's compression offer is dropped too: permessage-deflate would let a 64 KiB
frame inflate to 64 MB before the message-size limit saw it (a "zip bomb"), and what the
pages send is small.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, request

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize_origin(value: str) -> str | None:
    """`scheme://host[:port]`, lower case, the default port left out; None if not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if scheme == "ws":
        scheme = "http"
    elif scheme == "wss":
        scheme = "https"
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def site_origins(host_url: str, configured: Iterable[str], base_url: str = "") -> set[str]:
    """This site's origins: the one the request was made to, LENS_BASE_URL's, the listed ones."""
    origins = {normalize_origin(host_url), normalize_origin(base_url)}
    origins.update(normalize_origin(origin) for origin in configured)
    origins.discard(None)
    return origins  # type: ignore[return-value]


def origin_allowed(origin: str | None, allowed: set[str]) -> bool:
    """A handshake without Origin is not a browser's; with one, it must be the site's own."""
    if origin is None:
        return True
    normalized = normalize_origin(origin)  # "null" (a sandboxed page, a file) is never allowed
    return normalized is not None and normalized in allowed


def check_upgrade() -> None:
    """Before a WebSocket route runs: refuse a foreign page (403), drop compression offers."""
    rule = request.url_rule
    if rule is None or not getattr(rule, "websocket", False):
        return
    config = current_app.config
    allowed = site_origins(
        request.host_url, config["LENS_ALLOWED_ORIGINS"], config.get("LENS_BASE_URL", "")
    )
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, allowed):
        log.warning(
            "WebSocket from a foreign page refused: Origin %r is not one of %s "
            "(behind a proxy: set LENS_TRUSTED_PROXIES or LENS_ALLOWED_ORIGINS)",
            origin[:200],
            ", ".join(sorted(allowed)),
        )
        abort(403)
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


def init_app(app: Flask) -> None:
    """Check every upgrade before the log-in, join and rate-limit checks (registered first)."""
    app.before_request(check_upgrade)
