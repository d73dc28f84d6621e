"""The event bus: one interface, in-process by default, Redis pub/sub to scale out."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

Message = dict[str, Any]
log = logging.getLogger(__name__)


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


class BusUnavailable(Exception):
    """The bus's server (Redis) did not take a message."""


class RedisBus:
    """Pub/sub across web processes through Redis.

    One listening connection per process carries every local subscription: its thread reads
    the messages and hands them to the subscribers' mailboxes (an InProcessBus). When that
    connection drops (Redis restarted, `CLIENT KILL`, a network cut) the thread reconnects
    with a growing pause, subscribes again to every channel still wanted and hands each
    subscriber a ``{"type": "resync"}`` message: messages sent while it was away are lost,
    so listeners re-read what they show.
    """

    RETRY_SECONDS = (0.05, 2.0)  # first and longest pause between reconnection attempts
    CONFIRM_SECONDS = 2.0  # a subscribe waits this long for Redis to confirm it

    def __init__(self, url: str, prefix: str = "lens:") -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._redis = redis
        self._client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        # the listener handles a lost connection itself (it must resubscribe and resync)
        self._listen_client = redis.Redis.from_url(
            url, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        self._prefix = prefix
        self._local = InProcessBus()
        self._lock = threading.Lock()  # guards the counts and every command sent on _pubsub
        self._confirmed = threading.Condition(self._lock)
        self._wanted: dict[str, int] = defaultdict(int)  # channel -> local subscribers
        self._subscribed: set[str] = set()  # channels Redis confirmed on this connection
        self._pubsub: Any = None
        self._closed = threading.Event()
        self.connected = False
        self._tried = False  # the listener has tried to connect at least once
        self._resync_pending = False
        self.reconnects = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._listen, name="lens-redis-bus", daemon=True)
        self._thread.start()

    # ----- the interface --------------------------------------------------------------

    def publish(self, topic: str, message: Message) -> None:
        try:
            self._client.publish(self._prefix + topic, json.dumps(message))
        except self._redis.RedisError as exc:
            raise BusUnavailable(str(exc)) from exc

    def subscribe(self, topics: Iterable[str]) -> _RedisSubscription:
        """A mailbox for topics; returns once Redis confirmed them (or is unreachable)."""
        local = self._local.subscribe(topics)
        channels = [self._prefix + topic for topic in local.topics]
        with self._lock:
            new = [c for c in channels if self._wanted[c] == 0]
            for channel in channels:
                self._wanted[channel] += 1
            if new and self._pubsub is not None:
                with contextlib.suppress(self._redis.RedisError):  # the listener reconnects
                    self._pubsub.subscribe(*new)
            # a change published after this returns reaches the mailbox
            self._confirmed.wait_for(
                lambda: (
                    self._subscribed.issuperset(channels) or (self._tried and not self.connected)
                ),  # Redis down: do not hold the page
                self.CONFIRM_SECONDS,
            )
        return _RedisSubscription(self, local, channels)

    def ping(self) -> None:
        """Raise BusUnavailable unless Redis answers."""
        try:
            self._client.ping()
        except self._redis.RedisError as exc:
            raise BusUnavailable(str(exc)) from exc

    def close(self) -> None:
        """Stop the listener (within one read timeout) and close the publishing connections."""
        self._closed.set()
        self._client.close()

    # ----- the listener thread --------------------------------------------------------

    def _release(self, channels: list[str]) -> None:
        with self._lock:
            gone = []
            for channel in channels:
                self._wanted[channel] -= 1
                if self._wanted[channel] <= 0:
                    del self._wanted[channel]
                    gone.append(channel)
            if gone and self._pubsub is not None:
                with contextlib.suppress(self._redis.RedisError):
                    self._pubsub.unsubscribe(*gone)

    def _connect(self) -> None:
        pubsub = self._listen_client.pubsub()
        pubsub.ping()  # connects, or raises
        with self._lock:
            self._pubsub = pubsub
            self._subscribed.clear()
            if self._wanted:
                pubsub.subscribe(*self._wanted)
            self.connected = True
            self._tried = True
            self._confirmed.notify_all()

    def _drop(self, error: Exception) -> None:
        with self._lock:
            pubsub, self._pubsub = self._pubsub, None
            self._subscribed.clear()
            self.connected = False
            self._tried = True
            self.last_error = str(error) or type(error).__name__
            self._confirmed.notify_all()
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()

    def _listen(self) -> None:
        pause = self.RETRY_SECONDS[0]
        first = True
        while not self._closed.is_set():
            if self._pubsub is None:
                try:
                    self._connect()
                except self._redis.RedisError as exc:
                    self._drop(exc)
                    log.warning("Redis bus: cannot connect (%s); retrying in %.2f s", exc, pause)
                    self._closed.wait(pause)
                    pause = min(pause * 2, self.RETRY_SECONDS[1])
                    continue
                pause = self.RETRY_SECONDS[0]
                if not first:  # once Redis confirmed every channel again (_dispatch)
                    self._resync_pending = True
                    self._resync_when_confirmed()
                first = False
            try:
                self._dispatch(self._pubsub.get_message(timeout=0.5))
            except (self._redis.RedisError, OSError, AttributeError) as exc:
                # AttributeError: redis-py's reader vanishes under a connection closed meanwhile
                if self._closed.is_set():
                    break
                log.warning("Redis bus: lost the connection (%s); reconnecting", exc)
                self._drop(exc)
        self._drop(ConnectionError("closed"))

    def _dispatch(self, raw: dict[str, Any] | None) -> None:
        if raw is None:
            return
        kind = raw.get("type")
        channel = raw.get("channel")
        channel = channel.decode() if isinstance(channel, bytes) else channel
        if kind == "subscribe":
            with self._lock:
                self._subscribed.add(channel)
                self._confirmed.notify_all()
            self._resync_when_confirmed()
        elif kind == "unsubscribe":
            with self._lock:
                self._subscribed.discard(channel)
        elif kind == "message" and channel.startswith(self._prefix):
            try:
                message = json.loads(raw["data"])
            except ValueError:
                log.warning("Redis bus: a message on %s is not JSON", channel)
                return
            self._local.publish(channel[len(self._prefix) :], message)

    def _resync_when_confirmed(self) -> None:
        with self._lock:
            ready = self._resync_pending and self._subscribed.issuperset(self._wanted)
            if ready:
                self._resync_pending = False
        if ready:
            self.reconnects += 1
            log.warning("Redis bus: reconnected and resubscribed")
            self._resync()

    def _resync(self) -> None:
        """Tell every local subscriber that messages may have been missed."""
        with self._lock:
            topics = [c[len(self._prefix) :] for c in self._wanted]
        for topic in topics:
            self._local.publish(topic, {"type": "resync"})


class _RedisSubscription:
    """One listener's mailbox on a RedisBus."""

    def __init__(self, bus: RedisBus, local: _QueueSubscription, channels: list[str]) -> None:
        self._bus = bus
        self._local = local
        self._channels = channels
        self._closed = False
        self.topics = local.topics

    def get(self, timeout: float) -> Message | None:
        return self._local.get(timeout)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._local.close()
            self._bus._release(self._channels)


def make_bus(redis_url: str, prefix: str = "lens:") -> EventBus:
    """Redis when a URL is set, else in-process."""
    return RedisBus(redis_url, prefix) if redis_url else InProcessBus()
