"""Cost arithmetic as tables: instance lifetimes, deployments and sampled usage in, reserved
and used hours out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from corral.core.capacity import Footprint
from corral.core.cost import Reading, cost, hour_of, tally
from corral.ports.records import (
    Deployment,
    DeploymentOutcome,
    Instance,
    InstanceState,
    UsageTally,
)

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


# -- used hours and the idle share, from sampled tallies --------------------------------

def sampled(release: int, hour: float, seconds: float, memory: float, cpu: float,
            id_: str = "a") -> UsageTally:
    return UsageTally(id_, "web", release, hour, seconds, memory * seconds, cpu)


@pytest.mark.parametrize(("tallies", "since", "used", "idle", "idle_cpu"), [
    # a quarter of the 1G reserved in use for the whole hour, CPU 0.25 of the 0.5 reserved
    ([sampled(1, 0.0, H, G / 4, H / 4)], 0.0, (0.25, 0.25), 0.75, 0.5),
    # two hours, the second at the full reservation: idle is over both
    ([sampled(1, 0.0, H, G / 4, 0.0), sampled(1, H, H, G, 0.0)], 0.0, (1.25, 0.0), 0.375, 1.0),
    # the window starts half-way into the first hour: half of it counts
    ([sampled(1, 0.0, H, G / 2, H / 2)], H / 2, (0.25, 0.25), 0.5, 0.0),
    # above the reservation (memory between `memory` and `memory_max`): idle below zero
    ([sampled(1, 0.0, H, 1.5 * G, 0.0)], 0.0, (1.5, 0.0), -0.5, 1.0),
])
def test_used_hours_and_the_idle_share_come_from_the_sampled_tallies(
        tallies: list[UsageTally], since: float, used: tuple[float, float], idle: float,
        idle_cpu: float) -> None:
    report = cost([inst("a", 1, -H)], ONE_G, [], since, 2 * H, tallies)
    hours = report.by_release[("web", 1)]
    assert (hours.used_memory, hours.used_cores) == pytest.approx(used)
    assert hours.idle_memory_share == pytest.approx(idle)
    assert hours.idle_cpu_share == pytest.approx(idle_cpu)


def test_idle_is_judged_only_over_sampled_time_and_unknown_without_samples() -> None:
    lived = [inst("a", 1, 0.0, 4 * H)]
    report = cost(lived, ONE_G, [], 0.0, 4 * H, [sampled(1, 0.0, H, G / 2, 0.0)])
    hours = report.by_release[("web", 1)]
    assert hours.memory == 4.0 and hours.sampled_share == 0.25
    assert hours.idle_memory_share == pytest.approx(0.5)  # not 0.875: 3 h were not sampled
    unsampled = cost(lived, ONE_G, [], 0.0, 4 * H).by_release[("web", 1)]
    assert unsampled.idle_memory_share is None and unsampled.used_memory == 0.0


def test_totals_add_used_hours_across_releases() -> None:
    report = cost([inst("a", 1, 0.0, H), inst("b", 2, 0.0, H)], ONE_G, [], 0.0, H,
                  [sampled(1, 0.0, H, G / 2, 0.0), sampled(2, 0.0, H, G / 4, 0.0, "b")])
    total = report.total("web")
    assert total.used_memory == pytest.approx(0.75)
    assert total.idle_memory_share == pytest.approx(0.625)


WEB = Instance("i", "web", 1, "sha256:d", "127.0.0.1:1", InstanceState.READY, 7190.0)


@pytest.mark.parametrize(("created", "last", "cpu", "expected"), [
    # first seen 10 s after creation: from creation, with all its CPU
    (7190.0, None, 2.0, (7200.0, 10.0, 2.0)),
    # first seen long after creation (a restarted controller): a baseline, nothing counted
    (0.0, None, 2.0, (7200.0, 0.0, 0.0)),
    # seen before: the time and the CPU since
    (7190.0, Reading(7140.0, 1.5), 2.0, (7200.0, 60.0, 0.5)),
    # a counter that went back (a new cgroup): never negative
    (7190.0, Reading(7140.0, 5.0), 2.0, (7200.0, 60.0, 0.0)),
    # no CPU counter: memory only
    (7190.0, Reading(7140.0, None), None, (7200.0, 60.0, 0.0)),
])
def test_a_sample_becomes_a_tally_of_its_hour(created: float, last: Reading | None,
                                              cpu: float | None,
                                              expected: tuple[float, float, float]) -> None:
    found, reading = tally(replace(WEB, created_at=created), 1 << 20, cpu, 7200.0, last, 60.0)
    assert (found.hour, found.seconds, found.cpu_seconds) == expected
    assert found.memory_byte_seconds == (1 << 20) * expected[1]
    assert reading == Reading(7200.0, cpu)
    assert hour_of(7199.0) == 3600.0
