"""The whole product on a hostile network: a Chromium phone whose network drops all UDP
joins by PIN, the technician (Chromium, another namespace) clicks Start and sees the live
video, relayed by coturn over TCP, or over TLS, with credentials the page got from Lens.

Server namespace: `lens.run web` (gunicorn), the sidecar, coturn. Pages are plain HTTP on
the lab address, which Chromium is told to treat as secure (the camera needs that).
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from lens.auth.models import Technician
from lens.extensions import db
from lens.factory import create_app

# with the browser tests' own autouse fixtures: predicates polled without eval (the pages'
# CSP has no 'unsafe-eval'), and a CSP or Permissions-Policy message fails the test
from tests.browser.conftest import (  # noqa: F401
    CHROMIUM,
    CHROMIUM_ARGS,
    policy_violations,
    predicates_without_eval,
)
from tests.browser.test_media_flow import FRAMES, PHONE_READY
from tests.browser.test_session_flow import console_of, create_pin, customer_joins
from tests.conftest import PASSWORD
from tests.net import netlab
from tests.net.conftest import wait_for
from tests.net.test_net_deploy import PIN_CLIENT
from tests.net.test_net_paths import coturn_config

pytestmark = [pytest.mark.net, pytest.mark.browser, pytest.mark.media]

SELECTED_PAIR = """async () => {
  const pc = window.lensCustomer.peer.pc;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) {
      pair = stats.get(r.selectedCandidatePairId);
    }
  });
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  return { type: local.candidateType, relayProtocol: local.relayProtocol || null,
           bytesSent: pair.bytesSent };
}"""


def chromium_in(lab: netlab.Lab, role: str) -> Path:
    """A stand-in for /usr/bin/chromium that starts it inside namespace `role`."""
    wrapper = lab.workdir / f"chromium-{role}"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {lab.ns(role)} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def add_technician(database: str) -> None:
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database})
    with app.app_context():
        technician = Technician(name="Tess", email="tess@example.com", role="technician")
        technician.set_password(PASSWORD, "pbkdf2:sha256:1")
        db.session.add(technician)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize(
    ("url", "protocol"),
    [
        (f"turn:{netlab.SERVER}:3478?transport=tcp", "tcp"),
        (f"turns:{netlab.SERVER}:5349?transport=tcp", "tls"),
    ],
)
def test_chromium_phone_without_udp_streams_through_turn(lab, monkeypatch, url, protocol):
    work = lab.workdir
    site = f"http://{netlab.SERVER}:8000"
    turn_secret = secrets.token_hex(16)
    database = f"sqlite:///{work / 'lens.db'}"
    ice = [{"urls": [url]}]
    env = {
        "LENS_INSTANCE_PATH": str(work / "instance"),
        "DATABASE_URL": database,
        "LENS_TLS": "0",
        "LENS_HOST": netlab.SERVER,
        "LENS_PORT": "8000",
        "LENS_MEDIA_SECRET": secrets.token_urlsafe(16),
        "LENS_ICE_SERVERS": json.dumps(ice),
        "LENS_TURN_SECRET": turn_secret,
        "LENS_MEDIA_PORT_RANGE": "40000-40019",
        "LENS_START_SWEEPER": "0",
    }
    monkeypatch.delenv("REDIS_URL", raising=False)
    config = work / "turnserver.conf"
    config.write_text(coturn_config(lab, turn_secret))
    turn = lab.start("s", "coturn", ["turnserver", "-c", str(config), "--no-cli"], {})
    sidecar = lab.start("s", "sidecar", [sys.executable, "-m", "lens.media"], env)
    web = lab.start("s", "web", [sys.executable, "-m", "lens.run", "web"], env)
    lab.exec("t", sys.executable, str(PIN_CLIENT), site)  # waits for the site
    wait_for(
        lambda: re.search(r":5349\b", lab.exec("s", "ss", "-ltn")) is not None,
        10,
        f"coturn to listen\n{turn.tail()}",
    )
    monkeypatch.setenv("LENS_INSTANCE_PATH", str(work / "instance"))
    add_technician(database)
    for chain in ("INPUT", "OUTPUT"):
        lab.iptables("p", "-A", chain, "-p", "udp", "-j", "DROP")
    lab.iptables("p", "-I", "OUTPUT", "-p", "udp", "-m", "comment", "--comment", "udp-out",
                 "-j", "DROP")  # fmt: skip
    args = [*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={site}"]
    if protocol == "tls":  # coturn's certificate is the lab's own, self-signed
        args.append("--ignore-certificate-errors")

    with sync_playwright() as playwright:
        phone_browser = playwright.chromium.launch(
            executable_path=str(chromium_in(lab, "p")), args=args
        )
        tech_browser = playwright.chromium.launch(
            executable_path=str(chromium_in(lab, "t")), args=args
        )
        try:
            _, tech = console_of(tech_browser, site)
            pin = create_pin(tech, "Hotel Guest")
            _, phone = customer_joins(phone_browser, site, pin)
            phone.wait_for_function(PHONE_READY, timeout=30000)
            row = tech.get_by_role("row").filter(has_text="Hotel Guest")
            row.get_by_role("button", name="Start").click()
            expect(tech.locator(".media-state")).to_have_text("Connected", timeout=30000)
            tech.wait_for_function(f"({FRAMES})() > 30", timeout=30000)
            pair = phone.evaluate(SELECTED_PAIR)
            page_ice = json.loads(phone.locator(".customer-session").get_attribute("data-ice"))
        finally:
            phone_browser.close()
            tech_browser.close()

    assert pair is not None and pair["type"] == "relay", (pair, sidecar.tail(), web.tail())
    assert pair["relayProtocol"] == protocol
    # the page got a derived, expiring credential, never the secret
    assert page_ice[0]["username"].split(":")[1].endswith("-phone")
    assert turn_secret not in json.dumps(page_ice)
    # UDP really was dropped on the phone's side (Chromium tried it)
    listing = lab.exec("p", "iptables", "-w", "-L", "OUTPUT", "-v", "-n", "-x")
    dropped = next(int(line.split()[0]) for line in listing.splitlines() if "udp-out" in line)
    assert dropped > 0
