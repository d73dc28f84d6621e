"""`python -m lens.media`: run the media sidecar."""

from __future__ import annotations

import logging

from aiohttp import web

from lens.media.app import make_app
from lens.media.config import load_config


def main() -> None:
    """Read the environment, build the app, serve until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = load_config()
    web.run_app(make_app(config), host=config.host, port=config.port, print=None)


if __name__ == "__main__":
    main()
