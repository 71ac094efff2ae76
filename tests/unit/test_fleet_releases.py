"""The engine's release records: each read from the store once per controller, with its
typed spec parsed once, shared by every health check, sweep and deployment step."""

from __future__ import annotations

from typing import Any

from corral.core.release import release_config
from corral.engine.fleet import Fleets
from corral.ports.records import Event, Release
from corral.spec.model import ServiceSpec
from corral.stores import MemoryStore

DIGEST = "sha256:" + "b" * 64


class CountingStore(MemoryStore):
    """The in-memory store, counting the release reads it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get_release(self, service: str, version: int) -> Release | None:
        self.reads += 1
        return super().get_release(service, version)


def _stored(store: MemoryStore, **keys: Any) -> ServiceSpec:
    spec = ServiceSpec.model_validate({"image": DIGEST, **keys})
    store.add_release("web", DIGEST, "sha256:c", release_config(spec, DIGEST), 1.0,
                      Event(at=1.0, actor="tester", action="release.create", subject="web"))
    return spec


def test_a_release_is_read_from_the_store_once_and_its_spec_parsed_once() -> None:
    store = CountingStore()
    spec = _stored(store, replicas=4, health={"interval": "3s"})
    fleets = Fleets(store, None, lambda: 0.0, "tester")
    first, again = fleets.release("web", 1), fleets.release("web", 1)
    assert first is not None and first is again
    assert store.reads == 1
    assert first.spec == spec and first.spec is again.spec
    assert first.spec.health.interval == 3.0


def test_an_unknown_release_is_asked_of_the_store_again_once_it_may_exist() -> None:
    store = CountingStore()
    fleets = Fleets(store, None, lambda: 0.0, "tester")
    assert fleets.release("web", 1) is None
    _stored(store, replicas=2)
    found = fleets.release("web", 1)
    assert found is not None and found.spec.replicas == 2
    assert store.reads == 2
