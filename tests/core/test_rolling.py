"""Rolling plans as tables: observed instances in, next steps out."""

from __future__ import annotations

import pytest

from corral.core.rolling import RollingTarget, plan_rolling
from corral.core.steps import AwaitHealthy, DrainAndStop, RollingPlan, StartInstances, StopInstances
from corral.ports.records import Instance, InstanceState

R, S = InstanceState.READY, InstanceState.STARTING
F, U = InstanceState.FAILED, InstanceState.UNHEALTHY


def fleet(*specs: tuple[str, int, InstanceState]) -> list[Instance]:
    return [Instance(id, "web", release, f"sha256:{release}", f"127.0.0.1:{n}", state, float(n))
            for n, (id, release, state) in enumerate(specs)]


def target(replicas: int = 3, surge: int = 1, unavailable: int = 0) -> RollingTarget:
    return RollingTarget(release=2, replicas=replicas, max_surge=surge,
                         max_unavailable=unavailable, start_timeout=30.0)


CASES = [
    ("a first deploy starts every replica at once",
     target(), fleet(), RollingPlan(steps=(StartInstances(2, 3),))),
    ("surge 1 starts one new instance beside three ready old ones",
     target(), fleet(("a", 1, R), ("b", 1, R), ("c", 1, R)),
     RollingPlan(steps=(StartInstances(2, 1),))),
    ("while the new instance starts nothing else moves",
     target(), fleet(("a", 1, R), ("b", 1, R), ("c", 1, R), ("n1", 2, S)),
     RollingPlan(steps=(AwaitHealthy(("n1",)),))),
    ("a ready new instance lets one old drain and the next new start",
     target(), fleet(("a", 1, R), ("b", 1, R), ("c", 1, R), ("n1", 2, R)),
     RollingPlan(steps=(DrainAndStop(("a",), "replaced by the new release"),
                        StartInstances(2, 1)))),
    ("three ready new instances and no old ones is done",
     target(), fleet(("n1", 2, R), ("n2", 2, R), ("n3", 2, R)), RollingPlan(done=True)),
    ("the last old instance goes once the new fleet is complete",
     target(), fleet(("c", 1, R), ("n1", 2, R), ("n2", 2, R), ("n3", 2, R)),
     RollingPlan(steps=(DrainAndStop(("c",), "replaced by the new release"),))),
    ("max_unavailable 1 without surge drains first, then starts",
     target(surge=0, unavailable=1), fleet(("a", 1, R), ("b", 1, R), ("c", 1, R)),
     RollingPlan(steps=(DrainAndStop(("a",), "replaced by the new release"),
                        StartInstances(2, 1)))),
    ("old instances that are not ready are stopped without waiting",
     target(), fleet(("a", 1, U), ("b", 1, R), ("c", 1, R)),
     RollingPlan(steps=(StopInstances(("a",), "replaced by the new release (not ready)"),
                 StartInstances(2, 2)))),
    ("a failed new instance fails the deployment",
     target(), fleet(("a", 1, R), ("n1", 2, F)), RollingPlan(failure="instance n1 failed: exited")),
    ("zero replicas drains everything and is then done",
     target(replicas=0), fleet(("a", 1, R)),
     RollingPlan(steps=(DrainAndStop(("a",), "replaced by the new release"),))),
    ("a surplus new instance is drained",
     target(replicas=1), fleet(("n1", 2, R), ("n2", 2, R)),
     RollingPlan(steps=(DrainAndStop(("n2",), "more instances than replicas"),))),
]


@pytest.mark.parametrize(("goal", "instances", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rolling_plan(goal: RollingTarget, instances: list[Instance],
                      expected: RollingPlan) -> None:
    assert plan_rolling(goal, instances, now=10.0) == expected


def test_a_new_instance_that_never_becomes_healthy_fails_after_its_start_timeout() -> None:
    instances = fleet(("a", 1, R), ("n1", 2, S))
    assert plan_rolling(target(), instances, now=20.0).failure is None
    failure = plan_rolling(target(), instances, now=40.0).failure
    assert failure == "instance n1 did not pass its health check within 30s"


def test_draining_instances_are_neither_counted_nor_touched() -> None:
    instances = fleet(("a", 1, InstanceState.DRAINING), ("n1", 2, R), ("n2", 2, R), ("n3", 2, R))
    assert plan_rolling(target(), instances, now=10.0) == RollingPlan(done=True)
