"""Settings across hosts: a multi-host site's process refuses to start without the secrets
every host shares, and with them a log-in on one host holds on another."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from lens.config import SettingsError, load_settings
from lens.media.config import load_config
from tests.conftest import PASSWORD, csrf_from
from tests.scaleout.conftest import dispose, make_app
from tests.scaleout.live import serve

pytestmark = pytest.mark.scaleout

ROOT = Path(__file__).resolve().parents[2]
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/lens"


def test_a_database_server_without_the_shared_secrets_refuses_to_start(tmp_path):
    with pytest.raises(SettingsError) as refused:
        load_settings(str(tmp_path), {"DATABASE_URL": SERVER})
    assert "SECRET_KEY, LENS_MEDIA_SECRET" in str(refused.value)
    assert "same value on every host" in str(refused.value)
    with pytest.raises(SettingsError, match="LENS_MEDIA_SECRET"):
        load_settings(str(tmp_path), {"DATABASE_URL": SERVER, "SECRET_KEY": "k"})
    turn = '[{"urls": "turn:turn.example:3478"}]'
    with pytest.raises(SettingsError, match="LENS_TURN_SECRET"):
        load_settings(
            str(tmp_path),
            {"DATABASE_URL": SERVER, "SECRET_KEY": "k", "LENS_MEDIA_SECRET": "m",
             "LENS_ICE_SERVERS": turn},
        )  # fmt: skip
    shared = {"DATABASE_URL": SERVER, "SECRET_KEY": "k", "LENS_MEDIA_SECRET": "m"}
    assert load_settings(str(tmp_path), shared)["SECRET_KEY"] == "k"
    # one host's SQLite file: the secrets are made in the instance folder as before
    assert load_settings(str(tmp_path), {})["SECRET_KEY"]
    assert (tmp_path / "secret_key").exists()


def test_the_sidecar_of_a_multi_host_site_needs_the_media_secret(tmp_path):
    with pytest.raises(ValueError, match="LENS_MEDIA_SECRET"):
        load_config({"DATABASE_URL": SERVER, "LENS_INSTANCE_PATH": str(tmp_path)})
    assert load_config({"DATABASE_URL": SERVER, "LENS_MEDIA_SECRET": "m"}).secret == "m"


def test_the_run_command_says_what_to_set_and_stops(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "LENS_MEDIA_SECRET")}
    env.update(DATABASE_URL=SERVER, LENS_INSTANCE_PATH=str(tmp_path / "instance"))
    result = subprocess.run(
        [sys.executable, "-m", "lens.run"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "set SECRET_KEY, LENS_MEDIA_SECRET to the same value on every host" in result.stderr
    assert not (tmp_path / "instance" / "secret_key").exists()  # nothing of its own was made


def test_with_the_shared_secret_a_log_in_on_one_host_holds_on_the_other(
    tmp_path, monkeypatch, postgres_url
):
    host_a = make_app(tmp_path / "host-a", monkeypatch, postgres_url)
    host_b = make_app(tmp_path / "host-b", monkeypatch, postgres_url)  # its own instance folder
    assert host_a.test_cli_runner().invoke(args=["lens", "init"]).exit_code == 0
    host_a.test_cli_runner().invoke(
        args=["lens", "create-technician", "--name", "Tess", "--email", "tess@example.com",
              "--password", PASSWORD]
    )  # fmt: skip
    server_a, a = serve(host_a)
    server_b, b = serve(host_b)
    try:
        browser = requests.Session()
        token = csrf_from(browser.get(f"http://{a}/login").text)
        logged_in = browser.post(
            f"http://{a}/login",
            data={"email": "tess@example.com", "password": PASSWORD, "csrf_token": token},
            allow_redirects=False,
        )
        assert logged_in.status_code == 302
        console = browser.get(f"http://{b}/console/", allow_redirects=False)
        assert console.status_code == 200 and "Tess" in console.text
    finally:
        server_a.shutdown()
        server_b.shutdown()
        dispose(host_a)
        dispose(host_b)
