"""docs/deploy.md's files, checked by their own tools, and the proxy set-up run for real:
nginx (the guide's site config) in front of `python -m lens.run web`, customers in two
namespaces typing PINs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from lens.auth.models import Technician
from lens.extensions import db
from lens.factory import create_app
from lens.features import TECHNICIAN_CONSOLE
from lens.sessions import lifecycle
from lens.timeutil import now_utc
from tests.net import netlab
from tests.net.test_net_paths import make_certificate

pytestmark = pytest.mark.net

DEPLOY = netlab.ROOT / "docs" / "deploy"
PIN_CLIENT = Path(__file__).with_name("pin_client.py")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def nginx_config(workdir: Path, cert: Path, key: Path) -> Path:
    """The guide's nginx site inside a minimal nginx.conf, certificate paths replaced."""
    site = (DEPLOY / "nginx-lens.conf").read_text()
    site = site.replace("/etc/letsencrypt/live/lens.example.com/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/lens.example.com/privkey.pem", str(key))
    (workdir / "site.conf").write_text(site)
    config = workdir / "nginx.conf"
    config.write_text(
        f"user root;\npid {workdir}/nginx.pid;\nerror_log {workdir}/nginx-error.log;\n"
        f"events {{}}\nhttp {{\n  access_log {workdir}/nginx-access.log;\n"
        f"  include {workdir}/site.conf;\n}}\n"
    )
    return config


def test_systemd_units_verify(tmp_path):
    need("systemd-analyze")
    units = []
    for unit in sorted(DEPLOY.glob("lens-*.*")):
        text = unit.read_text().replace("/opt/lens", str(netlab.ROOT))
        text = text.replace("/etc/lens/lens.env", str(DEPLOY / "lens.env"))
        (tmp_path / unit.name).write_text(text)
        units.append(str(tmp_path / unit.name))
    assert len(units) == 4  # web, media, sweep service and timer
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_nginx_site_config_is_valid(tmp_path):
    need("nginx")
    cert, key = make_certificate(tmp_path, "127.0.0.1")
    config = nginx_config(tmp_path, cert, key)
    done = subprocess.run(
        ["nginx", "-t", "-c", str(config), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_caddyfile_is_valid():
    need("caddy")
    done = subprocess.run(
        ["caddy", "validate", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_firewall_rules_load(lab):
    need("nft")
    lab.exec("s", "nft", "-c", "-f", str(DEPLOY / "nftables-lens.conf"))


def test_the_environment_file_holds_valid_settings(tmp_path):
    """lens.env's ICE servers and media settings pass the sidecar's checks."""
    from lens.media.ice import load_network_settings

    env = {}
    for line in (DEPLOY / "lens.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            env[name] = value.strip("'")
    servers = json.loads(env["LENS_ICE_SERVERS"])
    network = load_network_settings({**env, "LENS_MEDIA_INTERFACES": ""}, servers)
    assert network.port_range == (40000, 40199)
    assert [u.scheme for u in network.ice_servers] == ["stun", "turn", "turn", "turns"]


def make_pin_session(database: str, instance: Path) -> str:
    """A technician and a PIN session, written straight into the site's database."""
    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": database, "LENS_PASSWORD_METHOD": "pbkdf2"}
    )
    with app.app_context():
        technician = Technician(name="Tess", email="tess@example.com", role="technician")
        technician.set_password("correct horse battery", "pbkdf2:sha256:1")
        db.session.add(technician)
        lens_session = lifecycle.create_session(
            db.session,
            technician=technician,
            console=TECHNICIAN_CONSOLE,
            customer_name="Jane",
            pin_validity=timedelta(minutes=20),
            now=now_utc(),
        )
        db.session.commit()
        pin = lens_session.pin
        db.session.remove()
        db.engine.dispose()
    return pin


def test_wrong_pins_behind_nginx_do_not_lock_out_another_customer(lab, monkeypatch):
    need("nginx")
    work = lab.workdir
    database = f"sqlite:///{work / 'lens.db'}"
    env = {
        "LENS_INSTANCE_PATH": str(work / "instance"),
        "DATABASE_URL": database,
        "LENS_TLS": "0",
        "LENS_HOST": "127.0.0.1",
        "LENS_PORT": "8000",
        "LENS_TRUSTED_PROXIES": "1",
        "LENS_SECURE_COOKIES": "1",
    }
    for name in ("REDIS_URL", "LENS_ICE_SERVERS", "LENS_TURN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    web = lab.start("s", "web", [sys.executable, "-m", "lens.run", "web"], env)
    cert, key = make_certificate(work, netlab.SERVER)
    nginx = lab.start(
        "s", "nginx", ["nginx", "-c", str(nginx_config(work, cert, key)), "-p", str(work),
                       "-g", "daemon off;"], {}
    )  # fmt: skip
    site = f"https://{netlab.SERVER}"
    # the web's first start made the schema; the session goes straight into its database
    first = json.loads(lab.exec("t", sys.executable, str(PIN_CLIENT), site))
    assert first["statuses"] == [], (first, web.tail(), nginx.tail())
    monkeypatch.setenv("LENS_INSTANCE_PATH", str(work / "instance"))
    pin = make_pin_session(database, work / "instance")
    wrong = [f"{n:06d}" for n in range(1, 13) if f"{n:06d}" != pin][:11]

    guesser = json.loads(lab.exec("p", sys.executable, str(PIN_CLIENT), site, *wrong))
    customer = json.loads(lab.exec("t", sys.executable, str(PIN_CLIENT), site, pin))

    assert guesser["statuses"] == [422] * 10 + [429], web.tail()
    assert customer["statuses"] == [303], web.tail()
    # nginx's request id reached Lens and came back
    assert len(customer["request_id"] or "") == 32
    # gunicorn's access lines in the one Lens format, naming the real client
    web_log = web.log.read_text().splitlines()
    access_lines = [line for line in web_log if " gunicorn.access " in line]
    assert access_lines and all(" INFO web gunicorn.access [req=" in x for x in access_lines)
    assert any(line.split("] ", 1)[1].startswith(netlab.PHONE) for line in access_lines)
    access = (work / "nginx-access.log").read_text()
    assert netlab.PHONE in access and f"{netlab.TECH_NET}.2" in access
