"""Relay benchmark: Lens sidecar vs direct peer-to-peer vs aiortc MediaRelay vs Janus.

    .venv/bin/python bench/relay.py            # the full run, about 6 minutes
    .venv/bin/python bench/relay.py --quick    # levels 1 and 5 only
    .venv/bin/python bench/relay.py --levels 1,10,20,40 --systems direct,lens,janus --rounds 3
        # each level three times, the systems' order reversed every other round: medians
    .venv/bin/python bench/relay.py --levels 10 --systems lens,lens-python,janus
        # + lens-python: the sidecar without its native send step (LENS_MEDIA_NATIVE=0)
    .venv/bin/python bench/relay.py --levels 1,10 --systems lens,janus --other-python /x/python3
        # + lens-other: the same sidecar on another interpreter (with Lens's packages)

Each relay runs as its own process and is measured from outside: CPU time over a fixed
window (its CPU clock) and peak RSS (VmHWM, /proc), at 1, 5, 10 and 20 concurrent sessions
(a fresh server per level). A session is a phone sending pre-encoded 640x480@30 VP8
(~1 Mbps) + Opus and a technician receiving both. Load-generator peers run in two worker processes.

Measured per system and level: server CPU (% of one core, total and per session), peak
RSS, frames lost (video frames sent in the window that did not arrive), one-way frame
latency p50/p95 (matched by payload hash; the relay-added latency is the relay's minus
the direct path's at the same level), and start→first frame (technician's offer posted →
first video frame received, the phone already streaming). "other CPU" is what the rest
of the machine used during the window: tails are only meaningful when it is near zero.
Set LENS_MEDIA_STALLS=/tmp/x to have the sidecar time its collections and slow loop
iterations over the window (lens/media/stalls.py; a JSON file per level).
Set LENS_BENCH_SAMPLES=/tmp/x to dump every (sent, arrived) pair per worker as JSON.
`--hog` runs a process that spins on one core beside the whole run (a loaded machine:
how many frames each relay loses when it has to share the CPU).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from janus_videoroom import write_config  # noqa: E402
from load import worker_main  # noqa: E402

from lens.media.testing import encode_opus_clip, encode_vp8_clip  # noqa: E402

WORKERS = 2
# the interpreter each Lens system's sidecar runs on (--other-python adds "lens-other")
SIDECAR_PYTHON = {
    "lens": sys.executable,
    "lens-asyncio": sys.executable,
    "lens-python": sys.executable,
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_cpu_seconds(pid: int) -> float:
    """CPU seconds process `pid` used (all its threads, those that ended too), to the
    nanosecond: its CPU-time clock (Linux: ``((~pid) << 3) | CPUCLOCK_SCHED``).

    /proc/<pid>/stat's utime + stime come in clock ticks (10 ms): over a 10 s window a
    one-session relay uses ~20 of them, so a reading was ±5-10 % by rounding alone."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:  # (not Linux's clock ids): clock ticks
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def spin() -> None:
    """The CPU hog: one core busy until killed."""
    while True:
        pass


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Server:
    """A relay process under test."""

    def __init__(self, system: str, workdir: Path) -> None:
        self.system = system
        self.port = free_port()
        self.secret = secrets.token_urlsafe(16)
        log = open(workdir / f"{system}.log", "ab")  # noqa: SIM115 - lives with the process
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if system.startswith("lens"):  # lens-asyncio: the sidecar on asyncio's event loop
            env |= {"LENS_MEDIA_PORT": str(self.port), "LENS_MEDIA_SECRET": self.secret}
            if system == "lens-asyncio":
                env["LENS_MEDIA_LOOP"] = "asyncio"
            if system == "lens-python":  # without the native send step (lens.media.native)
                env["LENS_MEDIA_NATIVE"] = "0"
            command = [SIDECAR_PYTHON[system], "-m", "lens.media"]
            if os.environ.get("LENS_BENCH_PROFILE"):  # a cProfile dump per level, to read
                dump = f"{os.environ['LENS_BENCH_PROFILE']}-{time.time():.0f}.prof"
                command = [command[0], "-m", "cProfile", "-o", dump, "-m", "lens.media"]
            self.url = f"http://127.0.0.1:{self.port}"
            health = self.url + "/healthz"
        elif system == "mediarelay":
            command = [
                sys.executable,
                str(ROOT / "bench" / "transcoding_relay.py"),
                str(self.port),
                self.secret,
            ]
            self.url = f"http://127.0.0.1:{self.port}"
            health = self.url + "/healthz"
        else:
            config = workdir / "janus"
            write_config(config, self.port)
            command = ["janus", "-F", str(config)]
            self.url = f"http://127.0.0.1:{self.port}/janus"
            health = self.url + "/info"
        self.process = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=log)
        wait_http(health)

    def metrics(self) -> str:
        request = urllib.request.Request(
            self.url + "/metrics", headers={"Authorization": f"Bearer {self.secret}"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.read().decode()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT if self.system != "janus" else signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def ask(workers: list[Any], message: tuple[str, Any], expect: str) -> list[Any]:
    for conn in workers:
        conn.send(message)
    replies = []
    for conn in workers:
        kind, payload = conn.recv()
        if kind != expect:
            raise RuntimeError(f"worker: {kind} {payload}")
        replies.append(payload)
    return replies


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_level(
    system: str, sessions: int, workers: list[Any], workdir: Path, warmup: float, window: float
) -> dict[str, Any]:
    server = None if system == "direct" else Server(system, workdir)
    target = {
        "system": system,
        "url": server.url if server else "",
        "secret": server.secret if server else "",
    }
    sids = [f"{system}-{sessions}-{i}" for i in range(sessions)]
    busy = [w for i, w in enumerate(workers) if i < sessions]
    try:
        for i, conn in enumerate(busy):
            conn.send(("start", {**target, "sids": sids[i :: len(busy)]}))
        for conn in busy:
            kind, payload = conn.recv()
            if kind != "ready":
                raise RuntimeError(f"{system} x{sessions}: {payload}")
        time.sleep(warmup)
        if server and system == "lens" and os.environ.get("LENS_MEDIA_STALLS"):
            server.process.send_signal(signal.SIGUSR1)  # lens/media/stalls.py: count from here
        cpu0 = proc_cpu_seconds(server.process.pid) if server else 0.0
        busy0 = machine_busy_seconds()
        t0 = time.monotonic()
        ask(busy, ("mark", None), "marked")
        time.sleep(window)
        cpu1 = proc_cpu_seconds(server.process.pid) if server else 0.0
        busy1 = machine_busy_seconds()
        elapsed = time.monotonic() - t0
        if server and system == "lens" and os.environ.get("LENS_MEDIA_STALLS"):
            server.process.send_signal(signal.SIGUSR2)  # the window's figures, written now
        replies = ask(busy, ("end", None), "stats")
        result = summarize(system, sessions, replies, elapsed)
        # CPU used by anything but this benchmark (other work on the machine skews tails)
        result["other_cpu"] = (
            100 * (busy1 - busy0 - (cpu1 - cpu0)) / elapsed - result["loadgen_cpu"]
        )
        if server:
            result["cpu_total"] = 100 * (cpu1 - cpu0) / elapsed
            result["cpu_per_session"] = result["cpu_total"] / sessions
            result["peak_rss_mb"] = proc_peak_rss_mb(server.process.pid)
            if system.startswith("lens"):
                metrics = server.metrics()
                result["codecs"] = [
                    line
                    for line in metrics.splitlines()
                    if line.startswith(("lens_media_encoders", "lens_media_decoders"))
                ]
        ask(busy, ("stop", target), "stopped")
        return result
    finally:
        if server:
            server.stop()


def summarize(system: str, sessions: int, replies: list[Any], elapsed: float) -> dict[str, Any]:
    stats = [s for reply in replies for s in reply["sessions"]]
    sent = sum(s["sent"] for s in stats)
    received = sum(s["received"] for s in stats)
    latencies = [x * 1000 for s in stats for x in s["latencies"]]
    first = [s["first_frame"] * 1000 for s in stats if s["first_frame"] is not None]
    return {
        "system": system,
        "sessions": sessions,
        "sent": sent,
        "received": received,
        "lost_pct": 100 * max(0, sent - received) / sent if sent else float("nan"),
        "fps": received / elapsed / sessions,
        "latency_p50": percentile(latencies, 0.5),
        "latency_p95": percentile(latencies, 0.95),
        "first_frame_p50": percentile(first, 0.5),
        "first_frame_max": max(first) if first else float("nan"),
        "loadgen_cpu": 100 * sum(r["cpu"] for r in replies) / elapsed,
    }


def by_level_and_round(results: list[dict[str, Any]], system: str) -> dict[tuple, dict]:
    """`system`'s results by (sessions, round): a row is compared with the same round's."""
    return {(r["sessions"], r["round"]): r for r in results if r["system"] == system}


def print_table(results: list[dict[str, Any]]) -> None:
    direct = by_level_and_round(results, "direct")
    lens = by_level_and_round(results, "lens")
    header = (
        "| system | sessions | round | server CPU % core | per session | peak RSS MB | fps/session "
        "| lost % | latency p50/p95 ms | added p50/p95 ms | start→first frame p50/max ms "
        "| vs Lens CPU | load-gen CPU % | other CPU % |"
    )
    print(header)
    print("|---" * 14 + "|")
    for r in results:
        key = (r["sessions"], r["round"])
        base = direct.get(key)
        added = "–"
        if base and r["system"] != "direct" and r["latency_p50"] == r["latency_p50"]:
            p50 = r["latency_p50"] - base["latency_p50"]
            p95 = r["latency_p95"] - base["latency_p95"]
            added = f"{p50:.1f} / {p95:.1f}"
        per = r.get("cpu_per_session")
        per_text = f"{per:.2f}" if per is not None else "–"
        ratio = "–"
        if per is not None and key in lens and r["system"] != "lens":
            ratio = f"{per / lens[key]['cpu_per_session']:.2f}×"
        latency = f"{num(r['latency_p50'], '.1f')} / {num(r['latency_p95'], '.1f')}"
        if latency == "– / –":
            latency = "n/a"  # re-encoded frames cannot be matched by hash
        print(
            f"| {r['system']} | {r['sessions']} | {r['round']} "
            f"| {num(r.get('cpu_total'), '.1f')} | {per_text} "
            f"| {num(r.get('peak_rss_mb'), '.0f')} | {r['fps']:.1f} | {r['lost_pct']:.2f} "
            f"| {latency} | {added} "
            f"| {r['first_frame_p50']:.0f} / {r['first_frame_max']:.0f} | {ratio} "
            f"| {r['loadgen_cpu']:.0f} | {r['other_cpu']:.0f} |"
        )


def print_summary(results: list[dict[str, Any]]) -> None:
    """Per level and system over the rounds: CPU per session (median, min–max), frames
    lost (all rounds together), relay-added p95 (median); Lens's median ÷ each other's."""
    direct = by_level_and_round(results, "direct")
    print(
        "| sessions | system | rounds | CPU % core/session median (min–max) "
        "| Lens ÷ this, medians | frames lost % | added p95 ms, median (max) |"
    )
    print("|---" * 7 + "|")
    levels = sorted({r["sessions"] for r in results})
    for sessions in levels:
        by_system: dict[str, list[dict[str, Any]]] = {}
        for r in results:
            if r["sessions"] == sessions:
                by_system.setdefault(r["system"], []).append(r)
        medians = {
            system: statistics.median(r["cpu_per_session"] for r in rows)
            for system, rows in by_system.items()
            if all(r.get("cpu_per_session") is not None for r in rows)
        }
        for system, rows in by_system.items():
            sent = sum(r["sent"] for r in rows)
            lost = sum(max(0, r["sent"] - r["received"]) for r in rows)
            added = [
                r["latency_p95"] - direct[(sessions, r["round"])]["latency_p95"]
                for r in rows
                if (sessions, r["round"]) in direct and system != "direct"
            ]
            cpu = "–"
            if system in medians:
                values = [r["cpu_per_session"] for r in rows]
                cpu = f"{medians[system]:.2f} ({min(values):.2f}–{max(values):.2f})"
            ratio = "–"
            if system in medians and "lens" in medians and system != "lens":
                ratio = f"{medians['lens'] / medians[system]:.2f}×"
            added_text = f"{statistics.median(added):.1f} ({max(added):.1f})" if added else "–"
            lost_text = f"{100 * lost / sent:.2f}" if sent else "–"
            print(
                f"| {sessions} | {system} | {len(rows)} | {cpu} | {ratio} | {lost_text} "
                f"| {added_text} |"
            )


def num(value: float | None, spec: str) -> str:
    """A table cell: the number, or – where the system has none (the direct path's server)."""
    if value is None or value != value:
        return "–"
    return format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="levels 1 and 5 only")
    parser.add_argument("--levels", default="1,5,10,20")
    parser.add_argument("--mediarelay-levels", default="1,5")
    parser.add_argument(
        "--systems",
        default="direct,lens,janus,mediarelay",
        help="also lens-asyncio, lens-python (no native send step), and lens-other with "
        "--other-python",
    )
    parser.add_argument(
        "--other-python",
        help="the system lens-other: the same sidecar on this interpreter (with Lens's "
        "packages installed), e.g. another build of Python 3.11",
    )
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    parser.add_argument("--hog", action="store_true", help="a process spinning on one core")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each level this many times, the systems' order reversed every other "
        "round; a summary gives each system's median and the ratio of the medians",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    levels = [1, 5] if args.quick else [int(x) for x in args.levels.split(",")]
    mediarelay_levels = [int(x) for x in args.mediarelay_levels.split(",")]
    systems = args.systems.split(",")
    if args.other_python:
        SIDECAR_PYTHON["lens-other"] = args.other_python
        if "lens-other" not in systems:
            systems.append("lens-other")
    elif "lens-other" in systems:
        parser.error("lens-other needs --other-python")
    if "janus" in systems and shutil.which("janus") is None:
        print("janus not installed: skipped")
        systems.remove("janus")

    started = time.monotonic()
    video = encode_vp8_clip(seconds=10.0, keyframe_every=300)
    audio = encode_opus_clip(seconds=1.0)
    bitrate = sum(map(len, video.frames)) * 8 / 10 / 1e6
    print(f"clip: {len(video.frames)} VP8 frames 640x480@30, {bitrate:.2f} Mbps; Opus 20 ms")
    context = multiprocessing.get_context("fork")
    workers, processes = [], []
    for _ in range(WORKERS):
        parent, child = context.Pipe()
        process = context.Process(target=worker_main, args=(child, video, audio), daemon=True)
        process.start()
        workers.append(parent)
        processes.append(process)

    hog = None
    if args.hog:
        hog = context.Process(target=spin, daemon=True)
        hog.start()
        print(f"CPU hog running (pid {hog.pid})")
    results = []
    with tempfile.TemporaryDirectory(prefix="lens-bench-") as tmp:
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            tmp = str(args.logs.resolve())
        try:
            # systems side by side at each level, so they share the machine's conditions
            # (rounds: the order reversed every other round, so that neither system
            # always runs first after a level's start or right after the other)
            for sessions in levels:
                for round_number in range(args.rounds):
                    order = systems if round_number % 2 == 0 else systems[::-1]
                    for system in order:
                        if system == "mediarelay" and sessions not in mediarelay_levels:
                            continue
                        result = run_level(
                            system, sessions, workers, Path(tmp), args.warmup, args.window
                        )
                        result["round"] = round_number + 1
                        results.append(result)
                        print(
                            f"  {system:10} x{sessions:<2} round {round_number + 1} cpu/session "
                            f"{result.get('cpu_per_session', float('nan')):5.2f}%  lost "
                            f"{result['lost_pct']:.2f}%  p95 {result['latency_p95']:.1f} ms  "
                            f"other {result['other_cpu']:.0f}%  load {loadavg()}  "
                            f"{result.get('codecs', '')}",
                            flush=True,
                        )
        finally:
            for conn in workers:
                conn.send(("quit", None))
            for process in processes:
                process.join(5)
            if hog is not None:
                hog.kill()
                hog.join(5)
    print()
    print_table(results)
    if args.rounds > 1:
        print()
        print_summary(results)
    print(
        f"\nwhole run: {time.monotonic() - started:.0f} s on {os.cpu_count()} cores"
        f"{', CPU hog on one core' if args.hog else ''}; load average {loadavg()}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
