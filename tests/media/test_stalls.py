"""Start-up settles the heap for the collector; the stall recorder names what held the loop."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

import lens.media.__main__ as media_main
from lens.media.config import MediaConfig
from lens.media.stalls import StallRecorder


@pytest.fixture
def collector_restored():
    """Whatever a test does to the collector is undone after it."""
    yield
    gc.unfreeze()


def serve_and_capture(monkeypatch, gc_freeze: bool) -> dict:
    """Run `python -m lens.media`'s main() up to serving; the collector's state then."""
    seen = {}

    def run_app(app, loop, **_):
        seen.update(frozen=gc.get_freeze_count())
        loop.close()

    monkeypatch.setattr(media_main, "configure_logging", lambda name: None)
    config = MediaConfig(secret="s", port=22001, event_loop="asyncio", gc_freeze=gc_freeze)
    monkeypatch.setattr(media_main, "load_config", lambda: config)
    monkeypatch.setattr(media_main.web, "run_app", run_app)
    media_main.main()
    return seen


def test_the_sidecar_freezes_what_start_up_made_before_serving(monkeypatch, collector_restored):
    gc.unfreeze()
    seen = serve_and_capture(monkeypatch, gc_freeze=True)
    assert seen["frozen"] > 10_000  # aiortc, aiohttp, PyAV: out of every collection's way


def test_comparison_runs_freeze_nothing(monkeypatch, collector_restored):
    gc.unfreeze()
    seen = serve_and_capture(monkeypatch, gc_freeze=False)
    assert seen["frozen"] == 0


def spin(seconds: float) -> None:
    """Hold the loop for `seconds` of CPU time (what a slow callback does)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_the_stall_recorder_names_slow_callbacks_and_collections():
    recorder = StallRecorder()
    recorder.install()
    try:
        loop = asyncio.new_event_loop()
        recorder.watch_loop(loop)
        try:
            loop.call_soon(spin, 0.004)
            loop.call_soon(gc.collect, 1)
            loop.call_soon(lambda: None)
            loop.run_until_complete(asyncio.sleep(0.01))
        finally:
            loop.close()
    finally:
        recorder.uninstall()
    report = recorder.report()
    assert report["slow_callbacks"]["spin"]["count"] == 1
    assert report["slow_callbacks"]["spin"]["max_ms"] >= 4
    assert report["collections"]["gen1"]["count"] >= 1
    assert report["iterations_cpu"]["over_2ms"] >= 1
    assert any(name.startswith("spin") for name in report["slow_iterations_by_biggest_part"])
    assert gc.callbacks.count(recorder._on_gc) == 0  # uninstalled
