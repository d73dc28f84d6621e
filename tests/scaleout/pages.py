"""aiortc peers that behave like the Lens pages: they signal through a web process's page
WebSocket (not the sidecar's API) and, like static/js/webrtc.js, re-offer on a new peer
connection when their media stops (the pages do it when Chrome reports the connection
"disconnected"/"failed"; these peers when nothing arrived for SILENCE_SECONDS)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field

from aiortc import RTCSessionDescription
from simple_websocket import Client

from lens.media import passthrough
from lens.media.testing import (
    EncodedClip,
    ReceivedMedia,
    ReplayTrack,
    pack_only,
    peer_connection,
    tap_receiver,
)

SILENCE_SECONDS = 2.0


@dataclass
class Page:
    """The phone's page (`phone=True`: sends video + audio) or the technician's."""

    url: str  # ws://host/path of the page's socket
    cookie: str
    phone: bool
    session: int | None = None  # the console names the session an offer is for
    video: EncodedClip | None = None
    audio: EncodedClip | None = None
    received: dict[str, ReceivedMedia] = field(default_factory=dict)
    offers: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.received = {"video": ReceivedMedia("video"), "audio": ReceivedMedia("audio")}
        self.pc = None
        self.ws = None
        self._watch: asyncio.Task | None = None
        self.sending: dict[str, ReplayTrack] = {}

    def _setup(self):
        pc = peer_connection()
        if self.phone:
            video = ReplayTrack(self.video)
            tx = pc.addTransceiver(video, direction="sendonly")
            self.sending["video"] = video
            audio = ReplayTrack(self.audio)
            tap_receiver(pc.addTransceiver(audio, direction="sendrecv"), self.received["audio"])
            self.sending["audio"] = audio
            return pc, (tx, video)
        tap_receiver(pc.addTransceiver("video", direction="recvonly"), self.received["video"])
        audio = ReplayTrack(self.audio)
        tap_receiver(pc.addTransceiver(audio, direction="sendrecv"), self.received["audio"])
        return pc, None

    async def _exchange(self, sdp: str) -> dict:
        loop = asyncio.get_running_loop()

        ref = f"offer-{self.offers}"

        def talk() -> dict:
            if self.ws is None or not self.ws.connected:
                self.ws = Client.connect(self.url, headers={"Cookie": self.cookie})
            message = {"type": "offer", "sdp": sdp, "ref": ref}
            if self.session is not None:
                message["session"] = self.session
            self.ws.send(json.dumps(message))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the page's socket also carries pushes
                raw = self.ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                if not raw or raw.startswith("<"):
                    continue
                reply = json.loads(raw)
                if reply.get("ref") == ref:
                    return reply
            return {"type": "error", "reason": "no answer"}

        return await loop.run_in_executor(None, talk)

    async def connect(self) -> None:
        """Offer on a new peer connection until an answer comes (the page's retry)."""
        while True:
            old, self.pc = self.pc, None
            if old is not None:
                await old.close()
            pc, video = self._setup()
            await pc.setLocalDescription(await pc.createOffer())
            self.offers += 1
            reply = await self._exchange(pc.localDescription.sdp)
            if reply.get("type") == "answer":
                await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
                pack_only(pc)
                if video is not None:
                    passthrough.on_keyframe_request(video[0].sender, video[1].request_keyframe)
                self.pc = pc
                self.connected_at = time.monotonic()
                return
            self.errors.append(reply.get("reason", "?"))
            await pc.close()
            await asyncio.sleep(2.0)  # webrtc.js retries after 2 s

    def last_arrival(self) -> float:
        """perf_counter of the last media this page received (0 for none)."""
        kind = "audio" if self.phone else "video"
        arrivals = self.received[kind].arrival
        return arrivals[-1] if arrivals else 0.0

    async def keep_up(self) -> None:
        """Re-offer whenever the media has stopped for SILENCE_SECONDS."""
        while True:
            await asyncio.sleep(0.2)
            since = max(self.last_arrival(), getattr(self, "connected_perf", 0.0))
            if self.pc is not None and time.perf_counter() - since > SILENCE_SECONDS:
                await self.connect()
                self.connected_perf = time.perf_counter()

    def start_watch(self) -> None:
        self.connected_perf = time.perf_counter()
        self._watch = asyncio.get_running_loop().create_task(self.keep_up())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            self.ws.close()
