"""Micro-measure of the sidecar's per-packet path, in one process, without a network.

    .venv/bin/python bench/hotpath.py                # 20 s of a 1 Mbps VP8 + Opus session
    .venv/bin/python bench/hotpath.py --repeat 9     # more rounds, the best one counts
    .venv/bin/python bench/hotpath.py --calls        # + function calls per datagram

On a busy machine CPU time is blurred; two figures it cannot blur: `--calls`, and the
instructions of N rounds under valgrind (the same `--datagrams` file for both branches):

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        .venv/bin/python bench/hotpath.py --repeat 3 --datagrams /tmp/d.pkl   # minus --repeat 1

A phone's decrypted RTP datagrams (a VP8 clip packetized as Chrome does, and Opus) go
through `LeanReceive.handle` → `LeanVideoReceiver`/`LeanAudioReceiver` (statistics, NACK
bookkeeping) → the session's packet routes (snapshot history) → `VideoForwarder` /
`AudioForwarder` → `LegRewriter` → `PacketSender.send` (SRTP-protect and a real `sendto`
to a loopback socket nobody reads included), with the native forward and send steps
(`lens.media.native`) and with their Python twins, alternately. Real aiortc receivers,
senders and a real SRTP session; only the ICE pair is faked. Prints CPU microseconds per
packet (process time, best of the rounds): compare a branch with another on the same
machine, in the same minute.
"""

from __future__ import annotations

import argparse
import pickle
import socket
import sys
import time
import types
from pathlib import Path

import av
import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters
from aiortc.rtp import HeaderExtensionsMap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lens.media import forwarder, passthrough  # noqa: E402
from lens.media.capture import VideoHistory  # noqa: E402
from lens.media.forwarder import (  # noqa: E402
    AudioForwarder,
    LegRewriter,
    RtpView,
    VideoForwarder,
)
from lens.media.relay import ForwardingStats  # noqa: E402
from lens.media.sessions import PUBLISHER, LensMediaSession  # noqa: E402
from lens.media.testing import encode_opus_clip, encode_vp8_clip  # noqa: E402

NATIVE = passthrough.NATIVE  # (None when LENS_MEDIA_NATIVE=0 or not built)
FORWARD = forwarder.FORWARD

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
KEY = b"\x00" * 30


class NoSocket:
    """The nominated pair's socket: a real UDP socket sending to a socket on loopback that
    nobody reads (the kernel drops what does not fit), so both send paths make the same
    syscalls; counts what it was given (the native step's sends are not counted)."""

    sends_at_once = True  # as lens.media.udp's UdpTransport: keeps nothing of `data`

    def __init__(self) -> None:
        self.datagrams = 0
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.address = self.sink.getsockname()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.native_fd = self.sock.fileno()  # (as UdpTransport's: the native step's socket)
        self.send_dropped = 0

    def sendto(self, data: bytes, addr: object) -> None:
        self.datagrams += 1
        try:
            self.sock.sendto(data, addr)
        except BlockingIOError:
            self.send_dropped += 1

    def close(self) -> None:
        self.sock.close()
        self.sink.close()


def srtp(outbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=kind))


def dtls_transport(wire: NoSocket) -> RTCDtlsTransport:
    """A DTLS transport that is 'connected': real SRTP, a stub socket on its pair."""
    dtls = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    dtls._state = DtlsState.CONNECTED
    dtls._tx_srtp = srtp(True)
    protocol = StunProtocol(None)
    protocol.transport = wire
    pair = types.SimpleNamespace(protocol=protocol, remote_addr=wire.address)
    dtls.transport._connection._nominated[1] = pair
    extensions = HeaderExtensionsMap()
    extensions.configure(
        types.SimpleNamespace(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid")
            ]
        )
    )
    dtls._rtp_header_extensions_map = extensions
    return dtls


def packet_sender(dtls: RTCDtlsTransport, kind: str, playout_id: int | None):
    sender = RTCRtpSender(kind, dtls)
    sender._RTCRtpSender__started = True
    sender._RTCRtpSender__mid = "0" if kind == "video" else "1"
    sender._RTCRtpSender__rtp_header_extensions_map = dtls._rtp_header_extensions_map
    return passthrough.PacketSender(sender, playout_id), sender


def phone_datagrams(seconds: float) -> list[bytes]:
    """The phone's RTP datagrams in arrival order: VP8 at 30 fps and Opus every 20 ms,
    each with the MID extension (as Chrome's, and the bench's phones, have)."""
    video, audio = encode_vp8_clip(seconds=2.0), encode_opus_clip(seconds=1.0)
    packer = passthrough.PackOnlyEncoder(VP8)
    mid = b"\xbe\xde\x00\x01\x10\x30\x00\x00"  # one-byte elements: MID "0", padding
    datagrams: list[tuple[float, bytes]] = []
    seq = 1000
    for i in range(int(seconds * 30)):
        frame = av.Packet(video.frames[i % len(video.frames)])
        frame.pts, frame.time_base = i * 3000, video.time_base
        payloads, timestamp = packer.pack(frame)
        for j, payload in enumerate(payloads):
            packet = RtpView(96, int(j == len(payloads) - 1), seq, timestamp, 0x1234, payload)
            datagrams.append((i / 30, packet.serialize(mid)))
            seq = (seq + 1) & 0xFFFF
    for i in range(int(seconds * 50)):
        payload = audio.frames[i % len(audio.frames)]
        packet = RtpView(111, 0, (7000 + i) & 0xFFFF, i * 960, 0x5678, payload)
        datagrams.append((i / 50, packet.serialize(mid)))
    datagrams.sort(key=lambda item: item[0])
    return [data for _, data in datagrams]


def session_path() -> tuple[passthrough.LeanReceive, NoSocket]:
    """One phone leg's lean receive path wired to one technician leg's senders, as
    ``sessions.LensMediaSession`` wires them (its packet routes called as they are)."""
    wire = NoSocket()
    phone_dtls, tech_dtls = dtls_transport(NoSocket()), dtls_transport(wire)
    video_out, video_sender = packet_sender(tech_dtls, "video", passthrough.PLAYOUT_DELAY_ID)
    audio_out, audio_sender = packet_sender(tech_dtls, "audio", None)
    totals = ForwardingStats()
    video_forwarder = VideoForwarder(
        LegRewriter(video_sender._ssrc, 96, "video/vp8"),
        video_out.send_rtp,
        lambda: None,
        totals,
        ready=video_out.ready,
        playout_floor=lambda: 0.0,
    )
    audio_forwarder = AudioForwarder(
        LegRewriter(audio_sender._ssrc, 111, "audio/opus", clock_rate=48000),
        audio_out.send_rtp,
        totals,
        ready=audio_out.ready,
    )
    leg = types.SimpleNamespace(
        frames_received={"video": 0, "audio": 0},
        bytes_received={"video": 0, "audio": 0},
        role=PUBLISHER,
        video_mime="video/vp8",
        codecs={"audio": OPUS},
    )
    technician = types.SimpleNamespace(
        outgoing={"video": video_forwarder, "audio": audio_forwarder}
    )
    session = types.SimpleNamespace(
        publisher=leg,
        subscriber=technician,
        on_hold=False,
        recorder=None,
        _history=VideoHistory(),
    )
    # the session's own routes, bound to this stand-in for the session
    session._phone_video_packet = types.MethodType(LensMediaSession._phone_video_packet, session)
    session._phone_audio_packet = types.MethodType(LensMediaSession._phone_audio_packet, session)
    routes = {
        kind: LensMediaSession._packet_route(session, leg, kind) for kind in ("video", "audio")
    }
    receive = passthrough.LeanReceive(phone_dtls)
    table = phone_dtls._rtp_router.payload_type_table
    for kind, codec in (("video", VP8), ("audio", OPUS)):
        receiver = RTCRtpReceiver(kind, phone_dtls)
        receiver._RTCRtpReceiver__codecs[codec.payloadType] = codec
        tap = passthrough.FrameTap(lambda *args: None, lambda: None)
        passthrough.divert_receiver(
            receiver, kind, tap, request_keyframe=lambda: None, on_packet=routes[kind]
        )
        if kind == "video":
            passthrough.frame_view(receiver, False)  # as while not recording
        table.setdefault(codec.payloadType, set()).add(receiver)
    return receive, wire


def measure(datagrams: list[bytes], native: bool) -> float:
    """CPU seconds to handle `datagrams` on a fresh session path, with the native forward
    and send steps or their Python twins (the header read is native whenever built)."""
    passthrough.NATIVE = NATIVE if native else None
    forwarder.FORWARD = FORWARD if native else None
    receive, wire = session_path()
    handle = receive.handle
    started = time.process_time()
    for data in datagrams:
        handle(data, 0.0)
    used = time.process_time() - started
    wire.close()
    return used


def count_calls(datagrams: list[bytes]) -> float:
    """Function calls (Python and C) per datagram: a figure the machine's load cannot blur."""
    receive, _ = session_path()
    handle = receive.handle
    calls = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profile)
    for data in datagrams:
        handle(data, 0.0)
    sys.setprofile(None)
    return calls / len(datagrams)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="of one session's media")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", action="store_true", help="also count function calls")
    parser.add_argument(
        "--datagrams", type=Path, help="keep the datagrams in this file (the same input for runs)"
    )
    args = parser.parse_args()
    if args.datagrams is not None and args.datagrams.exists():
        datagrams = pickle.loads(args.datagrams.read_bytes())
    else:
        datagrams = phone_datagrams(args.seconds)
        if args.datagrams is not None:
            args.datagrams.write_bytes(pickle.dumps(datagrams))
    if args.calls:
        print(f"{count_calls(datagrams):.1f} function calls per datagram")
    variants = [("native", True), ("python", False)] if NATIVE is not None else [("python", False)]
    results: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(args.repeat):  # the variants alternate: the same minute for both
        for name, native in variants:
            results[name].append(measure(datagrams, native) * 1e6 / len(datagrams))
    for name, rounds in results.items():
        print(
            f"{name:6} steps: {len(datagrams)} datagrams, best {min(rounds):.2f} µs CPU per"
            " packet, rounds " + " ".join(f"{value:.2f}" for value in rounds)
        )
    if NATIVE is None:
        print("(the native steps are not built: python only)")


if __name__ == "__main__":
    main()
