"""Deploys that change nothing, one-off strategies, and rollbacks that cannot start, against
the fake adapters (the CLI is driven in tests/e2e/test_gc_rollback_cli.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_deployer import Rig

from corral.engine.delivery.rollback import Rollback, RollbackRequest
from corral.errors import DeployError
from corral.ports.records import DeploymentOutcome


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.stopping.set()


def test_deploying_the_live_release_again_runs_and_records_nothing(rig: Rig) -> None:
    rig.deployer.deploy(rig.request(), lambda event: None)
    ids = sorted(i.id for i in rig.fleets.of_service("web"))
    ledger = len(rig.store.events())
    events: list[dict[str, Any]] = []
    assert rig.deployer.deploy(rig.request(), events.append) is None
    assert events == [{"type": "unchanged", "service": "web", "release": 1,
                       "image": rig.digest}]
    assert len(rig.store.list_deployments("web")) == 1
    assert len(rig.store.events()) == ledger
    assert sorted(i.id for i in rig.fleets.of_service("web")) == ids


def test_a_strategy_override_runs_one_deployment_and_stays_out_of_the_release(rig: Rig) -> None:
    rig.deployer.deploy(rig.request(), lambda event: None)
    done = rig.deployer.deploy(replace(rig.request(env={"V": "2"}), strategy="blue-green"),
                               lambda event: None)
    assert done is not None and done.strategy == "blue-green"
    assert done.outcome is DeploymentOutcome.SUCCEEDED
    release = rig.store.get_release("web", 2)
    assert release is not None and release.config["strategy"] == "rolling"
    assert rig.deployer.deploy(rig.request(env={"V": "2"}), lambda event: None) is None


def test_an_unknown_strategy_override_is_refused_before_anything_is_recorded(rig: Rig) -> None:
    with pytest.raises(DeployError, match="unknown strategy 'sideways'"):
        rig.deployer.deploy(replace(rig.request(), strategy="sideways"), lambda event: None)
    assert rig.store.list_releases("web") == []


def test_a_rollback_to_a_missing_image_changes_nothing_and_names_the_commit(rig: Rig) -> None:
    rig.deployer.deploy(replace(rig.request(), git_commit="0123456789abcdef"),
                        lambda event: None)
    rig.deployer.deploy(rig.request(env={"V": "2"}), lambda event: None)
    del rig.images.images[rig.digest]  # what gc does to an image nothing kept
    ledger = len(rig.store.events())
    rollback = Rollback(rig.store, rig.deployer._instances, rig.deployer)
    with pytest.raises(DeployError, match="not here any more") as failed:
        rollback.run(RollbackRequest("web", "tester", to=1), lambda event: None)
    assert "git checkout 0123456789ab" in (failed.value.hint or "")
    assert rig.store.live_release("web") == 2
    assert rig.store.bad_releases("web") == {}
    assert len(rig.store.events()) == ledger
    assert len(rig.store.list_deployments("web")) == 2


def test_the_release_left_is_marked_bad_only_once_a_rollback_succeeded(rig: Rig) -> None:
    rig.deployer.deploy(rig.request(), lambda event: None)
    rig.deployer.deploy(rig.request(env={"V": "2"}), lambda event: None)
    rollback = Rollback(rig.store, rig.deployer._instances, rig.deployer)
    done = rollback.run(RollbackRequest("web", "tester", to=1), lambda event: None)
    assert done.outcome is DeploymentOutcome.SUCCEEDED
    assert list(rig.store.bad_releases("web")) == [2]
    assert rig.store.live_release("web") == 1
