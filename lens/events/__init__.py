"""Change notifications from the database to every open page."""

from lens.events.bus import EventBus, InProcessBus, RedisBus, make_bus

__all__ = ["EventBus", "InProcessBus", "RedisBus", "make_bus"]
