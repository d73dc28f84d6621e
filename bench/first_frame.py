"""Start to first frame in real browsers: Debian Chromium phone -> Lens sidecar -> console.

    .venv/bin/python bench/first_frame.py            # 10 sessions, about a minute
    .venv/bin/python bench/first_frame.py --runs 20

The phone and the technician are Chromium contexts with the fake camera (as in the browser
tests), the sidecar its own process, the web app in this process. For each session: the
phone joins and accepts, its connection is prepared, then the technician clicks Start in
the panel. Both pages are polled every ~10 ms from then on:

* phone sends: the phone's first encoded video frame (outbound-rtp framesEncoded > 0);
  the phone sends nothing before Start, so this is the floor no relay can beat;
* first frame: the technician's video element has rendered a frame.

Printed: each session, then p50 / p90 / max of both and of their difference, the time
the relay path (technician's leg, keyframe) adds to the phone's own start.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from lens.events.bus import InProcessBus  # noqa: E402
from lens.extensions import db  # noqa: E402
from lens.factory import create_app  # noqa: E402
from lens.signaling.control import MediaControl  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, Sidecar  # noqa: E402
from tests.browser.test_media_flow import PHONE_READY  # noqa: E402
from tests.browser.test_session_flow import console_of, create_pin, customer_joins  # noqa: E402
from tests.conftest import add_technician  # noqa: E402

PHONE_ENCODED = """async () => {
  let n = 0;
  (await window.lensCustomer.peer.pc.getStats()).forEach((r) => {
    if (r.type === "outbound-rtp" && r.kind === "video") n += r.framesEncoded || 0;
  });
  return n;
}"""
TECH_FRAMES = """() => {
  const v = document.querySelector('.remote-video');
  return v ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
}"""


def one_session(browser, base: str, tech, index: int) -> tuple[float, float]:
    """Seconds from the Start click to the phone's first encoded frame and to the console's."""
    name = f"Bench {index}"
    pin = create_pin(tech, name)
    phone_context, phone = customer_joins(browser, base, pin)
    phone.wait_for_function(PHONE_READY, timeout=15000)
    row = tech.get_by_role("row").filter(has_text=name)
    row.click()
    panel = tech.locator("#session-panel")
    expect(panel.get_by_role("heading", name=name)).to_be_visible()
    start = panel.get_by_role("button", name="Start", exact=True)
    began = time.monotonic()
    start.click()
    phone_sent = shown = None
    while shown is None or phone_sent is None:
        now = time.monotonic() - began
        if now > 15:
            raise RuntimeError(f"session {index}: no frame within 15 s")
        if phone_sent is None and phone.evaluate(PHONE_ENCODED) > 0:
            phone_sent = now
        if shown is None and tech.evaluate(TECH_FRAMES) > 0:
            shown = now
        time.sleep(0.01)
    tech.once("dialog", lambda dialog: dialog.accept())
    panel.get_by_role("button", name="End session").click()
    expect(row).to_contain_text("Closed")
    phone_context.close()
    return phone_sent, shown


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    p50 = statistics.median(ordered)
    return f"p50 {p50 * 1000:4.0f}  p90 {p90 * 1000:4.0f}  max {ordered[-1] * 1000:4.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="lens-first-frame-"))
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
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log between the lines
    sidecar = Sidecar()
    sidecar_log = open(workdir / "sidecar.log", "wb")  # noqa: SIM115 (open while it runs)
    sidecar.start(log=sidecar_log)
    app.extensions["lens.media"] = MediaControl(sidecar.url, sidecar.secret, timeout=10)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    expect.set_options(timeout=15_000)
    sent, shown = [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            _, tech = console_of(browser, base)
            for index in range(1, args.runs + 1):
                phone_sent, first = one_session(browser, base, tech, index)
                sent.append(phone_sent)
                shown.append(first)
                print(
                    f"session {index:2d}: phone sends {phone_sent * 1000:5.0f} ms, "
                    f"first frame {first * 1000:5.0f} ms",
                    flush=True,
                )
            browser.close()
    finally:
        server.shutdown()
        sidecar.stop()
        sidecar_log.close()
        print(f"(the sidecar's log: {workdir / 'sidecar.log'})")
    added = [b - a for a, b in zip(sent, shown, strict=True)]
    print(f"\nStart -> phone sends:  {quantiles(sent)}")
    print(f"Start -> first frame:  {quantiles(shown)}")
    print(f"relay path adds:       {quantiles(added)}")
    ratio = statistics.median(shown) / statistics.median(sent)
    print(f"first frame / phone sends (p50): {ratio:.2f}x")


if __name__ == "__main__":
    main()
