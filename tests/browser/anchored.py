"""Helpers for anchored drawings in the browser: the board clip as the phone's camera, a probe
that reads each side's pictures and drawings frame by frame, and the checks on what it read.

Shared by tests/browser/test_anchored_drawing.py and bench/anchors.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.conftest import CHROMIUM_ARGS
from tests.browser.scene_clip import HEIGHT, START, TARGET, WIDTH, to_picture
from tests.browser.test_media_flow import FRAMES, PHONE_READY
from tests.browser.test_session_flow import create_pin, customer_joins

ASPECT = HEIGHT / WIDTH
START_TARGET = tuple(v / s for v, s in zip(to_picture(START, TARGET), (WIDTH, HEIGHT), strict=True))
TOLERANCE = 0.05  # of the frame's width
RADIUS = 0.07  # the circle the technician draws around the target

# Installed in a page: per presented frame of the video (requestVideoFrameCallback), where
# the target's magenta mark is in the picture, and where the drawing canvas's circle is
# (a least-squares circle through its painted pixels, so a ring cut by the picture's edge
# still gives its centre), both as fractions of the picture. Times are epoch milliseconds.
PROBE = """([videoSelector, canvasSelector, frozenSelector]) => {
  if (window.lensProbe) return;
  const video = document.querySelector(videoSelector);
  const canvas = document.querySelector(canvasSelector);
  const frozen = document.querySelector(frozenSelector);
  const work = document.createElement('canvas');
  const ctx = work.getContext('2d', { willReadFrequently: true });
  const samples = [];
  let presented = 0, presentedAt = 0;
  function target() {
    const w = 240, h = Math.round(240 * video.videoHeight / video.videoWidth);
    if (work.width !== w || work.height !== h) { work.width = w; work.height = h; }
    ctx.drawImage(frozen && !frozen.hidden ? frozen : video, 0, 0, w, h);
    const d = ctx.getImageData(0, 0, w, h).data;
    let n = 0, sx = 0, sy = 0;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const i = 4 * (y * w + x);
      if (d[i] > 150 && d[i + 2] > 150 && d[i + 1] < 110) { n++; sx += x; sy += y; }
    }
    return n ? { count: n, at: [(sx / n + 0.5) / w, (sy / n + 0.5) / h] } : { count: 0, at: null };
  }
  function ring() {
    const showing = frozen && !frozen.hidden;
    const rect = showing ? LensDraw.elementPicture(frozen, frozen.width, frozen.height)
                         : LensDraw.elementPicture(video, video.videoWidth, video.videoHeight);
    const scale = canvas.width / Math.max(1, canvas.clientWidth);
    if (!canvas.width || !canvas.height) return { ink: 0, at: null };
    const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0, sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0, sxz = 0, syz = 0, sz = 0;
    for (let y = 0; y < canvas.height; y += 2) for (let x = 0; x < canvas.width; x += 2) {
      if (d[4 * (y * canvas.width + x) + 3] === 0) continue;
      const z = x * x + y * y;
      n++; sx += x; sy += y; sxx += x * x; syy += y * y; sxy += x * y;
      sxz += x * z; syz += y * z; sz += z;
    }
    if (n < 12) return { ink: n, at: null };
    // x² + y² + D x + E y + F = 0, least squares (Kasa)
    const m = [[sxx, sxy, sx], [sxy, syy, sy], [sx, sy, n]];
    const b = [-sxz, -syz, -sz];
    const det = (a) => a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
      - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
      + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    const base = det(m);
    if (!base) return { ink: n, at: null };
    const col = (k) => m.map((row, i) => row.map((v, j) => (j === k ? b[i] : v)));
    const D = det(col(0)) / base, E = det(col(1)) / base;
    const cx = -D / 2 / scale, cy = -E / 2 / scale;
    return { ink: n, at: [(cx - rect.x) / rect.width, (cy - rect.y) / rect.height] };
  }
  function tick(now, meta) {
    presented = meta ? meta.presentedFrames : presented + 1;
    presentedAt = now;
    if (window.lensProbe.on) {
      const t = performance.timeOrigin + performance.now();
      const seen = target();
      const frame = presented;
      const rtp = meta && typeof meta.rtpTimestamp === 'number' ? meta.rtpTimestamp >>> 0 : null;
      requestAnimationFrame(() => { // this frame, after the other video callbacks (the tracker)
        const drawn = ring();
        samples.push({ t: t, frame: frame, rtp: rtp, count: seen.count, target: seen.at,
                       ink: drawn.ink, ring: drawn.at });
      });
    }
    video.requestVideoFrameCallback(tick);
  }
  video.requestVideoFrameCallback(tick);
  window.lensProbe = { on: true, samples: samples, presented: () => [presented, presentedAt] };
}"""

TECH_PROBE = [".remote-video", ".draw-canvas", ".freeze-canvas"]
PHONE_PROBE = ["#preview", "#technician-drawing", "#frozen-picture"]

TECH_POINT = """([x, y]) => {
  const video = document.querySelector('.remote-video');
  const box = video.getBoundingClientRect();
  const r = LensDraw.elementPicture(video, video.videoWidth, video.videoHeight);
  return [box.left + r.x + x * r.width, box.top + r.y + y * r.height];
}"""


def chromium_args(clip: Path) -> list[str]:
    """Chromium's arguments with the clip as the fake camera (30 fps, looped)."""
    args = [a for a in CHROMIUM_ARGS if not a.startswith("--use-fake-device-for-media-stream")]
    clip_arg = f"--use-file-for-fake-video-capture={clip}"
    return [*args, "--use-fake-device-for-media-stream", clip_arg]


@dataclass
class Session:
    tech: object
    phone: object
    phone_context: object
    tools: object
    first_scripts: list[str]  # drawing and tracker scripts the phone loaded up to waiting


FIRST_SCRIPTS = """() => performance.getEntriesByType('resource').map((e) => e.name)
  .filter((n) => /jsfeat|anchors\\.js|drawing\\.js/.test(n)).map((n) => n.split('/').pop())"""

# Painted pixels of a page's drawing canvas around a picture point (radius in CSS px), or in
# all of it without a point.
INK = """([canvasSelector, videoSelector, frozenSelector, point, radius]) => {
  const canvas = document.querySelector(canvasSelector);
  const frozen = document.querySelector(frozenSelector);
  const video = document.querySelector(videoSelector);
  const r = frozen.hidden
    ? LensDraw.elementPicture(video, video.videoWidth, video.videoHeight)
    : LensDraw.elementPicture(frozen, frozen.width, frozen.height);
  const scale = canvas.width / canvas.clientWidth;
  let x = 0, y = 0, w = canvas.width, h = canvas.height;
  if (point) {
    x = Math.round((r.x + point[0] * r.width - radius) * scale);
    y = Math.round((r.y + point[1] * r.height - radius) * scale);
    w = h = Math.round(2 * radius * scale);
  }
  if (!w || !h) return 0;
  const data = canvas.getContext('2d').getImageData(x, y, w, h).data;
  let ink = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) ink++;
  return ink;
}"""
PHONE_INK = f"([p, r]) => ({INK})(['#technician-drawing', '#preview', '#frozen-picture', p, r])"
TECH_INK = f"([p, r]) => ({INK})(['.draw-canvas', '.remote-video', '.freeze-canvas', p, r])"


def distance(a, b) -> float:
    """Between two picture points, in fractions of the width."""
    return math.hypot(a[0] - b[0], (a[1] - b[1]) * ASPECT)


def start(browser, base: str, tech, name: str, phone_browser=None) -> Session:
    """A customer joins with the clip as camera (in phone_browser if given), the technician
    starts, both probes run."""
    pin = create_pin(tech, name)
    phone_context, phone = customer_joins(phone_browser or browser, base, pin)
    first_scripts = phone.evaluate(FIRST_SCRIPTS)
    # (generous waits: on a loaded machine the sidecar's connections take a while)
    phone.wait_for_function(PHONE_READY, timeout=45000)
    row = tech.get_by_role("row").filter(has_text=name)
    row.get_by_role("button", name="Start").click()
    expect(row).to_contain_text("Active")
    row.get_by_role("cell", name=name, exact=True).click()
    expect(tech.locator(".media-state")).to_have_text("Connected", timeout=45000)
    tech.wait_for_function(f"({FRAMES})() > 10", timeout=45000)
    tech.evaluate(PROBE, TECH_PROBE)
    phone.evaluate(PROBE, PHONE_PROBE)
    tools = tech.get_by_role("toolbar", name="Video tools")
    return Session(tech, phone, phone_context, tools, first_scripts)


def target_now(page) -> tuple[float, float] | None:
    """Where the page's current picture shows the target (fractions), or None."""
    return page.evaluate(
        """() => { const s = window.lensProbe.samples; window.lensProbe.on = true;
                   return s.length ? s[s.length - 1].target : null; }"""
    )


# The target has just come to rest at its start place: still there for the last 600 ms, and
# elsewhere at most 1.5 s ago. The clip's end and start hold still for 2.7 s from its arrival.
ARRIVED = """([x, y]) => { const s = window.lensProbe.samples;
  if (!s.length) return false;
  const last = s[s.length - 1].t;
  const near = (v) => v.target && Math.hypot(v.target[0] - x, v.target[1] - y) < 0.006;
  const recent = s.filter((v) => v.t >= last - 600);
  let away = s.length - 1;
  while (away >= 0 && near(s[away])) away--;
  return recent.length >= 2 && recent.every(near) && away >= 0 && last - s[away].t <= 1500; }"""


def wait_for_still_target(page, timeout: float = 90.0) -> tuple[float, float]:
    """Wait until the clip comes to rest at its start pose; returns the target's place."""
    page.evaluate("window.lensProbe.on = true")
    page.wait_for_function(ARRIVED, arg=list(START_TARGET), timeout=timeout * 1000, polling=20)
    return tuple(page.evaluate("window.lensProbe.samples.slice(-1)[0].target"))


def drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    x0, y0 = page.evaluate(TECH_POINT, list(start))
    x1, y1 = page.evaluate(TECH_POINT, list(end))
    page.mouse.move(x0, y0)
    page.mouse.down()
    for step in range(1, 5):
        page.mouse.move(x0 + (x1 - x0) * step / 4, y0 + (y1 - y0) * step / 4)
    page.mouse.up()


SHAPES = "window.lensPhoneTools.state.shapes.length"
REST = 0.01  # of the width: the target this close to where the circle was drawn is at rest


def circle_target(session: Session, attempts: int = 4) -> dict:
    """The technician circles the target while the clip holds still; returns the phone's shape.

    A loaded machine may be slow enough that the clip moves on between the target coming to
    rest and the mouse being released: the drawing is then anchored to a picture in which the
    target is no longer inside it. The console's probe tells, by the RTP timestamp of the
    picture the drawing was anchored to (its `anchor.frame`), where the target was in that
    very picture; if it had moved, the circle is erased and drawn again at the next rest.
    """
    tech, phone, tools = session.tech, session.phone, session.tools
    before = phone.evaluate(SHAPES)
    for attempt in range(1, attempts + 1):
        circle = tools.get_by_role("button", name="Circle")
        if circle.get_attribute("aria-pressed") != "true":
            circle.click()  # (the first drawing tool picked loads the tracker)
        tech.wait_for_function("window.LensAnchors !== undefined", timeout=20000)
        at = wait_for_still_target(tech)
        since = now_ms(tech)
        drag(tech, at, (at[0] + RADIUS, at[1]))
        phone.wait_for_function(f"{SHAPES} === {before + 1}", timeout=20000)
        shape = phone.evaluate(f"window.lensPhoneTools.state.shapes[{before}]")
        shown = samples(tech, since - 2000)
        if shape.get("anchor"):  # the picture the drawing was anchored to, by its RTP timestamp
            shown = [v for v in shown if v.get("rtp") == shape["anchor"]["frame"]] or shown
        else:  # pinned: the pictures shown while it was drawn
            shown = [v for v in shown if v["t"] >= since]
        if shown and all(v["target"] and distance(v["target"], at) <= REST for v in shown):
            return shape
        print(f"circle drawn on a moving picture (attempt {attempt}); drawn again at rest")
        assert before == 0, "erasing would take the other drawings too"
        tools.get_by_role("button", name="Erase drawings").click()
        phone.wait_for_function(f"{SHAPES} === 0", timeout=10000)
    raise AssertionError(f"no circle drawn on a still picture in {attempts} attempts")


def samples(page, since: float = 0) -> list[dict]:
    return page.evaluate(f"window.lensProbe.samples.filter((s) => s.t >= {since})")


def now_ms(page) -> float:
    return page.evaluate("performance.timeOrigin + performance.now()")


@dataclass
class Verdict:
    """What one screen showed while the clip ran."""

    judged: int  # frames the probe saw (each a presented frame)
    presented: int  # frames the screen presented meanwhile (its compositor's count)
    visible: int  # frames with the whole target in the picture
    within: int  # of those, frames whose circle was within TOLERANCE of it
    errors: list[float]
    absent: int  # frames without the target
    absent_with_ink: int  # of those (away from a visible frame by > GRACE), frames with a drawing
    returns: list[float]  # seconds from the target's return to the circle's

    @property
    def share(self) -> float:
        return self.within / self.visible if self.visible else 0.0

    def text(self) -> str:
        ordered = sorted(self.errors) or [math.nan]
        p50 = ordered[len(ordered) // 2]
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        return (
            f"{self.judged} of {self.presented} presented frames judged; "
            f"{self.within}/{self.visible} frames within {TOLERANCE:.0%} ({self.share:.1%}); "
            f"error p50 {p50:.3f} p90 {p90:.3f} max {ordered[-1]:.3f} of the width; "
            f"hidden in {self.absent - self.absent_with_ink}/{self.absent} frames without "
            f"the target; back after {', '.join(f'{r:.2f}' for r in self.returns) or '-'} s"
        )


FULL_MARK = 25  # magenta pixels (at 240 px wide) of a target wholly in the picture
GRACE_MS = 250  # frames this close to one with the target are not judged for hiding


def judge(frames: list[dict]) -> Verdict:
    visible = [s for s in frames if s["count"] >= FULL_MARK]
    errors = []
    for s in visible:
        if s["ring"] is None:
            errors.append(math.inf)
            continue
        errors.append(distance(s["ring"], s["target"]))
    seen_at = [s["t"] for s in frames if s["count"] > 0]
    absent = [s for s in frames if s["count"] == 0]
    judged = [s for s in absent if all(abs(s["t"] - t) > GRACE_MS for t in seen_at)]
    returns = []
    gone_since = None
    for s in frames:
        if s["count"] == 0:
            gone_since = gone_since or s["t"]
        elif gone_since is not None and s["count"] >= FULL_MARK:
            if s["t"] - gone_since >= 500:
                back = next((x["t"] for x in frames if x["t"] >= s["t"] and x["ink"] > 0), None)
                returns.append(math.inf if back is None else (back - s["t"]) / 1000)
            gone_since = None
    counted = [s["frame"] for s in frames if s.get("frame") is not None]
    return Verdict(
        judged=len(frames),
        presented=(max(counted) - min(counted) + 1) if counted else len(frames),
        visible=len(visible),
        within=sum(e <= TOLERANCE for e in errors),
        errors=[e for e in errors if math.isfinite(e)],
        absent=len(judged),
        absent_with_ink=sum(s["ink"] > 0 for s in judged),
        returns=returns,
    )


def lag_ms(phone: list[dict], tech: list[dict]) -> float | None:
    """How much later the console shows what the phone showed: the shift that best lines up
    the two screens' target tracks."""
    ph = [(s["t"], s["target"]) for s in phone if s["count"] >= FULL_MARK]
    te = [(s["t"], s["target"]) for s in tech if s["count"] >= FULL_MARK]
    if len(ph) < 30 or len(te) < 30:
        return None

    def at(track, t):
        for (t0, a), (t1, b) in zip(track, track[1:], strict=False):
            if t0 <= t <= t1 and t1 - t0 < 100:
                k = (t - t0) / (t1 - t0)
                return (a[0] + (b[0] - a[0]) * k, a[1] + (b[1] - a[1]) * k)
        return None

    best = None
    for shift in range(0, 1000, 10):
        errors = []
        for t, p in te[::3]:
            q = at(ph, t - shift)
            if q:
                errors.append(math.hypot(p[0] - q[0], p[1] - q[1]))
        if len(errors) > 20:
            score = sum(errors) / len(errors)
            if best is None or score < best[0]:
                best = (score, shift)
    return None if best is None else float(best[1])


def fastest_motion(frames: list[dict]) -> float:
    """The target's fastest speed on a screen, in widths per second (over ~100 ms)."""
    seen = [s for s in frames if s["count"] >= FULL_MARK]
    fastest = 0.0
    for a, b in zip(seen, seen[3:], strict=False):
        if 50 < b["t"] - a["t"] < 200:
            dx = b["target"][0] - a["target"][0]
            dy = (b["target"][1] - a["target"][1]) * ASPECT
            fastest = max(fastest, math.hypot(dx, dy) / ((b["t"] - a["t"]) / 1000))
    return fastest


def report_latency(session: Session, seconds: float, load) -> None:
    since = now_ms(session.tech)
    for page in (session.tech, session.phone):
        page.evaluate("window.lensProbe.on = true")
    session.tech.wait_for_timeout(seconds * 1000)
    phone, tech = samples(session.phone, since), samples(session.tech, since)
    lag = lag_ms(phone, tech)
    speed = fastest_motion(phone)
    print(
        f"phone frames {len(phone)}, console frames {len(tech)}; console shows the phone's "
        f"picture {lag} ms later; fastest target motion {speed:.2f} widths/s -> a drawing "
        f"placed from the other screen's tracking would be off by up to "
        f"{(speed * (lag or 0) / 1000):.3f} widths   load {load()}"
    )


STATS = """async () => {
  const [presented, presentedAt] = window.lensProbe.presented();
  const out = { presented: presented, presentedAt: presentedAt, encoded: 0, sent: 0 };
  (await window.lensCustomer.peer.pc.getStats()).forEach((r) => {
    if (r.type === 'media-source' && r.kind === 'video') out.source = r.frames || 0;
    if (r.type !== 'outbound-rtp' || r.kind !== 'video') return;
    out.encoded += r.framesEncoded || 0;
    out.sent += r.framesSent || 0;
    out.limit = r.qualityLimitationReason;
    out.size = r.frameWidth + 'x' + r.frameHeight;
    out.target = r.targetBitrate || 0;
    out.durations = r.qualityLimitationDurations || {};
  });
  (await window.lensCustomer.peer.pc.getStats()).forEach((r) => {
    if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') {
      out.available = r.availableOutgoingBitrate || 0;
    }
  });
  const a = window.lensPhoneTools && window.lensPhoneTools.state.anchors;
  const s = a ? a.stats() : { frames: 0, msPerFrame: 0 };
  out.tracked = s.frames; out.ms = s.msPerFrame; out.parts = s.parts || {};
  out.t = performance.now();
  return out;
}"""


def rates(phone, seconds: float, watch=None) -> dict[str, float]:
    """The phone's preview, outgoing video and tracker rates over some seconds; `watch`
    (bench/anchors.py) measures something more over the same seconds."""
    first = phone.evaluate(STATS)
    watching = watch.begin() if watch else None
    phone.wait_for_timeout(seconds * 1000)
    last = phone.evaluate(STATS)
    span = (last["t"] - first["t"]) / 1000
    return {
        "watched": watch.end(watching, span) if watch else "",
        "preview": (last["presented"] - first["presented"])
        / ((last["presentedAt"] - first["presentedAt"]) / 1000),
        "source": (last.get("source", 0) - first.get("source", 0)) / span,
        "encoded": (last["encoded"] - first["encoded"]) / span,
        "sent": (last["sent"] - first["sent"]) / span,
        "tracked": (last["tracked"] - first["tracked"]) / span,
        "ms": last["ms"],
        "parts": ", ".join(f"{k} {v:.1f}" for k, v in last.get("parts", {}).items()),
        "limit": f"{last.get('limit')} {last.get('size')}"
        + _limited(first.get("durations", {}), last.get("durations", {})),
        "kbps": f"target {last.get('target', 0) / 1000:.0f}, available "
        f"{last.get('available', 0) / 1000:.0f} kbit/s",
    }


def _limited(before: dict, after: dict) -> str:
    """The shares of a window the encoder spent limited by CPU, bandwidth or else."""
    spent = {k: after[k] - before.get(k, 0) for k in after}
    total = sum(spent.values())
    if total <= 0:
        return ""
    shares = [f"{k} {v / total:.0%}" for k, v in spent.items() if k != "none" and v > 0]
    return f", limited: {', '.join(shares) or 'never'}"


def throttle(phone, rate: float) -> None:
    cdp = phone.context.new_cdp_session(phone)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": rate})


def more_circles(session: Session, count: int) -> None:
    """More circles away from the target (the technician's circle tool is on)."""
    spots = [(0.2, 0.75), (0.75, 0.25), (0.8, 0.75), (0.5, 0.85), (0.15, 0.2), (0.6, 0.6)]
    for x, y in spots[:count]:
        drag(session.tech, (x, y), (x + 0.05, y))


def console_tracking(session: Session, on: bool) -> None:
    """Pause or resume the console's own tracker and probe (to load this machine less)."""
    session.tech.evaluate(
        """(on) => { window.lensProbe.on = on;
          const a = window.lensConsoleTools.current().anchors;
          if (a) a.paused = !on; }""",
        on,
    )


def phone_tracking(session: Session, on: bool) -> None:
    """Pause or resume the phone's tracker (its drawings stay where they are)."""
    session.phone.evaluate("(on) => { window.lensPhoneTools.state.anchors.paused = !on; }", on)


def report_throttled(
    session: Session,
    seconds: float,
    load,
    console: bool = True,
    watch=None,
    rate: float = 4,
    rounds: int = 1,
    slow_worker: bool = True,
    in_worker: bool = False,
) -> None:
    """The phone's rates with no drawing, one and five; with rounds > 1, each drawing count is
    measured that many times with the phone's tracker on and, right after, paused, so that
    the tracker's own cost is told from the machine's load of the moment."""
    session.phone.evaluate("window.lensProbe.on = false")  # the probe's own work off the phone
    throttle(session.phone, rate)
    if in_worker:  # the phone's tracker in a Web Worker, not in the page
        session.phone.evaluate("window.lensTrackInWorker = true")
    none = rates(session.phone, seconds, watch)
    print(f"{rate:g}x throttle, no drawing: {_rates(none)}   load {load()}", flush=True)
    circle_target(session)
    session.phone.evaluate("window.lensProbe.on = false")
    session.phone.wait_for_function("window.lensPhoneTools.state.anchors !== null", timeout=20000)
    worker = session.phone.evaluate(
        """(rate) => { const a = window.lensPhoneTools.state.anchors;
             if (!a.slowDown) return false; a.slowDown(rate); return true; }""",
        rate if slow_worker else 1,
    )
    slowed = f" (answers slowed {rate:g}x to match)" if worker and slow_worker else ""
    print(f"tracker in a worker: {worker}{slowed}")
    for count in (1, 5):
        if count == 5:
            console_tracking(session, True)
            more_circles(session, 4)
            session.phone.wait_for_function("window.lensPhoneTools.state.shapes.length === 5")
        console_tracking(session, console)
        for _ in range(rounds):
            for tracking in (True, False) if rounds > 1 else (True,):
                phone_tracking(session, tracking)
                measured = rates(session.phone, seconds, watch)
                what = "tracked" if tracking else "PAUSED "
                print(
                    f"{rate:g}x throttle, {count} drawing{'s' if count > 1 else ' '} {what}: "
                    f"{_rates(measured)}   load {load()}",
                    flush=True,
                )
        phone_tracking(session, True)


def _rates(r: dict[str, float]) -> str:
    return (
        f"preview {r['preview']:.1f} fps, into the sender {r['source']:.1f}, outgoing "
        f"encoded {r['encoded']:.1f} / sent "
        f"{r['sent']:.1f} fps ({r['limit']}; {r['kbps']}), tracker {r['tracked']:.1f} fps at "
        f"{r['ms']:.1f} ms/frame ({r['parts']}){r['watched']}"
    )


# The moments of docs/tools.md's screenshot sequence, each as a condition on the probe's
# latest frames (`still` is the target's mark size at rest): file name, condition.
MOMENTS = [
    ("anchor-1-drawn", None),  # the clip comes to rest (ARRIVED)
    ("anchor-2-panned", "(s) => s.slice(-2).every((v) => v.target && v.target[1] < 0.3)"),
    ("anchor-3-turned-closer", "(s, still) => s.slice(-2).every((v) => v.count > 1.35 * still)"),
    ("anchor-4-out-of-picture", "(s) => s.length > 8 && s.slice(-8).every((v) => v.count === 0)"),
    ("anchor-5-back", None),
]


def screenshots(session: Session, shots: Path) -> None:
    """Each screen at the same moments of the clip (one loop of it for each screen)."""
    for page, side in ((session.phone, "phone"), (session.tech, "console")):
        for name, condition in MOMENTS:
            if condition is None:
                wait_for_still_target(page)
                still = page.evaluate("window.lensProbe.samples.slice(-1)[0].count")
            else:
                page.wait_for_function(
                    f"(still) => ({condition})(window.lensProbe.samples.slice(-12), still)",
                    arg=still,
                    timeout=30000,
                    polling=20,
                )
            page.screenshot(path=str(shots / f"{name}-{side}.png"))
