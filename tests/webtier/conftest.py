"""The web process as users meet it (gunicorn, gevent worker) and browsers' HTTP sides."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
import urllib3

from tests.conftest import csrf_from
from tests.webserver import PASSWORD, WebServer

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the self-signed test cert


class Visitor:
    """One browser's HTTP side: its cookies, its CSRF token."""

    def __init__(self, server: WebServer) -> None:
        self.server = server
        self.http = requests.Session()  # verify=False per call: a CA bundle setting would win
        self.token = ""

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(
            self.server.base + path, allow_redirects=False, timeout=30, verify=False, **kwargs
        )

    def post(self, path: str, data: dict | None = None, **kwargs) -> requests.Response:
        headers = {"HX-Request": "true", "X-CSRFToken": self.token, **self.referer}
        return self.http.post(
            self.server.base + path, data=data or {}, headers=headers,
            allow_redirects=False, timeout=30, verify=False, **kwargs,
        )  # fmt: skip

    @property
    def referer(self) -> dict[str, str]:
        """Over HTTPS Flask-WTF checks that a form came from this site."""
        return {"Referer": self.server.base + "/"}

    @property
    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)

    def log_in(self, email: str = "tess@example.com") -> Visitor:
        self.token = csrf_from(self.get("/login").text)
        response = self.http.post(
            self.server.base + "/login",
            data={"email": email, "password": PASSWORD, "csrf_token": self.token},
            headers=self.referer, allow_redirects=False, timeout=30, verify=False,
        )  # fmt: skip
        assert response.status_code == 302, response.text
        self.token = csrf_from(self.get("/console/").text)
        return self

    def create_session(self, name: str = "Jane") -> str:
        response = self.post("/console/sessions", {"name": name})
        assert response.status_code == 201, response.text
        return re.search(r'data-pin="(\d{6})"', response.text).group(1)

    def join(self, pin: str) -> Visitor:
        self.token = csrf_from(self.get("/").text)
        response = self.http.post(
            self.server.base + "/", data={"pin": pin, "csrf_token": self.token},
            headers=self.referer, allow_redirects=False, timeout=30, verify=False,
        )  # fmt: skip
        assert response.status_code == 303, response.text
        return self


@pytest.fixture
def make_site(tmp_path) -> Iterator:
    """Start a web process (gunicorn + gevent) with a technician; settings as env vars."""
    started: list[WebServer] = []

    def make(tls: bool = False, **settings: str) -> WebServer:
        server = WebServer(tmp_path / f"site{len(started)}", tls=tls, **settings)
        server.prepare()
        server.add_technician("Tess Technician", "tess@example.com")
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
