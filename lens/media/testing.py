"""Helpers for driving the relay with aiortc peers: pre-encoded clips, replay, taps.

Used by tests/media and bench/. Frames are encoded once, before a run, so the peers
spend no CPU on codecs while the relay is measured.
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
from aiortc import (
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from lens.media import ice, passthrough
from lens.media.forwarder import RtpView
from lens.media.relay import is_keyframe

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)


@dataclass
class EncodedClip:
    """Pre-encoded frames of one kind, replayed in a loop."""

    kind: str
    frames: list[bytes]
    fps: float
    ticks_per_frame: int
    time_base: fractions.Fraction

    @property
    def digests(self) -> list[bytes]:
        return [frame_digest(f) for f in self.frames]


def frame_digest(data: bytes) -> bytes:
    """The identity of an encoded frame, for matching what was sent with what arrived."""
    return hashlib.blake2b(data, digest_size=12).digest()


def encode_vp8_clip(
    seconds: float = 2.0,
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    bitrate: int = 1_000_000,
    keyframe_every: int = 60,
) -> EncodedClip:
    """Encode a moving test pattern to VP8, with a keyframe every `keyframe_every` frames."""
    options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    return _encode_pattern("libvpx", options, seconds, width, height, fps, bitrate, keyframe_every)


def encode_h264_clip(
    seconds: float = 1.0, width: int = 640, height: int = 480, fps: int = 30
) -> EncodedClip:
    """Encode a moving test pattern to constrained-baseline H.264 (Annex B), one keyframe."""
    options = {"profile": "baseline", "level": "31", "tune": "zerolatency", "preset": "ultrafast"}
    count = int(seconds * fps)
    # one keyframe: every `count + 1` frames never comes round again
    return _encode_pattern("libx264", options, seconds, width, height, fps, 1_000_000, count + 1)


def _encode_pattern(
    codec: str,
    options: dict[str, str],
    seconds: float,
    width: int,
    height: int,
    fps: int,
    bitrate: int,
    keyframe_every: int,
) -> EncodedClip:
    """A moving lavfi test pattern through `codec`, keyframes where we choose them."""
    count = int(seconds * fps)
    source = av.open(f"testsrc2=size={width}x{height}:rate={fps}", format="lavfi")
    encoder = av.CodecContext.create(codec, "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = fractions.Fraction(1, fps)
    encoder.framerate = fractions.Fraction(fps, 1)
    encoder.bit_rate = bitrate
    encoder.gop_size = 100000
    encoder.options = options
    frames: list[bytes] = []
    try:
        for index, frame in enumerate(source.decode(video=0)):
            if index >= count:
                break
            frame = frame.reformat(format="yuv420p")
            frame.pts = index
            # lavfi marks every frame as a keyframe: choose them ourselves
            frame.pict_type = (
                av.video.frame.PictureType.I
                if index % keyframe_every == 0
                else av.video.frame.PictureType.NONE
            )
            frames.extend(bytes(p) for p in encoder.encode(frame))
        frames.extend(bytes(p) for p in encoder.encode(None))
    finally:
        source.close()
    return EncodedClip("video", frames[:count], fps, 90000 // fps, VIDEO_TIME_BASE)


def h264_units(data: bytes) -> tuple[bytes, ...]:
    """The NAL units of an Annex B frame, whatever start-code length framed them."""
    # a 4-byte start code leaves a zero at the end of the unit before it
    units = (unit.strip(b"\x00") for unit in data.split(b"\x00\x00\x01"))
    return tuple(unit for unit in units if unit)


def encode_opus_clip(seconds: float = 1.0) -> EncodedClip:
    """Encode a tone to 20 ms Opus packets."""
    source = av.open("sine=frequency=440:sample_rate=48000", format="lavfi")
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48000
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.time_base = AUDIO_TIME_BASE
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000, frame_size=960)
    packets: list[bytes] = []
    count = int(seconds * 50)
    try:
        for frame in source.decode(audio=0):
            for chunk in resampler.resample(frame):
                packets.extend(bytes(p) for p in encoder.encode(chunk))
            if len(packets) >= count:
                break
    finally:
        source.close()
    return EncodedClip("audio", packets[:count], 50.0, 960, AUDIO_TIME_BASE)


class ReplayTrack(MediaStreamTrack):
    """Sends a pre-encoded clip as av.Packets at its frame rate, looping, pts increasing.

    A keyframe request (PLI/FIR from the far end) restarts the clip at its first frame,
    which is a keyframe: the closest a replayed clip gets to an encoder's forced keyframe.
    """

    def __init__(self, clip: EncodedClip) -> None:
        super().__init__()
        self.kind = clip.kind
        self.clip = clip
        self.sent = 0
        self.keyframe_requests = 0
        self.sent_at: dict[bytes, float] = {}
        self._digests = clip.digests
        self._index = 0
        self._start: float | None = None

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._index = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self.sent / self.clip.fps
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        index = self._index
        self._index = (self._index + 1) % len(self.clip.frames)
        packet = av.Packet(self.clip.frames[index])
        packet.pts = self.sent * self.clip.ticks_per_frame
        packet.time_base = self.clip.time_base
        self.sent_at[self._digests[index]] = time.perf_counter()
        self.sent += 1
        return packet


@dataclass
class ReceivedMedia:
    """Encoded frames a test peer received, without decoding them."""

    kind: str
    digests: list[bytes] = field(default_factory=list)
    arrival: list[float] = field(default_factory=list)
    keyframes: int = 0
    codec: str | None = None
    on_digest: Callable[[bytes, float], None] | None = None
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    def add(self, codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
        self.codec = codec.mimeType.lower()
        digest, now = frame_digest(frame.data), time.perf_counter()
        self.digests.append(digest)
        self.arrival.append(now)
        if self.on_digest is not None:
            self.on_digest(digest, now)
        if self.kind == "video" and is_keyframe(self.codec, frame.data):
            self.keyframes += 1
        for count, waiter in list(self._waiters):
            if len(self.digests) >= count and not waiter.done():
                waiter.set_result(None)

    async def wait_for(self, count: int, timeout: float) -> None:
        """Wait until `count` frames in total have arrived."""
        if len(self.digests) >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        try:
            await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiters.remove((count, waiter))


def tap_receiver(transceiver: RTCRtpTransceiver, received: ReceivedMedia) -> None:
    """Record encoded frames arriving on `transceiver` instead of decoding them."""
    tap = passthrough.FrameTap(received.add, on_end=lambda: None)
    passthrough.divert_receiver(transceiver.receiver, received.kind, tap)


def peer_connection() -> RTCPeerConnection:
    """A bundled peer that gathers host candidates as the sidecar does (lens.media.ice), so
    its sockets are read by lens.media.udp's transport too (cheaper for bench/'s peers)."""
    return ice.peer_connection([])


@dataclass
class MediaPeer:
    """An aiortc peer standing in for the phone or the technician's browser."""

    pc: RTCPeerConnection
    received: dict[str, ReceivedMedia]
    sending: dict[str, ReplayTrack]
    replays: list[PacketReplay] = field(default_factory=list)


async def post_offer(
    http: aiohttp.ClientSession,
    url: str,
    secret: str,
    pc: RTCPeerConnection,
    extra: dict[str, Any] | None = None,
) -> RTCSessionDescription:
    """Create an offer (gathering complete), POST it to the sidecar, return the answer."""
    await pc.setLocalDescription(await pc.createOffer())
    body = {"sdp": pc.localDescription.sdp, "type": "offer", **(extra or {})}
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {secret}"}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: {resp.status} {await resp.text()}")
        answer = await resp.json()
    return RTCSessionDescription(sdp=answer["sdp"], type=answer["type"])


async def start_phone(
    http: aiohttp.ClientSession,
    base_url: str,
    secret: str,
    sid: str,
    video: EncodedClip,
    audio: EncodedClip | None = None,
    features: list[str] | None = None,
    video_codec: str | None = None,
) -> MediaPeer:
    """A phone: video sendonly + audio sendrecv, pre-encoded, honouring keyframe requests."""
    pc = peer_connection()
    video_track = ReplayTrack(video)
    video_tx = pc.addTransceiver(video_track, direction="sendonly")
    if video_codec is not None:  # offer only this codec (and RTX), as a phone might
        video_tx.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() in (video_codec, "video/rtx")
            ]
        )
    sending = {"video": video_track}
    received = {}
    if audio is not None:
        audio_track = ReplayTrack(audio)
        audio_tx = pc.addTransceiver(audio_track, direction="sendrecv")
        sending["audio"] = audio_track
        received["audio"] = ReceivedMedia("audio")
        tap_receiver(audio_tx, received["audio"])
    answer = await post_offer(
        http, f"{base_url}/sessions/{sid}/publisher", secret, pc, {"features": features or []}
    )
    await pc.setRemoteDescription(answer)
    pack_only(pc)
    passthrough.on_keyframe_request(video_tx.sender, video_track.request_keyframe)
    return MediaPeer(pc, received, sending)


async def start_technician(
    http: aiohttp.ClientSession,
    base_url: str,
    secret: str,
    sid: str,
    audio: EncodedClip | None = None,
) -> MediaPeer:
    """A technician: video recvonly + audio sendrecv (recvonly without a clip), recording."""
    pc = peer_connection()
    received = {"video": ReceivedMedia("video")}
    tap_receiver(pc.addTransceiver("video", direction="recvonly"), received["video"])
    sending = {}
    received["audio"] = ReceivedMedia("audio")
    if audio is not None:
        audio_track = ReplayTrack(audio)
        sending["audio"] = audio_track
        tap_receiver(pc.addTransceiver(audio_track, direction="sendrecv"), received["audio"])
    else:  # a technician without a microphone still hears the phone
        tap_receiver(pc.addTransceiver("audio", direction="recvonly"), received["audio"])
    answer = await post_offer(http, f"{base_url}/sessions/{sid}/subscriber", secret, pc)
    await pc.setRemoteDescription(answer)
    pack_only(pc)
    return MediaPeer(pc, received, sending)


def lean_receive(pc: RTCPeerConnection) -> None:
    """Let `pc`'s diverted receivers read their packets on the sidecar's lean path (a
    cheaper load generator for bench/; tests that drop packets in a receiver need the
    aiortc path). Call once its candidates are gathered and the remote answer is set."""
    receivers = [t.receiver for t in pc.getTransceivers()]
    if receivers:
        passthrough.inline_media(receivers[0])
        passthrough.read_directly(receivers[0], stamp=False)


class PacketReplay:
    """Sends a ReplayTrack's frames as RTP packets through ``passthrough.PacketSender``
    instead of aiortc's sender task: a cheaper load generator for bench/ (the sender's
    track becomes idle; NACKs are answered from the PacketSender's buffer). Make it once
    the remote answer is set, before the connection is up."""

    def __init__(self, transceiver: RTCRtpTransceiver, track: ReplayTrack) -> None:
        sender = transceiver.sender
        codec = passthrough.negotiated_codec(transceiver)
        assert codec is not None
        self._sender = sender
        self._packets = passthrough.PacketSender(sender)
        self._packer = passthrough.PackOnlyEncoder(codec)
        self._payload_type = codec.payloadType
        self._track = track
        sender.replaceTrack(passthrough.IdleTrack(track.kind))
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while not self._packets.ready():
            if self._sender.transport.state in ("closed", "failed"):
                return
            await asyncio.sleep(0.02)
        seq, origin = random.getrandbits(15), random.getrandbits(32)
        ssrc = self._sender._ssrc
        while True:
            try:
                frame = await self._track.recv()
            except MediaStreamError:
                return
            payloads, timestamp = self._packer.pack(frame)
            timestamp = (origin + timestamp) & 0xFFFFFFFF
            last = len(payloads) - 1
            for i, payload in enumerate(payloads):
                packet = RtpView(self._payload_type, int(i == last), seq, timestamp, ssrc, payload)
                sent = self._packets.send(packet)
                if not sent and self._sender.transport.state in ("closed", "failed"):
                    return
                seq = (seq + 1) & 0xFFFF


def replay_packets(pc: RTCPeerConnection, tracks: dict[str, ReplayTrack]) -> list[PacketReplay]:
    """A PacketReplay for each of `pc`'s transceivers that sends one of `tracks`."""
    replays = []
    for transceiver in pc.getTransceivers():
        track = tracks.get(transceiver.kind)
        if track is not None and transceiver.sender.track is track:
            replays.append(PacketReplay(transceiver, track))
    return replays


def pack_only(pc: RTCPeerConnection) -> None:
    """Let `pc`'s senders packetize pre-encoded frames without creating encoders."""
    for transceiver in pc.getTransceivers():
        codec = passthrough.negotiated_codec(transceiver)
        if codec is not None and transceiver.sender.track is not None:
            passthrough.install_packer(transceiver.sender, codec)


async def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> None:
    """Poll a condition that has no event to await (e.g. a remote connection state)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(step)
