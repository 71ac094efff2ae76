"""Invariants of the rolling strategy, checked by simulating whole deployments."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.rolling import RollingTarget, plan_rolling
from corral.core.steps import AwaitHealthy, DrainAndStop, StartInstances, StopInstances
from corral.core.weights import backends_for, traffic_shares
from corral.ports.records import Instance, InstanceState


def _simulate(replicas: int, surge: int, unavailable: int, old: int,
              ready_order: list[int]) -> list[list[Instance]]:
    """Run plans until done; the n-th health pass goes to new instance ready_order[n] % len."""
    target = RollingTarget(2, replicas, surge, unavailable, start_timeout=1e9)
    instances = [Instance(f"o{n}", "web", 1, "d1", f"a{n}", InstanceState.READY, 0.0)
                 for n in range(old)]
    history = [list(instances)]
    counter = 0
    for tick in range(500):
        plan = plan_rolling(target, instances, now=float(tick))
        assert plan.failure is None
        if plan.done:
            return history
        for step in plan.steps:
            if isinstance(step, DrainAndStop | StopInstances):
                instances = [i for i in instances if i.id not in step.instance_ids]
            elif isinstance(step, StartInstances):
                for _ in range(step.count):
                    counter += 1
                    instances.append(Instance(f"n{counter}", "web", 2, "d2", f"b{counter}",
                                              InstanceState.STARTING, float(tick)))
            history.append(list(instances))
        starting = [i for i in instances if i.state is InstanceState.STARTING]
        if starting and (any(isinstance(s, AwaitHealthy) for s in plan.steps) or ready_order):
            pick = starting[(ready_order.pop(0) if ready_order else 0) % len(starting)]
            instances = [i.moved_to(InstanceState.READY) if i is pick else i for i in instances]
            history.append(list(instances))
    raise AssertionError("rolling deployment did not finish in 500 plans")


params = st.tuples(st.integers(0, 6), st.integers(0, 3), st.integers(0, 3),
                   st.integers(0, 6), st.lists(st.integers(0, 10), max_size=20)
                   ).filter(lambda p: p[1] + p[2] > 0)


@settings(max_examples=300, deadline=None)
@given(params)
def test_a_rolling_deployment_always_finishes_with_exactly_the_new_fleet(p: tuple) -> None:
    replicas, surge, unavailable, old, order = p
    final = _simulate(replicas, surge, unavailable, old, order)[-1]
    assert all(i.release == 2 and i.state is InstanceState.READY for i in final)
    assert len(final) == replicas


@settings(max_examples=300, deadline=None)
@given(params)
def test_ready_capacity_never_drops_below_the_floor_nor_exceeds_the_ceiling(p: tuple) -> None:
    replicas, surge, unavailable, old, order = p
    floor = min(old, replicas) - unavailable
    for snapshot in _simulate(replicas, surge, unavailable, old, order):
        ready = sum(i.state is InstanceState.READY for i in snapshot)
        assert ready >= floor
        assert len(snapshot) <= max(old, replicas + surge)


@settings(max_examples=200, deadline=None)
@given(params)
def test_traffic_shares_always_sum_to_100_and_follow_ready_capacity(p: tuple) -> None:
    for snapshot in _simulate(*p):
        shares = traffic_shares(backends_for(snapshot))
        ready = [i for i in snapshot if i.state is InstanceState.READY]
        if ready:
            assert abs(sum(shares.values()) - 100) < 0.2
            for label, share in shares.items():
                fleet_ready = sum(f"v{i.release}" == label for i in ready)
                assert abs(share - 100 * fleet_ready / len(ready)) < 0.2
