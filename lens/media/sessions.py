"""Lens media sessions: a phone (publisher) leg and a technician (subscriber) leg, relayed."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Coroutine
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
    sdp,
)
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

from lens import features
from lens.media import ice, passthrough
from lens.media.capture import (
    CaptureError,
    CaptureTotals,
    Recorder,
    RecordingResult,
    VideoHistory,
    decode_packets,
    recording_path,
)
from lens.media.forwarder import (
    AudioForwarder,
    LegRewriter,
    RtpView,
    VideoForwarder,
    starts_keyframe,
)
from lens.media.recovery import LinkEstimate
from lens.media.relay import RelayTotals

logger = logging.getLogger(__name__)

PUBLISHER = "publisher"
SUBSCRIBER = "subscriber"
VIDEO_CODEC_PREFERENCE = ("video/vp8", "video/h264")
AUDIO_CODEC_PREFERENCE = ("audio/opus",)
SNAPSHOT_WAIT = 2.0  # seconds a snapshot waits for a keyframe it asked for


class SessionError(Exception):
    """A control request the session refuses; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Leg:
    """One peer connection of a session, and what flows through it."""

    role: str
    pc: RTCPeerConnection
    transceivers: dict[str, RTCRtpTransceiver] = field(default_factory=dict)
    codecs: dict[str, RTCRtpCodecParameters] = field(default_factory=dict)
    # packets forwarded onto this leg: audio both ways, the phone's video to the technician
    outgoing: dict[str, AudioForwarder | VideoForwarder] = field(default_factory=dict)
    frames_received: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    bytes_received: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    created_at: float = field(default_factory=time.monotonic)
    closing: asyncio.Task[None] | None = None
    congestion: passthrough.TransportCcFeedback | None = None  # the phone's leg
    video_mime: str = ""  # the negotiated video codec's, lower case
    fec: passthrough.RedUlpfec | None = None  # the phone's leg: RED/ULPFEC repair
    round_trip: passthrough.RtcpRoundTrip | None = None  # the phone's leg: RTT from RTCP
    link: LinkEstimate | None = None  # the incoming video's (the phone's leg: its link)

    def receiver(self, kind: str) -> RTCRtpReceiver | None:
        transceiver = self.transceivers.get(kind)
        return transceiver.receiver if transceiver else None

    def state(self) -> dict[str, Any]:
        """JSON-ready view of the leg."""
        media = {}
        for kind in ("video", "audio"):
            codec = self.codecs.get(kind)
            track = self.outgoing.get(kind)
            media[kind] = {
                "codec": codec.mimeType if codec else None,
                "frames_received": self.frames_received[kind],
                "bytes_received": self.bytes_received[kind],
                "frames_forwarded": track.stats.frames_forwarded if track else 0,
                "bytes_forwarded": track.stats.bytes_forwarded if track else 0,
                "frames_dropped": track.stats.frames_dropped if track else 0,
                "keyframes_forwarded": track.stats.keyframes_forwarded if track else 0,
            }
            if kind == "video" and track and track.resolution:
                media[kind]["resolution"] = list(track.resolution)
        transport = {}
        if self.congestion is not None:
            queue = self.congestion.queue
            transport = {
                "inline_packets": queue.inline,
                "lean_packets": queue.lean.packets if queue.lean is not None else 0,
                "kernel_stamped": queue.kernel_stamped,
                "transport_cc_feedback": self.congestion.feedback.packets_sent,
            }
        receiver = self.receiver("video")
        buffer = passthrough.video_buffer(receiver) if receiver is not None else None
        if buffer is not None:
            link = buffer.link
            nacks = passthrough.nack_list(receiver)
            transport["recovery"] = {
                "rtt_ms": round(link.rtt * 1000),
                "rtt_samples": link.rtt_samples,
                "rtcp_rtt_ms": round(link.rtcp_rtt * 1000) if link.rtcp_rtt is not None else None,
                "rtcp_rtt_samples_sr_xr": (
                    [self.round_trip.sr_samples, self.round_trip.xr_samples]
                    if self.round_trip is not None
                    else None
                ),
                "jitter_ms": round(link.jitter * 1000, 1),
                "give_up_ms": round(link.give_up * 1000),
                "playout_floor_ms": round(link.playout_floor() * 1000),
                "nacks_sent": nacks.nacks_sent if nacks else None,
                "nack_copies_sent": nacks.copies_sent if nacks else None,
                "recovered": nacks.recovered if nacks else None,
                "nack_expired": nacks.expired if nacks else None,
                "late_or_duplicate": nacks.late if nacks else None,
                "recovery_ms_p50_p90_max": _spread(nacks.recovery_delays) if nacks else None,
                "holes_given_up": buffer.holes_given_up,
                "fec_rebuilt_missing": nacks.rebuilt_missing if nacks else None,
                "lost_without_media": nacks.lost_without_media if nacks else None,
                **(self.fec.state() if self.fec is not None else {}),
                "buffer_keyframe_requests": buffer.keyframe_requests,
            }
        return {
            "transport": transport,
            "connection_state": self.pc.connectionState,
            "ice_connection_state": self.pc.iceConnectionState,
            **media,
        }


def _spread(delays) -> list[int] | None:
    """p50, p90 and max of some delays (seconds), in ms."""
    if not delays:
        return None
    ordered = sorted(delays)
    pick = lambda q: round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))])  # noqa: E731
    return [pick(0.5), pick(0.9), round(1000 * ordered[-1])]


def offered_kinds(offer: RTCSessionDescription) -> set[str]:
    """The media kinds an SDP offer carries, or a 400 if it cannot be read."""
    try:
        return {media.kind for media in sdp.SessionDescription.parse(offer.sdp).media}
    except Exception as exc:
        raise SessionError(f"unreadable SDP offer: {exc}", 400) from exc


def _preferred(
    kind: str, mime_types: tuple[str, ...], extra: tuple[str, ...] = ()
) -> list[RTCRtpCodecCapability]:
    capabilities = RTCRtpReceiver.getCapabilities(kind).codecs
    chosen = [
        c for mime in (*mime_types, *extra) for c in capabilities if c.mimeType.lower() == mime
    ]
    if kind == "video":
        chosen += [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
    return chosen


class LensMediaSession:
    """The media of one Lens session: forwards the phone's media to the technician and back."""

    def __init__(
        self,
        sid: str,
        totals: RelayTotals,
        ice_servers: ice.NetworkSettings | list[dict[str, Any]],
        captures: CaptureTotals | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.sid = sid
        self.features: frozenset[str] = frozenset()
        self.on_hold = False
        self.publisher: Leg | None = None
        self.subscriber: Leg | None = None
        self.keyframe_requests = 0
        self.created_at = time.monotonic()
        self._totals = totals
        self._ice_servers = ice_servers
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._answering = 0
        self.recorder: Recorder | None = None
        self._history = VideoHistory()
        self._captures = captures or CaptureTotals()
        self._executor = executor

    # ----- legs -------------------------------------------------------------------------

    async def connect_publisher(
        self,
        offer: RTCSessionDescription,
        session_features: frozenset[str],
        network: ice.NetworkSettings | None = None,
    ) -> RTCSessionDescription:
        """Answer the phone's offer; a new phone leg replaces the old one (reconnect).
        `network`: the site's STUN/TURN servers sent with the offer (else the sidecar's)."""
        self.features = session_features
        offered = offered_kinds(offer)
        leg = self._new_leg(PUBLISHER, network)
        # a technician already connected can only take the codec its leg negotiated
        technician_video = self.subscriber.codecs.get("video") if self.subscriber else None
        self._add_transceivers(
            leg,
            offered,
            video=(
                "recvonly",
                (technician_video.mimeType.lower(),)
                if technician_video
                else VIDEO_CODEC_PREFERENCE,
            ),
            audio=("sendrecv", AUDIO_CODEC_PREFERENCE),
        )
        for kind in leg.transceivers:
            self._divert(leg, kind, self._from_phone)
        answer = await self._answer(leg, offer)
        old, self.publisher = self.publisher, leg
        self._frame_view(self.recorder is not None)  # frames only for a recording
        if old is not None:
            self._spawn(self._close_leg(old))
        self._history.clear()
        if self.recorder is not None:
            self.recorder.source_changed()
        if self.subscriber is not None:
            for track in self.subscriber.outgoing.values():
                track.source_changed()
        return answer

    async def connect_subscriber(
        self, offer: RTCSessionDescription, network: ice.NetworkSettings | None = None
    ) -> RTCSessionDescription:
        """Answer the technician's offer; a new technician leg replaces the old one."""
        offered = offered_kinds(offer)
        leg = self._new_leg(SUBSCRIBER, network)
        phone_video = self.publisher.codecs.get("video") if self.publisher else None
        self._add_transceivers(
            leg,
            offered,
            # only the phone's codec can be forwarded without transcoding
            video=(
                "sendonly",
                (phone_video.mimeType.lower(),) if phone_video else VIDEO_CODEC_PREFERENCE,
            ),
            audio=("sendrecv", AUDIO_CODEC_PREFERENCE),
        )
        if "audio" in leg.transceivers:
            self._divert(leg, "audio", None)  # its audio comes as packets
        answer = await self._answer(leg, offer)
        old, self.subscriber = self.subscriber, leg
        if old is not None:
            self._spawn(self._close_leg(old))
        if self.publisher is not None:
            for track in self.publisher.outgoing.values():
                track.source_changed()  # the technician's audio: a new stream continues it
        return answer

    def hold(self) -> None:
        """Stop forwarding the phone's media to the technician."""
        self._require(features.HOLD)
        self.on_hold = True
        self._history.clear()  # frames skipped during hold break its reference chain
        if self.recorder is not None:
            self.recorder.pause()

    def resume(self) -> None:
        """Forward the phone's media again, starting from a fresh keyframe."""
        self._require(features.HOLD)
        if self.on_hold:
            self.on_hold = False
            if self.subscriber is not None:
                for track in self.subscriber.outgoing.values():
                    track.resync()

    async def snapshot(self) -> tuple[bytes, int, int]:
        """The current picture at full resolution: PNG bytes, width, height."""
        self._require(features.SNAPSHOT)
        if self.on_hold:
            raise SessionError("the session is on hold", 409)
        if self._history.packets() is None:
            if self.publisher is None or "video" not in self.publisher.codecs:
                raise SessionError("no video yet", 409)
            self.request_keyframe()
            try:
                await asyncio.wait_for(self._history.keyframe_seen.wait(), SNAPSHOT_WAIT)
            except TimeoutError as exc:
                raise SessionError("no video yet", 409) from exc
        history = self._history.packets()
        codec = self.publisher.codecs.get("video") if self.publisher else None
        if history is None or codec is None:
            raise SessionError("no video yet", 409)
        self._captures.snapshot_decoders += 1
        loop = asyncio.get_running_loop()
        mime_type, packets = history
        depayload = passthrough.depayloader(codec)
        try:
            picture = await loop.run_in_executor(
                self._executor, decode_packets, mime_type, packets, depayload
            )
        except CaptureError as exc:
            self._captures.snapshot_failures += 1
            raise SessionError(str(exc), 409) from exc
        self._captures.snapshots += 1
        return picture

    def start_recording(self, root: Path, requested_path: Any) -> dict[str, Any]:
        """Start writing the forwarded media to a file under `root`."""
        self._require(features.RECORDING)
        if self.recorder is not None:
            raise SessionError("the session is already being recorded", 409)
        video = self.publisher.codecs.get("video") if self.publisher else None
        if video is None:
            raise SessionError("no video yet", 409)
        try:
            path = recording_path(root, requested_path, video.mimeType.lower())
        except CaptureError as exc:
            raise SessionError(str(exc), 400) from exc
        if path.exists():
            raise SessionError("a file with that name exists", 409)
        audio = self.publisher.codecs.get("audio") if self.publisher else None
        self.recorder = Recorder(
            path,
            video.mimeType.lower(),
            audio.mimeType.lower() if audio else None,
            self.request_keyframe,
            self._captures,
        )
        self._captures.recordings_started += 1
        self._frame_view(True)  # the recorder takes frames
        return {"recording": True, "path": str(path)}

    async def stop_recording(self, ending: bool = False) -> RecordingResult:
        """Finish the file and report its duration and size (a forced one only at the end)."""
        self._require(features.RECORDING)
        if features.RECORDING_FORCED in self.features and not ending:
            raise SessionError("the session's recording is forced; it ends with the session", 403)
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            raise SessionError("the session is not being recorded", 409)
        self._frame_view(False)
        return await recorder.stop()

    async def close(self) -> None:
        """Tear down both legs, any recording, and every task this session started."""
        self._closed = True
        legs = [leg for leg in (self.publisher, self.subscriber) if leg is not None]
        self.publisher = self.subscriber = None
        await asyncio.gather(*(self._close_leg(leg) for leg in legs), return_exceptions=True)
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            result = await recorder.stop()
            logger.info("session %s: recording %s finished at teardown", self.sid, result.path)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def state(self) -> dict[str, Any]:
        """JSON-ready view of the session and both legs."""
        return {
            "session": self.sid,
            "features": sorted(self.features),
            "on_hold": self.on_hold,
            "keyframe_requests": self.keyframe_requests,
            "recording": self.recorder.state() if self.recorder else None,
            PUBLISHER: self.publisher.state() if self.publisher else None,
            SUBSCRIBER: self.subscriber.state() if self.subscriber else None,
        }

    @property
    def empty(self) -> bool:
        return self.publisher is None and self.subscriber is None

    @property
    def idle(self) -> bool:
        """No leg, none being answered, no recording: nothing would be lost by closing it."""
        return self.empty and not self._answering and self.recorder is None

    # ----- forwarding -------------------------------------------------------------------

    def _from_phone(
        self, leg: Leg, kind: str, codec: RTCRtpCodecParameters, frame: JitterFrame
    ) -> None:
        """The phone's video frames (the frame view, on while recording)."""
        if leg is not self.publisher or self.on_hold:
            return
        if self.recorder is not None:
            self.recorder.offer(kind, codec.mimeType.lower(), frame)
        # video reaches the technician packet by packet (_phone_video_packet)

    def _frame_view(self, on: bool) -> None:
        """Reassemble the phone's video into frames (for a recording) or not."""
        receiver = self.publisher.receiver("video") if self.publisher else None
        if receiver is not None:
            passthrough.frame_view(receiver, on)

    def _phone_audio_packet(self, leg: Leg, packet: Any) -> None:
        leg.frames_received["audio"] += 1  # an Opus frame is one packet
        leg.bytes_received["audio"] += len(packet.payload)
        if leg is not self.publisher or self.on_hold:
            return
        if self.recorder is not None:
            frame = JitterFrame(data=packet.payload, timestamp=packet.timestamp)
            self.recorder.offer("audio", leg.codecs["audio"].mimeType.lower(), frame)
        forwarder = self.subscriber.outgoing.get("audio") if self.subscriber else None
        if forwarder is not None:
            forwarder.forward(packet)

    def _technician_audio_packet(self, leg: Leg, packet: Any) -> None:
        leg.frames_received["audio"] += 1
        leg.bytes_received["audio"] += len(packet.payload)
        if leg is not self.subscriber or self.publisher is None:
            return
        forwarder = self.publisher.outgoing.get("audio")
        if forwarder is not None:
            forwarder.forward(packet)

    def _phone_video_packet(self, leg: Leg, packet: Any) -> None:
        payload = packet.payload
        if packet.marker:
            leg.frames_received["video"] += 1
        leg.bytes_received["video"] += len(payload)
        if leg is not self.publisher or self.on_hold:
            return
        # a broken history is restarted by the next keyframe; a snapshot that finds none
        # asks for one itself (asking here would cost the live picture keyframes); a packet
        # without payload (a FEC packet's number) is kept so that it is no hole
        mime_type = leg.video_mime
        if not payload:
            keyframe = False
        elif type(packet) is RtpView and packet.vp8 is not None:
            keyframe = packet.vp8.keyframe  # (the lean path parsed it: no call per packet)
        else:
            keyframe = starts_keyframe(mime_type, packet)
        self._history.add(
            mime_type, packet.sequence_number, packet.timestamp, packet.marker, payload, keyframe
        )
        if self.subscriber is None:
            return
        forwarder = self.subscriber.outgoing.get("video")
        if isinstance(forwarder, VideoForwarder):
            forwarder.forward(packet)

    def request_keyframe(self) -> None:
        """Ask the phone for a keyframe (PLI) unless a request is still in flight: one is
        repeated only after the phone leg's round trip plus a keyframe's transmission time
        (``recovery.KeyframeRequests``)."""
        if self.publisher is None:
            return
        receiver = self.publisher.receiver("video")
        buffer = passthrough.video_buffer(receiver) if receiver is not None else None
        if buffer is None or buffer.media_ssrc is None or not buffer.keyframes.may_send():
            return
        self._send_keyframe_request(self.publisher)

    def _send_keyframe_request(self, leg: Leg) -> None:
        """Send PLI to the phone now (the caller decided one is due)."""
        receiver = leg.receiver("video")
        if leg is not self.publisher or receiver is None:
            return
        self.keyframe_requests += 1
        self._totals.keyframe_requests += 1
        self._spawn(passthrough.send_pli(receiver))

    def _playout_floor(self) -> float:
        """How long the technician's browser should buffer, from the phone's link."""
        link = self.publisher.link if self.publisher is not None else None
        return link.playout_floor() if link is not None else 0.0

    # ----- plumbing ---------------------------------------------------------------------

    def _new_leg(self, role: str, network: ice.NetworkSettings | None = None) -> Leg:
        if self._closed:
            raise SessionError("session is closed", 409)
        # port range, announced address, every STUN/TURN server: lens.media.ice
        leg = Leg(role=role, pc=ice.peer_connection(network or self._ice_servers))

        @leg.pc.on("connectionstatechange")
        def on_connection_state() -> None:
            state = leg.pc.connectionState
            logger.info("session %s %s leg: %s", self.sid, role, state)
            if state in ("failed", "closed"):
                self._spawn(self._drop_leg(leg))
            elif state == "connected" and role == SUBSCRIBER:
                self.request_keyframe()  # the technician's decoder starts from a keyframe

        return leg

    def _add_transceivers(
        self, leg: Leg, offered: set[str], **wanted: tuple[str, tuple[str, ...]]
    ) -> None:
        """One transceiver per kind the offer carries, made before the offer is applied
        so its receiver can be diverted and its codecs restricted."""
        for kind, (direction, codecs) in wanted.items():
            if kind in offered:
                transceiver = leg.pc.addTransceiver(kind, direction=direction)
                # the phone may protect its video with FEC, which the sidecar repairs with
                extra = passthrough.FEC_CODECS if kind == "video" and leg.role == PUBLISHER else ()
                transceiver.setCodecPreferences(_preferred(kind, codecs, extra))
                leg.transceivers[kind] = transceiver

    def _divert(self, leg: Leg, kind: str, route: Any | None) -> None:
        """Take `leg`'s incoming `kind` off aiortc's decoder: frames (the phone's video)
        go to `route`, packets to ``_packet_route``."""

        def on_frame(codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
            # (frames and bytes received are counted as the packets come)
            if route is not None:
                route(leg, kind, codec, frame)

        tap = passthrough.FrameTap(on_frame, on_end=lambda: None)
        receiver = leg.transceivers[kind].receiver
        passthrough.divert_receiver(
            receiver,
            kind,
            tap,
            # a hole the frame view gives up (as long as the phone's leg allows for one
            # retransmission round or two) is a hole in the technician's stream too, which
            # only a keyframe mends: ask the phone now (through the buffer's one-in-flight
            # gate) rather than when the technician's browser gives up waiting (3 s)
            request_keyframe=lambda: self._send_keyframe_request(leg),
            frame_view_asks=leg.role == PUBLISHER,
            # after an outage the technician's stream has a gap only a keyframe mends
            on_outage=self.request_keyframe if leg.role == PUBLISHER else None,
            on_packet=self._packet_route(leg, kind),
        )
        buffer = passthrough.video_buffer(receiver)
        if buffer is not None:
            leg.link = buffer.link  # (read for every frame sent: _playout_floor)

    def _packet_route(self, leg: Leg, kind: str) -> Any:
        """Where a leg's packets go as they arrive (before any frame is made)."""
        # (partial, not a lambda: called for every packet, it adds no Python frame)
        if kind == "audio":
            if leg.role == PUBLISHER:
                return functools.partial(self._phone_audio_packet, leg)
            return functools.partial(self._technician_audio_packet, leg)
        if leg.role == PUBLISHER:
            return functools.partial(self._phone_video_packet, leg)
        return None

    async def _answer(self, leg: Leg, offer: RTCSessionDescription) -> RTCSessionDescription:
        self._answering += 1  # not attached until answered, yet the session is not idle
        try:
            await leg.pc.setRemoteDescription(offer)
            if leg.transceivers:
                first = next(iter(leg.transceivers.values())).receiver
                passthrough.inline_media(first)  # RTP/RTCP handled as it comes off the socket
                passthrough.send_rtcp_directly(first)  # and aiortc's RTCP sent at once
                if leg.role == PUBLISHER and "video" in leg.transceivers:
                    leg.fec = passthrough.repair_with_fec(leg.transceivers["video"].receiver)
                if leg.role == PUBLISHER and passthrough.TRANSPORT_CC:
                    # the phone estimates its bandwidth from transport-cc feedback
                    receiver = leg.receiver("video") or first
                    leg.congestion = passthrough.TransportCcFeedback(receiver)
            for kind, transceiver in leg.transceivers.items():
                codec = passthrough.negotiated_codec(transceiver)
                if codec is None:
                    continue
                leg.codecs[kind] = codec
                if kind == "video":
                    leg.video_mime = codec.mimeType.lower()
                if transceiver.direction not in ("sendonly", "sendrecv"):
                    continue
                sender = transceiver.sender
                passthrough.install_packer(sender, codec)  # no encoder, whatever happens
                if kind == "video":
                    # the phone's packets, rewritten for this leg (forwarder.py)
                    sender.replaceTrack(passthrough.IdleTrack(kind))
                    rewriter = LegRewriter(sender._ssrc, codec.payloadType, codec.mimeType.lower())
                    playout_id = passthrough.negotiated_extension_id(
                        transceiver, passthrough.PLAYOUT_DELAY_URI
                    )
                    packet_sender = passthrough.PacketSender(sender, playout_id)
                    leg.outgoing[kind] = VideoForwarder(
                        rewriter,
                        packet_sender.send_rtp,
                        self.request_keyframe,
                        self._totals.by_kind[kind],
                        ready=packet_sender.ready,
                        playout_floor=self._playout_floor if playout_id else None,
                    )
                    passthrough.on_keyframe_request(sender, self.request_keyframe)
                else:
                    # the other leg's audio, packet by packet (an Opus frame is a packet)
                    sender.replaceTrack(passthrough.IdleTrack(kind))
                    rewriter = LegRewriter(
                        sender._ssrc,
                        codec.payloadType,
                        codec.mimeType.lower(),
                        clock_rate=codec.clockRate,
                    )
                    packet_sender = passthrough.PacketSender(sender)
                    leg.outgoing[kind] = AudioForwarder(
                        rewriter,
                        packet_sender.send_rtp,
                        self._totals.by_kind[kind],
                        ready=packet_sender.ready,
                    )
            await leg.pc.setLocalDescription(await leg.pc.createAnswer())
            if leg.transceivers:  # candidates are gathered now
                passthrough.read_directly(
                    next(iter(leg.transceivers.values())).receiver,
                    # the phone's arrival times feed its bandwidth estimate (transport-cc)
                    stamp=leg.congestion is not None,
                )
            if leg.role == PUBLISHER:
                self._measure_round_trip(leg)
        except Exception as exc:
            await self._close_leg(leg)
            raise SessionError(f"cannot answer the {leg.role} offer: {exc}", 400) from exc
        finally:
            self._answering -= 1
        return leg.pc.localDescription

    def _measure_round_trip(self, leg: Leg) -> None:
        """Feed the phone leg's round trip from RTCP to its video's recovery, so that
        it follows the link before (or without) any NACK being answered."""
        video = leg.receiver("video")
        buffer = passthrough.video_buffer(video) if video is not None else None
        if buffer is None:
            return
        audio = leg.transceivers.get("audio")
        sends_audio = audio is not None and "audio" in leg.outgoing  # the technician's voice
        leg.round_trip = passthrough.RtcpRoundTrip(
            buffer.link, audio.sender if sends_audio else None, video
        )

    async def _drop_leg(self, leg: Leg) -> None:
        if self.publisher is leg:
            self.publisher = None
        if self.subscriber is leg:
            self.subscriber = None
        await self._close_leg(leg)

    async def _close_leg(self, leg: Leg) -> None:
        for track in leg.outgoing.values():
            track.stop()
        for transceiver in leg.transceivers.values():
            if isinstance(transceiver.sender.track, passthrough.IdleTrack):
                transceiver.sender.track.stop()
        receiver = leg.receiver("video")
        if receiver is not None:
            passthrough.stop_nacks(receiver)
        if leg.congestion is not None:
            leg.congestion.stop()
        if leg.round_trip is not None:
            leg.round_trip.stop()
        if leg.closing is None:
            # One close per leg: a second pc.close() awaits the first one's future, and
            # cancelling that waiter (teardown cancels tasks) would break the first close.
            leg.closing = asyncio.get_running_loop().create_task(leg.pc.close())
        await asyncio.shield(leg.closing)

    def _require(self, feature: str) -> None:
        if feature not in self.features:
            raise SessionError(f"the session's feature set does not include {feature!r}", 403)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class MediaSessions:
    """The sidecar's registry of live sessions, created by the first leg posted."""

    def __init__(self, ice_servers: ice.NetworkSettings | list[dict[str, Any]]) -> None:
        self.totals = RelayTotals()
        self.captures = CaptureTotals()
        self._ice_servers = ice_servers
        self._sessions: dict[str, LensMediaSession] = {}
        self._idle_since: dict[str, float] = {}
        # snapshots decode here, never on the event loop; two at a time at most
        self._executor = ThreadPoolExecutor(2, thread_name_prefix="lens-snapshot")

    def get(self, sid: str) -> LensMediaSession | None:
        return self._sessions.get(sid)

    def get_or_create(self, sid: str) -> LensMediaSession:
        session = self._sessions.get(sid)
        if session is None:
            session = LensMediaSession(
                sid, self.totals, self._ice_servers, self.captures, self._executor
            )
            self._sessions[sid] = session
        return session

    async def close(self, sid: str) -> bool:
        """Tear down one session; False if it did not exist."""
        session = self._sessions.pop(sid, None)
        if session is None:
            return False
        await session.close()
        return True

    async def close_all(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def reap(self, now: float, idle_for: float) -> list[str]:
        """Close the sessions left with no leg and no recording for idle_for seconds.

        The web process DELETEs a session when it ends; one that ends otherwise (a sweep
        on the web side, a phone that never came back) would stay here. A phone or
        technician that connects again later simply makes a new one."""
        reaped = []
        for sid, session in list(self._sessions.items()):
            if not session.idle:
                self._idle_since.pop(sid, None)
            elif now - self._idle_since.setdefault(sid, now) >= idle_for:
                self._idle_since.pop(sid, None)
                await self.close(sid)
                reaped.append(sid)
        return reaped

    def recordings(self) -> int:
        """Recordings being written now."""
        return sum(session.recorder is not None for session in self._sessions.values())

    def __iter__(self):
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)
