"""Snapshots and recordings in the sidecar, with real aiortc peers and the session's features."""

from __future__ import annotations

import asyncio
import fractions
import io
import struct
import time
from pathlib import Path

import aiohttp
import av
import pytest
from aiohttp import web
from aiortc.jitterbuffer import JitterFrame

from lens.features import ALL, TECHNICIAN_CONSOLE, WEB_CONSOLE, console_features
from lens.media import MediaConfig, make_app
from lens.media.app import CODECS
from lens.media.capture import CaptureTotals, Recorder, VideoHistory, frames_from_packets
from lens.media.heartbeat import BOOT
from lens.media.testing import (
    EncodedClip,
    encode_vp8_clip,
    start_phone,
    start_technician,
    wait_until,
)
from lens.signaling.control import MediaControl, MediaRefused
from tests.media.conftest import SECRET, Sidecar

pytestmark = pytest.mark.media


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    return tmp_path / "recordings"


@pytest.fixture
def with_capture_sidecar(recordings: Path):
    """Like with_sidecar, with the recordings folder in a temporary directory."""

    def run(scenario, timeout: float = 30.0):
        async def main():
            app = make_app(MediaConfig(secret=SECRET, recordings_path=recordings))
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            try:
                async with asyncio.timeout(timeout), aiohttp.ClientSession() as http:
                    return await scenario(Sidecar(app, f"http://127.0.0.1:{port}", SECRET, http))
            finally:
                await runner.cleanup()

        return asyncio.run(main())

    return run


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


async def post(sidecar: Sidecar, path: str, **kwargs) -> tuple[int, bytes, dict]:
    async with sidecar.http.post(sidecar.base_url + path, headers=sidecar.auth, **kwargs) as r:
        return r.status, await r.read(), dict(r.headers)


async def metrics(sidecar: Sidecar) -> str:
    async with sidecar.http.get(sidecar.base_url + "/metrics", headers=sidecar.auth) as r:
        return await r.text()


def test_a_snapshot_is_the_published_picture_at_full_resolution(with_capture_sidecar):
    clip = encode_vp8_clip(seconds=1.0, width=352, height=288, keyframe_every=30)

    async def scenario(sidecar):
        status, body, _ = await post(sidecar, "/sessions/s1/snapshot")
        assert status == 404  # no session yet
        phone = await start_phone(
            sidecar.http, sidecar.base_url, sidecar.secret, "s1", clip, features=["snapshot"]
        )
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        await tech.received["video"].wait_for(10, timeout=10)

        status, png, headers = await post(sidecar, "/sessions/s1/snapshot")
        assert status == 200, png
        assert headers["Content-Type"] == "image/png"
        assert png_size(png) == (352, 288)
        assert (headers["X-Width"], headers["X-Height"]) == ("352", "288")
        with av.open(io.BytesIO(png), format="png_pipe") as image:
            frame = next(image.decode(video=0))
            assert (frame.width, frame.height) == (352, 288)

        # forwarding decoded nothing: the snapshot made its own decoder, once
        assert (sidecar.app[CODECS].encoders, sidecar.app[CODECS].decoders) == (0, 0)
        text = await metrics(sidecar)
        assert "lens_media_snapshots_total 1" in text
        assert "lens_media_snapshot_decoders_created_total 1" in text
        await phone.pc.close()
        await tech.pc.close()

    with_capture_sidecar(scenario)


def test_a_recording_plays_and_was_written_without_an_encoder(
    with_capture_sidecar, recordings, vp8_clip: EncodedClip, opus_clip: EncodedClip
):
    async def scenario(sidecar):
        phone = await start_phone(
            sidecar.http,
            sidecar.base_url,
            sidecar.secret,
            "s1",
            vp8_clip,
            opus_clip,
            features=["recording"],
        )
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        await tech.received["video"].wait_for(10, timeout=10)

        target = recordings / "s1" / "first.webm"
        started = time.monotonic()
        status, body = await sidecar.call(
            "POST", "/sessions/s1/recording", json={"action": "start", "path": str(target)}
        )
        assert status == 200 and body["boot"] == sidecar.app[BOOT]
        assert body == {"recording": True, "path": str(target), "boot": body["boot"]}
        status, body = await sidecar.call(
            "POST", "/sessions/s1/recording", json={"action": "start", "path": str(target)}
        )
        assert status == 409  # one recording at a time
        sent = phone.sending["video"]
        goal = sent.sent + 60
        while sent.sent < goal:
            await asyncio.sleep(0.05)
        assert "lens_media_recordings 1" in await metrics(sidecar)
        status, state = await sidecar.call("GET", "/sessions/s1")
        assert state["recording"]["path"] == str(target)
        assert state["recording"]["started"] and state["recording"]["video_frames"] > 0
        status, result = await sidecar.call(
            "POST", "/sessions/s1/recording", json={"action": "stop"}
        )
        elapsed = time.monotonic() - started
        assert status == 200, result
        assert result["path"] == str(target)
        assert result["size"] == target.stat().st_size > 10_000
        assert elapsed - 1.0 <= result["duration"] <= elapsed + 0.1
        assert result["video_frames"] >= 45 and result["audio_frames"] >= 40

        # the forwarding went on and nothing in this process encoded or decoded
        assert (sidecar.app[CODECS].encoders, sidecar.app[CODECS].decoders) == (0, 0)
        text = await metrics(sidecar)
        assert "lens_media_recordings_finished_total 1" in text
        assert "lens_media_recordings 0" in text
        await phone.pc.close()
        await tech.pc.close()
        return result

    result = with_capture_sidecar(scenario)

    with av.open(result["path"]) as played:
        assert played.format.name.startswith("matroska,webm")
        video, audio = played.streams.video[0], played.streams.audio[0]
        assert (video.codec_context.name, video.codec_context.width) == ("vp8", 640)
        assert video.codec_context.height == 480
        assert audio.codec_context.name == "opus"
        assert played.duration / 1_000_000 == pytest.approx(result["duration"], abs=0.15)
        frames = list(played.decode(video=0))  # starts at a keyframe: every frame decodes
    assert len(frames) == result["video_frames"]
    assert frames[0].key_frame


def test_snapshot_and_recording_are_refused_without_the_features(
    with_capture_sidecar, recordings, vp8_clip
):
    async def scenario(sidecar):
        phone = await start_phone(
            sidecar.http,
            sidecar.base_url,
            sidecar.secret,
            "s1",
            vp8_clip,
            features=["chat", "hold"],
        )
        await wait_until(lambda: phone.sending["video"].sent > 30, 5)
        status, state = await sidecar.call("GET", "/sessions/s1")
        assert state["publisher"]["video"]["frames_received"] > 0  # there is video to refuse
        status, body, _ = await post(sidecar, "/sessions/s1/snapshot")
        assert status == 403 and b"snapshot" in body
        for action in ({"action": "start", "path": str(recordings / "x.webm")}, {"action": "stop"}):
            status, body = await sidecar.call("POST", "/sessions/s1/recording", json=action)
            assert status == 403 and "recording" in body["error"]
        text = await metrics(sidecar)
        assert "lens_media_snapshot_decoders_created_total 0" in text
        assert "lens_media_recordings_started_total 0" in text
        await phone.pc.close()

    with_capture_sidecar(scenario)
    assert not recordings.exists() or not any(recordings.rglob("*"))


def test_a_recording_path_must_be_inside_the_recordings_folder(
    with_capture_sidecar, recordings, tmp_path, vp8_clip
):
    async def scenario(sidecar):
        phone = await start_phone(
            sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip, features=["recording"]
        )
        for path in (
            str(tmp_path / "elsewhere.webm"),
            str(recordings / ".." / "escape.webm"),
            "relative.webm",
            str(recordings),
            42,
        ):
            status, body = await sidecar.call(
                "POST", "/sessions/s1/recording", json={"action": "start", "path": path}
            )
            assert status == 400, (path, body)
        status, body = await sidecar.call("POST", "/sessions/s1/recording", json={"action": "go"})
        assert status == 400
        await phone.pc.close()

    with_capture_sidecar(scenario)
    assert not any(tmp_path.rglob("*.webm"))


def test_tearing_the_session_down_finishes_its_recording(
    with_capture_sidecar, recordings, vp8_clip
):
    target = recordings / "s1" / "torn.webm"

    async def scenario(sidecar):
        phone = await start_phone(
            sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip, features=["recording"]
        )
        status, _ = await sidecar.call(
            "POST", "/sessions/s1/recording", json={"action": "start", "path": str(target)}
        )
        assert status == 200
        sent = phone.sending["video"]
        goal = sent.sent + 30
        while sent.sent < goal or not target.exists():
            await asyncio.sleep(0.05)
        status, _ = await sidecar.call("DELETE", "/sessions/s1")
        assert status == 200
        assert "lens_media_recordings_finished_total 1" in await metrics(sidecar)
        await phone.pc.close()

    with_capture_sidecar(scenario)
    with av.open(str(target)) as played:
        assert played.duration > 0
        assert sum(1 for _ in played.decode(video=0)) >= 10


def test_h264_is_recorded_to_matroska_as_it_came(tmp_path):
    """The recorder alone, fed H.264 frames as the phone leg would hand them over."""
    source = av.open("testsrc2=size=320x240:rate=30", format="lavfi")
    encoder = av.CodecContext.create("libx264", "w")  # the test's phone, not the sidecar
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
    frames = []
    for index, picture in enumerate(source.decode(video=0)):
        if index == 30:
            break
        picture = picture.reformat(format="yuv420p")
        picture.pts, picture.pict_type = index, av.video.frame.PictureType.NONE
        frames += [bytes(p) for p in encoder.encode(picture)]
    source.close()
    totals = CaptureTotals()

    async def record() -> dict:
        recorder = Recorder(tmp_path / "r.mkv", "video/h264", None, lambda: None, totals)
        for index, data in enumerate(frames):
            frame = JitterFrame(data=data, timestamp=1000 + index * 3000)
            recorder.offer("video", "video/h264", frame)
        return (await recorder.stop()).as_json()

    result = asyncio.run(record())
    assert result["video_frames"] == 30 and "error" not in result
    with av.open(result["path"]) as played:
        video = played.streams.video[0]
        assert (video.codec_context.name, video.codec_context.width) == ("h264", 320)
        assert sum(1 for _ in played.decode(video=0)) == 30


def test_the_web_processs_client_gets_refusals_and_pictures(with_capture_sidecar, recordings):
    """MediaControl against the real sidecar: the Web Console's feature set is refused."""
    clip = encode_vp8_clip(seconds=1.0, width=320, height=240, keyframe_every=30)
    web_console = sorted(console_features(WEB_CONSOLE, ALL))
    technician_console = sorted(console_features(TECHNICIAN_CONSOLE, ALL))

    async def scenario(sidecar):
        control = MediaControl(sidecar.base_url, sidecar.secret, timeout=10)
        web_phone = await start_phone(
            sidecar.http, sidecar.base_url, sidecar.secret, "1", clip, features=web_console
        )
        tech_phone = await start_phone(
            sidecar.http, sidecar.base_url, sidecar.secret, "2", clip, features=technician_console
        )
        await wait_until(lambda: tech_phone.sending["video"].sent > 5, 5)
        with pytest.raises(MediaRefused, match="snapshot"):
            await asyncio.to_thread(control.snapshot, 1)
        with pytest.raises(MediaRefused, match="recording"):
            await asyncio.to_thread(control.recording, 1, "start", str(recordings / "1" / "a.webm"))
        png, width, height = await asyncio.to_thread(control.snapshot, 2)
        assert png_size(png) == (width, height) == (320, 240)
        with pytest.raises(MediaRefused):  # no such session in the sidecar
            await asyncio.to_thread(control.snapshot, 3)
        await web_phone.pc.close()
        await tech_phone.pc.close()

    with_capture_sidecar(scenario)
    assert not recordings.exists()


def test_hold_pauses_the_recording_and_refuses_snapshots(
    with_capture_sidecar, recordings, vp8_clip
):
    target = recordings / "s1" / "held.webm"

    async def scenario(sidecar):
        phone = await start_phone(
            sidecar.http,
            sidecar.base_url,
            sidecar.secret,
            "s1",
            vp8_clip,
            features=["hold", "snapshot", "recording"],
        )
        sent = phone.sending["video"]
        await sidecar.call(
            "POST", "/sessions/s1/recording", json={"action": "start", "path": str(target)}
        )
        goal = sent.sent + 30
        await wait_until(lambda: sent.sent >= goal, 5)
        assert (await sidecar.call("POST", "/sessions/s1/hold"))[0] == 200
        status, body, _ = await post(sidecar, "/sessions/s1/snapshot")
        assert status == 409 and b"on hold" in body
        _, state = await sidecar.call("GET", "/sessions/s1")
        held_at = state["recording"]["video_frames"]
        goal = sent.sent + 30
        await wait_until(lambda: sent.sent >= goal, 5)
        _, state = await sidecar.call("GET", "/sessions/s1")
        assert state["recording"]["video_frames"] <= held_at + 1  # one may be in the queue
        assert (await sidecar.call("POST", "/sessions/s1/resume"))[0] == 200
        goal = sent.sent + 30
        await wait_until(lambda: sent.sent >= goal, 5)
        status, png, _ = await post(sidecar, "/sessions/s1/snapshot")
        assert status == 200 and png_size(png) == (640, 480)
        status, result = await sidecar.call(
            "POST", "/sessions/s1/recording", json={"action": "stop"}
        )
        assert status == 200 and result["video_frames"] > held_at
        await phone.pc.close()
        return result

    result = with_capture_sidecar(scenario)
    with av.open(result["path"]) as played:
        # after the hold the file goes on at a keyframe: every frame still decodes
        decoded = list(played.decode(video=0))
    assert len(decoded) == result["video_frames"]


def test_the_snapshot_history_reassembles_reordered_packets_up_to_the_first_hole():
    history = VideoHistory()
    strip = lambda payload: payload[1:]  # noqa: E731 - a one-byte "descriptor"
    history.add("video/vp8", 65534, 100, 0, b"\x00old", False)  # before any keyframe
    assert history.packets() is None
    # a keyframe of three packets across the sequence number wrap, its second one late
    history.add("video/vp8", 65535, 200, 0, b"\x00K1", True)
    history.add("video/vp8", 1, 200, 1, b"\x00K3", False)
    assert history.packets() is not None  # its last packet came
    history.add("video/vp8", 2, 300, 1, b"\x00D1", False)
    history.add("video/vp8", 0, 200, 0, b"\x00K2", False)  # the retransmission
    history.add("video/vp8", 4, 400, 1, b"\x00D3", False)  # after a hole (3 never came)
    mime, packets = history.packets()
    assert mime == "video/vp8"
    assert frames_from_packets(packets, strip) == [b"K1K2K3", b"D1"]
    # a new keyframe starts the history again; a packet of it that overtook it stays
    history.add("video/vp8", 11, 500, 1, b"\x00N2", False)
    history.add("video/vp8", 10, 500, 0, b"\x00N1", True)
    assert frames_from_packets(history.packets()[1], strip) == [b"N1N2"]
    history.clear()
    assert history.packets() is None
