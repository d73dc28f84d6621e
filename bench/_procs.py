"""CPU time of a Chromium's processes and threads, from /proc (Linux), for bench/anchors.py.

A browser is found by a marker switch on its command line (Chromium keeps unknown switches
there); its processes are its descendants. Each thread is named by Chromium
(CrRendererMain, Compositor, DedicatedWorker thread, the WebRTC and encoder threads, ...).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(path: Path) -> tuple[str, list[str]] | None:
    try:
        raw = path.read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    return name, raw[raw.rindex(")") + 2 :].split()


def browser_pid(marker: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in cmdline and not any(a.startswith(b"--type=") for a in cmdline):
            return int(entry.name)
    return None


def descendants(root: int) -> list[int]:
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(entry / "stat")
            if stat:
                parent[int(entry.name)] = int(stat[1][1])
    found, frontier = [root], [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, pp in parent.items() if pp == pid]
        found += children
        frontier += children
    return found


def _kind(pid: int) -> str:
    try:
        args = (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return "?"
    args = args.replace("\0", " ").split()  # (a renderer rewrites its title: one string)
    kind = next((a[7:] for a in args if a.startswith("--type=")), "browser")
    sub = next((a[19:] for a in args if a.startswith("--utility-sub-type=")), "")
    return f"{kind}:{sub.rsplit('.', 2)[-2] if sub else ''}".rstrip(":")


def thread_ticks(root: int) -> dict[tuple[str, str], int]:
    """CPU ticks (user + system) by (process kind, thread name) of a process tree."""
    ticks: dict[tuple[str, str], int] = defaultdict(int)
    for pid in descendants(root):
        kind = _kind(pid)
        tasks = Path("/proc") / str(pid) / "task"
        try:
            tids = list(tasks.iterdir())
        except OSError:
            continue
        for tid in tids:
            stat = _stat(tid / "stat")
            if stat:
                ticks[(kind, stat[0])] += int(stat[1][11]) + int(stat[1][12])
    return ticks


def cpu_share(before: dict, after: dict, seconds: float) -> list[tuple[str, float]]:
    """Per (kind, thread) % of one core between two thread_ticks readings, largest first."""
    rows = []
    for key, value in after.items():
        used = (value - before.get(key, 0)) / TICK / seconds * 100
        if used > 0:
            rows.append((f"{key[0]} / {key[1]}", used))
    return sorted(rows, key=lambda r: -r[1])
