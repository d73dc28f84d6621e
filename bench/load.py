"""A load-generator worker process: phones and technicians as aiortc peers.

The orchestrator (bench/relay.py) sends commands over a pipe: start N sessions against a
system, mark the start of the measuring window, end it (stats back), stop the sessions.
Phones replay pre-encoded VP8 + Opus; technicians record encoded frames without decoding
them, so the peers spend no CPU on codecs and latency is matched by payload hash.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from lens.media import passthrough
from lens.media.testing import (
    EncodedClip,
    MediaPeer,
    ReceivedMedia,
    ReplayTrack,
    lean_receive,
    pack_only,
    peer_connection,
    replay_packets,
    start_phone,
    start_technician,
    tap_receiver,
    wait_until,
)

try:  # run as a script from bench/
    from janus_videoroom import JanusSession
except ImportError:  # imported as bench.load
    from bench.janus_videoroom import JanusSession

CONNECT_TIMEOUT = 15.0
# phones send and technicians read their packets the way the sidecar does (PacketSender,
# the lean receive path of lens.media.passthrough), not through aiortc's per-packet layers,
# so the load generator leaves more of the machine to the relays under test (every system
# gets the same peers); LENS_BENCH_PEERS=aiortc: aiortc's own paths
LEAN_PEERS = os.environ.get("LENS_BENCH_PEERS", "lean") != "aiortc"
REPLAYS: list[Any] = []  # the phones' packet senders (their tasks), until "stop"


def lean(pc: RTCPeerConnection) -> None:
    if LEAN_PEERS:
        lean_receive(pc)


def lean_phone(pc: RTCPeerConnection, tracks: dict[str, ReplayTrack]) -> None:
    """Call right after the phone's remote description is set (before it connects)."""
    if LEAN_PEERS:
        REPLAYS.extend(replay_packets(pc, tracks))


@dataclass
class BenchSession:
    """One phone → technician session and what was measured on it."""

    sid: str
    pcs: list[RTCPeerConnection]
    video: ReplayTrack
    received: ReceivedMedia
    first_frame: float | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)  # (sent, arrived)

    def watch(self) -> None:
        def on_digest(digest: bytes, now: float) -> None:
            sent = self.video.sent_at.get(digest)
            if sent is not None:
                self.samples.append((sent, now))

        self.received.on_digest = on_digest


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def connected(pc: RTCPeerConnection) -> None:
    await wait_until(lambda: pc.connectionState == "connected", CONNECT_TIMEOUT)


async def start_via_control_api(
    http: aiohttp.ClientSession,
    target: dict[str, Any],
    sid: str,
    video: EncodedClip,
    audio: EncodedClip,
) -> BenchSession:
    """Lens sidecar or the MediaRelay server: same control API."""
    phone = await start_phone(http, target["url"], target["secret"], sid, video, audio)
    lean_phone(phone.pc, phone.sending)
    await connected(phone.pc)
    started = time.perf_counter()
    tech = await start_technician(http, target["url"], target["secret"], sid)
    lean(tech.pc)
    return await first_frame(sid, phone, tech, started)


async def first_frame(sid: str, phone: MediaPeer, tech: MediaPeer, started: float) -> BenchSession:
    session = BenchSession(sid, [phone.pc, tech.pc], phone.sending["video"], tech.received["video"])
    session.watch()
    await session.received.wait_for(1, CONNECT_TIMEOUT)
    session.first_frame = session.received.arrival[0] - started
    return session


async def start_direct(sid: str, video: EncodedClip, audio: EncodedClip) -> BenchSession:
    """Phone and technician connected to each other, no relay: the latency baseline."""
    phone_pc, tech_pc = peer_connection(), peer_connection()
    video_track, audio_track = ReplayTrack(video), ReplayTrack(audio)
    video_tx = phone_pc.addTransceiver(video_track, direction="sendonly")
    phone_pc.addTransceiver(audio_track, direction="sendonly")
    received = {"video": ReceivedMedia("video"), "audio": ReceivedMedia("audio")}
    for kind in ("video", "audio"):
        tap_receiver(tech_pc.addTransceiver(kind, direction="recvonly"), received[kind])
    await phone_pc.setLocalDescription(await phone_pc.createOffer())
    started = time.perf_counter()
    await tech_pc.setRemoteDescription(phone_pc.localDescription)
    await tech_pc.setLocalDescription(await tech_pc.createAnswer())
    await phone_pc.setRemoteDescription(tech_pc.localDescription)
    lean_phone(phone_pc, {"video": video_track, "audio": audio_track})
    lean(tech_pc)
    pack_only(phone_pc)
    passthrough.on_keyframe_request(video_tx.sender, video_track.request_keyframe)
    phone = MediaPeer(phone_pc, {}, {"video": video_track, "audio": audio_track})
    return await first_frame(sid, phone, MediaPeer(tech_pc, received, {}), started)


async def start_janus(
    janus: JanusSession, sid: str, video: EncodedClip, audio: EncodedClip
) -> BenchSession:
    """Phone publishes into a VideoRoom room of its own; technician subscribes to the feed."""
    room = random.randint(1, 2**31)
    publisher = await janus.attach()
    await janus.message(
        publisher,
        {
            "request": "create",
            "room": room,
            "publishers": 1,
            "videocodec": "vp8",
            "audiocodec": "opus",
            "bitrate": 0,
            "fir_freq": 0,
        },
    )
    phone_pc = peer_connection()
    video_track, audio_track = ReplayTrack(video), ReplayTrack(audio)
    video_tx = phone_pc.addTransceiver(video_track, direction="sendonly")
    phone_pc.addTransceiver(audio_track, direction="sendonly")
    await phone_pc.setLocalDescription(await phone_pc.createOffer())
    joined = await janus.message(
        publisher,
        {
            "request": "joinandconfigure",
            "room": room,
            "ptype": "publisher",
            "audio": True,
            "video": True,
        },
        {"type": "offer", "sdp": phone_pc.localDescription.sdp},
    )
    feed = joined["plugindata"]["data"]["id"]
    await phone_pc.setRemoteDescription(RTCSessionDescription(**joined["jsep"]))
    lean_phone(phone_pc, {"video": video_track, "audio": audio_track})
    pack_only(phone_pc)
    passthrough.on_keyframe_request(video_tx.sender, video_track.request_keyframe)
    await connected(phone_pc)

    started = time.perf_counter()
    subscriber = await janus.attach()
    attached = await janus.message(
        subscriber,
        {"request": "join", "ptype": "subscriber", "room": room, "streams": [{"feed": feed}]},
    )
    tech_pc = peer_connection()
    await tech_pc.setRemoteDescription(RTCSessionDescription(**attached["jsep"]))
    received = {}
    for transceiver in tech_pc.getTransceivers():  # made by the offer: divert before connecting
        received[transceiver.kind] = ReceivedMedia(transceiver.kind)
        tap_receiver(transceiver, received[transceiver.kind])
    await tech_pc.setLocalDescription(await tech_pc.createAnswer())
    lean(tech_pc)
    await janus.message(
        subscriber, {"request": "start"}, {"type": "answer", "sdp": tech_pc.localDescription.sdp}
    )
    phone = MediaPeer(phone_pc, {}, {"video": video_track, "audio": audio_track})
    return await first_frame(sid, phone, MediaPeer(tech_pc, received, {}), started)


def window_stats(
    session: BenchSession, marked: tuple[float, int], ended: tuple[float, int], by_hash: bool
) -> dict[str, Any]:
    (t0, sent0), (t1, sent1) = marked, ended
    if by_hash:
        in_window = [(s, a) for s, a in session.samples if t0 <= s <= t1]
        received = len(in_window)
        latencies = [a - s for s, a in in_window]
    else:  # transcoded: payloads differ, count arrivals
        received = sum(1 for a in session.received.arrival if t0 <= a <= t1)
        latencies = []
    return {
        "sid": session.sid,
        "sent": sent1 - sent0,
        "received": received,
        "latencies": latencies,
        "first_frame": session.first_frame,
        "keyframe_requests": session.video.keyframe_requests,
    }


async def run_worker(conn: Connection, video: EncodedClip, audio: EncodedClip) -> None:
    loop = asyncio.get_running_loop()
    sessions: list[BenchSession] = []
    janus: JanusSession | None = None
    system = ""
    marks: dict[str, tuple[float, int]] = {}
    cpu_mark = 0.0
    async with aiohttp.ClientSession() as http:
        while True:
            command, argument = await loop.run_in_executor(None, conn.recv)
            try:
                if command == "start":
                    system = argument["system"]
                    sessions = []
                    if system == "janus":
                        janus = JanusSession(http, argument["url"])
                        await janus.start()
                    for sid in argument["sids"]:
                        if system == "direct":
                            sessions.append(await start_direct(sid, video, audio))
                        elif system == "janus":
                            sessions.append(await start_janus(janus, sid, video, audio))
                        else:  # "urls": each session's own server (bench/sidecars.py)
                            url = (argument.get("urls") or {}).get(sid, argument.get("url"))
                            target = {**argument, "url": url}
                            sessions.append(
                                await start_via_control_api(http, target, sid, video, audio)
                            )
                    conn.send(("ready", None))
                elif command == "mark":
                    now = time.perf_counter()
                    marks = {s.sid: (now, s.video.sent) for s in sessions}
                    cpu_mark = cpu_seconds()
                    conn.send(("marked", None))
                elif command == "end":
                    now = time.perf_counter()
                    cpu = cpu_seconds() - cpu_mark
                    ends = {s.sid: (now, s.video.sent) for s in sessions}
                    await asyncio.sleep(0.5)  # let frames in flight at the end arrive
                    stats = [
                        window_stats(s, marks[s.sid], ends[s.sid], system != "mediarelay")
                        for s in sessions
                    ]
                    if os.environ.get("LENS_BENCH_SAMPLES"):  # raw samples, for digging
                        dump = {s.sid: s.samples for s in sessions}
                        path = f"{os.environ['LENS_BENCH_SAMPLES']}-{os.getpid()}.json"
                        with open(path, "w") as file:
                            json.dump(dump, file)
                    conn.send(("stats", {"sessions": stats, "cpu": cpu}))
                elif command == "stop":
                    for session in sessions:
                        for pc in session.pcs:
                            await pc.close()
                        if system.startswith("lens") or system == "mediarelay":
                            urls = argument.get("urls") or {}
                            base = urls.get(session.sid, argument.get("url"))
                            url = f"{base}/sessions/{session.sid}"
                            headers = {"Authorization": f"Bearer {argument['secret']}"}
                            async with http.delete(url, headers=headers):
                                pass
                    if janus is not None:
                        await janus.close()
                        janus = None
                    sessions = []
                    REPLAYS.clear()
                    conn.send(("stopped", None))
                elif command == "quit":
                    return
            except Exception as exc:  # report, keep serving
                conn.send(("error", f"{type(exc).__name__}: {exc}"))


def worker_main(conn: Connection, video: EncodedClip, audio: EncodedClip) -> None:
    """Process entry point."""
    asyncio.run(run_worker(conn, video, audio))
