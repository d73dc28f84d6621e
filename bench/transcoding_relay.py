"""The comparison relay: aiortc's own MediaRelay (decode + re-encode), same control API.

`python bench/transcoding_relay.py PORT SECRET` serves POST /sessions/{sid}/publisher,
POST /sessions/{sid}/subscriber and DELETE /sessions/{sid} like the Lens sidecar, but
forwards with aiortc's documented way: receivers decode, MediaRelay fans the decoded
frames out, and every sender encodes them again. Only the benchmark uses it.
"""

from __future__ import annotations

import sys

from aiohttp import web
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay

PEERS = web.AppKey("peers", dict)
TRACKS = web.AppKey("tracks", dict)
RELAY = web.AppKey("relay", MediaRelay)


def make_app(secret: str) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler):
        if request.path != "/healthz" and request.headers.get("Authorization") != (
            f"Bearer {secret}"
        ):
            return web.json_response({"error": "unauthorized"}, status=401)
        return await handler(request)

    app = web.Application(middlewares=[auth])
    app[PEERS] = {}
    app[TRACKS] = {}
    app[RELAY] = MediaRelay()
    app.add_routes(
        [
            web.get("/healthz", lambda request: web.json_response({"status": "ok"})),
            web.post("/sessions/{sid}/publisher", publisher),
            web.post("/sessions/{sid}/subscriber", subscriber),
            web.delete("/sessions/{sid}", delete),
        ]
    )
    app.on_shutdown.append(close_all)
    return app


def new_pc(app: web.Application, sid: str) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    app[PEERS].setdefault(sid, []).append(pc)
    return pc


async def answer(pc: RTCPeerConnection) -> web.Response:
    await pc.setLocalDescription(await pc.createAnswer())
    return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})


async def publisher(request: web.Request) -> web.Response:
    sid = request.match_info["sid"]
    body = await request.json()
    pc = new_pc(request.app, sid)
    tracks = request.app[TRACKS].setdefault(sid, {})
    pc.on("track", lambda track: tracks.__setitem__(track.kind, track))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
    return await answer(pc)


async def subscriber(request: web.Request) -> web.Response:
    sid = request.match_info["sid"]
    body = await request.json()
    pc = new_pc(request.app, sid)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
    for track in request.app[TRACKS].get(sid, {}).values():
        pc.addTrack(request.app[RELAY].subscribe(track))
    return await answer(pc)


async def delete(request: web.Request) -> web.Response:
    sid = request.match_info["sid"]
    request.app[TRACKS].pop(sid, None)
    for pc in request.app[PEERS].pop(sid, []):
        await pc.close()
    return web.json_response({"deleted": True})


async def close_all(app: web.Application) -> None:
    for peers in app[PEERS].values():
        for pc in peers:
            await pc.close()


if __name__ == "__main__":
    web.run_app(make_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), print=None)
