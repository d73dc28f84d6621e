"""Anchored drawings in real browsers: where tracking runs, and what it costs the phone.

    .venv/bin/python bench/anchors.py weight       # bytes of the customer's first pages
    .venv/bin/python bench/anchors.py latency      # phone -> console picture delay, pan speed
    .venv/bin/python bench/anchors.py throttled    # phone at 4x CPU throttle, 1 and 5 drawings
    .venv/bin/python bench/anchors.py throttled --profile   # and where the phone's time goes
    .venv/bin/python bench/anchors.py throttled --rounds 2 [--worker]   # tracker on/paused

The phone and the technician are Chromium contexts; the phone's fake camera plays the
generated board clip of tests/browser/scene_clip.py (textured, panned, turned, zoomed, the
target out of the picture and back). The web app runs in this process, the sidecar in its
own. Every figure is printed with /proc/loadavg next to it.

* weight: every response body from the start page to "Waiting for your technician"
  (start page, PIN, tutorial, permission, EULA, waiting), in bytes, and whether the
  tracker (anchors.js, jsfeat) was fetched.
* latency: the target's place is read from each side's pictures (its magenta mark) with
  the page's clock; the delay is the shift that best lines the console's track up with
  the phone's. With the clip's fastest motion it gives how far a drawing placed by one
  screen's tracker would be off on the other screen.
* throttled: DevTools `Emulation.setCPUThrottlingRate` 4 on the phone; the phone's preview
  frame rate (presented frames), its outgoing video (outbound-rtp framesEncoded/framesSent)
  and the tracker's own rate and cost, with no drawing, one drawing and five. The phone
  runs in its own Chromium, so the CPU of its processes' threads (from /proc: the page's main
  thread, a tracking worker, the encoder's and WebRTC's threads, the camera's capture) is
  printed for each window; --profile adds the main thread's JavaScript profile (DevTools
  Profiler, self time by function) for the window with one drawing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from bench import _procs  # noqa: E402
from lens.events.bus import InProcessBus  # noqa: E402
from lens.extensions import db  # noqa: E402
from lens.factory import create_app  # noqa: E402
from lens.signaling.control import MediaControl  # noqa: E402
from tests.browser import anchored  # noqa: E402
from tests.browser.conftest import CHROMIUM, Sidecar, poll_without_eval  # noqa: E402
from tests.browser.scene_clip import write_clip  # noqa: E402
from tests.browser.test_session_flow import console_of, create_pin, customer_joins  # noqa: E402
from tests.conftest import add_technician  # noqa: E402

PHONE_MARKER = "--lens-bench-phone"


class Watch:
    """Over each measuring window: CPU by thread of the phone's Chromium, and (once) the phone
    page's main-thread JavaScript profile."""

    def __init__(self, phone, profile: bool) -> None:
        self.phone = phone
        self.profile = profile
        self.root = _procs.browser_pid(PHONE_MARKER)
        self.windows = 0
        self.cdp = None

    def begin(self):
        self.windows += 1
        if self.profile and self.windows == 2:  # the (first) window with one drawing
            self.cdp = self.phone.context.new_cdp_session(self.phone)
            self.cdp.send("Profiler.enable")
            self.cdp.send("Profiler.setSamplingInterval", {"interval": 500})
            self.cdp.send("Profiler.start")
        return _procs.thread_ticks(self.root) if self.root else None

    def end(self, before, seconds: float) -> str:
        lines = []
        if before is not None:
            rows = _procs.cpu_share(before, _procs.thread_ticks(self.root), seconds)
            total = sum(r[1] for r in rows)
            lines.append(
                f"phone Chromium CPU {total:.0f} % of a core; threads: "
                + ", ".join(f"{name} {share:.0f} %" for name, share in rows[:9])
            )
        if self.cdp is not None:
            profile = self.cdp.send("Profiler.stop")["profile"]
            self.cdp.detach()
            self.cdp = None
            lines.append(profile_text(profile))
        return "".join(f"\n    {line}" for line in lines)


def profile_text(profile: dict) -> str:
    """Self time by function (name and file) of a DevTools CPU profile, largest first."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    spent: dict[str, float] = {}
    for node_id, delta in zip(profile["samples"], profile["timeDeltas"], strict=False):
        frame = nodes[node_id]["callFrame"]
        name = frame["functionName"] or "(anonymous)"
        where = frame["url"].rsplit("/", 1)[-1]
        key = f"{name} {where}:{frame['lineNumber'] + 1}" if where else name
        spent[key] = spent.get(key, 0) + delta / 1000
    total = sum(spent.values()) or 1
    busy = total - spent.get("(idle)", 0)
    top = sorted(spent.items(), key=lambda kv: -kv[1])[:14]
    head = f"main thread {busy / total:.0%} busy over {total / 1000:.1f} s; self time: "
    return head + "; ".join(f"{k} {v / total:.1%}" for k, v in top)


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def weight(browser, base: str, tech) -> None:
    """Each URL's body counted once (a page that loads a cached script again costs no
    bytes), and the bytes that crossed the network (encoded bodies and headers; 0 for a
    response from the browser's cache)."""
    pin = create_pin(tech, "Weight Customer")
    sizes: dict[str, int] = {}
    wire = [0, 0]  # bodies, headers

    def count(response) -> None:
        try:
            sizes.setdefault(response.url, len(response.body()))
        except Exception:  # a redirect or an aborted request has no body
            sizes.setdefault(response.url, 0)
        measured = response.request.sizes()
        wire[0] += max(0, measured["responseBodySize"])
        wire[1] += max(0, measured["responseHeadersSize"])

    phone_context, phone = customer_joins(_Listening(browser, count), base, pin)
    total = sum(sizes.values())
    scripts = {u.rsplit("/", 1)[-1]: n for u, n in sizes.items() if u.endswith(".js")}
    tracker = [name for name in scripts if "jsfeat" in name or "anchors" in name]
    print(
        f"first pages: {total} bytes in {len(sizes)} URLs; scripts {sum(scripts.values())} "
        f"bytes; over the network {wire[0]} bytes of bodies + {wire[1]} of headers; "
        f"tracker fetched: {tracker or 'no'}   load {load()}"
    )
    for name, size in sorted(scripts.items()):
        print(f"  {name:28s} {size:7d}")
    phone_context.close()


class _Listening:
    """A browser whose new contexts report every response to a function."""

    def __init__(self, browser, on_response) -> None:
        self.browser = browser
        self.on_response = on_response

    def new_context(self, **options):
        context = self.browser.new_context(**options)
        context.on("response", self.on_response)
        return context


def main() -> None:
    poll_without_eval()  # the pages' CSP refuses eval
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["weight", "latency", "throttled"])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--profile", action="store_true", help="throttled: JS profile too")
    parser.add_argument("--rate", type=float, default=4.0, help="throttled: CPU slow-down")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="throttled: measure 1 and 5 drawings this many times, tracker on then paused",
    )
    parser.add_argument(
        "--no-console-tracking",
        action="store_true",
        help="throttled: pause the console's tracker while measuring (it shares this machine)",
    )
    parser.add_argument(
        "--no-worker-slowdown",
        action="store_true",
        help="throttled: let the phone's tracking worker run at this machine's speed",
    )
    parser.add_argument(
        "--worker", action="store_true", help="throttled: the phone tracks in a Web Worker"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="lens-anchors-"))
    os.environ["LENS_INSTANCE_PATH"] = str(workdir / "instance")
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'lens.db'}",
            "LENS_PASSWORD_METHOD": "pbkdf2:sha256:1",
            "LENS_EVENT_BUS": InProcessBus(),
            "RATELIMIT_STORAGE_URI": "memory://",  # limits on, counted in this process
        }
    )
    with app.app_context():
        db.create_all()
    add_technician(app, "Tess Technician", "tess@example.com")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    sidecar = Sidecar()
    sidecar_log = open(workdir / "sidecar.log", "wb")  # noqa: SIM115 (open while it runs)
    sidecar.start(log=sidecar_log)
    app.extensions["lens.media"] = MediaControl(sidecar.url, sidecar.secret, timeout=10)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    expect.set_options(timeout=20_000)
    clip = write_clip(workdir / "board.y4m")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=anchored.chromium_args(clip)
            )
            _, tech = console_of(browser, base)
            if args.what == "weight":
                weight(browser, base, tech)
            else:
                # the phone in its own Chromium: its processes' CPU is its own
                phone_browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=[*anchored.chromium_args(clip), PHONE_MARKER]
                )
                session = anchored.start(browser, base, tech, "Bench Customer", phone_browser)
                if args.what == "latency":
                    anchored.report_latency(session, args.seconds, load)
                else:
                    console = not args.no_console_tracking
                    watch = Watch(session.phone, args.profile)
                    anchored.report_throttled(
                        session,
                        args.seconds,
                        load,
                        console,
                        watch,
                        args.rate,
                        args.rounds,
                        not args.no_worker_slowdown,
                        args.worker,
                    )
                phone_browser.close()
            browser.close()
    finally:
        server.shutdown()
        sidecar.stop()
        sidecar_log.close()
        time.sleep(0)


if __name__ == "__main__":
    main()
