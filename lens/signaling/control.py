"""The web process's client of the media sidecar's control API (loopback, shared secret)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import requests


class MediaError(Exception):
    """The sidecar could not do what was asked."""


class MediaUnavailable(MediaError):
    """The sidecar did not answer (down, restarting, or too slow)."""


class MediaRefused(MediaError):
    """The sidecar refused the request (e.g. a feature the session may not use)."""


class MediaRejected(MediaRefused):
    """The sidecar could not use what was sent (400: e.g. an offer it cannot parse)."""


class MediaControl:
    """Calls to one sidecar."""

    def __init__(self, base_url: str, secret: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = requests.Session()
        self._http.headers["Authorization"] = f"Bearer {secret}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(
                method, self.base_url + path, json=body, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise MediaUnavailable(str(exc)) from exc
        if response.status_code in (400, 422):
            raise MediaRejected(_error_text(response))
        if response.status_code in (401, 403, 409):
            raise MediaRefused(_error_text(response))
        if response.status_code == 404:
            return {}
        if response.status_code >= 400:
            raise MediaUnavailable(_error_text(response))
        return response.json() if response.content else {}

    def publisher_offer(
        self,
        session_id: int,
        offer: dict[str, str],
        features: Iterable[str],
        ice_servers: list[dict[str, Any]] | None = None,
    ) -> dict[str, str]:
        """The phone's offer; returns the sidecar's answer. `ice_servers`: the site's
        STUN/TURN servers (the Admin Center's setting) for the sidecar's side of the leg."""
        body = {"sdp": offer["sdp"], "type": offer["type"], "features": sorted(features)}
        if ice_servers is not None:
            body["ice_servers"] = ice_servers
        return self._call("POST", f"/sessions/{session_id}/publisher", body)

    def subscriber_offer(
        self,
        session_id: int,
        offer: dict[str, str],
        ice_servers: list[dict[str, Any]] | None = None,
    ) -> dict[str, str]:
        """The technician's offer; returns the sidecar's answer."""
        body: dict[str, Any] = {"sdp": offer["sdp"], "type": offer["type"]}
        if ice_servers is not None:
            body["ice_servers"] = ice_servers
        return self._call("POST", f"/sessions/{session_id}/subscriber", body)

    def hold(self, session_id: int) -> None:
        self._call("POST", f"/sessions/{session_id}/hold")

    def resume(self, session_id: int) -> None:
        self._call("POST", f"/sessions/{session_id}/resume")

    def close(self, session_id: int) -> None:
        """Tear both legs down."""
        self._call("DELETE", f"/sessions/{session_id}")

    def state(self, session_id: int) -> dict[str, Any]:
        return self._call("GET", f"/sessions/{session_id}")

    def snapshot(self, session_id: int) -> tuple[bytes, int, int]:
        """The current video frame at full resolution: PNG bytes, width, height."""
        try:
            response = self._http.post(
                f"{self.base_url}/sessions/{session_id}/snapshot", timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise MediaUnavailable(str(exc)) from exc
        if response.status_code in (401, 403, 404, 409):
            raise MediaRefused(_error_text(response))
        if response.status_code != 200 or response.headers.get("Content-Type") != "image/png":
            raise MediaUnavailable(_error_text(response))
        width = int(response.headers["X-Width"])
        height = int(response.headers["X-Height"])
        return response.content, width, height

    def recording(self, session_id: int, action: str, path: str | None = None) -> dict[str, Any]:
        """Start (into `path`, under the recordings folder) or stop recording the session."""
        body: dict[str, Any] = {"action": action}
        if path is not None:
            body["path"] = path
        reply = self._call("POST", f"/sessions/{session_id}/recording", body)
        if not reply:
            raise MediaRefused("the session has no media")
        return reply


def _error_text(response: requests.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text[:200]
