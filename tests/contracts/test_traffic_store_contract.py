"""The TrafficStore contract (each service's traffic policy): both stores pass it."""

from __future__ import annotations

from store_cases import event

from corral.ports.store import TrafficStore


def test_a_service_traffic_policy_is_replaced_and_forgotten(store: TrafficStore) -> None:
    assert store.get_traffic("web") is None
    store.set_traffic("web", {"weights": {"2": 100, "1": 0}, "warm": {"release": 1}},
                      event("traffic"))
    store.set_traffic("web", {"weights": {"2": 100}}, event("traffic"))
    assert store.get_traffic("web") == {"weights": {"2": 100}}
    assert store.get_traffic("api") is None
    store.set_traffic("web", None, event("traffic"))
    assert store.get_traffic("web") is None
