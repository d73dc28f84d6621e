"""How much a request may carry, refused by its Content-Length before anything reads it.

Werkzeug enforces MAX_CONTENT_LENGTH only when the body is read (the form, the JSON), and
the CSRF check and the rate limits' keys read the form before a view runs: a 50 MB PIN
field cost seconds of CPU to parse even when the answer was 429. This check runs before
them and looks at the header alone. A body sent without a length (chunked) is refused
too (411): Werkzeug would read it up to the limit and silently drop the rest, and browsers
always say how long a form is. Socket messages have their own limit
(LENS_SOCKET_MAX_MESSAGE, lens.sockets).
"""

from __future__ import annotations

from flask import Flask, abort, current_app, request

# The one route that takes a larger body, and the setting that bounds it instead: the phone's
# full-resolution photo (lens.captures.photos), sent as the picture itself.
LARGER_BODIES = {"customer.upload_photo": "LENS_PHOTO_MAX_BYTES"}


def body_limit() -> int | None:
    """The largest body this request may carry (MAX_CONTENT_LENGTH but for LARGER_BODIES)."""
    setting = LARGER_BODIES.get(request.endpoint or "")
    if setting is not None:
        return current_app.config[setting]
    return current_app.config.get("MAX_CONTENT_LENGTH")


def refuse_large_bodies() -> None:
    """413 for a request whose declared body is over its limit, before it is read; 411 for
    a body of no declared length."""
    limit = body_limit()
    if limit != current_app.config.get("MAX_CONTENT_LENGTH"):
        request.max_content_length = limit  # what Werkzeug lets be read of this one
    length = request.content_length
    if length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        abort(411)
    if limit is not None and length is not None and length > limit:
        abort(413)


def size_text(size: int) -> str:
    """A size for a message: "1 MB", "64 KB"."""
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MB"
    if size >= 1024:
        return f"{size // 1024} KB"
    return f"{size} B"


def init_app(app: Flask) -> None:
    """Registered before the CSRF check and the rate limits, which read the form."""
    app.before_request(refuse_large_bodies)
