"""The media sidecar with real aiortc peers: forwarding, keyframes, auth, hold, teardown."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection

from lens.media import passthrough
from lens.media.app import CODECS, SESSIONS
from lens.media.testing import (
    EncodedClip,
    MediaPeer,
    frame_digest,
    h264_units,
    start_phone,
    start_technician,
    wait_until,
)

pytestmark = pytest.mark.media


async def close_peers(*peers: MediaPeer | RTCPeerConnection) -> None:
    for peer in peers:
        await (peer.pc if isinstance(peer, MediaPeer) else peer).close()


def test_healthz_is_open_and_everything_else_needs_the_secret(with_sidecar):
    async def scenario(sidecar):
        async with sidecar.http.get(sidecar.base_url + "/healthz") as resp:
            assert resp.status == 200
        offer = {"sdp": "v=0", "type": "offer"}
        for method, path, headers in [
            ("GET", "/metrics", {}),
            ("GET", "/sessions/s1", {"Authorization": "Bearer wrong"}),
            ("POST", "/sessions/s1/publisher", {}),
            ("POST", "/sessions/s1/subscriber", {"Authorization": sidecar.secret}),
            ("DELETE", "/sessions/s1", {"Authorization": "Bearer " + sidecar.secret[:-1]}),
        ]:
            url = sidecar.base_url + path
            async with sidecar.http.request(method, url, headers=headers, json=offer) as resp:
                assert resp.status == 401, (method, path)
                assert (await resp.json()) == {"error": "unauthorized"}
        async with sidecar.http.get(sidecar.base_url + "/metrics", headers=sidecar.auth) as r:
            assert r.status == 200

    with_sidecar(scenario)


def test_forwards_the_phones_encoded_frames_unchanged(with_sidecar, vp8_clip, opus_clip):
    async def scenario(sidecar):
        phone = await start_phone(
            sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip, opus_clip
        )
        tech = await start_technician(
            sidecar.http, sidecar.base_url, sidecar.secret, "s1", opus_clip
        )
        video = tech.received["video"]
        await video.wait_for(45, timeout=10)
        await tech.received["audio"].wait_for(10, timeout=5)
        await phone.received["audio"].wait_for(10, timeout=5)

        # the subscriber's join reached the phone as a keyframe request
        assert phone.sending["video"].keyframe_requests >= 1
        # every frame is a published frame, byte for byte, in the published order
        # (a keyframe request restarts the phone's clip at its keyframe, index 0)
        index = {digest: i for i, digest in enumerate(vp8_clip.digests)}
        order = [index[digest] for digest in video.digests]
        assert order[0] == 0
        for previous, current in zip(order, order[1:], strict=False):
            assert current in ((previous + 1) % len(vp8_clip.frames), 0), order
        assert video.keyframes >= 1 and video.codec == "video/vp8"
        assert set(tech.received["audio"].digests) <= set(opus_clip.digests)
        assert set(phone.received["audio"].digests) <= set(opus_clip.digests)

        # nothing in this process encoded or decoded anything
        codecs = sidecar.app[CODECS]
        assert (codecs.encoders, codecs.decoders) == (0, 0)
        status, state = await sidecar.call("GET", "/sessions/s1")
        assert status == 200
        forwarded = state["subscriber"]["video"]
        assert forwarded["codec"] == "video/VP8"
        assert forwarded["frames_forwarded"] >= 45
        assert forwarded["resolution"] == [640, 480]
        assert state["publisher"]["audio"]["frames_forwarded"] >= 10
        # the phone's packets were read on the lean path, not through aiortc's RtpPacket
        assert state["publisher"]["transport"]["lean_packets"] >= 45
        async with sidecar.http.get(sidecar.base_url + "/metrics", headers=sidecar.auth) as r:
            metrics = await r.text()
        assert "lens_media_encoders_created_total 0" in metrics
        assert "lens_media_decoders_created_total 0" in metrics
        assert "lens_media_sessions 1" in metrics
        await close_peers(phone, tech)

    with_sidecar(scenario)


def test_a_keyframe_request_from_the_technician_reaches_the_phone(with_sidecar, vp8_clip):
    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        await tech.received["video"].wait_for(5, timeout=10)
        video = phone.sending["video"]
        # wait out the rate limit that follows the join's own keyframe request
        target = video.sent + 20
        await wait_until(lambda: video.sent >= target, 5)
        before = video.keyframe_requests
        technician_video = tech.pc.getTransceivers()[0].receiver
        assert await passthrough.send_pli(technician_video)
        await wait_until(lambda: video.keyframe_requests > before, 5)
        status, state = await sidecar.call("GET", "/sessions/s1")
        assert state["keyframe_requests"] >= 2
        await close_peers(phone, tech)

    with_sidecar(scenario)


def test_hold_is_refused_without_the_hold_feature(with_sidecar, vp8_clip):
    async def scenario(sidecar):
        phone = await start_phone(
            sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip, features=["chat"]
        )
        for action in ("hold", "resume"):
            status, body = await sidecar.call("POST", f"/sessions/s1/{action}")
            assert status == 403
            assert "hold" in body["error"]
        status, state = await sidecar.call("GET", "/sessions/s1")
        assert state["on_hold"] is False
        await close_peers(phone)

    with_sidecar(scenario)


def test_hold_stops_the_phones_media_and_resume_restarts_it(with_sidecar, vp8_clip: EncodedClip):
    async def scenario(sidecar):
        phone = await start_phone(
            sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip, features=["hold"]
        )
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        video = tech.received["video"]
        await video.wait_for(15, timeout=10)

        status, body = await sidecar.call("POST", "/sessions/s1/hold")
        assert (status, body) == (200, {"on_hold": True})
        held_at = len(video.digests)
        sent = phone.sending["video"]
        target = sent.sent + 20
        await wait_until(lambda: sent.sent >= target, 5)
        # at most the frames already in flight when hold was pressed
        assert len(video.digests) <= held_at + 2

        keyframes = video.keyframes
        status, body = await sidecar.call("POST", "/sessions/s1/resume")
        assert (status, body) == (200, {"on_hold": False})
        await video.wait_for(held_at + 15, timeout=10)
        assert video.keyframes > keyframes  # the technician restarts from a keyframe
        await close_peers(phone, tech)

    with_sidecar(scenario)


def test_delete_tears_down_both_legs(with_sidecar, vp8_clip):
    async def scenario(sidecar):
        phone = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        await tech.received["video"].wait_for(5, timeout=10)

        status, body = await sidecar.call("DELETE", "/sessions/s1")
        assert (status, body) == (200, {"deleted": True})
        status, _ = await sidecar.call("GET", "/sessions/s1")
        assert status == 404
        status, _ = await sidecar.call("DELETE", "/sessions/s1")
        assert status == 404
        await wait_until(
            lambda: {phone.pc.connectionState, tech.pc.connectionState} <= {"closed", "failed"},
            10,
        )
        async with sidecar.http.get(sidecar.base_url + "/metrics", headers=sidecar.auth) as r:
            assert "lens_media_sessions 0" in await r.text()
        await close_peers(phone, tech)

    with_sidecar(scenario)


def test_a_reconnecting_phone_replaces_its_leg_and_video_continues(with_sidecar, vp8_clip):
    async def scenario(sidecar):
        first = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        video = tech.received["video"]
        await video.wait_for(10, timeout=10)

        second = await start_phone(sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip)
        await wait_until(lambda: first.pc.connectionState in ("closed", "failed"), 10)
        count, keyframes = len(video.digests), video.keyframes
        await video.wait_for(count + 15, timeout=10)
        # the technician switched to the new phone's stream at its keyframe
        assert video.keyframes > keyframes
        # (the technician may count a frame the old phone sent just before it left)
        session = sidecar.app[SESSIONS].get("s1")
        await wait_until(lambda: session.publisher.frames_received["video"] >= 15, 5)
        await close_peers(first, second, tech)

    with_sidecar(scenario)


def test_bad_offers_are_refused_with_400(with_sidecar):
    async def scenario(sidecar):
        for body in ({"sdp": "v=0", "type": "answer"}, {"type": "offer"}, ["x"]):
            status, reply = await sidecar.call("POST", "/sessions/s1/publisher", json=body)
            assert status == 400 and "error" in reply
        status, reply = await sidecar.call("POST", "/sessions/bad%20id/subscriber", json={})
        assert status == 400
        status, _ = await sidecar.call("POST", "/sessions/nope/hold")
        assert status == 404

    with_sidecar(scenario)


def test_h264_is_forwarded_when_the_phone_offers_only_h264(with_sidecar, h264_clip):
    async def scenario(sidecar):
        phone = await start_phone(
            sidecar.http,
            sidecar.base_url,
            sidecar.secret,
            "s1",
            h264_clip,
            video_codec="video/h264",
        )
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        video = tech.received["video"]
        await video.wait_for(20, timeout=10)
        assert video.codec == "video/h264" and video.keyframes >= 1
        # the same NAL units arrive (RTP carries NAL units, not start codes)
        published = {
            frame_digest(b"".join(b"\x00\x00\x00\x01" + unit for unit in h264_units(frame)))
            for frame in h264_clip.frames
        }
        assert set(video.digests) <= published
        assert sidecar.app[CODECS].encoders == 0 and sidecar.app[CODECS].decoders == 0
        status, state = await sidecar.call("GET", "/sessions/s1")
        assert state["subscriber"]["video"]["codec"] == "video/H264"
        await close_peers(phone, tech)

    with_sidecar(scenario)


def test_the_technician_may_connect_before_the_phone(with_sidecar, vp8_clip, opus_clip):
    async def scenario(sidecar):
        tech = await start_technician(sidecar.http, sidecar.base_url, sidecar.secret, "s1")
        await wait_until(lambda: tech.pc.connectionState == "connected", 10)
        phone = await start_phone(
            sidecar.http, sidecar.base_url, sidecar.secret, "s1", vp8_clip, opus_clip
        )
        await tech.received["video"].wait_for(15, timeout=10)
        await tech.received["audio"].wait_for(10, timeout=5)
        assert tech.received["video"].keyframes >= 1
        await close_peers(phone, tech)

    with_sidecar(scenario)
