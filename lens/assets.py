"""Static files for phones on slow links: hashed names, long cache lifetimes, compressed bodies.

``url_for("static", filename="js/customer.js")`` gives ``/static/<hash>/js/customer.js``,
where <hash> is the start of the file's SHA-256: a changed file gets a new URL, so a browser
may keep each URL for a year without asking again (``immutable``). A URL without the hash
(a script that names a file itself), or with an old one (a page from before a deploy),
still gets the file as it is now, revalidated on each use (ETag, ``no-cache``).

Text files go out brotli- or gzip-compressed, whichever the browser prefers; each is
compressed once per process at the highest level and kept in memory (static/ holds a few
hundred KB). The hash is a path segment, not part of the file name, so scripts keep their
names (``drawing.js``) and a page tells its scripts the hashed URLs of the files they fetch
later (``lazy_static``).

The pages themselves are compressed by Flask-Compress, on the customer's pages only: the
technician's pages carry join links and PINs next to text an attacker can put in the URL
(BREACH), the phone's carry neither.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, abort, current_app, request, session, url_for
from werkzeug.security import safe_join

HASH_LENGTH = 10
HASHED_SEGMENT = re.compile(rf"[0-9a-f]{{{HASH_LENGTH}}}")
COMPRESSIBLE = frozenset({".js", ".css", ".svg", ".json", ".txt", ".map", ".md"})
ENCODINGS = ("br", "gzip")  # the server's order, for a browser that likes both as much
YEAR = 365 * 24 * 3600
# the files that scripts fetch later themselves (drawing.js, the tracker): their hashed
# URLs ride along in the page (layouts/base.html) so those fetches are cached too
LAZY_FILES = ("js/drawing.js", "js/anchors.js", "vendor/jsfeat-0.0.8.min.js")


@dataclass(frozen=True)
class Asset:
    """One file of static/ as it is now."""

    name: str  # relative to static/, with forward slashes
    digest: str  # SHA-256, hex
    body: bytes

    @property
    def hashed_name(self) -> str:
        return f"{self.digest[:HASH_LENGTH]}/{self.name}"

    @property
    def compressible(self) -> bool:
        return Path(self.name).suffix in COMPRESSIBLE


class StaticAssets:
    """The static folder's files by name, with their hashes and compressed bodies."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = str(Path(folder).resolve())
        self._lock = threading.Lock()
        self._files: dict[str, tuple[tuple[int, int], Asset]] = {}
        self._encoded: dict[tuple[str, str], bytes] = {}

    def asset(self, name: str) -> Asset | None:
        """The file now (read again only when its size or time changed); None if absent."""
        path = safe_join(self.folder, name)
        if path is None:
            return None
        try:
            stat = os.stat(path)
        except OSError:
            return None
        if not os.path.isfile(path):
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        known = self._files.get(name)
        if known is not None and known[0] == stamp:
            return known[1]
        body = Path(path).read_bytes()
        found = Asset(name, hashlib.sha256(body).hexdigest(), body)
        with self._lock:
            self._files[name] = (stamp, found)
        return found

    def url_name(self, name: str) -> str:
        """The name to put in a URL: with the file's hash in front when the file exists."""
        found = self.asset(name)
        return found.hashed_name if found is not None else name

    def resolve(self, requested: str) -> tuple[Asset | None, bool]:
        """The file a URL names, and whether the URL carried that file's current hash."""
        head, _slash, rest = requested.partition("/")
        if rest and HASHED_SEGMENT.fullmatch(head):
            found = self.asset(rest)
            if found is not None:
                return found, found.digest.startswith(head)
        return self.asset(requested), False

    def encoded(self, found: Asset, encoding: str | None) -> bytes:
        """The body in `encoding` (br, gzip; None: as stored), compressed once."""
        if encoding is None:
            return found.body
        key = (found.digest, encoding)
        body = self._encoded.get(key)
        if body is None:
            body = compress(found.body, encoding)
            with self._lock:
                self._encoded[key] = body
        return body


def compress(body: bytes, encoding: str) -> bytes:
    """`body` compressed at the highest level (a file is compressed once, sent many times)."""
    if encoding == "br":
        import brotli

        return brotli.compress(body, quality=11)
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=9, mtime=0)
    raise ValueError(f"unknown encoding {encoding!r}")


def choose_encoding(accepted) -> str | None:
    """The encoding to send for an Accept-Encoding header (werkzeug's parsed form)."""
    best, best_quality = None, 0.0
    for encoding in ENCODINGS:
        quality = accepted.quality(encoding)
        if quality > best_quality:
            best, best_quality = encoding, quality
    return best


def static_assets(app: Flask | None = None) -> StaticAssets:
    return (app or current_app).extensions["lens.assets"]


def serve_static(filename: str):
    """A static file: compressed as the browser accepts, cached for a year when hashed."""
    assets = static_assets()
    found, current = assets.resolve(filename)
    if found is None:
        abort(404)
    encoding = choose_encoding(request.accept_encodings) if found.compressible else None
    body = assets.encoded(found, encoding)
    mimetype = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
    response = current_app.response_class(body, mimetype=mimetype)
    if encoding is not None:
        response.headers["Content-Encoding"] = encoding
    if found.compressible:
        response.vary.add("Accept-Encoding")
    response.set_etag(found.digest[:32] + (f"-{encoding}" if encoding else ""))
    if current:
        response.cache_control.public = True
        response.cache_control.max_age = YEAR
        response.cache_control.immutable = True
    else:
        response.cache_control.no_cache = True
    return response.make_conditional(request)


def lazy_static() -> dict[str, str]:
    """The hashed URLs of the files scripts fetch later, for the page to hand them."""
    return {name: url_for("static", filename=name) for name in LAZY_FILES}


def init_app(app: Flask) -> None:
    """Serve static/ through `serve_static` and put the hash into every static URL."""
    assets = StaticAssets(app.static_folder)
    app.extensions["lens.assets"] = assets
    app.view_functions["static"] = serve_static

    @app.url_defaults
    def hashed_static_names(endpoint: str, values: dict) -> None:
        if endpoint == "static" and "filename" in values:
            values["filename"] = assets.url_name(values["filename"])

    app.jinja_env.globals["lazy_static"] = lazy_static

    # Registered before Flask-Login, so it runs after Flask-Login's hook, which looks at the
    # session on every response (whereupon Flask adds "Vary: Cookie"). A static file reads
    # no session; a year-long cached script must not be fetched again when the cookie changes.
    @app.after_request
    def static_files_ignore_the_cookie(response):
        if request.endpoint == "static":
            session.accessed = False
        return response
