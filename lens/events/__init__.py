"""Change notifications from the database to every open page."""

from lens.events.bus import BusUnavailable, EventBus, InProcessBus, RedisBus, make_bus

__all__ = ["BusUnavailable", "EventBus", "InProcessBus", "RedisBus", "make_bus"]
