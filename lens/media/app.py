"""The sidecar's HTTP control API: an aiohttp app built by make_app(config)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCSessionDescription

from lens.media import ice, passthrough
from lens.media.config import MediaConfig
from lens.media.heartbeat import BOOT, heartbeat, new_boot
from lens.media.sessions import PUBLISHER, SUBSCRIBER, MediaSessions, SessionError

logger = logging.getLogger(__name__)

SESSIONS = web.AppKey("sessions", MediaSessions)
CONFIG = web.AppKey("config", MediaConfig)
CODECS = web.AppKey("codecs", passthrough.CodecCounter)
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
OPEN_PATHS = frozenset({"/healthz"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(config: MediaConfig) -> web.Application:
    """Build the sidecar: control routes, bearer-secret auth, shutdown that closes all."""
    app = web.Application(middlewares=[require_secret, json_errors])
    if not config.sidecar_id:
        config = dataclasses.replace(config, sidecar_id=f"{socket.gethostname()}-{config.port}")
    app[CONFIG] = config
    app[SESSIONS] = MediaSessions(config.network or config.ice_servers)
    app[BOOT] = new_boot()
    app[CODECS] = passthrough.count_codecs()
    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/metrics", metrics),
            web.post("/sessions/{sid}/publisher", post_publisher),
            web.post("/sessions/{sid}/subscriber", post_subscriber),
            web.post("/sessions/{sid}/hold", post_hold),
            web.post("/sessions/{sid}/resume", post_resume),
            web.post("/sessions/{sid}/snapshot", post_snapshot),
            web.post("/sessions/{sid}/recording", post_recording),
            web.get("/sessions/{sid}", get_session),
            web.delete("/sessions/{sid}", delete_session),
        ]
    )
    app.cleanup_ctx.append(reap_idle_sessions)
    app.cleanup_ctx.append(heartbeat(config))
    app.on_shutdown.append(close_sessions)
    return app


async def close_sessions(app: web.Application) -> None:
    await app[SESSIONS].close_all()


REAP_EVERY = 30.0  # seconds; a session idle for two rounds is closed


async def reap_idle_sessions(app: web.Application):
    """While the app runs: close sessions that have had no leg for a while."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(REAP_EVERY)
            reaped = await app[SESSIONS].reap(time.monotonic(), idle_for=2 * REAP_EVERY)
            if reaped:
                logger.info("closed idle sessions: %s", ", ".join(reaped))

    task = asyncio.get_running_loop().create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@web.middleware
async def require_secret(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every route but /healthz needs `Authorization: Bearer <secret>`."""
    if request.path not in OPEN_PATHS:
        expected = f"Bearer {request.app[CONFIG].secret}".encode()
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "unauthorized"}, status=401)
    return await handler(request)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain refusals become JSON errors with their status."""
    try:
        return await handler(request)
    except SessionError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)


def session_id(request: web.Request) -> str:
    sid = request.match_info["sid"]
    if not SESSION_ID.match(sid):
        raise SessionError("invalid session id", 400)
    return sid


def existing_session(request: web.Request) -> Any:
    """The session named in the URL, or a 404."""
    session = request.app[SESSIONS].get(session_id(request))
    if session is None:
        raise SessionError("no such session", 404)
    return session


async def read_offer(request: web.Request) -> tuple[RTCSessionDescription, dict[str, Any]]:
    """Parse `{"sdp": ..., "type": "offer"}` from the body, or refuse with 400."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise SessionError("body must be JSON", 400) from exc
    if (
        not isinstance(body, dict)
        or body.get("type") != "offer"
        or not isinstance(body.get("sdp"), str)
    ):
        raise SessionError('body must be {"sdp": "...", "type": "offer"}', 400)
    return RTCSessionDescription(sdp=body["sdp"], type="offer"), body


def leg_network(request: web.Request, body: dict[str, Any]) -> ice.NetworkSettings | None:
    """The site's STUN/TURN servers sent with an offer (the Admin Center's setting), laid
    over this sidecar's network settings; None when the web sent none (use the sidecar's)."""
    if "ice_servers" not in body:
        return None
    config = request.app[CONFIG]
    try:
        return ice.with_site_ice_servers(config.network or config.ice_servers, body["ice_servers"])
    except ice.NetworkSettingsError as exc:
        raise SessionError(str(exc), 400) from exc


def answer_json(request: web.Request, answer: RTCSessionDescription) -> web.Response:
    """The answer, and which process made it: a web process tells the leg's page to offer
    again once this boot is gone (lens/sidecars/legs.py)."""
    return web.json_response({"sdp": answer.sdp, "type": answer.type, "boot": request.app[BOOT]})


async def post_publisher(request: web.Request) -> web.Response:
    """The phone's offer (video + audio out, technician audio in) → the answer."""
    sid = session_id(request)
    offer, body = await read_offer(request)
    session_features = body.get("features", [])
    if not isinstance(session_features, list) or not all(
        isinstance(f, str) for f in session_features
    ):
        raise SessionError("features must be a list of names", 400)
    network = leg_network(request, body)
    session = request.app[SESSIONS].get_or_create(sid)
    answer = await session.connect_publisher(offer, frozenset(session_features), network)
    return answer_json(request, answer)


async def post_subscriber(request: web.Request) -> web.Response:
    """The technician's offer (video + audio in, technician audio out) → the answer."""
    sid = session_id(request)
    offer, body = await read_offer(request)
    network = leg_network(request, body)
    session = request.app[SESSIONS].get_or_create(sid)
    return answer_json(request, await session.connect_subscriber(offer, network))


async def post_hold(request: web.Request) -> web.Response:
    """Stop forwarding the phone's media (needs the "hold" feature)."""
    session = existing_session(request)
    session.hold()
    return web.json_response({"on_hold": session.on_hold})


async def post_resume(request: web.Request) -> web.Response:
    """Forward the phone's media again (needs the "hold" feature)."""
    session = existing_session(request)
    session.resume()
    return web.json_response({"on_hold": session.on_hold})


async def post_snapshot(request: web.Request) -> web.Response:
    """The current video frame at full resolution, as PNG (needs the "snapshot" feature)."""
    png, width, height = await existing_session(request).snapshot()
    return web.Response(
        body=png,
        content_type="image/png",
        headers={"X-Width": str(width), "X-Height": str(height)},
    )


async def post_recording(request: web.Request) -> web.Response:
    """`{"action": "start", "path": ...}`, `{"action": "stop"}` (needs "recording"), or
    `{"action": "finish"}`: the session is ending, so even a forced recording stops."""
    session = existing_session(request)
    try:
        body = await request.json()
    except ValueError as exc:
        raise SessionError("body must be JSON", 400) from exc
    action = body.get("action") if isinstance(body, dict) else None
    if action == "start":
        root = request.app[CONFIG].recordings_path
        started = session.start_recording(root, body.get("path"))
        # which process writes it: a restarted sidecar (new boot) no longer does
        return web.json_response({**started, "boot": request.app[BOOT]})
    if action in ("stop", "finish"):
        result = (await session.stop_recording(ending=action == "finish")).as_json()
        config = request.app[CONFIG]
        if config.storage.get("LENS_STORAGE") == "s3" and result.get("size"):
            result.update(await upload_recording(config, Path(result["path"])))
        return web.json_response(result)
    raise SessionError(
        'body must be {"action": "start", "path": ...}, {"action": "stop"} or {"action": "finish"}',
        400,
    )


async def upload_recording(config: MediaConfig, path: Path) -> dict[str, Any]:
    """Move a finished recording into the object store (the web hosts serve it from there);
    on failure the file stays here and the answer says why."""
    from lens.storage import StorageError, storage_from_env

    relative = path.resolve().relative_to(config.recordings_path.resolve()).as_posix()
    mime = "video/webm" if path.suffix == ".webm" else "video/x-matroska"

    def upload() -> None:
        storage = storage_from_env(config.storage, config.recordings_path)
        storage.put_file(f"recordings/{relative}", path, mime)
        path.unlink()

    try:
        await asyncio.get_running_loop().run_in_executor(None, upload)
    except StorageError as exc:
        logger.error("recording %s not uploaded: %s", path, exc)
        return {"stored": "local", "storage_error": str(exc)}
    return {"stored": "s3"}


async def get_session(request: web.Request) -> web.Response:
    """Both legs' state: connection, codecs, frames and bytes, resolution."""
    return web.json_response({**existing_session(request).state(), "boot": request.app[BOOT]})


async def delete_session(request: web.Request) -> web.Response:
    """Tear down both legs of the session."""
    if not await request.app[SESSIONS].close(session_id(request)):
        raise SessionError("no such session", 404)
    return web.json_response({"deleted": True})


async def healthz(request: web.Request) -> web.Response:
    """Liveness, no auth."""
    config = request.app[CONFIG]
    return web.json_response(
        {
            "status": "ok",
            "id": config.sidecar_id,
            "boot": request.app[BOOT],
            "sessions": len(request.app[SESSIONS]),
            "capacity": config.capacity,
            # the loop actually running (LENS_MEDIA_LOOP): uvloop's module is uvloop
            "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            # the native steps in use (lens/media/native.py), or their Python twins
            "native": passthrough.NATIVE is not None,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the relay's counters."""
    sessions = request.app[SESSIONS]
    codecs = request.app[CODECS]
    legs = {PUBLISHER: 0, SUBSCRIBER: 0}
    connected = {PUBLISHER: 0, SUBSCRIBER: 0}
    for session in sessions:
        for role, leg in ((PUBLISHER, session.publisher), (SUBSCRIBER, session.subscriber)):
            if leg is not None:
                legs[role] += 1
                connected[role] += leg.pc.connectionState == "connected"
    lines = [
        "# HELP lens_media_sessions Live media sessions.",
        "# TYPE lens_media_sessions gauge",
        f"lens_media_sessions {len(sessions)}",
        "# HELP lens_media_legs Peer connections by role.",
        "# TYPE lens_media_legs gauge",
        *(f'lens_media_legs{{role="{r}"}} {n}' for r, n in legs.items()),
        "# HELP lens_media_legs_connected Connected peer connections by role.",
        "# TYPE lens_media_legs_connected gauge",
        *(f'lens_media_legs_connected{{role="{r}"}} {n}' for r, n in connected.items()),
    ]
    by_kind = sessions.totals.by_kind
    for name, attribute, help_text in (
        ("frames_forwarded_total", "frames_forwarded", "Encoded frames forwarded."),
        ("bytes_forwarded_total", "bytes_forwarded", "Encoded payload bytes forwarded."),
        ("frames_dropped_total", "frames_dropped", "Frames dropped (backlog, gap, hold-resume)."),
        ("keyframes_forwarded_total", "keyframes_forwarded", "Keyframes forwarded."),
    ):
        lines += [f"# HELP lens_media_{name} {help_text}", f"# TYPE lens_media_{name} counter"]
        lines += [
            f'lens_media_{name}{{kind="{kind}"}} {getattr(stats, attribute)}'
            for kind, stats in by_kind.items()
        ]
    lines += [
        "# HELP lens_media_keyframe_requests_total PLIs sent to phones.",
        "# TYPE lens_media_keyframe_requests_total counter",
        f"lens_media_keyframe_requests_total {sessions.totals.keyframe_requests}",
        "# HELP lens_media_encoders_created_total Encoders aiortc created in this process.",
        "# TYPE lens_media_encoders_created_total counter",
        f"lens_media_encoders_created_total {codecs.encoders}",
        "# HELP lens_media_decoders_created_total Decoders aiortc created in this process.",
        "# TYPE lens_media_decoders_created_total counter",
        f"lens_media_decoders_created_total {codecs.decoders}",
        "# HELP lens_media_recordings Recordings being written.",
        "# TYPE lens_media_recordings gauge",
        f"lens_media_recordings {sessions.recordings()}",
    ]
    captures = sessions.captures
    for name, value, help_text in (
        ("snapshots_total", captures.snapshots, "Snapshots taken."),
        ("snapshot_failures_total", captures.snapshot_failures, "Snapshots that failed."),
        (
            "snapshot_decoders_created_total",
            captures.snapshot_decoders,
            "Decoders made for one snapshot each (off the forwarding path).",
        ),
        ("recordings_started_total", captures.recordings_started, "Recordings started."),
        ("recordings_finished_total", captures.recordings_finished, "Recordings finished."),
        ("recording_failures_total", captures.recording_failures, "Recordings that failed."),
        (
            "recording_frames_written_total",
            captures.recording_frames_written,
            "Encoded frames muxed into recordings.",
        ),
        (
            "recording_frames_dropped_total",
            captures.recording_frames_dropped,
            "Frames dropped because a recording's writer fell behind.",
        ),
        (
            "recording_bytes_written_total",
            captures.recording_bytes_written,
            "Bytes of finished recordings.",
        ),
    ):
        lines += [
            f"# HELP lens_media_{name} {help_text}",
            f"# TYPE lens_media_{name} counter",
            f"lens_media_{name} {value}",
        ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
