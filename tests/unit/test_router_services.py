"""A routed service inside the router process: applying backend sets and choosing upstreams."""

from __future__ import annotations

from collections import Counter

from corral.routers.builtin.services import Service


def backend(address: str, weight: int, release: str = "v1") -> dict[str, object]:
    return {"address": address, "weight": weight, "release": release}


def test_choose_follows_weights_among_backends_with_weight() -> None:
    service = Service("web", "127.0.0.1:8080")
    service.apply([backend("a:1", 3), backend("b:1", 1), backend("c:1", 0)])
    chosen = Counter(service.choose(None, set()).address for _ in range(40))  # type: ignore[union-attr]
    assert chosen == {"a:1": 30, "b:1": 10}


def test_a_release_header_reaches_backends_without_weight() -> None:
    service = Service("web", "127.0.0.1:8080")
    service.apply([backend("a:1", 1, "v1"), backend("b:1", 0, "v2"), backend("c:1", 0, "v2")])
    chosen = {service.choose("v2", set()).address for _ in range(4)}  # type: ignore[union-attr]
    assert chosen == {"b:1", "c:1"}
    assert service.choose("v3", set()) is None


def test_a_removed_backend_with_requests_in_flight_stays_visible_until_it_drains() -> None:
    service = Service("web", "127.0.0.1:8080")
    service.apply([backend("a:1", 1), backend("b:1", 1)])
    busy = service.upstreams["b:1"]
    busy.in_flight = 2
    service.apply([backend("a:1", 1)])
    assert service.in_flight() == {"a:1": 0, "b:1": 2}
    assert all(service.choose(None, set()) is not busy for _ in range(5))
    service.finish(busy)
    service.finish(busy)
    assert service.in_flight() == {"a:1": 0}


def test_a_backend_listed_again_keeps_its_in_flight_count() -> None:
    service = Service("web", "127.0.0.1:8080")
    service.apply([backend("a:1", 1)])
    service.upstreams["a:1"].in_flight = 1
    service.apply([])
    service.apply([backend("a:1", 2, "v2")])
    assert service.upstreams["a:1"].in_flight == 1
    assert service.backends_json() == [{"address": "a:1", "weight": 2, "release": "v2",
                                         "instance": ""}]


def test_only_a_backend_that_can_take_new_requests_is_eligible_for_a_same_backend_retry() -> None:
    service = Service("web", "127.0.0.1:8080")
    service.apply([backend("a:1", 1, "v1"), backend("b:1", 0, "v2")])
    a, b = service.upstreams["a:1"], service.upstreams["b:1"]
    assert service.is_eligible(a, None)
    assert not service.is_eligible(b, None)
    assert service.is_eligible(b, "v2")
    service.apply([backend("b:1", 0, "v2")])
    assert not service.is_eligible(a, None)
