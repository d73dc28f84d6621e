"""The web process as users meet it (gunicorn, gevent worker): tests/webtier's fixtures."""

from tests.webtier.conftest import make_site

__all__ = ["make_site"]
