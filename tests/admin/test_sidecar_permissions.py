"""The sidecar refuses what a group's switches took away: the phone's leg carries
features_of(session), and hold, snapshots and recording are checked against it there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from lens import features
from lens.extensions import db
from lens.media.testing import encode_vp8_clip, start_phone, wait_until
from lens.sessions.models import LensSession
from tests.admin.test_forced_recording import sidecar_for
from tests.admin.test_permissions import make_group_in_admin_center, move_to_group
from tests.captures.conftest import session_id_of
from tests.media.conftest import SECRET, Sidecar

pytestmark = pytest.mark.media

# (switch turned off, the recording choice, the sidecar call, what the refusal names)
CALLS = {
    features.HOLD: ("allowed", ("POST", "/hold", None), "hold"),
    features.SNAPSHOT: ("allowed", ("POST", "/snapshot", None), "snapshot"),
    features.RECORDING: ("off", ("POST", "/recording", {"action": "start"}), "recording"),
}


@pytest.mark.parametrize("switch", list(CALLS))
def test_the_sidecar_refuses_a_switched_off_tool(app, admin, console, make_customer, switch):
    recording, (method, path, body), named = CALLS[switch]
    off = set() if switch == features.RECORDING else {switch}
    group_id = make_group_in_admin_center(app, admin, f"no {switch}", off, recording)
    move_to_group(app, admin, "tess@example.com", group_id)
    pin = console.create_session("Jane")["pin"]
    session_id = session_id_of(app, pin)
    with app.app_context():
        lens_session = db.session.get(LensSession, session_id)
        granted = sorted(features.features_of(lens_session, lens_session.console))
    assert switch not in granted
    recordings = Path(app.config["LENS_RECORDINGS_PATH"])
    clip = encode_vp8_clip(seconds=0.5, width=160, height=120, keyframe_every=15)

    async def scenario() -> None:
        runner, base_url = await sidecar_for(recordings)
        try:
            async with asyncio.timeout(30), aiohttp.ClientSession() as http:
                sidecar = Sidecar(runner.app, base_url, SECRET, http)
                phone = await start_phone(
                    http, base_url, SECRET, str(session_id), clip, features=granted
                )
                await wait_until(lambda: phone.sending["video"].sent > 5, 10)
                payload = dict(body or {})
                if "action" in payload:
                    payload["path"] = str(recordings / "x.webm")
                status, reply = await sidecar.call(
                    method, f"/sessions/{session_id}{path}", json=payload or None
                )
                assert status == 403 and named in reply["error"]
                await phone.pc.close()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    assert not any(recordings.rglob("*.webm")) if recordings.exists() else True
