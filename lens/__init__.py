"""Lens: self-hosted live video support.

The web process is built by lens.factory.create_app; the media sidecar is lens.media.
Nothing here imports Flask, so the sidecar (which shares lens.features) never loads it.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
