"""Cost arithmetic as tables: instance lifetimes and deployments in, reserved hours out."""

from __future__ import annotations

import pytest

from corral.core.capacity import Footprint
from corral.core.cost import cost
from corral.ports.records import Deployment, DeploymentOutcome, Instance, InstanceState

G = 1 << 30
H = 3600.0
ONE_G = {("web", 1): Footprint(G, 0.5), ("web", 2): Footprint(G, 0.5)}


def inst(id_: str, release: int, start: float, end: float | None = None) -> Instance:
    return Instance(id_, "web", release, "sha256:d", "127.0.0.1:1", InstanceState.READY,
                    start, ended_at=end)


def deployment(strategy: str, outcome: DeploymentOutcome, start: float, end: float,
               replicas: int = 1) -> Deployment:
    return Deployment(1, "web", strategy, 1, 2, outcome, start, end, replicas=replicas)


def test_reserved_hours_are_footprint_times_lifetime_within_the_window() -> None:
    report = cost([inst("a", 1, -H, 2 * H), inst("b", 1, 0.0)], ONE_G, [], 0.0, 4 * H)
    hours = report.by_release[("web", 1)]
    assert (hours.memory, hours.cores) == (6.0, 3.0)  # a: 2 h in the window, b: 4 h


def test_a_release_without_resources_reserves_nothing() -> None:
    report = cost([inst("a", 3, 0.0, H)], ONE_G, [], 0.0, H)
    assert report.total().memory == 0.0


def test_a_rolling_surge_is_the_time_above_replicas() -> None:
    done = deployment("rolling", DeploymentOutcome.SUCCEEDED, 0.0, H)
    report = cost([inst("a", 1, -H, H), inst("b", 2, H / 2)], ONE_G, [done], 0.0, H)
    assert report.by_release[("web", 2)].surge == 0.5
    assert report.total().memory == 1.5


def test_a_blue_green_old_fleet_kept_warm_after_the_switch() -> None:
    done = deployment("blue-green", DeploymentOutcome.SUCCEEDED, 0.0, H)
    report = cost([inst("a", 1, -H, 3 * H), inst("b", 2, 0.0)], ONE_G, [done], 0.0, 3 * H)
    assert report.by_release[("web", 1)].warm == 2.0
    assert report.by_release[("web", 2)].surge == 1.0  # both fleets up until the switch


@pytest.mark.parametrize("outcome", [DeploymentOutcome.ROLLED_BACK, DeploymentOutcome.FAILED,
                                     DeploymentOutcome.ABORTED])
def test_instances_a_failed_deployment_started_are_counted_as_failed(
        outcome: DeploymentOutcome) -> None:
    failed = deployment("canary", outcome, 0.0, H)
    report = cost([inst("a", 1, -H), inst("b", 2, 60.0, H)], ONE_G, [failed], 0.0, 2 * H)
    hours = report.by_release[("web", 2)]
    assert hours.failed == pytest.approx((H - 60.0) / H)
    assert hours.surge == 0.0
