"""Live sessions on one web process: technicians and phones speaking the pages' protocol.

    .venv/bin/python bench/web_load.py                       # 50, 100, 200 sessions, 3 runs
    .venv/bin/python bench/web_load.py --levels 200 --seconds 60 --runs 1
    .venv/bin/python bench/web_load.py --worker gthread --levels 50 --runs 1   # the old model

No browser: each technician is an HTTP client with the console page's one socket open,
each phone an HTTP client with the phone page's one socket open (what the pages open; no
media: the sidecar is not started, offers are not sent). The web process is gunicorn with
one worker, as `bin/run` starts it, on SQLite in a fresh instance folder (or --database).

Per level N, N technician/phone pairs run continuously for --seconds: create a session,
the phone joins by PIN and accepts, the technician starts the row pushed to the console and
opens its panel, phone and technician exchange a chat line every --chat-every seconds (5),
the technician ends it after --live seconds (45; each session's length and pace vary by
±50 %, as a team's do), and again. Each level has technicians of
its own; what is still running at its end is stopped before the next. Beside
them a sampler times `GET /healthz` and a technician's `GET /console/` every 100 ms, and
reads the process's /metrics and RSS.

Printed per level: sockets open, errors, console page p50/p95, /healthz p95, Accept → row
pushed p95, chat delivery p95, database connections in use (max), the worker's CPU (% of
one core) and RSS. After each run: RSS, and the growth between the last two runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.webserver import PASSWORD, WebServer, _children_of  # noqa: E402

TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|"X-CSRFToken": "([^"]+)"')
PIN = re.compile(r'data-pin="(\d{6})"')


def token_of(html: str) -> str:
    match = TOKEN.search(html)
    if not match:
        raise RuntimeError("no CSRF token in the page")
    return match.group(1) or match.group(2)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


@dataclass
class Figures:
    errors: list[str] = field(default_factory=list)
    accept_to_row: list[float] = field(default_factory=list)
    chat: list[float] = field(default_factory=list)
    console_page: list[float] = field(default_factory=list)
    healthz: list[float] = field(default_factory=list)
    db_in_use: list[int] = field(default_factory=list)
    sockets: list[int] = field(default_factory=list)
    sessions_done: int = 0
    busy_retries: int = 0  # the web process's count so far


class Page:
    """A page's one socket: pushes and JSON, with waiters for what a step expects."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.waiters: list[tuple[callable, asyncio.Future]] = []
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = message.data
            for test, future in list(self.waiters):
                if not future.done() and test(data):
                    future.set_result((time.perf_counter(), data))

    def expect(self, test) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.waiters.append((test, future))
        future.add_done_callback(lambda f: self.waiters.remove((test, future)))
        return future

    async def send(self, message: dict) -> None:
        await self.ws.send_str(json.dumps(message))

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


class Site:
    def __init__(self, base: str, connector: aiohttp.TCPConnector) -> None:
        self.base = base
        self.ws_base = base.replace("http", "ws", 1)
        self.connector = connector

    def client(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=self.connector,
            connector_owner=False,
            timeout=aiohttp.ClientTimeout(total=30),
        )


async def log_in(site: Site, http: aiohttp.ClientSession, email: str) -> str:
    async with http.get(site.base + "/login") as response:
        token = token_of(await response.text())
    form = {"email": email, "password": PASSWORD, "csrf_token": token}
    async with http.post(site.base + "/login", data=form, allow_redirects=False) as response:
        if response.status != 302:
            raise RuntimeError(f"log-in answered {response.status}")
    async with http.get(site.base + "/console/") as response:
        return token_of(await response.text())


async def pair(site: Site, n: int, args, figures: Figures, stop: asyncio.Event) -> None:
    """One technician (tech<n>) and the phones of the sessions they run, one after another."""
    tech = site.client()
    console = None
    try:
        token = await log_in(site, tech, f"tech{n}@example.com")
        headers = {"HX-Request": "true", "X-CSRFToken": token}
        console = Page(await tech.ws_connect(site.ws_base + "/console/ws"))
        while not stop.is_set():
            try:
                await one_session(site, tech, headers, console, n, args, figures, stop)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                figures.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(1)
    except Exception as exc:  # noqa: BLE001
        figures.errors.append(f"pair {n}: {type(exc).__name__}: {exc}"[:200])
    finally:
        if console is not None:
            await console.close()
        await tech.close()


async def one_session(site, tech, headers, console, n, args, figures, stop) -> None:
    async with tech.post(
        site.base + "/console/sessions", data={"name": f"Load {n}"}, headers=headers
    ) as response:
        if response.status != 201:
            raise RuntimeError(f"create answered {response.status}")
        pin = PIN.search(await response.text()).group(1)
    phone = site.client()
    phone_page = None
    try:
        async with phone.get(site.base + "/") as response:
            phone_token = token_of(await response.text())
        form = {"pin": pin, "csrf_token": phone_token}
        async with phone.post(site.base + "/", data=form) as response:
            page = await response.text()
            if response.status != 200 or "customer-session" not in page:
                raise RuntimeError(f"join answered {response.status}")
        phone_page = Page(await phone.ws_connect(site.ws_base + "/c/ws"))
        phone_headers = {"HX-Request": "true", "X-CSRFToken": phone_token}
        row_waiting = console.expect(lambda d: "Load " in d and 'data-state="waiting"' in d)
        began = time.perf_counter()
        async with phone.post(site.base + "/c/accept", headers=phone_headers) as response:
            if response.status != 200:
                raise RuntimeError(f"accept answered {response.status}")
        seen_at, row = await asyncio.wait_for(row_waiting, 10)
        figures.accept_to_row.append(seen_at - began)
        active = phone_page.expect(lambda d: 'data-screen="active"' in d)
        session_id = await start(site, tech, headers, console, row)
        await asyncio.wait_for(active, 10)
        # sessions differ in length and pace, as a team's do; equal ones would stay in step
        # and arrive at the server in bursts
        live_until = time.monotonic() + args.live * random.uniform(0.5, 1.5)
        k = 0
        while time.monotonic() < live_until and not stop.is_set():
            k += 1
            text = f"msg {n}-{session_id}-{k}"
            seen = console.expect(lambda d, t=text: t in d)
            sent = time.perf_counter()
            await phone_page.send({"type": "chat", "text": text})
            figures.chat.append((await asyncio.wait_for(seen, 10))[0] - sent)
            reply = f"re {n}-{session_id}-{k}"
            heard = phone_page.expect(lambda d, t=reply: t in d)
            sent = time.perf_counter()
            await console.send({"type": "chat", "text": reply, "session": session_id})
            figures.chat.append((await asyncio.wait_for(heard, 10))[0] - sent)
            await asyncio.sleep(args.chat_every * random.uniform(0.5, 1.5))
        async with tech.post(
            f"{site.base}/console/sessions/{session_id}/end", headers=headers
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"end answered {response.status}")
        figures.sessions_done += 1
    finally:
        if phone_page is not None:  # a shared connector's sockets outlive their session
            await phone_page.close()
        await phone.close()


async def start(site: Site, tech, headers, console: Page, row: str) -> int:
    """Start the session whose row was pushed (as a technician clicks it) and open its panel."""
    match = re.search(r'id="session-row-(\d+)"[^>]*data-state="waiting"', row)
    if not match:
        raise RuntimeError("no waiting row in the push")
    session_id = int(match.group(1))
    async with tech.post(
        f"{site.base}/console/sessions/{session_id}/start", headers=headers
    ) as response:
        if response.status != 200:
            raise RuntimeError(f"start answered {response.status}: {(await response.text())[:80]}")
    opened = console.expect(lambda d: f'id="session-head-{session_id}"' in d)
    await console.send({"type": "open", "session": session_id})
    await asyncio.wait_for(opened, 10)
    return session_id


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def worker_pid(server: WebServer) -> int:
    children = _children_of(server.process.pid)
    if not children:
        raise RuntimeError("no gunicorn worker")
    return children[0]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample(site: Site, args, figures: Figures, stop: asyncio.Event) -> None:
    """/healthz and a console page every 100 ms; the process's figures every second."""
    watcher = site.client()
    try:
        await log_in(site, watcher, "tech0@example.com")
        tick = 0
        while not stop.is_set():
            try:
                await sample_once(site, watcher, figures, with_metrics=tick % 10 == 0)
            except Exception as exc:  # noqa: BLE001 - a failed probe is an error, not a crash
                figures.errors.append(f"probe {type(exc).__name__}: {exc}"[:200])
            tick += 1
            await asyncio.sleep(0.1)
    finally:
        await watcher.close()


async def sample_once(site: Site, watcher, figures: Figures, with_metrics: bool) -> None:
    began = time.perf_counter()
    async with watcher.get(site.base + "/healthz") as response:
        await response.read()
        if response.status != 200:
            figures.errors.append(f"/healthz answered {response.status}")
    figures.healthz.append(time.perf_counter() - began)
    began = time.perf_counter()
    async with watcher.get(site.base + "/console/") as response:
        await response.read()
        if response.status != 200:
            figures.errors.append(f"/console/ answered {response.status}")
    figures.console_page.append(time.perf_counter() - began)
    if with_metrics:
        async with watcher.get(site.base + "/metrics") as response:
            text = await response.text()
        values = dict(line.split() for line in text.splitlines() if line[:1] != "#")
        figures.sockets.append(int(values["lens_web_sockets_open"]))
        figures.db_in_use.append(int(values["lens_db_connections_in_use"]))
        figures.busy_retries = int(values["lens_db_busy_retries_total"])


async def level(site: Site, n: int, first: int, args, pid: int) -> dict:
    """n pairs (technicians first..first+n-1) for args.seconds; every task ends before return."""
    figures = Figures()
    stop = asyncio.Event()
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    client_before = sum(os.times()[:2])
    pairs = []
    for i in range(n):  # a ramp, not a stampede: a team's day does not start at one instant
        pairs.append(asyncio.create_task(pair(site, first + i, args, figures, stop)))
        await asyncio.sleep(args.ramp / n)
    sampler = asyncio.create_task(sample(site, args, figures, stop))
    await asyncio.sleep(args.seconds)
    stop.set()
    _done, late = await asyncio.wait(pairs + [sampler], timeout=1.5 * args.live + 30)
    for task in late:  # stuck on a timeout: cancelled, so nothing leaks into the next level
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    wall = time.monotonic() - wall_before
    cpu = (cpu_seconds(pid) - cpu_before) / wall
    client_cpu = (sum(os.times()[:2]) - client_before) / wall
    return {
        "sessions": n,
        "sockets open": max(figures.sockets or [0]),
        "errors": len(figures.errors),
        "error kinds": sorted(set(e.split(":")[0] for e in figures.errors))[:5],
        "sessions done": figures.sessions_done,
        "console p50 ms": 1000 * percentile(figures.console_page, 50),
        "console p95 ms": 1000 * percentile(figures.console_page, 95),
        "healthz p95 ms": 1000 * percentile(figures.healthz, 95),
        "accept->row p95 ms": 1000 * percentile(figures.accept_to_row, 95),
        "chat p95 ms": 1000 * percentile(figures.chat, 95),
        "db connections max": max(figures.db_in_use or [0]),
        "busy retries (total)": figures.busy_retries,
        "worker cpu %": 100 * cpu,
        "client cpu %": 100 * client_cpu,
        "rss MB": rss_mb(pid),
    }


def add_technicians(server: WebServer, count: int) -> None:
    """count technicians in one go (the CLI would start a process per technician)."""
    code = f"""
from lens.factory import create_app
from lens.auth.models import Technician
from lens.extensions import db
app = create_app()
with app.app_context():
    for n in range({count}):
        t = Technician(name=f"Tech {{n}}", email=f"tech{{n}}@example.com")
        t.set_password({PASSWORD!r}, "pbkdf2:sha256:1")
        db.session.add(t)
    db.session.commit()
"""
    import subprocess

    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=server.env, check=True)


async def main_async(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="lens-web-load-"))
    settings = {
        "LENS_WEB_WORKER_CLASS": args.worker,
        "LENS_SOCKETS_PER_ADDRESS": "100000",  # every client comes from 127.0.0.1 here
        "LENS_INVITE_RATE_LIMIT": "100000 per minute",
        "LENS_PIN_RATE_LIMIT": "100000 per minute",
        "LENS_PIN_ADDRESS_CEILING": "100000",
        "LENS_PIN_GUESS_BUDGET": "100000",
        "LENS_LOGIN_RATE_LIMIT": "100000 per minute",
    }
    if args.database:
        settings["DATABASE_URL"] = args.database
    server = WebServer(folder, **settings)
    server.prepare()
    add_technicians(server, sum(args.levels) + 1)
    server.start()
    pid = worker_pid(server)
    if args.nice:  # on a shared machine: the web process and this client before the rest
        for process in (os.getpid(), server.process.pid, pid):
            os.setpriority(os.PRIO_PROCESS, process, args.nice)
        # with autogroups, nice orders only within a session: raise the session's group
        Path("/proc/self/autogroup").write_text(str(args.nice))
    print(
        f"web: gunicorn {args.worker}, 1 worker (pid {pid}); database "
        f"{args.database or 'SQLite'}; nice {args.nice}; load {loadavg()}",
        flush=True,
    )
    print(f"RSS at start: {rss_mb(pid):.1f} MB", flush=True)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    site = Site(server.base, connector)
    rss_after = []
    try:
        for run in range(1, args.runs + 1):
            first = 1  # tech0 is the sampler's
            for n in args.levels:
                figures = await level(site, n, first, args, pid)
                first += n
                print(
                    f"run {run} "
                    + " · ".join(
                        f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in figures.items()
                    )
                    + f" · load {loadavg()}",
                    flush=True,
                )
            rss_after.append(rss_mb(pid))
            print(f"run {run}: RSS after {rss_after[-1]:.1f} MB", flush=True)
        if len(rss_after) >= 2:
            growth = 100 * (rss_after[-1] - rss_after[-2]) / rss_after[-2]
            print(f"RSS growth between the last two runs: {growth:+.1f} %")
    finally:
        await connector.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seconds", type=float, default=45, help="per level")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--live", type=float, default=45, help="seconds a session stays active")
    parser.add_argument("--chat-every", type=float, default=5, help="seconds between exchanges")
    parser.add_argument("--ramp", type=float, default=20, help="seconds to bring pairs in")
    parser.add_argument("--worker", choices=["gevent", "gthread"], default="gevent")
    parser.add_argument("--database", default="", help="a DATABASE_URL (default: SQLite)")
    parser.add_argument(
        "--nice", type=int, default=0, help="e.g. -15: run before other work (needs root)"
    )
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
