"""aiortc peers that behave like the Lens pages: they signal through a web process's page
WebSocket (not the sidecar's API) and, like static/js/webrtc.js, re-offer on a new peer
connection at once when the web process says the sidecar under their leg is gone
("media_reconnect", lens/sidecars/legs.py), and by themselves when their media stops (the
pages when Chrome reports the connection "disconnected"/"failed"; these peers when nothing
arrived for `silence` seconds)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
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
    silence: float = SILENCE_SECONDS  # re-offer by itself after this long without media
    pushes: list[float] = field(default_factory=list)  # perf_counter of each media_reconnect

    def __post_init__(self) -> None:
        self.received = {"video": ReceivedMedia("video"), "audio": ReceivedMedia("audio")}
        self.pc = None
        self.ws = None
        self._watch: asyncio.Task | None = None
        self.sending: dict[str, ReplayTrack] = {}
        self._replies: dict[str, concurrent.futures.Future] = {}
        self._reader: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

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

    def _open(self) -> None:
        """The page's socket, and a reader: replies by ref, media_reconnect pushes."""
        if self.ws is not None and self.ws.connected:
            return
        self.ws = ws = Client.connect(self.url, headers={"Cookie": self.cookie})
        self._reader = threading.Thread(target=self._read, args=(ws,), daemon=True)
        self._reader.start()

    def _read(self, ws: Client) -> None:
        while ws.connected:
            try:
                raw = ws.receive(timeout=0.5)
            except Exception:  # closed
                return
            if not raw or raw.startswith("<"):  # the page's socket also carries pushes
                continue
            message = json.loads(raw)
            waiting = self._replies.pop(message.get("ref"), None)
            if waiting is not None:
                waiting.set_result(message)
            elif message.get("type") == "media_reconnect" and self._loop is not None:
                self.pushes.append(time.perf_counter())
                self._loop.call_soon_threadsafe(self._reconnect_now)

    def _reconnect_now(self) -> None:
        task = self._loop.create_task(self.connect())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _exchange(self, sdp: str) -> dict:
        loop = asyncio.get_running_loop()
        ref = f"offer-{self.offers}"
        reply: concurrent.futures.Future = concurrent.futures.Future()
        self._replies[ref] = reply
        message = {"type": "offer", "sdp": sdp, "ref": ref}
        if self.session is not None:
            message["session"] = self.session

        def send() -> None:
            self._open()
            self.ws.send(json.dumps(message))

        await loop.run_in_executor(None, send)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(reply), 30)
        except TimeoutError:
            return {"type": "error", "reason": "no answer"}
        finally:
            self._replies.pop(ref, None)

    async def connect(self) -> None:
        """Offer on a new peer connection until an answer comes (the page's retry)."""
        self._loop = asyncio.get_running_loop()
        async with self._connecting:  # one at a time: a push may come during a re-offer
            await self._connect()
        self.connected_perf = time.perf_counter()

    async def _connect(self) -> None:
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
        """Re-offer whenever the media has stopped for `silence` seconds."""
        while True:
            await asyncio.sleep(0.2)
            since = max(self.last_arrival(), getattr(self, "connected_perf", 0.0))
            if self.pc is not None and time.perf_counter() - since > self.silence:
                await self.connect()

    def start_watch(self) -> None:
        self.connected_perf = time.perf_counter()
        self._watch = asyncio.get_running_loop().create_task(self.keep_up())

    async def close(self) -> None:
        for task in [self._watch, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            self.ws.close()
