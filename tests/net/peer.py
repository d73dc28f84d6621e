"""An aiortc phone or technician against a sidecar, run inside a network namespace.

    python tests/net/peer.py phone URL SID --secret=SECRET [--ice JSON] [--relay-only]
    python tests/net/peer.py technician URL SID --secret=SECRET --frames N [--ice JSON]

It prints JSON lines: {"event": "answer", "candidates": [...]} with the sidecar's answer
candidates, {"event": "connected", "local": ..., "remote": ...} with the selected pair,
and a technician {"event": "received", "video_frames": N} once N video frames arrived.
A phone streams until its standard input closes. Exit status 1 with {"event": "error"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    sdp,
)

from lens.media.testing import (
    ReceivedMedia,
    ReplayTrack,
    encode_opus_clip,
    encode_vp8_clip,
    pack_only,
    post_offer,
    tap_receiver,
)


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def answer_candidates(answer_sdp: str) -> list[dict]:
    parsed = sdp.SessionDescription.parse(answer_sdp)
    return [
        {"ip": c.ip, "port": c.port, "type": c.type, "related": c.relatedAddress}
        for media in parsed.media
        for c in media.ice_candidates
    ]


def selected_pair(pc: RTCPeerConnection) -> dict | None:
    for transceiver in pc.getTransceivers():
        connection = transceiver.sender.transport.transport._connection
        for pair in connection._nominated.values():
            local, remote = pair.local_candidate, pair.remote_candidate
            return {
                "local": {"type": local.type, "ip": local.host, "port": local.port},
                "remote": {"type": remote.type, "ip": remote.host, "port": remote.port},
                "turn": turn_transport(pair.protocol),
            }
    return None


def turn_transport(protocol) -> str | None:
    """How a relayed pair reaches its TURN server: udp, tcp or tls (None: not relayed)."""
    inner = getattr(protocol.transport, "_TurnTransport__inner_protocol", None)
    if inner is None:
        return None
    if type(inner).__name__ == "TurnClientUdpProtocol":
        return "udp"
    return "tls" if inner.transport.get_extra_info("sslcontext") is not None else "tcp"


async def wait_connected(pc: RTCPeerConnection, timeout: float) -> None:
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState in ("connected", "failed"):
            connected.set()

    await asyncio.wait_for(connected.wait(), timeout)
    if pc.connectionState != "connected":
        raise RuntimeError(f"connection {pc.connectionState}")


def configuration(args) -> RTCConfiguration:
    servers = [RTCIceServer(**server) for server in json.loads(args.ice or "[]")]
    return RTCConfiguration(
        iceServers=servers,
        iceTransportPolicy=RTCIceTransportPolicy.RELAY
        if args.relay_only
        else RTCIceTransportPolicy.ALL,
    )


async def phone(args, http: aiohttp.ClientSession) -> None:
    pc = RTCPeerConnection(configuration(args))
    video = ReplayTrack(encode_vp8_clip(seconds=1.0, width=320, height=240))
    audio = ReplayTrack(encode_opus_clip(seconds=1.0))
    pc.addTransceiver(video, direction="sendonly")
    pc.addTransceiver(audio, direction="sendrecv")
    url = f"{args.url}/sessions/{args.sid}/publisher"
    answer = await post_offer(http, url, args.secret, pc, {"features": []})
    emit("answer", candidates=answer_candidates(answer.sdp))
    await pc.setRemoteDescription(answer)
    pack_only(pc)
    await wait_connected(pc, args.timeout)
    emit("connected", **(selected_pair(pc) or {}))
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await pc.close()


async def technician(args, http: aiohttp.ClientSession) -> None:
    pc = RTCPeerConnection(configuration(args))
    video = ReceivedMedia("video")
    tap_receiver(pc.addTransceiver("video", direction="recvonly"), video)
    tap_receiver(pc.addTransceiver("audio", direction="recvonly"), ReceivedMedia("audio"))
    url = f"{args.url}/sessions/{args.sid}/subscriber"
    answer = await post_offer(http, url, args.secret, pc)
    emit("answer", candidates=answer_candidates(answer.sdp))
    await pc.setRemoteDescription(answer)
    await wait_connected(pc, args.timeout)
    emit("connected", **(selected_pair(pc) or {}))
    await video.wait_for(args.frames, args.timeout)
    emit("received", video_frames=len(video.digests))
    await pc.close()


async def wait_for_sidecar(http: aiohttp.ClientSession, url: str, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["phone", "technician"])
    parser.add_argument("url")
    parser.add_argument("sid")
    # an option with "=": a secret may begin with "-", which argparse takes for an option
    parser.add_argument("--secret", required=True)
    parser.add_argument("--ice", default="[]")
    parser.add_argument("--relay-only", action="store_true")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for_sidecar(http, args.url, args.timeout)
            await (phone if args.role == "phone" else technician)(args, http)
    except Exception as exc:  # reported to the test, which shows it
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
