"""Short-lived TURN credentials: the TURN REST API scheme coturn checks with use-auth-secret.

username = "<expiry unix time>:<who>", credential = base64(HMAC-SHA1(secret, username)).
coturn (static-auth-secret = the same secret) recomputes the credential and refuses it once
the expiry has passed, so a credential seen in a page is worth nothing after `ttl` seconds,
and no TURN password is ever written into a page. Used by the web process (per session,
for the phone and the technician) and by the sidecar (for its own relayed candidates);
plain Python, no Flask, no aiortc.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from typing import Any

_WHO = re.compile(r"[^A-Za-z0-9_.-]")


def turn_credentials(secret: str, who: str, ttl: int, now: float | None = None) -> tuple[str, str]:
    """(username, credential) valid for `ttl` seconds; `who` names the user in coturn's log."""
    if not secret:
        raise ValueError("a TURN secret is needed to make TURN credentials")
    expiry = int(time.time() if now is None else now) + ttl
    username = f"{expiry}:{_WHO.sub('-', who)[:64]}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def is_turn_server(server: dict[str, Any]) -> bool:
    """True if any URL of this RTCIceServer object is a turn: or turns: URL."""
    urls = server.get("urls", [])
    urls = urls if isinstance(urls, list) else [urls]
    return any(str(url).startswith(("turn:", "turns:")) for url in urls)


def ice_servers_for(
    servers: list[dict[str, Any]], secret: str, who: str, ttl: int, now: float | None = None
) -> list[dict[str, Any]]:
    """The ICE servers for one browser: TURN entries given fresh credentials for `who`.

    A TURN entry's configured username/credential is never passed on: the settings refuse
    static TURN passwords (they would reach every customer), so each gets a derived one."""
    result = []
    for server in servers:
        server = {k: v for k, v in server.items() if k not in ("username", "credential")}
        if is_turn_server(server):
            server["username"], server["credential"] = turn_credentials(secret, who, ttl, now)
        result.append(server)
    return result
