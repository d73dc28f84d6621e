"""The event bus: one interface, in-process by default, Redis pub/sub to scale out."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

Message = dict[str, Any]


class Subscription(Protocol):
    def get(self, timeout: float) -> Message | None: ...
    def close(self) -> None: ...


class EventBus(Protocol):
    def publish(self, topic: str, message: Message) -> None: ...
    def subscribe(self, topics: Iterable[str]) -> Subscription: ...


class _QueueSubscription:
    """A bounded mailbox; a subscriber that falls behind loses the oldest messages."""

    def __init__(self, bus: InProcessBus, topics: frozenset[str]) -> None:
        self._bus = bus
        self.topics = topics
        self._queue: queue.Queue[Message] = queue.Queue(maxsize=256)

    def put(self, message: Message) -> None:
        while True:
            try:
                self._queue.put_nowait(message)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    def get(self, timeout: float) -> Message | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._bus._remove(self)


class InProcessBus:
    """Pub/sub between the threads of one web process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[_QueueSubscription]] = defaultdict(set)

    def publish(self, topic: str, message: Message) -> None:
        with self._lock:
            targets = list(self._subscribers.get(topic, ()))
        for subscription in targets:
            subscription.put(message)

    def subscribe(self, topics: Iterable[str]) -> _QueueSubscription:
        subscription = _QueueSubscription(self, frozenset(topics))
        with self._lock:
            for topic in subscription.topics:
                self._subscribers[topic].add(subscription)
        return subscription

    def _remove(self, subscription: _QueueSubscription) -> None:
        with self._lock:
            for topic in subscription.topics:
                self._subscribers[topic].discard(subscription)
                if not self._subscribers[topic]:
                    del self._subscribers[topic]


class _RedisSubscription:
    def __init__(self, client: Any, topics: Iterable[str], prefix: str) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(*[prefix + topic for topic in topics])

    def get(self, timeout: float) -> Message | None:
        raw = self._pubsub.get_message(timeout=timeout)
        if raw is None:
            return None
        return json.loads(raw["data"])

    def close(self) -> None:
        self._pubsub.close()


class RedisBus:
    """Pub/sub across web processes through Redis."""

    def __init__(self, url: str, prefix: str = "lens:") -> None:
        import redis

        self._client = redis.Redis.from_url(url)
        self._prefix = prefix

    def publish(self, topic: str, message: Message) -> None:
        self._client.publish(self._prefix + topic, json.dumps(message))

    def subscribe(self, topics: Iterable[str]) -> _RedisSubscription:
        return _RedisSubscription(self._client, topics, self._prefix)


def make_bus(redis_url: str) -> EventBus:
    """Redis when a URL is set, else in-process."""
    return RedisBus(redis_url) if redis_url else InProcessBus()
