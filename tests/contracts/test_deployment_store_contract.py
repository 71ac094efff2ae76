"""The DeploymentStore contract (deployments, steps, progress): both stores pass it."""

from __future__ import annotations

import pytest
from store_cases import deploy, event

from corral.errors import NotFound
from corral.ports.records import DeploymentOutcome
from corral.ports.store import DeploymentStore


def test_a_new_deployment_is_running_and_reads_back(store: DeploymentStore) -> None:
    made = deploy(store)
    assert made.outcome is DeploymentOutcome.RUNNING
    assert (made.service, made.strategy, made.from_release, made.to_release,
            made.replicas, made.started_at) == ("web", "rolling", 1, 2, 3, 100.0)
    assert store.get_deployment(made.id) == made
    assert store.get_deployment(made.id + 1000) is None


def test_finishing_a_deployment_records_its_outcome(store: DeploymentStore) -> None:
    made = deploy(store)
    done = store.finish_deployment(made.id, DeploymentOutcome.ROLLED_BACK, 130.0,
                                   "p99 latency 900ms > 500ms", event("deployment.finished"))
    assert done.outcome is DeploymentOutcome.ROLLED_BACK
    assert (done.ended_at, done.reason) == (130.0, "p99 latency 900ms > 500ms")
    assert store.get_deployment(made.id) == done


def test_finishing_an_unknown_deployment_raises_not_found(store: DeploymentStore) -> None:
    with pytest.raises(NotFound):
        store.finish_deployment(41, DeploymentOutcome.SUCCEEDED, 1.0, None, event())


def test_deployments_are_listed_newest_first_and_by_service(store: DeploymentStore) -> None:
    first, second, other = deploy(store, "web"), deploy(store, "web", 200.0), deploy(store, "api")
    assert [d.id for d in store.list_deployments()] == [other.id, second.id, first.id]
    assert [d.id for d in store.list_deployments("web")] == [second.id, first.id]
    assert len({first.id, second.id, other.id}) == 3


def test_steps_are_numbered_and_listed_in_order_per_deployment(store: DeploymentStore) -> None:
    one, two = deploy(store), deploy(store)
    store.add_step(one.id, "StartInstances", {"count": 1, "ids": ["i-1"]}, 101.0)
    store.add_step(two.id, "StartInstances", {"count": 2}, 102.0)
    last = store.add_step(one.id, "SetWeights", {"weights": {"v1": 50, "v2": 50}}, 103.0)
    steps = store.list_steps(one.id)
    assert [(s.seq, s.kind) for s in steps] == [(1, "StartInstances"), (2, "SetWeights")]
    assert steps[0].detail == {"count": 1, "ids": ["i-1"]}
    assert steps[1] == last
    assert [s.seq for s in store.list_steps(two.id)] == [1]
    assert store.list_steps(999) == []


def test_a_step_of_an_unknown_deployment_raises_not_found(store: DeploymentStore) -> None:
    with pytest.raises(NotFound):
        store.add_step(999, "Stop", {}, 1.0)


# -- progress -------------------------------------------------------------------------
def test_a_deployment_has_no_progress_until_saved_and_then_the_last_one(
        store: DeploymentStore) -> None:
    made = deploy(store)
    assert store.get_progress(made.id) is None
    store.save_progress(made.id, {"phase": "scale", "step": 0}, 101.0)
    store.save_progress(made.id, {"phase": "analyse", "step": 1, "baseline": {"v1": [1, 2]}},
                        102.0)
    assert store.get_progress(made.id) == {"phase": "analyse", "step": 1,
                                           "baseline": {"v1": [1, 2]}}


def test_saving_progress_of_an_unknown_deployment_raises_not_found(store: DeploymentStore) -> None:
    with pytest.raises(NotFound):
        store.save_progress(42, {"phase": "start"}, 100.0)
