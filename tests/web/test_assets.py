"""Static files: hashed names, long cache lifetimes, compressed bodies; compressed phone pages."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import brotli

from lens import ROOT
from lens.assets import StaticAssets

HTMX = "vendor/htmx-2.0.11.min.js"


def digest(name: str) -> str:
    return hashlib.sha256((ROOT / "static" / name).read_bytes()).hexdigest()[:10]


def test_pages_name_static_files_by_their_hash(client):
    page = client.get("/").text
    assert f'src="/static/{digest(HTMX)}/{HTMX}"' in page
    assert f'href="/static/{digest("css/lens.css")}/css/lens.css"' in page


def test_a_hashed_file_is_cached_for_a_year_and_compressed_as_the_browser_accepts(client):
    url = f"/static/{digest(HTMX)}/{HTMX}"
    original = (ROOT / "static" / HTMX).read_bytes()

    br = client.get(url, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert br.status_code == 200
    assert br.headers["Content-Encoding"] == "br"
    assert brotli.decompress(br.data) == original
    assert len(br.data) < len(original) / 3
    assert "max-age=31536000" in br.headers["Cache-Control"]
    assert "immutable" in br.headers["Cache-Control"]
    assert "Accept-Encoding" in br.headers["Vary"]

    gz = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert gz.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(gz.data) == original

    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert plain.data == original

    preferred = client.get(url, headers={"Accept-Encoding": "br;q=0.5, gzip;q=1"})
    assert preferred.headers["Content-Encoding"] == "gzip"


def test_a_file_without_its_hash_is_revalidated(client):
    plain = client.get("/static/js/customer.js", headers={"Accept-Encoding": "gzip"})
    assert plain.status_code == 200
    assert plain.headers["Cache-Control"] == "no-cache"
    etag = plain.headers["ETag"]
    again = client.get(
        "/static/js/customer.js", headers={"Accept-Encoding": "gzip", "If-None-Match": etag}
    )
    assert again.status_code == 304

    stale = client.get("/static/0123456789/js/customer.js")  # a page from before a deploy
    assert stale.status_code == 200
    assert stale.headers["Cache-Control"] == "no-cache"


def test_nothing_outside_the_static_folder_is_served(client):
    for path in (
        "/static/../lens/config.py",
        f"/static/{digest(HTMX)}/../lens/config.py",
        "/static/%2e%2e/lens/config.py",
        "/static/js/nothing.js",
    ):
        assert client.get(path).status_code == 404, path


def test_a_changed_file_gets_a_new_name(tmp_path: Path):
    (tmp_path / "js").mkdir()
    script = tmp_path / "js" / "a.js"
    script.write_text("let a = 1;\n")
    assets = StaticAssets(tmp_path)
    first = assets.url_name("js/a.js")
    assert re.fullmatch(r"[0-9a-f]{10}/js/a\.js", first)
    script.write_text("let a = 2; // changed\n")
    second = assets.url_name("js/a.js")
    assert second != first
    found, current = assets.resolve(second)
    assert current and found.body == b"let a = 2; // changed\n"
    assert assets.resolve(first)[1] is False  # the old name: today's file, not for keeps
    assert assets.url_name("js/missing.js") == "js/missing.js"


def test_pages_name_the_files_scripts_fetch_later(client):
    page = client.get("/").text
    meta = re.search(r'<meta name="lens-static" content="([^"]+)"', page).group(1)
    assert f"/static/{digest('js/drawing.js')}/js/drawing.js" in meta


def test_the_customers_pages_are_compressed_the_technicians_are_not(client, console):
    phone = client.get("/", headers={"Accept-Encoding": "gzip, br"})
    assert phone.headers.get("Content-Encoding") == "br"
    assert "Join a support session" in brotli.decompress(phone.data).decode()
    # the console carries join links and PINs beside text from the URL: never compressed
    technician = console.client.get("/console/", headers={"Accept-Encoding": "gzip, br"})
    assert technician.status_code == 200
    assert "Content-Encoding" not in technician.headers


def test_a_static_file_does_not_vary_by_the_session_cookie(console):
    response = console.client.get(f"/static/{digest(HTMX)}/{HTMX}")
    assert response.status_code == 200
    assert "Cookie" not in response.headers.get("Vary", "")
    assert "Set-Cookie" not in response.headers
    assert "Cookie" in console.client.get("/console/").headers.get("Vary", "")  # pages do
