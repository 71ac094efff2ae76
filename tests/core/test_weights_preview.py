"""Preview off: fleets without weight are not routable at all."""

from __future__ import annotations

from corral.core.weights import backends_for
from corral.ports.records import Instance, InstanceState

R, D = InstanceState.READY, InstanceState.DRAINING


def make(id: str, release: int, state: InstanceState) -> Instance:
    return Instance(id, "web", release, f"sha256:{release}", f"127.0.0.1:{id}", state, 0.0)


def test_without_preview_a_fleet_with_no_weight_is_left_out_of_the_router() -> None:
    fleet = [make("1", 1, R), make("2", 2, R), make("3", 1, D)]
    listed = backends_for(fleet, {1: 100, 2: 0}, 1, preview=False)
    assert [(b.instance, b.weight > 0) for b in listed] == [("1", True), ("3", False)]


def test_with_preview_the_same_fleet_stays_listed_with_weight_0() -> None:
    fleet = [make("1", 1, R), make("2", 2, R)]
    listed = backends_for(fleet, {1: 100, 2: 0}, 1)
    assert [(b.instance, b.weight) for b in listed] == [("1", 10000), ("2", 0)]
