"""Capacity admission in the deployer, over the fake driver's machine (16G, 12G free, 8
cores): a deployment that does not fit at its peak is refused before anything starts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_deployer import Rig

from corral.errors import DeployError
from corral.ports.records import DeploymentOutcome

FIVE_G = {"resources": {"memory": "5G", "cpus": 0.5}, "replicas": 1}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.stopping.set()


def test_limits_reach_the_driver_with_each_instance(rig: Rig) -> None:
    rig.deployer.deploy(rig.request(**FIVE_G, allow_syscalls=["ptrace"]), lambda e: None)

    started = rig.driver.started[-1]
    assert started.limits.memory == 5 << 30 and started.limits.cpus == 0.5
    assert started.allow_syscalls == ("ptrace",)


def test_a_blue_green_fleet_that_does_not_fit_beside_the_live_one_is_refused(rig: Rig) -> None:
    big = {**FIVE_G, "replicas": 2}
    assert rig.deployer.deploy(rig.request(**big), lambda e: None).outcome \
        is DeploymentOutcome.SUCCEEDED
    started = len(rig.driver.started)

    with pytest.raises(DeployError) as refused:
        rig.deployer.deploy(rig.request(**big, strategy="blue-green", env={"V": "2"}),
                            lambda e: None)

    assert "needs memory 20G at its peak" in refused.value.message
    assert "more than the machine's 16G" in refused.value.message
    assert len(rig.driver.started) == started
    assert [d.outcome for d in rig.store.list_deployments("web")] == [
        DeploymentOutcome.SUCCEEDED]


def test_other_services_reservations_and_the_system_reserve_count(rig: Rig) -> None:
    rig.deployer.deploy(rig.request(**FIVE_G), lambda e: None)
    other = replace(rig.request(**{**FIVE_G, "replicas": 2}), service="api",
                    reserve_memory=2 << 30)

    with pytest.raises(DeployError) as refused:
        rig.deployer.deploy(other, lambda e: None)

    assert "beside 5G reserved by other services and 2G kept for the system" \
        in refused.value.message


def test_a_service_without_resources_is_never_refused(rig: Rig) -> None:
    rig.driver.machine = replace(rig.driver.machine, memory=1, memory_available=1)
    assert rig.deployer.deploy(rig.request(), lambda e: None).outcome \
        is DeploymentOutcome.SUCCEEDED
