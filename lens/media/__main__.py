"""`python -m lens.media`: run the media sidecar."""

from __future__ import annotations

import logging

from aiohttp import web

from lens.logs import configure_logging
from lens.media.app import make_app
from lens.media.config import load_config


def main() -> None:
    """Read the environment, build the app, serve until SIGINT/SIGTERM."""
    configure_logging("media")
    try:
        config = load_config()
    except ValueError as exc:  # a bad setting: say which, and stop
        logging.getLogger("lens.media").error("%s", exc)
        raise SystemExit(2) from exc
    web.run_app(make_app(config), host=config.host, port=config.port, print=None)


if __name__ == "__main__":
    main()
