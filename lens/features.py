"""Feature-set names shared by the web process and the media sidecar."""

CHAT = "chat"
DISPLAY_SETTINGS = "display_settings"
HOLD = "hold"
SNAPSHOT = "snapshot"
RECORDING = "recording"
TRANSFER = "transfer"
REPORTING = "reporting"

ALL = frozenset({CHAT, DISPLAY_SETTINGS, HOLD, SNAPSHOT, RECORDING, TRANSFER, REPORTING})

TECHNICIAN_CONSOLE = "technician"
WEB_CONSOLE = "web"
CONSOLES = (TECHNICIAN_CONSOLE, WEB_CONSOLE)

# What each console offers before group permissions narrow it (the product manual's
# "Beperkingen voor de Web Console": no chat, display settings, pause, capture,
# transfer or reporting there).
CONSOLE_FEATURES: dict[str, frozenset[str]] = {
    TECHNICIAN_CONSOLE: ALL,
    WEB_CONSOLE: frozenset(),
}


def allowed_features(console: str, group_permissions: frozenset[str] | None) -> frozenset[str]:
    """What a technician may do in a session: the console's features within the group's."""
    offered = CONSOLE_FEATURES.get(console, frozenset())
    if group_permissions is None:
        return offered
    return offered & group_permissions
