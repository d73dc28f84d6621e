"""The web process's side of a sidecar restart, against a stand-in sidecar: an offer made
while no sidecar listens is answered as soon as one does, and a page is told once when the
sidecar under its leg is gone (refused, restarted with a new boot, or out of the registry)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from lens.sidecars import MediaRouter, StaticRegistry
from lens.sidecars.legs import LegWatch
from lens.sidecars.registry import SidecarInfo
from lens.signaling.control import MediaUnavailable
from tests.scaleout.live import free_port


class StandIn:
    """/healthz with a boot, and answers to offers: what the web process sees of a sidecar."""

    def __init__(self, port: int, boot: str) -> None:
        self.boot = boot
        self.server = make_server("127.0.0.1", port, self.wsgi, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @Request.application
    def wsgi(self, request: Request) -> Response:
        if request.path == "/healthz":
            body = {"status": "ok", "id": "default", "boot": self.boot}
        else:
            body = {"sdp": "v=0 answer", "type": "answer", "boot": self.boot}
        return Response(json.dumps(body), content_type="application/json")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


OFFER = {"type": "offer", "sdp": "v=0 offer"}


def test_an_offer_waits_for_a_sidecar_that_comes_up():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    router = MediaRouter(StaticRegistry(url), "secret", timeout=2, offer_wait=8)
    later = threading.Timer(0.6, lambda: started.append(StandIn(port, "boot-2")))
    started: list[StandIn] = []
    asked = time.monotonic()
    later.start()
    try:
        answer = router.subscriber_offer(1, OFFER)
        waited = time.monotonic() - asked
    finally:
        later.join()
        for server in started:
            server.stop()
    assert answer["sdp"] == "v=0 answer"
    # where the leg runs, for the leg watch
    assert answer["boot"] == "boot-2" and answer["sidecar_url"] == url
    assert 0.5 < waited < 3, waited


def test_an_offer_gives_up_when_no_sidecar_comes():
    url = f"http://127.0.0.1:{free_port()}"
    router = MediaRouter(StaticRegistry(url), "secret", timeout=2, offer_wait=0.5)
    asked = time.monotonic()
    with pytest.raises(MediaUnavailable):
        router.publisher_offer(1, OFFER, [])
    assert time.monotonic() - asked < 2


class Told:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def answer_from(url: str, boot: str, sidecar: str = "default") -> dict:
    return {"sdp": "v=0", "sidecar": sidecar, "sidecar_url": url, "boot": boot}


def test_a_page_is_told_once_when_its_sidecar_restarts_or_dies():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sidecar = StandIn(port, "boot-1")
    watch = LegWatch(poll=3600)  # rounds are run by hand here
    try:
        first, second = Told(), Told()
        watch.add(1, answer_from(url, "boot-1"), first)
        watch.add(2, answer_from(url, "boot-1"), second)
        assert watch.check() == [] and first.count == 0

        sidecar.boot = "boot-2"  # a new process at the same address: the legs are gone
        assert len(watch.check()) == 2
        assert (first.count, second.count) == (1, 1)
        assert watch.check() == [] and first.count == 1  # told once

        third = Told()
        leg = watch.add(3, answer_from(url, "boot-2"), third)
        sidecar.stop()  # refused
        assert watch.check() == [leg] and third.count == 1

        closed = Told()  # a page whose socket closed is no longer watched
        watch.remove(watch.add(4, answer_from(url, "boot-2"), closed))
        assert watch.check() == [] and closed.count == 0
    finally:
        if sidecar.thread.is_alive():
            sidecar.stop()


def test_a_leg_whose_sidecar_left_the_registry_is_told():
    class Registry:
        pins = True

        def __init__(self) -> None:
            self.ids = ["side-1", "side-2"]

        def live(self) -> list[SidecarInfo]:
            return [SidecarInfo(id=i, url="http://127.0.0.1:9", boot="b") for i in self.ids]

    registry = Registry()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sidecar = StandIn(port, "b")  # answering still (hung, say), yet its heartbeat expired
    watch = LegWatch(lambda: registry, poll=3600)
    try:
        on_1, on_2 = Told(), Told()
        watch.add(1, answer_from(url, "b", "side-1"), on_1)
        watch.add(2, answer_from(url, "b", "side-2"), on_2)
        assert watch.check() == []
        registry.ids = ["side-2"]
        assert len(watch.check()) == 1 and (on_1.count, on_2.count) == (1, 0)
    finally:
        sidecar.stop()


def test_an_answer_that_does_not_say_where_is_not_watched():
    watch = LegWatch(poll=3600)
    assert watch.add(1, {"sdp": "v=0"}, Told()) is None
    assert len(watch) == 0
