"""How long the sidecar's ICE gathering takes (it delays every answer, so every Start).

    .venv/bin/python bench/ice_gather.py            # 20 legs per setting, about 30 s
    .venv/bin/python bench/ice_gather.py --legs 50

Settings compared, each through lens.media.ice as the sidecar uses it: host candidates
only; inside a UDP port range; with TURN over UDP and TCP from a local coturn (started
here on loopback, shared secret); with a TURN server that does not answer (what an
answer costs when LENS_ICE_SERVERS names a dead server: LENS_MEDIA_GATHER_TIMEOUT).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lens.media import ice  # noqa: E402
from lens.media.ice import NetworkSettings, parse_ice_servers  # noqa: E402

TURN_PORT, SILENT_PORT, RELAY_PORTS, RANGE = 22478, 22477, (22700, 22799), (22600, 22699)
SECRET = "bench-secret"


async def gather_once(network: NetworkSettings) -> tuple[float, int]:
    pc = ice.peer_connection(network)
    pc.addTransceiver("video", direction="recvonly")
    started = time.perf_counter()
    await pc.setLocalDescription(await pc.createOffer())
    took = time.perf_counter() - started
    candidates = pc.localDescription.sdp.count("a=candidate:")
    await pc.close()
    return took, candidates


async def measure(network: NetworkSettings, legs: int) -> tuple[list[float], int]:
    times, candidates = [], 0
    for _ in range(legs):
        took, candidates = await gather_once(network)
        times.append(took)
    return times, candidates


def start_coturn(folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={TURN_PORT}", f"--min-port={RELAY_PORTS[0]}",
         f"--max-port={RELAY_PORTS[1]}", "--use-auth-secret", f"--static-auth-secret={SECRET}",
         "--realm=bench", "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers",
         f"--pidfile={folder}/turnserver.pid", "--log-file=stdout", "--simple-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--legs", type=int, default=20)
    args = parser.parse_args()
    if shutil.which("turnserver") is None:
        sys.exit("coturn is not installed (bin/setup --test installs it)")
    turn = [
        {
            "urls": [
                f"turn:127.0.0.1:{TURN_PORT}?transport=udp",
                f"turn:127.0.0.1:{TURN_PORT}?transport=tcp",
            ]
        }  # fmt: skip
    ]
    settings = {
        "host candidates only": NetworkSettings(),
        f"port range {RANGE[0]}-{RANGE[1]}": NetworkSettings(port_range=RANGE),
        "+ TURN udp and tcp (local coturn)": NetworkSettings(
            port_range=RANGE, ice_servers=parse_ice_servers(turn), turn_secret=SECRET
        ),
        "+ a TURN server that never answers": NetworkSettings(
            port_range=RANGE,
            ice_servers=parse_ice_servers([{"urls": f"turn:127.0.0.1:{SILENT_PORT}"}]),
            turn_secret=SECRET,
            gather_timeout=3.0,
        ),
    }
    # a UDP socket that takes TURN requests and never answers (no ICMP error either)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", SILENT_PORT))
    with tempfile.TemporaryDirectory() as folder, silent:
        coturn = start_coturn(Path(folder))
        try:
            time.sleep(1.0)  # coturn's listener; the first TURN gathering would wait otherwise
            print(f"{'setting':40s} {'legs':>4s} {'p50 ms':>8s} {'p95 ms':>8s} candidates  load")
            for name, network in settings.items():
                legs = args.legs if "never" not in name else 3
                times, candidates = asyncio.run(measure(network, legs))
                times.sort()
                p50 = statistics.median(times) * 1000
                p95 = times[min(len(times) - 1, int(0.95 * len(times)))] * 1000
                load = Path("/proc/loadavg").read_text().split()[0]
                print(f"{name:40s} {legs:4d} {p50:8.1f} {p95:8.1f} {candidates:10d}  {load}")
        finally:
            coturn.terminate()
            coturn.wait(timeout=10)


if __name__ == "__main__":
    main()
