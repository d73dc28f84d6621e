"""The sidecar's settings: env first, else a secret file made once with mode 0600."""

from __future__ import annotations

import stat

import pytest

from lens.media.config import load_config

pytestmark = pytest.mark.media


def test_secret_file_is_made_once_private_and_reused(tmp_path):
    env = {"LENS_INSTANCE_PATH": str(tmp_path)}
    first = load_config(env)
    path = tmp_path / "media-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.secret) >= 40
    assert load_config(env).secret == first.secret
    assert (first.host, first.port, first.ice_servers) == ("127.0.0.1", 8765, [])


def test_environment_overrides(tmp_path):
    config = load_config(
        {
            "LENS_INSTANCE_PATH": str(tmp_path),
            "LENS_MEDIA_SECRET": "s3cret",
            "LENS_MEDIA_HOST": "0.0.0.0",
            "LENS_MEDIA_PORT": "9000",
            "LENS_ICE_SERVERS": '[{"urls": "stun:stun.example.org:3478"}]',
        }
    )
    assert (config.secret, config.host, config.port) == ("s3cret", "0.0.0.0", 9000)
    assert config.ice_servers == [{"urls": "stun:stun.example.org:3478"}]
    assert not (tmp_path / "media-secret").exists()


def test_ice_servers_must_be_a_list_of_objects(tmp_path):
    with pytest.raises(ValueError):
        load_config({"LENS_MEDIA_SECRET": "x", "LENS_ICE_SERVERS": '"stun:x"'})


def test_the_event_loop_is_uvloop_unless_asyncio_is_asked_for(tmp_path):
    env = {"LENS_INSTANCE_PATH": str(tmp_path)}
    assert load_config(env).event_loop == "uvloop"
    assert load_config(env | {"LENS_MEDIA_LOOP": "asyncio"}).event_loop == "asyncio"
    with pytest.raises(ValueError, match="LENS_MEDIA_LOOP"):
        load_config(env | {"LENS_MEDIA_LOOP": "trio"})


def test_gc_freeze_is_on_unless_turned_off():
    assert load_config({"LENS_MEDIA_SECRET": "s"}).gc_freeze is True
    assert load_config({"LENS_MEDIA_SECRET": "s", "LENS_MEDIA_GC_FREEZE": "0"}).gc_freeze is False
