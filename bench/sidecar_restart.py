"""Sidecar restart benchmark: how long the video is gone when the one sidecar is SIGKILLed.

    .venv/bin/python bench/sidecar_restart.py                 # 5 kills with a spare, 5 without
    .venv/bin/python bench/sidecar_restart.py --kills 3 --nice -15
    .venv/bin/python bench/sidecar_restart.py --chromium      # the pages in Debian Chromium

The embedded default as `bin/run` runs it: one web process (SQLite, no Redis; served
threaded in this process), one sidecar under the run command's supervisor
(lens.run.SidecarSupervisor) with its spare, or without one (LENS_MEDIA_SPARE=0, or
systemd restarting the sidecar alone: a fresh process). A technician and a customer start
a session; the two pages are aiortc peers that signal through the web process's page
sockets and behave like static/js/webrtc.js (they re-offer when told "media_reconnect";
their own silence timer is 15 s, so it is the push that brings them back). Then, per
kill: SIGKILL the sidecar, and measure the time until the pages were told and until video
frames reach the technician again (30 more frames, on the same session). With
--chromium the phone and the console are Chromium contexts with the fake camera (as in the
browser tests, static/js/webrtc.js itself): the times until each page says "Connection
lost" and until the console has decoded a frame on its new connection. The load
(/proc/loadavg) is printed with every figure: on a shared machine the sidecar's start and
the reconnection wait for CPU.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def run_mode(spare: bool, kills: int, folder: Path) -> list[dict[str, float]]:

    from lens import run
    from lens.extensions import db
    from lens.factory import create_app
    from lens.media.testing import encode_opus_clip, encode_vp8_clip
    from tests.scaleout.live import started_session
    from tests.scaleout.pages import Page
    from tests.scaleout.test_recording_crash import PeerLoop
    from tests.scaleout.test_two_sidecars import cookie_header, free_port, serve, wait_until

    port = free_port()
    secret = secrets.token_urlsafe(16)
    for name in ("REDIS_URL", "DATABASE_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        LENS_INSTANCE_PATH=str(folder / "instance"),
        LENS_MEDIA_URL=f"http://127.0.0.1:{port}",
        LENS_MEDIA_SECRET=secret,
        LENS_RECORDINGS_PATH=str(folder / "recordings"),
    )
    app = create_app({"TESTING": True, "LENS_PASSWORD_METHOD": "pbkdf2:sha256:1"})
    assert app.test_cli_runner().invoke(args=["lens", "init"]).exit_code == 0
    app.test_cli_runner().invoke(
        args=["lens", "create-technician", "--name", "Tess", "--email", "tess@example.com",
              "--password", "correct horse battery"]
    )  # fmt: skip
    log = (folder / "sidecar.log").open("w")
    env = dict(os.environ, LENS_MEDIA_PORT=str(port))
    command = [sys.executable, "-m", "lens.media"]
    supervisor = run.SidecarSupervisor(command, env, log, spare=spare)
    supervisor.start()
    stopped = threading.Event()

    def watch() -> None:
        while not stopped.wait(run.WATCH_SECONDS):
            supervisor.check()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    server, host = serve(app)
    peers = PeerLoop()
    pages: list[Page] = []
    results = []
    try:
        wait_until(lambda: app.extensions["lens.media"].live_sidecars(), 60, "the sidecar")
        tech, phone, session_id = started_session(app, host, "Bench Restart")
        video, audio = encode_vp8_clip(seconds=2.0), encode_opus_clip(1.0)
        phone_page = Page(
            f"ws://{host}/c/ws",
            cookie_header(phone.http),
            True,
            video=video,
            audio=audio,
            silence=15.0,
        )
        tech_page = Page(
            f"ws://{host}/console/ws", cookie_header(tech.http), False, session=session_id,
            audio=audio, silence=15.0,
        )  # fmt: skip
        pages += [phone_page, tech_page]

        async def connect():
            await phone_page.connect()
            await tech_page.connect()
            await tech_page.received["video"].wait_for(30, timeout=30)
            phone_page.start_watch()
            tech_page.start_watch()

        peers.run(connect(), timeout=60)
        for _ in range(kills):
            received = tech_page.received["video"]
            wait_until(lambda: len(received.arrival) > 60, 30, "video flowing")  # noqa: B023
            if spare:
                wait_until(lambda: supervisor.spare_ready, 60, "the spare ready")
            time.sleep(1.0)  # a steady stream before the kill, not just its start
            before = len(received.arrival)
            pushes = (len(phone_page.pushes), len(tech_page.pushes))
            load = loadavg()
            killed_at = time.perf_counter()
            supervisor.process.kill()

            def back() -> bool:
                arrivals = received.arrival  # noqa: B023
                return len(arrivals) > before + 30 and arrivals[-1] > killed_at  # noqa: B023

            wait_until(back, 60, "video back")
            told_at = [
                page.pushes[count]
                for page, count in zip((phone_page, tech_page), pushes, strict=True)
                if len(page.pushes) > count
            ]
            told = [t - killed_at for t in told_at]
            # frames still in flight at the kill do not count: from the technician's page
            # being told on, only its new connection brings any
            since = tech_page.pushes[-1] if len(tech_page.pushes) > pushes[1] else killed_at
            first = next(t for t in received.arrival[before:] if t > since)
            result = {
                "back": first - killed_at,
                "told": max(told) if told else float("nan"),
                "load": float(load),
            }
            results.append(result)
            print(
                f"{'spare' if spare else 'fresh start'}: video back {result['back']:.2f} s "
                f"after the kill, both pages told by {result['told']:.2f} s (load {load})",
                flush=True,
            )
            # the next kill after the sidecar has run a while: restarts are then immediate
            supervisor.started -= run.STABLE_AFTER
    finally:

        async def close():
            for page in pages:
                await page.close()

        peers.run(close())
        peers.stop()
        time.sleep(app.config["LENS_CUSTOMER_GRACE_SECONDS"] + 0.5)  # the phone page's leaving
        stopped.set()
        watcher.join(timeout=5)
        supervisor.stop()
        log.close()
        server.shutdown()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return results


def run_chromium(spare: bool, kills: int, folder: Path) -> list[dict[str, float]]:
    """The same with the real pages in Chromium."""
    import logging

    from playwright.sync_api import expect, sync_playwright

    from lens import run
    from lens.factory import create_app
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, poll_without_eval
    from tests.browser.test_media_flow import LOST, MARK_PC, NEW_PC_FRAMES, PHONE_READY
    from tests.browser.test_session_flow import console_of, create_pin, customer_joins
    from tests.conftest import add_technician
    from tests.scaleout.test_two_sidecars import free_port, serve, wait_until

    poll_without_eval()  # the pages' CSP refuses eval
    port = free_port()
    for name in ("REDIS_URL", "DATABASE_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        LENS_INSTANCE_PATH=str(folder / "instance"),
        LENS_MEDIA_URL=f"http://127.0.0.1:{port}",
        LENS_MEDIA_SECRET=secrets.token_urlsafe(16),
        LENS_RECORDINGS_PATH=str(folder / "recordings"),
    )
    app = create_app(
        {"LENS_PASSWORD_METHOD": "pbkdf2:sha256:1", "RATELIMIT_STORAGE_URI": "memory://"}
    )
    assert app.test_cli_runner().invoke(args=["lens", "init"]).exit_code == 0
    add_technician(app, "Tess Technician", "tess@example.com")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    log = (folder / "sidecar.log").open("w")
    env = dict(os.environ, LENS_MEDIA_PORT=str(port))
    supervisor = run.SidecarSupervisor([sys.executable, "-m", "lens.media"], env, log, spare)
    supervisor.start()
    stopped = threading.Event()

    def watch() -> None:
        while not stopped.wait(run.WATCH_SECONDS):
            supervisor.check()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    server, host = serve(app)
    base = f"http://{host}"
    expect.set_options(timeout=30_000)
    results = []
    try:
        wait_until(lambda: app.extensions["lens.media"].live_sidecars(), 60, "the sidecar")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            _, tech = console_of(browser, base)
            pin = create_pin(tech, "Bench Restart")
            _, phone = customer_joins(browser, base, pin)
            phone.wait_for_function(PHONE_READY, timeout=30000)
            row = tech.get_by_role("row").filter(has_text="Bench Restart")
            row.get_by_role("button", name="Start").click()
            expect(tech.locator(".media-state")).to_have_text("Connected")
            for _ in range(kills):
                tech.wait_for_function(
                    "() => window.lensConsoleMedia.current().peer.pc.connectionState"
                    " === 'connected'"
                )
                if spare:
                    wait_until(lambda: supervisor.spare_ready, 60, "the spare ready")
                time.sleep(2.0)  # a steady stream before the kill
                tech.evaluate(MARK_PC)
                load = loadavg()
                killed_at = time.perf_counter()
                supervisor.process.kill()
                seen: dict[str, float] = {}
                while "back" not in seen and time.perf_counter() - killed_at < 60:
                    for name, page, label in (
                        ("tech lost", tech, ".media-state"), ("phone lost", phone, "#media-state")
                    ):  # fmt: skip
                        if name not in seen and page.locator(label).text_content() == LOST:
                            seen[name] = time.perf_counter() - killed_at
                    if tech.evaluate(NEW_PC_FRAMES) >= 1:
                        seen["back"] = time.perf_counter() - killed_at
                    time.sleep(0.02)
                seen["load"] = float(load)
                results.append(seen)
                print(
                    f"chromium, {'spare' if spare else 'fresh start'}: "
                    + ", ".join(f"{k} {v:.2f} s" for k, v in seen.items() if k != "load")
                    + f" (load {load})",
                    flush=True,
                )
                supervisor.started -= run.STABLE_AFTER  # as after a sidecar that ran a while
            browser.close()
    finally:
        stopped.set()
        watcher.join(timeout=5)
        supervisor.stop()
        log.close()
        server.shutdown()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5, help="kills per mode")
    parser.add_argument("--modes", default="spare,fresh")
    parser.add_argument("--chromium", action="store_true", help="the pages in Chromium")
    parser.add_argument(
        "--nice", type=int, default=0, help="e.g. -15: run before other work (needs root)"
    )
    args = parser.parse_args()
    if args.nice:  # the sidecars and the page peers inherit it
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        Path("/proc/self/autogroup").write_text(str(args.nice))
    print(f"nice {args.nice}; load {Path('/proc/loadavg').read_text().strip()}", flush=True)
    summary = {}
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            measure = run_chromium if args.chromium else run_mode
            summary[mode] = measure(mode == "spare", args.kills, Path(tmp))
    for mode, results in summary.items():
        backs = sorted(r.get("back", float("inf")) for r in results)
        loads = [r["load"] for r in results]
        print(
            f"{mode}: video back after {statistics.median(backs):.2f} s median, "
            f"{backs[0]:.2f}-{backs[-1]:.2f} s over {len(backs)} kills "
            f"(load {min(loads):.1f}-{max(loads):.1f})"
        )


if __name__ == "__main__":
    main()
