"""Scale-out benchmark: sessions on one media sidecar vs spread over two.

    .venv/bin/python bench/sidecars.py --nice -15       # levels 8-64 on 1 and 2 sidecars
    .venv/bin/python bench/sidecars.py --levels 2,4 --window 5

Each sidecar is its own `python -m lens.media` process registered in Redis (as with
REDIS_URL in production: heartbeat, capacity, sessions, CPU). Sessions are placed the way
the web processes place them (lens/sidecars/router.py: least-loaded live sidecar, which
for equal capacities spreads them evenly). The same load-generator workers (--workers,
default 2) carry the sessions whatever the number of sidecars, each session going to its
own sidecar (bench/load.py: phones replaying 640x480@30 VP8 + Opus, technicians that
match frames by hash): one sidecar and two are driven by the same load generator. Per
number of sidecars and level it prints the sidecars' CPU (total and per session),
sessions per sidecar (from their heartbeats), frames lost and latency;
then, for 1 and 2 sidecars, the most sessions with < 1 % frames lost. Machine load
(/proc/loadavg) and "other CPU" (everything but the sidecars and the load generators)
are printed beside every figure: on a shared 2-core machine they decide the tails.
Needs a local Redis (REDIS_URL, default redis://127.0.0.1:6379/8). On a shared machine,
`--nice -15` (root) runs the benchmark's processes ahead of the rest (its autogroup too).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import worker_main  # noqa: E402
from relay import (  # noqa: E402
    ask,
    free_port,
    machine_busy_seconds,
    proc_cpu_seconds,
    summarize,
    wait_http,
)

from lens.media.testing import encode_opus_clip, encode_vp8_clip  # noqa: E402
from lens.sidecars.registry import RedisRegistry  # noqa: E402


class Sidecar:
    def __init__(self, name: str, secret: str, redis_url: str, prefix: str, log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LENS_MEDIA_PORT": str(self.port),
            "LENS_MEDIA_SECRET": secret,
            "LENS_MEDIA_ID": name,
            "REDIS_URL": redis_url,
            "LENS_REDIS_PREFIX": prefix,
        }
        env.pop("DATABASE_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lens.media"], env=env, stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_http(self.url + "/healthz")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def place(sessions: int, sidecars: list[Sidecar]) -> dict[str, list[str]]:
    """Least-loaded placement as the router does it, one session at a time."""
    load = {s.name: 0 for s in sidecars}
    placed: dict[str, list[str]] = {s.name: [] for s in sidecars}
    for number in range(sessions):
        chosen = min(load, key=lambda name: (load[name], name))
        load[chosen] += 1
        placed[chosen].append(f"x{len(sidecars)}-{sessions}-{number}")
    return placed


def run_level(
    count: int, sessions: int, workers: list[Any], args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    secret = secrets.token_urlsafe(16)
    prefix = f"lens-bench-{secrets.token_hex(3)}:"
    sidecars = [
        Sidecar(f"side-{i + 1}", secret, args.redis, prefix, workdir / f"side-{i + 1}.log")
        for i in range(count)
    ]
    registry = RedisRegistry(args.redis, prefix)
    try:
        deadline = time.monotonic() + 15
        while len(registry.live()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the sidecars did not register")
            time.sleep(0.2)
        placed = place(sessions, sidecars)
        urls = {sid: s.url for s in sidecars for sid in placed[s.name]}
        sids = sorted(urls, key=lambda sid: int(sid.rsplit("-", 1)[1]))
        busy = workers[: min(len(workers), sessions)]
        for index, worker in enumerate(busy):
            mine = sids[index :: len(busy)]  # dealt in turn, whichever sidecar they are on
            worker.send(("start", {"system": "lens", "secret": secret, "sids": mine,
                                   "urls": {sid: urls[sid] for sid in mine}}))  # fmt: skip
        for worker in busy:
            kind, payload = worker.recv()
            if kind != "ready":
                raise RuntimeError(f"{count} sidecar(s) x{sessions}: {payload}")
        time.sleep(args.warmup)
        cpu0 = {s.name: proc_cpu_seconds(s.process.pid) for s in sidecars}
        busy0 = machine_busy_seconds()
        t0 = time.monotonic()
        ask(busy, ("mark", None), "marked")
        time.sleep(args.window)
        cpu1 = {s.name: proc_cpu_seconds(s.process.pid) for s in sidecars}
        busy1 = machine_busy_seconds()
        elapsed = time.monotonic() - t0
        loadavg = Path("/proc/loadavg").read_text().split()[0]
        heartbeats = {s.id: s.sessions for s in RedisRegistry(args.redis, prefix).live()}
        replies = ask(busy, ("end", None), "stats")
        result = summarize(f"{count} sidecar(s)", sessions, replies, elapsed)
        sidecar_cpu = sum(cpu1[n] - cpu0[n] for n in cpu0)
        result.update(
            sidecars=count,
            cpu_total=100 * sidecar_cpu / elapsed,
            cpu_per_session=100 * sidecar_cpu / elapsed / sessions,
            cpu_by_sidecar={n: round(100 * (cpu1[n] - cpu0[n]) / elapsed, 1) for n in cpu0},
            sessions_by_sidecar=heartbeats,
            other_cpu=100 * (busy1 - busy0 - sidecar_cpu) / elapsed - result["loadgen_cpu"],
            loadavg=float(loadavg),
        )
        for worker in busy:  # each worker deletes its sessions, each on its sidecar
            worker.send(("stop", {"system": "lens", "secret": secret, "urls": urls}))
        for worker in busy:
            kind, payload = worker.recv()
            if kind != "stopped":
                raise RuntimeError(f"worker: {kind} {payload}")
        return result
    finally:
        for sidecar in sidecars:
            sidecar.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="8,16,32,48,64")
    parser.add_argument("--sidecars", default="1,2")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/8"))
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--nice", type=int, default=0, help="e.g. -15: run before other work (needs root)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.nice:  # before anything starts: the workers and sidecars inherit it
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        # with autogroups, nice orders only within a session: raise the session's group
        Path("/proc/self/autogroup").write_text(str(args.nice))
    print(f"nice {args.nice}; load {Path('/proc/loadavg').read_text().strip()}", flush=True)
    levels = [int(x) for x in args.levels.split(",")]
    counts = [int(x) for x in args.sidecars.split(",")]
    video, audio = encode_vp8_clip(seconds=2.0), encode_opus_clip(1.0)
    context = multiprocessing.get_context("spawn")
    workers, processes = [], []
    for _ in range(args.workers):
        parent, child = context.Pipe()
        process = context.Process(target=worker_main, args=(child, video, audio), daemon=True)
        process.start()
        workers.append(parent)
        processes.append(process)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            for sessions in levels:
                result = run_level(count, sessions, workers, args, Path(tmp))
                results.append(result)
                print(
                    f"{count} sidecar(s) {sessions:3d} sessions: "
                    f"CPU {result['cpu_total']:5.1f} % "
                    f"({result['cpu_per_session']:4.1f} %/session, "
                    f"by sidecar {result['cpu_by_sidecar']}), "
                    f"sessions by sidecar {result['sessions_by_sidecar']}, "
                    f"lost {result['lost_pct']:5.2f} %, fps {result['fps']:4.1f}, "
                    f"latency p50/p95 {result['latency_p50']:.0f}/{result['latency_p95']:.0f} ms, "
                    f"loadgen CPU {result['loadgen_cpu']:.0f} %, "
                    f"other CPU {result['other_cpu']:.0f} %, "
                    f"loadavg {result['loadavg']:.1f}",
                    flush=True,
                )
    for worker in workers:
        worker.send(("quit", None))
    for process in processes:
        process.join(timeout=10)
    for count in counts:
        ok = [r["sessions"] for r in results if r["sidecars"] == count and r["lost_pct"] < 1.0]
        print(f"{count} sidecar(s): most sessions with < 1 % frames lost: {max(ok) if ok else 0}"
              f" (levels tried: {args.levels})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
