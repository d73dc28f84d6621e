"""Small networks on this machine: network namespaces joined by veth pairs, one router.

Every name starts with "nt" and a random tag, every address lies in 10.22.0.0/16 and
exists only inside the namespaces, so parallel runs never meet. The star:

    phone  P 10.22.1.2 ─┐
    server S 10.22.2.2 ─┼─ R (router; 10.22.1.1 / 10.22.2.1 / 10.22.3.1)
    tech   T 10.22.3.2 ─┘
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(__file__).with_name("peer.py")
PHONE_NET, SERVER_NET, TECH_NET = "10.22.1", "10.22.2", "10.22.3"
SERVER = f"{SERVER_NET}.2"
PHONE = f"{PHONE_NET}.2"


def cannot_build_reason() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (bin/setup --test installs it)"
    probe = f"nt{secrets.token_hex(3)}probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def sh(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()} {done.stdout.strip()}")
    return done.stdout


@dataclass
class Process:
    """A process started in a namespace; its stdout read line by line as JSON events."""

    name: str
    popen: subprocess.Popen
    log: Path
    events: queue.Queue = field(default_factory=queue.Queue)

    def start_reading(self) -> None:
        def read() -> None:
            for line in self.popen.stdout:
                with contextlib.suppress(json.JSONDecodeError):
                    self.events.put(json.loads(line))
            self.events.put({"event": "exit", "status": self.popen.wait()})

        threading.Thread(target=read, daemon=True).start()

    def next_event(self, wanted: str, timeout: float = 30.0) -> dict:
        """Wait for the event named `wanted`; fail with the process's log on error/exit."""
        while True:
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                message = f"{self.name}: no {wanted!r} in {timeout} s\n{self.tail()}"
                raise AssertionError(message) from None
            if event["event"] == wanted:
                return event
            if event["event"] in ("error", "exit"):
                raise AssertionError(f"{self.name}: {event}\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""


class Lab:
    """Namespaces, links and processes of one test; close() removes them all."""

    def __init__(self, workdir: Path) -> None:
        self.tag = secrets.token_hex(2)
        self.workdir = workdir
        self.namespaces: list[str] = []
        self.processes: list[Process] = []

    def ns(self, role: str) -> str:
        return f"nt{self.tag}{role}"

    def add_ns(self, role: str) -> str:
        name = self.ns(role)
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.exec(role, "ip", "link", "set", "lo", "up")
        return name

    def exec(self, role: str, *argv: str) -> str:
        return sh("ip", "netns", "exec", self.ns(role), *argv)

    def link(self, a: str, a_addr: str, b: str, b_addr: str) -> None:
        """A veth pair between namespaces a and b, with addresses (CIDR) on both ends."""
        a_if, b_if = f"nt{self.tag}{a}{b}", f"nt{self.tag}{b}{a}"
        sh("ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if)
        for role, ifname, address in ((a, a_if, a_addr), (b, b_if, b_addr)):
            sh("ip", "link", "set", ifname, "netns", self.ns(role))
            self.exec(role, "ip", "addr", "add", address, "dev", ifname)
            self.exec(role, "ip", "link", "set", ifname, "up")

    def ifname(self, role: str, peer: str) -> str:
        return f"nt{self.tag}{role}{peer}"

    def star(self) -> None:
        """P, S and T each linked to the router R, which forwards between them."""
        for role in "rpst":
            self.add_ns(role)
        self.exec("r", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for role, net in (("p", PHONE_NET), ("s", SERVER_NET), ("t", TECH_NET)):
            self.link("r", f"{net}.1/24", role, f"{net}.2/24")
            self.exec(role, "ip", "route", "add", "default", "via", f"{net}.1")

    def iptables(self, role: str, *rule: str) -> None:
        self.exec(role, "iptables", "-w", *rule)

    def start(self, role: str, name: str, argv: list[str], env: dict[str, str]) -> Process:
        """Start `argv` in namespace `role`; stdout parsed as events, stderr to a log."""
        log = self.workdir / f"{name}.log"
        popen = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(role), *argv],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
        )
        process = Process(name, popen, log)
        process.start_reading()
        self.processes.append(process)
        return process

    def peer(self, role: str, kind: str, url: str, secret: str, sid: str, *extra: str) -> Process:
        """tests/net/peer.py as a phone or technician in namespace `role`."""
        argv = [sys.executable, str(PEER), kind, url, sid, f"--secret={secret}", *extra]
        return self.start(role, f"{kind}-{sid}", argv, {})

    def close(self) -> None:
        for process in self.processes:
            if process.popen.poll() is None:
                with contextlib.suppress(OSError):
                    process.popen.stdin.close()
                process.popen.terminate()
        for process in self.processes:
            try:
                process.popen.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], check=False)


@contextlib.contextmanager
def lab(workdir: Path) -> Iterator[Lab]:
    built = Lab(workdir)
    try:
        yield built
    finally:
        built.close()
