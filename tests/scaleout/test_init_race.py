"""Two hosts running `lens init` at the same moment on one fresh PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text

from lens import ROOT

pytestmark = pytest.mark.scaleout

# imports done first (the slow part), then both start `lens init` at the same instant
HOST = """
import sys, time
from flask.cli import FlaskGroup
from lens.factory import create_app
import flask_migrate, lens.cli
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
FlaskGroup(create_app=create_app).main(["lens", "init"], prog_name="flask")
"""


def test_two_hosts_initialising_one_database_at_once_both_come_up(postgres_url, tmp_path):
    start = time.time() + 6.0
    hosts = []
    for name in ("host-a", "host-b"):
        env = {
            **os.environ,
            "DATABASE_URL": postgres_url,
            "LENS_INSTANCE_PATH": str(tmp_path / name),  # each host its own instance folder
            "PYTHONPATH": str(ROOT),
            # the settings every host of one site shares (docs/scale-out.md)
            "SECRET_KEY": "the-site-secret-key-shared-by-both-hosts",
            "LENS_MEDIA_SECRET": "the-site-media-secret-shared-by-both-hosts",
        }
        env.pop("REDIS_URL", None)
        hosts.append(
            subprocess.Popen(
                [sys.executable, "-c", HOST, str(start)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [host.communicate(timeout=120)[0] for host in hosts]

    assert [host.returncode for host in hosts] == [0, 0], outputs
    assert sum("Created admin" in output for output in outputs) == 1, outputs
    assert sum("an administrator exists" in output for output in outputs) == 1, outputs
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        admins = connection.execute(
            text("SELECT count(*) FROM technician WHERE role = 'admin'")
        ).scalar_one()
    engine.dispose()
    assert admins == 1
