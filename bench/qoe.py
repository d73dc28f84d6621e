"""What the technician sees when the phone is on a bad mobile link: Lens vs direct P2P.

    .venv/bin/python bench/qoe.py                       # every profile, Lens and direct
    .venv/bin/python bench/qoe.py --profiles bad --systems lens --window 30

Needs root (a network namespace, nftables) and the `bench` extra (`netfilterqueue`, which
builds against Debian's libnetfilter-queue-dev). A benchmark, not a test.

The phone is a real Chromium (fake camera 640x480@30, fake microphone) in the network
namespace `mdphone`, joined to the root namespace by the veth pair mdv0/mdv1
(10.21.1.1/30 ↔ 10.21.1.2/30). This kernel has no `netem`, so iptables queues every UDP
packet leaving either end of the veth (phone → root in the phone's namespace, so the root
side's kernel stamps a packet's arrival only once the emulated link delivered it; root →
phone in the root namespace) to a user-space emulator (NFQUEUE), one process per
direction: Bernoulli loss
→ a FIFO at the link's rate (tail drop past 0.5 s of queue) → delay ± uniform jitter,
never reordering. The technician is a second Chromium in the root namespace.

Per profile and system: the phone's encoded frames carry a trailer with the time they
were encoded (an encoded transform); the technician strips it before decoding and notes,
per presented frame (requestVideoFrameCallback), the phone → screen delay. Measured over
the window: shown fps (presented frames / s), stalled s/min (Chrome's freeze + pause time),
the longest frozen stretch, phone→screen p50/p95, the phone's bitrate target (median), its
keyframes per minute, NACKs and PLIs the technician sent. The machine's load average is
printed with every row: figures from a loaded machine are noisier and worse for everyone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import multiprocessing
import os
import random
import secrets
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
# LENS_QOE_LANE=n (n > 0) gives a run its own namespace, veth pair, subnet, queues and
# chains, so two people can run this at once; LENS_QOE_PORT its own ports (this, +1, +2)
LANE = int(os.environ.get("LENS_QOE_LANE", "0"))
_SUFFIX = str(LANE) if LANE else ""
NETNS = f"mdphone{_SUFFIX}"
VETH_ROOT, VETH_PHONE = f"md{_SUFFIX}v0", f"md{_SUFFIX}v1"
ROOT_IP, PHONE_IP = f"10.21.{1 + LANE}.1", f"10.21.{1 + LANE}.2"
QUEUE_UP, QUEUE_DOWN = 2101 + 10 * LANE, 2102 + 10 * LANE  # phone → root, root → phone
CHAIN_UP, CHAIN_DOWN = f"MDQOE{_SUFFIX}_UP", f"MDQOE{_SUFFIX}_DOWN"
HARNESS_PORT = int(os.environ.get("LENS_QOE_PORT", "21080"))
SIDECAR_PORT = HARNESS_PORT + 1
NOFEC_SIDECAR_PORT = HARNESS_PORT + 2  # system "lens-nofec": LENS_MEDIA_FEC=0
CHROMIUM = os.environ.get("LENS_CHROMIUM", "/usr/bin/chromium")
MAX_QUEUE_SECONDS = 0.5
OUTAGE_AFTER = 10.0  # seconds into the window
OUTAGE_SECONDS = 5.0


@dataclass(frozen=True)
class Profile:
    delay: float = 0.0  # one way, seconds
    jitter: float = 0.0  # ± seconds, uniform
    loss: float = 0.0  # per packet, each direction
    rate: float = 0.0  # bits/s, 0 = unlimited
    outage: bool = False


PROFILES = {
    "clean": Profile(),
    "good4G": Profile(0.040, 0.010, 0.005, 4e6),
    "poor4G": Profile(0.080, 0.030, 0.03, 1.5e6),
    "bad": Profile(0.150, 0.050, 0.08, 0.6e6),
    "outage": Profile(0.040, 0.010, 0.005, 4e6, outage=True),
}


def sh(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=check, capture_output=True, text=True)


def setup_network() -> None:
    teardown_network()
    sh("ip", "netns", "add", NETNS)
    sh("ip", "link", "add", VETH_ROOT, "type", "veth", "peer", "name", VETH_PHONE)
    sh("ip", "link", "set", VETH_PHONE, "netns", NETNS)
    sh("ip", "addr", "add", f"{ROOT_IP}/30", "dev", VETH_ROOT)
    sh("ip", "link", "set", VETH_ROOT, "up")
    sh("ip", "-n", NETNS, "addr", "add", f"{PHONE_IP}/30", "dev", VETH_PHONE)
    sh("ip", "-n", NETNS, "link", "set", VETH_PHONE, "up")
    sh("ip", "-n", NETNS, "link", "set", "lo", "up")
    sh("ip", "-n", NETNS, "route", "add", "default", "via", ROOT_IP)
    # (nftables' own `queue` expression is missing from this kernel; the xtables NFQUEUE
    # target through iptables-nft works)
    # Each direction is queued where it leaves: phone → root in the phone's namespace (so
    # a packet reaches the root namespace, and the kernel's arrival stamp, only once the
    # emulated link delivered it), root → phone in the root namespace.
    queue_down = ["-p", "udp", "-j", "NFQUEUE", "--queue-num", str(QUEUE_DOWN)]
    sh("iptables", "-w", "-N", CHAIN_DOWN)
    sh("iptables", "-w", "-A", CHAIN_DOWN, *queue_down)
    sh("iptables", "-w", "-I", "OUTPUT", "-o", VETH_ROOT, "-j", CHAIN_DOWN)
    queue_up = ["-p", "udp", "-j", "NFQUEUE", "--queue-num", str(QUEUE_UP)]
    sh("ip", "netns", "exec", NETNS, "iptables", "-w", "-A", "OUTPUT", "-o", VETH_PHONE, *queue_up)


def teardown_network() -> None:
    for chain, direction in ((CHAIN_UP, "INPUT"), (CHAIN_DOWN, "OUTPUT")):
        flag = "-i" if direction == "INPUT" else "-o"
        sh("iptables", "-w", "-D", direction, flag, VETH_ROOT, "-j", chain, check=False)
        sh("iptables", "-w", "-F", chain, check=False)
        sh("iptables", "-w", "-X", chain, check=False)
    sh("ip", "link", "del", VETH_ROOT, check=False)
    sh("ip", "netns", "del", NETNS, check=False)


def enter_netns(name: str) -> None:
    """Move this process into a network namespace (os.setns is Python 3.12+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), f"setns {name}")
    os.close(fd)


def emulate(
    profile: Profile, queue: int, netns: str | None, outage_at: Any, ready: Any, stop: Any
) -> None:
    """One direction of the link emulator (its own process): one NFQUEUE queue, one loop."""
    from netfilterqueue import NetfilterQueue

    if netns is not None:
        enter_netns(netns)
    rng = random.Random(queue)
    queues = []
    for number in (queue,):
        held: list[tuple[float, Any]] = []  # (release time, packet), FIFO
        state = {"free_at": 0.0, "last_out": 0.0}

        def on_packet(packet: Any, held=held, state=state) -> None:
            now = time.monotonic()
            start = outage_at.value
            if profile.outage and start and start <= time.time() < start + OUTAGE_SECONDS:
                packet.drop()
                return
            if profile.loss and rng.random() < profile.loss:
                packet.drop()
                return
            if profile.rate:
                begin = max(now, state["free_at"])
                if begin - now > MAX_QUEUE_SECONDS:
                    packet.drop()  # tail drop: the bottleneck's queue is full
                    return
                state["free_at"] = begin + packet.get_payload_len() * 8 / profile.rate
                sent = state["free_at"]
            else:
                sent = now
            out = sent + profile.delay + rng.uniform(-profile.jitter, profile.jitter)
            out = max(out, state["last_out"])  # a FIFO link: no reordering
            state["last_out"] = out
            if out <= now:
                packet.accept()
            else:
                packet.retain()
                held.append((out, packet))

        nfq = NetfilterQueue()
        nfq.bind(number, on_packet, max_len=4096)
        queues.append((nfq, held))
    ready.set()
    sockets = {nfq.get_fd(): nfq for nfq, _ in queues}
    try:
        while not stop.is_set():
            now = time.monotonic()
            due = [h[0][0] for _, h in queues if h]
            timeout = max(0.0, min(due) - now) if due else 0.05
            readable, _, _ = select.select(list(sockets), [], [], min(timeout, 0.05))
            for fd in readable:
                sockets[fd].run(block=False)
            now = time.monotonic()
            for _, held in queues:
                while held and held[0][0] <= now:
                    held.pop(0)[1].accept()
    finally:
        for nfq, _ in queues:
            nfq.unbind()


PAGE = """<!doctype html><html><body>
<video id=v autoplay muted playsinline width=640 height=480></video>
<script>
const MAGIC = 0x4c454e53;
const stamp = () => performance.timeOrigin + performance.now();
window.samples = []; window.presented = []; window.delays = [];
function videoCodecs(sdp) {
  const video = sdp.split('\\nm=').find(m => m.startsWith('video')) || '';
  return [...video.matchAll(/a=rtpmap:\\d+ ([^\\/\\r\\n]+)/g)].map(m => m[1]);
}
function passthrough(endpoint) {
  const {readable, writable} = endpoint.createEncodedStreams();
  readable.pipeTo(writable);
}
async function iceDone(pc) {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise(r => pc.addEventListener('icegatheringstatechange',
    () => pc.iceGatheringState === 'complete' && r()));
}
async function post(path, body) {
  const resp = await fetch(path, {method: 'POST', body: JSON.stringify(body)});
  if (!resp.ok) throw new Error(path + ': ' + resp.status + ' ' + await resp.text());
  return resp.json();
}
async function statsNow(pc) {
  const out = {};
  (await pc.getStats()).forEach(s => {
    const rtp = s.type === 'inbound-rtp' || s.type === 'outbound-rtp' ||
      s.type === 'remote-inbound-rtp';
    if (rtp && s.kind === 'video') out[s.type] = s;
    if (s.type === 'codec') out.codecs = {...(out.codecs || {}), [s.id]: s.mimeType};
  });
  return out;
}
async function phone() {
  const stream = await navigator.mediaDevices.getUserMedia(
    {video: {width: 640, height: 480, frameRate: 30}, audio: true});
  const pc = new RTCPeerConnection({encodedInsertableStreams: true});
  window.pc = pc;
  const video = pc.addTransceiver(stream.getVideoTracks()[0], {direction: 'sendonly'});
  const audio = pc.addTransceiver(stream.getAudioTracks()[0], {direction: 'sendrecv'});
  const {readable, writable} = video.sender.createEncodedStreams();
  readable.pipeThrough(new TransformStream({transform(frame, ctl) {
    const data = new Uint8Array(frame.data);
    const out = new Uint8Array(data.length + 12);
    out.set(data);
    const view = new DataView(out.buffer);
    view.setFloat64(data.length, stamp());
    view.setUint32(data.length + 8, MAGIC);
    frame.data = out.buffer;
    ctl.enqueue(frame);
  }})).pipeTo(writable);
  passthrough(audio.sender);
  passthrough(audio.receiver);
  await pc.setLocalDescription(await pc.createOffer());
  await iceDone(pc);
  const answer = await post('/signal/phone', pc.localDescription);
  await pc.setRemoteDescription(answer);
  window.answerCodecs = videoCodecs(answer.sdp);
  setInterval(async () => window.samples.push({t: stamp(), ...(await statsNow(pc))}), 1000);
}
function watch(pc, receiver, track) {
  const sentAt = new Map();
  const {readable, writable} = receiver.createEncodedStreams();
  readable.pipeThrough(new TransformStream({transform(frame, ctl) {
    const data = new Uint8Array(frame.data);
    if (data.length > 12) {
      const view = new DataView(frame.data);
      if (view.getUint32(data.length - 4) === MAGIC) {
        sentAt.set(frame.getMetadata().rtpTimestamp, view.getFloat64(data.length - 12));
        frame.data = frame.data.slice(0, data.length - 12);
      }
    }
    if (sentAt.size > 600) sentAt.delete(sentAt.keys().next().value);
    ctl.enqueue(frame);
  }})).pipeTo(writable);
  const el = document.getElementById('v');
  el.srcObject = new MediaStream([track]);
  const onFrame = (now, md) => {
    const shown = performance.timeOrigin + now;
    window.presented.push(shown);
    const sent = sentAt.get(md.rtpTimestamp);
    if (sent !== undefined) window.delays.push([shown, shown - sent]);
    el.requestVideoFrameCallback(onFrame);
  };
  el.requestVideoFrameCallback(onFrame);
}
async function technician(mode) {
  const pc = new RTCPeerConnection({encodedInsertableStreams: true});
  window.pc = pc;
  pc.ontrack = e =>
    e.track.kind === 'video' ? watch(pc, e.receiver, e.track) : passthrough(e.receiver);
  if (mode === 'lens') {
    pc.addTransceiver('video', {direction: 'recvonly'});
    pc.addTransceiver('audio', {direction: 'recvonly'});
    await pc.setLocalDescription(await pc.createOffer());
    await iceDone(pc);
    await pc.setRemoteDescription(await post('/signal/technician', pc.localDescription));
  } else {
    const offer = await post('/signal/offer', {});
    await pc.setRemoteDescription(offer);
    await pc.setLocalDescription(await pc.createAnswer());
    await iceDone(pc);
    await post('/signal/answer', pc.localDescription);
  }
  setInterval(async () => window.samples.push({t: stamp(), ...(await statsNow(pc))}), 1000);
}
</script></body></html>"""


class Harness:
    """Serves the pages and does the signalling (to the sidecar, or between the pages)."""

    def __init__(self, system: str, sidecar: str, secret: str) -> None:
        self.system = system
        self.sidecar = sidecar
        self.secret = secret
        self.offer: asyncio.Future[dict] | None = None
        self.answer: asyncio.Future[dict] | None = None
        self.sid = f"qoe-{secrets.token_hex(4)}"

    def reset(self, system: str) -> None:
        self.system = system
        port = NOFEC_SIDECAR_PORT if system == "lens-nofec" else SIDECAR_PORT
        self.sidecar = f"http://127.0.0.1:{port}"
        loop = asyncio.get_running_loop()
        self.offer, self.answer = loop.create_future(), loop.create_future()
        self.sid = f"qoe-{secrets.token_hex(4)}"

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def to_sidecar(self, role: str, body: dict) -> dict:
        url = f"{self.sidecar}/sessions/{self.sid}/{role}"
        headers = {"Authorization": f"Bearer {self.secret}"}
        payload = {"sdp": body["sdp"], "type": "offer", "features": ["hold", "snapshot"]}
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, json=payload, headers=headers) as r,
        ):
            if r.status != 200:
                raise web.HTTPBadGateway(text=await r.text())
            return await r.json()

    async def signal(self, request: web.Request) -> web.Response:
        body = await request.json()
        what = request.match_info["what"]
        if self.system.startswith("lens") and what in ("phone", "technician"):
            role = "publisher" if what == "phone" else "subscriber"
            return web.json_response(await self.to_sidecar(role, body))
        if what == "phone":  # direct: hand the offer to the technician, wait for its answer
            self.offer.set_result({"sdp": body["sdp"], "type": "offer"})
            return web.json_response(await asyncio.wait_for(self.answer, 30))
        if what == "offer":
            return web.json_response(await asyncio.wait_for(self.offer, 30))
        if what == "answer":
            self.answer.set_result({"sdp": body["sdp"], "type": "answer"})
            return web.json_response({})
        raise web.HTTPNotFound()


def chromium_args(origin: str) -> list[str]:
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream=fps=30",
        "--use-fake-ui-for-media-stream",
        f"--unsafely-treat-insecure-origin-as-secure={origin}",
        "--autoplay-policy=no-user-gesture-required",
    ]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summarize(phone: dict, tech: dict, start: float, end: float) -> dict[str, Any]:
    """Figures over [start, end] (epoch ms) from both pages' samples."""
    minutes = (end - start) / 60000

    def at(samples: list[dict], t: float) -> dict:
        best = min(samples, key=lambda s: abs(s["t"] - t))
        return best

    t0, t1 = at(tech["samples"], start), at(tech["samples"], end)
    inbound0, inbound1 = t0.get("inbound-rtp", {}), t1.get("inbound-rtp", {})

    def diff(key: str) -> float:
        return inbound1.get(key, 0) - inbound0.get(key, 0)

    stalled = diff("totalFreezesDuration") + diff("totalPausesDuration")
    shown = [t for t in tech["presented"] if start <= t <= end]
    gaps = [b - a for a, b in zip([start, *shown], [*shown, end], strict=False)]
    delays = [d for t, d in tech["delays"] if start <= t <= end]
    window = [s for s in phone["samples"] if start <= s["t"] <= end]
    targets = [
        s["outbound-rtp"]["targetBitrate"]
        for s in window
        if "outbound-rtp" in s and "targetBitrate" in s["outbound-rtp"]
    ]
    p0, p1 = at(phone["samples"], start), at(phone["samples"], end)
    keyframes = p1.get("outbound-rtp", {}).get("keyFramesEncoded", 0) - p0.get(
        "outbound-rtp", {}
    ).get("keyFramesEncoded", 0)
    out1 = p1.get("outbound-rtp", {})
    return {
        "fps": len(shown) / ((end - start) / 1000),
        "stalled_s_per_min": stalled / minutes,
        "longest_frozen_s": max(gaps) / 1000 if gaps else float("nan"),
        "delay_p50_ms": percentile(delays, 0.5),
        "delay_p95_ms": percentile(delays, 0.95),
        "target_kbps": statistics.median(targets) / 1000 if targets else float("nan"),
        "keyframes_per_min": keyframes / minutes,
        "nacks": diff("nackCount"),
        "plis": diff("pliCount"),
        "resolution": f"{out1.get('frameWidth', '?')}x{out1.get('frameHeight', '?')}",
        "limited_by": out1.get("qualityLimitationReason", "?"),
        **jitter_buffer(inbound0, inbound1),
        **phone_view(p0, p1, window),
        "answer_video_codecs": ",".join(sorted(set(phone.get("answerCodecs") or []))),
    }


def jitter_buffer(inbound0: dict, inbound1: dict) -> dict:
    """The technician's jitter buffer over the window: mean delay, target and minimum
    per emitted frame (ms), frames dropped, freezes, retransmissions received."""

    def diff(key: str) -> float:
        return inbound1.get(key, 0) - inbound0.get(key, 0)

    emitted = diff("jitterBufferEmittedCount") or float("nan")
    return {
        "jb_delay_ms": round(1000 * diff("jitterBufferDelay") / emitted),
        "jb_target_ms": round(1000 * diff("jitterBufferTargetDelay") / emitted),
        "jb_minimum_ms": round(1000 * diff("jitterBufferMinimumDelay") / emitted),
        "frames_dropped": diff("framesDropped"),
        "freezes": diff("freezeCount"),
        "frames_received": diff("framesReceived"),
        "frames_decoded": diff("framesDecoded"),
        "tech_packets_lost": diff("packetsLost"),
        "tech_rtx_received": diff("retransmittedPacketsReceived"),
        # FEC the technician's browser got and used (a direct call: Chrome's own ULPFEC)
        "tech_fec_received": diff("fecPacketsReceived"),
        "tech_fec_discarded": diff("fecPacketsDiscarded"),
        "tech_fec_stats": {k: v for k, v in inbound1.items() if "fec" in k.lower()},
        "tech_packets_received": diff("packetsReceived"),
    }


def phone_view(p0: dict, p1: dict, window: list[dict]) -> dict:
    """What the phone's sender is told by its receiver (the sidecar or the technician):
    round trip and fraction lost from the receiver reports, its retransmissions."""
    remote = [s["remote-inbound-rtp"] for s in window if "remote-inbound-rtp" in s]
    rtts = [r["roundTripTime"] * 1000 for r in remote if "roundTripTime" in r]
    lost = [r["fractionLost"] for r in remote if "fractionLost" in r]
    out0, out1 = p0.get("outbound-rtp", {}), p1.get("outbound-rtp", {})
    return {
        "phone_rtt_ms": round(statistics.median(rtts)) if rtts else None,
        "phone_fraction_lost": round(statistics.mean(lost), 3) if lost else None,
        "phone_rtx_sent": out1.get("retransmittedPacketsSent", 0)
        - out0.get("retransmittedPacketsSent", 0),
        "phone_packets_sent": out1.get("packetsSent", 0) - out0.get("packetsSent", 0),
        "phone_nacks_received": out1.get("nackCount", 0) - out0.get("nackCount", 0),
        # (Chrome's outbound-rtp has fecPacketsSent only in some versions)
        "phone_fec_sent": out1.get("fecPacketsSent", 0) - out0.get("fecPacketsSent", 0)
        if "fecPacketsSent" in out1
        else None,
        "phone_codec": (p1.get("codecs") or {}).get(out1.get("codecId"), "?"),
    }


async def run_one(
    playwright: Any,
    harness: Harness,
    system: str,
    profile_name: str,
    warmup: float,
    window: float,
    workdir: Path,
) -> dict[str, Any]:
    profile = PROFILES[profile_name]
    context = multiprocessing.get_context("fork")
    outage_at, stop = context.Value("d", 0.0), context.Event()
    emulators = []
    for number, netns in ((QUEUE_UP, NETNS), (QUEUE_DOWN, None)):
        ready = context.Event()
        emulator = context.Process(
            target=emulate, args=(profile, number, netns, outage_at, ready, stop)
        )
        emulator.start()
        ready.wait(10)
        emulators.append(emulator)
    harness.reset(system)
    wrapper = workdir / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {NETNS} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    origin = f"http://{ROOT_IP}:{HARNESS_PORT}"
    phone_browser = await playwright.chromium.launch(
        executable_path=str(wrapper), args=chromium_args(origin)
    )
    tech_browser = await playwright.chromium.launch(
        executable_path=CHROMIUM, args=chromium_args(f"http://127.0.0.1:{HARNESS_PORT}")
    )
    try:
        phone = await (await phone_browser.new_context()).new_page()
        tech = await (await tech_browser.new_context()).new_page()
        await phone.goto(f"{origin}/")
        await tech.goto(f"http://127.0.0.1:{HARNESS_PORT}/")
        if system.startswith("lens"):
            await phone.evaluate("phone()")
            await tech.evaluate("technician('lens')")
        else:
            await asyncio.gather(phone.evaluate("phone()"), tech.evaluate("technician('direct')"))
        await tech.wait_for_function("window.presented.length > 0", timeout=20000)
        await asyncio.sleep(warmup)
        start = await tech.evaluate("stamp()")
        if profile.outage:
            outage_at.value = time.time() + OUTAGE_AFTER
        await asyncio.sleep(window)
        end = await tech.evaluate("stamp()")
        await asyncio.sleep(1.2)  # the last stats sample
        grab = (
            "({samples: window.samples, presented: window.presented, delays: window.delays,"
            " answerCodecs: window.answerCodecs})"
        )
        result = summarize(await phone.evaluate(grab), await tech.evaluate(grab), start, end)
    finally:
        await phone_browser.close()
        await tech_browser.close()
        stop.set()
        for emulator in emulators:
            emulator.join(5)
            if emulator.is_alive():
                emulator.kill()
        if system.startswith("lens"):
            with contextlib.suppress(OSError):
                state = urllib.request.Request(
                    f"{harness.sidecar}/sessions/{harness.sid}",
                    headers={"Authorization": f"Bearer {harness.secret}"},
                )
                with urllib.request.urlopen(state, timeout=5) as resp:
                    state = json.loads(resp.read())
                    publisher = state["publisher"] or {}
                    print(
                        "sidecar:",
                        json.dumps(
                            {
                                **(publisher.get("transport") or {}),
                                "keyframe_requests": state.get("keyframe_requests"),
                            }
                        ),
                        flush=True,
                    )
            request = urllib.request.Request(
                f"{harness.sidecar}/sessions/{harness.sid}",
                method="DELETE",
                headers={"Authorization": f"Bearer {harness.secret}"},
            )
            with contextlib.suppress(OSError):
                urllib.request.urlopen(request, timeout=5).close()
    return {"system": system, "profile": profile_name, **result}


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    from playwright.async_api import async_playwright

    secret = secrets.token_urlsafe(16)
    workdir = Path(tempfile.mkdtemp(prefix="lens-qoe-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LENS_MEDIA_PORT": str(SIDECAR_PORT),
        "LENS_MEDIA_SECRET": secret,
        "LENS_INSTANCE_PATH": str(workdir),
    }
    log = open(workdir / "sidecar.log", "ab")  # noqa: SIM115 - lives with the process
    sidecars = [
        subprocess.Popen(
            [sys.executable, "-m", "lens.media"], env=env, cwd=workdir, stdout=log, stderr=log
        )
    ]
    if "lens-nofec" in args.systems.split(","):  # the same code with red/ulpfec refused
        nofec = {**env, "LENS_MEDIA_PORT": str(NOFEC_SIDECAR_PORT), "LENS_MEDIA_FEC": "0"}
        sidecars.append(
            subprocess.Popen(
                [sys.executable, "-m", "lens.media"], env=nofec, cwd=workdir, stdout=log, stderr=log
            )
        )
    harness = Harness("lens", f"http://127.0.0.1:{SIDECAR_PORT}", secret)
    app = web.Application()
    app.router.add_get("/", harness.page)
    app.router.add_post("/signal/{what}", harness.signal)
    runner = web.AppRunner(app)
    await runner.setup()
    results = []
    try:
        setup_network()
        for host in ("127.0.0.1", ROOT_IP):
            await web.TCPSite(runner, host, HARNESS_PORT).start()
        async with async_playwright() as playwright:
            for _ in range(args.repeat):
                for profile in args.profiles.split(","):
                    for system in args.systems.split(","):
                        before = load()
                        result = await run_one(
                            playwright, harness, system, profile, args.warmup, args.window, workdir
                        )
                        result["load_before"], result["load_after"] = before, load()
                        results.append(result)
                        print(json.dumps(result), flush=True)
    finally:
        await runner.cleanup()
        teardown_network()
        for sidecar in sidecars:
            sidecar.terminate()
            sidecar.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        "| profile | system | shown fps | stalled s/min | longest frozen s | phone→screen "
        "p50/p95 ms | target kbps | keyframes/min | NACKs | PLIs | resolution | load 1/5/15 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['profile']} | {r['system']} | {r['fps']:.1f} | {r['stalled_s_per_min']:.1f} "
            f"| {r['longest_frozen_s']:.1f} | {r['delay_p50_ms']:.0f} / {r['delay_p95_ms']:.0f} "
            f"| {r['target_kbps']:.0f} | {r['keyframes_per_min']:.1f} | {r['nacks']:.0f} "
            f"| {r['plis']:.0f} | {r['resolution']} | {r['load_before']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--systems", default="lens,direct")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/qoe.py needs root (network namespace, nftables)")
    results = asyncio.run(main_async(args))
    print()
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
