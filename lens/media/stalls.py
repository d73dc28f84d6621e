"""Where the event loop stalls: GC collections and slow loop iterations (diagnostics only).

`LENS_MEDIA_STALLS=/path/prefix` makes `python -m lens.media` time, until it exits:

- every garbage collection, per generation (`gc.callbacks`);
- every loop iteration's busy time (`_run_once` minus its wait in `select`) and, inside
  it, every callback (`Handle._run`) and every collection;

and write `<prefix>-<pid>.json` on SIGUSR2 or at exit (SIGUSR1 starts the counts again;
`bench/relay.py` sends one when its window begins, the other when it ends): collections
per generation (count, total, max, how many took over 1 ms), callbacks that took over 1 ms
by name (count, total, max), the iterations' busy time by their length, and the iterations
busy over 2 ms by what took most of them. A packet that arrives while an iteration runs
waits for it: long ones are the relay-added latency's tail.
`LENS_MEDIA_STALLS_GARBAGE=1` also adds up the CPU time of every callback by name, counts
by type the objects each young collection walks, and what the collections found
unreachable from SIGUSR1 on (kept in `gc.garbage`, never freed: a diagnostic run only).

Off by default: wrapping every callback costs about a microsecond each. Only for the
default asyncio loop (a uvloop has no Python `Handle._run` to wrap).
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import os
import signal
import time
from collections import Counter, defaultdict
from typing import Any

SLOW_CALLBACK = 0.001  # seconds: a callback counted by name
SLOW_ITERATION = 0.002  # seconds: an iteration broken down by what it ran


BUCKETS = ("<0.5ms", "0.5-1ms", "1-2ms", "2-5ms", "5-10ms", "10-20ms", ">20ms")


def _bucket(seconds: float) -> str:
    for limit, bucket in zip((0.0005, 0.001, 0.002, 0.005, 0.01, 0.02), BUCKETS, strict=False):
        if seconds < limit:
            return bucket
    return BUCKETS[-1]


class _Tally:
    """Count, total and max of some durations (seconds), and how many passed a limit."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.over = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        self.over += seconds > self.limit

    def as_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "total_ms": round(1000 * self.total, 1),
            "max_ms": round(1000 * self.max, 2),
            f"over_{1000 * self.limit:g}ms": self.over,
        }


def callback_name(handle: asyncio.Handle) -> str:
    """What a handle runs, short: a task's coroutine, a transport's protocol, a function."""
    callback = handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"task {getattr(coro, '__qualname__', type(coro).__name__)}"
    protocol = getattr(owner, "_protocol", None)
    if protocol is not None:  # a transport reading: the protocol does the work
        return f"{type(owner).__name__}.{callback.__name__} -> {type(protocol).__qualname__}"
    return getattr(callback, "__qualname__", None) or repr(callback)


class StallRecorder:
    """Times collections, callbacks and loop iterations in this process (see the module)."""

    def __init__(self, census: bool = False) -> None:
        self.census = census
        self.reset()
        self._gc_started = 0.0
        self._in_iteration: list[tuple[str, float]] | None = None
        self._handles = 0  # callbacks run in the current iteration

    def reset(self, *_: Any) -> None:
        """Start counting again (SIGUSR1: the benchmark's window begins)."""
        self.collections = {generation: _Tally(SLOW_CALLBACK) for generation in range(3)}
        self.collected = [0, 0, 0]  # objects each generation's collections freed
        self.callbacks: dict[str, _Tally] = defaultdict(lambda: _Tally(SLOW_CALLBACK))
        self.iterations = _Tally(SLOW_ITERATION)  # CPU time
        self.iterations_wall = _Tally(SLOW_ITERATION)  # and wall time (the process may wait)
        self.slow_iterations: Counter[str] = Counter()
        # CPU busy time of the iterations, by how long each took (ms): where the loop's
        # time goes (a packet arriving while an iteration runs waits for it)
        self.busy_by_length: Counter[str] = Counter()
        self.started = time.monotonic()
        self.slow_iteration_handles = 0  # callbacks run in all iterations over 2 ms
        self.young: Counter[str] = Counter()  # census: objects in gen0 when it is collected
        self.busy_by_callback: Counter[str] = Counter()  # census: CPU seconds by callback

    def install(self) -> None:
        """Wrap `Handle._run` and watch the collector (loop iterations: `watch_loop`)."""
        gc.callbacks.append(self._on_gc)
        run = asyncio.Handle._run
        recorder = self

        def timed_run(handle: asyncio.Handle) -> None:
            recorder._handles += 1
            started = time.thread_time()
            try:
                run(handle)
            finally:
                elapsed = time.thread_time() - started
                if recorder.census:
                    recorder.busy_by_callback[callback_name(handle)] += elapsed
                if elapsed > SLOW_CALLBACK / 5:
                    name = callback_name(handle)
                    if elapsed > SLOW_CALLBACK:
                        recorder.callbacks[name].add(elapsed)
                    if recorder._in_iteration is not None:
                        recorder._in_iteration.append((name, elapsed))

        asyncio.Handle._run = timed_run  # type: ignore[method-assign]
        self._unwrap = run

    def uninstall(self) -> None:
        """Stop timing callbacks and collections (tests)."""
        gc.callbacks.remove(self._on_gc)
        asyncio.Handle._run = self._unwrap  # type: ignore[method-assign]

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time each iteration of `loop` without its wait for I/O."""
        selector = loop._selector  # type: ignore[attr-defined]
        select = selector.select
        run_once = loop._run_once  # type: ignore[attr-defined]
        waited = [0.0]

        def timed_select(timeout: float | None = None) -> Any:
            started = time.perf_counter()
            try:
                return select(timeout)
            finally:
                waited[0] += time.perf_counter() - started

        def timed_run_once() -> None:
            waited[0] = 0.0
            self._handles = 0
            self._in_iteration = []
            started = time.perf_counter()
            cpu = time.thread_time()
            try:
                run_once()
            finally:
                self.iterations_wall.add(time.perf_counter() - started - waited[0])
                busy = time.thread_time() - cpu
                self.iterations.add(busy)
                self.busy_by_length[_bucket(busy)] += busy
                if busy > SLOW_ITERATION:
                    self.slow_iteration_handles += self._handles
                    self.slow_iterations[self._biggest(self._in_iteration)] += 1
                self._in_iteration = None

        selector.select = timed_select
        loop._run_once = timed_run_once  # type: ignore[attr-defined]

    @staticmethod
    def _biggest(parts: list[tuple[str, float]]) -> str:
        """The callback that took longest (and any collection over 1 ms inside it)."""
        callbacks = [part for part in parts if not part[0].startswith("gc ")]
        if not callbacks:
            return "(many small callbacks)"
        name, _ = max(callbacks, key=lambda part: part[1])
        collections = sorted(
            {gen for gen, took in parts if gen.startswith("gc ") and took > SLOW_CALLBACK}
        )
        return " + ".join([name, *collections])

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            if self.census and info["generation"] == 0:
                for thing in gc.get_objects(0):  # what a young collection walks
                    self.young[type(thing).__qualname__] += 1
            self._gc_started = time.thread_time()
            return
        elapsed = time.thread_time() - self._gc_started
        generation = info["generation"]
        self.collections[generation].add(elapsed)
        self.collected[generation] += info["collected"]
        if self._in_iteration is not None:
            self._in_iteration.append((f"gc gen{generation}", elapsed))

    def report(self) -> dict[str, Any]:
        """Everything measured so far, in ms."""
        slow = sorted(self.callbacks.items(), key=lambda item: -item[1].total)
        garbage = Counter(type(thing).__qualname__ for thing in gc.garbage)
        return {
            "garbage_by_type": dict(garbage.most_common(25)),
            "young_by_type": dict(self.young.most_common(25)),
            "busy_ms_by_callback": {
                name: round(1000 * seconds, 1)
                for name, seconds in self.busy_by_callback.most_common(30)
            },
            "seconds": round(time.monotonic() - self.started, 1),
            "gc_threshold": gc.get_threshold(),
            "gc_frozen": gc.get_freeze_count(),
            "gc_tracked": len(gc.get_objects()),
            "collections": {
                f"gen{g}": {**t.as_json(), "collected": self.collected[g]}
                for g, t in self.collections.items()
            },
            "iterations_cpu": self.iterations.as_json(),
            "iterations_wall": self.iterations_wall.as_json(),
            "busy_ms_by_iteration_length": {
                bucket: round(1000 * self.busy_by_length[bucket], 1)
                for bucket in BUCKETS
                if bucket in self.busy_by_length
            },
            "callbacks_per_slow_iteration": round(
                self.slow_iteration_handles / max(1, self.iterations.over), 1
            ),
            "slow_iterations_by_biggest_part": dict(self.slow_iterations.most_common(30)),
            "slow_callbacks": {name: tally.as_json() for name, tally in slow[:40]},
        }


def install_from_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """With LENS_MEDIA_STALLS set: record stalls in this process, written at exit."""
    prefix = environ.get("LENS_MEDIA_STALLS")
    if not prefix:
        return
    census = environ.get("LENS_MEDIA_STALLS_GARBAGE") == "1"
    recorder = StallRecorder(census)
    recorder.install()

    def reset(*_: Any) -> None:
        recorder.reset()
        if census:  # what the collections free, kept in gc.garbage to count (a leak!)
            gc.garbage.clear()
            gc.set_debug(gc.DEBUG_SAVEALL)

    signal.signal(signal.SIGUSR1, reset)
    policy = asyncio.get_event_loop_policy()
    new_event_loop = policy.new_event_loop

    def watched_loop() -> asyncio.AbstractEventLoop:
        loop = new_event_loop()
        recorder.watch_loop(loop)
        return loop

    policy.new_event_loop = watched_loop  # type: ignore[method-assign]
    path = f"{prefix}-{os.getpid()}.json"
    written = []

    def write(*_: Any) -> None:
        with open(path, "w") as file:
            json.dump(recorder.report(), file, indent=1)
        written.append(path)

    signal.signal(signal.SIGUSR2, write)
    atexit.register(lambda: written or write())
