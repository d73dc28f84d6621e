"""The entry point for `flask` and gunicorn: `gunicorn 'app:create_app()'`."""

from lens.factory import create_app

__all__ = ["create_app"]
