"""The web process on real networks: trusted proxies, and the ICE servers a page gets.

LENS_TRUSTED_PROXIES  how many proxies in front of Lens append to X-Forwarded-For /
                      set X-Forwarded-Proto (0: none, the default; 1: nginx or Caddy)
LENS_ICE_SERVERS      JSON list of RTCIceServer objects (STUN and TURN URLs)
LENS_TURN_SECRET      coturn's static-auth-secret: TURN entries get credentials made
                      from it per page (lens.turn), valid LENS_TURN_TTL seconds
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from lens.turn import ice_servers_for, is_turn_server


def init_app(app: Flask) -> None:
    """Trust X-Forwarded-For/-Proto from exactly LENS_TRUSTED_PROXIES hops."""
    hops = app.config.get("LENS_TRUSTED_PROXIES", 0)
    if hops:
        # Only the headers a proxy sets or appends: X-Forwarded-Host/-Port would be the
        # client's own if the proxy passed them through.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0)


def check_ice_settings(servers: Any, turn_secret: str) -> None:
    """Refuse ICE settings that would put a TURN password in pages, or cannot work."""
    if not isinstance(servers, list) or not all(
        isinstance(s, dict) and "urls" in s for s in servers
    ):
        raise RuntimeError("LENS_ICE_SERVERS must be a JSON list of objects with 'urls'")
    for server in servers:
        if not is_turn_server(server):
            continue
        if "credential" in server or "username" in server:
            raise RuntimeError(
                "LENS_ICE_SERVERS: a TURN entry carries a username/credential, which every "
                "customer's page would receive; remove it and set LENS_TURN_SECRET (coturn's "
                "static-auth-secret) so each page gets a short-lived one"
            )
        if not turn_secret:
            raise RuntimeError(
                "LENS_ICE_SERVERS lists a TURN server: set LENS_TURN_SECRET to coturn's "
                "static-auth-secret"
            )


def page_ice_servers(config: Mapping[str, Any], who: str) -> list[dict[str, Any]]:
    """The ICE servers for one page of one session, TURN credentials made for `who`."""
    servers = config.get("LENS_ICE_SERVERS") or []
    secret = config.get("LENS_TURN_SECRET") or ""
    if not secret:
        return [s for s in servers if not is_turn_server(s)]
    return ice_servers_for(servers, secret, who, int(config.get("LENS_TURN_TTL", 21600)))
