"""The media sidecar: relays the phone's encoded media to the technician and back."""

from lens.media.app import make_app
from lens.media.config import MediaConfig, load_config

__all__ = ["MediaConfig", "load_config", "make_app"]
