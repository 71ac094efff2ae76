"""Waiting for a deployment's outcome (engine/delivery/outcome.py, what `corral abort` waits with)
against the in-memory store and a fake clock: no thread, no sleep."""

from __future__ import annotations

import pytest

from corral.engine.delivery.outcome import POLL, await_outcome
from corral.errors import NotFound
from corral.ports.records import DeploymentOutcome, Event
from corral.stores.memory import MemoryStore


def _event(action: str) -> Event:
    return Event(at=0.0, actor="test", action=action, subject="web", detail={})


class _Clock:
    """Time moves only when the waiter waits; `then` runs once time reaches its moment."""

    def __init__(self, then: dict[float, object] | None = None) -> None:
        self.t = 0.0
        self.waits: list[float] = []
        self.then = dict(then or {})

    def now(self) -> float:
        return self.t

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.t += seconds
        for moment in [m for m in self.then if m <= self.t + 1e-9]:
            self.then.pop(moment)()  # type: ignore[operator]
        return False


@pytest.fixture()
def store() -> MemoryStore:
    store = MemoryStore()
    store.create_deployment("web", "canary", 1, 2, 2, 0.0, _event("deploy.start"))
    return store


def test_a_deployment_that_ends_while_waited_for_gives_its_outcome(store: MemoryStore) -> None:
    clock = _Clock({1.0: lambda: store.finish_deployment(
        1, DeploymentOutcome.ABORTED, 1.0, "aborted by me", _event("deploy.end"))})
    assert await_outcome(store, 1, 300, now=clock.now, wait=clock.wait) == "aborted"
    assert clock.t == pytest.approx(1.0) and max(clock.waits) <= POLL


def test_a_deployment_that_has_ended_already_answers_without_waiting(
        store: MemoryStore) -> None:
    store.finish_deployment(1, DeploymentOutcome.SUCCEEDED, 0.5, None, _event("deploy.end"))
    clock = _Clock()
    assert await_outcome(store, 1, 300, now=clock.now, wait=clock.wait) == "succeeded"
    assert clock.waits == []


def test_a_deployment_still_running_at_the_limit_is_reported_running(
        store: MemoryStore) -> None:
    clock = _Clock()
    assert await_outcome(store, 1, 2.5, now=clock.now, wait=clock.wait) == "running"
    assert clock.t == pytest.approx(2.5)


def test_a_waiter_that_says_stop_ends_the_wait_at_once(store: MemoryStore) -> None:
    asked: list[float] = []

    def stopping(seconds: float) -> bool:
        asked.append(seconds)
        return True

    assert await_outcome(store, 1, 300, now=lambda: 0.0, wait=stopping) == "running"
    assert len(asked) == 1


def test_an_unknown_deployment_is_not_found(store: MemoryStore) -> None:
    with pytest.raises(NotFound, match="no deployment #7"):
        await_outcome(store, 7, 1, now=lambda: 0.0, wait=lambda s: None)
