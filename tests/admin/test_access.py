"""The Admin Center is for administrators: every route, found in the URL map, refuses others."""

from __future__ import annotations

from flask import Flask

from tests.conftest import Console, add_admin, csrf_from, totp_code

SAMPLE_VALUES = {"ext": "webm", "file_format": "csv", "key": "LENS_PIN_VALIDITY_MINUTES"}


def admin_requests(app: Flask) -> list[tuple[str, str]]:
    """(method, URL) for every Admin Center rule: a new admin route is covered by itself."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        values = {arg: SAMPLE_VALUES.get(arg, 1) for arg in rule.arguments}
        with app.test_request_context():
            from flask import url_for

            url = url_for(rule.endpoint, **values)
        found += [(method, url) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return found


def test_the_url_map_has_the_admin_center(app):
    urls = {url for _, url in admin_requests(app)}
    assert {"/admin/technicians", "/admin/groups", "/admin/settings", "/admin/reports"} <= urls
    assert len(admin_requests(app)) >= 25


def test_a_technician_gets_403_on_every_admin_route(app, console):
    token = csrf_from(console.client.get("/console/").text)
    for method, url in admin_requests(app):
        response = console.client.open(
            url, method=method, data={"csrf_token": token}, headers={"X-CSRFToken": token}
        )
        assert response.status_code == 403, (method, url, response.status_code)


def test_someone_logged_out_is_sent_to_log_in(app, client):
    for method, url in admin_requests(app):
        if method != "GET":
            continue
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.location, url


def test_an_administrator_sees_every_page(app, client):
    ada = add_admin(app)
    Console(client).login("ada@example.com", code=lambda: totp_code(app, ada))
    for method, url in admin_requests(app):
        if method == "GET" and "/1" not in url and "." not in url.rsplit("/", 1)[-1]:
            assert client.get(url, follow_redirects=True).status_code == 200, url


def test_a_change_without_the_csrf_token_is_refused(app, admin):
    response = admin.client.post("/admin/groups/new", data={"name": "Field team"})
    assert response.status_code == 400
    assert "Reload the page" in response.text
