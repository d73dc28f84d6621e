"""Security headers on every response: what a page may load, run, frame and use (SECURITY.md).

One after-request hook sets them all, on pages, HTMX partials, error pages, files and
static files alike:

- Content-Security-Policy: scripts, styles, fonts and connections only from this site (no
  inline script or style, no eval; the templates carry no inline handler, tests/security
  checks them); images also from the company logo's origin; sockets to this site's own
  ws(s):; nothing may frame a page (`frame-ancestors 'none'`, and X-Frame-Options for
  browsers that predate it), so End session or Transfer cannot be clicked through a frame.
- Permissions-Policy: camera and microphone are off, except on the pages in DEVICE_PAGES.
- Strict-Transport-Security when the request came over HTTPS (LENS_HSTS_SECONDS).
- X-Content-Type-Options, Referrer-Policy, Cross-Origin-Opener-Policy and
  Cross-Origin-Resource-Policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from flask import Flask, Request, Response, g, request

# The pages that may use the phone's or the computer's devices, and which. The customer's
# session page asks for the rear camera and the microphone (customer.js); both consoles'
# page asks for the technician's microphone for two-way audio (console-media.js). The
# steps and panels that HTMX loads into these pages run in them, under their policy.
DEVICE_PAGES: Mapping[str, tuple[str, ...]] = {
    "customer.session_page": ("camera", "microphone"),
    "technician_console.index": ("microphone",),
    "web_console.index": ("microphone",),
}

# Powerful features that no page of Lens uses: switched off for the page and any frame.
# (Only names Chromium knows: an unknown one is a console error on every page.)
UNUSED_FEATURES = (
    "accelerometer",
    "display-capture",
    "geolocation",
    "gyroscope",
    "hid",
    "magnetometer",
    "midi",
    "payment",
    "serial",
    "usb",
)
DEVICES = ("camera", "microphone")

# same-origin, not no-referrer: Flask-WTF's CSRF check refuses an HTTPS form post that
# carries no Referer (WTF_CSRF_SSL_STRICT); other sites get no referrer at all (a join
# link's path never leaves the site).
REFERRER_POLICY = "same-origin"


def init_app(app: Flask) -> None:
    """Set the headers on every response of the app; templates get the image_from filter."""

    app.jinja_env.filters["image_from"] = image_from

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        set_security_headers(response, request, app.config)
        return response


def set_security_headers(response: Response, req: Request, config: Mapping) -> None:
    """Put every security header on response (a header the view set itself is kept)."""
    headers = response.headers
    origins = tuple(g.get("lens_image_origins", ()))
    headers.setdefault("Content-Security-Policy", content_security_policy(req, origins))
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", REFERRER_POLICY)
    headers.setdefault("Permissions-Policy", permissions_policy(DEVICE_PAGES.get(req.endpoint)))
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    hsts = int(config.get("LENS_HSTS_SECONDS", 0))
    if req.is_secure and hsts > 0:
        headers.setdefault("Strict-Transport-Security", f"max-age={hsts}")


def content_security_policy(req: Request, image_origins: tuple[str, ...] = ()) -> str:
    """The policy of a page served for req; images may also come from image_origins."""
    # 'self' covers same-origin sockets in current browsers; older Safari needs ws(s):
    # spelled out. Scheme and host as the browser used them (behind a trusted proxy,
    # X-Forwarded-Proto says https: lens.network).
    socket_scheme = "wss" if req.is_secure else "ws"
    images = " ".join(("'self'", "data:", *image_origins))
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": images,  # data: for QR codes and icons drawn as data URIs
        "media-src": "'self'",  # recordings; live video is a MediaStream, not a URL
        "connect-src": f"'self' {socket_scheme}://{req.host}",
        "font-src": "'self'",
        "object-src": "'none'",
        "frame-src": "'none'",
        "worker-src": "'self'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def permissions_policy(devices: tuple[str, ...] | None) -> str:
    """Camera and microphone for this site only where `devices` names them; the rest off."""
    allowed = set(devices or ())
    parts = [f"{name}=(self)" if name in allowed else f"{name}=()" for name in DEVICES]
    parts += [f"{name}=()" for name in UNUSED_FEATURES]
    return ", ".join(parts)


def image_from(url: str) -> str:
    """Let this response's page show an image from url's site; returns url (a Jinja filter).

    A template that shows an image from elsewhere (the company logo) says so where it
    shows it: `{{ logo|image_from }}`; other pages keep images to this site."""
    parts = urlsplit(url or "")
    if parts.scheme in ("http", "https") and parts.netloc:
        origins = g.setdefault("lens_image_origins", [])
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in origins:
            origins.append(origin)
    return url
